package nola

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// A server's own client runs calls to an actor that server hosts straight
// from the server's table: no route is looked up or cached (the route
// cache stays empty), and the checks of the routed path still apply.
func TestServerClientCallsResidentActorsDirectly(t *testing.T) {
	ctx := context.Background()
	c := residentCluster(t)
	if _, err := c.Client().Invoke(ctx, "ns", "a", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	sc := c.Server(0).Client()
	key := actorKey{"ns", "a"}
	got, err := sc.Invoke(ctx, "ns", "a", "counter", "inc", nil)
	if err != nil || string(got) != "2" {
		t.Fatalf("server's client: %q, %v; want 2", got, err)
	}
	if _, ok := sc.routes.get(key); ok {
		t.Fatal("the server's client routed a call to an actor its server hosts (a route is cached)")
	}
	// Its checks: a bad operation name, a payload over the limit, a
	// type mismatch, a call cycle.
	if _, err := sc.Invoke(ctx, "ns", "a", "counter", "", nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("empty operation: %v, want bad_request", err)
	}
	if _, err := sc.Invoke(ctx, "ns", "a", "counter", "inc", make([]byte, sc.limits.MaxPayloadBytes+1)); CodeOf(err) != CodeTooLarge {
		t.Errorf("payload over the limit: %v, want too_large", err)
	}
	if _, err := sc.Invoke(ctx, "ns", "a", "other", "inc", nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("another type: %v, want bad_request", err)
	}
	if _, err := sc.invokeGated(ctx, Request{Namespace: "ns", ActorID: "a", Operation: "inc", Chain: []string{"a"}}, nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("call cycle: %v, want bad_request", err)
	}
	gateErr := errors.New("past the lease deadline")
	if _, err := sc.invokeGated(ctx, Request{Namespace: "ns", ActorID: "a", Operation: "inc"}, func() error { return gateErr }); !errors.Is(err, gateErr) {
		t.Errorf("gate: %v, want its error", err)
	}
	if got, err := sc.Invoke(ctx, "ns", "a", "", "inc", nil); err != nil || string(got) != "3" {
		t.Fatalf("after the refused calls: %q, %v; want 3 (none of them ran)", got, err)
	}
	// An actor it does not host is routed as before.
	if _, err := sc.Invoke(ctx, "ns", "b", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := sc.routes.get(actorKey{"ns", "b"}); !ok {
		t.Fatal("a call to a new actor left no route: it did not go through placement")
	}
}

// The resident path checks a request against the client's limits and the
// server's, whichever is smaller, in one pass (invokeResident's fast check):
// a name or payload within one set but past the other is refused, and an
// operation that is not UTF-8 too, without running the call.
func TestResidentCallChecksBothLimits(t *testing.T) {
	ctx := context.Background()
	c := residentCluster(t)
	sc := c.Server(0).Client()
	if _, err := sc.Invoke(ctx, "ns", "a", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	srv := c.Server(0).cfg.Limits
	long := strings.Repeat("o", srv.MaxNameBytes+1)
	cases := []struct {
		name    string
		limits  func(*Limits)
		op      string
		payload []byte
		args    []byte
		want    Code
	}{
		{"operation past the client's limit", func(l *Limits) { l.MaxNameBytes = 2 }, "inc", nil, nil, CodeBadRequest},
		{"operation past the server's limit", func(l *Limits) { l.MaxNameBytes = srv.MaxNameBytes + 10 }, long, nil, nil, CodeBadRequest},
		{"payload past the client's limit", func(l *Limits) { l.MaxPayloadBytes = 1 }, "inc", []byte("xy"), nil, CodeTooLarge},
		{"payload past the server's limit", func(l *Limits) { l.MaxPayloadBytes = srv.MaxPayloadBytes + 10 }, "inc", make([]byte, srv.MaxPayloadBytes+1), nil, CodeTooLarge},
		{"operation not UTF-8", func(*Limits) {}, "in\xffc", nil, nil, CodeBadRequest},
		{"creation args past the client's limit", func(l *Limits) { l.MaxCreationArgsBytes = 1 }, "inc", nil, []byte("xy"), CodeTooLarge},
		{"creation args past the server's limit", func(l *Limits) { l.MaxCreationArgsBytes = srv.MaxCreationArgsBytes + 10 },
			"inc", nil, make([]byte, srv.MaxCreationArgsBytes+1), CodeTooLarge},
	}
	orig := sc.limits
	for _, tc := range cases {
		sc.limits = orig
		tc.limits(&sc.limits)
		req := Request{Namespace: "ns", ActorID: "a", ActorType: "counter", Operation: tc.op, Payload: tc.payload, CreationArgs: tc.args}
		if _, err := sc.invokeGated(ctx, req, nil); CodeOf(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	sc.limits = orig
	if got, err := sc.Invoke(ctx, "ns", "a", "counter", "inc", nil); err != nil || string(got) != "2" {
		t.Fatalf("after the refused calls: %q, %v; want 2 (none of them ran)", got, err)
	}
}

type residentCounter struct{ n int }

func (c *residentCounter) Invoke(_ *Context, op string, _ []byte) ([]byte, error) {
	c.n++
	return []byte(strconv.Itoa(c.n)), nil
}

// residentCluster is one server on memkv with residentTypes, on the real
// runtime; it shuts down with the test.
func residentCluster(t *testing.T) *Cluster {
	t.Helper()
	ctx := context.Background()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { store.Close() })
	c, err := NewCluster(ctx, ClusterConfig{
		Servers: 1, Store: store, Types: residentTypes(),
		Runtime: func(int) rt.Runtime { return r }, ClientRuntime: r,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(ctx) })
	return c
}

func residentTypes() map[string]Factory {
	f := func(Ref) (Actor, error) { return &residentCounter{}, nil }
	return map[string]Factory{"counter": f, "other": f}
}
