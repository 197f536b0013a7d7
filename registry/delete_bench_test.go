package registry_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

// BenchmarkDelete measures one delete (the tombstone commit, through the
// owner's fence) of an actor with a small and a large KV: the commit is the
// same whatever the KV size. BenchmarkReclaim measures sweeping the KV
// away afterwards, per key.
//
//	go test -run '^$' -bench 'Delete|Reclaim' ./registry/
func BenchmarkDelete(b *testing.B) {
	for _, be := range backends() {
		for _, keys := range []int{10, 1000} {
			b.Run(fmt.Sprintf("%s/keys=%d", be.name, keys), func(b *testing.B) {
				ctx := context.Background()
				r := rt.NewReal()
				reg := registry.New(be.open(b, r), r, registry.Options{Root: "bench"})
				inc, err := reg.Register(ctx, "s1", "addr", ttl)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for i := 0; i < b.N; i++ {
					id := fmt.Sprint("a", i)
					if _, err := reg.EnsureActivation(ctx, "ns", id, "t"); err != nil {
						b.Fatal(err)
					}
					e, g, _, err := reg.Confirm(ctx, inc, "ns", id, "t")
					if err != nil {
						b.Fatal(err)
					}
					fillB(b, reg, inc, id, inc.OwnerRecord("t", e, g), keys)
					b.StartTimer()
					if _, err := reg.Delete(ctx, inc, "ns", id); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if _, err := reg.Reclaim(ctx, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReclaim: one op reclaims the 1000 keys of one deleted actor
// (10 commits of ReclaimBatch keys).
func BenchmarkReclaim(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			r := rt.NewReal()
			reg := registry.New(be.open(b, r), r, registry.Options{Root: "bench"})
			inc, err := reg.Register(ctx, "s1", "addr", ttl)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprint("r", i)
				if _, err := reg.EnsureActivation(ctx, "ns", id, "t"); err != nil {
					b.Fatal(err)
				}
				e, g, _, err := reg.Confirm(ctx, inc, "ns", id, "t")
				if err != nil {
					b.Fatal(err)
				}
				fillB(b, reg, inc, id, inc.OwnerRecord("t", e, g), 1000)
				if _, err := reg.Delete(ctx, inc, "ns", id); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := reg.Reclaim(ctx, 0)
				b.StopTimer()
				if err != nil || st.Keys != 1000 {
					b.Fatalf("reclaim: %+v %v", st, err)
				}
			}
		})
	}
}

func fillB(b *testing.B, reg *registry.Registry, inc *registry.Incarnation, id string, rec []byte, n int) {
	for i := 0; i < n; {
		var w []registry.KVWrite
		for ; i < n && len(w) < 100; i++ {
			w = append(w, registry.KVWrite{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("value")})
		}
		if err := reg.CommitKV(context.Background(), inc, "ns", id, rec, w); err != nil {
			b.Fatal(err)
		}
	}
}
