package etcdkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// The differential property: random sequences of commits, reads and lease
// operations applied to memkv and to a real etcd member side by side give
// the same results step by step (revisions as offsets from each store's
// revision at the start of the sequence, leases by the order of their
// grants). A mismatch fails the test and rapid shrinks it to a minimal
// sequence, printed op by op.
//
// Each sequence runs against a fresh memkv and a fresh key prefix of one
// etcd member (so that sequences cannot see each other's keys); its leases
// are long (≥30s) and revoked at the end, so that no expiry moves etcd's
// revision during a later sequence.
func TestDifferentialMemkvEtcd(t *testing.T) {
	e := startEmbedded(t, etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{UnsafeNoFsync: true}})
	var seq atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		mem, etcd := openPair(rt, e, fmt.Sprintf("diff/%d/", seq.Add(1)))
		diffProperty(rt, mem, etcd)
	})
}

// A property that cannot fail proves nothing: a store that differs in one
// small way (Range never reports More) must be caught, and the failing
// sequence must shrink to a handful of steps. The broken store is compared
// with memkv here rather than etcd: the property is the same code, and
// shrinking against an in-memory pair takes a second instead of rapid's
// whole 30s shrink budget.
func TestDifferentialCatchesABrokenStore(t *testing.T) {
	rec := &recorder{name: "TestDifferentialCatchesABrokenStore_inner"}
	// rapid saves failing cases under testdata/rapid/<name>: remove ours.
	t.Cleanup(func() {
		_ = os.RemoveAll(filepath.Join("testdata", "rapid", rec.name))
		_ = os.Remove(filepath.Join("testdata", "rapid")) // only if empty
		_ = os.Remove("testdata")
	})
	rapid.Check(rec, func(t *rapid.T) {
		r := rt.NewReal()
		good, bad := memkv.New(r, memkv.Options{}), memkv.New(r, memkv.Options{})
		t.Cleanup(func() {
			_ = good.Close()
			_ = bad.Close()
			r.Wait()
		})
		diffProperty(t, &side{name: "memkv", store: good}, &side{name: "broken", store: noMore{bad}})
	})
	if !rec.Failed() {
		t.Fatalf("the differential property passed against a store that never reports More:\n%s", strings.Join(rec.logs(), "\n"))
	}
	// The last run rapid reports is the minimal one; count its ops.
	var steps, last []string
	for _, l := range rec.logs() {
		switch {
		case strings.HasPrefix(l, "op "):
			steps = append(steps, l)
		case strings.HasPrefix(l, "mismatch"):
			last, steps = append(steps, l), nil
		}
	}
	t.Logf("minimal failing sequence:\n%s", strings.Join(last, "\n"))
	if len(last) == 0 || len(last) > 5 {
		t.Fatalf("the failure did not shrink to at most 4 ops and the mismatch:\n%s", strings.Join(last, "\n"))
	}
}

// noMore breaks Range: it never reports More.
type noMore struct{ kv.Store }

func (s noMore) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	res, err := s.Store.Range(ctx, r)
	res.More = false
	return res, err
}

// recorder is a rapid.TB that records instead of failing the real test.
type recorder struct {
	name   string
	mu     sync.Mutex
	lines  []string
	failed bool
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return r.name }
func (r *recorder) Logf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(f, a...))
}
func (r *recorder) Log(a ...any)              { r.Logf("%s", fmt.Sprint(a...)) }
func (r *recorder) Skipf(string, ...any)      { panic("recorder: skip") }
func (r *recorder) Skip(...any)               { panic("recorder: skip") }
func (r *recorder) SkipNow()                  { panic("recorder: skip") }
func (r *recorder) Errorf(f string, a ...any) { r.Logf(f, a...); r.Fail() }
func (r *recorder) Error(a ...any)            { r.Log(a...); r.Fail() }
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...) }
func (r *recorder) Fatal(a ...any)            { r.Error(a...) }
func (r *recorder) FailNow()                  { r.Fail() }
func (r *recorder) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}
func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}
func (r *recorder) logs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		out = append(out, strings.Split(l, "\n")...)
	}
	return out
}

