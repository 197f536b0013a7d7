package nola_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// storeValue reads an actor's KV key straight from the shared store.
func storeValue(t *testing.T, e *simtest.Env, id, key string) (string, bool) {
	t.Helper()
	v, found, err := e.C.Client().Inspector().GetKV(context.Background(), ns, id, []byte(key))
	if err != nil {
		t.Fatalf("read store: %v", err)
	}
	return string(v), found
}

// flakyCommitter is an actor whose outgoing call's flush (a commit point) is
// made to fail by the test, and which reports the failure with an error of
// its own instead of the commit error (as much code does:
// fmt.Errorf("...: %v", err); a WASM guest only ever sees a string).
func flakyCommitter(link **faultinject.Store, failMode faultinject.Mode) nola.Factory {
	return func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			switch op {
			case "put":
				return nil, ctx.Put([]byte("k"), payload)
			case "get":
				v, ok, err := ctx.Get([]byte("k"))
				if err != nil {
					return nil, err
				}
				if !ok {
					return []byte("<none>"), nil
				}
				return v, nil
			case "put-then-call":
				// Put, then make an outgoing call whose flush fails.
				if err := ctx.Put([]byte("k"), payload); err != nil {
					return nil, err
				}
				(*link).SetMode(failMode)
				_, err := ctx.Invoke("other", "counter", "inc", nil)
				(*link).SetMode(faultinject.Pass)
				if err == nil {
					return nil, fmt.Errorf("test setup: flush did not fail")
				}
				return nil, fmt.Errorf("notify failed: %v", err) // not %w
			case "put-call-put":
				// Put x, the flush before a call fails, then Put y and
				// return success: the engine fails the invocation (the
				// actor "swallowed" a failed commit)...
				if err := ctx.Put([]byte("x"), []byte("1")); err != nil {
					return nil, err
				}
				(*link).SetMode(failMode)
				_, err := ctx.Invoke("other", "counter", "inc", nil)
				(*link).SetMode(faultinject.Pass)
				if err == nil {
					return nil, fmt.Errorf("test setup: flush did not fail")
				}
				if err := ctx.Put([]byte("y"), []byte("2")); err != nil {
					return nil, err
				}
				return []byte("ok"), nil
			}
			return nil, fmt.Errorf("unknown op %q", op)
		}), nil
	}
}

// A commit of unknown outcome (the flush before an outgoing call) fails the
// invocation and drops the activation even when the actor reports it with an
// error of its own: the next activation reads the store, not a stale cache.
// (Once only an actor that returned nil had its failed commit noticed.)
func TestUnknownCommitUnderActorErrorDropsActivation(t *testing.T) {
	var link *faultinject.Store
	types := actors.Types()
	types["flaky"] = flakyCommitter(&link, faultinject.LoseAcks)
	runSim(t, 101, 1, types, nil, func(e *simtest.Env) {
		link = e.Links[0]
		e.MustInvoke("f", "flaky", "put", []byte("old"))
		if got := e.MustInvoke("f", "flaky", "get", nil); got != "old" {
			t.Fatalf("get = %q, want old", got)
		}
		// The commit of k=new is applied but its ack is lost.
		_, err := e.Invoke("f", "flaky", "put-then-call", []byte("new"))
		if err == nil {
			t.Fatal("put-then-call succeeded")
		}
		if v, _ := storeValue(t, e, "f", "k"); v != "new" {
			t.Fatalf("test setup: store has %q, want the lost-ack commit applied", v)
		}
		got := e.MustInvoke("f", "flaky", "get", nil)
		if got != "new" {
			t.Errorf("after a commit of unknown outcome the activation read k=%q from its cache; the store holds %q (stale read; activation not dropped, epoch not bumped)", got, "new")
		}
		if st := e.C.Server(0).Stats(); st.FailedCommits == 0 {
			t.Errorf("failed commit not counted: the engine did not treat it as one (activation kept)")
		}
	})
}

// After a failed commit nothing of the invocation commits: writes made
// after it (the actor ignored the error) are discarded with the rest.
func TestNoWriteCommitsAfterAFailedFlush(t *testing.T) {
	var link *faultinject.Store
	types := actors.Types()
	types["flaky"] = flakyCommitter(&link, faultinject.Down)
	runSim(t, 102, 1, types, nil, func(e *simtest.Env) {
		link = e.Links[0]
		_, err := e.Invoke("g", "flaky", "put-call-put", nil)
		if err == nil {
			t.Fatal("the invocation succeeded although a commit failed")
		}
		_, xok := storeValue(t, e, "g", "x")
		y, yok := storeValue(t, e, "g", "y")
		if xok {
			t.Fatal("test setup: x was committed")
		}
		if yok {
			t.Errorf("invocation failed (%v), yet its later write y=%q was committed (x was not)", err, y)
		}
	})
}

