package modules_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

func newStore(t *testing.T, limits kv.Limits) *memkv.Store {
	t.Helper()
	s := memkv.New(rt.NewReal(), memkv.Options{Limits: limits})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPutGetListRoundTrip(t *testing.T) {
	ctx := context.Background()
	ms := modules.New(newStore(t, kv.Limits{}), modules.Config{})
	counter, echo := wasmtest.C(t, "counter"), wasmtest.C(t, "echo")
	info, err := ms.Put(ctx, "ns1", "counter-v1", counter, modules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != len(counter) || info.Chunks != 1 || info.Rev == 0 {
		t.Fatalf("info %+v", info)
	}
	if _, err := ms.Put(ctx, "ns1", "echo", echo, modules.Options{MaxMemoryPages: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Put(ctx, "ns2", "counter-v1", echo, modules.Options{}); err != nil {
		t.Fatal(err) // namespaces are separate
	}
	m, err := ms.Get(ctx, "ns1", "counter-v1")
	if err != nil || !bytes.Equal(m.Bytes, counter) || m.Hash != info.Hash {
		t.Fatalf("get: %v", err)
	}
	list, err := ms.List(ctx, "ns1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range list {
		ids = append(ids, fmt.Sprintf("%s:%d:%d", i.ID, i.Size, i.Options.MaxMemoryPages))
	}
	want := []string{fmt.Sprintf("counter-v1:%d:0", len(counter)), fmt.Sprintf("echo:%d:4", len(echo))}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("list = %v, want %v", ids, want)
	}
	if _, err := ms.Get(ctx, "ns1", "nope"); !errors.Is(err, modules.ErrNotFound) {
		t.Fatalf("missing module: %v", err)
	}
	if l, err := ms.List(ctx, "empty"); err != nil || len(l) != 0 {
		t.Fatalf("empty namespace: %v %v", l, err)
	}
}

// Modules are immutable: the same bytes again are fine, different bytes
// (or options) under the same ID are a typed error.
func TestModulesAreImmutable(t *testing.T) {
	ctx := context.Background()
	ms := modules.New(newStore(t, kv.Limits{}), modules.Config{})
	counter, echo := wasmtest.C(t, "counter"), wasmtest.C(t, "echo")
	first, err := ms.Put(ctx, "ns", "m", counter, modules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := ms.Put(ctx, "ns", "m", counter, modules.Options{})
	if err != nil || again != first {
		t.Fatalf("idempotent put: %+v, %v; want %+v", again, err, first)
	}
	for _, c := range []struct {
		bin  []byte
		opts modules.Options
	}{{echo, modules.Options{}}, {counter, modules.Options{MaxMemoryPages: 2}}} {
		_, err = ms.Put(ctx, "ns", "m", c.bin, c.opts)
		var ee *modules.ExistsError
		if !errors.Is(err, modules.ErrExists) || !errors.As(err, &ee) || ee.Existing.Hash != first.Hash {
			t.Fatalf("conflicting put: %v", err)
		}
	}
	m, err := ms.Get(ctx, "ns", "m")
	if err != nil || !bytes.Equal(m.Bytes, counter) {
		t.Fatalf("after conflicts: %v", err)
	}
}

func TestValidationRejectsBadModules(t *testing.T) {
	ctx := context.Background()
	ms := modules.New(newStore(t, kv.Limits{}), modules.Config{Limits: modules.Limits{MaxModuleBytes: 8 << 10, MaxMemoryPages: 16}})
	counter := wasmtest.C(t, "counter")
	// A module with no exports at all, and one importing a function the
	// host does not provide.
	empty := []byte("\x00asm\x01\x00\x00\x00")
	foreign := append(append([]byte(nil), empty...),
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
		0x02, 0x0b, 0x01, 0x03, 'e', 'n', 'v', 0x03, 'f', 'o', 'o', 0x00, 0x00) // import env.foo
	cases := []struct {
		name string
		bin  []byte
		opts modules.Options
		want error
		msg  string
	}{
		{"garbage", []byte("not wasm at all"), modules.Options{}, modules.ErrInvalid, ""},
		{"empty", nil, modules.Options{}, modules.ErrInvalid, ""},
		{"no exports", empty, modules.Options{}, modules.ErrInvalid, "__guest_call"},
		{"foreign import", foreign, modules.Options{}, modules.ErrInvalid, "env.foo"},
		{"too large", append(bytes.Clone(counter), make([]byte, 8<<10)...), modules.Options{}, modules.ErrTooLarge, ""},
		{"truncated", counter[:len(counter)/2], modules.Options{}, modules.ErrInvalid, ""},
		{"memory option above the limit", counter, modules.Options{MaxMemoryPages: 17}, modules.ErrInvalid, "MaxMemoryPages"},
	}
	for _, c := range cases {
		_, err := ms.Put(ctx, "ns", "bad", c.bin, c.opts)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.want, c.msg)
		}
	}
	if _, err := ms.Stat(ctx, "ns", "bad"); !errors.Is(err, modules.ErrNotFound) {
		t.Fatalf("a rejected module was stored: %v", err)
	}
	// A Go guest is valid; it only needs a bigger size limit.
	goEcho := wasmtest.Go(t, "echo")
	big := modules.New(newStore(t, kv.Limits{}), modules.Config{})
	if _, err := big.Put(ctx, "ns", "echo-go", goEcho, modules.Options{}); err != nil {
		t.Fatalf("Go guest: %v", err)
	}
	// Names are validated.
	for _, id := range []string{"", strings.Repeat("x", 513), "\xff"} {
		if _, err := ms.Put(ctx, "ns", id, counter, modules.Options{}); !errors.Is(err, modules.ErrInvalid) {
			t.Errorf("module ID %q: %v", id, err)
		}
	}
}

// A module bigger than one request is chunked over several commits; the
// manifest comes last and the bytes come back intact.
func TestLargeModulesAreChunked(t *testing.T) {
	ctx := context.Background()
	goEcho := wasmtest.Go(t, "echo") // ~2.7 MB
	for _, c := range []struct {
		name   string
		limits kv.Limits
	}{
		{"etcd limits", kv.DefaultLimits()},
		{"tiny requests", kv.Limits{MaxOpsPerTxn: 8, MaxRequestBytes: 256 << 10}},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := newStore(t, c.limits)
			ms := modules.New(store, modules.Config{})
			info, err := ms.Put(ctx, "ns", "echo", goEcho, modules.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Chunks < 2 || info.ChunkBytes > c.limits.MaxRequestBytes {
				t.Fatalf("info %+v under %+v", info, c.limits)
			}
			m, err := ms.Get(ctx, "ns", "echo")
			if err != nil || !bytes.Equal(m.Bytes, goEcho) {
				t.Fatalf("get: %v", err)
			}
			// Every chunk is a key of its own, under the module's hash.
			begin := registry.NewKeyspace("nola").Sub("mod", "ns", "echo", "c")
			res, err := store.Range(ctx, kv.RangeRequest{Begin: begin, End: tuple.PrefixEnd(begin), KeysOnly: true})
			if err != nil || len(res.KVs) != info.Chunks {
				t.Fatalf("%d chunk keys (%v), want %d", len(res.KVs), err, info.Chunks)
			}
		})
	}
}

// Writers racing for one ID: exactly one module wins; writers of the same
// bytes succeed, others get ErrExists, and the losers' chunks are removed.
func TestConcurrentPutsOneWinner(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, kv.Limits{MaxOpsPerTxn: 128, MaxRequestBytes: 2 << 10})
	ms := modules.New(store, modules.Config{})
	bins := [][]byte{wasmtest.C(t, "counter"), wasmtest.C(t, "echo"), wasmtest.C(t, "kvcounter")}
	const writers = 12
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ms.Put(ctx, "ns", "race", bins[i%len(bins)], modules.Options{})
		}()
	}
	wg.Wait()
	m, err := ms.Get(ctx, "ns", "race")
	if err != nil {
		t.Fatal(err)
	}
	winner := -1
	for i, b := range bins {
		if bytes.Equal(b, m.Bytes) {
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("stored bytes match no writer")
	}
	for i, err := range errs {
		switch {
		case i%len(bins) == winner && err != nil:
			t.Errorf("writer %d of the winning bytes: %v", i, err)
		case i%len(bins) != winner && !errors.Is(err, modules.ErrExists):
			t.Errorf("writer %d of losing bytes: %v, want ErrExists", i, err)
		}
	}
	begin := registry.NewKeyspace("nola").Sub("mod", "ns", "race", "c")
	res, err := store.Range(ctx, kv.RangeRequest{Begin: begin, End: tuple.PrefixEnd(begin), KeysOnly: true})
	if err != nil || len(res.KVs) != m.Chunks {
		t.Fatalf("%d chunk keys left (%v), want only the winner's %d", len(res.KVs), err, m.Chunks)
	}
}

