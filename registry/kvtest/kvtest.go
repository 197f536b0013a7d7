// Package kvtest is the conformance suite every kv.Store implementation
// passes: one table of behaviours, run against memkv and etcdkv alike. etcd
// is the reference: where the suite pins a detail (compare semantics on
// absent keys, revision bumps, duplicate writes), it is etcd's behaviour.
//
// Revisions are compared relative to the store's revision at the start of
// each case, since stores start at different revisions.
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/kv"
)

// Harness describes a backend under test.
type Harness struct {
	// Open returns a fresh, empty store and registers its cleanup with t.
	// Its leases must run on the real clock.
	Open func(t *testing.T) kv.Store
	// Compact discards history before rev (reads below rev then fail
	// with kv.ErrCompacted).
	Compact func(ctx context.Context, s kv.Store, rev int64) error
	// SkipLeaseExpiry leaves out the cases that wait for a lease to expire
	// in real time (a few seconds each); for quick runs only.
	SkipLeaseExpiry bool
}

// Case is one behaviour of the suite.
type Case struct {
	Name string
	// Slow cases wait for real time to pass (lease expiry).
	Slow bool
	Run  func(t *testing.T, h Harness, s kv.Store)
}

// Run runs every case against a fresh store each, in parallel.
func Run(t *testing.T, h Harness) {
	if h.Open == nil || h.Compact == nil {
		t.Fatal("kvtest: Harness needs Open and Compact")
	}
	for _, c := range Cases() {
		if c.Slow && h.SkipLeaseExpiry {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			c.Run(t, h, h.Open(t))
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func b(s string) []byte { return []byte(s) }

// curRev reads the store's current revision.
func curRev(t *testing.T, s kv.Store) int64 {
	t.Helper()
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("\x00rev-probe")})
	if err != nil {
		t.Fatalf("range for the revision: %v", err)
	}
	return r.Rev
}

func commit(t *testing.T, s kv.Store, txn kv.Txn) kv.CommitResult {
	t.Helper()
	res, err := s.Commit(ctxT(t), txn)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return res
}

func put(t *testing.T, s kv.Store, key, value string) int64 {
	t.Helper()
	res := commit(t, s, kv.Txn{Ops: []kv.Op{kv.Put(b(key), b(value), kv.NoLease)}})
	if !res.Succeeded {
		t.Fatalf("unconditional put of %q did not succeed", key)
	}
	return res.Rev
}

func get(t *testing.T, s kv.Store, key string, rev int64) (kv.KeyValue, bool) {
	t.Helper()
	e, found, err := s.Get(ctxT(t), b(key), rev)
	if err != nil {
		t.Fatalf("get %q at %d: %v", key, rev, err)
	}
	return e, found
}

func mustValue(t *testing.T, s kv.Store, key, want string) kv.KeyValue {
	t.Helper()
	e, found := get(t, s, key, 0)
	if !found {
		t.Fatalf("%q is missing, want %q", key, want)
	}
	if string(e.Value) != want {
		t.Fatalf("%q = %q, want %q", key, e.Value, want)
	}
	return e
}

func mustAbsent(t *testing.T, s kv.Store, key string) {
	t.Helper()
	if e, found := get(t, s, key, 0); found {
		t.Fatalf("%q exists (value %q), want absent", key, e.Value)
	}
}

func keysOf(kvs []kv.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, e := range kvs {
		out[i] = string(e.Key)
	}
	return out
}

func wantKeys(t *testing.T, what string, got []kv.KeyValue, want ...string) {
	t.Helper()
	g := keysOf(got)
	if fmt.Sprint(g) != fmt.Sprint(want) && !(len(g) == 0 && len(want) == 0) {
		t.Fatalf("%s: keys %q, want %q", what, g, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

// Cases returns the suite's table.
func Cases() []Case {
	return []Case{
		{Name: "GetMissing", Run: testGetMissing},
		{Name: "PutGetMetadata", Run: testPutGetMetadata},
		{Name: "DeleteAndRecreate", Run: testDeleteAndRecreate},
		{Name: "RevisionMonotonic", Run: testRevisionMonotonic},
		{Name: "NoBumpWithoutChange", Run: testNoBumpWithoutChange},
		{Name: "ReadAtRevision", Run: testReadAtRevision},
		{Name: "Compaction", Run: testCompaction},
		{Name: "RangeOrderAndBounds", Run: testRangeOrderAndBounds},
		{Name: "RangeLimitMore", Run: testRangeLimitMore},
		{Name: "RangeKeysOnly", Run: testRangeKeysOnly},
		{Name: "RangeAtRevision", Run: testRangeAtRevision},
		{Name: "EmptyRanges", Run: testEmptyRanges},
		{Name: "CompareValue", Run: testCompareValue},
		{Name: "CompareAbsentKey", Run: testCompareAbsentKey},
		{Name: "CompareVersionAndRevisions", Run: testCompareVersionAndRevisions},
		{Name: "RangeCompares", Run: testRangeCompares},
		{Name: "AtomicMultiOp", Run: testAtomicMultiOp},
		{Name: "DeleteRange", Run: testDeleteRange},
		{Name: "InvalidInput", Run: testInvalidInput},
		{Name: "DuplicateWrites", Run: testDuplicateWrites},
		{Name: "Limits", Run: testLimits},
		{Name: "LeaseAttachAndRevoke", Run: testLeaseAttachAndRevoke},
		{Name: "LeaseNotFound", Run: testLeaseNotFound},
		{Name: "LeaseDetachOnRewrite", Run: testLeaseDetachOnRewrite},
		{Name: "LeaseExpiry", Slow: true, Run: testLeaseExpiry},
		{Name: "LeaseKeepAlive", Slow: true, Run: testLeaseKeepAlive},
		{Name: "CanceledContext", Run: testCanceledContext},
		{Name: "Close", Run: testClose},
	}
}

func testGetMissing(t *testing.T, _ Harness, s kv.Store) {
	mustAbsent(t, s, "nope")
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "range of an empty store", r.KVs)
	if r.More {
		t.Fatal("More on an empty range")
	}
}

func testPutGetMetadata(t *testing.T, _ Harness, s kv.Store) {
	rev := put(t, s, "k", "v1")
	e := mustValue(t, s, "k", "v1")
	if e.CreateRev != rev || e.ModRev != rev || e.Version != 1 || e.Lease != kv.NoLease {
		t.Fatalf("after one put at %d: %+v", rev, e)
	}
	if !bytes.Equal(e.Key, b("k")) {
		t.Fatalf("key %q", e.Key)
	}
	rev2 := put(t, s, "k", "v2")
	e = mustValue(t, s, "k", "v2")
	if e.CreateRev != rev || e.ModRev != rev2 || e.Version != 2 {
		t.Fatalf("after two puts at %d,%d: %+v", rev, rev2, e)
	}
	// An empty value is a value.
	put(t, s, "empty", "")
	if e := mustValue(t, s, "empty", ""); len(e.Value) != 0 {
		t.Fatalf("empty value read as %q", e.Value)
	}
}

func testDeleteAndRecreate(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "k", "v1")
	put(t, s, "k", "v2")
	res := commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("k"))}})
	if !res.Succeeded {
		t.Fatal("delete did not succeed")
	}
	mustAbsent(t, s, "k")
	rev := put(t, s, "k", "v3")
	e := mustValue(t, s, "k", "v3")
	if e.Version != 1 || e.CreateRev != rev || e.ModRev != rev {
		t.Fatalf("recreated key: %+v, want version 1 created at %d", e, rev)
	}
}

