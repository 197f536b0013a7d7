package registry

import (
	"bytes"
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/nolaproject/nola/registry/tuple"
)

// The hand-packed actor record is byte for byte the tuple layer's packing
// (an FDB backend or an older server reads the same bytes) and decodes back.
func TestActorRecordCodec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := ActorRecord{
			Type:             rapid.String().Draw(t, "type"),
			Owner:            rapid.String().Draw(t, "owner"),
			OwnerIncarnation: rapid.Int64().Draw(t, "inc"),
			Epoch:            rapid.Int64().Draw(t, "epoch"),
			Generation:       rapid.Int64Min(0).Draw(t, "gen"),
		}
		if r.Owner == "" {
			// Only an ownerless (released) record carries a hint.
			r.Hint = rapid.StringN(0, 8, -1).Draw(t, "hint")
		}
		got := r.encode()
		// Generation 0 packs as the four-element record of before
		// deletion existed; later generations append a fifth element,
		// and a hint a sixth (with the generation then always present).
		want := tuple.Tuple{r.Type, r.Owner, r.OwnerIncarnation, r.Epoch}
		if r.Generation != 0 || r.Hint != "" {
			want = append(want, r.Generation)
		}
		if r.Hint != "" {
			want = append(want, r.Hint)
		}
		if !bytes.Equal(got, want.Pack()) {
			t.Fatalf("encode(%+v) = %x, Pack = %x", r, got, want.Pack())
		}
		back, err := decodeActor(got)
		if err != nil || back != r {
			t.Fatalf("decodeActor(encode(%+v)) = %+v, %v", r, back, err)
		}
	})
	good := ActorRecord{Type: "t", Owner: "s", OwnerIncarnation: 1, Epoch: 2}.encode()
	for _, b := range [][]byte{
		nil, good[:len(good)-1], append(bytes.Clone(good), 0x14), (tuple.Tuple{"t", "s", int64(1)}).Pack(),
		(tuple.Tuple{"t", int64(1), int64(1), int64(2)}).Pack(),
		// An explicit generation 0 or a negative one is not canonical:
		// two encodings of one record would defeat byte compares.
		(tuple.Tuple{"t", "s", int64(1), int64(2), int64(0)}).Pack(),
		(tuple.Tuple{"t", "s", int64(1), int64(2), int64(-1)}).Pack(),
		(tuple.Tuple{"t", "s", int64(1), int64(2), int64(3), int64(4)}).Pack(),
		// A hint only on an ownerless record, never empty, never long.
		(tuple.Tuple{"t", "s", int64(1), int64(2), int64(0), "s2"}).Pack(),
		(tuple.Tuple{"t", "", int64(0), int64(2), int64(0), ""}).Pack(),
		(tuple.Tuple{"t", "", int64(0), int64(2), int64(1), string(make([]byte, maxHintLen+1))}).Pack(),
		(tuple.Tuple{"t", "", int64(0), int64(2), int64(1), "s2", "x"}).Pack(),
	} {
		if _, err := decodeActor(b); !errors.Is(err, tuple.ErrInvalid) {
			t.Errorf("decodeActor(%x) err = %v, want a wrapped tuple.ErrInvalid", b, err)
		}
	}
}

// Load records carry optional trailing fields: an old four-element record
// decodes with zeros, unknown later elements are ignored, and every field
// survives a round trip.
func TestLoadRecordCodec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var l Load
		for _, f := range l.fields() {
			*f = rapid.Int64().Draw(t, "field")
		}
		back, err := decodeLoad(l.encode())
		if err != nil || back != l {
			t.Fatalf("decodeLoad(encode(%+v)) = %+v, %v", l, back, err)
		}
	})
	old := tuple.Tuple{int64(3), int64(10), int64(4096), int64(100)}.Pack()
	if l, err := decodeLoad(old); err != nil || l != (Load{Incarnation: 3, Activations: 10, Bytes: 4096, Limit: 100}) {
		t.Fatalf("old record: %+v, %v", l, err)
	}
	newer := tuple.Tuple{int64(3), int64(10), int64(4096), int64(100), int64(1), int64(2), int64(3), int64(4), "future", int64(9)}.Pack()
	if l, err := decodeLoad(newer); err != nil || l.Budget != 4 || l.HeapBytes != 1 {
		t.Fatalf("newer record: %+v, %v", l, err)
	}
	long := make(tuple.Tuple, loadMaxFields+1)
	for i := range long {
		long[i] = int64(i)
	}
	for _, b := range [][]byte{nil, tuple.Tuple{int64(1), int64(2), int64(3)}.Pack(), tuple.Tuple{int64(1), int64(2), int64(3), "x"}.Pack(),
		tuple.Tuple{int64(1), int64(2), int64(3), int64(4), "budget"}.Pack(), long.Pack()} {
		if _, err := decodeLoad(b); err == nil {
			t.Errorf("decodeLoad(%x) accepted a malformed record", b)
		}
	}
}
