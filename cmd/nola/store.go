package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
)

// openEtcd connects to an external etcd cluster, or starts an embedded
// single member in the data directory.
func openEtcd(ctx context.Context, c serveConfig, log *slog.Logger) (kv.Store, func() error, error) {
	if c.etcdEndpoints != "" {
		var eps []string
		for _, e := range strings.Split(c.etcdEndpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		s, err := etcdkv.Open(ctx, etcdkv.ClientConfig{
			Endpoints: eps,
			CAFile:    c.etcdCA, CertFile: c.etcdCert, KeyFile: c.etcdKey,
			Username: c.etcdUser, Password: os.Getenv("NOLA_ETCD_PASSWORD"),
		})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	dir := filepath.Join(c.dataDir, "etcd")
	log.Info("starting embedded etcd", "dir", dir)
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{
		MemberConfig: etcdkv.MemberConfig{Dir: dir, ClientAddr: c.etcdPeerListen},
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("embedded etcd ready", "endpoints", strings.Join(e.Endpoints(), ","))
	return e, e.Close, nil
}
