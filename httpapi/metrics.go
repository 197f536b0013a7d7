package httpapi

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
)

// metrics are the HTTP layer's own series; engine counters are collected
// from nola.Server.Stats at scrape time.
type metrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	// ok and seconds cache, per path, the series every successful call
	// updates: looking them up by label values hashes the labels and
	// takes the vector's lock on every call (≈0.5 µs of the HTTP path,
	// issue 16). Each is made on first use, as WithLabelValues would, so
	// /metrics shows the same series.
	ok      [numPaths]atomic.Pointer[prometheus.Counter]
	seconds [numPaths]atomic.Pointer[prometheus.Observer]
}

// callPath is the path label of nola_invocations_total and
// nola_invocation_seconds.
type callPath uint8

const (
	pathPublic   callPath = iota // routed by this server
	pathInternal                 // run here (server to server)
	pathCreate                   // actor creations
	pathDelete                   // actor deletes
	pathWorker                   // public worker calls
	numPaths
)

var pathNames = [numPaths]string{"public", "internal", "create", "delete", "worker"}

func (p callPath) String() string { return pathNames[p] }

func newMetrics(reg *prometheus.Registry, srv *nola.Server) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nola_invocations_total",
			Help: "Invocations (and actor deletes) served over HTTP, by path (public: routed by this server; internal: run here; delete: actor deletes; worker: public worker calls) and result code.",
		}, []string{"path", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nola_invocation_seconds",
			Help:    "Latency of invocations served over HTTP.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"path"}),
	}
	reg.MustRegister(m.calls, m.latency, &engineCollector{srv: srv}, &leaseCollector{srv: srv}, &workerCollector{srv: srv})
	return m
}

// observe counts a call that ran from start to end.
func (m *metrics) observe(path callPath, start, end time.Time, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.calls.WithLabelValues(path.String(), string(nola.CodeOf(err))).Inc()
	} else {
		(*cached(&m.ok[path], func() prometheus.Counter { return m.calls.WithLabelValues(path.String(), "ok") })).Inc()
	}
	(*cached(&m.seconds[path], func() prometheus.Observer { return m.latency.WithLabelValues(path.String()) })).Observe(end.Sub(start).Seconds())
}

// cached returns *p, storing mk() there first if it is unset. Two
// callers may both make it: WithLabelValues returns the same series.
func cached[T any](p *atomic.Pointer[T], mk func() T) *T {
	if v := p.Load(); v != nil {
		return v
	}
	v := mk()
	p.Store(&v)
	return &v
}

// engineCollector exports the server's counters at scrape time.
type engineCollector struct{ srv *nola.Server }

var (
	descActivations = prometheus.NewDesc("nola_activations", "Live activations on this server.", nil, nil)
	descActivated   = prometheus.NewDesc("nola_activated_total", "Activations created.", nil, nil)
	descEvicted     = prometheus.NewDesc("nola_evictions_total", "Activations evicted (idle or LRU).", nil, nil)
	descFences      = prometheus.NewDesc("nola_fences_total", "Times this server fenced itself (lease lost or deadline passed).", nil, nil)
	descFailed      = prometheus.NewDesc("nola_failed_commits_total", "Actor KV commits that failed (fenced, unavailable, unknown).", nil, nil)
	descExec        = prometheus.NewDesc("nola_executions_total", "Invocations executed on this server (including timers).", nil, nil)
	descLeaseAge    = prometheus.NewDesc("nola_lease_age_seconds", "Time since the last successful keep-alive was sent.", nil, nil)
	descIncarnation = prometheus.NewDesc("nola_incarnation", "Current incarnation number (0 while fenced).", nil, nil)
	descMemory      = prometheus.NewDesc("nola_activation_memory_bytes", "Memory held by activations: engine share, Sizer figures, WASM linear memory (what placement and shedding use).", nil, nil)
	descHeap        = prometheus.NewDesc("nola_heap_bytes", "Process heap as the runtime reports it.", nil, nil)
	descBusy        = prometheus.NewDesc("nola_invocation_busy_seconds_total", "Wall time spent in invocations (actor code and KV commits).", nil, nil)
	descBusyShare   = prometheus.NewDesc("nola_invocation_busy_ratio", "Busy share over the last load-report window (1 = one invocation running at all times).", nil, nil)
	descRate        = prometheus.NewDesc("nola_invocation_rate", "Invocations per second over the last load-report window.", nil, nil)
	descShed        = prometheus.NewDesc("nola_shed_total", "Activations released because the server was over its memory budget or far above the cluster mean.", nil, nil)
	descShedBytes   = prometheus.NewDesc("nola_shed_bytes_total", "Memory held by the activations shed.", nil, nil)
	descShedEpisode = prometheus.NewDesc("nola_shed_episodes_total", "Times shedding began (it goes on until the server is below its low water).", nil, nil)
	descLocality    = prometheus.NewDesc("nola_locality_moves_total", "Actors released towards the server most of their calls went to (communication locality; a move restarts an in-memory actor).", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActivations, descActivated, descEvicted, descFences, descFailed, descExec, descLeaseAge, descIncarnation,
		descMemory, descHeap, descBusy, descBusyShare, descRate, descShed, descShedBytes, descShedEpisode, descLocality} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	li := c.srv.Lease()
	ch <- prometheus.MustNewConstMetric(descActivations, prometheus.GaugeValue, float64(st.Activations))
	ch <- prometheus.MustNewConstMetric(descActivated, prometheus.CounterValue, float64(st.Activated))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(descFences, prometheus.CounterValue, float64(st.Fences))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.FailedCommits))
	ch <- prometheus.MustNewConstMetric(descExec, prometheus.CounterValue, float64(st.Invocations))
	ch <- prometheus.MustNewConstMetric(descLeaseAge, prometheus.GaugeValue, li.Age.Seconds())
	ch <- prometheus.MustNewConstMetric(descIncarnation, prometheus.GaugeValue, float64(li.Incarnation))
	ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(st.MemoryBytes))
	ch <- prometheus.MustNewConstMetric(descHeap, prometheus.GaugeValue, float64(st.HeapBytes))
	ch <- prometheus.MustNewConstMetric(descBusy, prometheus.CounterValue, float64(st.BusyNanos)/1e9)
	ch <- prometheus.MustNewConstMetric(descBusyShare, prometheus.GaugeValue, float64(st.BusyPPM)/1e6)
	ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, float64(st.RateMilli)/1e3)
	ch <- prometheus.MustNewConstMetric(descShed, prometheus.CounterValue, float64(st.Shed))
	ch <- prometheus.MustNewConstMetric(descShedBytes, prometheus.CounterValue, float64(st.ShedBytes))
	ch <- prometheus.MustNewConstMetric(descShedEpisode, prometheus.CounterValue, float64(st.ShedEpisodes))
	ch <- prometheus.MustNewConstMetric(descLocality, prometheus.CounterValue, float64(st.LocalityMoves))
}

