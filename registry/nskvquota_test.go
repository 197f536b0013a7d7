package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// quotaWriter commits one actor's KV through CommitKVQuota as the engine
// does: it knows the size of every entry it wrote (it is the only writer)
// and so the delta of each commit.
type quotaWriter struct {
	reg   *registry.Registry
	inc   *registry.Incarnation
	ns    string
	id    string
	rec   []byte
	q     registry.KVQuota
	use   *registry.KVUsage
	sizes map[string]int64
}

func newQuotaWriter(t *testing.T, reg *registry.Registry, inc *registry.Incarnation, ns, id string, q registry.KVQuota) *quotaWriter {
	return &quotaWriter{reg: reg, inc: inc, ns: ns, id: id, rec: own(t, reg, inc, ns, id, "t"), q: q, sizes: map[string]int64{}}
}

// put writes an entry of EntrySize size at key (size 0: deletes key).
func (w *quotaWriter) put(ctx context.Context, key string, size int) error {
	if w.use == nil {
		use, err := w.reg.ReadKVUsage(ctx, w.ns, w.id, 0)
		if err != nil {
			return err
		}
		w.use = &use
	}
	kw := registry.KVWrite{Key: []byte(key), Delete: size == 0}
	if size > 0 {
		kw.Value = bytes.Repeat([]byte("v"), size-len(key))
	}
	delta := int64(size) - w.sizes[key]
	next, err := w.reg.CommitKVQuota(ctx, w.inc, w.ns, w.id, w.rec, []registry.KVWrite{kw}, *w.use, delta, w.q, registry.CommitOptions{})
	if err != nil {
		if !errors.Is(err, registry.ErrKVQuota) {
			w.use = nil // may be stale
		}
		return err
	}
	w.use = &next
	if size == 0 {
		delete(w.sizes, key)
	} else {
		w.sizes[key] = int64(size)
	}
	return nil
}

// registerForAnHour registers server sid with a lease that outlives any run
// on a loaded machine: these tests commit many times and nothing keeps the
// lease alive.
func registerForAnHour(t *testing.T, reg *registry.Registry, sid string) *registry.Incarnation {
	t.Helper()
	inc, err := reg.Register(context.Background(), sid, "addr-"+sid, time.Hour)
	if err != nil {
		t.Fatalf("register %s: %v", sid, err)
	}
	return inc
}

