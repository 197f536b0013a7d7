package nola

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// The deterministic runtime is told apart by its node's methods; a rename
// in rt/simrt must not silently turn the simulator's panics into fences.
var _ simulatedNode = (*simrt.Node)(nil)

type echoActor struct{}

func (echoActor) Invoke(_ *Context, _ string, p []byte) ([]byte, error) { return p, nil }

func invariantTypes() map[string]Factory {
	return map[string]Factory{"echo": func(Ref) (Actor, error) { return echoActor{}, nil }}
}

// simServer is a server on a simulated node, not started: enough to run the
// assertions, which must panic there.
func simServer(t *testing.T, m mutation.Set) *Server {
	t.Helper()
	node := simrt.New(1).Node("s1")
	s, err := NewServer(ServerConfig{
		ID: "s1", Addr: "local://s1", Runtime: node, Store: memkv.New(rt.NewReal(), memkv.Options{}),
		Transport: NewLocalNetwork(false).Transport(node), Types: invariantTypes(), Mutations: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// realServer is a started server on the production runtime.
func realServer(t *testing.T, beforeStart func(*Server)) *Server {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	net := NewLocalNetwork(false)
	s, err := NewServer(ServerConfig{
		ID: "s1", Addr: "local://s1", Runtime: r, Store: store,
		Transport: net.Transport(r), Types: invariantTypes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	net.Listen("local://s1", s, r)
	if beforeStart != nil {
		beforeStart(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = store.Close()
	})
	return s
}

// wantPanic runs f and fails unless it panics with a message containing want.
func wantPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic; want one mentioning %q", want)
		}
		if msg, _ := r.(string); !strings.Contains(msg, "invariant violated") || !strings.Contains(msg, want) {
			t.Fatalf("panic %v; want an invariant violation mentioning %q", r, want)
		}
	}()
	f()
}

func readyActivation(s *Server, id string) *activation {
	a := s.newActivation(s.table.Load(), actorKey{"ns", id}, "echo", nil)
	a.state.Store(stateReady)
	return a
}

func TestInvariantModeFollowsTheRuntime(t *testing.T) {
	node := simrt.New(1).Node("n")
	if got := invariantModeFor(node, mutation.Set{}); got != invariantPanic {
		t.Errorf("simulated node: mode %d, want panic", got)
	}
	if got := invariantModeFor(rt.NewReal(), mutation.Set{}); got != invariantFence {
		t.Errorf("real runtime: mode %d, want fence", got)
	}
	if got := invariantModeFor(node, mutation.Of(mutation.TimerIgnoresFence)); got != invariantLog {
		t.Errorf("simulated node with a mutation: mode %d, want log", got)
	}
}

func TestTransitionTable(t *testing.T) {
	legal := map[[2]int32]bool{
		{stateActivating, stateReady}:   true,
		{stateActivating, stateEvicted}: true,
		{stateActivating, stateFenced}:  true,
		{stateReady, stateEvicted}:      true,
		{stateReady, stateFenced}:       true,
	}
	s := simServer(t, mutation.Set{})
	for from := int32(0); from < nStates; from++ {
		for to := int32(0); to < nStates; to++ {
			name := stateName(from) + "→" + stateName(to)
			if got := legalTransition(from, to); got != legal[[2]int32{from, to}] {
				t.Errorf("%s: legal = %v", name, got)
				continue
			}
			a := readyActivation(s, name)
			a.state.Store(from)
			if legal[[2]int32{from, to}] {
				if !a.transition(from, to) || a.state.Load() != to {
					t.Errorf("%s: legal transition did not happen (state %s)", name, stateName(a.state.Load()))
				}
				// Compare-and-swap: from a state that is no longer
				// from, nothing moves.
				if a.transition(from, to) && from != to {
					t.Errorf("%s: transition from a state a is no longer in succeeded", name)
				}
				continue
			}
			wantPanic(t, "illegal transition "+stateName(from)+" → "+stateName(to), func() { a.transition(from, to) })
			if a.state.Load() != from {
				t.Errorf("%s: illegal transition changed the state to %s", name, stateName(a.state.Load()))
			}
		}
	}
	if legalTransition(-1, stateReady) || legalTransition(stateReady, nStates) {
		t.Error("out-of-range states are legal")
	}
}

func TestDropOfADroppedActivationIsANoOp(t *testing.T) {
	s := simServer(t, mutation.Set{})
	a := readyActivation(s, "a")
	s.activations.Store(1)
	s.drop(a, stateEvicted)
	s.drop(a, stateFenced) // a fence racing the eviction: no second count
	if st := a.state.Load(); st != stateEvicted {
		t.Errorf("state %s after evict then fence, want evicted (final states stay)", stateName(st))
	}
	if n := s.activations.Load(); n != 0 {
		t.Errorf("activations = %d, want 0", n)
	}
	wantPanic(t, "dropped to ready", func() { s.drop(readyActivation(s, "b"), stateReady) })
}

func TestNegativeActivationCountPanicsUnderSimulation(t *testing.T) {
	s := simServer(t, mutation.Set{})
	a := readyActivation(s, "a")
	// The bug this catches: an activation dropped that was never
	// counted (or counted once and dropped twice).
	s.activations.Store(0)
	wantPanic(t, "activations is negative: -1", func() { s.drop(a, stateEvicted) })
}

func TestNegativeChargePanicsUnderSimulation(t *testing.T) {
	s := simServer(t, mutation.Set{})
	a := readyActivation(s, "a")
	s.charge(a, 10)
	wantPanic(t, "memory charged to a is negative: -5", func() { s.charge(a, -15) })
}

func TestCommitWritesMustBeSortedAndUnique(t *testing.T) {
	s := simServer(t, mutation.Set{})
	k := actorKey{"ns", "a"}
	w := func(keys ...string) []registry.KVWrite {
		out := make([]registry.KVWrite, len(keys))
		for i, key := range keys {
			out[i] = registry.KVWrite{Key: []byte(key)}
		}
		return out
	}
	s.checkWrites(k, w())
	s.checkWrites(k, w("a"))
	s.checkWrites(k, w("a", "ab", "b"))
	wantPanic(t, `out of order at 1: "b" then "a"`, func() { s.checkWrites(k, w("b", "a")) })
	wantPanic(t, `out of order at 2: "b" then "b"`, func() { s.checkWrites(k, w("a", "b", "b")) })

	// What flush commits comes from sortedWrites: sorted whatever the
	// map's order.
	var txn kvTxn
	txn.writes = map[string]pendingWrite{}
	for _, key := range []string{"m", "c", "x", "a", "q"} {
		txn.writes[key] = pendingWrite{value: []byte(key)}
	}
	s.checkWrites(k, txn.sortedWrites())
}

func TestBumpMustPassTheEpochInDoubt(t *testing.T) {
	s := simServer(t, mutation.Set{})
	k := actorKey{"ns", "a"}
	s.checkBumped(k, 4, 5)
	wantPanic(t, "bumped to epoch 4, not past the epoch in doubt 4", func() { s.checkBumped(k, 4, 4) })
	wantPanic(t, "bumped to epoch 3", func() { s.checkBumped(k, 4, 3) })
}

func TestDeliberateBugsOnlyLogViolations(t *testing.T) {
	s := simServer(t, mutation.Of(mutation.TimerIgnoresFence))
	a := readyActivation(s, "a")
	if a.transition(stateFenced, stateReady) {
		t.Error("an illegal transition happened")
	}
	if st := a.state.Load(); st != stateReady {
		t.Errorf("state %s, want ready (unchanged)", stateName(st))
	}
}

// fencesForInvariant waits for nothing: the fence is synchronous, so its
// count is in the stats when the violating call returns.
func fencesForInvariant(s *Server) int64 { return s.Stats().KeepAlive.Fences[FenceInvariant] }

func TestIllegalTransitionFencesInProduction(t *testing.T) {
	s := realServer(t, nil)
	ctx := context.Background()
	if _, err := s.Client().Invoke(ctx, "ns", "a", "echo", "op", nil); err != nil {
		t.Fatal(err)
	}
	inc := s.Incarnation()
	a := s.table.Load().sorted()
	if len(a) != 1 || a[0].state.Load() != stateReady {
		t.Fatalf("want one ready activation, have %d", len(a))
	}
	if a[0].transition(stateReady, stateActivating) {
		t.Fatal("illegal transition happened")
	}
	if n := fencesForInvariant(s); n != 1 {
		t.Fatalf("invariant fences = %d, want 1", n)
	}
	if st := a[0].state.Load(); st != stateFenced {
		t.Errorf("activation state %s after the fence, want fenced", stateName(st))
	}
	if now := s.Incarnation(); now == inc {
		t.Errorf("still incarnation %d after the fence", now)
	}
	if n := s.Stats().Activations; n != 0 {
		t.Errorf("%d activations after the fence, want 0", n)
	}
}

func TestIncarnationGoingBackFencesInProduction(t *testing.T) {
	// As if the store had handed out a number this server used before.
	s := realServer(t, func(s *Server) { s.lastInc.Store(1 << 40) })
	if n := fencesForInvariant(s); n != 1 {
		t.Fatalf("invariant fences = %d, want 1", n)
	}
}
