package nola

import (
	"testing"
	"time"

	"github.com/nolaproject/nola/rt"
)

// clockOnly is a runtime whose clock the test sets; nothing else is used.
type clockOnly struct {
	rt.Runtime
	now time.Duration
}

func (c *clockOnly) Mono() time.Duration { return c.now }

// The busy share and the invocation rate are measured over windows of at
// least minWindow: the first call sets the baseline, a call sooner than
// minWindow repeats the last figures, and the arithmetic survives windows
// and counts that would overflow int64 products.
func TestRatesOverWindows(t *testing.T) {
	clk := &clockOnly{now: time.Second}
	s := &Server{rt: clk}
	if b, r := s.rates(time.Second); b != 0 || r != 0 {
		t.Fatalf("baseline: %d ppm, %d milli/s; want zeros", b, r)
	}
	// 2 s later: 500 ms busy in 40 invocations → 25 % busy, 20/s.
	clk.now += 2 * time.Second
	s.acct.busy.Add(int64(500 * time.Millisecond))
	s.stats.invocations.Add(40)
	if b, r := s.rates(time.Second); b != 250_000 || r != 20_000 {
		t.Fatalf("window: %d ppm, %d milli/s; want 250000, 20000", b, r)
	}
	// Too soon: the figures stay, the window does not move.
	clk.now += 100 * time.Millisecond
	s.stats.invocations.Add(1000)
	if b, r := s.rates(time.Second); b != 250_000 || r != 20_000 {
		t.Fatalf("too soon: %d ppm, %d milli/s; want the previous window's", b, r)
	}
	// A long, busy window: 10^7 invocations over an hour, two busy cores.
	clk.now += time.Hour - 100*time.Millisecond
	s.stats.invocations.Add(10_000_000 - 1000)
	s.acct.busy.Add(int64(2 * time.Hour))
	b, r := s.rates(time.Second)
	if b != 2_000_000 || r < 2_777_777 || r > 2_777_778 {
		t.Fatalf("hour: %d ppm, %d milli/s; want 2000000 and 2777777 (10^7/3600 s)", b, r)
	}
	if lb, lr := s.acct.last(); lb != b || lr != r {
		t.Fatalf("last() = %d, %d; want %d, %d", lb, lr, b, r)
	}
}
