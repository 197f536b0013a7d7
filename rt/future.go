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

// Queue is an unbounded FIFO whose consumers block through the runtime.
type Queue[T any] struct {
	items Sema

	mu  sync.Mutex
	buf []T
}

// NewQueue returns an empty queue.
func NewQueue[T any](r Runtime) *Queue[T] {
	return &Queue[T]{items: r.NewSema(0)}
}

// Push appends v and wakes one waiting consumer.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	q.buf = append(q.buf, v)
	q.mu.Unlock()
	q.items.Release()
}

// Pop removes the oldest item, blocking until there is one or ctx is done.
func (q *Queue[T]) Pop(ctx context.Context) (T, error) {
	if err := q.items.Acquire(ctx); err != nil {
		var zero T
		return zero, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	v := q.buf[0]
	var zero T
	q.buf[0] = zero
	q.buf = q.buf[1:]
	return v, nil
}

// Len reports the number of queued items.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}
