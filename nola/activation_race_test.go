package nola_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
)

type armer struct{ fired *atomic.Int64 }

func (a armer) Activate(ctx *nola.Context) error {
	if err := ctx.SetTimer("t", 0, 0, "tick", nil); err != nil {
		return err
	}
	// Some activation work after arming (e.g. loading state).
	_, _, err := ctx.Get([]byte("state"))
	return err
}

func (a armer) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	if op == "tick" {
		a.fired.Add(1)
	}
	return nil, nil
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A timer armed in the Activate hook fires even when it is due before the
// activation is ready (with real goroutines: the hook released the lock,
// lookup had not yet marked the activation ready). It once found the
// activation "dropped" and was lost, a few times in 60000.
func TestTimerArmedInActivateHookFires(t *testing.T) {
	var fired atomic.Int64
	types := actors.Types()
	types["armer"] = func(nola.Ref) (nola.Actor, error) { return armer{&fired}, nil }
	logs := &lockedBuf{}
	c := realCluster(t, 1, types, func(cfg *nola.ServerConfig) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	const n = 60000
	for i := range n {
		if _, err := c.Client().Invoke(context.Background(), "ns", fmt.Sprint("a", i), "armer", "noop", nil); err != nil {
			t.Fatal(err)
		}
	}
	for wait := time.Now().Add(time.Minute); fired.Load() < n && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := fired.Load(); got != n {
		var lines []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "timer invocation failed") {
				lines = append(lines, l)
			}
		}
		t.Errorf("%d of %d one-shot timers armed in Activate never fired; logs:\n%s", n-got, n, strings.Join(lines, "\n"))
	}
}

// slowActivator's first Activate blocks until its caller gives up; later
// ones return at once.
type slowActivator struct {
	entered chan struct{}
	first   *atomic.Bool
}

func (s slowActivator) Activate(ctx *nola.Context) error {
	if s.first.CompareAndSwap(true, false) {
		close(s.entered)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (slowActivator) Invoke(*nola.Context, string, []byte) ([]byte, error) { return []byte("ok"), nil }

// Concurrent first callers share one activation attempt, run on the first
// caller's context. When that caller gives up, the others (whose contexts
// still have time) try again instead of failing with its timeout.
func TestWaitersOutliveTheFirstCallersCancellation(t *testing.T) {
	var first atomic.Bool
	first.Store(true)
	entered := make(chan struct{})
	types := actors.Types()
	types["slow"] = func(nola.Ref) (nola.Actor, error) { return slowActivator{entered, &first}, nil }
	c := realCluster(t, 1, types)
	ctx1, cancel1 := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := c.Client().Invoke(ctx1, "ns", "s", "slow", "op", nil)
		firstErr <- err
	}()
	<-entered
	second := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.Client().Invoke(ctx, "ns", "s", "slow", "op", nil)
		second <- err
	}()
	// Let the second caller queue on the attempt, then cancel the first.
	time.Sleep(50 * time.Millisecond)
	cancel1()
	if err := <-firstErr; err == nil {
		t.Fatal("the cancelled first caller succeeded")
	}
	if err := <-second; err != nil {
		t.Fatalf("the second caller failed with the first caller's cancellation: %v", err)
	}
}
