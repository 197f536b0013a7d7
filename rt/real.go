package rt

import (
	"context"
	"math/rand/v2"
	"runtime/metrics"
	"sync"
	"time"
)

// Real is the production runtime: the host's clocks, goroutines and a
// goroutine-safe random source. Its zero value is not usable; call NewReal.
type Real struct {
	start time.Time
	tasks sync.WaitGroup
}

// NewReal returns a production runtime whose monotonic clock starts now.
func NewReal() *Real { return &Real{start: time.Now()} }

var _ Runtime = (*Real)(nil)

func (r *Real) Now() time.Time      { return time.Now() }
func (r *Real) Mono() time.Duration { return time.Since(r.start) }
func (r *Real) Uint64() uint64      { return rand.Uint64() }
func (r *Real) Tracing() bool       { return false }
func (r *Real) Trace(string)        {}

var _ HeapReporter = (*Real)(nil)

// heapMetric is the runtime/metrics sample HeapBytes reads: cheap (no
// stop-the-world, unlike runtime.ReadMemStats).
const heapMetric = "/memory/classes/heap/objects:bytes"

// HeapBytes reports the bytes of live and not-yet-swept heap objects.
func (r *Real) HeapBytes() int64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

func (r *Real) AfterFunc(d time.Duration, _ string, f func()) Timer {
	r.tasks.Add(1)
	t := &realTimer{r: r}
	t.t = time.AfterFunc(d, func() {
		defer r.tasks.Done()
		if t.fired() {
			f()
		}
	})
	return t
}

type realTimer struct {
	r    *Real
	t    *time.Timer
	mu   sync.Mutex
	done bool
}

// fired and Stop race for the timer; exactly one of them wins, so the task
// count stays balanced whichever does.
func (t *realTimer) fired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (t *realTimer) Stop() bool {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return false
	}
	t.done = true
	t.mu.Unlock()
	if t.t.Stop() {
		t.r.tasks.Done()
	}
	return true
}

func (r *Real) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Real) Go(_ string, f func()) {
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		f()
	}()
}

// Wait blocks until every task started with Go or AfterFunc has returned and
// every pending timer has fired or been stopped. Owners stop their tasks
// first; Wait only proves that they did.
func (r *Real) Wait() { r.tasks.Wait() }

func (r *Real) WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func (r *Real) WithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

func (r *Real) NewSema(n int) Sema { return &realSema{n: n} }

// realSema is a FIFO counting semaphore. The uncontended path is one mutex
// round trip and allocates nothing; waiters allocate a channel each.
type realSema struct {
	mu      sync.Mutex
	n       int
	waiters []*semaWaiter
}

type semaWaiter struct {
	ch      chan struct{}
	granted bool
}

func (s *realSema) TryAcquire() bool {
	s.mu.Lock()
	if s.n > 0 && len(s.waiters) == 0 {
		s.n--
		s.mu.Unlock()
		return true
	}
	s.mu.Unlock()
	return false
}

func (s *realSema) Acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.n > 0 && len(s.waiters) == 0 {
		s.n--
		s.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	w := &semaWaiter{ch: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if w.granted {
			// Release handed us the permit as we gave up: pass it on.
			s.mu.Unlock()
			s.Release()
			return ctx.Err()
		}
		for i, x := range s.waiters {
			if x == w {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *realSema) Release() {
	s.mu.Lock()
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		w.granted = true
		s.mu.Unlock()
		close(w.ch)
		return
	}
	s.n++
	s.mu.Unlock()
}