func testRevisionMonotonic(t *testing.T, _ Harness, s kv.Store) {
	start := curRev(t, s)
	prev := start
	for i := range 5 {
		rev := put(t, s, fmt.Sprintf("k%d", i%2), fmt.Sprint(i))
		if rev != prev+1 {
			t.Fatalf("write %d at revision %d, want %d", i, rev, prev+1)
		}
		prev = rev
	}
	// A multi-op commit takes exactly one revision, shared by its writes.
	res := commit(t, s, kv.Txn{Ops: []kv.Op{
		kv.Put(b("m1"), b("x"), kv.NoLease), kv.Put(b("m2"), b("y"), kv.NoLease), kv.Delete(b("k0")),
	}})
	if res.Rev != prev+1 {
		t.Fatalf("multi-op commit at %d, want %d", res.Rev, prev+1)
	}
	if e := mustValue(t, s, "m1", "x"); e.ModRev != res.Rev {
		t.Fatalf("m1 mod rev %d, want %d", e.ModRev, res.Rev)
	}
	if e := mustValue(t, s, "m2", "y"); e.ModRev != res.Rev {
		t.Fatalf("m2 mod rev %d, want %d", e.ModRev, res.Rev)
	}
	if got := curRev(t, s); got != res.Rev {
		t.Fatalf("read revision %d after commit at %d", got, res.Rev)
	}
}

func testNoBumpWithoutChange(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "k", "v")
	rev := curRev(t, s)
	cases := []struct {
		name string
		txn  kv.Txn
		ok   bool
	}{
		{"compares only", kv.Txn{Compares: []kv.Compare{kv.ValueEquals(b("k"), b("v"))}}, true},
		{"empty", kv.Txn{}, true},
		{"failed compare", kv.Txn{Compares: []kv.Compare{kv.Absent(b("k"))}, Ops: []kv.Op{kv.Put(b("k"), b("w"), kv.NoLease)}}, false},
		{"delete absent key", kv.Txn{Ops: []kv.Op{kv.Delete(b("nope"))}}, true},
		{"delete empty range", kv.Txn{Ops: []kv.Op{kv.DeleteRange(b("x"), b("y"))}}, true},
	}
	for _, c := range cases {
		res := commit(t, s, c.txn)
		if res.Succeeded != c.ok {
			t.Fatalf("%s: succeeded=%v, want %v", c.name, res.Succeeded, c.ok)
		}
		if res.Rev != rev {
			t.Fatalf("%s: revision %d, want %d (no change, no bump)", c.name, res.Rev, rev)
		}
	}
	if got := curRev(t, s); got != rev {
		t.Fatalf("revision moved to %d without a change", got)
	}
	mustValue(t, s, "k", "v")
}

