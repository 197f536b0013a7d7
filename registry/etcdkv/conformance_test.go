package etcdkv_test

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/kvtest"
)

// startEmbedded starts a fresh single-member etcd in a temporary directory.
func startEmbedded(t testing.TB, cfg etcdkv.EmbeddedConfig) *etcdkv.Embedded {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	e, err := etcdkv.StartEmbedded(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close embedded etcd: %v", err)
		}
	})
	return e
}

func compact(ctx context.Context, s kv.Store, rev int64) error {
	return s.(interface {
		Compact(context.Context, int64) error
	}).Compact(ctx, rev)
}

// The conformance suite against a real embedded etcd member (with fsync),
// with group commit off (every commit its own etcd transaction); the
// default, with group commit on, is TestGroupCommitConformance.
func TestConformance(t *testing.T) {
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Store {
			return startEmbedded(t, etcdkv.EmbeddedConfig{Options: etcdkv.Options{NoGroupCommit: true}})
		},
		Compact: compact,
	})
}

// The same with every key under a prefix: what callers see must not change.
func TestConformancePrefixed(t *testing.T) {
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Store {
			return startEmbedded(t, etcdkv.EmbeddedConfig{Options: etcdkv.Options{Prefix: "tenant/"}})
		},
		Compact:         compact,
		SkipLeaseExpiry: true, // prefixes do not touch leases; TestConformance covers expiry
	})
}
