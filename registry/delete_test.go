package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// own places actor (ns, id) of type typ (on inc, the only server) and
// returns the owner record inc fences on.
func own(t *testing.T, reg *registry.Registry, inc *registry.Incarnation, ns, id, typ string) []byte {
	t.Helper()
	if _, err := reg.EnsureActivation(context.Background(), ns, id, typ); err != nil {
		t.Fatal(err)
	}
	e, g, ok, err := reg.Confirm(context.Background(), inc, ns, id, typ)
	if err != nil || !ok {
		t.Fatalf("confirm %s/%s: ok=%v err=%v", ns, id, ok, err)
	}
	return inc.OwnerRecord(typ, e, g)
}

// fill commits n keys k000… to the actor, at most 100 per commit.
func fill(t *testing.T, reg *registry.Registry, inc *registry.Incarnation, ns, id string, rec []byte, n int, val string) {
	t.Helper()
	for i := 0; i < n; {
		var w []registry.KVWrite
		for ; i < n && len(w) < 100; i++ {
			w = append(w, registry.KVWrite{Key: fmt.Appendf(nil, "k%03d", i), Value: []byte(val)})
		}
		if err := reg.CommitKV(context.Background(), inc, ns, id, rec, w); err != nil {
			t.Fatal(err)
		}
	}
}

// rawKeys counts the keys stored under generation gen of an actor, reading
// the store directly (what no reader of the API can see).
func rawKeys(t *testing.T, reg *registry.Registry, ns, id string, gen int64) int {
	t.Helper()
	b, e := reg.Keys().KVRange(ns, id, gen, nil, nil)
	res, err := reg.Store().Range(context.Background(), kv.RangeRequest{Begin: b, End: e, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.KVs)
}

func TestDeleteThenNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		rec := own(t, reg, inc, "ns", "a", "t")
		fill(t, reg, inc, "ns", "a", rec, 3, "v")
		own(t, reg, inc, "ns", "b", "t")

		// The owner is live: only it may delete (it stops the activation).
		if _, err := reg.Delete(ctx, nil, "ns", "a"); !errors.Is(err, registry.ErrOwned) {
			t.Fatalf("delete of a live owner's actor by a non-owner: %v, want ErrOwned", err)
		}
		other := mustRegister(t, reg, "s2")
		if _, err := reg.Delete(ctx, other, "ns", "a"); !errors.Is(err, registry.ErrNotOwner) {
			t.Fatalf("delete by another server: %v, want ErrNotOwner", err)
		}
		gone, err := reg.Delete(ctx, inc, "ns", "a")
		if err != nil || gone.Type != "t" || gone.Generation != 0 {
			t.Fatalf("delete by the owner: %+v, %v", gone, err)
		}
		if _, found, err := reg.Actor(ctx, "ns", "a"); err != nil || found {
			t.Fatalf("Actor after delete: found=%v err=%v", found, err)
		}
		if _, err := reg.EnsureActivation(ctx, "ns", "a", ""); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("untyped placement after delete: %v, want ErrActorNotFound", err)
		}
		if _, _, ok, err := reg.Confirm(ctx, inc, "ns", "a", "t"); err != nil || ok {
			t.Fatalf("old owner still confirms after delete: ok=%v err=%v", ok, err)
		}
		if _, err := reg.SnapshotKV(ctx, "ns", "a"); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("KV read after delete: %v, want ErrActorNotFound", err)
		}
		list, _, err := reg.ListActors(ctx, "ns", "", 0)
		if err != nil || len(list) != 1 || list[0].ID != "b" {
			t.Fatalf("ListActors after delete = %+v, %v; want only b", list, err)
		}
		// A page of one after the tombstone's position still finds b.
		if page, more, err := reg.ListActors(ctx, "ns", "", 1); err != nil || len(page) != 1 || page[0].ID != "b" || more {
			t.Fatalf("ListActors(limit 1) = %+v more=%v %v", page, more, err)
		}
		if _, err := reg.Delete(ctx, inc, "ns", "a"); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("second delete: %v, want ErrActorNotFound", err)
		}
		if _, err := reg.Delete(ctx, nil, "ns", "never"); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("delete of a missing actor: %v, want ErrActorNotFound", err)
		}
	})
}

