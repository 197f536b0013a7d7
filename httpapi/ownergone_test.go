package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// leaseSpy is a store that records the leases granted through it: the
// test revokes a server's lease as the store would once it expired.
type leaseSpy struct {
	kv.Store
	mu     sync.Mutex
	leases []kv.LeaseID
}

func (s *leaseSpy) Grant(ctx context.Context, ttl time.Duration) (kv.LeaseID, error) {
	id, err := s.Store.Grant(ctx, ttl)
	if err == nil {
		s.mu.Lock()
		s.leases = append(s.leases, id)
		s.mu.Unlock()
	}
	return id, err
}

func (s *leaseSpy) revokeAll(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.leases {
		if err := s.Store.Revoke(context.Background(), id); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
			t.Fatalf("revoke lease %v: %v", id, err)
		}
	}
}

// A public call forwarded over HTTP to an owner that stops answering ends
// as soon as the owner's lease is gone from the store, with a timeout that
// says so (the call may have run), well before its own deadline: the
// entry server's owner watch cancels the forward's context. That context
// is the call context's ForkCancel child (issue 16), not a WithCancel of
// it; the test fails if cancelling the child does not end the forward
// (checked by making ForkCancel's cancel a no-op: the call then waits
// for its deadline and answers "no answer ... before the deadline").
func TestForwardEndsWhenItsOwnersLeaseGoes(t *testing.T) {
	release := make(chan struct{})
	stalled := make(chan struct{}, 1)
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	types := map[string]nola.Factory{
		"stall": func(nola.Ref) (nola.Actor, error) {
			return nola.FuncActor(func(_ *nola.Context, op string, _ []byte) ([]byte, error) {
				if op == "stall" {
					stalled <- struct{}{}
					<-release // ignores its deadline: the owner cannot answer
				}
				return nil, nil
			}), nil
		},
	}
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() }) // after the servers' shutdown (startHTTPServers)
	spies := []*leaseSpy{{Store: store}, {Store: store}}
	srvs, urls := startHTTPServers(t, 2, func(i int) kv.Store { return spies[i] }, types, unblock)
	id := actorOn(t, urls[1], srvs[1], "g")

	// Through h0, with time enough that only the owner watch can end the
	// call before its deadline.
	type answer struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, urls[0]+"/v1/ns/t/actors/"+id+"/invoke/stall", nil)
		if err != nil {
			done <- answer{err: err}
			return
		}
		req.Header.Set(httpapi.HeaderTimeout, "20000")
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{resp.StatusCode, b, err}
	}()
	<-stalled // the forward reached the owner's actor
	spies[1].revokeAll(t)
	a := <-done
	unblock()
	if a.err != nil {
		t.Fatal(a.err)
	}
	var body httpapi.ErrorBody
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("HTTP %d %s: %v", a.status, a.body, err)
	}
	if a.status != http.StatusGatewayTimeout || body.Code != nola.CodeTimeout || body.Retryable {
		t.Fatalf("HTTP %d %+v, want a non-retryable 504 timeout", a.status, body)
	}
	if !strings.Contains(body.Message, "lost its lease while the call was in flight") {
		t.Fatalf("message %q: the forward did not end on its owner's lease going", body.Message)
	}
}
