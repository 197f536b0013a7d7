package bench

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/rt"
)

// appender writes a new 512-byte entry per invocation: an actor whose KV
// only grows, so that under a namespace quota it takes a grant every
// (slack / 512) commits.
type appender struct{ n int }

func (a *appender) Invoke(ctx *nola.Context, _ string, _ []byte) ([]byte, error) {
	a.n++
	return nil, ctx.Put([]byte("k"+strconv.Itoa(a.n)), make([]byte, 512))
}

// BenchmarkKVInvokeNamespaceQuota: KV-writing invocations over 256 actors
// of one namespace from 16 callers on embedded etcd, with no KV quota, with
// an actor quota, and with a namespace quota (far above what the run
// writes, so nothing is refused): what counting and allotment cost. The
// overwrite workload (kvcounter, one key rewritten) never changes an
// actor's size; the append workload grows every actor by 514 bytes per
// call, so namespace-quota commits take grants (and contend on the
// namespace record) every 127 calls or so.
func BenchmarkKVInvokeNamespaceQuota(b *testing.B) {
	const actorsN, n = 256, 16
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
				typ := "kvcounter"
				if work == "append" {
					typ = "appender"
				}
				r := rt.NewReal()
				types := actors.Types()
				types["appender"] = func(nola.Ref) (nola.Actor, error) { return &appender{}, nil }
				c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
					Servers: 1, Store: etcdStore(b, 1, etcdkv.Options{}), Types: types,
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
				callers(b, n, func(caller, i int) error {
					id := (caller + n*(i/n)) % actorsN
					_, err := cl.Invoke(ctx, "bench", "a"+strconv.Itoa(id), typ, "inc", nil)
					return err
				})
			})
		}
	}
}
