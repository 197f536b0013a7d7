package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/wasm/modules"
)

// addStoreFlags declares the flags of the etcd store's maintenance and of
// the namespace quotas (see docs/operations.md).
func addStoreFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.Int64Var(&c.etcdQuota, "etcd-quota-bytes", 2<<30,
		"etcd backend quota in bytes: the embedded member's, or the external cluster's (its --quota-backend-bytes) for --etcd-maintain")
	fs.BoolVar(&c.etcdMaintain, "etcd-maintain", false,
		"external etcd: compact by bytes, defragment, and recover from the NOSPACE alarm at start-up (always on for the embedded etcd)")
	fs.Int64Var(&c.nsModuleBytes, "ns-module-bytes", modules.DefaultQuotaBytes, "module bytes each namespace may store (-1: no limit)")
	fs.Int64Var(&c.nsMods, "ns-modules", modules.DefaultQuotaModules, "modules each namespace may store (-1: no limit)")
}

// openEtcd connects to an external etcd cluster, or starts an embedded
// single member in the data directory.
func openEtcd(ctx context.Context, c serveConfig, log *slog.Logger) (kv.Store, func() error, error) {
	if c.etcdQuota <= 0 {
		return nil, nil, usageErr("--etcd-quota-bytes must be positive, got %d", c.etcdQuota)
	}
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
			Options: etcdkv.Options{Maintenance: maintenance(c)},
		})
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	}
	dir := filepath.Join(c.dataDir, "etcd")
	log.Info("starting embedded etcd", "dir", dir)
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{
		MemberConfig: etcdkv.MemberConfig{Dir: dir, ClientAddr: c.etcdPeerListen, QuotaBytes: c.etcdQuota},
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info("embedded etcd ready", "endpoints", strings.Join(e.Endpoints(), ","))
	return e, e.Close, nil
}

// maintenance is the external store's maintenance, if asked for.
func maintenance(c serveConfig) *etcdkv.Maintenance {
	if !c.etcdMaintain {
		return nil
	}
	return &etcdkv.Maintenance{QuotaBytes: c.etcdQuota}
}
