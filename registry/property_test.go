package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt/simrt"
)

// deadlineHolds reports whether a server fences itself no later (in real
// time) than the store expires its lease. Clocks: the server's runs at rate
// rs, the store's at rk (ticks per real second); the keep-alive was sent at
// real time 0 and processed by the store after latency.
func deadlineHolds(ttl time.Duration, rho float64, margin, latency time.Duration, rs, rk float64) bool {
	local := registry.LocalDeadline(0, ttl, rho, margin) // on the server's clock
	fenceAt := float64(local) / rs                       // real time
	expireAt := float64(latency) + float64(ttl)/rk       // real time
	return fenceAt <= expireAt
}

// The clock argument of rule 1 (docs/proofs/single-activation.md), as
// algebra: if the server's clock runs at least (1-ρ) as fast as the store's,
// whatever the absolute rates and the network latency, the deadline
// LocalDeadline computes comes first. That the engine feeds it the right
// t_send is checked by the simulator (drift within and beyond ρ).
func TestLocalDeadlineFormulaPrecedesStoreExpiry(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ttl := time.Duration(rapid.Int64Range(int64(time.Second), int64(time.Minute)).Draw(t, "ttl"))
		rho := rapid.Float64Range(0, 0.3).Draw(t, "rho")
		margin := time.Duration(rapid.Int64Range(0, int64(ttl/10)).Draw(t, "margin"))
		latency := time.Duration(rapid.Int64Range(0, int64(time.Second)).Draw(t, "latency"))
		rk := rapid.Float64Range(0.5, 2).Draw(t, "storeRate")
		rs := rk * rapid.Float64Range(1-rho, 2).Draw(t, "relativeRate")
		if !deadlineHolds(ttl, rho, margin, latency, rs, rk) {
			t.Fatalf("server fences after the store expires its lease")
		}
	})
}

// Beyond ρ the argument breaks: the property above is not vacuous.
func TestLocalDeadlineFailsBeyondRho(t *testing.T) {
	if deadlineHolds(10*time.Second, 0.01, 0, 0, 0.9, 1) {
		t.Fatal("a server clock 10% slow with ρ=1% must be able to outlive its lease")
	}
}

// A random schedule of registrations, lease expiries, placements, releases,
// epoch bumps, deletes (by the owner, or by a client when no owner is
// live), creations without a read first (CreateActor) and commits from three servers, on memkv under the
// deterministic runtime. After every step: at most one incarnation owns the
// actor (its record names it and its server record is current); it can
// commit and nobody else can; and no owner record that was ever superseded
// holds again — replaying any earlier fence fails (epochs never repeat).
func TestAtMostOneConfirmedOwner(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		seed := rapid.Uint64().Draw(rt, "seed")
		steps := rapid.IntRange(5, 40).Draw(rt, "steps")
		var actions []int
		for range steps {
			actions = append(actions, rapid.IntRange(0, 9).Draw(rt, "action"))
		}
		var servers []int
		for range steps {
			servers = append(servers, rapid.IntRange(0, 2).Draw(rt, "server"))
		}
		if msg := runOwnershipSchedule(seed, actions, servers, registry.Options{}); msg != "" {
			rt.Fatal(msg)
		}
	})
}

