package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// The keep-alive histogram, its failure and slow counters and the fences by
// cause are exported (their movement is tested in package nola, on a slow
// store in simulated time).
func TestLeaseMetricsAreExported(t *testing.T) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	defer tr.Close()
	srv, err := nola.NewServer(nola.ServerConfig{ID: "m0", Addr: "http://127.0.0.1:1", Runtime: r, Store: store,
		Transport: tr, Types: actors.Types(), LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	httpapi.NewHandler(srv, httpapi.Options{Metrics: reg})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Halt()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range families {
		got[f.GetName()] = len(f.GetMetric())
		if f.GetName() == "nola_keepalive_seconds" {
			if h := f.GetMetric()[0].GetHistogram(); len(h.GetBucket()) != len(srv.Stats().KeepAlive.Latency.Bounds) {
				t.Errorf("keep-alive histogram has %d buckets, want %d", len(h.GetBucket()), len(srv.Stats().KeepAlive.Latency.Bounds))
			}
		}
	}
	for name, n := range map[string]int{
		"nola_keepalive_seconds": 1, "nola_keepalive_failures_total": 1, "nola_keepalive_slow_total": 1,
		"nola_fences_by_cause_total": len(nola.FenceCauses()),
	} {
		if got[name] != n {
			t.Errorf("%s: %d series, want %d", name, got[name], n)
		}
	}
}