// workerCollector exports each worker type's counters at scrape time,
// labelled by type and, for a namespace's WASM module, namespace (empty for
// registered Go types, which serve every namespace).
type workerCollector struct{ srv *nola.Server }

var (
	descWorkerCalls    = prometheus.NewDesc("nola_worker_calls_total", "Worker invocations run on this server (successful or not), by worker type.", []string{"worker", "namespace"}, nil)
	descWorkerErrors   = prometheus.NewDesc("nola_worker_errors_total", "Worker invocations that failed, by worker type.", []string{"worker", "namespace"}, nil)
	descWorkerRejected = prometheus.NewDesc("nola_worker_rejected_total", "Worker invocations refused at the concurrency limit (overloaded; they did not run), by worker type.", []string{"worker", "namespace"}, nil)
	descWorkerInFlight = prometheus.NewDesc("nola_worker_in_flight", "Worker invocations running now, by worker type.", []string{"worker", "namespace"}, nil)
	descWorkerLimit    = prometheus.NewDesc("nola_worker_max_in_flight", "The server's concurrency limit per worker type.", []string{"worker", "namespace"}, nil)
)

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkerCalls, descWorkerErrors, descWorkerRejected, descWorkerInFlight, descWorkerLimit} {
		ch <- d
	}
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, w := range c.srv.WorkerStats() {
		ch <- prometheus.MustNewConstMetric(descWorkerCalls, prometheus.CounterValue, float64(w.Calls), w.Type, w.Namespace)
		ch <- prometheus.MustNewConstMetric(descWorkerErrors, prometheus.CounterValue, float64(w.Errors), w.Type, w.Namespace)
		ch <- prometheus.MustNewConstMetric(descWorkerRejected, prometheus.CounterValue, float64(w.Rejected), w.Type, w.Namespace)
		ch <- prometheus.MustNewConstMetric(descWorkerInFlight, prometheus.GaugeValue, float64(w.InFlight), w.Type, w.Namespace)
		ch <- prometheus.MustNewConstMetric(descWorkerLimit, prometheus.GaugeValue, float64(w.MaxInFlight), w.Type, w.Namespace)
	}
}

// InstrumentStore wraps a store so that commit latency and errors are
// exported to reg.
func InstrumentStore(s kv.Store, reg *prometheus.Registry) kv.Store {
	is := &instrumentedStore{Store: s,
		commits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nola_store_commit_seconds",
			Help:    "Latency of store commits, by outcome (ok, failed compare, error).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"outcome"}),
	}
	reg.MustRegister(is.commits)
	return is
}

type instrumentedStore struct {
	kv.Store
	commits *prometheus.HistogramVec
}

func (s *instrumentedStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	start := time.Now()
	res, err := s.Store.Commit(ctx, t)
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "error"
	case !res.Succeeded:
		outcome = "compare_failed"
	}
	s.commits.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return res, err
}
