package nola_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
)

// blocker holds "block" until released, so a test can hold an activation
// busy without timing; "inc" counts in memory; "kv" touches the KV.
type blocker struct {
	n       int
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "block":
		b.entered <- struct{}{}
		<-b.release
		return nil, nil
	case "kv":
		var errs []error
		_, _, err := ctx.Get([]byte("k"))
		errs = append(errs, err, ctx.Put([]byte("k"), []byte("v")), ctx.Delete([]byte("k")))
		_, err = ctx.Scan(nil, nil, 0)
		errs = append(errs, err)
		_, err = ctx.ScanPrefix([]byte("k"), 0)
		errs = append(errs, err)
		for _, e := range errs {
			if !errors.Is(e, nola.ErrUnsupported) || e.Error() != "nola: unsupported: no KV here: use another mode" {
				return nil, errors.New("KV call did not fail as unsupported: " + errString(e))
			}
		}
		return nil, errs[0]
	}
	b.n++
	return []byte{byte(b.n)}, nil
}

func errString(e error) string {
	if e == nil {
		return "<nil>"
	}
	return e.Error()
}

// Server.Release moves an actor off its server: absent or busy
// activations are reported, a released one loses its memory and is placed
// anew by its next call. HostedActors lists the ready activations.
func TestReleaseAndHostedActors(t *testing.T) {
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	factory := func(nola.Ref) (nola.Actor, error) { return &blocker{entered: b.entered, release: b.release}, nil }
	c := realCluster(t, 1, map[string]nola.Factory{"b": factory},
		func(cfg *nola.ServerConfig) { cfg.NoKV = "no KV here: use another mode" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, cl := c.Server(0), c.Client()
	if ok, err := s.Release(ctx, "ns", "a"); ok || err != nil {
		t.Fatalf("release of an absent actor: %v, %v", ok, err)
	}
	for range 2 {
		if _, err := cl.Invoke(ctx, "ns", "a", "b", "inc", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.HostedActors(); len(got) != 1 || got[0].ID != "a" || got[0].Type != "b" {
		t.Fatalf("HostedActors = %v", got)
	}
	done := make(chan error, 1)
	go func() { _, err := cl.Invoke(ctx, "ns", "a", "b", "block", nil); done <- err }()
	<-b.entered
	if _, err := s.Release(ctx, "ns", "a"); !errors.Is(err, nola.ErrBusy) {
		t.Fatalf("release of a busy actor: %v, want ErrBusy", err)
	}
	close(b.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Release(ctx, "ns", "a"); !ok || err != nil {
		t.Fatalf("release: %v, %v", ok, err)
	}
	if got := s.HostedActors(); len(got) != 0 {
		t.Fatalf("after release HostedActors = %v", got)
	}
	if out, err := cl.Invoke(ctx, "ns", "a", "b", "inc", nil); err != nil || out[0] != 1 {
		t.Fatalf("after release: %v, %v; want 1 from a new activation", out, err)
	}
	if _, err := cl.Invoke(ctx, "ns", "a", "b", "kv", nil); !errors.Is(err, nola.ErrUnsupported) {
		t.Fatalf("KV with NoKV: %v, want ErrUnsupported kept through the invocation", err)
	}
}
