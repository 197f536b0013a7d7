package nola

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/rt"
)

// Resource accounting: what an activation holds and costs, summed per
// server, published in the load report (registry.Load) that placement
// scores servers by and that shedding servers compare against the cluster
// (docs/placement.md).
//
// An activation's bytes are the engine's share (activationBytes and its KV
// cache: charged) plus what the actor reports through Sizer (size). CPU is
// sampled cheaply as invocation wall time on the runtime's clock, from the
// two clock readings the lease checks around every invocation make anyway.

// maxSize caps what one Sizer may report, so that a buggy actor cannot
// overflow the server's sums.
const maxSize = 1 << 40

// sizeDropped marks an activation whose size was uncharged at its drop: a
// sample that races with the drop must not charge it again.
const sizeDropped = -1

// accounting holds a server's sums over its activations.
type accounting struct {
	// sizedTyped and sizedResolved sum the Sizer figures of actors from
	// ServerConfig.Types and from the Resolver respectively.
	sizedTyped, sizedResolved atomic.Int64
	busy                      atomic.Int64 // invocation wall time, ns

	mu       sync.Mutex // guards the rate window below
	lastAt   time.Duration
	lastBusy int64
	lastInv  int64
	busyPPM  int64
	rate     int64 // invocations per 1000 s
}

// sampleSize asks a Sizer actor for its size and charges the change. The
// caller holds a.lock (the actor is not running).
func (s *Server) sampleSize(a *activation) {
	if !a.sizer {
		return
	}
	sz := a.actor.(Sizer)
	n := safeSize(sz)
	for {
		old := a.size.Load()
		if old == sizeDropped {
			return
		}
		if old == n || a.size.CompareAndSwap(old, n) {
			s.sizedSum(a).Add(n - old)
			return
		}
	}
}

// unchargeSize removes a's size from the server's sums, once.
func (s *Server) unchargeSize(a *activation) {
	if old := a.size.Swap(sizeDropped); old > 0 {
		s.sizedSum(a).Add(-old)
	}
}

func (s *Server) sizedSum(a *activation) *atomic.Int64 {
	if a.resolved {
		return &s.acct.sizedResolved
	}
	return &s.acct.sizedTyped
}

func safeSize(sz Sizer) (n int64) {
	defer func() {
		if recover() != nil {
			n = 0 // a panicking Sizer reports nothing; Invoke's own panics are handled there
		}
	}()
	return min(max(sz.SizeBytes(), 0), maxSize)
}

// account charges one invocation that ran from start to end (readings of
// the runtime's monotonic clock; zero if the lease was gone) and samples
// the actor's size. The caller holds a.lock.
func (s *Server) account(a *activation, start, end time.Duration) {
	if start > 0 && end > start {
		// Only the server's sum: a per-activation figure was kept once,
		// read by nothing, at an atomic add per call.
		s.acct.busy.Add(int64(end - start))
	}
	s.sampleSize(a)
}

// bytes returns what a holds: the engine's share and its Sizer figure.
func (a *activation) bytes() int64 {
	n := atomic.LoadInt64(&a.charged)
	if sz := a.size.Load(); sz > 0 {
		n += sz
	}
	return n
}

// memoryBytes is the memory held by activations: the engine's share, the
// Sizer figures of Go actors, and for resolved actors (WASM) the larger of
// their Sizer figures and what the resolver reports (it also counts
// instances of dropped activations not yet reclaimed).
func (s *Server) memoryBytes() int64 {
	n := s.memBytes.Load() + s.acct.sizedTyped.Load()
	resolved := s.acct.sizedResolved.Load()
	if r, ok := s.cfg.Resolver.(MemoryReporter); ok {
		resolved = max(resolved, r.MemoryBytes())
	}
	return n + resolved
}

// rates returns the busy share (parts per million) and invocation rate
// (per 1000 s) over the window since the previous call that was at least
// minWindow ago; a call sooner returns the previous window's figures, so
// that a burst of load reports does not measure noise.
func (s *Server) rates(minWindow time.Duration) (busyPPM, rateMilli int64) {
	now := s.rt.Mono()
	a := &s.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	if el := now - a.lastAt; el >= minWindow && el > 0 {
		busy, inv := a.busy.Load(), s.stats.invocations.Load()
		if a.lastAt > 0 || a.lastBusy > 0 || a.lastInv > 0 {
			// In floating point: the products overflow int64 for long
			// windows of busy servers.
			a.busyPPM = int64(float64(busy-a.lastBusy) * 1e6 / float64(el))
			a.rate = int64(float64(inv-a.lastInv) * 1e12 / float64(el))
		}
		a.lastAt, a.lastBusy, a.lastInv = now, busy, inv
	}
	return a.busyPPM, a.rate
}

// last returns the figures of the last rate window.
func (a *accounting) last() (busyPPM, rateMilli int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.busyPPM, a.rate
}

// heapBytes is the process heap as the runtime reports it; a runtime that
// does not (the simulator's) gets the deterministic activation figure.
func (s *Server) heapBytes() int64 {
	if h, ok := s.rt.(rt.HeapReporter); ok {
		return h.HeapBytes()
	}
	return s.memoryBytes()
}
