package nola

import (
	"context"
	"testing"
	"unsafe"
)

// within reports whether s's bytes lie inside line's.
func within(s, line string) bool {
	if len(s) == 0 {
		return false
	}
	p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(line)))
	return p >= b && p < b+uintptr(len(line))
}

// An actor's table entry, its activation and a client's cached route own
// their keys, and the activation its type name: an ID or type sliced out
// of a larger string (an HTTP path or request line) must not keep that
// string alive for as long as the actor lives.
func TestLiveKeysDoNotAliasTheCallersStrings(t *testing.T) {
	ctx := context.Background()
	c := residentCluster(t)
	// A fresh (heap) string per call, as a parsed request path is.
	line := string([]byte("POST /v1/ns/ns/actors/some-actor/invoke/inc?type=counter HTTP/1.1"))
	ns, id, typ := line[12:14], line[22:32], line[49:56]
	if ns != "ns" || id != "some-actor" || typ != "counter" {
		t.Fatalf("test slicing: %q %q %q", ns, id, typ)
	}
	if got, err := c.Client().Invoke(ctx, ns, id, typ, "inc", nil); err != nil || string(got) != "1" {
		t.Fatalf("invoke: %q, %v", got, err)
	}
	srv := c.Server(0)
	key := actorKey{"ns", "some-actor"}
	// The table's slots hold no key of their own: an entry's key is its
	// activation's (activation.key, from its ref).
	a := srv.table.Load().lookup(key)
	if a == nil {
		t.Fatal("no activation in the table")
	}
	keys := []actorKey{a.key()}
	rs := c.Client().routes.shard(key)
	rs.mu.Lock()
	for k := range rs.m {
		if k == key {
			keys = append(keys, k)
		}
	}
	rs.mu.Unlock()
	if within(a.typ, line) {
		t.Errorf("the activation's type %q aliases the caller's string", a.typ)
	}
	if len(keys) != 2 {
		t.Fatalf("found %d of the 2 keys (activation, route)", len(keys))
	}
	for i, k := range keys {
		if within(k.ns, line) || within(k.id, line) {
			t.Errorf("key %d (%q/%q) aliases the caller's string", i, k.ns, k.id)
		}
	}
}
