package nola_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// hookCounter is an actor whose Deactivate hook counts its runs.
type hookCounter struct{ deactivated *atomic.Int64 }

func (hookCounter) Invoke(*nola.Context, string, []byte) ([]byte, error) { return []byte("ok"), nil }

func (a hookCounter) Deactivate(*nola.Context) error {
	a.deactivated.Add(1)
	return nil
}

// Both ends of a life go through swapPlaceholder: a release moves the
// actor, so its Deactivate hook runs; a delete ends the life, so it does
// not (docs/deletion.md).
func TestReleaseDeactivatesDeleteDoesNot(t *testing.T) {
	var deactivated atomic.Int64
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	types := actors.Types()
	types["hooked"] = func(nola.Ref) (nola.Actor, error) { return hookCounter{&deactivated}, nil }
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers: 1, Store: store, Runtime: func(int) rt.Runtime { return r }, ClientRuntime: r,
		Types:     types,
		Configure: func(_ int, cfg *nola.ServerConfig) { cfg.LeaseTTL = 3 * time.Second },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Shutdown(context.Background())
		_ = store.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := c.Server(0)

	if _, err := c.Client().Invoke(ctx, "ns", "moved", "hooked", "x", nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Release(ctx, "ns", "moved"); err != nil || !ok {
		t.Fatalf("release: %v, %v", ok, err)
	}
	if n := deactivated.Load(); n != 1 {
		t.Fatalf("after a release: Deactivate ran %d times, want 1", n)
	}

	if _, err := c.Client().Invoke(ctx, "ns", "deleted", "hooked", "x", nil); err != nil {
		t.Fatal(err)
	}
	if !s.Hosts("ns", "deleted") {
		t.Fatal("the actor to delete is not active here: the delete would test nothing")
	}
	if err := c.Client().Delete(ctx, "ns", "deleted"); err != nil {
		t.Fatal(err)
	}
	if n := deactivated.Load(); n != 1 {
		t.Fatalf("after a delete: Deactivate ran %d times in all, want 1 (the release's only)", n)
	}
}