func runOwnershipSchedule(seed uint64, actions, servers []int, opts registry.Options) string {
	const lease = 3 * time.Second
	w := simrt.New(seed)
	var failure string
	err := w.Run(func() {
		ctx := context.Background()
		node := w.Node("registry")
		store := memkv.New(w.Node("store"), memkv.Options{})
		opts.ServerListTTL = time.Nanosecond
		reg := registry.New(store, node, opts)
		incs := make([]*registry.Incarnation, 3)
		sid := func(i int) string { return fmt.Sprintf("s%d", i) }
		type fence struct {
			inc *registry.Incarnation
			rec []byte
		}
		var (
			past       []fence  // every owner record that held at some step
			prev       []byte   // the record that held after the previous step
			superseded [][]byte // records that held once and then stopped
		)
		current := func(inc *registry.Incarnation) bool {
			members, err := reg.Servers(ctx)
			if err != nil {
				failure = err.Error()
				return false
			}
			for _, m := range members {
				if m.Record.ID == inc.ServerID && m.Record.Incarnation == inc.Num {
					return true
				}
			}
			return false
		}
		for step, act := range actions {
			i := servers[step]
			switch act {
			case 0: // (re)register
				inc, err := reg.Register(ctx, sid(i), sid(i), lease)
				switch {
				case errors.Is(err, registry.ErrServerIDInUse):
					// Its previous incarnation is still live.
				case err != nil:
					failure = err.Error()
					return
				default:
					incs[i] = inc
				}
			case 1: // time passes; only server i keeps its lease alive
				_ = node.Sleep(ctx, lease/2)
				if incs[i] != nil {
					_ = reg.KeepAlive(ctx, incs[i])
				}
			case 2: // a client places the actor
				if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil &&
					!errors.Is(err, registry.ErrNoServers) {
					failure = "ensure: " + err.Error()
					return
				}
			case 3: // server i releases it (if it owns it)
				if incs[i] != nil {
					if e, g, ok, _ := reg.Confirm(ctx, incs[i], "ns", "a", "t"); ok {
						_ = reg.Release(ctx, incs[i], "ns", "a", "t", e, g)
					}
				}
			case 4: // server i leaves
				if incs[i] != nil {
					_ = reg.Deregister(ctx, incs[i])
				}
			case 5: // a long pause: every lease may expire
				_ = node.Sleep(ctx, 2*lease)
			case 6: // server i bumps the epoch (as after an unknown commit)
				if incs[i] != nil {
					_, _, _, _ = reg.Bump(ctx, incs[i], "ns", "a", "t")
				}
			case 7: // server i deletes the actor (if it owns it)
				if incs[i] != nil {
					_, _ = reg.Delete(ctx, incs[i], "ns", "a")
				}
			case 8: // a client deletes it (only if no owner is live)
				_, _ = reg.Delete(ctx, nil, "ns", "a")
			case 9: // a client creates it, committing without a read first
				if _, err := reg.CreateActor(ctx, "ns", "a", "t", nil); err != nil &&
					!errors.Is(err, registry.ErrNoServers) {
					failure = "create: " + err.Error()
					return
				}
			}
			owners := 0
			var holding []byte
			for j, inc := range incs {
				if inc == nil {
					continue
				}
				e, g, ok, err := reg.Confirm(ctx, inc, "ns", "a", "t")
				if err != nil {
					failure = err.Error()
					return
				}
				owns := ok && current(inc)
				rec := inc.OwnerRecord("t", e, g)
				write := []registry.KVWrite{{Key: []byte("k"), Value: []byte(fmt.Sprint(step))}}
				cerr := reg.CommitKV(ctx, inc, "ns", "a", rec, write)
				if owns {
					owners++
					holding = rec
					past = append(past, fence{inc, rec})
					if cerr != nil {
						failure = fmt.Sprintf("step %d: owner %s#%d cannot commit: %v", step, sid(j), inc.Num, cerr)
						return
					}
				} else if !errors.Is(cerr, registry.ErrFenced) {
					failure = fmt.Sprintf("step %d: non-owner %s#%d committed (err %v)", step, sid(j), inc.Num, cerr)
					return
				}
			}
			if owners > 1 {
				failure = fmt.Sprintf("step %d: %d incarnations own the actor", step, owners)
				return
			}
			if !bytes.Equal(holding, prev) {
				if prev != nil {
					superseded = append(superseded, prev)
				}
				for _, old := range superseded {
					if holding != nil && bytes.Equal(old, holding) {
						failure = fmt.Sprintf("step %d: a superseded owner record holds again (an epoch repeated)", step)
						return
					}
				}
				prev = holding
			}
			// Every superseded fence must fail now.
			for _, f := range past {
				if bytes.Equal(f.rec, holding) {
					continue
				}
				write := []registry.KVWrite{{Key: []byte("k"), Value: []byte("replayed")}}
				if err := reg.CommitKV(ctx, f.inc, "ns", "a", f.rec, write); !errors.Is(err, registry.ErrFenced) {
					failure = fmt.Sprintf("step %d: a superseded fence of %s#%d held again (err %v)", step, f.inc.ServerID, f.inc.Num, err)
					return
				}
			}
		}
	})
	if err != nil {
		return err.Error()
	}
	return failure
}

// The schedule checker is not vacuous: with the fence or the incarnation
// check switched off, random schedules find a violation quickly.
func TestOwnershipCheckerCatchesBrokenProtocol(t *testing.T) {
	for name, opts := range map[string]registry.Options{
		"skip fence":          {Mutations: mutation.Of(mutation.SkipStoreFence)},
		"ignore incarnation":  {Mutations: mutation.Of(mutation.IgnoreIncarnation)},
		"reset epochs":        {Mutations: mutation.Of(mutation.ResetEpochs)},
		"skip create compare": {Mutations: mutation.Of(mutation.SkipCreateCompare)},
	} {
		t.Run(name, func(t *testing.T) {
			w := simrt.New(99)
			rng := w.Rand()
			for try := range 500 {
				actions := make([]int, 30)
				servers := make([]int, 30)
				for i := range actions {
					actions[i], servers[i] = int(rng.IntN(10)), int(rng.IntN(3))
				}
				if msg := runOwnershipSchedule(uint64(try), actions, servers, opts); msg != "" {
					t.Logf("caught after %d schedules: %s", try+1, msg)
					return
				}
			}
			t.Fatal("500 random schedules found no violation with the protocol broken")
		})
	}
}
