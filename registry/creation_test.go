package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
)

// The creating placement stores the arguments and the pending marker in
// its commit; a later placement changes neither; the commit with
// CommitOptions.Created ends the pending state together with its writes,
// and a second such commit is refused (nothing written).
func TestCreationRecords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		p, err := reg.EnsureActivationArgs(ctx, "ns", "a", "t", []byte("args-1"))
		if err != nil || !p.Created {
			t.Fatalf("create: %+v, %v", p, err)
		}
		if p, err = reg.EnsureActivationArgs(ctx, "ns", "a", "t", []byte("args-2")); err != nil || p.Created {
			t.Fatalf("second placement: %+v, %v; want not created", p, err)
		}
		c, err := reg.ReadCreation(ctx, "ns", "a")
		if err != nil || !c.Pending || string(c.Args) != "args-1" {
			t.Fatalf("creation = %+v, %v; want pending with args-1", c, err)
		}
		rec := recordFor(t, reg, inc, "ns", "a", "t")
		created := registry.CommitOptions{Created: true}
		w := []registry.KVWrite{{Key: []byte("k"), Value: []byte("v")}}
		if err := reg.CommitKVWith(ctx, inc, "ns", "a", rec, w, created); err != nil {
			t.Fatal(err)
		}
		if c, err = reg.ReadCreation(ctx, "ns", "a"); err != nil || c.Pending || string(c.Args) != "args-1" {
			t.Fatalf("after the creation commit: %+v, %v; want not pending, args kept", c, err)
		}
		again := []registry.KVWrite{{Key: []byte("k"), Value: []byte("again")}}
		if err := reg.CommitKVWith(ctx, inc, "ns", "a", rec, again, created); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("second creation commit: %v, want ErrFenced", err)
		}
		if v, _, _ := reg.GetKV(ctx, "ns", "a", 0, []byte("k")); string(v) != "v" {
			t.Errorf("refused creation commit wrote k=%q", v)
		}
		// No arguments: pending, nil args; a stale args record of an
		// earlier life of the ID is removed by the creation.
		stale := reg.Keys().CreationArgs("ns", "b")
		if _, err := reg.Store().Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(stale, []byte("old life"), kv.NoLease)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.EnsureActivationArgs(ctx, "ns", "b", "t", nil); err != nil {
			t.Fatal(err)
		}
		if c, err = reg.ReadCreation(ctx, "ns", "b"); err != nil || !c.Pending || c.Args != nil {
			t.Fatalf("creation without args = %+v, %v", c, err)
		}
	})
}

// An actor ID whose encoding continues another's ("a" and "a\x00b": the
// tuple escape) never sees the other's creation records.
func TestCreationRangeIsTheActorsOwn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivationArgs(ctx, "ns", "a\x00b", "t", []byte("intruder")); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil {
			t.Fatal(err)
		}
		c, err := reg.ReadCreation(ctx, "ns", "a")
		if err != nil || c.Args != nil || !c.Pending {
			t.Fatalf("creation of a = %+v, %v; want pending, no args", c, err)
		}
	})
}

// The budget of the creation commit leaves room for the marker: the
// largest commit it allows passes the store's limits.
func TestCreationBudgetLeavesRoomForTheMarker(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil {
			t.Fatal(err)
		}
		rec := recordFor(t, reg, inc, "ns", "a", "t")
		created := registry.CommitOptions{Created: true}
		plain := reg.KVBudget(inc, "ns", "a", rec)
		b := reg.KVBudgetWith(inc, "ns", "a", rec, false, created)
		if plain.MaxWrites > 0 && b.MaxWrites != plain.MaxWrites-1 {
			t.Fatalf("creation budget %d writes, plain %d: want one fewer", b.MaxWrites, plain.MaxWrites)
		}
		if b.MaxWrites <= 0 {
			t.Skip("the store has no op limit")
		}
		w := make([]registry.KVWrite, b.MaxWrites)
		for i := range w {
			w[i] = registry.KVWrite{Key: []byte{byte(i), 1}, Value: bytes.Repeat([]byte{1}, 8)}
		}
		if err := reg.CommitKVWith(ctx, inc, "ns", "a", rec, w, created); err != nil {
			t.Fatalf("a creation commit within its budget: %v", err)
		}
	})
}

// Deleting an actor removes its creation records with the tombstone; its
// next life is created with its own (here: none).
func TestDeleteRemovesCreationRecords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivationArgs(ctx, "ns", "a", "t", []byte("first life")); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Delete(ctx, inc, "ns", "a"); err != nil {
			t.Fatal(err)
		}
		if c, err := reg.ReadCreation(ctx, "ns", "a"); err != nil || c.Pending || c.Args != nil {
			t.Fatalf("creation after delete = %+v, %v; want none", c, err)
		}
		p, err := reg.EnsureActivationArgs(ctx, "ns", "a", "t", nil)
		if err != nil || !p.Created {
			t.Fatalf("new life: %+v, %v", p, err)
		}
		if c, err := reg.ReadCreation(ctx, "ns", "a"); err != nil || !c.Pending || c.Args != nil {
			t.Fatalf("creation of the new life = %+v, %v; want pending, no args", c, err)
		}
	})
}

