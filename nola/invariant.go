package nola

import (
	"bytes"
	"fmt"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

// Invariants.
//
// The engine asserts what its correctness rests on: an activation's state
// changes only along the edges of one transition table, by compare-and-swap;
// its counters never go negative; an epoch the server moves an actor to is
// greater than the one whose commit it fences off; a commit's writes are in
// strictly ascending key order (sorted and unique). A broken assertion is a
// bug in nola, never a fault of the environment, so what happens next
// depends on who is watching:
//
//   - under the deterministic runtime (rt/simrt) it panics: the simulator
//     reports the seed, which replays the failure exactly;
//   - under any other runtime (production) it fences the server: the lease
//     is given up and every activation dropped, as after a lost lease, so
//     that state the engine can no longer vouch for serves nothing more; the
//     heartbeat then registers a new incarnation with a clean table.
//
// The deliberate protocol bugs of ServerConfig.Mutations can break some of
// these (a timer that runs on a dropped activation charges memory the drop
// already returned): with any of them set, a violation is only logged, so
// that the simulator's oracle, which those bugs exist to test, is the one
// that catches them.

// invariantMode is how a server reacts to a broken invariant.
type invariantMode int8

const (
	invariantFence invariantMode = iota // production: fence the server
	invariantPanic                      // deterministic runtime: fail the seed
	invariantLog                        // deliberate bugs are on: the oracle decides
)

// simulatedNode is what tells the deterministic runtime apart: only a
// simulated node can be crashed, paused and resumed by its world (see
// rt/simrt.Node; invariant_test.go pins that it matches).
type simulatedNode interface {
	rt.Runtime
	Crash()
	Pause()
	Resume()
}

func invariantModeFor(r rt.Runtime, m mutation.Set) invariantMode {
	switch {
	case !m.Empty():
		return invariantLog
	case isSimulated(r):
		return invariantPanic
	default:
		return invariantFence
	}
}

func isSimulated(r rt.Runtime) bool {
	_, ok := r.(simulatedNode)
	return ok
}

// violated reports a broken invariant: see the comment at the top of this
// file. The caller must hold no mutex the fence takes (a shard's, an
// activation's timer mutex); an activation's lock (its Sema) is fine.
func (s *Server) violated(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch s.invariants {
	case invariantPanic:
		panic("nola: invariant violated on server " + s.cfg.ID + ": " + msg)
	case invariantLog:
		s.log.Error("invariant violated (a deliberate protocol bug is on)", "violation", msg)
		return
	}
	s.log.Error("invariant violated: a bug in nola; fencing this server", "violation", msg)
	if l := s.lease.Load(); l != nil {
		s.fence(l, FenceInvariant, "invariant violated: "+msg)
	}
}

// checkCount asserts that a counter the engine just changed is not
// negative.
func (s *Server) checkCount(what string, n int64) {
	if n < 0 {
		s.violated("%s is negative: %d", what, n)
	}
}

// checkBumped asserts that a Bump moved an actor past the epoch whose
// commit was in doubt (epochs only grow: the late commit's fence compares
// the old one).
func (s *Server) checkBumped(k actorKey, doubted, bumped int64) {
	if bumped <= doubted {
		s.violated("actor %s/%s: bumped to epoch %d, not past the epoch in doubt %d", k.ns, k.id, bumped, doubted)
	}
}

// checkWrites asserts that a commit's writes are in strictly ascending key
// order: sorted (commits must not depend on map order) and unique (a
// store transaction may not put one key twice).
func (s *Server) checkWrites(k actorKey, writes []registry.KVWrite) {
	for i := 1; i < len(writes); i++ {
		if bytes.Compare(writes[i-1].Key, writes[i].Key) >= 0 {
			s.violated("actor %s/%s: commit writes out of order at %d: %q then %q", k.ns, k.id, i, writes[i-1].Key, writes[i].Key)
			return
		}
	}
}
