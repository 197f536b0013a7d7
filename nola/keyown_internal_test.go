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

// insideActivation reports whether s's bytes lie inside the activation
// object a (its inline key buffer).
func insideActivation(s string, a *activation) bool {
	if len(s) == 0 {
		return false
	}
	p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(a))
	return p >= b && p < b+unsafe.Sizeof(*a)
}

// An activation's key bytes are inline (activation.keyBuf): a key kept
// past the activation's life — the doubt an unknown commit or release
// leaves, a locality entry — must own its bytes, or it keeps the dropped
// activation alive, and with it its actor, KV cache and pending state.
func TestKeptKeysDoNotAliasTheActivation(t *testing.T) {
	ctx := context.Background()
	c := residentCluster(t)
	if _, err := c.Client().Invoke(ctx, "ns", "kept", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	srv := c.Server(0)
	a := srv.table.Load().lookup(actorKey{"ns", "kept"})
	if a == nil {
		t.Fatal("no activation in the table")
	}
	if !insideActivation(a.actorID(), a) {
		t.Fatal("test premise: the key is not inline")
	}
	srv.markDoubt(a.inc, a.key(), a.epoch)
	l := srv.lease.Load()
	l.mu.Lock()
	if len(l.doubt) != 1 {
		t.Errorf("%d keys in doubt, want 1", len(l.doubt))
	}
	for k := range l.doubt {
		if insideActivation(k.ns, a) || insideActivation(k.id, a) {
			t.Errorf("doubt key %q/%q aliases the activation", k.ns, k.id)
		}
	}
	l.mu.Unlock()
	srv.loc.record(a, "other", 0, 10)
	srv.loc.mu.Lock()
	if len(srv.loc.actors) != 1 {
		t.Errorf("%d locality entries, want 1", len(srv.loc.actors))
	}
	for k := range srv.loc.actors {
		if insideActivation(k.ns, a) || insideActivation(k.id, a) {
			t.Errorf("locality key %q/%q aliases the activation", k.ns, k.id)
		}
	}
	srv.loc.mu.Unlock()
}

// A route put over an existing entry keeps a key of its own too: a Go map
// assignment stores the key it is given even when the entry exists.
func TestRoutePutOverAnEntryOwnsItsKey(t *testing.T) {
	var rc routeCache
	rc.init()
	rc.put(actorKey{"ns", "some-actor"}, route{addr: "a"})
	line := string([]byte("POST /v1/ns/ns/actors/some-actor/invoke/inc HTTP/1.1"))
	k := actorKey{line[12:14], line[22:32]}
	rc.put(k, route{addr: "b"})
	sh := rc.shard(k)
	for kk, r := range sh.m {
		if kk != k {
			continue
		}
		if r.addr != "b" {
			t.Errorf("route %q, want b", r.addr)
		}
		if within(kk.ns, line) || within(kk.id, line) {
			t.Errorf("the route's key %q/%q aliases the caller's string", kk.ns, kk.id)
		}
	}
}

type oneWorkerResolver struct{}

func (oneWorkerResolver) ResolveWorker(context.Context, string, string) (WorkerFunc, error) {
	return func(*WorkerContext, string, []byte) ([]byte, error) { return nil, nil }, nil
}

// A resolved worker type lives as long as the server: its key and names
// must not alias the caller's strings (a request line, or the calling
// activation's inline key through Context.CallWorker).
func TestResolvedWorkerTypesOwnTheirNames(t *testing.T) {
	s := &Server{}
	s.cfg.WorkerResolver = oneWorkerResolver{}
	line := string([]byte("POST /v1/ns/ns/workers/resize/invoke/go HTTP/1.1"))
	ns, typ := line[12:14], line[23:29]
	if ns != "ns" || typ != "resize" {
		t.Fatalf("test slicing: %q %q", ns, typ)
	}
	wt, err := s.workerType(context.Background(), ns, typ)
	if err != nil {
		t.Fatal(err)
	}
	if within(wt.ns, line) || within(wt.name, line) {
		t.Errorf("the worker type's names %q/%q alias the caller's string", wt.ns, wt.name)
	}
	for k := range s.resolved.m {
		if within(k.ns, line) || within(k.id, line) {
			t.Errorf("the worker type's key %q/%q aliases the caller's string", k.ns, k.id)
		}
	}
}