func testReadAtRevision(t *testing.T, _ Harness, s kv.Store) {
	r1 := put(t, s, "k", "v1")
	r2 := put(t, s, "k", "v2")
	r3 := commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("k"))}}).Rev
	if e, found := get(t, s, "k", r1); !found || string(e.Value) != "v1" || e.ModRev != r1 {
		t.Fatalf("at %d: %+v found=%v, want v1", r1, e, found)
	}
	if e, found := get(t, s, "k", r2); !found || string(e.Value) != "v2" || e.Version != 2 {
		t.Fatalf("at %d: %+v found=%v, want v2", r2, e, found)
	}
	if _, found := get(t, s, "k", r3); found {
		t.Fatalf("at %d (deleted): found", r3)
	}
	if _, found := get(t, s, "k", r1-1); found {
		t.Fatalf("at %d (before creation): found", r1-1)
	}
	_, _, err := s.Get(ctxT(t), b("k"), r3+100)
	wantErr(t, "get in the future", err, kv.ErrFutureRev)
	_, err = s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z"), Rev: r3 + 100})
	wantErr(t, "range in the future", err, kv.ErrFutureRev)
}

func testCompaction(t *testing.T, h Harness, s kv.Store) {
	r1 := put(t, s, "k", "v1")
	r2 := put(t, s, "k", "v2")
	r3 := put(t, s, "k", "v3")
	if err := h.Compact(ctxT(t), s, r2); err != nil {
		t.Fatalf("compact at %d: %v", r2, err)
	}
	_, _, err := s.Get(ctxT(t), b("k"), r1)
	wantErr(t, "get below the compaction", err, kv.ErrCompacted)
	_, err = s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z"), Rev: r1})
	wantErr(t, "range below the compaction", err, kv.ErrCompacted)
	if e, found := get(t, s, "k", r2); !found || string(e.Value) != "v2" {
		t.Fatalf("at the compaction revision %d: %+v found=%v, want v2", r2, e, found)
	}
	if e, found := get(t, s, "k", r3); !found || string(e.Value) != "v3" {
		t.Fatalf("at %d: %+v found=%v, want v3", r3, e, found)
	}
	mustValue(t, s, "k", "v3")
}

func testRangeOrderAndBounds(t *testing.T, _ Harness, s kv.Store) {
	for _, k := range []string{"b", "a", "c", "ca", "d", "a\x00", "\xff"} {
		put(t, s, k, "v-"+k)
	}
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("d")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "[a, d)", r.KVs, "a", "a\x00", "b", "c", "ca")
	for _, e := range r.KVs {
		if string(e.Value) != "v-"+string(e.Key) {
			t.Fatalf("%q = %q", e.Key, e.Value)
		}
	}
	if r.More {
		t.Fatal("More without a limit")
	}
	if r.Rev != curRev(t, s) {
		t.Fatalf("range revision %d, store at %d", r.Rev, curRev(t, s))
	}
	r, err = s.Range(ctxT(t), kv.RangeRequest{Begin: b("c")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "single key c", r.KVs, "c")
	r, err = s.Range(ctxT(t), kv.RangeRequest{Begin: b("cb")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "single missing key", r.KVs)
	r, err = s.Range(ctxT(t), kv.RangeRequest{Begin: b("c"), End: b("\xff\xff")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "[c, \\xff\\xff)", r.KVs, "c", "ca", "d", "\xff")
}

func testRangeLimitMore(t *testing.T, _ Harness, s kv.Store) {
	for _, k := range []string{"a", "b", "c", "d"} {
		put(t, s, k, k)
	}
	for _, c := range []struct {
		limit int
		keys  []string
		more  bool
	}{
		{1, []string{"a"}, true},
		{3, []string{"a", "b", "c"}, true},
		{4, []string{"a", "b", "c", "d"}, false},
		{10, []string{"a", "b", "c", "d"}, false},
		{0, []string{"a", "b", "c", "d"}, false},
	} {
		r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z"), Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, fmt.Sprintf("limit %d", c.limit), r.KVs, c.keys...)
		if r.More != c.more {
			t.Fatalf("limit %d: More=%v, want %v", c.limit, r.More, c.more)
		}
	}
	// Deleted keys do not count against the limit.
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("a")), kv.Delete(b("b"))}})
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z"), Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "limit 2 after deletes", r.KVs, "c", "d")
	if r.More {
		t.Fatal("More after deletes")
	}
}

