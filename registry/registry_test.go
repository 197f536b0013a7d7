package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// ttl is the test servers' lease. Nothing renews it, and no test here
// waits for it to lapse: long enough that a loaded machine's stall never
// expires a server mid-test (the tests of expiry use their own).
const ttl = time.Minute

// forEachBackend runs f against every backend with the production runtime.
func forEachBackend(t *testing.T, f func(t *testing.T, reg *registry.Registry)) {
	forEachBackendOpts(t, registry.Options{}, f)
}

// forEachBackendOpts is forEachBackend with registry options (Root is set
// per test).
func forEachBackendOpts(t *testing.T, opts registry.Options, f func(t *testing.T, reg *registry.Registry)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			r := rt.NewReal()
			o := opts
			o.Root = "test-" + t.Name()
			reg := registry.New(b.open(t, r), r, o)
			f(t, reg)
		})
	}
}

// recordFor returns the owner record inc would fence on for actor (ns, id)
// at the actor's current epoch: the strongest claim inc can make, whether or
// not it owns the actor.
func recordFor(t *testing.T, reg *registry.Registry, inc *registry.Incarnation, ns, id, typ string) []byte {
	t.Helper()
	rec, _, err := reg.Actor(context.Background(), ns, id)
	if err != nil {
		t.Fatal(err)
	}
	return inc.OwnerRecord(typ, rec.Epoch, 0)
}

func mustRegister(t *testing.T, reg *registry.Registry, sid string) *registry.Incarnation {
	t.Helper()
	inc, err := reg.Register(context.Background(), sid, "addr-"+sid, ttl)
	if err != nil {
		t.Fatalf("register %s: %v", sid, err)
	}
	return inc
}

func TestRegisterIncarnationsIncrease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		a := mustRegister(t, reg, "s1")
		// A live incarnation holds the ID: a second process cannot take it.
		if _, err := reg.Register(ctx, "s1", "elsewhere", ttl); !errors.Is(err, registry.ErrServerIDInUse) {
			t.Fatalf("second registration of a live ID: %v, want ErrServerIDInUse", err)
		}
		// Once the first incarnation ends, the next one gets a new number.
		if err := reg.Deregister(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := mustRegister(t, reg, "s1")
		if a.Num != 1 || b.Num != 2 {
			t.Fatalf("incarnations %d, %d; want 1, 2", a.Num, b.Num)
		}
		// The server record now belongs to the second incarnation: the
		// first one's fences fail.
		if err := reg.ReportLoad(ctx, a, registry.Load{}); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("old incarnation's load report: %v, want ErrFenced", err)
		}
		if err := reg.ReportLoad(ctx, b, registry.Load{Activations: 3}); err != nil {
			t.Fatalf("current incarnation's load report: %v", err)
		}
		members, err := reg.Servers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != 1 || members[0].Record.Incarnation != 2 || members[0].Load.Activations != 3 {
			t.Fatalf("members = %+v", members)
		}
		if _, err := reg.Register(ctx, "", "x", ttl); err == nil {
			t.Fatal("an empty server ID must be rejected")
		}
	})
}

