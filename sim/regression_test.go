package sim

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// lateStore holds the next actor-KV commit once armed: its caller waits
// until its context is done and is told the outcome is unknown, while the
// request stays in the store's queue and is applied when the test releases
// it — a commit that reached the store late (a slow link, a stalled
// connection, a buffered partition).
type lateStore struct {
	kv.Store
	rt   rt.Runtime
	arm  bool
	held *kv.Txn
}

func isActorKVCommit(t kv.Txn) bool {
	for _, op := range t.Ops {
		if e, err := tuple.Unpack(op.Key); err == nil && len(e) == 5 && e[1] == "kv" {
			return true
		}
	}
	return false
}

func (s *lateStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if !s.arm || !isActorKVCommit(t) {
		return s.Store.Commit(ctx, t)
	}
	s.arm = false
	t = cloneTxn(t)
	s.held = &t
	// Nothing ever releases this semaphore: wait for the caller to give up.
	err := s.rt.NewSema(0).Acquire(ctx)
	return kv.CommitResult{}, fmt.Errorf("late store: %w: %w", kv.ErrIndeterminate, err)
}

// Regression test for the first engine bug the simulator found (seeds 559,
// 745, 1742… of TestSeeds before the fix; see README.md): a KV commit whose
// outcome was unknown — sent by an activation that was then dropped — was
// applied after a newer activation of the same actor, under the same
// incarnation, had committed, and overwrote an acknowledged write. The
// store fence compared the incarnation only, and the incarnation had not
// changed.
func TestLateCommitOfDroppedActivationIsNotApplied(t *testing.T) {
	w := simrt.New(7)
	err := w.Run(func() {
		ctx := context.Background()
		storeNode := w.Node("store")
		inner := memkv.New(storeNode, memkv.Options{})
		late := &lateStore{Store: inner, rt: storeNode}
		srvNode, driver := w.Node("s0"), w.Node("driver")
		c, err := nola.NewCluster(ctx, nola.ClusterConfig{
			Servers: 1, Store: late, Async: true, Types: actors.Types(),
			Runtime:       func(int) rt.Runtime { return srvNode },
			ClientRuntime: driver,
			Configure:     func(_ int, cfg *nola.ServerConfig) { cfg.LeaseTTL = 3 * time.Second },
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Halt()
		inc := func(timeout time.Duration) (string, error) {
			cctx, cancel := driver.WithTimeout(ctx, timeout)
			defer cancel()
			b, err := c.Client().Invoke(cctx, "ns", "a", "kvcounter", "inc", nil)
			return string(b), err
		}
		// incUntil retries, as a patient client would, while the server
		// is unavailable (re-registering after a fence).
		incUntil := func() string {
			for range 50 {
				v, err := inc(time.Second)
				if err == nil {
					return v
				}
				if !nola.IsRetryable(err) && !errors.Is(err, nola.ErrTimeout) {
					t.Errorf("inc: %v", err)
					return ""
				}
				_ = driver.Sleep(ctx, 100*time.Millisecond)
			}
			t.Error("inc kept failing")
			return ""
		}
		for _, want := range []string{"1", "2"} {
			if got := incUntil(); got != want {
				t.Errorf("inc = %q, want %s", got, want)
				return
			}
		}
		late.arm = true
		if v, err := inc(time.Second); err == nil {
			t.Errorf("inc with a held commit answered %q, want an error", v)
			return
		}
		if late.held == nil {
			t.Error("no commit was held")
			return
		}
		// The held write (n=3) has not been applied: the actor goes on
		// from 2 and acknowledges 3 and 4.
		for _, want := range []string{"3", "4"} {
			if got := incUntil(); got != want {
				t.Errorf("inc = %q, want %s", got, want)
				return
			}
		}
		// Now the late commit reaches the store. It must be refused:
		// applied, it would replace the acknowledged 4 with 3.
		res, err := inner.Commit(ctx, *late.held)
		if err != nil {
			t.Errorf("late commit: %v", err)
			return
		}
		reg := registry.New(inner, driver, registry.Options{})
		v, _, err := reg.GetKV(ctx, "ns", "a", 0, []byte("n"))
		if err != nil {
			t.Error(err)
			return
		}
		if res.Succeeded || string(v) != "4" {
			t.Errorf("the late commit of a dropped activation was applied=%v; n = %q, want 4 (an acknowledged write was lost)", res.Succeeded, v)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