// Rewriting one cached key does not grow the server's memory estimate
// (MemoryBytes feeds load reports and placement).
func TestCacheOverwriteKeepsMemoryBytes(t *testing.T) {
	runSim(t, 103, 1, nil, nil, func(e *simtest.Env) {
		e.MustInvoke("c", "kvcounter", "inc", nil)
		before := e.C.Server(0).Stats().MemoryBytes
		for range 200 {
			e.MustInvoke("c", "kvcounter", "inc", nil)
		}
		after := e.C.Server(0).Stats().MemoryBytes
		if after > before+64 {
			t.Errorf("MemoryBytes grew from %d to %d over 200 rewrites of one small key (one activation)", before, after)
		}
	})
}

// holdStore delays commits on demand: a held commit is answered with
// kv.ErrIndeterminate (as when a connection stalls) and applied later, when
// the test lets it through — the "late commit" of the architecture doc.
type holdStore struct {
	kv.Store
	hold atomic.Bool
	mu   sync.Mutex
	held []kv.Txn
}

func (h *holdStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if h.hold.Load() {
		h.mu.Lock()
		h.held = append(h.held, t)
		h.mu.Unlock()
		return kv.CommitResult{}, fmt.Errorf("hold: %w", kv.ErrIndeterminate)
	}
	return h.Store.Commit(ctx, t)
}

func (h *holdStore) deliver(ctx context.Context) (applied int, err error) {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, t := range held {
		res, err := h.Store.Commit(ctx, t)
		if err != nil {
			return applied, err
		}
		if res.Succeeded {
			applied++
		}
	}
	return applied, nil
}

// G2 on the same path: a commit of unknown outcome stays in flight while
// the actor reports the failure with its own error; the next activation
// bumps the epoch, so when the late commit lands its fence fails and the
// acknowledged write after it stands.
func TestLateCommitUnderActorErrorCannotOverwriteAckedWrite(t *testing.T) {
	var hs *holdStore
	types := actors.Types()
	types["flaky"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			switch op {
			case "put":
				return nil, ctx.Put([]byte("k"), payload)
			case "put-then-call":
				if err := ctx.Put([]byte("k"), payload); err != nil {
					return nil, err
				}
				hs.hold.Store(true)
				_, err := ctx.Invoke("other", "counter", "inc", nil)
				hs.hold.Store(false)
				if err == nil {
					return nil, fmt.Errorf("test setup: flush did not fail")
				}
				return nil, errors.New("notify failed: " + err.Error())
			}
			return nil, fmt.Errorf("unknown op %q", op)
		}), nil
	}
	configure := func(_ int, cfg *nola.ServerConfig) {
		hs = &holdStore{Store: cfg.Store}
		cfg.Store = hs
	}
	runSim(t, 104, 1, types, configure, func(e *simtest.Env) {
		e.MustInvoke("f", "flaky", "put", []byte("v1"))
		if _, err := e.Invoke("f", "flaky", "put-then-call", []byte("late")); err == nil {
			t.Fatal("put-then-call succeeded")
		}
		// Acknowledged write.
		e.MustInvoke("f", "flaky", "put", []byte("acked"))
		if v, _ := storeValue(t, e, "f", "k"); v != "acked" {
			t.Fatalf("test setup: store has %q", v)
		}
		// The stalled commit finally reaches the store.
		n, err := hs.deliver(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := storeValue(t, e, "f", "k"); v != "acked" || n != 0 {
			t.Errorf("acknowledged write lost: store has k=%q after the late commit (applied %d), want %q", v, n, "acked")
		}
	})
}

// slowStore makes one commit slow after it was applied (a stalled response).
type slowStore struct {
	kv.Store
	rt   rt.Runtime
	slow atomic.Bool
	d    time.Duration
}

func (s *slowStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	res, err := s.Store.Commit(ctx, t)
	if err == nil && res.Succeeded && len(t.Ops) > 0 && s.slow.CompareAndSwap(true, false) {
		_ = s.rt.Sleep(context.Background(), s.d)
	}
	return res, err
}

