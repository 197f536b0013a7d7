package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// syncBuffer is a bytes.Buffer the server's logger and the test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startInProcess runs `nola serve --store memory` in this process and
// returns a client to it and its log; the server stops at the test's end.
func startInProcess(t *testing.T, extra ...string) (*httpapi.Client, *syncBuffer) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{"--store", "memory", "--listen", "127.0.0.1:0", "--ready-file", ready, "--lease-ttl", "2s"}, extra...)
	go func() { done <- runServe(ctx, args, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for {
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			c := httpapi.NewClient("http://"+strings.TrimSpace(string(b)), "")
			t.Cleanup(c.Close)
			return c, logs
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited before it was ready: %v\n%s", err, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// The example actor types are callable only on a server started with
// --example-actors: a production server exposes no type it was not given.
func TestExampleActorsAreOptIn(t *testing.T) {
	ctx := context.Background()
	plain, logs := startInProcess(t)
	if _, err := plain.Invoke(ctx, "ns", "a", "kvcounter", "inc", nil); nola.CodeOf(err) != nola.CodeBadRequest {
		t.Fatalf("kvcounter on a server without --example-actors: err = %v, want bad_request", err)
	}
	if strings.Contains(logs.String(), "THIS SERVER IS OPEN") {
		t.Fatalf("a loopback server warned that it is open:\n%s", logs)
	}
	demo, _ := startInProcess(t, "--example-actors")
	if out, err := demo.Invoke(ctx, "ns", "a", "kvcounter", "inc", nil); err != nil || string(out) != "1" {
		t.Fatalf("kvcounter with --example-actors = %q, %v; want 1", out, err)
	}
}
