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
		got := r.encode()
		// Generation 0 packs as the four-element record of before
		// deletion existed; later generations append a fifth element.
		want := tuple.Tuple{r.Type, r.Owner, r.OwnerIncarnation, r.Epoch}
		if r.Generation != 0 {
			want = append(want, r.Generation)
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
	} {
		if _, err := decodeActor(b); !errors.Is(err, tuple.ErrInvalid) {
			t.Errorf("decodeActor(%x) err = %v, want a wrapped tuple.ErrInvalid", b, err)
		}
	}
}
