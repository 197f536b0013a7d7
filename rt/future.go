package rt

import (
	"context"
	"sync"
)

// Future is a value that becomes available once. Any number of tasks may wait
// for it; the first Resolve wins and later ones are ignored.
type Future[T any] struct {
	done Sema

	mu       sync.Mutex
	resolved bool
	val      T
	err      error
}

// NewFuture returns an unresolved future whose waiters block through r.
func NewFuture[T any](r Runtime) *Future[T] {
	return &Future[T]{done: r.NewSema(0)}
}

// Resolve sets the result. It reports whether this call set it.
func (f *Future[T]) Resolve(v T, err error) bool {
	f.mu.Lock()
	if f.resolved {
		f.mu.Unlock()
		return false
	}
	f.resolved, f.val, f.err = true, v, err
	f.mu.Unlock()
	f.done.Release()
	return true
}

// Wait blocks until the future is resolved or ctx is done.
func (f *Future[T]) Wait(ctx context.Context) (T, error) {
	if err := f.done.Acquire(ctx); err != nil {
		var zero T
		return zero, err
	}
	// Hand the permit on so that every waiter wakes (a broadcast).
	f.done.Release()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.val, f.err
}
