package nola

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nolaproject/nola/rt"
)

// TestActLockExclusion: many tasks take one actLock (it upgrades to its
// semaphore on the first contention, while held in fast mode); never two
// inside at once, and every permit survives (the run ends).
func TestActLockExclusion(t *testing.T) {
	r := rt.NewReal()
	var (
		l      actLock
		inside atomic.Int32
		n      int // guarded by l
		wg     sync.WaitGroup
	)
	const tasks, rounds = 8, 2000
	for range tasks {
		wg.Go(func() {
			for i := range rounds {
				if i%3 == 0 {
					if !l.TryAcquire() {
						continue
					}
				} else if err := l.Acquire(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					t.Error("two holders of one actLock")
				}
				n++
				if i%7 == 0 {
					runtime.Gosched() // let others find it taken
				}
				inside.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	if l.slow.Load() == nil {
		t.Log("never contended: only the fast path ran")
	}
	if !l.TryAcquire() {
		t.Fatal("the lock is taken after every holder released it")
	}
	l.Release()
	if n == 0 {
		t.Fatal("nothing ran")
	}
}

// TestActLockUpgrade walks the upgrade's two cases: the lock held in fast
// mode (the holder's Release hands its permit to the semaphore) and free
// (the upgrade puts the free permit there). A waiter that gives up takes
// nothing.
func TestActLockUpgrade(t *testing.T) {
	r := rt.NewReal()
	var l actLock
	if err := l.Acquire(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if l.TryAcquire() {
		t.Fatal("TryAcquire took a held lock (fast mode)")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Acquire(cancelled, r); err == nil {
		t.Fatal("Acquire of a held lock with a cancelled context succeeded")
	}
	if l.word.Load() != lockHeld|lockSlow || l.slow.Load() == nil {
		t.Fatalf("lock word %b after a contended Acquire, want held and upgraded", l.word.Load())
	}
	got := make(chan struct{})
	go func() {
		if err := l.Acquire(context.Background(), r); err != nil {
			t.Error(err)
		}
		close(got)
	}()
	l.Release() // the fast-mode holder's permit goes to the semaphore
	<-got
	if l.TryAcquire() {
		t.Fatal("TryAcquire took a held lock (upgraded)")
	}
	l.Release()
	if !l.TryAcquire() {
		t.Fatal("TryAcquire failed on a free upgraded lock")
	}
	l.Release()

	// Upgrade of a free lock.
	var f actLock
	f.upgrade(r)
	if f.word.Load() != lockSlow {
		t.Fatalf("lock word %b after upgrading a free lock, want upgraded only", f.word.Load())
	}
	if err := f.Acquire(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if f.TryAcquire() {
		t.Fatal("two holders after upgrading a free lock")
	}
	f.Release()
	if !f.TryAcquire() {
		t.Fatal("the free permit was lost")
	}
}
