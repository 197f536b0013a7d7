package etcdkv

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/nolaproject/nola/registry/kv"
)

// pbTxn builds the messages the clientv3 builder (Store.Txn, which
// commits used before) builds: the same compares, byte for byte, and the
// same operations, with and without a key prefix; and it refuses what Txn
// refuses.
func TestPBTxnMatchesClientBuilder(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	txns := []kv.Txn{
		{
			Compares: []kv.Compare{
				kv.ValueEquals(k("srv/1"), k("record")),
				kv.ValueEquals(k("empty"), []byte{}),
				kv.ValueEquals(k("nil"), nil),
				kv.Absent(k("a")), kv.Exists(k("b")),
				kv.ModRevEquals(k("actor"), 0), kv.ModRevEquals(k("actor2"), 42),
				{Key: k("c"), Target: kv.TargetCreateRev, Op: kv.Less, Num: 7},
				{Key: k("d"), Target: kv.TargetVersion, Op: kv.NotEqual, Num: 3},
				{Key: k("r/"), End: k("r0"), Target: kv.TargetVersion, Op: kv.Greater, Num: 0}, // a range
				{Key: k("z"), End: k("a"), Target: kv.TargetVersion, Op: kv.Equal, Num: 0},     // an empty range
			},
			Ops: []kv.Op{
				kv.Put(k("p1"), k("v1"), kv.NoLease),
				kv.Put(k("p2"), nil, kv.NoLease),
				kv.Put(k("p3"), k("leased"), kv.LeaseID(99)),
				kv.Delete(k("d1")),
				kv.DeleteRange(k("d/"), k("d0")),
				kv.DeleteRange(k("e"), k("e")), // empty: dropped by both
			},
		},
		{Ops: []kv.Op{kv.Put(k("only"), k("op"), kv.NoLease)}},
	}
	for _, prefix := range []string{"", "tenant/"} {
		s := &Store{prefix: []byte(prefix)}
		for ti, txn := range txns {
			name := fmt.Sprintf("prefix %q, txn %d", prefix, ti)
			oldC, oldO, err := s.Txn(txn)
			if err != nil {
				t.Fatalf("%s: Txn: %v", name, err)
			}
			newC, newO, err := s.pbTxn(txn)
			if err != nil {
				t.Fatalf("%s: pbTxn: %v", name, err)
			}
			if len(oldC) != len(newC) || len(oldO) != len(newO) {
				t.Fatalf("%s: %d compares and %d ops, want %d and %d", name, len(newC), len(newO), len(oldC), len(oldO))
			}
			for i := range oldC {
				if want := oldC[i].GetCompare(); !proto.Equal(want, newC[i]) {
					t.Errorf("%s: compare %d:\n got %v\nwant %v", name, i, newC[i], want)
				}
			}
			for i, o := range oldO {
				n := newO[i]
				switch {
				case o.IsPut():
					p := n.GetRequestPut()
					if p == nil || !bytes.Equal(p.Key, o.KeyBytes()) || !bytes.Equal(p.Value, o.ValueBytes()) || p.PrevKv || p.IgnoreValue || p.IgnoreLease {
						t.Errorf("%s: op %d: %v, want a put of %q = %q", name, i, n, o.KeyBytes(), o.ValueBytes())
					}
				case o.IsDelete():
					d := n.GetRequestDeleteRange()
					if d == nil || !bytes.Equal(d.Key, o.KeyBytes()) || !bytes.Equal(d.RangeEnd, o.RangeBytes()) || d.PrevKv {
						t.Errorf("%s: op %d: %v, want a delete of [%q, %q)", name, i, n, o.KeyBytes(), o.RangeBytes())
					}
				default:
					t.Fatalf("%s: op %d of Txn is neither a put nor a delete", name, i)
				}
			}
		}
		// The lease (not readable from a clientv3.Op) is the op's own.
		_, ops, _ := s.pbTxn(txns[0])
		if got := ops[2].GetRequestPut().Lease; got != 99 {
			t.Errorf("prefix %q: leased put carries lease %d, want 99", prefix, got)
		}
		if got := ops[0].GetRequestPut().Lease; got != 0 {
			t.Errorf("prefix %q: unleased put carries lease %d", prefix, got)
		}
	}

	// A put's key and value share an allocation: appending to the key
	// must not reach the value.
	s := &Store{}
	_, ops, _ := s.pbTxn(kv.Txn{Ops: []kv.Op{kv.Put(k("key"), k("value"), kv.NoLease)}})
	p := ops[0].GetRequestPut()
	_ = append(p.Key, 'X')
	if string(p.Value) != "value" {
		t.Fatalf("appending to the put's key changed its value to %q", p.Value)
	}
	// The request does not alias the caller's bytes.
	key, val := k("key"), k("value")
	cmps, ops, _ := s.pbTxn(kv.Txn{Compares: []kv.Compare{kv.ValueEquals(key, val)}, Ops: []kv.Op{kv.Put(key, val, kv.NoLease)}})
	key[0], val[0] = 'K', 'V'
	if string(cmps[0].Key) != "key" || string(cmps[0].GetValue()) != "value" || string(ops[0].GetRequestPut().Key) != "key" || string(ops[0].GetRequestPut().Value) != "value" {
		t.Fatal("the request aliases the caller's key or value")
	}

	for _, bad := range []kv.Txn{
		{Compares: []kv.Compare{{Target: kv.TargetVersion}}},
		{Compares: []kv.Compare{{Key: k("a"), Target: kv.Target(99)}}},
		{Compares: []kv.Compare{{Key: k("a"), Op: kv.CmpOp(99)}}},
		{Ops: []kv.Op{{Kind: kv.OpPut}}},
		{Ops: []kv.Op{{Kind: kv.OpPut, Key: k("a"), End: k("b")}}},
		{Ops: []kv.Op{{Kind: kv.OpKind(99), Key: k("a")}}},
	} {
		_, _, oldErr := s.Txn(bad)
		_, _, newErr := s.pbTxn(bad)
		if !errors.Is(oldErr, kv.ErrInvalid) || !errors.Is(newErr, kv.ErrInvalid) {
			t.Errorf("%+v: Txn %v, pbTxn %v; want kv.ErrInvalid from both", bad, oldErr, newErr)
		}
	}
}