// newLifeCheck deletes a 3-key actor, creates it again and reports what is
// wrong with the new life: old KV visible, or a reclaim that removes the
// new life's keys. A late commit of the old life must fail.
func newLifeCheck(t *testing.T, reg *registry.Registry) error {
	t.Helper()
	ctx := context.Background()
	inc := mustRegister(t, reg, "s1")
	old := own(t, reg, inc, "ns", "a", "t")
	fill(t, reg, inc, "ns", "a", old, 3, "old")
	if _, err := reg.Delete(ctx, inc, "ns", "a"); err != nil {
		t.Fatal(err)
	}
	p, err := reg.EnsureActivation(ctx, "ns", "a", "t")
	if err != nil || !p.Created {
		t.Fatalf("typed placement on a tombstone: %+v, %v; want a creation", p, err)
	}
	// The late commit of the old life, same server and incarnation.
	late := []registry.KVWrite{{Key: []byte("late"), Value: []byte("zombie")}}
	if err := reg.CommitKV(ctx, inc, "ns", "a", old, late); !errors.Is(err, registry.ErrFenced) {
		return fmt.Errorf("late commit of the old life: %v, want ErrFenced", err)
	}
	e, g, ok, err := reg.Confirm(ctx, inc, "ns", "a", "t")
	if err != nil || !ok {
		t.Fatalf("confirm new life: %v %v", ok, err)
	}
	snap, err := reg.SnapshotKV(ctx, "ns", "a")
	if err != nil {
		t.Fatal(err)
	}
	if pairs, _, err := snap.Scan(ctx, nil, nil, 0); err != nil || len(pairs) != 0 {
		return fmt.Errorf("new life's KV = %d entries (%v), want empty", len(pairs), err)
	}
	if use, err := reg.ReadKVUsage(ctx, "ns", "a", g); err != nil || use.Bytes != 0 {
		return fmt.Errorf("new life's KV usage = %+v (%v), want 0", use, err)
	}
	fill(t, reg, inc, "ns", "a", inc.OwnerRecord("t", e, g), 2, "new")
	if _, err := reg.Reclaim(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := rawKeys(t, reg, "ns", "a", g); n != 2 {
		return fmt.Errorf("after reclaim the new life has %d keys, want 2", n)
	}
	return nil
}

func TestDeleteNewLifeEmptyAndFenced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		if err := newLifeCheck(t, reg); err != nil {
			t.Fatal(err)
		}
		if n := rawKeys(t, reg, "ns", "a", 0); n != 0 {
			t.Fatalf("the old generation has %d keys after reclaim", n)
		}
	})
}

// The mutation that keeps the generation across a delete is caught by the
// same check: the new life sees the old KV.
func TestDeleteGenerationMutationCaught(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			r := rt.NewReal()
			reg := registry.New(b.open(t, r), r, registry.Options{Root: "test-" + t.Name(), Mutations: mutation.Of(mutation.DeleteSkipsGeneration)})
			err := newLifeCheck(t, reg)
			if err == nil {
				t.Fatal("DeleteSkipsGeneration went unnoticed")
			}
			t.Logf("caught: %v", err)
		})
	}
}

