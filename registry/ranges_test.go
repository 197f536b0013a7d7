package registry_test

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// Names may hold NUL (valid UTF-8), which packs as 0x00 0xff: a byte prefix
// of "a"'s children is also a prefix of "a\x00b"'s keys. Ranges over a
// name's children (tuple.ChildRange) leave those out: ListActors("a") does
// not list namespace "a\x00b", and actor "a"'s KV scan does not see actor
// "a\x00x"'s keys (it once did, and failed decoding them).
func TestNULInNamesStaysInsideItsRanges(t *testing.T) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	reg := registry.New(store, r, registry.Options{})
	ctx := context.Background()
	inc := mustRegister(t, reg, "s1")
	defer reg.Deregister(ctx, inc)

	if _, err := reg.EnsureActivation(ctx, "a\x00b", "intruder", "t"); err != nil {
		t.Fatal(err)
	}
	list, _, err := reg.ListActors(ctx, "a", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("ListActors(\"a\") returned %d actors of another namespace: %+v", len(list), list)
	}

	// KV: actor "a" and actor "a\x00x" in one namespace.
	for _, id := range []string{"a", "a\x00x"} {
		if _, err := reg.EnsureActivation(ctx, "ns", id, "t"); err != nil {
			t.Fatal(err)
		}
		rec, _, _ := reg.Actor(ctx, "ns", id)
		if err := reg.CommitKV(ctx, inc, "ns", id, inc.OwnerRecord("t", rec.Epoch, 0),
			[]registry.KVWrite{{Key: []byte("k"), Value: []byte(id)}}); err != nil {
			t.Fatal(err)
		}
	}
	pairs, _, err := reg.ScanKV(ctx, "ns", "a", 0, nil, nil, 0)
	if err != nil || len(pairs) != 1 {
		t.Errorf("ScanKV of actor \"a\" = %d pairs, %v; want its 1 key (actor \"a\\x00x\" lives under its range)", len(pairs), err)
	}
}