func TestEnsureActivationOwnershipAndFences(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		s1 := mustRegister(t, reg, "s1")
		s2 := mustRegister(t, reg, "s2")
		incs := map[string]*registry.Incarnation{"s1": s1, "s2": s2}

		p, err := reg.EnsureActivation(ctx, "ns", "a", "counter")
		if err != nil {
			t.Fatal(err)
		}
		if !p.Created || p.Type != "counter" {
			t.Fatalf("first placement = %+v", p)
		}
		owner, other := incs[p.ServerID], incs[map[string]string{"s1": "s2", "s2": "s1"}[p.ServerID]]
		again, err := reg.EnsureActivation(ctx, "ns", "a", "")
		if err != nil || again.ServerID != p.ServerID || again.Created {
			t.Fatalf("second placement = %+v, %v; want the same owner, not created", again, err)
		}
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "kvcounter"); !errors.Is(err, registry.ErrTypeMismatch) {
			t.Fatalf("other type: %v, want ErrTypeMismatch", err)
		}
		if _, err := reg.EnsureActivation(ctx, "ns", "missing", ""); !errors.Is(err, registry.ErrActorNotFound) {
			t.Fatalf("no type, no actor: %v, want ErrActorNotFound", err)
		}

		confirm := func(inc *registry.Incarnation, typ string) bool {
			_, _, ok, err := reg.Confirm(ctx, inc, "ns", "a", typ)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !confirm(owner, "counter") || confirm(other, "counter") || confirm(owner, "kvcounter") {
			t.Fatal("only the owner, with the actor's type, may confirm")
		}

		write := []registry.KVWrite{{Key: []byte("k"), Value: []byte("v1")}}
		if err := reg.CommitKV(ctx, owner, "ns", "a", recordFor(t, reg, owner, "ns", "a", "counter"), write); err != nil {
			t.Fatalf("owner's commit: %v", err)
		}
		steal := []registry.KVWrite{{Key: []byte("k"), Value: []byte("stolen")}}
		if err := reg.CommitKV(ctx, other, "ns", "a", recordFor(t, reg, other, "ns", "a", "counter"), steal); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("non-owner's commit: %v, want ErrFenced", err)
		}

		// The owner goes away (lease revoked): the actor moves, and the old
		// incarnation can neither confirm nor commit any more.
		if err := reg.Deregister(ctx, owner); err != nil {
			t.Fatal(err)
		}
		moved, err := reg.EnsureActivation(ctx, "ns", "a", "counter")
		if err != nil || moved.ServerID != other.ServerID || moved.Incarnation != other.Num {
			t.Fatalf("after the owner left: %+v, %v; want %s#%d", moved, err, other.ServerID, other.Num)
		}
		if confirm(owner, "counter") || !confirm(other, "counter") {
			t.Fatal("ownership did not move with the placement")
		}
		if err := reg.CommitKV(ctx, owner, "ns", "a", recordFor(t, reg, owner, "ns", "a", "counter"), steal); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("zombie commit: %v, want ErrFenced", err)
		}
		v, found, err := reg.GetKV(ctx, "ns", "a", 0, []byte("k"))
		if err != nil || !found || string(v) != "v1" {
			t.Fatalf("KV after fenced commits = %q %v %v, want v1", v, found, err)
		}
	})
}

func TestReleaseLetsAnyServerTakeOver(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		s1 := mustRegister(t, reg, "s1")
		p, err := reg.EnsureActivation(ctx, "ns", "r", "counter")
		if err != nil || p.ServerID != "s1" {
			t.Fatalf("placement %+v %v", p, err)
		}
		s2 := mustRegister(t, reg, "s2")
		if err := reg.Release(ctx, s2, "ns", "r", "counter", 1, 0); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("release by a non-owner: %v, want ErrFenced", err)
		}
		if err := reg.Release(ctx, s1, "ns", "r", "counter", 0, 0); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("release at a past epoch: %v, want ErrFenced", err)
		}
		if err := reg.Release(ctx, s1, "ns", "r", "counter", 1, 0); err != nil {
			t.Fatal(err)
		}
		rec, found, err := reg.Actor(ctx, "ns", "r")
		if err != nil || !found || rec.Owner != "" || rec.Type != "counter" {
			t.Fatalf("after release: %+v %v %v", rec, found, err)
		}
		// Make s1 look busy so that placement prefers s2.
		if err := reg.ReportLoad(ctx, s1, registry.Load{Activations: 100}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // let the placement cache expire
		p, err = reg.EnsureActivation(ctx, "ns", "r", "")
		if err != nil || p.ServerID != "s2" || p.Created {
			t.Fatalf("after release: %+v %v, want s2", p, err)
		}
	})
}

