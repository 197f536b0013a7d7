package nola

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Lease health (issue 10, finding 8).
//
// A server fences itself when no keep-alive succeeds before its local
// deadline. On a store whose disk stalls (etcd fsyncs of 2–3.7 s were seen)
// that happens with no fault in nola at all, and the only symptom used to be
// the fence itself. So the heartbeat measures every keep-alive round trip
// into a histogram, counts fences by cause, and warns in the log — at most
// once per keepAliveWarnEvery — when a round trip comes close to what the
// lease can absorb: with keep-alives every TTL/3 and a local deadline of
// about 0.97 TTL after a keep-alive was sent, two round trips in a row of
// about TTL/3 each fence the server.

// FenceCause says why a server fenced itself.
type FenceCause string

const (
	// FenceLeaseLost: the store answered that the lease no longer exists
	// (a keep-alive was rejected: the store expired or revoked it).
	FenceLeaseLost FenceCause = "lease_lost"
	// FenceRecordReplaced: the server record is not this incarnation's
	// any more (a load report's compare failed).
	FenceRecordReplaced FenceCause = "record_replaced"
	// FenceKeepAliveTimeout: the local deadline passed while the last
	// keep-alive attempt timed out — a slow store (disk stalls) or a slow
	// link.
	FenceKeepAliveTimeout FenceCause = "keepalive_timeout"
	// FenceStoreError: the local deadline passed while the last keep-alive
	// attempt failed with a store error (unreachable, no quorum).
	FenceStoreError FenceCause = "store_error"
	// FenceDeadline: the local deadline passed with no keep-alive failing:
	// the heartbeat itself ran late (the process was paused or starved of
	// CPU).
	FenceDeadline FenceCause = "deadline_passed"
	// FenceInvariant: the engine found one of its invariants broken (a
	// bug in nola) and fenced the server rather than serve from state it
	// can no longer vouch for; the log says which.
	FenceInvariant FenceCause = "invariant_violated"
)

// fenceCauses lists every cause, in a fixed order (for exporters).
var fenceCauses = [...]FenceCause{FenceLeaseLost, FenceRecordReplaced, FenceKeepAliveTimeout, FenceStoreError, FenceDeadline, FenceInvariant}

// FenceCauses returns every FenceCause, in a fixed order.
func FenceCauses() []FenceCause { return append([]FenceCause(nil), fenceCauses[:]...) }

// keepAliveBounds are the upper bounds of the keep-alive latency buckets:
// 1 ms to ~16 s, doubling (a store answers in about a millisecond when
// healthy; a lease TTL is seconds).
var keepAliveBounds = func() [15]time.Duration {
	var b [15]time.Duration
	d := time.Millisecond
	for i := range b {
		b[i] = d
		d *= 2
	}
	return b
}()

// LatencyHistogram is a snapshot of a latency histogram.
type LatencyHistogram struct {
	// Bounds are the buckets' upper bounds (inclusive), ascending.
	Bounds []time.Duration
	// Counts[i] counts the observations in bucket i (not cumulative);
	// Counts[len(Bounds)] those above the last bound.
	Counts []int64
	Count  int64
	Sum    time.Duration
}

// KeepAliveStats describe the server's lease keep-alives.
type KeepAliveStats struct {
	// Latency holds every keep-alive attempt's round trip; an attempt
	// that failed counts for the time until it failed (a timed-out one
	// for its timeout), so a stalling store shows in the top buckets.
	Latency LatencyHistogram
	// Failures counts attempts that failed (timeouts and store errors).
	Failures int64
	// Slow counts attempts slower than the warning threshold
	// (ServerConfig.KeepAliveWarn).
	Slow int64
	// Fences counts fences by cause.
	Fences map[FenceCause]int64
}

// leaseStats is the server's keep-alive instrumentation. The counters are
// atomics (read by Stats from any task); lastWarn and suppressed are used
// by the heartbeat task only.
type leaseStats struct {
	buckets  [len(keepAliveBounds) + 1]atomic.Int64
	count    atomic.Int64
	sum      atomic.Int64
	failures atomic.Int64
	slow     atomic.Int64
	fences   [len(fenceCauses)]atomic.Int64

	warned     bool
	lastWarn   time.Duration
	suppressed int64
}

// keepAliveWarnEvery rate-limits the slow keep-alive warning.
const keepAliveWarnEvery = time.Minute

func (ls *leaseStats) observe(d time.Duration, failed bool) {
	i := 0
	for i < len(keepAliveBounds) && d > keepAliveBounds[i] {
		i++
	}
	ls.buckets[i].Add(1)
	ls.count.Add(1)
	ls.sum.Add(int64(d))
	if failed {
		ls.failures.Add(1)
	}
}

func (ls *leaseStats) countFence(c FenceCause) {
	for i, fc := range fenceCauses {
		if fc == c {
			ls.fences[i].Add(1)
			return
		}
	}
}

func (ls *leaseStats) snapshot() KeepAliveStats {
	h := LatencyHistogram{
		Bounds: append([]time.Duration(nil), keepAliveBounds[:]...),
		Counts: make([]int64, len(ls.buckets)),
	}
	for i := range ls.buckets {
		h.Counts[i] = ls.buckets[i].Load()
		h.Count += h.Counts[i]
	}
	h.Sum = time.Duration(ls.sum.Load())
	st := KeepAliveStats{Latency: h, Failures: ls.failures.Load(), Slow: ls.slow.Load(), Fences: map[FenceCause]int64{}}
	for i, c := range fenceCauses {
		st.Fences[c] = ls.fences[i].Load()
	}
	return st
}

// keepAliveDone records one keep-alive attempt that was sent at sent and
// answered err, and warns if it was slow. Called by the heartbeat task only.
func (s *Server) keepAliveDone(sent time.Duration, err error) {
	now := s.rt.Mono()
	d := now - sent
	ls := &s.stats.lease
	ls.observe(d, err != nil)
	warn := s.cfg.KeepAliveWarn
	if warn < 0 || d <= warn {
		return
	}
	ls.slow.Add(1)
	if ls.warned && now-ls.lastWarn < keepAliveWarnEvery {
		ls.suppressed++
		return
	}
	s.log.Warn("slow lease keep-alive: the store is close to fencing this server; check the store's disk latency (etcd fsync) or raise the lease TTL",
		"round_trip", d, "lease_ttl", s.cfg.LeaseTTL, "threshold", warn, "failed", err != nil,
		"suppressed_since_last_warning", ls.suppressed)
	ls.warned, ls.lastWarn, ls.suppressed = true, now, 0
}

// attemptCause is the fence cause a keep-alive attempt that answered err
// stands for, should the local deadline pass before another succeeds;
// timedOut reports that the attempt's own context expired.
func attemptCause(err error, timedOut bool) FenceCause {
	switch {
	case err == nil:
		return FenceDeadline
	case timedOut || errors.Is(err, context.DeadlineExceeded):
		return FenceKeepAliveTimeout
	default:
		return FenceStoreError
	}
}