// CreateActor, which commits without reading first, ends as
// EnsureActivationArgs would: a new actor is created with its records; an
// existing one (its guess refused) is placed where it is, not created
// again, its arguments unchanged; another type is a mismatch; a deleted
// actor's new life continues its epochs and takes the next generation.
func TestCreateActor(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		p, err := reg.CreateActor(ctx, "ns", "a", "t", []byte("args-1"))
		if err != nil || !p.Created || p.ServerID != "s1" || p.Incarnation != inc.Num || p.Type != "t" {
			t.Fatalf("create: %+v, %v", p, err)
		}
		rec, found, err := reg.Actor(ctx, "ns", "a")
		if err != nil || !found || rec.Owner != "s1" || rec.Epoch != 1 || rec.Generation != 0 {
			t.Fatalf("record after create: %+v %v %v", rec, found, err)
		}
		before, _, err := reg.Store().Get(ctx, reg.Keys().Actor("ns", "a"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if p, err = reg.CreateActor(ctx, "ns", "a", "t", []byte("args-2")); err != nil || p.Created || p.ServerID != "s1" {
			t.Fatalf("second create: %+v, %v; want placed on s1, not created", p, err)
		}
		after, _, err := reg.Store().Get(ctx, reg.Keys().Actor("ns", "a"), 0)
		if err != nil || after.ModRev != before.ModRev {
			t.Fatalf("second create changed the record (mod rev %d → %d, %v)", before.ModRev, after.ModRev, err)
		}
		if c, err := reg.ReadCreation(ctx, "ns", "a"); err != nil || !c.Pending || string(c.Args) != "args-1" {
			t.Fatalf("creation = %+v, %v; want the first creation's", c, err)
		}
		if _, err := reg.CreateActor(ctx, "ns", "a", "other", nil); !errors.Is(err, registry.ErrTypeMismatch) {
			t.Fatalf("create as another type: %v, want ErrTypeMismatch", err)
		}
		if _, err := reg.CreateActor(ctx, "ns", "nope", "", nil); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("create without a type: %v, want ErrActorNotFound", err)
		}
		if _, err := reg.Delete(ctx, inc, "ns", "a"); err != nil {
			t.Fatal(err)
		}
		if p, err = reg.CreateActor(ctx, "ns", "a", "t", nil); err != nil || !p.Created {
			t.Fatalf("create over a tombstone: %+v, %v", p, err)
		}
		if rec, _, err = reg.Actor(ctx, "ns", "a"); err != nil || rec.Generation != 1 || rec.Epoch <= 1 {
			t.Fatalf("new life: %+v, %v; want generation 1 and a later epoch", rec, err)
		}
		if c, err := reg.ReadCreation(ctx, "ns", "a"); err != nil || !c.Pending || c.Args != nil {
			t.Fatalf("new life's creation = %+v, %v; want pending without args", c, err)
		}
	})
}

// Creating an actor that exists, on a cluster whose servers are all full:
// nothing needs placing, so CreateActor answers with the existing
// placement (created=false), as EnsureActivationArgs does — not
// ErrNoServers from choosing a server for a guess that the actor is absent.
func TestCreateActorExistingOnFullCluster(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if err := reg.ReportLoad(ctx, inc, registry.Load{Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if p, err := reg.CreateActor(ctx, "ns", "a", "t", nil); err != nil || !p.Created {
			t.Fatalf("create: %+v, %v", p, err)
		}
		// Full now, whether the list is the cached one (one placement
		// counted on it) or a fresh one (one activation reported).
		if err := reg.ReportLoad(ctx, inc, registry.Load{Activations: 1, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if p, err := reg.EnsureActivationArgs(ctx, "ns", "a", "t", nil); err != nil || p.Created || p.ServerID != "s1" {
			t.Fatalf("place the existing actor: %+v, %v; want s1, not created", p, err)
		}
		if p, err := reg.CreateActor(ctx, "ns", "a", "t", nil); err != nil || p.Created || p.ServerID != "s1" {
			t.Fatalf("create the existing actor on a full cluster: %+v, %v; want s1, not created", p, err)
		}
		if _, err := reg.CreateActor(ctx, "ns", "b", "t", nil); !errors.Is(err, registry.ErrNoServers) {
			t.Fatalf("create a new actor on a full cluster: %v, want ErrNoServers", err)
		}
	})
}

// Concurrent creations of one actor, read-free first attempts all (through
// etcd's group commit, which must put them in different batches): exactly
// one reports created, all place it on the same owner, and the creation
// arguments are the winner's.
func TestCreateActorConcurrentOneWinner(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		mustRegister(t, reg, "s1")
		mustRegister(t, reg, "s2")
		const n = 16
		places := make([]registry.Placement, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				places[i], errs[i] = reg.CreateActor(ctx, "ns", "a", "t", []byte(fmt.Sprintf("args-%d", i)))
			}()
		}
		wg.Wait()
		winner := -1
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("create %d: %v", i, errs[i])
			}
			if places[i].Created {
				if winner >= 0 {
					t.Fatalf("creations %d and %d both created the actor", winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("no creation created the actor")
		}
		for i := range n {
			if places[i].ServerID != places[winner].ServerID || places[i].Incarnation != places[winner].Incarnation {
				t.Fatalf("create %d placed on %+v, the winner on %+v", i, places[i], places[winner])
			}
		}
		if c, err := reg.ReadCreation(ctx, "ns", "a"); err != nil || string(c.Args) != fmt.Sprintf("args-%d", winner) {
			t.Fatalf("creation = %+v, %v; want the winner's (%d) arguments", c, err, winner)
		}
	})
}
