package nola_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// tripCtx is a context whose deadline "passes" when the test says so, at an
// exact point of the code under test instead of at a wall-clock instant.
type tripCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newTripCtx() *tripCtx {
	return &tripCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *tripCtx) Deadline() (time.Time, bool) { return time.Now().Add(time.Hour), true }
func (c *tripCtx) Done() <-chan struct{}       { return c.done }
func (c *tripCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
func (c *tripCtx) trip() { c.once.Do(func() { close(c.done) }) }

// tripStore trips ctx in its n-th read (Get or Range) and fails that read
// with the deadline, as a store client does when the deadline passes
// during a request.
type tripStore struct {
	kv.Store
	ctx   *tripCtx
	n     int64
	reads atomic.Int64
}

func (s *tripStore) read() error {
	if s.reads.Add(1) == s.n {
		s.ctx.trip()
		return fmt.Errorf("tripstore: read: %w", context.DeadlineExceeded)
	}
	return nil
}

func (s *tripStore) Get(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	if err := s.read(); err != nil {
		return kv.KeyValue{}, false, err
	}
	return s.Store.Get(ctx, key, rev)
}

func (s *tripStore) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	if err := s.read(); err != nil {
		return kv.RangeResult{}, err
	}
	return s.Store.Range(ctx, r)
}

// notOwnerUntilTrip answers not_owner, and trips ctx in its n-th call.
type notOwnerUntilTrip struct {
	ctx   *tripCtx
	n     int64
	calls atomic.Int64
}

func (t *notOwnerUntilTrip) Invoke(context.Context, string, nola.Request) ([]byte, error) {
	if t.calls.Add(1) == t.n {
		t.ctx.trip()
	}
	return nil, &nola.Error{Code: nola.CodeNotOwner, Retryable: true, Message: "not here"}
}

func wantRetryableTimeout(t *testing.T, what string, err error) {
	t.Helper()
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != nola.CodeTimeout || !errors.Is(err, nola.ErrTimeout) || !ne.Retryable {
		t.Fatalf("%s: got %v (code %s, retryable %v), want a retryable timeout: the invocation did not run",
			what, err, nola.CodeOf(err), nola.IsRetryable(err))
	}
}

// A deadline that passes before the invocation could have run — in a
// placement read, while the client backs off between retryable failures,
// or right after one — is a timeout, typed as such, and says nothing ran
// (retryable). Each case makes the deadline pass at one exact point; no
// case depends on timing. (Issue 10, finding 7: a placement read failing at
// the deadline answered a non-retryable timeout, ~1 run in 200 under -race.)
func TestDeadlineDuringRetriesIsATypedTimeout(t *testing.T) {
	r := rt.NewReal()
	for n := int64(1); n <= 6; n++ {
		t.Run(fmt.Sprintf("store read %d", n), func(t *testing.T) {
			ctx := newTripCtx()
			store := &tripStore{Store: memkv.New(r, memkv.Options{}), ctx: ctx, n: n}
			reg := registry.New(store.Store, r, registry.Options{})
			if _, err := reg.Register(context.Background(), "s", "nowhere", time.Minute); err != nil {
				t.Fatal(err)
			}
			cl, err := nola.NewClient(nola.ClientConfig{Runtime: r, Store: store, Transport: &notOwnerUntilTrip{ctx: ctx, n: -1}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Invoke(ctx, "ns", "a", "t", "op", nil)
			if !ctxTripped(ctx) {
				t.Skipf("the client made fewer than %d store reads (%v)", n, err)
			}
			wantRetryableTimeout(t, fmt.Sprintf("deadline in store read %d", n), err)
		})
	}
	for n := int64(1); n <= 4; n++ {
		t.Run(fmt.Sprintf("send %d", n), func(t *testing.T) {
			ctx := newTripCtx()
			store := memkv.New(r, memkv.Options{})
			reg := registry.New(store, r, registry.Options{})
			if _, err := reg.Register(context.Background(), "s", "nowhere", time.Minute); err != nil {
				t.Fatal(err)
			}
			tr := &notOwnerUntilTrip{ctx: ctx, n: n}
			cl, err := nola.NewClient(nola.ClientConfig{Runtime: r, Store: store, Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Invoke(ctx, "ns", "a", "t", "op", nil)
			wantRetryableTimeout(t, fmt.Sprintf("deadline after send %d", n), err)
			if got := tr.calls.Load(); got != n {
				t.Fatalf("%d sends, want %d: nothing is sent after the deadline", got, n)
			}
		})
	}
}

func ctxTripped(c *tripCtx) bool { return c.Err() != nil }

// On the server, a deadline that passes before the invocation's start
// check — while it confirms ownership, waits for another caller's
// activation, or waits for the actor's lock — is a retryable timeout too.
func TestServerDeadlineBeforeStartIsRetryable(t *testing.T) {
	r := rt.NewReal()
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	types := map[string]nola.Factory{
		"hold": func(nola.Ref) (nola.Actor, error) {
			return nola.FuncActor(func(_ *nola.Context, op string, _ []byte) ([]byte, error) {
				if op == "hold" {
					entered <- struct{}{}
					<-release
				}
				return []byte("ok"), nil
			}), nil
		},
		"slowstart": func(nola.Ref) (nola.Actor, error) { return &slowStart{entered: entered, release: release}, nil },
	}
	store := memkv.New(r, memkv.Options{})
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers: 1, Store: store, Runtime: func(int) rt.Runtime { return r },
		ClientRuntime: r, Types: types,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Halt()
	s := c.Server(0)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	req := func(id, typ, op string) nola.Request {
		return nola.Request{Namespace: ns, ActorID: id, ActorType: typ, Operation: op}
	}

	// Confirming ownership (the first store read of an activation).
	// (A protocol client of its own places the actor: nola exposes no
	// registry handle.)
	p, err := registry.New(store, r, registry.Options{}).EnsureActivation(context.Background(), ns, "x", "hold")
	if err != nil || p.ServerID != s.ID() {
		t.Fatalf("placement: %+v, %v", p, err)
	}
	_, err = s.HandleInvoke(gone, req("x", "hold", "noop"))
	wantRetryableTimeout(t, "deadline while confirming ownership", err)

	// Waiting for the actor's lock, held by a running invocation.
	done := make(chan error, 1)
	go func() {
		_, err := c.Client().Invoke(context.Background(), ns, "y", "hold", "hold", nil)
		done <- err
	}()
	<-entered
	_, err = s.HandleInvoke(gone, req("y", "hold", "noop"))
	wantRetryableTimeout(t, "deadline while waiting for the actor's lock", err)

	// Waiting for an activation another caller started (its Activate hook
	// is running).
	go func() {
		_, err := c.Client().Invoke(context.Background(), ns, "z", "slowstart", "noop", nil)
		done <- err
	}()
	<-entered
	_, err = s.HandleInvoke(gone, req("z", "slowstart", "noop"))
	wantRetryableTimeout(t, "deadline while waiting for another caller's activation", err)

	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

type slowStart struct {
	entered chan<- struct{}
	release <-chan struct{}
}

func (a *slowStart) Activate(*nola.Context) error {
	a.entered <- struct{}{}
	<-a.release
	return nil
}

func (a *slowStart) Invoke(*nola.Context, string, []byte) ([]byte, error) { return []byte("ok"), nil }
