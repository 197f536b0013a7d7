package nola

import (
	"fmt"
	"testing"
	"unsafe"

	"pgregory.net/rapid"
)

// tableActivation is a bare activation with its key set, for the table.
func tableActivation(k actorKey) *activation {
	a := &activation{}
	a.setKey(k)
	return a
}

// checkShard asserts the shard's invariants: n counts the occupied slots,
// the length is a power of two within the load bounds, and every entry is
// reachable from its home slot without crossing a free slot (the property
// lookups and backward-shift deletion rely on).
func checkShard(t *rapid.T, sh *shard) {
	occupied := 0
	for _, s := range sh.slots {
		if s.a != nil {
			occupied++
		}
	}
	if occupied != sh.n {
		t.Fatalf("n = %d, but %d slots are occupied", sh.n, occupied)
	}
	if sh.n == 0 {
		if sh.slots != nil {
			t.Fatalf("an empty shard keeps %d slots", len(sh.slots))
		}
		return
	}
	if l := len(sh.slots); l&(l-1) != 0 || l < minSlots || sh.n*4 > l*3 {
		t.Fatalf("%d entries in %d slots: not a power of two ≥ %d at load ≤ 3/4", sh.n, l, minSlots)
	}
	mask := uint64(len(sh.slots) - 1)
	for i, s := range sh.slots {
		if s.a == nil {
			continue
		}
		for j := s.h & mask; j != uint64(i); j = (j + 1) & mask {
			if sh.slots[j].a == nil {
				t.Fatalf("slot %d (home %d) is cut off from its home by free slot %d", i, s.h&mask, j)
			}
		}
	}
}

// The shard against a map: random puts (new and replacing), removes (of
// the entry, and of a stale activation of the same key) and gets over a
// few keys whose hashes are drawn from a tiny range, so that full-hash
// collisions, shared homes, runs that wrap around the end and growth and
// shrinking all happen.
func TestShardMatchesAMap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var sh shard
		model := map[actorKey]*activation{}
		keys := make([]actorKey, rapid.IntRange(1, 40).Draw(t, "keys"))
		hashes := map[actorKey]uint64{}
		spread := rapid.Uint64Range(1, 64).Draw(t, "spread")
		for i := range keys {
			keys[i] = actorKey{"ns", fmt.Sprintf("a%d", i)}
			hashes[keys[i]] = rapid.Uint64Range(0, spread-1).Draw(t, "hash") << 3 // low bits shared: long runs
		}
		for range rapid.IntRange(1, 300).Draw(t, "ops") {
			k := rapid.SampledFrom(keys).Draw(t, "key")
			h := hashes[k]
			switch op := rapid.IntRange(0, 3).Draw(t, "op"); op {
			case 0, 1:
				a := tableActivation(k)
				sh.put(h, a)
				model[k] = a
			case 2:
				cur := model[k]
				if cur == nil {
					cur = tableActivation(k)
				}
				if got := sh.remove(h, cur); got != (model[k] != nil) {
					t.Fatalf("remove(%v) = %v, the model had %v", k, got, model[k] != nil)
				}
				delete(model, k)
			case 3:
				// A stale activation of a present key is not removed.
				if model[k] != nil && sh.remove(h, tableActivation(k)) {
					t.Fatalf("remove(%v) removed another activation's entry", k)
				}
			}
			checkShard(t, &sh)
			for _, k := range keys {
				if got := sh.get(hashes[k], k); got != model[k] {
					t.Fatalf("get(%v) = %p, want %p", k, got, model[k])
				}
			}
		}
	})
}

// A table's hash is seeded per table: the same key lands in unrelated
// shards and slots of two tables (so IDs crafted against one process's
// table say nothing about another's), and keys differing only in where
// the namespace ends hash apart.
func TestTableHashIsSeeded(t *testing.T) {
	k := actorKey{"ns", "id"}
	same := 0
	for range 8 {
		t1, t2 := newTable(), newTable()
		_, h1 := t1.shard(k)
		_, h2 := t2.shard(k)
		if h1 == h2 {
			same++
		}
		_, ha := t1.shard(actorKey{"ab", "c"})
		_, hb := t1.shard(actorKey{"a", "bc"})
		if ha == hb {
			t.Fatalf("ab/c and a/bc hash alike")
		}
	}
	if same > 0 {
		t.Fatalf("one key hashed alike in %d of 8 pairs of tables: the hash is not seeded", same)
	}
}

// An activation's key reads back as it was set, whether its bytes fit in
// the activation (then they are there, in its hot lines) or not, and
// never aliases the caller's strings.
func TestActivationKeyInlineOrNot(t *testing.T) {
	long := string(make([]byte, inlineKeyBytes))
	for _, k := range []actorKey{
		{"ns", "id"},
		{"", "id"},
		{"n", long[:inlineKeyBytes-1]}, // exactly inlineKeyBytes together
		{"n", long},                    // one over
		{long, long},
	} {
		caller := actorKey{string([]byte(k.ns)), string([]byte(k.id))}
		a := tableActivation(caller)
		if a.key() != k || a.ns() != k.ns || a.actorID() != k.id {
			t.Fatalf("key %q/%q read back as %q/%q", k.ns, k.id, a.ns(), a.actorID())
		}
		inline := uintptr(unsafe.Pointer(a.kp)) == uintptr(unsafe.Pointer(&a.keyBuf[0]))
		if fits := len(k.ns)+len(k.id) <= inlineKeyBytes; inline != fits {
			t.Errorf("key of %d bytes: inline %v, want %v", len(k.ns)+len(k.id), inline, fits)
		}
		if within(a.actorID(), caller.id) || within(a.ns(), caller.ns) {
			t.Errorf("key %q/%q aliases the caller's strings", k.ns, k.id)
		}
	}
}