func TestPlacementSkipsFullServersAndPrefersLeastLoaded(t *testing.T) {
	// The spread below counts on the registry's own placements adding to
	// one cached server list: a list refreshed mid-test (the default TTL
	// is 1 s, which six etcd placements can take on a loaded machine)
	// forgets them. The refresh itself is tested elsewhere.
	forEachBackendOpts(t, registry.Options{ServerListTTL: time.Hour}, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		loads := map[string]registry.Load{
			"a": {Activations: 10, Limit: 10}, // full
			"b": {Activations: 5, Bytes: 900, Limit: 100},
			"c": {Activations: 5, Bytes: 100, Limit: 100}, // ties b, less memory
			"d": {Activations: 7, Limit: 100},
		}
		for sid, l := range loads {
			if err := reg.ReportLoad(ctx, mustRegister(t, reg, sid), l); err != nil {
				t.Fatal(err)
			}
		}
		p, err := reg.EnsureActivation(ctx, "ns", "x", "counter")
		if err != nil || p.ServerID != "c" {
			t.Fatalf("placed on %+v %v, want c (fewest activations, least memory)", p, err)
		}
		// The registry counts its own placements, and bounded load keeps
		// any one server within ceil(1.25·mean) of them: the next ones
		// spread over b, c and d (memory-light c most, d once), never a.
		seen := map[string]int{}
		for i := range 5 {
			p, err := reg.EnsureActivation(ctx, "ns", fmt.Sprintf("y%d", i), "counter")
			if err != nil {
				t.Fatal(err)
			}
			seen[p.ServerID]++
		}
		if seen["a"] != 0 || seen["b"] != 2 || seen["c"] != 2 || seen["d"] != 1 {
			t.Fatalf("placements %v: want none on the full server a, 2 on b, 2 on c, 1 on d", seen)
		}
	})
}

func TestNoServersIsTyped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		if _, err := reg.EnsureActivation(context.Background(), "ns", "x", "counter"); !errors.Is(err, registry.ErrNoServers) {
			t.Fatalf("empty cluster: %v, want ErrNoServers", err)
		}
	})
}

func TestScanKVOrderPrefixesAndOddBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil {
			t.Fatal(err)
		}
		keys := [][]byte{
			[]byte("a"), []byte("ab"), []byte("ab\x00"), []byte("ab\x00c"), []byte("ab\xff"),
			[]byte("abc"), []byte("b"), {0}, {0xff, 0xff},
		}
		var writes []registry.KVWrite
		for _, k := range keys {
			writes = append(writes, registry.KVWrite{Key: k, Value: append([]byte("v-"), k...)})
		}
		if err := reg.CommitKV(ctx, inc, "ns", "a", recordFor(t, reg, inc, "ns", "a", "t"), writes); err != nil {
			t.Fatal(err)
		}
		// Another actor's keys must never show up.
		if _, err := reg.EnsureActivation(ctx, "ns", "a2", "t"); err != nil {
			t.Fatal(err)
		}
		if err := reg.CommitKV(ctx, inc, "ns", "a2", recordFor(t, reg, inc, "ns", "a2", "t"), writes[:2]); err != nil {
			t.Fatal(err)
		}
		all, more, err := reg.ScanKV(ctx, "ns", "a", 0, nil, nil, 0)
		if err != nil || more {
			t.Fatal(err, more)
		}
		if len(all) != len(keys) {
			t.Fatalf("scan returned %d keys, want %d", len(all), len(keys))
		}
		for i := 1; i < len(all); i++ {
			if bytes.Compare(all[i-1].Key, all[i].Key) >= 0 {
				t.Fatalf("scan out of order at %d: %q then %q", i, all[i-1].Key, all[i].Key)
			}
		}
		pre, _, err := reg.ScanKVPrefix(ctx, "ns", "a", 0, []byte("ab"), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pre {
			got = append(got, fmt.Sprintf("%q", p.Key))
		}
		want := `["ab" "ab\x00" "ab\x00c" "abc" "ab\xff"]`
		if fmt.Sprint(got) != want {
			t.Fatalf("prefix ab = %v, want %s", got, want)
		}
		ranged, more, err := reg.ScanKV(ctx, "ns", "a", 0, []byte("ab"), []byte("b"), 2)
		if err != nil || len(ranged) != 2 || !more || string(ranged[0].Key) != "ab" {
			t.Fatalf("range [ab,b) limit 2 = %q more=%v %v", ranged, more, err)
		}
	})
}