// failingStore fails the commit that writes a manifest, as if the writer
// crashed after writing its chunks.
type failingStore struct {
	kv.Store
	fail bool
}

func (s *failingStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	for _, op := range t.Ops {
		if s.fail && bytes.HasSuffix(op.Key, tuple.AppendString(nil, "m")) {
			return kv.CommitResult{}, kv.ErrUnavailable
		}
	}
	return s.Store.Commit(ctx, t)
}

// A reader never sees a module whose manifest was not written, and a
// retry completes the upload; a corrupt chunk is detected.
func TestPartialUploadsAreInvisibleAndCorruptionDetected(t *testing.T) {
	ctx := context.Background()
	inner := newStore(t, kv.Limits{MaxOpsPerTxn: 128, MaxRequestBytes: 2 << 10})
	fs := &failingStore{Store: inner, fail: true}
	ms := modules.New(fs, modules.Config{})
	bin := wasmtest.C(t, "echo")
	if _, err := ms.Put(ctx, "ns", "m", bin, modules.Options{}); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("put with a failing manifest commit: %v", err)
	}
	if _, err := ms.Get(ctx, "ns", "m"); !errors.Is(err, modules.ErrNotFound) {
		t.Fatalf("partial module visible: %v", err)
	}
	if l, _ := ms.List(ctx, "ns"); len(l) != 0 {
		t.Fatalf("partial module listed: %v", l)
	}
	fs.fail = false
	info, err := ms.Put(ctx, "ns", "m", bin, modules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt one chunk behind the store's back.
	key := tuple.AppendInt(registry.NewKeyspace("nola").Sub("mod", "ns", "m", "c", info.Hash[:]), 1)
	if _, err := inner.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(key, []byte("garbage"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Get(ctx, "ns", "m"); !errors.Is(err, modules.ErrCorrupt) {
		t.Fatalf("corrupt module: %v", err)
	}
}

// Uploads are untrusted: corrupted modules are rejected, never crash the
// validator (wazero v1.12 panics on some of them; Validate recovers).
func TestCorruptedModulesAreRejectedSafely(t *testing.T) {
	ctx := context.Background()
	ms := modules.New(newStore(t, kv.Limits{}), modules.Config{})
	bin := wasmtest.C(t, "hostile")
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for i := range 400 {
		b := bytes.Clone(bin)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		_, err := ms.Put(ctx, "ns", fmt.Sprintf("m%d", i), b, modules.Options{})
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, modules.ErrInvalid):
			t.Fatalf("mutant %d: %v, want ErrInvalid", i, err)
		}
	}
	if accepted == 400 {
		t.Fatal("no mutant was rejected")
	}
}

