package nola_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// keepAliveFault is a store link whose keep-alives a test slows down or
// fails, on the server's own simulated clock; everything else passes.
type keepAliveFault struct {
	kv.Store
	rt     rt.Runtime
	delay  atomic.Int64 // nanoseconds each keep-alive waits first
	fail   atomic.Bool  // answer kv.ErrUnavailable
	reject atomic.Bool  // answer kv.ErrLeaseNotFound
}

func (s *keepAliveFault) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	if d := time.Duration(s.delay.Load()); d > 0 {
		if err := s.rt.Sleep(ctx, d); err != nil {
			return 0, fmt.Errorf("slow store: keep-alive: %w", err)
		}
	}
	switch {
	case s.fail.Load():
		return 0, fmt.Errorf("broken store: keep-alive: %w", kv.ErrUnavailable)
	case s.reject.Load():
		return 0, fmt.Errorf("store: keep-alive: %w", kv.ErrLeaseNotFound)
	}
	return s.Store.KeepAlive(ctx, id)
}

// leaseScenario runs one server on a keepAliveFault link; body gets the
// link and the server's log.
func leaseScenario(t *testing.T, seed uint64, body func(e *simtest.Env, link *keepAliveFault, logs *lockedBuf)) {
	var link *keepAliveFault
	logs := &lockedBuf{}
	simtest.Run(t, simtest.Options{Seed: seed, Servers: 1, TTL: simTTL, NS: ns, MaxSteps: 2_000_000,
		Configure: func(e *simtest.Env, i int, cfg *nola.ServerConfig) {
			link = &keepAliveFault{Store: cfg.Store, rt: e.Nodes[i]}
			cfg.Store = link
			cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		},
	}, func(e *simtest.Env) { body(e, link, logs) })
}

const slowWarning = "slow lease keep-alive"

// A store that answers keep-alives slowly shows in the latency histogram
// and in one rate-limited warning, before it fences the server; once the
// keep-alives time out, the fence is counted as keepalive_timeout.
func TestSlowKeepAlivesAreMeasuredWarnedAndFenceCauseCounted(t *testing.T) {
	leaseScenario(t, 31, func(e *simtest.Env, link *keepAliveFault, logs *lockedBuf) {
		srv := e.C.Server(0)
		e.Sleep(2 * simTTL)
		st := srv.Stats().KeepAlive
		if st.Latency.Count == 0 || st.Slow != 0 || st.Failures != 0 || strings.Contains(logs.String(), slowWarning) {
			t.Fatalf("healthy store: %+v; logs:\n%s", st, logs.String())
		}
		healthy := st.Latency.Count

		// Slower than the warning threshold (TTL/4), fast enough that
		// the lease holds: two round trips in a row must stay under
		// about 0.64 TTL.
		slow := simTTL * 27 / 100
		link.delay.Store(int64(slow))
		e.Sleep(3 * simTTL)
		st = srv.Stats().KeepAlive
		if st.Slow < 2 {
			t.Fatalf("slow store: %d slow keep-alives counted, want several: %+v", st.Slow, st)
		}
		if got := strings.Count(logs.String(), slowWarning); got != 1 {
			t.Fatalf("%d slow keep-alive warnings within a minute, want exactly 1 (rate-limited); logs:\n%s", got, logs.String())
		}
		var above int64
		for i, b := range st.Latency.Bounds {
			if b >= slow {
				above += st.Latency.Counts[i]
			}
		}
		above += st.Latency.Counts[len(st.Latency.Bounds)]
		if above != st.Slow || st.Latency.Count < healthy+st.Slow {
			t.Fatalf("histogram has %d round trips at or above %v, want the %d slow ones: %+v", above, slow, st.Slow, st.Latency)
		}
		if n := srv.Stats().Fences; n != 0 {
			t.Fatalf("%d fences while keep-alives still arrive in time", n)
		}

		// Slower than any keep-alive may wait: the server fences itself.
		link.delay.Store(int64(10 * simTTL))
		e.Sleep(2 * simTTL)
		st = srv.Stats().KeepAlive
		if st.Fences[nola.FenceKeepAliveTimeout] == 0 || st.Failures == 0 {
			t.Fatalf("stalled store: fences %v, failures %d; want a keepalive_timeout fence", st.Fences, st.Failures)
		}
		wantOnly(t, st.Fences, nola.FenceKeepAliveTimeout)
	})
}

// Each way of losing the lease is counted under its own cause.
func TestFenceCausesAreCounted(t *testing.T) {
	for _, tc := range []struct {
		cause nola.FenceCause
		fault func(*keepAliveFault)
	}{
		{nola.FenceStoreError, func(l *keepAliveFault) { l.fail.Store(true) }},
		{nola.FenceLeaseLost, func(l *keepAliveFault) { l.reject.Store(true) }},
	} {
		t.Run(string(tc.cause), func(t *testing.T) {
			leaseScenario(t, 32, func(e *simtest.Env, link *keepAliveFault, _ *lockedBuf) {
				srv := e.C.Server(0)
				e.Sleep(simTTL)
				tc.fault(link)
				e.Sleep(2 * simTTL)
				st := srv.Stats()
				if st.Fences == 0 || st.KeepAlive.Fences[tc.cause] == 0 {
					t.Fatalf("fences %d, by cause %v; want one for %s", st.Fences, st.KeepAlive.Fences, tc.cause)
				}
				wantOnly(t, st.KeepAlive.Fences, tc.cause)
				var sum int64
				for _, n := range st.KeepAlive.Fences {
					sum += n
				}
				if sum != st.Fences {
					t.Fatalf("fences by cause sum to %d, total %d", sum, st.Fences)
				}
			})
		})
	}
}

func wantOnly(t *testing.T, fences map[nola.FenceCause]int64, cause nola.FenceCause) {
	t.Helper()
	for _, c := range nola.FenceCauses() {
		if c != cause && fences[c] != 0 {
			t.Fatalf("fences by cause %v: want only %s", fences, cause)
		}
	}
}
