package nola_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

func (d deleteEnv) del(id string) error {
	ctx, cancel := d.Driver.WithTimeout(d.Ctx, 5*time.Second)
	defer cancel()
	return d.C.Client().Delete(ctx, d.NS, id)
}

type deleteEnv struct{ *simtest.Env }

// deleteLifeCheck runs the scenario of issue 14 on a live actor and
// reports the first way the new life is wrong. A failure to run the
// scenario at all fails t.
func deleteLifeCheck(t *testing.T, e *simtest.Env) error {
	d := deleteEnv{e}
	for range 3 {
		e.MustInvoke("a", "kvcounter", "inc", nil)
		e.MustInvoke("m", "counter", "inc", nil)
	}
	if e.C.Host(ns, "a") == -1 || e.C.Host(ns, "m") == -1 {
		t.Fatal("actors not active before the delete")
	}
	for _, id := range []string{"a", "m"} {
		if err := d.del(id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
		if h := e.C.Host(ns, id); h != -1 {
			return fmt.Errorf("%s still active on s%d after its delete was acknowledged", id, h)
		}
	}
	// Untyped: the actor does not exist.
	_, err := e.Invoke("a", "", "get", nil)
	if !errors.Is(err, registry.ErrActorNotFound) {
		return fmt.Errorf("untyped call after delete: %v, want actor not found", err)
	}
	if err := d.del("a"); !errors.Is(err, nola.ErrNotFound) {
		return fmt.Errorf("second delete: %v, want not found", err)
	}
	// Typed: a new actor, empty KV, fresh memory.
	if got := e.MustInvoke("a", "kvcounter", "get", nil); got != "0" {
		return fmt.Errorf("new life's KV counter = %s, want 0 (empty KV)", got)
	}
	if got := e.MustInvoke("m", "counter", "inc", nil); got != "0" {
		return fmt.Errorf("new life's in-memory counter = %s, want 0", got)
	}
	if got := e.MustInvoke("a", "kvcounter", "inc", nil); got != "1" {
		return fmt.Errorf("new life's first inc = %s, want 1", got)
	}
	return nil
}

func TestDeleteActiveActor(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		runSim(t, seed, 3, nil, nil, func(e *simtest.Env) {
			if err := deleteLifeCheck(t, e); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			var deleted int64
			for i := range e.C.Size() {
				deleted += e.C.Server(i).Stats().Deleted
			}
			if deleted != 2 {
				t.Fatalf("servers counted %d deletes, want 2", deleted)
			}
		})
	}
}

// The engine-level mutation: deletes keep the generation, and the check
// above sees the old KV in the new life.
func TestDeleteSkipsGenerationMutationCaught(t *testing.T) {
	configure := func(_ int, cfg *nola.ServerConfig) { cfg.Mutations = mutation.Of(mutation.DeleteSkipsGeneration) }
	runSim(t, 1, 3, nil, configure, func(e *simtest.Env) {
		// The client's registry deletes directly when no owner is live;
		// here the owner is, so the servers' registries (mutated) delete.
		err := deleteLifeCheck(t, e)
		if err == nil {
			t.Fatal("Mutations.DeleteSkipsGeneration went unnoticed")
		}
		t.Logf("caught: %v", err)
	})
}

// An idle-evicted actor is still owned: the owner deletes it through a
// placeholder in its table, and the reclaimer later sweeps its KV.
func TestDeleteEvictedActorAndReclaim(t *testing.T) {
	configure := func(_ int, cfg *nola.ServerConfig) {
		cfg.IdleTimeout = time.Minute
		cfg.ReclaimInterval = 10 * time.Second
	}
	runSim(t, 4, 2, nil, configure, func(e *simtest.Env) {
		for range 3 {
			e.MustInvoke("a", "kvcounter", "inc", nil)
		}
		e.Sleep(90 * time.Second)
		if e.C.Host(ns, "a") != -1 {
			t.Fatal("actor still active after the idle timeout")
		}
		if err := (deleteEnv{e}).del("a"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Invoke("a", "", "get", nil); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("untyped call after delete: %v", err)
		}
		// A protocol client of the test's own reads the old life's
		// generation-0 keys (nola hands out no registry handle).
		reg := registry.New(e.Store, e.Driver, registry.Options{})
		if n, err := reg.CountKV(e.Ctx, ns, "a", 0); err != nil || n == 0 {
			t.Fatalf("old KV before the reclaimer ran: %d bytes (%v); want it still there", n, err)
		}
		e.Sleep(20 * time.Second)
		if n, err := reg.CountKV(e.Ctx, ns, "a", 0); err != nil || n != 0 {
			t.Fatalf("old KV after two reclaim intervals: %d bytes (%v), want 0", n, err)
		}
	})
}

