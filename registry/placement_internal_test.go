package registry

import (
	"fmt"
	"math"
	"testing"

	"pgregory.net/rapid"

	"github.com/nolaproject/nola/rt"
)

func member(id string, l Load) Member {
	return Member{Record: ServerRecord{ID: id, Incarnation: 1}, Load: l}
}

// place runs n placements against list the way EnsureActivation does
// between two list refreshes (each counted in placed) and returns how many
// went where.
func place(r *Registry, list []Member, n int) map[string]int64 {
	got := map[string]int64{}
	for range n {
		m, _, ok := r.choose(list, "")
		if !ok {
			panic("no server")
		}
		for i := range list {
			if list[i].Record.ID == m.Record.ID {
				list[i].placed++
			}
		}
		got[m.Record.ID]++
	}
	return got
}

func chooser(p PlacementPolicy) *Registry {
	return New(nil, rt.NewReal(), Options{Placement: p})
}

// The score weighs memory as well as counts: with equal activation counts
// the server holding less memory wins, and a server with a few huge
// activations loses to one with many small ones; with the memory weight
// at zero only counts matter.
func TestPlacementScore(t *testing.T) {
	list := []Member{
		member("big", Load{Activations: 2, Bytes: 128 << 20}),
		member("small", Load{Activations: 10, Bytes: 10 << 10}),
	}
	if m, _, _ := chooser(PlacementPolicy{}).choose(list, ""); m.Record.ID != "small" {
		t.Fatalf("default policy chose %s, want small (the other holds 128 MiB)", m.Record.ID)
	}
	if m, _, _ := chooser(PlacementPolicy{Activations: 1}).choose(list, ""); m.Record.ID != "big" {
		t.Fatalf("count-only policy chose %s, want big (fewer activations)", m.Record.ID)
	}
	busy := []Member{
		member("hot", Load{Activations: 5, BusyPPM: 900_000}),
		member("cold", Load{Activations: 5, BusyPPM: 1_000}),
	}
	if m, _, _ := chooser(PlacementPolicy{}).choose(busy, ""); m.Record.ID != "cold" {
		t.Fatalf("chose %s, want cold (less CPU)", m.Record.ID)
	}
	if m, _, _ := chooser(PlacementPolicy{Activations: 1, Memory: 1}).choose(busy, ""); m.Record.ID == "" {
		t.Fatal("no choice")
	}
}

// A server whose memory reached its budget takes nothing while another
// can; when all did, placement still succeeds.
func TestPlacementAvoidsServersOverBudget(t *testing.T) {
	list := []Member{
		member("full", Load{Activations: 0, Bytes: 64 << 20, Budget: 32 << 20}),
		member("ok", Load{Activations: 50, Bytes: 1 << 20, Budget: 32 << 20}),
	}
	if got := place(chooser(PlacementPolicy{Activations: 1}), list, 10); got["full"] != 0 {
		t.Fatalf("placements %v: want none on the server over its budget", got)
	}
	list[1].Load.Bytes = 40 << 20
	if _, _, ok := chooser(PlacementPolicy{}).choose(list, ""); !ok {
		t.Fatal("every server over budget: placement refused, want the best of them")
	}
}

// Bounded load: a fresh server among loaded ones scores lowest on every
// placement until load reports catch up, yet it never receives more than
// ceil((1+ε)·(P+1)/n) of the P placements so far. With the bound lifted
// (ε huge) it receives all of them: the check is not vacuous.
func TestPlacementBoundedLoad(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 8).Draw(t, "servers")
		eps := rapid.Float64Range(0, 2).Draw(t, "epsilon")
		list := []Member{member("fresh", Load{})}
		for i := 1; i < n; i++ {
			list = append(list, member(fmt.Sprint("s", i), Load{
				Activations: rapid.Int64Range(0, 1000).Draw(t, "acts"),
				Bytes:       rapid.Int64Range(0, 1<<30).Draw(t, "bytes"),
			}))
		}
		r := chooser(PlacementPolicy{Activations: 1, Memory: 1, Epsilon: eps})
		total := rapid.IntRange(1, 200).Draw(t, "placements")
		for p := 0; p < total; p++ {
			place(r, list, 1)
			bound := int64(math.Ceil((1 + eps) * float64(p+1) / float64(n)))
			for _, m := range list {
				if m.placed > bound {
					t.Fatalf("after %d placements %s has %d, bound ceil((1+%.2f)·%d/%d) = %d", p+1, m.Record.ID, m.placed, eps, p+1, n, bound)
				}
			}
		}
	})
	list := []Member{member("fresh", Load{}), member("a", Load{Activations: 100, Bytes: 1 << 20}), member("b", Load{Activations: 100, Bytes: 1 << 20})}
	if got := place(chooser(PlacementPolicy{Activations: 1, Memory: 1, Epsilon: 1e9}), list, 30); got["fresh"] != 30 {
		t.Fatalf("without the bound the fresh server got %v of 30, want all: the bound test would be vacuous", got)
	}
}

// Weights and ε must be finite and non-negative.
func TestPlacementPolicyValidate(t *testing.T) {
	for _, p := range []PlacementPolicy{{Activations: -1}, {Memory: math.NaN()}, {Epsilon: math.Inf(1)}, {Epsilon: 0.5}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	for _, p := range []PlacementPolicy{DefaultPlacement, {}, {CPU: 1}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}
