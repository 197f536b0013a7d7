package memkv_test

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/kvtest"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// memkv passes the same conformance suite as real etcd, with its leases on
// the real clock so that both are tested identically.
func TestConformance(t *testing.T) {
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Store {
			r := rt.NewReal()
			s := memkv.New(r, memkv.Options{})
			t.Cleanup(func() {
				_ = s.Close()
				r.Wait()
			})
			return s
		},
		Compact: func(ctx context.Context, s kv.Store, rev int64) error {
			return s.(*memkv.Store).Compact(ctx, rev)
		},
	})
}