// A delete waits for the invocation in flight: that invocation's commit
// lands (it ran before the delete), and nothing of it survives the delete.
func TestDeleteWaitsForInFlightInvocation(t *testing.T) {
	var started, release *rt.Future[struct{}]
	types := actors.Types()
	types["hold"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
			if op == "hold" {
				started.Resolve(struct{}{}, nil)
				if _, err := release.Wait(ctx); err != nil {
					return nil, err
				}
			}
			if err := ctx.Put([]byte("k"), []byte(op)); err != nil {
				return nil, err
			}
			return []byte("ok"), nil
		}), nil
	}
	runSim(t, 5, 2, types, nil, func(e *simtest.Env) {
		started, release = rt.NewFuture[struct{}](e.Driver), rt.NewFuture[struct{}](e.Driver)
		e.MustInvoke("h", "hold", "warm", nil)
		type result struct{ err error }
		inv, del := rt.NewFuture[result](e.Driver), rt.NewFuture[result](e.Driver)
		e.Driver.Go("holder", func() {
			_, err := e.Invoke("h", "hold", "hold", nil)
			inv.Resolve(result{err}, nil)
		})
		if _, err := started.Wait(e.Ctx); err != nil {
			t.Fatal(err)
		}
		e.Driver.Go("deleter", func() { del.Resolve(result{(deleteEnv{e}).del("h")}, nil) })
		// Give the delete time to reach the owner and queue behind the
		// invocation (virtual time; nothing is asserted on it), then let
		// the invocation go. Had the delete not waited, the invocation's
		// commit would fail its fence.
		e.Sleep(100 * time.Millisecond)
		release.Resolve(struct{}{}, nil)
		ri, _ := inv.Wait(e.Ctx)
		rd, _ := del.Wait(e.Ctx)
		if ri.err != nil {
			t.Fatalf("the in-flight invocation failed: %v (the delete cut it off)", ri.err)
		}
		if rd.err != nil {
			t.Fatalf("delete: %v", rd.err)
		}
		if _, err := e.Invoke("h", "", "get", nil); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("untyped call after delete: %v", err)
		}
	})
}

// BenchmarkDelete: one delete of an active actor through the engine
// (in-process cluster of 3, memkv, real runtime): the owner swaps the
// activation for a placeholder and commits the tombstone. Creating the
// actor is not timed.
//
//	go test -run '^$' -bench Delete ./nola/
func BenchmarkDelete(b *testing.B) {
	c, stop := startTyped(3, actors.Types())
	b.Cleanup(stop)
	ctx := context.Background()
	cl := c.Client()
	i := 0
	b.Run("active", func(b *testing.B) {
		for b.Loop() {
			i++
			id := fmt.Sprint("d", i)
			b.StopTimer()
			if _, err := cl.Invoke(ctx, "bench", id, "kvcounter", "inc", nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := cl.Delete(ctx, "bench", id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An actor whose owner crashed is deleted without it once the owner's
// lease is gone (the incarnation has fenced itself by then); the actor
// does not come back when another server takes over.
func TestDeleteAfterOwnerCrash(t *testing.T) {
	runSim(t, 6, 3, nil, nil, func(e *simtest.Env) {
		for range 2 {
			e.MustInvoke("a", "kvcounter", "inc", nil)
		}
		owner := e.C.Host(ns, "a")
		e.Crash(owner)
		e.Sleep(simTTL + time.Second)
		if err := (deleteEnv{e}).del("a"); err != nil {
			t.Fatalf("delete after the owner's lease expired: %v", err)
		}
		if _, err := e.Invoke("a", "", "get", nil); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("untyped call after delete: %v", err)
		}
		if got := e.MustInvoke("a", "kvcounter", "get", nil); got != "0" {
			t.Fatalf("new life reads %s, want 0", got)
		}
	})
}