func testRangeKeysOnly(t *testing.T, _ Harness, s kv.Store) {
	rev := put(t, s, "a", "value")
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("b"), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "keys only", r.KVs, "a")
	e := r.KVs[0]
	if len(e.Value) != 0 {
		t.Fatalf("keys-only range returned value %q", e.Value)
	}
	if e.ModRev != rev || e.CreateRev != rev || e.Version != 1 {
		t.Fatalf("keys-only range lost metadata: %+v", e)
	}
}

func testRangeAtRevision(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "a", "1")
	r1 := put(t, s, "b", "1")
	put(t, s, "a", "2")
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("b")), kv.Put(b("c"), b("1"), kv.NoLease)}})
	r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z"), Rev: r1})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "range at an old revision", r.KVs, "a", "b")
	if string(r.KVs[0].Value) != "1" {
		t.Fatalf("a at %d = %q, want 1", r1, r.KVs[0].Value)
	}
	now, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("a"), End: b("z")})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "range now", now.KVs, "a", "c")
	if r.Rev != now.Rev {
		t.Fatalf("a read at an old revision reports revision %d; the store is at %d", r.Rev, now.Rev)
	}
}

func testEmptyRanges(t *testing.T, _ Harness, s kv.Store) {
	for _, k := range []string{"a", "b", "c"} {
		put(t, s, k, k)
	}
	for _, end := range [][]byte{b("b"), b("a"), {}, {0}} {
		r, err := s.Range(ctxT(t), kv.RangeRequest{Begin: b("b"), End: end})
		if err != nil {
			t.Fatal(err)
		}
		wantKeys(t, fmt.Sprintf("range [b, %q)", end), r.KVs)
		// A compare over an empty range is a compare on an absent key.
		res := commit(t, s, kv.Txn{Compares: []kv.Compare{{Key: b("b"), End: end, Target: kv.TargetVersion, Op: kv.Equal, Num: 0}}})
		if !res.Succeeded {
			t.Fatalf("version == 0 over the empty range [b, %q) failed", end)
		}
		res = commit(t, s, kv.Txn{Compares: []kv.Compare{{Key: b("b"), End: end, Target: kv.TargetValue, Op: kv.NotEqual, Value: b("zz")}}})
		if res.Succeeded {
			t.Fatalf("value compare over the empty range [b, %q) held", end)
		}
		// Deleting an empty range deletes nothing.
		rev := curRev(t, s)
		res = commit(t, s, kv.Txn{Ops: []kv.Op{kv.DeleteRange(b("b"), end)}})
		if !res.Succeeded || res.Rev != rev {
			t.Fatalf("delete of the empty range [b, %q): %+v (store was at %d)", end, res, rev)
		}
		mustValue(t, s, "b", "b")
		mustValue(t, s, "c", "c")
	}
}

func holds(t *testing.T, s kv.Store, c kv.Compare) bool {
	t.Helper()
	return commit(t, s, kv.Txn{Compares: []kv.Compare{c}}).Succeeded
}

func testCompareValue(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "k", "m")
	for _, c := range []struct {
		op   kv.CmpOp
		v    string
		want bool
	}{
		{kv.Equal, "m", true}, {kv.Equal, "n", false}, {kv.Equal, "", false},
		{kv.NotEqual, "m", false}, {kv.NotEqual, "n", true},
		{kv.Less, "n", true}, {kv.Less, "m", false}, {kv.Less, "l", false}, {kv.Less, "ma", true},
		{kv.Greater, "l", true}, {kv.Greater, "m", false}, {kv.Greater, "", true}, {kv.Greater, "n", false},
	} {
		got := holds(t, s, kv.Compare{Key: b("k"), Target: kv.TargetValue, Op: c.op, Value: b(c.v)})
		if got != c.want {
			t.Fatalf("value(k)=%q op %d %q: %v, want %v", "m", c.op, c.v, got, c.want)
		}
	}
	put(t, s, "e", "")
	if !holds(t, s, kv.ValueEquals(b("e"), nil)) || !holds(t, s, kv.ValueEquals(b("e"), b(""))) {
		t.Fatal("an empty value does not compare equal to empty")
	}
}

func testCompareAbsentKey(t *testing.T, _ Harness, s kv.Store) {
	// As in etcd: every value compare on an absent key is false, even !=;
	// the other targets see zeros.
	for _, op := range []kv.CmpOp{kv.Equal, kv.NotEqual, kv.Less, kv.Greater} {
		if holds(t, s, kv.Compare{Key: b("nope"), Target: kv.TargetValue, Op: op, Value: b("x")}) {
			t.Fatalf("value compare %d on an absent key held", op)
		}
		if holds(t, s, kv.Compare{Key: b("nope"), Target: kv.TargetValue, Op: op}) {
			t.Fatalf("value compare %d with empty on an absent key held", op)
		}
	}
	for _, target := range []kv.Target{kv.TargetVersion, kv.TargetCreateRev, kv.TargetModRev} {
		if !holds(t, s, kv.Compare{Key: b("nope"), Target: target, Op: kv.Equal, Num: 0}) {
			t.Fatalf("target %d == 0 on an absent key failed", target)
		}
		if holds(t, s, kv.Compare{Key: b("nope"), Target: target, Op: kv.Greater, Num: 0}) {
			t.Fatalf("target %d > 0 on an absent key held", target)
		}
		if !holds(t, s, kv.Compare{Key: b("nope"), Target: target, Op: kv.Less, Num: 1}) {
			t.Fatalf("target %d < 1 on an absent key failed", target)
		}
	}
	if !holds(t, s, kv.Absent(b("nope"))) || !holds(t, s, kv.ModRevEquals(b("nope"), 0)) {
		t.Fatal("Absent / ModRevEquals(0) on an absent key failed")
	}
	put(t, s, "k", "v")
	if holds(t, s, kv.Absent(b("k"))) || holds(t, s, kv.ModRevEquals(b("k"), 0)) {
		t.Fatal("Absent / ModRevEquals(0) held on a present key")
	}
}

