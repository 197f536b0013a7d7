package sim

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// TestReleaseCheckEveryRecordShape: G1.release-foreign must judge a
// release whatever the shape of the released record (a generation after a
// delete, a placement hint after a locality move) and of the record it
// overwrites: a rule that only looks at four-element records misses every
// locality move, the releases locality seeds are about.
func TestReleaseCheckEveryRecordShape(t *testing.T) {
	released := map[string]tuple.Tuple{
		"plain":      {"counter", "", int64(0), int64(3)},
		"generation": {"counter", "", int64(0), int64(3), int64(2)},
		"hint":       {"counter", "", int64(0), int64(3), int64(0), "s2"},
	}
	owned := map[string]tuple.Tuple{
		"plain":      {"counter", "s3", int64(7), int64(2)},
		"generation": {"counter", "s3", int64(7), int64(2), int64(2)},
	}
	for rn, rel := range released {
		for on, own := range owned {
			runOracle(t, func(s *oracleScript) {
				key := s.o.keys.Actor(Namespace, "a")
				if _, err := s.store.Commit(context.Background(), kv.Txn{Ops: []kv.Op{kv.Put(key, own.Pack(), kv.NoLease)}}); err != nil {
					t.Fatal(err)
				}
				// s1#1 releases an actor that s3#7 owns (no compare: a
				// release whose compare was skipped).
				txn := kv.Txn{Ops: []kv.Op{kv.Put(key, rel.Pack(), kv.NoLease)}}
				if s.o.releaseCheck("s1", 1, txn) == nil {
					t.Errorf("release of a %s record over an owned %s record: not checked", rn, on)
				}
			})
		}
	}
}