// side is one store of the pair with what normalizes its answers.
type side struct {
	name   string
	store  kv.Store
	base   int64        // revision at the start of the sequence
	leases []kv.LeaseID // by grant order
}

func openPair(t *rapid.T, e *etcdkv.Embedded, prefix string) (*side, *side) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := rt.NewReal()
	mem := memkv.New(r, memkv.Options{})
	es, err := etcdkv.Open(ctx, etcdkv.ClientConfig{Endpoints: e.Endpoints(), Options: etcdkv.Options{Prefix: prefix}})
	if err != nil {
		t.Fatalf("open etcd: %v", err)
	}
	base, err := es.Rev(ctx)
	if err != nil {
		t.Fatalf("etcd revision: %v", err)
	}
	ms, ets := &side{name: "memkv", store: mem}, &side{name: "etcd", store: es, base: base}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, id := range ets.leases {
			_ = es.Revoke(ctx, id)
		}
		_ = es.Close()
		_ = mem.Close()
		r.Wait()
	})
	return ms, ets
}

var (
	diffKeys = []string{"a", "b", "c", "d", "e"}
	diffEnds = []string{"a", "b", "c", "d", "e", "f", "\xff", "", "\x00"}
	diffVals = []string{"", "x", "y", "z"}
)

const bogusLease = kv.LeaseID(0x7eadbeef)

// gen draws the parts of a random request. Revisions and leases are drawn
// abstractly and resolved per store.
type leaseRef int // -1: none, -2: bogus, ≥0: index of a grant

type revRef struct {
	kind int // 0: latest/literal zero, 1: offset from the base, 2: future
	off  int64
}

func (s *side) lease(r leaseRef) kv.LeaseID {
	switch {
	case r == -1:
		return kv.NoLease
	case r == -2 || int(r) >= len(s.leases):
		return bogusLease
	}
	return s.leases[r]
}

func (s *side) rev(r revRef, cur int64) int64 {
	switch r.kind {
	case 1:
		return s.base + r.off
	case 2:
		return s.base + cur + r.off
	}
	return 0
}

// drawLease draws no lease most of the time, a granted one (live or not)
// often, and one that never existed now and then.
func drawLease(t *rapid.T, n int, label string) leaseRef {
	// rapid draws small numbers more often (and shrinks towards them):
	// the common case is 0.
	switch k := rapid.IntRange(0, 19).Draw(t, label+"-kind"); {
	case k == 13:
		return -2
	case k >= 7 && k < 12 && n > 0:
		return leaseRef(rapid.IntRange(0, n-1).Draw(t, label))
	}
	return -1
}

// drawRev draws a revision in [1, cur] (as an offset), the latest, or one
// in the future.
func drawRev(t *rapid.T, cur int64, label string) revRef {
	switch k := rapid.IntRange(0, 5).Draw(t, label+"-kind"); {
	case k >= 3 && k < 5 && cur >= 1:
		return revRef{kind: 1, off: rapid.Int64Range(1, cur).Draw(t, label)}
	case k == 5:
		return revRef{kind: 2, off: rapid.Int64Range(1, 3).Draw(t, label)}
	}
	return revRef{}
}

type abstractCmp struct {
	key, end string
	hasEnd   bool
	target   kv.Target
	op       kv.CmpOp
	value    string
	num      revRef // for revision targets; literal for version
	version  int64
}

func (c abstractCmp) String() string {
	end := ""
	if c.hasEnd {
		end = fmt.Sprintf("..%q", c.end)
	}
	return fmt.Sprintf("%q%s t%d op%d v=%q num=%+v ver=%d", c.key, end, c.target, c.op, c.value, c.num, c.version)
}