func testCompareVersionAndRevisions(t *testing.T, _ Harness, s kv.Store) {
	c1 := put(t, s, "k", "1")
	m2 := put(t, s, "k", "2")
	for _, c := range []struct {
		cmp  kv.Compare
		want bool
	}{
		{kv.Compare{Key: b("k"), Target: kv.TargetVersion, Op: kv.Equal, Num: 2}, true},
		{kv.Compare{Key: b("k"), Target: kv.TargetVersion, Op: kv.Less, Num: 2}, false},
		{kv.Compare{Key: b("k"), Target: kv.TargetVersion, Op: kv.Greater, Num: 1}, true},
		{kv.Compare{Key: b("k"), Target: kv.TargetVersion, Op: kv.NotEqual, Num: 2}, false},
		{kv.Compare{Key: b("k"), Target: kv.TargetCreateRev, Op: kv.Equal, Num: c1}, true},
		{kv.Compare{Key: b("k"), Target: kv.TargetCreateRev, Op: kv.Equal, Num: m2}, false},
		{kv.Compare{Key: b("k"), Target: kv.TargetCreateRev, Op: kv.Less, Num: m2}, true},
		{kv.Compare{Key: b("k"), Target: kv.TargetModRev, Op: kv.Equal, Num: m2}, true},
		{kv.Compare{Key: b("k"), Target: kv.TargetModRev, Op: kv.Equal, Num: c1}, false},
		{kv.Compare{Key: b("k"), Target: kv.TargetModRev, Op: kv.Greater, Num: c1}, true},
		{kv.ModRevEquals(b("k"), m2), true},
	} {
		if got := holds(t, s, c.cmp); got != c.want {
			t.Fatalf("compare %+v: %v, want %v", c.cmp, got, c.want)
		}
	}
}

func testRangeCompares(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "p/a", "x")
	put(t, s, "p/b", "x")
	put(t, s, "p/c", "y")
	rng := func(target kv.Target, op kv.CmpOp, v string, n int64, end string) kv.Compare {
		return kv.Compare{Key: b("p/a"), End: b(end), Target: target, Op: op, Value: b(v), Num: n}
	}
	for _, c := range []struct {
		name string
		cmp  kv.Compare
		want bool
	}{
		{"all equal x over [a,c)", rng(kv.TargetValue, kv.Equal, "x", 0, "p/c"), true},
		{"all equal x over [a,d)", rng(kv.TargetValue, kv.Equal, "x", 0, "p/d"), false},
		{"all < z over [a,d)", rng(kv.TargetValue, kv.Less, "z", 0, "p/d"), true},
		{"all != y over [a,d)", rng(kv.TargetValue, kv.NotEqual, "y", 0, "p/d"), false},
		{"all version 1 over [a,d)", rng(kv.TargetVersion, kv.Equal, "", 1, "p/d"), true},
		{"none exists over [a,d)", rng(kv.TargetVersion, kv.Equal, "", 0, "p/d"), false},
		{"create rev > 0 over [a,d)", rng(kv.TargetCreateRev, kv.Greater, "", 0, "p/d"), true},
	} {
		if got := holds(t, s, c.cmp); got != c.want {
			t.Fatalf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The registry's typical guard: nothing under a prefix.
	if !holds(t, s, kv.Compare{Key: b("q/"), End: b("q0"), Target: kv.TargetVersion, Op: kv.Equal, Num: 0}) {
		t.Fatal("no key under q/: version == 0 over the range failed")
	}
	if holds(t, s, kv.Compare{Key: b("p/"), End: b("p0"), Target: kv.TargetVersion, Op: kv.Equal, Num: 0}) {
		t.Fatal("keys under p/: version == 0 over the range held")
	}
}

func testAtomicMultiOp(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "fence", "inc-1")
	put(t, s, "a", "old")
	rev := curRev(t, s)
	// One failing compare among several: nothing applies.
	res := commit(t, s, kv.Txn{
		Compares: []kv.Compare{kv.ValueEquals(b("a"), b("old")), kv.ValueEquals(b("fence"), b("inc-2"))},
		Ops: []kv.Op{
			kv.Put(b("a"), b("new"), kv.NoLease), kv.Put(b("b"), b("new"), kv.NoLease), kv.Delete(b("fence")),
		},
	})
	if res.Succeeded || res.Rev != rev {
		t.Fatalf("failed fence: %+v, want not succeeded at %d", res, rev)
	}
	mustValue(t, s, "a", "old")
	mustAbsent(t, s, "b")
	mustValue(t, s, "fence", "inc-1")
	// All compares hold: everything applies at one revision.
	res = commit(t, s, kv.Txn{
		Compares: []kv.Compare{kv.ValueEquals(b("a"), b("old")), kv.ValueEquals(b("fence"), b("inc-1"))},
		Ops: []kv.Op{
			kv.Put(b("a"), b("new"), kv.NoLease), kv.Put(b("b"), b("new"), kv.NoLease), kv.Delete(b("fence")),
		},
	})
	if !res.Succeeded || res.Rev != rev+1 {
		t.Fatalf("held fence: %+v, want succeeded at %d", res, rev+1)
	}
	mustValue(t, s, "a", "new")
	mustValue(t, s, "b", "new")
	mustAbsent(t, s, "fence")
}

