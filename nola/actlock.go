package nola

import (
	"context"
	"sync/atomic"

	"github.com/nolaproject/nola/rt"
)

// actLock is an activation's invocation lock, embedded in the activation
// instead of a separate rt.Sema object per activation: with a million live
// actors, an object fewer per activation is ~48 bytes and one pointer less
// for the collector to follow, and the lock word shares the activation's
// first cache line with its state.
//
// It starts in fast mode: a word taken and given back by compare-and-swap,
// never blocking. The first Acquire that finds it taken upgrades it, for
// good, to an rt.Sema made then — so blocking, and with it FIFO order and
// the simulator's scheduling, always goes through the runtime, as before;
// only uncontended use skips the semaphore. An actor that was contended once
// keeps its semaphore until the activation goes.
//
// The upgrade installs the semaphore (with no permit) first, then marks the
// word: if the word was free, the upgrader puts the free permit into the
// semaphore; if it was held in fast mode, that holder's Release finds the
// mark and puts its permit there instead. Releases and TryAcquires that see
// the mark use the semaphore. Under simulation only one task runs at a time
// and nothing here blocks except through the runtime, so the order of events
// is the seed's, as with a plain rt.Sema.
type actLock struct {
	word atomic.Int32
	slow atomic.Pointer[lockQueue]
}

// The lock word: lockHeld is set while a fast-mode holder holds it;
// lockSlow, once set, means the semaphore holds the permit and lockHeld no
// longer means anything.
const (
	lockHeld int32 = 1 << iota
	lockSlow
)

// lockQueue boxes the semaphore of an upgraded lock.
type lockQueue struct{ rt.Sema }

// Acquire takes the lock, blocking through r's semaphore if it is taken,
// until ctx is done (then it returns ctx's error and takes nothing).
func (l *actLock) Acquire(ctx context.Context, r rt.Runtime) error {
	if l.word.CompareAndSwap(0, lockHeld) {
		return nil
	}
	return l.upgrade(r).Acquire(ctx)
}

// TryAcquire takes the lock if it is free, without blocking.
func (l *actLock) TryAcquire() bool {
	if l.word.CompareAndSwap(0, lockHeld) {
		return true
	}
	if l.word.Load()&lockSlow != 0 {
		return l.slow.Load().TryAcquire()
	}
	return false // held in fast mode
}

// Release gives the lock back (the caller holds it).
func (l *actLock) Release() {
	if l.word.CompareAndSwap(lockHeld, 0) {
		return
	}
	// Upgraded (before or while we held it): the permit goes to the
	// semaphore, waking its oldest waiter.
	l.slow.Load().Release()
}

// upgrade switches the lock to its semaphore (once) and returns it.
func (l *actLock) upgrade(r rt.Runtime) *lockQueue {
	if q := l.slow.Load(); q != nil {
		return q
	}
	q := &lockQueue{r.NewSema(0)}
	if !l.slow.CompareAndSwap(nil, q) {
		// Another caller upgraded first; its loop below settles the
		// permit. Until it has, its semaphore has none: waiting on it
		// is waiting for the lock.
		return l.slow.Load()
	}
	for {
		switch w := l.word.Load(); {
		case w == 0:
			if l.word.CompareAndSwap(0, lockSlow) {
				q.Release() // the free permit
				return q
			}
		case w == lockHeld:
			if l.word.CompareAndSwap(lockHeld, lockHeld|lockSlow) {
				return q // its holder's Release puts the permit in q
			}
		default:
			// Only this call sets lockSlow, after its CompareAndSwap
			// won: unreachable.
			return q
		}
	}
}
