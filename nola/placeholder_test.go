package nola_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// commitHold is a kv.Store that holds one commit mid-flight: once armed
// with a marker, the first commit with an op on a key containing it waits
// (before reaching the store) until release is closed; held is closed when
// it arrives. While watching, every load record commit that has landed is
// signalled on loads, so that a test reads the registry's view after a
// load report made during the hold, without guessing when one comes.
type commitHold struct {
	kv.Store
	mu      sync.Mutex
	marker  []byte
	held    chan struct{}
	release chan struct{}
	loads   chan struct{}
}

func (h *commitHold) arm(marker string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.marker = []byte(marker)
	h.held, h.release = make(chan struct{}), make(chan struct{})
}

func (h *commitHold) watchLoads() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loads = make(chan struct{}, 1)
	return h.loads
}

func (h *commitHold) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	h.mu.Lock()
	hold, isLoad := false, false
	for _, op := range t.Ops {
		if h.marker != nil && bytes.Contains(op.Key, h.marker) {
			hold = true
		}
		isLoad = isLoad || bytes.Contains(op.Key, []byte("load"))
	}
	held, release := h.held, h.release
	if hold {
		h.marker = nil
	}
	h.mu.Unlock()
	if hold {
		close(held)
		<-release
	}
	res, err := h.Store.Commit(ctx, t)
	h.mu.Lock()
	if isLoad && err == nil && h.loads != nil {
		select {
		case h.loads <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
	return res, err
}

// While a delete or a release of an actor commits, a placeholder holds the
// actor's slot: it is not an activation, so neither the server's figures
// (Stats, HostedActors) nor the load record placement reads count it.
// (Before placeholders were marked, the server reported one activation —
// and, for a delete, 1 KiB — for an actor it no longer held.)
func TestPlaceholderIsNotCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context, c *nola.Cluster, id string) error
	}{
		{"delete", func(ctx context.Context, c *nola.Cluster, id string) error {
			return c.Client().Delete(ctx, "ns", id)
		}},
		{"release", func(ctx context.Context, c *nola.Cluster, id string) error {
			ok, err := c.Server(0).Release(ctx, "ns", id)
			if err == nil && !ok {
				t.Errorf("release of %s: nothing released", id)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rt.NewReal()
			inner := memkv.New(r, memkv.Options{})
			store := &commitHold{Store: inner}
			c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
				Servers: 1, Store: store, Runtime: func(int) rt.Runtime { return r }, ClientRuntime: r,
				Types:     actors.Types(),
				Configure: func(_ int, cfg *nola.ServerConfig) { cfg.LeaseTTL = 3 * time.Second },
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = c.Shutdown(context.Background())
				_ = inner.Close()
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := c.Server(0)
			base := s.Stats().MemoryBytes
			const id = "placeholder-victim"
			if _, err := c.Client().Invoke(ctx, "ns", id, "counter", "inc", nil); err != nil {
				t.Fatal(err)
			}
			if n := s.Stats().Activations; n != 1 {
				t.Fatalf("before the %s: %d activations, want 1", tc.name, n)
			}
			store.arm(id)
			done := make(chan error, 1)
			go func() { done <- tc.end(ctx, c, id) }()
			select {
			case <-store.held:
			case err := <-done:
				t.Fatalf("%s returned (%v) without committing", tc.name, err)
			}
			// The commit is held: the placeholder is in the table.
			loads := store.watchLoads()
			st := s.Stats()
			if st.Activations != 0 {
				t.Errorf("during the %s: Stats().Activations = %d, want 0 (the placeholder is no activation)", tc.name, st.Activations)
			}
			if st.MemoryBytes != base {
				t.Errorf("during the %s: Stats().MemoryBytes = %d, want %d as with no activation", tc.name, st.MemoryBytes, base)
			}
			if h := s.HostedActors(); len(h) != 0 {
				t.Errorf("during the %s: HostedActors = %v, want none", tc.name, h)
			}
			// The keep-alives report the load; read what one wrote. Two
			// reports: the first to land may have been measured before the
			// hold began (the heartbeat reads the figures, then commits);
			// the heartbeat's next one is measured after the first landed,
			// so during the hold.
			for range 2 {
				select {
				case <-loads:
				case <-ctx.Done():
					t.Fatal("no load report during the hold")
				}
			}
			members, err := registry.New(inner, r, registry.Options{}).Servers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range members {
				if m.Record.ID == s.ID() {
					found = true
					if m.Load.Activations != 0 || m.Load.Bytes != base {
						t.Errorf("during the %s: load record %+v, want 0 activations and %d bytes", tc.name, m.Load, base)
					}
				}
			}
			if !found {
				t.Fatalf("server %s not in the member list %v", s.ID(), members)
			}
			close(store.release)
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if n := s.Stats().Activations; n != 0 {
				t.Fatalf("after the %s: %d activations, want 0", tc.name, n)
			}
			// The slot is free again: the actor comes back (delete: a new
			// life; release: placed anew).
			if out, err := c.Client().Invoke(ctx, "ns", id, "counter", "inc", nil); err != nil {
				t.Fatalf("after the %s: %v (%s)", tc.name, err, out)
			}
			if n := s.Stats().Activations; n != 1 {
				t.Fatalf("after the %s and a call: %d activations, want 1", tc.name, n)
			}
		})
	}
}
