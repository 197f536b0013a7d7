package nola_test

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// A warm call through an in-process cluster allocates the invocation's
// Context and the counter's result, nothing else: with a million live
// actors every allocated byte is paid again in marking work over the
// whole heap. (The direct LocalNetwork path once copied each Request to
// the heap because its async branch captured it in a closure: 3 allocs.)
func TestWarmInvokeAllocations(t *testing.T) {
	ctx := context.Background()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	c, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers: 1, Store: store, Types: actors.Types(),
		Runtime: func(int) rt.Runtime { return r }, ClientRuntime: r,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(ctx)
	cl := c.Client()
	if _, err := cl.Invoke(ctx, ns, "warm", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := cl.Invoke(ctx, ns, "warm", "counter", "inc", nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("a warm invoke allocates %.1f times, want ≤ 2 (its Context and the result)", allocs)
	}
}
