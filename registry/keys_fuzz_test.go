package registry

import (
	"bytes"
	"testing"

	"github.com/nolaproject/nola/registry/tuple"
)

// FuzzKVKey checks the KV key encoding from both sides: every (namespace,
// actor, user key) encodes to a store key inside the actor's ranges that
// decodes back to the same user key, and arbitrary store bytes under an
// actor's prefix either fail to decode or decode to a key that re-encodes to
// exactly those bytes (two store keys never alias one user key).
func FuzzKVKey(f *testing.F) {
	f.Add("ns", "actor", []byte("key"), []byte{})
	f.Add("n\x00s", "a\x00", []byte{0, 0xff, 0}, []byte{0x01, 'k', 0x00, 0xff, 0x00})
	f.Add("", "", []byte{}, []byte{0x01, 0x00})
	f.Add("ns", "a", []byte{0xff}, []byte{0x15, 0x00})
	ks := NewKeyspace("nola")
	f.Fuzz(func(t *testing.T, ns, id string, user, raw []byte) {
		key := ks.KV(ns, id, 0, user)
		prefix := ks.KVPrefix(ns, id, 0)
		got, err := UserKey(prefix, key)
		if err != nil || !bytes.Equal(got, user) {
			t.Fatalf("UserKey(KV(%q, %q, %x)) = %x, %v", ns, id, user, got, err)
		}
		begin, end := ks.KVRange(ns, id, 0, nil, nil)
		if bytes.Compare(key, begin) < 0 || bytes.Compare(key, end) >= 0 {
			t.Fatalf("KV key %x outside the actor's range [%x, %x)", key, begin, end)
		}
		if len(user) > 0 {
			pb, pe := ks.KVPrefixRange(ns, id, 0, user[:len(user)/2+1])
			if bytes.Compare(key, pb) < 0 || (pe != nil && bytes.Compare(key, pe) >= 0) {
				t.Fatalf("KV key %x outside its prefix range [%x, %x)", key, pb, pe)
			}
		}
		// Arbitrary bytes under the prefix.
		store := append(bytes.Clone(prefix), raw...)
		if u, err := UserKey(prefix, store); err == nil {
			if again := ks.KV(ns, id, 0, u); !bytes.Equal(again, store) {
				t.Fatalf("store key %x decodes to %x, which encodes to %x", store, u, again)
			}
		}
	})
}

// FuzzRecords feeds arbitrary bytes to every record decoder: each either
// fails or decodes to a record that encodes back to the same bytes.
func FuzzRecords(f *testing.F) {
	f.Add(ActorRecord{Type: "t", Owner: "s", OwnerIncarnation: 3, Epoch: 9}.encode())
	f.Add(ServerRecord{Incarnation: 1, Addr: "127.0.0.1:1", RegisteredAt: 5}.encode())
	f.Add(Load{Incarnation: 1, Activations: 2, Bytes: 3, Limit: 4}.encode())
	f.Add(tuple.Tuple{int64(1), int64(2), int64(3), int64(4)}.Pack()) // an old record
	f.Add(encodeInt(-42))
	f.Add(encodeKVUsage(7, 0))
	f.Add(encodeKVUsage(7, 9))
	f.Add(encodeNamespaceKVUsage(12))
	f.Add(encodeMarker([]byte("k"), 5))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeActor(b); err == nil && !bytes.Equal(r.encode(), b) {
			t.Fatalf("actor record %x decodes to %+v, which encodes to %x", b, r, r.encode())
		}
		if r, err := decodeServer("s", b); err == nil && !bytes.Equal(r.encode(), b) {
			t.Fatalf("server record %x decodes to %+v, which encodes to %x", b, r, r.encode())
		}
		// Load records are never compared byte for byte (no fence reads
		// them) and accept optional and unknown trailing fields: they
		// round-trip by value.
		if l, err := decodeLoad(b); err == nil {
			if again, err := decodeLoad(l.encode()); err != nil || again != l {
				t.Fatalf("load record %x decodes to %+v, which re-decodes to %+v (%v)", b, l, again, err)
			}
		}
		// Usage records are compared byte for byte by the commits that
		// move them: one value, one encoding.
		if n, g, err := decodeKVUsage(b); err == nil && !bytes.Equal(encodeKVUsage(n, g), b) {
			t.Fatalf("KV usage %x decodes to (%d, %d), which encodes to %x", b, n, g, encodeKVUsage(n, g))
		}
		if n, err := decodeNamespaceKVUsage(b); err == nil && !bytes.Equal(encodeNamespaceKVUsage(n), b) {
			t.Fatalf("namespace KV usage %x decodes to %d, which encodes to %x", b, n, encodeNamespaceKVUsage(n))
		}
		if from, g, err := decodeMarker(b); err == nil && !bytes.Equal(encodeMarker(from, g), b) {
			t.Fatalf("reclaim marker %x decodes to (%x, %d), which encodes to %x", b, from, g, encodeMarker(from, g))
		}
		if v, err := decodeInt(b); err == nil && !bytes.Equal(encodeInt(v), b) {
			t.Fatalf("counter %x decodes to %d, which encodes to %x", b, v, encodeInt(v))
		}
	})
}
