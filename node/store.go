package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
)

// openStore opens the store s describes (checked by prepare) and adds its
// closing to the node's closers.
func (n *Node) openStore(ctx context.Context, s *Store) (kv.Store, error) {
	switch {
	case s.KV != nil:
		n.storeDesc = "the app's store"
		return s.KV, nil
	case s.Kind == "memory":
		if !n.storeless {
			n.log.Warn("using the in-memory store: state is lost on exit and other processes cannot join")
		}
		m := memkv.New(n.rt, memkv.Options{})
		n.closers = append(n.closers, m.Close)
		n.storeDesc = "memory"
		return m, nil
	case len(s.Endpoints) > 0:
		var maint *etcdkv.Maintenance
		if s.Maintain {
			maint = &etcdkv.Maintenance{QuotaBytes: s.QuotaBytes}
		}
		c, err := etcdkv.Open(ctx, etcdkv.ClientConfig{
			Endpoints: s.Endpoints,
			CAFile:    s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile,
			Username: s.Username, Password: s.Password,
			Options: etcdkv.Options{Maintenance: maint},
		})
		if err != nil {
			return nil, fmt.Errorf("node: etcd %s: %w", strings.Join(s.Endpoints, ","), err)
		}
		n.closers = append(n.closers, c.Close)
		n.storeDesc = "etcd " + strings.Join(s.Endpoints, ",")
		return c, nil
	}
	dir := filepath.Join(s.DataDir, "etcd")
	n.log.Info("starting embedded etcd", "dir", dir)
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{
		MemberConfig: etcdkv.MemberConfig{
			Dir: dir, ClientAddr: s.EtcdListen, QuotaBytes: s.QuotaBytes,
			Logger: etcdLogger(n.log),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("node: embedded etcd: %w", err)
	}
	n.closers = append(n.closers, e.Close)
	n.storeDesc = "embedded etcd in " + s.DataDir
	n.etcdEndpoints = e.Endpoints()
	n.log.Info("embedded etcd ready", "endpoints", strings.Join(e.Endpoints(), ","))
	return e, nil
}