func TestListActors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		mustRegister(t, reg, "s1")
		for i := range 5 {
			if _, err := reg.EnsureActivation(ctx, "ns", fmt.Sprintf("a%d", i), "t"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := reg.EnsureActivation(ctx, "other", "zz", "t"); err != nil {
			t.Fatal(err)
		}
		page, more, err := reg.ListActors(ctx, "ns", "", 3)
		if err != nil || len(page) != 3 || !more || page[0].ID != "a0" {
			t.Fatalf("first page %+v more=%v %v", page, more, err)
		}
		rest, more, err := reg.ListActors(ctx, "ns", page[2].ID, 10)
		if err != nil || len(rest) != 2 || more || rest[0].ID != "a3" || rest[1].ID != "a4" {
			t.Fatalf("second page %+v more=%v %v", rest, more, err)
		}
	})
}

func TestCommitKVChecksLimitsBeforeTheStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil {
			t.Fatal(err)
		}
		rec := recordFor(t, reg, inc, "ns", "a", "t")
		budget := reg.KVBudget(inc, "ns", "a", rec)
		var writes []registry.KVWrite
		for i := range budget.MaxWrites + 1 {
			writes = append(writes, registry.KVWrite{Key: []byte(fmt.Sprint(i)), Value: []byte("v")})
		}
		err := reg.CommitKV(ctx, inc, "ns", "a", rec, writes)
		if !errors.Is(err, kv.ErrTooLarge) {
			t.Fatalf("oversized commit: %v, want ErrTooLarge", err)
		}
		var le *kv.LimitError
		if !errors.As(err, &le) || le.Limit != budget.MaxWrites {
			t.Fatalf("limit error does not say which limit: %v", err)
		}
		if got, _, _ := reg.ScanKV(ctx, "ns", "a", 0, nil, nil, 0); len(got) != 0 {
			t.Fatalf("%d keys written by a rejected commit", len(got))
		}
	})
}

// The engine checks writes against KVBudget at Put time; the budget must
// agree exactly with the check CommitKV (and the store) apply: a commit that
// fills it passes, one byte more does not.
func TestKVBudgetMatchesTheCommitCheck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		id := "an actor with a long name and \x00 bytes"
		if _, err := reg.EnsureActivation(ctx, "ns", id, "t"); err != nil {
			t.Fatal(err)
		}
		rec := recordFor(t, reg, inc, "ns", id, "t")
		b := reg.KVBudget(inc, "ns", id, rec)
		key := []byte("k\x00\x00y")
		fill := make([]byte, b.MaxBytes-b.WriteSize(key, nil))
		if err := reg.CommitKV(ctx, inc, "ns", id, rec, []registry.KVWrite{{Key: key, Value: fill}}); err != nil {
			t.Fatalf("a commit that fills the budget exactly: %v", err)
		}
		over := append(fill, 'x')
		if err := reg.CommitKV(ctx, inc, "ns", id, rec, []registry.KVWrite{{Key: key, Value: over}}); !errors.Is(err, kv.ErrTooLarge) {
			t.Fatalf("one byte over the budget: %v, want ErrTooLarge", err)
		}
	})
}