// An actor with more keys than one commit can carry (etcd: 128 ops) is
// deleted at once as readers see it: a reader running concurrently with
// the delete and the reclaim sees either all of the KV or "not found",
// although the store holds part of the keys for a while.
func TestDeleteLargeKVAtomic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		const n = 350
		inc := mustRegister(t, reg, "s1")
		fill(t, reg, inc, "ns", "big", own(t, reg, inc, "ns", "big", "t"), n, "v")

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var bad error
		seen := map[string]int{}
		first := make(chan struct{}) // closed after the reader's first full read
		readerDone := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(readerDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap, err := reg.SnapshotKV(ctx, "ns", "big")
				if errors.Is(err, registry.ErrActorNotFound) {
					seen["gone"]++
					continue
				}
				if err == nil {
					var pairs []registry.KVPair
					if pairs, _, err = snap.Scan(ctx, nil, nil, 0); err == nil && len(pairs) != n {
						err = fmt.Errorf("reader saw %d of %d keys", len(pairs), n)
					}
				}
				if err != nil {
					bad = err
					return
				}
				if seen["all"]++; seen["all"] == 1 {
					close(first)
				}
			}
		}()
		select {
		case <-first:
		case <-readerDone:
			t.Fatalf("reader stopped before reading: %v", bad)
		}
		if _, err := reg.Delete(ctx, inc, "ns", "big"); err != nil {
			t.Fatal(err)
		}
		partial := false
		for {
			st, err := reg.Reclaim(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if k := rawKeys(t, reg, "ns", "big", 0); k > 0 && k < n {
				partial = true
			}
			if !st.Pending {
				break
			}
		}
		close(stop)
		wg.Wait()
		if bad != nil {
			t.Fatal(bad)
		}
		if seen["gone"] == 0 {
			// The reader raced past the end: one more read must say gone.
			if _, err := reg.SnapshotKV(ctx, "ns", "big"); !errors.Is(err, registry.ErrActorNotFound) {
				t.Fatalf("read after reclaim: %v, want ErrActorNotFound", err)
			}
		}
		if !partial {
			t.Fatal("reclaim never left the store half-reclaimed: the test proves nothing")
		}
		if k := rawKeys(t, reg, "ns", "big", 0); k != 0 {
			t.Fatalf("%d keys left after reclaim", k)
		}
		t.Logf("reader observations: %v", seen)
	})
}

// Reclaim moves a cursor in its marker: a process that stops mid-way
// (here: after one batch, and a fresh registry as the restarted process)
// leaves the rest to the next sweep, and nothing is deleted twice or left.
func TestReclaimResumesAfterCrash(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			r := rt.NewReal()
			store := b.open(t, r)
			opts := registry.Options{Root: "test-" + t.Name()}
			reg := registry.New(store, r, opts)
			inc := mustRegister(t, reg, "s1")
			fill(t, reg, inc, "ns", "a", own(t, reg, inc, "ns", "a", "t"), 250, "v")
			fill(t, reg, inc, "ns", "b", own(t, reg, inc, "ns", "b", "t"), 5, "v")
			if _, err := reg.Delete(ctx, inc, "ns", "a"); err != nil {
				t.Fatal(err)
			}
			st, err := reg.Reclaim(ctx, 1)
			if err != nil || st.Keys != registry.ReclaimBatch || !st.Pending {
				t.Fatalf("first batch: %+v, %v; want %d keys and more pending", st, err, registry.ReclaimBatch)
			}
			if k := rawKeys(t, reg, "ns", "a", 0); k != 250-registry.ReclaimBatch {
				t.Fatalf("after one batch %d keys remain", k)
			}
			// The process dies; a new one sweeps.
			again := registry.New(store, r, opts)
			st, err = again.Reclaim(ctx, 0)
			if err != nil || st.Keys != 250-registry.ReclaimBatch || st.Pending {
				t.Fatalf("resumed reclaim: %+v, %v; want the remaining %d keys", st, err, 250-registry.ReclaimBatch)
			}
			if k := rawKeys(t, reg, "ns", "a", 0); k != 0 {
				t.Fatalf("%d keys of the deleted life left", k)
			}
			if k := rawKeys(t, reg, "ns", "b", 0); k != 5 {
				t.Fatalf("reclaim touched another actor: b has %d keys, want 5", k)
			}
			mb, me := reg.Keys().Reclaims()
			if res, err := store.Range(ctx, kv.RangeRequest{Begin: mb, End: me}); err != nil || len(res.KVs) != 0 {
				t.Fatalf("reclaim markers left: %d (%v)", len(res.KVs), err)
			}
			if st, err := again.Reclaim(ctx, 0); err != nil || st.Commits != 0 {
				t.Fatalf("idle reclaim: %+v %v", st, err)
			}
		})
	}
}

// An actor whose owner's incarnation is gone is deleted without it, and
// concurrent deletes of one actor have exactly one winner.
func TestDeleteDeadOwnerAndConcurrentDeletes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		own(t, reg, inc, "ns", "a", "t")
		if err := reg.Deregister(ctx, inc); err != nil {
			t.Fatal(err)
		}
		const racers = 4
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = reg.Delete(ctx, nil, "ns", "a")
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, registry.ErrActorNotFound):
				t.Fatalf("concurrent delete: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d concurrent deletes succeeded, want 1 (%v)", won, errs)
		}
	})
}