// Issue 10, finding 3: a tenant filled etcd with 118 modules of 16 MiB.
// Each namespace now has a quota of module bytes and count; a Put past it
// fails with a *QuotaError (ErrQuota and ErrTooLarge, so the API answers
// too_large) before writing anything, and other namespaces are unaffected.
func TestNamespaceQuotaOnBytesAndCount(t *testing.T) {
	ctx := context.Background()
	counter, echo := wasmtest.C(t, "counter"), wasmtest.C(t, "echo")
	t.Run("bytes", func(t *testing.T) {
		store := newStore(t, kv.Limits{})
		ms := modules.New(store, modules.Config{Quota: modules.Quota{MaxBytes: int64(2*len(counter) + len(counter)/2)}})
		for i := range 2 {
			if _, err := ms.Put(ctx, "ns", fmt.Sprint("m", i), counter, modules.Options{}); err != nil {
				t.Fatalf("put %d within the quota: %v", i, err)
			}
		}
		_, err := ms.Put(ctx, "ns", "m2", counter, modules.Options{})
		var qe *modules.QuotaError
		if !errors.As(err, &qe) || qe.What != "bytes" || !errors.Is(err, modules.ErrQuota) || !errors.Is(err, modules.ErrTooLarge) {
			t.Fatalf("put past the byte quota: %v, want a *QuotaError on bytes", err)
		}
		if _, err := ms.Stat(ctx, "ns", "m2"); !errors.Is(err, modules.ErrNotFound) {
			t.Fatalf("refused module stored: %v", err)
		}
		// Nothing of the refused module was written.
		begin := registry.NewKeyspace("nola").Sub("mod", "ns", "m2")
		if res, _ := store.Range(ctx, kv.RangeRequest{Begin: begin, End: tuple.PrefixEnd(begin), KeysOnly: true}); len(res.KVs) != 0 {
			t.Fatalf("%d keys of a refused module", len(res.KVs))
		}
		// Putting a stored module again is not a new module.
		if _, err := ms.Put(ctx, "ns", "m0", counter, modules.Options{}); err != nil {
			t.Fatalf("idempotent put at the quota: %v", err)
		}
		if _, err := ms.Put(ctx, "other", "m2", counter, modules.Options{}); err != nil {
			t.Fatalf("another namespace: %v", err)
		}
		if u, err := ms.Usage(ctx, "ns"); err != nil || u != (modules.Usage{Bytes: int64(2 * len(counter)), Modules: 2}) {
			t.Fatalf("usage %+v %v", u, err)
		}
	})
	t.Run("count", func(t *testing.T) {
		ms := modules.New(newStore(t, kv.Limits{}), modules.Config{Quota: modules.Quota{MaxModules: 1}})
		if _, err := ms.Put(ctx, "ns", "a", counter, modules.Options{}); err != nil {
			t.Fatal(err)
		}
		_, err := ms.Put(ctx, "ns", "b", echo, modules.Options{})
		var qe *modules.QuotaError
		if !errors.As(err, &qe) || qe.What != "modules" || qe.Limit != 1 {
			t.Fatalf("second module: %v, want a *QuotaError on modules", err)
		}
		if !strings.Contains(err.Error(), "--ns-modules") {
			t.Fatalf("the error does not say what to do: %v", err)
		}
	})
}

