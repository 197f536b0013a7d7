package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// benchTarget serves one in-process nola server (memkv) over HTTP.
func benchTarget(t *testing.T) string {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	srv, err := nola.NewServer(nola.ServerConfig{ID: "rv", Addr: url, Runtime: r, Store: store, Transport: tr, Types: actors.Types()})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(url, srv)
	hs.Config.Handler = httpapi.NewHandler(srv, httpapi.Options{})
	hs.Start()
	t.Cleanup(hs.Close)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return url
}

// `nola bench --requests N` ends when the N requests are done, not at
// --duration, with progress lines on (their goroutine once outlived the
// callers, and the idle time counted in the throughput).
func TestBenchRequestsLimitEndsTheRun(t *testing.T) {
	url := benchTarget(t)
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"bench", "--servers", url, "--requests", "50", "--concurrency", "2", "--duration", "2m"}, &out, &errb)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("bench exit %d: %s %s", code, out.String(), errb.String())
	}
	if took > time.Minute {
		t.Errorf("50 requests took %v (the whole --duration); output: %s", took.Round(time.Millisecond), strings.TrimSpace(out.String()))
	}
	if !strings.HasPrefix(out.String(), "50 calls in ") {
		t.Errorf("output %q, want 50 calls", out.String())
	}
}

// --actors deals that many actors out to the callers: with more actors
// than callers, every actor is called (not just one per caller).
func TestBenchUsesEveryActor(t *testing.T) {
	url := benchTarget(t)
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--servers", url, "--ns", "deal", "--actors", "8", "--concurrency", "2", "--requests", "40", "--warm=false", "--quiet"}, &out, &errb)
	if code != 0 {
		t.Fatalf("bench exit %d: %s %s", code, out.String(), errb.String())
	}
	c := httpapi.NewClient(url, "")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.ListActors(ctx, "deal", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Actors) != 8 {
		t.Errorf("%d actors were called, want 8: %+v", len(list.Actors), list.Actors)
	}
}