func testDeleteRange(t *testing.T, _ Harness, s kv.Store) {
	for _, k := range []string{"a", "b", "ba", "c"} {
		put(t, s, k, k)
	}
	rev := curRev(t, s)
	res := commit(t, s, kv.Txn{Ops: []kv.Op{kv.DeleteRange(b("b"), b("c"))}})
	if !res.Succeeded || res.Rev != rev+1 {
		t.Fatalf("delete range: %+v, want one new revision", res)
	}
	mustValue(t, s, "a", "a")
	mustAbsent(t, s, "b")
	mustAbsent(t, s, "ba")
	mustValue(t, s, "c", "c")
	// Put and delete of different keys in one commit.
	res = commit(t, s, kv.Txn{Ops: []kv.Op{kv.DeleteRange(b("a"), b("b")), kv.Put(b("b"), b("again"), kv.NoLease)}})
	if !res.Succeeded {
		t.Fatal("delete [a,b) + put b did not succeed")
	}
	mustAbsent(t, s, "a")
	mustValue(t, s, "b", "again")
}

func testInvalidInput(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	_, _, err := s.Get(ctx, nil, 0)
	wantErr(t, "get of an empty key", err, kv.ErrInvalid)
	_, err = s.Range(ctx, kv.RangeRequest{})
	wantErr(t, "range with an empty begin", err, kv.ErrInvalid)
	_, err = s.Range(ctx, kv.RangeRequest{End: b("z")})
	wantErr(t, "range with an empty begin and an end", err, kv.ErrInvalid)
	_, _, err = s.Get(ctx, b("k"), -1)
	wantErr(t, "get at a negative revision", err, kv.ErrInvalid)
	bad := []struct {
		name string
		txn  kv.Txn
	}{
		{"put to an empty key", kv.Txn{Ops: []kv.Op{kv.Put(nil, b("v"), kv.NoLease)}}},
		{"delete of an empty key", kv.Txn{Ops: []kv.Op{kv.Delete(nil)}}},
		{"compare on an empty key", kv.Txn{Compares: []kv.Compare{kv.Absent(nil)}}},
		{"put with a range end", kv.Txn{Ops: []kv.Op{{Kind: kv.OpPut, Key: b("a"), End: b("b")}}}},
		{"unknown op kind", kv.Txn{Ops: []kv.Op{{Kind: 99, Key: b("a")}}}},
		{"unknown compare target", kv.Txn{Compares: []kv.Compare{{Key: b("a"), Target: 99, Op: kv.Equal}}}},
		{"unknown compare operator", kv.Txn{Compares: []kv.Compare{{Key: b("a"), Target: kv.TargetVersion, Op: 99}}}},
	}
	rev := curRev(t, s)
	for _, c := range bad {
		_, err := s.Commit(ctx, c.txn)
		wantErr(t, c.name, err, kv.ErrInvalid)
	}
	_, err = s.Grant(ctx, 0)
	wantErr(t, "grant with TTL 0", err, kv.ErrInvalid)
	_, err = s.Grant(ctx, -time.Second)
	wantErr(t, "grant with a negative TTL", err, kv.ErrInvalid)
	if got := curRev(t, s); got != rev {
		t.Fatalf("invalid requests moved the revision from %d to %d", rev, got)
	}
}

