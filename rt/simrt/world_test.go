package simrt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/rt"
)

// A little workload: tasks that sleep, lock, and record their order.
func runWorkload(t *testing.T, seed uint64) (uint64, string) {
	t.Helper()
	w := New(seed)
	var log []string
	err := w.Run(func() {
		n := w.Node("n")
		mu := n.NewSema(1)
		done := n.NewSema(0)
		for i := range 5 {
			n.Go(fmt.Sprintf("worker%d", i), func() {
				for j := range 3 {
					_ = n.Sleep(context.Background(), time.Duration(n.Uint64()%10)*time.Millisecond)
					_ = mu.Acquire(context.Background())
					log = append(log, fmt.Sprintf("%d.%d@%v", i, j, w.Now()))
					_ = n.Sleep(context.Background(), 0)
					mu.Release()
				}
				done.Release()
			})
		}
		for range 5 {
			_ = done.Acquire(context.Background())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return w.Hash(), strings.Join(log, " ")
}

func TestSameSeedSameRun(t *testing.T) {
	h1, l1 := runWorkload(t, 42)
	h2, l2 := runWorkload(t, 42)
	if h1 != h2 || l1 != l2 {
		t.Fatalf("seed 42 ran twice differently:\n%x %s\n%x %s", h1, l1, h2, l2)
	}
	h3, l3 := runWorkload(t, 43)
	if h1 == h3 || l1 == l3 {
		t.Fatalf("seeds 42 and 43 gave the same run: %s", l1)
	}
}

func TestSleepAdvancesVirtualTimeOnly(t *testing.T) {
	w := New(1)
	start := time.Now()
	err := w.Run(func() {
		n := w.Node("n")
		if err := n.Sleep(context.Background(), time.Hour); err != nil {
			t.Error(err)
		}
		if n.Mono() != time.Hour {
			t.Errorf("Mono after 1h sleep = %v", n.Mono())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("a virtual hour took real time")
	}
}

func TestTimeoutContextWakesWaiter(t *testing.T) {
	w := New(7)
	err := w.Run(func() {
		n := w.Node("n")
		s := n.NewSema(0)
		ctx, cancel := n.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if d, ok := ctx.Deadline(); !ok || d != Epoch().Add(3*time.Second) {
			t.Errorf("deadline = %v %v", d, ok)
		}
		err := s.Acquire(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire = %v, want DeadlineExceeded", err)
		}
		if w.Now() != 3*time.Second {
			t.Errorf("woke at %v", w.Now())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCancelWakesWaiter(t *testing.T) {
	w := New(7)
	err := w.Run(func() {
		n := w.Node("n")
		ctx, cancel := n.WithCancel(context.Background())
		n.AfterFunc(time.Second, "canceller", cancel)
		if err := n.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep = %v, want Canceled", err)
		}
		if w.Now() != time.Second {
			t.Errorf("woke at %v", w.Now())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeadlockIsReported(t *testing.T) {
	w := New(3)
	err := w.Run(func() {
		n := w.Node("n")
		_ = n.NewSema(0).Acquire(context.Background())
	})
	if err == nil || !strings.Contains(err.Error(), "deadlock") {
		t.Fatalf("Run = %v, want a deadlock error", err)
	}
}

func TestCrashKillsTasksAndTimers(t *testing.T) {
	w := New(5)
	var ran []string
	err := w.Run(func() {
		victim := w.Node("victim")
		main := w.Node("driver")
		victim.Go("sleeper", func() {
			_ = victim.Sleep(context.Background(), time.Minute)
			ran = append(ran, "sleeper woke")
		})
		victim.AfterFunc(time.Minute, "timer", func() { ran = append(ran, "timer fired") })
		_ = main.Sleep(context.Background(), time.Second)
		victim.Crash()
		_ = main.Sleep(context.Background(), time.Hour)
		victim.Restart()
		victim.Go("fresh", func() { ran = append(ran, "fresh ran") })
		_ = main.Sleep(context.Background(), time.Second)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ran, ","); got != "fresh ran" {
		t.Fatalf("after crash: %q, want only the task started after restart", got)
	}
}

func TestPauseFreezesTasksWhileTimeRuns(t *testing.T) {
	w := New(9)
	var woke time.Duration
	err := w.Run(func() {
		p := w.Node("paused")
		d := w.Node("driver")
		p.Go("sleeper", func() {
			_ = p.Sleep(context.Background(), time.Second)
			woke = w.Now()
		})
		_ = d.Sleep(context.Background(), 500*time.Millisecond)
		p.Pause()
		_ = d.Sleep(context.Background(), 10*time.Second)
		if woke != 0 {
			t.Errorf("paused task ran at %v", woke)
		}
		p.Resume()
		_ = d.Sleep(context.Background(), time.Millisecond)
	})
	if err != nil {
		t.Fatal(err)
	}
	if woke != 10500*time.Millisecond {
		t.Fatalf("paused sleeper woke at %v, want at resume (10.5s)", woke)
	}
}

func TestDriftScalesClockAndTimers(t *testing.T) {
	w := New(11)
	err := w.Run(func() {
		fast := w.Node("fast")
		fast.SetRate(2)
		_ = fast.Sleep(context.Background(), 10*time.Second)
		if w.Now() != 5*time.Second {
			t.Errorf("a 10s sleep on a 2x clock took %v of virtual time", w.Now())
		}
		if fast.Mono() != 10*time.Second {
			t.Errorf("fast clock reads %v", fast.Mono())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFuture(t *testing.T) {
	w := New(13)
	err := w.Run(func() {
		n := w.Node("n")
		f := rt.NewFuture[int](n)
		done := n.NewSema(0)
		var mu sync.Mutex
		sum := 0
		for i := range 3 {
			n.Go("waiter", func() {
				v, err := f.Wait(context.Background())
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				sum += v + i
				mu.Unlock()
				done.Release()
			})
		}
		n.AfterFunc(time.Second, "resolver", func() { f.Resolve(10, nil) })
		for range 3 {
			if err := done.Acquire(context.Background()); err != nil {
				t.Error(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if sum != 33 {
			t.Errorf("sum = %d", sum)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPanicInTaskIsReraised(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "boom") {
			t.Fatalf("recovered %v, want the task's panic", r)
		}
	}()
	w := New(1)
	_ = w.Run(func() {
		n := w.Node("n")
		n.Go("bad", func() { panic("boom") })
		_ = n.Sleep(context.Background(), time.Second)
	})
}
