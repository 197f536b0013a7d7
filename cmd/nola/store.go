package main

import (
	"flag"
	"os"
	"strings"

	"github.com/nolaproject/nola/node"
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

// storeOptions is the store the flags ask for: an external etcd cluster,
// an embedded single member in the data directory, or memory. Every store
// flag is passed on, so that node.Start refuses combinations that do not
// fit (TLS files without endpoints, endpoints for the memory store).
func (c *serveConfig) storeOptions() node.Store {
	s := node.Store{
		Kind: c.store, QuotaBytes: c.etcdQuota, DataDir: c.dataDir, EtcdListen: c.etcdPeerListen,
		CAFile: c.etcdCA, CertFile: c.etcdCert, KeyFile: c.etcdKey, Maintain: c.etcdMaintain,
		Username: c.etcdUser,
	}
	if c.etcdEndpoints != "" {
		s.Endpoints = strings.Split(c.etcdEndpoints, ",")
		s.Password = os.Getenv("NOLA_ETCD_PASSWORD")
	}
	return s
}