func testDuplicateWrites(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "k", "orig")
	rev := curRev(t, s)
	for _, c := range []struct {
		name string
		ops  []kv.Op
	}{
		{"two puts of one key", []kv.Op{kv.Put(b("k"), b("1"), kv.NoLease), kv.Put(b("k"), b("2"), kv.NoLease)}},
		{"put and delete of one key", []kv.Op{kv.Put(b("k"), b("1"), kv.NoLease), kv.Delete(b("k"))}},
		{"delete then put of one key", []kv.Op{kv.Delete(b("k")), kv.Put(b("k"), b("1"), kv.NoLease)}},
		{"put inside a deleted range", []kv.Op{kv.DeleteRange(b("a"), b("z")), kv.Put(b("k"), b("1"), kv.NoLease)}},
	} {
		_, err := s.Commit(ctxT(t), kv.Txn{Ops: c.ops})
		wantErr(t, c.name, err, kv.ErrInvalid)
	}
	// Two deletes of one key are fine.
	res := commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("k")), kv.Delete(b("k"))}})
	if !res.Succeeded || res.Rev != rev+1 {
		t.Fatalf("two deletes of one key: %+v", res)
	}
	mustAbsent(t, s, "k")
}

func testLimits(t *testing.T, _ Harness, s kv.Store) {
	lim := s.Limits()
	if lim.MaxOpsPerTxn <= 0 || lim.MaxRequestBytes <= 0 {
		t.Fatalf("store reports no limits: %+v", lim)
	}
	ops := func(n int) []kv.Op {
		out := make([]kv.Op, n)
		for i := range out {
			out[i] = kv.Put(b(fmt.Sprintf("op%04d", i)), b("v"), kv.NoLease)
		}
		return out
	}
	rev := curRev(t, s)
	// At the limit: fine.
	if res := commit(t, s, kv.Txn{Ops: ops(lim.MaxOpsPerTxn)}); !res.Succeeded || res.Rev != rev+1 {
		t.Fatalf("%d ops (the limit): %+v", lim.MaxOpsPerTxn, res)
	}
	rev++
	var le *kv.LimitError
	_, err := s.Commit(ctxT(t), kv.Txn{Ops: ops(lim.MaxOpsPerTxn + 1)})
	wantErr(t, "one op over the limit", err, kv.ErrTooLarge)
	if !errors.As(err, &le) || le.Limit != lim.MaxOpsPerTxn {
		t.Fatalf("op limit error %v does not say which limit", err)
	}
	cmps := make([]kv.Compare, lim.MaxOpsPerTxn+1)
	for i := range cmps {
		cmps[i] = kv.Absent(b(fmt.Sprintf("c%04d", i)))
	}
	_, err = s.Commit(ctxT(t), kv.Txn{Compares: cmps})
	wantErr(t, "one compare over the limit", err, kv.ErrTooLarge)
	big := make([]byte, lim.MaxRequestBytes)
	_, err = s.Commit(ctxT(t), kv.Txn{Ops: []kv.Op{kv.Put(b("big"), big, kv.NoLease)}})
	wantErr(t, "a value over the request size", err, kv.ErrTooLarge)
	if !errors.As(err, &le) {
		t.Fatalf("size limit error %v is not a *kv.LimitError", err)
	}
	// Just under the size limit: fine.
	fits := make([]byte, lim.MaxRequestBytes-len("big")-16-64)
	if res := commit(t, s, kv.Txn{Ops: []kv.Op{kv.Put(b("big"), fits, kv.NoLease)}}); !res.Succeeded {
		t.Fatal("a value just under the limit did not commit")
	}
	rev++
	if e := mustValue(t, s, "big", string(fits)); e.ModRev != rev {
		t.Fatalf("big value at %d, want %d", e.ModRev, rev)
	}
	mustAbsent(t, s, fmt.Sprintf("op%04d", lim.MaxOpsPerTxn))
}

func testLeaseAttachAndRevoke(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	id, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if id == kv.NoLease {
		t.Fatal("grant returned the zero lease")
	}
	other, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if other == id {
		t.Fatal("two grants returned one lease")
	}
	commit(t, s, kv.Txn{Ops: []kv.Op{
		kv.Put(b("l1"), b("x"), id), kv.Put(b("l2"), b("y"), id), kv.Put(b("o"), b("z"), other), kv.Put(b("free"), b("f"), kv.NoLease),
	}})
	if e := mustValue(t, s, "l1", "x"); e.Lease != id {
		t.Fatalf("l1 lease %d, want %d", e.Lease, id)
	}
	ttl, err := s.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ttl < 30*time.Second {
		t.Fatalf("keep-alive TTL %v, want at least the 30s granted", ttl)
	}
	rev := curRev(t, s)
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	mustAbsent(t, s, "l1")
	mustAbsent(t, s, "l2")
	mustValue(t, s, "o", "z")
	mustValue(t, s, "free", "f")
	if got := curRev(t, s); got != rev+1 {
		t.Fatalf("revoke moved the revision from %d to %d, want one deletion revision", rev, got)
	}
	_, err = s.KeepAlive(ctx, id)
	wantErr(t, "keep-alive after revoke", err, kv.ErrLeaseNotFound)
	// Revoking a lease with no keys deletes nothing.
	empty, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rev = curRev(t, s)
	if err := s.Revoke(ctx, empty); err != nil {
		t.Fatal(err)
	}
	if got := curRev(t, s); got != rev {
		t.Fatalf("revoking a lease without keys moved the revision from %d to %d", rev, got)
	}
	if err := s.Revoke(ctx, other); err != nil {
		t.Fatal(err)
	}
}

