package storeless

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A member whose module endpoint hangs does not stall the membership
// rounds: while the push to it hangs, the rounds go on and find another
// member down. (Before the pushes ran in the background, the first round
// blocked in the push and the second never started.)
func TestHungMemberDoesNotStallProbing(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client go
		select {
		case entered <- struct{}{}:
		default:
		}
		select { // hangs until the test ends or the pusher gives up
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	other := "http://127.0.0.1:2" // never dialled: probes are the test's
	var otherDown atomic.Bool
	m, err := NewMembers(MembersConfig{Self: "http://127.0.0.1:1", Peers: []string{hung.URL, other}, FailAfter: 1,
		Probe: func(_ context.Context, u string) error {
			if u == other && otherDown.Load() {
				return errors.New("down")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(RouterConfig{Members: m, PushTimeout: time.Minute, PushRetries: -1})
	defer r.Close()
	r.rememberModule(http.MethodPut, "/v1/ns/demo/modules/m", []byte("\x00asm"))

	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Round(context.Background()) // both join: pushes to both start
		<-entered                     // the push to the hung member is in progress
		otherDown.Store(true)
		r.Round(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a failure bound, not a wait for success
		t.Fatal("membership rounds stalled behind a push to a hung member")
	}
	if live := m.Live(); slices.Contains(live, other) || !slices.Contains(live, hung.URL) {
		t.Fatalf("live = %v, want the hung member and not the one that went down", live)
	}
}

// Close stops a push that hangs and waits for its goroutine; kicks after
// Close start nothing.
func TestCloseStopsHungPush(t *testing.T) {
	entered := make(chan struct{}, 1)
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client go
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer hung.Close()
	m, _ := NewMembers(MembersConfig{Self: "http://127.0.0.1:1", Peers: []string{hung.URL},
		Probe: func(context.Context, string) error { return nil }})
	r := NewRouter(RouterConfig{Members: m, PushTimeout: time.Hour})
	r.rememberModule(http.MethodPut, "/v1/ns/demo/modules/m", []byte("\x00asm"))
	r.Round(context.Background())
	<-entered
	r.Close() // returns only once the worker ended (wg)
	if err := r.WaitPushes(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.push.kick(hung.URL)
	r.push.mu.Lock()
	n := len(r.push.running)
	r.push.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d workers after Close", n)
	}
}

// A failed push is retried a bounded number of times; a refusal (4xx)
// is not retried.
func TestPushRetriesBounded(t *testing.T) {
	for _, tc := range []struct {
		status, want int
	}{{http.StatusServiceUnavailable, 3}, {http.StatusBadRequest, 1}} {
		var mu sync.Mutex
		calls := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			calls++
			mu.Unlock()
			w.WriteHeader(tc.status)
		}))
		m, _ := NewMembers(MembersConfig{Self: "http://127.0.0.1:1", Peers: []string{srv.URL},
			Probe: func(context.Context, string) error { return nil }})
		r := NewRouter(RouterConfig{Members: m, PushRetries: 2, PushBackoff: time.Millisecond})
		r.rememberModule(http.MethodPut, "/v1/ns/demo/modules/m", []byte("\x00asm"))
		r.Round(context.Background())
		if err := r.WaitPushes(t.Context()); err != nil {
			t.Fatal(err)
		}
		r.Close()
		srv.Close()
		mu.Lock()
		if calls != tc.want {
			t.Errorf("HTTP %d: %d attempts, want %d", tc.status, calls, tc.want)
		}
		mu.Unlock()
	}
}
