package nola_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
)

// kvWriter writes its KV as told: "put:<key>" stores the payload under key,
// "del:<key>" deletes key, "get:<key>" reads it.
type kvWriter struct{}

func (kvWriter) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	cmd, key, _ := strings.Cut(op, ":")
	switch cmd {
	case "put":
		return nil, ctx.Put([]byte(key), payload)
	case "del":
		return nil, ctx.Delete([]byte(key))
	case "get":
		v, _, err := ctx.Get([]byte(key))
		return v, err
	}
	return nil, errors.New("kvWriter: unknown operation " + op)
}

// An actor's KV cannot grow past its quota: the commit that would is
// refused with too_large and writes nothing; overwrites and deletes count
// what they replace, and the count, kept in the store, follows the actor
// to another server.
func TestActorKVQuotaRefusesGrowthPastTheLimit(t *testing.T) {
	types := actors.Types()
	types["writer"] = func(nola.Ref) (nola.Actor, error) { return kvWriter{}, nil }
	const limit = 100
	configure := func(_ int, cfg *nola.ServerConfig) { cfg.Limits.MaxActorKVBytes = limit }
	runSim(t, 41, 2, types, configure, func(e *simtest.Env) {
		reg := e.C.Server(0).Inspector()
		val := func(n int) []byte { return []byte(strings.Repeat("v", n)) }
		put := func(key string, n int) error {
			_, err := e.Invoke("q", "writer", "put:"+key, val(n))
			return err
		}
		wantUsage := func(want int64) {
			t.Helper()
			use, err := reg.KVUsage(e.Ctx, ns, "q")
			if err != nil {
				t.Fatal(err)
			}
			counted, err := reg.CountKV(e.Ctx, ns, "q")
			if err != nil {
				t.Fatal(err)
			}
			if use.Bytes != want || counted != want {
				t.Fatalf("usage record %d, entries %d; want %d", use.Bytes, counted, want)
			}
		}
		mustOK := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		mustOK(put("k1", 40)) // 42
		mustOK(put("k2", 40)) // 84
		wantUsage(84)
		err := put("k3", 20) // 106 > 100
		wantCode(t, err, nola.CodeTooLarge)
		if !strings.Contains(err.Error(), "KV quota") {
			t.Fatalf("quota refusal does not say so: %v", err)
		}
		if got := e.MustInvoke("q", "writer", "get:k3", nil); got != "" {
			t.Fatalf("a refused commit wrote k3 = %q", got)
		}
		wantUsage(84)
		mustOK(put("k1", 10)) // 84 - 42 + 12 = 54
		mustOK(put("k3", 20)) // 76
		wantUsage(76)

		// On another server the activation starts with an empty cache:
		// what a write replaces is read from the store.
		h := e.C.Host(ns, "q")
		e.Crash(h)
		if _, _, err := e.InvokeUntil(3*simTTL, "q", "writer", "get:k1"); err != nil {
			t.Fatal(err)
		}
		reg = e.C.Server(1 - h).Inspector()
		wantCode(t, put("k2", 70), nola.CodeTooLarge) // 76 - 42 + 72 = 106
		mustOK(put("k2", 64))                         // 76 - 42 + 66 = 100: exactly the limit
		wantUsage(100)
		if _, err := e.Invoke("q", "writer", "del:k2", nil); err != nil {
			t.Fatal(err)
		}
		wantUsage(34)
	})
}

// Without a quota nothing is counted: no usage record is written.
func TestNoActorKVQuotaWritesNoUsage(t *testing.T) {
	types := actors.Types()
	types["writer"] = func(nola.Ref) (nola.Actor, error) { return kvWriter{}, nil }
	runSim(t, 42, 1, types, nil, func(e *simtest.Env) {
		if _, err := e.Invoke("q", "writer", "put:k", []byte("value")); err != nil {
			t.Fatal(err)
		}
		keys := registry.NewKeyspace("nola")
		if _, found, err := e.Store.Get(e.Ctx, keys.KVUsage(ns, "q"), 0); err != nil || found {
			t.Fatalf("usage record without a quota: found %v, %v", found, err)
		}
	})
}

// The namespace KV quota bounds a namespace's actors together, on every
// server: a write the namespace has no room for is refused with too_large
// and a message naming the namespace quota, writes nothing, and fits again
// once another actor of the namespace shrinks; other namespaces are not
// affected.
func TestNamespaceKVQuotaRefusesGrowthPastTheLimit(t *testing.T) {
	types := actors.Types()
	types["writer"] = func(nola.Ref) (nola.Actor, error) { return kvWriter{}, nil }
	const limit = 3200 // grant slack 100
	configure := func(_ int, cfg *nola.ServerConfig) { cfg.Limits.MaxNamespaceKVBytes = limit }
	runSim(t, 43, 2, types, configure, func(e *simtest.Env) {
		put := func(id, key string, n int) error {
			_, err := e.Invoke(id, "writer", "put:"+key, []byte(strings.Repeat("v", n-len(key))))
			return err
		}
		mustOK := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		mustOK(put("a", "k1", 1500))
		mustOK(put("b", "k1", 1500))
		err := put("b", "k2", 300) // 3000 + 100 slack held, 300 more needs 200
		wantCode(t, err, nola.CodeTooLarge)
		if !strings.Contains(err.Error(), "KV quota of namespace") || !strings.Contains(err.Error(), "--namespace-kv-bytes") {
			t.Fatalf("namespace quota refusal does not say what to do: %v", err)
		}
		if got := e.MustInvoke("b", "writer", "get:k2", nil); got != "" {
			t.Fatalf("a refused commit wrote k2 = %q", got)
		}
		// The actor's own grant still has its slack.
		mustOK(put("b", "k2", 100))
		// a shrinks on its server and gives grant back; b grows on its.
		if _, err := e.Invoke("a", "writer", "del:k1", nil); err != nil {
			t.Fatal(err)
		}
		mustOK(put("b", "k3", 1000))
		use, err := e.C.Server(0).Inspector().NamespaceKVUsage(e.Ctx, ns)
		if err != nil || use.Allotted > limit {
			t.Fatalf("namespace allotment %+v, %v; limit %d", use, err, limit)
		}
	})
}
