package nola

import (
	"strings"
	"testing"
)

// TestShardKeys: a key is found under the map its length picks (short keys
// inline, long ones as actorKey), at the boundary too; distinct keys never
// meet (the encoding keeps where the namespace ends); sorted sees both maps.
func TestShardKeys(t *testing.T) {
	tbl := newTable()
	keys := []actorKey{
		{"ab", "c"}, {"a", "bc"}, {"", "abc"}, {"abc", ""},
		{"ns", strings.Repeat("x", maxShortKey-2)}, // longest short key
		{"ns", strings.Repeat("x", maxShortKey-1)}, // shortest long key
		{"ns", strings.Repeat("x", maxShortKey-2) + "\x00"},
		{strings.Repeat("n", 200), "id"},
	}
	if _, ok := keys[4].short(); !ok {
		t.Fatalf("%d bytes of key should be short", maxShortKey)
	}
	if _, ok := keys[5].short(); ok {
		t.Fatalf("%d bytes of key should be long", maxShortKey+1)
	}
	sh := &tbl.shards[0]
	as := map[actorKey]*activation{}
	for _, k := range keys {
		a := &activation{}
		a.key = k
		as[k] = a
		sh.put(k, a) // one shard: keys that collide would meet
	}
	for _, k := range keys {
		if got := sh.get(k); got != as[k] {
			t.Errorf("get(%q/%q) = %p, want %p", k.ns, k.id, got, as[k])
		}
	}
	if n := len(tbl.sorted()); n != len(keys) {
		t.Errorf("sorted has %d activations, want %d", n, len(keys))
	}
	for _, k := range keys {
		sh.del(k)
		if got := sh.get(k); got != nil {
			t.Errorf("get(%q/%q) after del = %p", k.ns, k.id, got)
		}
	}
	if n := len(tbl.sorted()); n != 0 {
		t.Errorf("sorted has %d activations after deleting all", n)
	}
}
