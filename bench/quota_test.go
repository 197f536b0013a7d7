package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// nsRecordCounter counts the commits that write a namespace's KV allotment
// record, and those of them the store refused (a compare failed: another
// grant got there first, and the commit is tried again): the contention the
// namespace quota adds, in a measure the machine's load does not move.
type nsRecordCounter struct {
	kv.Store
	key             []byte
	writes, refused atomic.Int64
}

func (s *nsRecordCounter) Commit(ctx context.Context, txn kv.Txn) (kv.CommitResult, error) {
	res, err := s.Store.Commit(ctx, txn)
	for _, op := range txn.Ops {
		if bytes.Equal(op.Key, s.key) {
			s.writes.Add(1)
			if err == nil && !res.Succeeded {
				s.refused.Add(1)
			}
			break
		}
	}
	return res, err
}

// appender writes a new 8 KiB entry per invocation: an actor whose KV only
// grows, so that under a namespace quota it takes a grant every 8 commits
// (the slack is 64 KiB).
type appender struct{ n int }

func (a *appender) Invoke(ctx *nola.Context, _ string, _ []byte) ([]byte, error) {
	a.n++
	return nil, ctx.Put([]byte("k"+strconv.Itoa(a.n)), make([]byte, 8<<10))
}

// BenchmarkKVInvokeNamespaceQuota: KV-writing invocations of one namespace
// from 16 callers on embedded etcd, with no KV quota, with an actor quota,
// and with a namespace quota (far above what the run writes, so nothing is
// refused): what counting and allotment cost. The overwrite workload
// (kvcounter over 256 actors, one key rewritten) never changes an actor's
// size; the append workload (16 actors, one per caller, 8 KiB per call)
// makes every eighth namespace-quota commit take a grant, all 16 actors
// contending for the namespace record. ns-writes/op counts the commits that
// wrote it, ns-refused/op those the store refused (retried).
func BenchmarkKVInvokeNamespaceQuota(b *testing.B) {
	const n = 16
	quotas := []struct {
		name string
		lim  nola.Limits
	}{
		{"quota=off", nola.Limits{}},
		{"quota=actor", nola.Limits{MaxActorKVBytes: 1 << 40}},
		{"quota=namespace", nola.Limits{MaxNamespaceKVBytes: 1 << 40}},
	}
	for _, work := range []string{"overwrite", "append"} {
		for _, q := range quotas {
			b.Run(fmt.Sprintf("%s/%s", work, q.name), func(b *testing.B) {
				typ, actorsN := "kvcounter", 256
				if work == "append" {
					typ, actorsN = "appender", n
				}
				r := rt.NewReal()
				es := etcdStore(b, 1, etcdkv.Options{})
				store := &nsRecordCounter{Store: es, key: registry.NewKeyspace("nola").NamespaceKVUsage("bench")}
				types := actors.Types()
				types["appender"] = func(nola.Ref) (nola.Actor, error) { return &appender{}, nil }
				c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
					Servers: 1, Store: store, Types: types,
					Runtime:       func(int) rt.Runtime { return r },
					ClientRuntime: r,
					Configure:     func(_ int, cfg *nola.ServerConfig) { cfg.Limits = q.lim },
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					_ = c.Shutdown(ctx)
					r.Wait()
				})
				ctx := context.Background()
				cl := c.Client()
				for i := range actorsN {
					if _, err := cl.Invoke(ctx, "bench", "a"+strconv.Itoa(i), typ, "inc", nil); err != nil {
						b.Fatal(err)
					}
				}
				g0, w0, r0 := es.GroupStats(), store.writes.Load(), store.refused.Load()
				callers(b, n, func(caller, i int) error {
					id := (caller + n*(i/n)) % actorsN
					_, err := cl.Invoke(ctx, "bench", "a"+strconv.Itoa(id), typ, "inc", nil)
					return err
				})
				g := es.GroupStats()
				if req := g.Requests - g0.Requests; req > 0 {
					b.ReportMetric(float64(g.Commits-g0.Commits)/float64(req), "commits/request")
				}
				b.ReportMetric(float64(store.writes.Load()-w0)/float64(b.N), "ns-writes/op")
				b.ReportMetric(float64(store.refused.Load()-r0)/float64(b.N), "ns-refused/op")
			})
		}
	}
}