// The quota holds atomically with the write: concurrent uploads of
// distinct modules (chunked, so that chunks are written before the
// manifest) never store more than the quota, and refused uploads leave no
// chunks behind.
func TestConcurrentPutsRespectTheQuota(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, kv.Limits{MaxOpsPerTxn: 128, MaxRequestBytes: 2 << 10})
	const limit, writers = 5, 16
	ms := modules.New(store, modules.Config{Quota: modules.Quota{MaxModules: limit}})
	bin := wasmtest.C(t, "echo")
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ms.Put(ctx, "ns", fmt.Sprint("m", i), bin, modules.Options{})
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, modules.ErrQuota):
			t.Errorf("writer %d: %v, want success or ErrQuota", i, err)
		}
	}
	list, err := ms.List(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if ok != limit || len(list) != limit {
		t.Fatalf("%d puts succeeded, %d modules stored; quota %d", ok, len(list), limit)
	}
	if u, _ := ms.Usage(ctx, "ns"); u.Modules != limit || u.Bytes != int64(limit*len(bin)) {
		t.Fatalf("usage %+v", u)
	}
	begin := registry.NewKeyspace("nola").Sub("mod", "ns")
	res, err := store.Range(ctx, kv.RangeRequest{Begin: begin, End: tuple.PrefixEnd(begin), KeysOnly: true})
	if want := limit * (list[0].Chunks + 1); err != nil || len(res.KVs) != want {
		t.Fatalf("%d keys under the namespace (%v), want %d: chunks of refused uploads left behind", len(res.KVs), err, want)
	}
}

// Modules stored before quotas existed have no usage record: the first Put
// counts them from their manifests.
func TestQuotaCountsModulesStoredBeforeQuotas(t *testing.T) {
	ctx := context.Background()
	store := newStore(t, kv.Limits{})
	ms := modules.New(store, modules.Config{Quota: modules.Quota{MaxModules: 2}})
	counter := wasmtest.C(t, "counter")
	for _, id := range []string{"a", "b"} {
		if _, err := ms.Put(ctx, "ns", id, counter, modules.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	usageKey := registry.NewKeyspace("nola").Sub("modq", "ns")
	if _, err := store.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Delete(usageKey)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Put(ctx, "ns", "c", counter, modules.Options{}); !errors.Is(err, modules.ErrQuota) {
		t.Fatalf("third module without a usage record: %v, want ErrQuota", err)
	}
}
