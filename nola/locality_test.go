package nola_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
)

// peerTypes has "peer": "call" invokes "noop" on the actor its payload
// names, from actor to actor.
func peerTypes() map[string]nola.Factory {
	types := blobTypes()
	types["peer"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			if op == "call" {
				return ctx.Invoke(string(payload), "peer", "noop", nil)
			}
			return nil, nil
		}), nil
	}
	return types
}

const locInterval = 2 * time.Second

func localityOn(enabled bool) func(int, *nola.ServerConfig) {
	return func(_ int, cfg *nola.ServerConfig) {
		cfg.Locality = nola.LocalityConfig{
			Enabled: enabled, Interval: locInterval, SampleEvery: 1, MinCalls: 4, Cooldown: 2 * locInterval,
		}
	}
}

// pairRun places two peers on different servers (trying further pairs of
// IDs until placement splits one), then drives rounds explicitly: each
// round the peers call each other (or only x calls y when oneWay), then
// virtual time advances one locality interval, which is one round of each
// server's mover. It returns the round the pair first shared a server (0:
// never in rounds), their initial servers and the moves counted over
// rounds+extra rounds, failing if the pair ever came apart again. A
// one-way caller is the actor on the lower server ID.
func pairRun(t *testing.T, e *simtest.Env, oneWay bool, rounds, extra int) (met int, from [2]int, moves int64) {
	var x, y string
	for i := 0; ; i++ {
		x, y = fmt.Sprint("x", i), fmt.Sprint("y", i)
		e.MustInvoke(x, "peer", "noop", nil)
		e.MustInvoke(y, "peer", "noop", nil)
		if from = [2]int{e.C.Host(ns, x), e.C.Host(ns, y)}; from[0] != from[1] {
			break
		}
		if i == 20 {
			t.Fatal("placement never split a pair over two servers")
		}
	}
	if oneWay && from[0] > from[1] {
		// The caller on the lower server ID: the side that trails.
		x, y, from = y, x, [2]int{from[1], from[0]}
	}
	for round := 1; round <= rounds+extra; round++ {
		for range 6 {
			peerCall(t, e, x, y)
			if !oneWay {
				peerCall(t, e, y, x)
			}
		}
		e.Sleep(locInterval)
		together := e.C.Host(ns, x) == e.C.Host(ns, y) && e.C.Host(ns, x) >= 0
		switch {
		case together && met == 0:
			met = round
		case !together && met > 0:
			t.Fatalf("round %d: the pair met in round %d and came apart again (ping-pong)", round, met)
		}
		if met == 0 && round == rounds {
			break
		}
	}
	for i := range e.C.Size() {
		moves += e.C.Server(i).Stats().LocalityMoves
	}
	return met, from, moves
}

// peerCall makes from call to, retrying (as a patient client would) while
// an actor is on its way between servers.
func peerCall(t *testing.T, e *simtest.Env, from, to string) {
	t.Helper()
	start := e.Driver.Mono()
	for {
		_, err := e.Invoke(from, "peer", "call", []byte(to))
		if err == nil {
			return
		}
		if e.Driver.Mono()-start > 10*time.Second {
			t.Fatalf("%s calls %s: still failing after 10s: %v", from, to, err)
		}
		e.Sleep(100 * time.Millisecond)
	}
}

// Two actors on different servers that call each other end up on one
// server within a few rounds and stay there: one move, the lighter
// side's — with equal loads, the actor on the higher server ID moves to
// the lower (the lower ID wins). With moves disabled the pair stays apart
// over the same rounds, so the test fails without them.
func TestLocalityBringsCallingPairTogether(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprint("enabled=", enabled), func(t *testing.T) {
			runSim(t, 21, 2, peerTypes(), localityOn(enabled), func(e *simtest.Env) {
				met, from, moves := pairRun(t, e, false, 8, 10)
				if !enabled {
					if met != 0 || moves != 0 {
						t.Fatalf("with locality off the pair met in round %d after %d moves", met, moves)
					}
					return
				}
				if met == 0 {
					t.Fatalf("the pair on s%d and s%d never met in 8 rounds", from[0], from[1])
				}
				if moves != 1 {
					t.Fatalf("%d locality moves, want exactly 1 (the lighter side, once)", moves)
				}
				if h := e.C.Host(ns, "x0"); h != min(from[0], from[1]) {
					t.Fatalf("the pair from s%d/s%d settled on s%d: equal loads, the lower server ID wins", from[0], from[1], h)
				}
				t.Logf("pair from s%d/s%d together after %d rounds, stayed 10 more; %d move", from[0], from[1], met, moves)
			})
		})
	}
}

// Calls that go one way are seen by the caller's server only; if that
// side trails (the lower server ID, equal loads), it moves its actor
// itself once the edge has stayed hot for the trailing rounds.
func TestLocalityOneWayCallsConverge(t *testing.T) {
	runSim(t, 22, 2, peerTypes(), localityOn(true), func(e *simtest.Env) {
		met, from, moves := pairRun(t, e, true, 12, 6)
		if met == 0 || moves != 1 {
			t.Fatalf("one-way pair from s%d/s%d: met in round %d with %d moves, want met with 1 move", from[0], from[1], met, moves)
		}
		t.Logf("one-way pair from s%d/s%d together after %d rounds", from[0], from[1], met)
	})
}