func testLeaseNotFound(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	const missing = kv.LeaseID(0x7eadbeef)
	_, err := s.KeepAlive(ctx, missing)
	wantErr(t, "keep-alive of an unknown lease", err, kv.ErrLeaseNotFound)
	err = s.Revoke(ctx, missing)
	wantErr(t, "revoke of an unknown lease", err, kv.ErrLeaseNotFound)
	put(t, s, "k", "v")
	rev := curRev(t, s)
	// A put with an unknown lease fails the whole commit, nothing applied.
	_, err = s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(b("a"), b("1"), kv.NoLease), kv.Put(b("b"), b("2"), missing)}})
	wantErr(t, "put with an unknown lease", err, kv.ErrLeaseNotFound)
	mustAbsent(t, s, "a")
	// ...but only if the compares held: the branch that would use it.
	res, err := s.Commit(ctx, kv.Txn{Compares: []kv.Compare{kv.Absent(b("k"))}, Ops: []kv.Op{kv.Put(b("b"), b("2"), missing)}})
	if err != nil || res.Succeeded {
		t.Fatalf("failed compare + unknown lease: %+v, %v; want not succeeded, no error", res, err)
	}
	if got := curRev(t, s); got != rev {
		t.Fatalf("revision moved from %d to %d", rev, got)
	}
}

func testLeaseDetachOnRewrite(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	id, err := s.Grant(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Put(b("k"), b("leased"), id), kv.Put(b("gone"), b("x"), id)}})
	// Rewriting without the lease detaches the key from it.
	put(t, s, "k", "free")
	if e := mustValue(t, s, "k", "free"); e.Lease != kv.NoLease {
		t.Fatalf("rewritten key still has lease %d", e.Lease)
	}
	// Deleting and recreating a key drops its lease too.
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Delete(b("gone"))}})
	put(t, s, "gone", "back")
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	mustValue(t, s, "k", "free")
	mustValue(t, s, "gone", "back")
}

// waitAbsent polls until key is gone or the context ends.
func waitAbsent(t *testing.T, s kv.Store, key string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if _, found := get(t, s, key, 0); !found {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%q still present %v later", key, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testLeaseExpiry(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	id, err := s.Grant(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Put(b("a"), b("1"), id), kv.Put(b("b"), b("2"), id), kv.Put(b("c"), b("3"), kv.NoLease)}})
	rev := curRev(t, s)
	waitAbsent(t, s, "a", 20*time.Second)
	mustAbsent(t, s, "b")
	mustValue(t, s, "c", "3")
	if got := curRev(t, s); got != rev+1 {
		t.Fatalf("expiry moved the revision from %d to %d, want one deletion revision", rev, got)
	}
	_, err = s.KeepAlive(ctx, id)
	wantErr(t, "keep-alive of an expired lease", err, kv.ErrLeaseNotFound)
	_, err = s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(b("d"), b("4"), id)}})
	wantErr(t, "put with an expired lease", err, kv.ErrLeaseNotFound)
	err = s.Revoke(ctx, id)
	wantErr(t, "revoke of an expired lease", err, kv.ErrLeaseNotFound)
}

func testLeaseKeepAlive(t *testing.T, _ Harness, s kv.Store) {
	ctx := ctxT(t)
	id, err := s.Grant(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, kv.Txn{Ops: []kv.Op{kv.Put(b("kept"), b("1"), id)}})
	// Renewing every 300ms keeps the key well past the TTL.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ttl, err := s.KeepAlive(ctx, id)
		if err != nil {
			t.Fatalf("keep-alive: %v", err)
		}
		if ttl < 3*time.Second {
			t.Fatalf("keep-alive TTL %v, want at least 3s", ttl)
		}
		time.Sleep(300 * time.Millisecond)
	}
	mustValue(t, s, "kept", "1")
	// Then it expires once renewals stop.
	waitAbsent(t, s, "kept", 20*time.Second)
}

func testCanceledContext(t *testing.T, _ Harness, s kv.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Get(ctx, b("k"), 0)
	wantErr(t, "get with a canceled context", err, context.Canceled)
	_, err = s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(b("k"), b("v"), kv.NoLease)}})
	wantErr(t, "commit with a canceled context", err, context.Canceled)
	mustAbsent(t, s, "k")
}

func testClose(t *testing.T, _ Harness, s kv.Store) {
	put(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := ctxT(t)
	_, _, err := s.Get(ctx, b("k"), 0)
	wantErr(t, "get after close", err, kv.ErrClosed)
	_, err = s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(b("k"), b("v"), kv.NoLease)}})
	wantErr(t, "commit after close", err, kv.ErrClosed)
	_, err = s.Grant(ctx, time.Minute)
	wantErr(t, "grant after close", err, kv.ErrClosed)
}
