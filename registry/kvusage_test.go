package registry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nolaproject/nola/registry"
)

// The usage record moves with the commit that changes the entries, and a
// commit that starts from a count the store no longer holds writes nothing
// (the count cannot drift); an actor whose KV predates counting gets its
// usage computed from its entries.
func TestCommitKVCountedKeepsTheUsageExact(t *testing.T) {
	forEachBackend(t, func(t *testing.T, reg *registry.Registry) {
		ctx := context.Background()
		inc := mustRegister(t, reg, "s1")
		if _, err := reg.EnsureActivation(ctx, "ns", "a", "t"); err != nil {
			t.Fatal(err)
		}
		rec := recordFor(t, reg, inc, "ns", "a", "t")
		// Written before counting: no usage record.
		if err := reg.CommitKV(ctx, inc, "ns", "a", rec, []registry.KVWrite{{Key: []byte("old"), Value: []byte("12345")}}); err != nil {
			t.Fatal(err)
		}
		use, err := reg.ReadKVUsage(ctx, "ns", "a", 0)
		if err != nil || use.Bytes != 8 {
			t.Fatalf("computed usage %d, %v; want 8", use.Bytes, err)
		}
		next, err := reg.CommitKVCounted(ctx, inc, "ns", "a", rec, []registry.KVWrite{{Key: []byte("k"), Value: []byte("vv")}}, use, 11)
		if err != nil || next.Bytes != 11 {
			t.Fatalf("counted commit: %+v, %v", next, err)
		}
		if got, err := reg.ReadKVUsage(ctx, "ns", "a", 0); err != nil || got.Bytes != 11 {
			t.Fatalf("stored usage %d, %v; want 11", got.Bytes, err)
		}
		// A stale count (the one before the last commit) is refused.
		_, err = reg.CommitKVCounted(ctx, inc, "ns", "a", rec, []registry.KVWrite{{Key: []byte("x"), Value: []byte("y")}}, use, 10)
		if !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("commit from a stale count: %v, want ErrFenced", err)
		}
		if v, found, _ := reg.GetKV(ctx, "ns", "a", 0, []byte("x")); found {
			t.Fatalf("a refused counted commit wrote x = %q", v)
		}
		// The counted budget leaves room for the usage record.
		b, cb := reg.KVBudget(inc, "ns", "a", rec), reg.CountedKVBudget(inc, "ns", "a", rec)
		if b.MaxBytes > 0 && cb.MaxBytes >= b.MaxBytes || b.MaxWrites > 0 && cb.MaxWrites >= b.MaxWrites {
			t.Fatalf("counted budget %+v not below %+v", cb, b)
		}
		key := []byte("fill")
		if cb.MaxBytes > 0 {
			fill := make([]byte, cb.MaxBytes-cb.WriteSize(key, nil))
			if _, err := reg.CommitKVCounted(ctx, inc, "ns", "a", rec, []registry.KVWrite{{Key: key, Value: fill}}, next, 1<<40); err != nil {
				t.Fatalf("a counted commit that fills the counted budget: %v", err)
			}
		}
	})
}