func (c abstractCmp) resolve(s *side) kv.Compare {
	out := kv.Compare{Key: []byte(c.key), Target: c.target, Op: c.op, Value: []byte(c.value)}
	if c.hasEnd {
		out.End = []byte(c.end)
	}
	switch c.target {
	case kv.TargetVersion:
		out.Num = c.version
	case kv.TargetCreateRev, kv.TargetModRev:
		if c.num.kind == 1 {
			out.Num = s.base + c.num.off
		}
	}
	return out
}

type abstractOp struct {
	kind   kv.OpKind
	key    string
	end    string
	hasEnd bool
	value  string
	lease  leaseRef
}

func (o abstractOp) String() string {
	if o.kind == kv.OpPut {
		return fmt.Sprintf("put %q=%q lease%d", o.key, o.value, o.lease)
	}
	if o.hasEnd {
		return fmt.Sprintf("delete %q..%q", o.key, o.end)
	}
	return fmt.Sprintf("delete %q", o.key)
}

func (o abstractOp) resolve(s *side) kv.Op {
	out := kv.Op{Kind: o.kind, Key: []byte(o.key), Value: []byte(o.value), Lease: s.lease(o.lease)}
	if o.hasEnd {
		out.End = []byte(o.end)
	}
	return out
}

// derive sets c's operands from key c.key as the reference store holds it.
func derive(ctx context.Context, t *rapid.T, ref *side, c *abstractCmp) {
	e, found, err := ref.store.Get(ctx, []byte(c.key), 0)
	if err != nil {
		t.Fatalf("%s: get for a derived compare: %v", ref.name, err)
	}
	if !found {
		c.target, c.version, c.num = kv.TargetVersion, 0, revRef{}
		return
	}
	c.value, c.version = string(e.Value), e.Version
	switch c.target {
	case kv.TargetCreateRev:
		c.num = revRef{kind: 1, off: e.CreateRev - ref.base}
	case kv.TargetModRev:
		c.num = revRef{kind: 1, off: e.ModRev - ref.base}
	}
}

// errClass names the kv sentinel an error wraps; anything else is a
// failure of the test.
func errClass(t *rapid.T, s *side, err error) string {
	for _, c := range []struct {
		name string
		err  error
	}{
		{"invalid", kv.ErrInvalid}, {"too-large", kv.ErrTooLarge}, {"lease-not-found", kv.ErrLeaseNotFound},
		{"compacted", kv.ErrCompacted}, {"future-rev", kv.ErrFutureRev},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", s.name, err)
	}
	return "ok"
}

func normKV(s *side, e kv.KeyValue, leaseIdx map[kv.LeaseID]int) string {
	lease := "none"
	if e.Lease != kv.NoLease {
		if i, ok := leaseIdx[e.Lease]; ok {
			lease = fmt.Sprint(i)
		} else {
			lease = fmt.Sprintf("unknown(%d)", e.Lease)
		}
	}
	return fmt.Sprintf("{%q=%q c%d m%d v%d lease %s}", e.Key, e.Value, e.CreateRev-s.base, e.ModRev-s.base, e.Version, lease)
}

func (s *side) leaseIndex() map[kv.LeaseID]int {
	m := make(map[kv.LeaseID]int, len(s.leases))
	for i, id := range s.leases {
		m[id] = i
	}
	return m
}

