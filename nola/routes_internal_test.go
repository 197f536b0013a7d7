package nola

import (
	"strconv"
	"testing"
)

// Routes to one owner share one interned value, and dropping by value
// still compares routes, not pointers.
func TestRouteCacheInternsRoutes(t *testing.T) {
	var rc routeCache
	rc.init()
	r := route{addr: "s1:1", typ: "counter", owner: target{"s1", 3}}
	a, b := actorKey{"ns", "a"}, actorKey{"ns", "b"}
	rc.put(a, r)
	rc.put(b, route{addr: "s1:1", typ: "counter", owner: target{"s1", 3}}) // equal, not the same variable
	pa, pb := rc.shard(a).m[a], rc.shard(b).m[b]
	if pa == nil || pa != pb {
		t.Fatalf("equal routes of two actors are separate values (%p, %p): interning is off", pa, pb)
	}
	if got, ok := rc.get(a); !ok || got != r {
		t.Fatalf("get = %+v, %v; want %+v", got, ok, r)
	}
	other := r
	other.owner.inc = 4
	rc.drop(a, other) // a route of another incarnation: a keeps its own
	if _, ok := rc.get(a); !ok {
		t.Fatal("drop of a different route removed the entry")
	}
	rc.drop(a, r)
	if _, ok := rc.get(a); ok {
		t.Fatal("drop of the cached route left it")
	}
	if _, ok := rc.get(b); !ok {
		t.Fatal("dropping a's route removed b's, which shares its value")
	}
	rc.drop(b, route{})
	if _, ok := rc.get(b); ok {
		t.Fatal("unconditional drop left the route")
	}
}

// The interned set stays bounded however many incarnations come and go,
// and routes cached before it started over stay valid.
func TestRouteCacheInternBounded(t *testing.T) {
	var rc routeCache
	rc.init()
	first := route{addr: "s1:1", typ: "counter", owner: target{"s1", 0}}
	k0 := actorKey{"ns", "k0"}
	rc.put(k0, first)
	for i := 1; i <= 3*maxInterned; i++ {
		rc.put(actorKey{"ns", "k" + strconv.Itoa(i)}, route{addr: "s1:1", typ: "counter", owner: target{"s1", int64(i)}})
		if n := len(rc.interned); n > maxInterned {
			t.Fatalf("%d interned routes after %d incarnations, want ≤ %d", n, i, maxInterned)
		}
	}
	if got, ok := rc.get(k0); !ok || got != first {
		t.Fatalf("route cached before the set started over: %+v, %v; want %+v", got, ok, first)
	}
	rc.drop(k0, first)
	if _, ok := rc.get(k0); ok {
		t.Fatal("a route interned before the set started over cannot be dropped by value")
	}
}
