package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/nola"
)

// leaseCollector exports the server's keep-alive statistics at scrape time
// (docs/operations.md, "Lease TTL and store latency").
type leaseCollector struct{ srv *nola.Server }

var (
	descKeepAlive = prometheus.NewDesc("nola_keepalive_seconds",
		"Round trip of lease keep-alives; a failed attempt counts for the time until it failed.", nil, nil)
	descKeepAliveFailures = prometheus.NewDesc("nola_keepalive_failures_total",
		"Lease keep-alives that failed (timed out or store error).", nil, nil)
	descKeepAliveSlow = prometheus.NewDesc("nola_keepalive_slow_total",
		"Lease keep-alives slower than the warning threshold (a fraction of the lease TTL).", nil, nil)
	descFenceCauses = prometheus.NewDesc("nola_fences_by_cause_total",
		"Times this server fenced itself, by cause (lease_lost, record_replaced, keepalive_timeout, store_error, deadline_passed).",
		[]string{"cause"}, nil)
)

func (c *leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeepAlive, descKeepAliveFailures, descKeepAliveSlow, descFenceCauses} {
		ch <- d
	}
}

func (c *leaseCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats().KeepAlive
	h := st.Latency
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum int64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = uint64(cum)
	}
	ch <- prometheus.MustNewConstHistogram(descKeepAlive, uint64(h.Count), h.Sum.Seconds(), buckets)
	ch <- prometheus.MustNewConstMetric(descKeepAliveFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descKeepAliveSlow, prometheus.CounterValue, float64(st.Slow))
	for _, cause := range nola.FenceCauses() {
		ch <- prometheus.MustNewConstMetric(descFenceCauses, prometheus.CounterValue, float64(st.Fences[cause]), string(cause))
	}
}