// checkAllotment checks the namespace invariants: the record sums the
// actors' grants, each actor's bytes (as stored and as counted) are within
// its grant, and the namespace's bytes within the limit. It returns the
// namespace's bytes.
func checkAllotment(t *testing.T, reg *registry.Registry, ns string, limit int64, ids ...string) int64 {
	t.Helper()
	ctx := context.Background()
	nsUse, err := reg.ReadNamespaceKVUsage(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	var granted, total int64
	for _, id := range ids {
		use, err := reg.ReadKVUsage(ctx, ns, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, err := reg.CountKV(ctx, ns, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n != use.Bytes || n > use.Granted {
			t.Fatalf("actor %s: %d bytes stored, usage record %+v", id, n, use)
		}
		granted += use.Granted
		total += n
	}
	if nsUse.Allotted != granted || nsUse.Allotted > limit || total > limit {
		t.Fatalf("namespace %s: allotted %d, grants %d, bytes %d, limit %d", ns, nsUse.Allotted, granted, total, limit)
	}
	return total
}

// The namespace KV quota bounds the actors of a namespace together: an
// actor takes grants (with slack) as it grows, a commit the namespace has
// no room for is refused with a typed error and writes nothing, shrinking
// gives surplus grant back, and a deleted actor's grant returns once its KV
// is reclaimed.
func TestNamespaceKVQuotaBoundsTheNamespace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := registerForAnHour(t, reg, "s1")
		const limit = 3200 // grant slack: limit/32 = 100
		q := registry.KVQuota{Namespace: limit}
		a, b := newQuotaWriter(t, reg, inc, "ns", "a", q), newQuotaWriter(t, reg, inc, "ns", "b", q)
		other := newQuotaWriter(t, reg, inc, "other", "a", q)
		mustOK := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		wantAllotted := func(want int64) {
			t.Helper()
			checkAllotment(t, reg, "ns", limit, "a", "b")
			if got, err := reg.ReadNamespaceKVUsage(ctx, "ns"); err != nil || got.Allotted != want {
				t.Fatalf("allotted %d, %v; want %d", got.Allotted, err, want)
			}
		}
		mustOK(a.put(ctx, "k1", 1000)) // grant 1000 + 100
		mustOK(b.put(ctx, "k1", 1000)) // grant 1000 + 100
		mustOK(a.put(ctx, "k2", 1000)) // needs 900: the last 1000 left
		wantAllotted(3200)
		err := b.put(ctx, "k2", 1000)
		var qe *registry.NamespaceKVQuotaError
		if !errors.As(err, &qe) || !errors.Is(err, kv.ErrTooLarge) || !errors.Is(err, registry.ErrKVQuota) {
			t.Fatalf("commit past the namespace quota: %v, want a NamespaceKVQuotaError", err)
		}
		if qe.Used != 3200 || qe.Adding != 900 || qe.Limit != limit || !strings.Contains(err.Error(), "--namespace-kv-bytes") {
			t.Fatalf("quota error %+v: %v", qe, err)
		}
		if _, found, _ := reg.GetKV(ctx, "ns", "b", 0, []byte("k2")); found {
			t.Fatal("a refused commit wrote k2")
		}
		// Another namespace has a quota of its own.
		mustOK(other.put(ctx, "k1", 3000))
		// Within its grant's slack an actor still grows.
		mustOK(b.put(ctx, "k2", 100))
		wantAllotted(3200)
		// Shrinking gives the surplus back, keeping the slack.
		mustOK(a.put(ctx, "k1", 0))
		mustOK(a.put(ctx, "k2", 0)) // 0 bytes of 2100 granted: 2000 back
		wantAllotted(1200)
		mustOK(b.put(ctx, "k3", 1000)) // 2100 bytes: grant 1000 + 100
		wantAllotted(2300)
		// A deleted actor's grant returns with its KV, not before.
		if _, err := reg.Delete(ctx, inc, "ns", "b"); err != nil {
			t.Fatal(err)
		}
		if got, err := reg.ReadNamespaceKVUsage(ctx, "ns"); err != nil || got.Allotted != 2300 {
			t.Fatalf("allotted after deleting b: %d, %v; want 2300 until its KV is reclaimed", got.Allotted, err)
		}
		if _, err := reg.Reclaim(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if got, err := reg.ReadNamespaceKVUsage(ctx, "ns"); err != nil || got.Allotted != 100 {
			t.Fatalf("allotted after reclaiming b: %d, %v; want 100 (a's slack)", got.Allotted, err)
		}
		mustOK(a.put(ctx, "k4", 3100))
		checkAllotment(t, reg, "ns", limit, "a")
	})
}

// interleaving is a store that runs hook once, just before the first commit
// that writes key: another writer commits between a reader's read and its
// commit, deterministically.
type interleaving struct {
	kv.Store
	key  []byte
	mu   sync.Mutex
	hook func()
}

func (s *interleaving) Commit(ctx context.Context, txn kv.Txn) (kv.CommitResult, error) {
	var hook func()
	s.mu.Lock()
	for _, op := range txn.Ops {
		if bytes.Equal(op.Key, s.key) {
			hook, s.hook = s.hook, nil
			break
		}
	}
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.Store.Commit(ctx, txn)
}

// A grant is compared against the namespace record inside the commit: when
// another actor's grant lands between the read of the record and the commit,
// the commit is refused by the store and retried from the new record, so no
// grant is lost (a pre-check would overwrite the other grant and let the
// namespace past its limit).
func TestNamespaceKVGrantRacesAreDecidedByTheStore(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			r := rt.NewReal()
			keys := registry.NewKeyspace("test-" + t.Name())
			base := be.open(t, r)
			store := &interleaving{Store: base, key: keys.NamespaceKVUsage("ns")}
			reg := registry.New(store, r, registry.Options{Root: "test-" + t.Name()})
			// b writes through a registry of its own, as another server
			// would: a registry serializes its own grants.
			other := registry.New(base, r, registry.Options{Root: "test-" + t.Name()})
			inc := registerForAnHour(t, reg, "s1")
			const limit = 3200
			q := registry.KVQuota{Namespace: limit}
			a, b := newQuotaWriter(t, reg, inc, "ns", "a", q), newQuotaWriter(t, other, inc, "ns", "b", q)
			var hookErr error
			store.mu.Lock()
			store.hook = func() { hookErr = b.put(ctx, "k", 2000) } // grant 2100
			store.mu.Unlock()
			// a read allotted 0; b's grant lands before a's commit. 1000
			// more fits only if a's grant starts from b's.
			if err := a.put(ctx, "k", 1000); err != nil || hookErr != nil {
				t.Fatalf("a: %v; b: %v", err, hookErr)
			}
			checkAllotment(t, reg, "ns", limit, "a", "b")
			if got, _ := reg.ReadNamespaceKVUsage(ctx, "ns"); got.Allotted != 3200 {
				t.Fatalf("allotted %d after both grants, want 3200", got.Allotted)
			}
			if err := a.put(ctx, "k2", 200); !errors.Is(err, registry.ErrKVQuota) {
				t.Fatalf("a commit past the quota after the race: %v", err)
			}
		})
	}
}

// Writers of two actors of one namespace race to its limit, on each
// backend, each through a registry of its own (as on two servers: one
// registry serializes its own grants): whatever the interleaving, the
// namespace never holds more than the limit, the allotment matches the
// grants, and the writers do get near the limit (so the quota, not
// something else, stopped them).
func TestNamespaceKVQuotaHoldsUnderConcurrentWriters(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) { concurrentWriters(t, be) })
	}
}

func concurrentWriters(t *testing.T, be backend) {
	ctx := context.Background()
	r := rt.NewReal()
	store := be.open(t, r)
	opts := registry.Options{Root: "test-" + t.Name()}
	reg, reg2 := registry.New(store, r, opts), registry.New(store, r, opts)
	const limit, size = 40000, 500 // slack 1250
	q := registry.KVQuota{Namespace: limit}
	inc := registerForAnHour(t, reg, "s1")
	ws := []*quotaWriter{newQuotaWriter(t, reg, inc, "ns", "a", q), newQuotaWriter(t, reg2, inc, "ns", "b", q)}
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Go(func() {
			for n := 0; ; n++ {
				err := w.put(ctx, fmt.Sprintf("k%04d", n), size)
				switch {
				case errors.Is(err, registry.ErrKVQuota):
					return
				case errors.Is(err, registry.ErrContention):
					n-- // nothing written: again
				case err != nil:
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := checkAllotment(t, reg, "ns", limit, "a", "b")
	// Each actor may hold up to its slack unused when refused.
	if total < limit-2*(limit/32)-2*size {
		t.Fatalf("writers stopped at %d of %d bytes", total, limit)
	}
	t.Logf("namespace bytes %d of %d (a %d, b %d entries)", total, limit, len(ws[0].sizes), len(ws[1].sizes))
}