// When the output gate withholds an answer after the invocation committed,
// the caller learns the outcome is unknown (timeout), never a code that
// says nothing was committed: retrying would apply it twice.
func TestOutputGateAfterCommitSaysOutcomeUnknown(t *testing.T) {
	var ss *slowStore
	types := actors.Types()
	types["w"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			return []byte("ok"), ctx.Put([]byte("k"), payload)
		}), nil
	}
	configure := func(_ int, cfg *nola.ServerConfig) {
		ss = &slowStore{Store: cfg.Store, rt: cfg.Runtime, d: 2 * simTTL}
		cfg.Store = ss
	}
	runSim(t, 105, 1, types, configure, func(e *simtest.Env) {
		e.MustInvoke("w", "w", "put", []byte("v0"))
		e.Links[0].SetMode(faultinject.DropKeepAlives)
		ss.slow.Store(true)
		ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*simTTL)
		defer cancel()
		_, err := e.C.Client().Invoke(ctx, ns, "w", "w", "put", []byte("v1"))
		var ne *nola.Error
		if !errors.As(err, &ne) {
			t.Fatalf("got %v", err)
		}
		if v, _ := storeValue(t, e, "w", "k"); v != "v1" {
			t.Fatalf("test setup: store has %q, want the write committed", v)
		}
		if ne.Code != nola.CodeTimeout || ne.Retryable {
			t.Errorf("the write was committed but the caller got %v (code %s, retryable %v); want timeout, not retryable", err, ne.Code, ne.Retryable)
		}
	})
}

// hookActor's Activate hook writes, then makes a best-effort call whose
// flush the test holds (unknown outcome) the first time, and ignores its
// error.
type hookActor struct {
	hs    **holdStore
	first *atomic.Bool
}

func (h hookActor) Activate(ctx *nola.Context) error {
	if err := ctx.Put([]byte("k"), []byte("from-activate")); err != nil {
		return err
	}
	hold := h.first.CompareAndSwap(true, false)
	(*h.hs).hold.Store(hold)
	_, err := ctx.Invoke("other", "counter", "inc", nil)
	(*h.hs).hold.Store(false)
	if hold && err == nil {
		return fmt.Errorf("test setup: the held flush succeeded")
	}
	return nil // the failure is ignored
}

func (h hookActor) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	return nil, ctx.Put([]byte("k"), payload)
}

// G2 through a lifecycle hook: an Activate hook that ignores a commit of
// unknown outcome fails the activation; the next one bumps the epoch, so
// the late commit cannot overwrite a later acknowledged write.
func TestActivateHookIgnoringUnknownCommitFailsActivation(t *testing.T) {
	var hs *holdStore
	types := actors.Types()
	var first atomic.Bool
	first.Store(true)
	types["hook"] = func(nola.Ref) (nola.Actor, error) { return hookActor{&hs, &first}, nil }
	configure := func(_ int, cfg *nola.ServerConfig) {
		hs = &holdStore{Store: cfg.Store}
		cfg.Store = hs
	}
	runSim(t, 106, 1, types, configure, func(e *simtest.Env) {
		if _, err := e.Invoke("h", "hook", "put", []byte("first")); err == nil {
			t.Fatal("an activation whose Activate hook had a commit of unknown outcome served a call")
		}
		e.MustInvoke("h", "hook", "put", []byte("acked"))
		if v, _ := storeValue(t, e, "h", "k"); v != "acked" {
			t.Fatalf("store has %q, want acked", v)
		}
		n, err := hs.deliver(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the late commit of the failed activation was applied (%d commits)", n)
		}
		if v, _ := storeValue(t, e, "h", "k"); v != "acked" {
			t.Errorf("acknowledged write lost: store has k=%q after the Activate hook's late commit", v)
		}
	})
}

// A value too big for the activation's KV cache (values may be up to 512
// KiB, the cache holds 256) must not leave the cached old value behind: a
// later read sees the new one.
func TestBigValueReplacesCachedValue(t *testing.T) {
	types := actors.Types()
	types["big"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			switch op {
			case "small":
				return nil, ctx.Put([]byte("k"), []byte("small"))
			case "big":
				return nil, ctx.Put([]byte("k"), make([]byte, 300<<10))
			case "len":
				v, _, err := ctx.Get([]byte("k"))
				return []byte(fmt.Sprint(len(v))), err
			}
			return nil, fmt.Errorf("unknown op %q", op)
		}), nil
	}
	runSim(t, 107, 1, types, nil, func(e *simtest.Env) {
		e.MustInvoke("b", "big", "small", nil)
		if got := e.MustInvoke("b", "big", "len", nil); got != "5" {
			t.Fatalf("len after small = %s", got)
		}
		e.MustInvoke("b", "big", "big", nil)
		if got := e.MustInvoke("b", "big", "len", nil); got != fmt.Sprint(300<<10) {
			t.Fatalf("len after a %d-byte write = %s: the cache served the old value", 300<<10, got)
		}
	})
}