// diffProperty runs one random sequence against both stores.
func diffProperty(t *rapid.T, a, b *side) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cur int64 // revisions since the start, as both stores should agree
	step := 0
	both := func(what string, f func(s *side) string) {
		if what == "scan" {
			t.Logf("check: scan")
		} else {
			step++
			t.Logf("op %d: %s", step, what)
		}
		ra, rb := f(a), f(b)
		if ra != rb {
			t.Fatalf("mismatch at op %d (%s):\n  %s: %s\n  %s: %s", step, what, a.name, ra, b.name, rb)
		}
	}
	drawKey := func(label string) string {
		if rapid.IntRange(0, 40).Draw(t, label+"-empty") == 23 {
			return "" // invalid input, now and then
		}
		return rapid.SampledFrom(diffKeys).Draw(t, label)
	}
	t.Repeat(map[string]func(*rapid.T){
		"commit": func(t *rapid.T) {
			var cmps []abstractCmp
			ncmps := 0
			if rapid.Bool().Draw(t, "guarded") {
				ncmps = rapid.IntRange(1, 3).Draw(t, "ncmps")
			}
			for i := range ncmps {
				c := abstractCmp{
					key:    drawKey(fmt.Sprintf("cmp%d-key", i)),
					target: kv.Target(rapid.IntRange(1, 4).Draw(t, "target")),
					op:     kv.CmpOp(rapid.IntRange(1, 4).Draw(t, "op")),
					value:  rapid.SampledFrom(diffVals).Draw(t, "cmp-value"),
				}
				if rapid.IntRange(0, 3).Draw(t, "cmp-range") == 3 {
					c.hasEnd, c.end = true, rapid.SampledFrom(diffEnds).Draw(t, "cmp-end")
				}
				c.version = rapid.Int64Range(0, 3).Draw(t, "cmp-version")
				if rapid.Bool().Draw(t, "cmp-rev-zero") || cur == 0 {
					c.num = revRef{}
				} else {
					c.num = revRef{kind: 1, off: rapid.Int64Range(1, cur).Draw(t, "cmp-rev")}
				}
				if !c.hasEnd && c.key != "" && rapid.IntRange(0, 2).Draw(t, "cmp-derived") < 2 {
					// Most compares describe the key as it is (per the
					// reference store), so that guarded commits apply
					// often; the target and operator stay random.
					derive(ctx, t, a, &c)
				}
				cmps = append(cmps, c)
			}
			var ops []abstractOp
			// Mostly distinct keys: duplicates are invalid (tested, but
			// rarely).
			opKeys := rapid.Permutation(diffKeys).Draw(t, "op-keys")
			for i := range rapid.IntRange(0, 4).Draw(t, "nops") {
				key := opKeys[i]
				if rapid.IntRange(0, 9).Draw(t, fmt.Sprintf("op%d-dup", i)) == 5 {
					key = drawKey(fmt.Sprintf("op%d-key", i))
				}
				o := abstractOp{kind: kv.OpPut, key: key, lease: -1}
				switch rapid.IntRange(0, 5).Draw(t, "op-kind") {
				case 4:
					o.kind = kv.OpDelete
				case 5:
					o.kind, o.hasEnd, o.end = kv.OpDelete, true, rapid.SampledFrom(diffEnds).Draw(t, "op-end")
				default:
					o.value = rapid.SampledFrom(diffVals).Draw(t, "op-value")
					o.lease = drawLease(t, len(a.leases), "op-lease")
				}
				ops = append(ops, o)
			}
			var desc []string
			for _, c := range cmps {
				desc = append(desc, "if "+c.String())
			}
			for _, o := range ops {
				desc = append(desc, o.String())
			}
			var revs []int64
			both("commit ["+strings.Join(desc, "; ")+"]", func(s *side) string {
				txn := kv.Txn{}
				for _, c := range cmps {
					txn.Compares = append(txn.Compares, c.resolve(s))
				}
				for _, o := range ops {
					txn.Ops = append(txn.Ops, o.resolve(s))
				}
				res, err := s.store.Commit(ctx, txn)
				cl := errClass(t, s, err)
				if err != nil {
					return cl
				}
				revs = append(revs, res.Rev-s.base)
				return fmt.Sprintf("succeeded=%v rev=%d", res.Succeeded, res.Rev-s.base)
			})
			if len(revs) > 0 {
				cur = revs[0]
			}
		},
		"get": func(t *rapid.T) {
			key := drawKey("get-key")
			rev := drawRev(t, cur, "get-rev")
			both(fmt.Sprintf("get %q at %+v", key, rev), func(s *side) string {
				e, found, err := s.store.Get(ctx, []byte(key), s.rev(rev, cur))
				if err != nil {
					return errClass(t, s, err)
				}
				if !found {
					return "absent"
				}
				return normKV(s, e, s.leaseIndex())
			})
		},
		"range": func(t *rapid.T) {
			begin := drawKey("range-begin")
			var end []byte
			if rapid.IntRange(0, 4).Draw(t, "range-single") > 0 {
				end = []byte(rapid.SampledFrom(diffEnds).Draw(t, "range-end"))
			}
			limit := rapid.SampledFrom([]int{1, 2, 0, 3}).Draw(t, "range-limit")
			keysOnly := rapid.IntRange(0, 3).Draw(t, "range-keys-only") == 3
			rev := drawRev(t, cur, "range-rev")
			both(fmt.Sprintf("range [%q, %q) limit %d keys-only %v at %+v", begin, end, limit, keysOnly, rev), func(s *side) string {
				res, err := s.store.Range(ctx, kv.RangeRequest{Begin: []byte(begin), End: end, Limit: limit, KeysOnly: keysOnly, Rev: s.rev(rev, cur)})
				if err != nil {
					return errClass(t, s, err)
				}
				idx := s.leaseIndex()
				var parts []string
				for _, e := range res.KVs {
					parts = append(parts, normKV(s, e, idx))
				}
				return fmt.Sprintf("%s more=%v rev=%d", strings.Join(parts, " "), res.More, res.Rev-s.base)
			})
		},
		"grant": func(t *rapid.T) {
			ttl := time.Duration(rapid.SampledFrom([]int{30, 60}).Draw(t, "ttl")) * time.Second
			both(fmt.Sprintf("grant %v", ttl), func(s *side) string {
				id, err := s.store.Grant(ctx, ttl)
				if err != nil {
					return errClass(t, s, err)
				}
				s.leases = append(s.leases, id)
				return "ok"
			})
		},
		"keepalive": func(t *rapid.T) {
			l := leaseRef(-2)
			if len(a.leases) > 0 && rapid.IntRange(0, 9).Draw(t, "keepalive-known") > 0 {
				l = leaseRef(rapid.IntRange(0, len(a.leases)-1).Draw(t, "keepalive-lease"))
			}
			both(fmt.Sprintf("keep-alive lease%d", l), func(s *side) string {
				ttl, err := s.store.KeepAlive(ctx, s.lease(l))
				if err != nil {
					return errClass(t, s, err)
				}
				return fmt.Sprint(ttl)
			})
		},
		"revoke": func(t *rapid.T) {
			l := leaseRef(-2)
			if len(a.leases) > 0 && rapid.IntRange(0, 9).Draw(t, "revoke-known") > 0 {
				l = leaseRef(rapid.IntRange(0, len(a.leases)-1).Draw(t, "revoke-lease"))
			}
			both(fmt.Sprintf("revoke lease%d", l), func(s *side) string {
				before := cur
				err := s.store.Revoke(ctx, s.lease(l))
				if err != nil {
					return errClass(t, s, err)
				}
				// A revoke moves the revision when it deletes keys.
				probe, perr := s.store.Range(ctx, kv.RangeRequest{Begin: []byte("a")})
				if perr != nil {
					t.Fatalf("%s: probe: %v", s.name, perr)
				}
				return fmt.Sprintf("ok rev=%d (was %d)", probe.Rev-s.base, before)
			})
			// Both agreed; follow the revision.
			if probe, err := a.store.Range(ctx, kv.RangeRequest{Begin: []byte("a")}); err == nil {
				cur = probe.Rev - a.base
			}
		},
		"": func(t *rapid.T) {
			// Invariant after every step: the whole keyspace is equal.
			both("scan", func(s *side) string {
				res, err := s.store.Range(ctx, kv.RangeRequest{Begin: []byte{1}, End: []byte{0xff, 0xff}})
				if err != nil {
					t.Fatalf("%s: scan: %v", s.name, err)
				}
				idx := s.leaseIndex()
				var buf bytes.Buffer
				for _, e := range res.KVs {
					buf.WriteString(normKV(s, e, idx))
				}
				return fmt.Sprintf("%s rev=%d", buf.String(), res.Rev-s.base)
			})
		},
	})
}