// Bump moves the actor record to a new epoch: a commit fenced on the old one
// (a late commit of a dropped activation) can no longer apply. Epochs never
// repeat, whatever happens to the record: release and placement move them on
// too, so an old fence never holds again (an ABA the review found when
// placement wrote epoch 0 every time).
func TestEpochsFenceEarlierOwnerships(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivation(ctx, "ns", "b", "t"); err != nil {
			t.Fatal(err)
		}
		e0, _, ok, err := reg.Confirm(ctx, inc, "ns", "b", "t")
		if err != nil || !ok {
			t.Fatalf("Confirm = %v %v", ok, err)
		}
		stale := inc.OwnerRecord("t", e0, 0)
		other := mustRegister(t, reg, "s2")
		if _, _, ok, err := reg.Bump(ctx, other, "ns", "b", "t"); err != nil || ok {
			t.Fatalf("a non-owner bumped: ok=%v err=%v", ok, err)
		}
		e1, _, ok, err := reg.Bump(ctx, inc, "ns", "b", "t")
		if err != nil || !ok || e1 <= e0 {
			t.Fatalf("Bump = %d %v %v, want an epoch after %d", e1, ok, err, e0)
		}
		late := []registry.KVWrite{{Key: []byte("k"), Value: []byte("late")}}
		if err := reg.CommitKV(ctx, inc, "ns", "b", stale, late); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("commit at the old epoch: %v, want ErrFenced", err)
		}
		if e, _, ok, err := reg.Confirm(ctx, inc, "ns", "b", "t"); err != nil || !ok || e != e1 {
			t.Fatalf("Confirm after Bump = %d %v %v, want epoch %d", e, ok, err, e1)
		}
		now := []registry.KVWrite{{Key: []byte("k"), Value: []byte("now")}}
		if err := reg.CommitKV(ctx, inc, "ns", "b", inc.OwnerRecord("t", e1, 0), now); err != nil {
			t.Fatal(err)
		}
		if err := reg.Release(ctx, inc, "ns", "b", "t", e0, 0); !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("release at the old epoch: %v", err)
		}
		if err := reg.Release(ctx, inc, "ns", "b", "t", e1, 0); err != nil {
			t.Fatal(err)
		}
		// Placed again — possibly on the very same incarnation: neither old
		// fence holds.
		if err := reg.Deregister(ctx, other); err != nil {
			t.Fatal(err)
		}
		p, err := reg.EnsureActivation(ctx, "ns", "b", "t")
		if err != nil || p.ServerID != "s1" {
			t.Fatalf("placement = %+v %v", p, err)
		}
		for _, rec := range [][]byte{stale, inc.OwnerRecord("t", e1, 0)} {
			if err := reg.CommitKV(ctx, inc, "ns", "b", rec, late); !errors.Is(err, registry.ErrFenced) {
				t.Fatalf("an earlier ownership's fence held after release and re-placement: %v", err)
			}
		}
		if v, _, _ := reg.GetKV(ctx, "ns", "b", 0, []byte("k")); string(v) != "now" {
			t.Fatalf("k = %q", v)
		}
	})
}

