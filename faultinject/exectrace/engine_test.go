package exectrace

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// holdActivated is an Observer in front of a Writer that, like a
// scheduler preempting the activating goroutine, holds the Activated
// report of the first activation until another invocation has started on
// it (or a liveness bound passes).
type holdActivated struct {
	*Writer
	once    sync.Once
	started chan struct{}
	held    bool
}

func (h *holdActivated) Activated(ev nola.ActivationEvent) {
	select {
	case <-h.started:
		h.held = true
	case <-time.After(10 * time.Second): // liveness bound only
	}
	h.Writer.Activated(ev)
}

func (h *holdActivated) ExecStart(ev nola.ActivationEvent) {
	h.Writer.ExecStart(ev)
	h.once.Do(func() { close(h.started) })
}

// The engine resolves an activation (and marks it ready) before it reports
// it, so on a real machine an invocation that waited for it can log its
// start first, with an earlier clock reading: the cause of the
// "G1.unknown … never reported activated" of jepsen-short seed 1. The
// oracle must accept such a trace from the real engine.
func TestEngineStartLoggedBeforeActivation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	obs := &holdActivated{Writer: w, started: make(chan struct{})}
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	net := nola.NewLocalNetwork(false)
	srv, err := nola.NewServer(nola.ServerConfig{
		ID: "s0", Addr: "s0", Runtime: r, Store: store, Transport: net.Transport(r),
		Types: actors.Types(), LeaseTTL: 3 * time.Second, Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	net.Listen("s0", srv, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = srv.Client().Invoke(ctx, "ns", "a", "counter", "inc", nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.held {
		t.Log("no invocation started before the activation was reported: the engine's order changed")
	} else {
		var act, start int64
		for _, r := range recs {
			switch {
			case r.Kind == KindActivated:
				act = r.T
			case r.Kind == KindStart && start == 0:
				start = r.T
			}
		}
		if !(start < act) {
			t.Fatalf("held report: want the first start (%d) stamped before the activation (%d): %+v", start, act, recs)
		}
	}
	res := Check(recs, []string{"ns/a"})
	if !res.Ok() || res.Actors["ns/a"].Executions != 2 || res.Actors["ns/a"].Activations != 1 {
		t.Fatalf("the real engine's trace was rejected: %+v", res)
	}
}