// A release is a compare on the releasing incarnation's ownership: one that
// arrives after the actor moved (its sender's lease ended and another
// server placed it) changes nothing. With the compare skipped
// (mutation.SkipReleaseCompare, the simulator's mutation) the same
// late release clears the new owner's record, so placement could activate
// the actor a second time while that owner serves: the check below fails
// for it, which shows it is not vacuous.
func TestLateReleaseCannotClearAnotherOwner(t *testing.T) {
	for _, b := range backends() {
		for _, unsafe := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/skip-compare=%v", b.name, unsafe), func(t *testing.T) {
				r := rt.NewReal()
				var muts mutation.Set
				if unsafe {
					muts = mutation.Of(mutation.SkipReleaseCompare)
				}
				reg := registry.New(b.open(t, r), r, registry.Options{Root: "test-" + t.Name(), Mutations: muts})
				ctx := context.Background()
				s1 := mustRegister(t, reg, "s1")
				if p, err := reg.EnsureActivation(ctx, "ns", "a", "counter"); err != nil || p.ServerID != "s1" {
					t.Fatalf("placement %+v %v", p, err)
				}
				rec, _, err := reg.Actor(ctx, "ns", "a")
				if err != nil {
					t.Fatal(err)
				}
				if err := reg.Deregister(ctx, s1); err != nil {
					t.Fatal(err)
				}
				mustRegister(t, reg, "s2")
				if p, err := reg.EnsureActivation(ctx, "ns", "a", ""); err != nil || p.ServerID != "s2" {
					t.Fatalf("placement after s1 left: %+v %v", p, err)
				}
				err = reg.Release(ctx, s1, "ns", "a", "counter", rec.Epoch, rec.Generation)
				after, _, rerr := reg.Actor(ctx, "ns", "a")
				if rerr != nil {
					t.Fatal(rerr)
				}
				stolen := after.Owner != "s2"
				if unsafe {
					if err != nil || !stolen {
						t.Fatalf("mutation: release %v, owner %q: the mutation should clear s2's ownership", err, after.Owner)
					}
					return
				}
				if !errors.Is(err, registry.ErrFenced) || stolen {
					t.Fatalf("late release: %v, owner %q; want ErrFenced and s2 still the owner", err, after.Owner)
				}
			})
		}
	}
}

// A locality move releases an actor with a placement hint: the next
// placement follows it while the hinted server is live and within
// bounded load, and ignores it otherwise (advice, never a reservation).
func TestReleaseHintGuidesTheNextPlacement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		s1 := mustRegister(t, reg, "s1")
		p, err := reg.EnsureActivation(ctx, "ns", "h", "counter")
		if err != nil || p.ServerID != "s1" {
			t.Fatalf("placement %+v %v", p, err)
		}
		s2, s3 := mustRegister(t, reg, "s2"), mustRegister(t, reg, "s3")
		// s1 looks busiest, s3 not the lightest: without the hint s2 wins.
		for inc, n := range map[*registry.Incarnation]int64{s1: 3, s2: 1, s3: 2} {
			if err := reg.ReportLoad(ctx, inc, registry.Load{Activations: n, Bytes: n << 10}); err != nil {
				t.Fatal(err)
			}
		}
		owner, epoch := s1, int64(1)
		move := func(hint string) registry.Placement {
			t.Helper()
			if err := reg.ReleaseTo(ctx, owner, "ns", "h", "counter", epoch, 0, hint); err != nil {
				t.Fatal(err)
			}
			if rec, _, err := reg.Actor(ctx, "ns", "h"); err != nil || rec.Hint != hint || rec.Owner != "" {
				t.Fatalf("released record %+v %v, want hint %q and no owner", rec, err, hint)
			}
			reg.ForgetServers()
			p, err := reg.EnsureActivation(ctx, "ns", "h", "")
			if err != nil {
				t.Fatal(err)
			}
			rec, _, err := reg.Actor(ctx, "ns", "h")
			if err != nil || rec.Hint != "" {
				t.Fatalf("placed record %+v %v: an owned record carries no hint", rec, err)
			}
			owner, epoch = map[string]*registry.Incarnation{"s1": s1, "s2": s2, "s3": s3}[p.ServerID], rec.Epoch
			return p
		}
		if p := move("s3"); p.ServerID != "s3" || !p.Hinted {
			t.Fatalf("hinted at s3: placed %+v", p)
		}
		if p := move("s9"); p.ServerID != "s2" || p.Hinted {
			t.Fatalf("hinted at a server that is not live: placed %+v, want s2 by score", p)
		}
		// s3 far above the others: following the hint would break bounded load.
		if err := reg.ReportLoad(ctx, s3, registry.Load{Activations: 40, Bytes: 40 << 10}); err != nil {
			t.Fatal(err)
		}
		if p := move("s3"); p.ServerID == "s3" || p.Hinted {
			t.Fatalf("hinted at the overloaded s3: placed %+v, want elsewhere", p)
		}
	})
}
