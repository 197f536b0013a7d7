package sim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// Regression tests for protocol bugs a code review found (they need
// schedules the random sweep rarely draws: capacity releases, a commit
// acknowledged late while keep-alives fail, slow load reports).

// An epoch must never repeat. Before the fix, placement always wrote epoch 0:
// a commit of unknown outcome fenced on epoch 0, a bump to epoch 1, a release
// at capacity and a placement back on the same incarnation at epoch 0 made
// the old fence hold again, and the late commit replaced an acknowledged
// write.
func TestEpochsDoNotRepeatAfterCapacityRelease(t *testing.T) {
	w := simrt.New(7)
	err := w.Run(func() {
		ctx := context.Background()
		storeNode := w.Node("store")
		inner := memkv.New(storeNode, memkv.Options{})
		late := &lateStore{Store: inner, rt: storeNode}
		srvNode, driver := w.Node("s0"), w.Node("driver")
		c, err := nola.NewCluster(ctx, nola.ClusterConfig{
			Servers: 1, Store: late, Async: true, Types: actors.Types(),
			Runtime:       func(int) rt.Runtime { return srvNode },
			ClientRuntime: driver,
			Configure: func(_ int, cfg *nola.ServerConfig) {
				cfg.LeaseTTL = 3 * time.Second
				cfg.MaxActivations = 1
				cfg.IdleTimeout = 2 * time.Second
				cfg.CommitTimeout = time.Second
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Halt()
		call := func(id, op string) (string, error) {
			cctx, cancel := driver.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			b, err := c.Client().Invoke(cctx, "ns", id, "kvcounter", op, nil)
			return string(b), err
		}
		until := func(id, op string) string {
			for range 200 {
				if v, err := call(id, op); err == nil {
					return v
				}
				_ = driver.Sleep(ctx, 100*time.Millisecond)
			}
			t.Fatalf("%s %s kept failing", id, op)
			return ""
		}
		until("a", "inc")
		until("a", "inc") // n = 2
		late.arm = true
		if _, err := call("a", "inc"); err == nil {
			t.Error("the held commit answered")
			return
		}
		if got := until("a", "inc"); got != "3" { // the next activation bumps the epoch
			t.Errorf("after the held commit: %s, want 3", got)
		}
		if got := until("a", "inc"); got != "4" {
			t.Errorf("inc = %s, want 4", got)
		}
		_ = driver.Sleep(ctx, 5*time.Second) // a is evicted
		until("b", "inc")                    // the server is at its limit
		_, _ = call("a", "get")              // a is released at capacity
		_ = driver.Sleep(ctx, 5*time.Second) // b is evicted
		if got := until("a", "get"); got != "4" {
			t.Errorf("a = %s, want 4", got)
		}
		if late.held == nil {
			t.Fatal("test setup: no commit was held")
		}
		res, err := inner.Commit(ctx, *late.held)
		if err != nil || res.Succeeded {
			t.Errorf("the held commit of an earlier epoch applied=%v err=%v after release and re-placement", res.Succeeded, err)
		}
		reg := registry.New(inner, driver, registry.Options{})
		if n, _, _ := reg.GetKV(ctx, "ns", "a", []byte("n")); string(n) != "4" {
			t.Errorf("n = %q, want the acknowledged 4", n)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// slowAck applies one actor-KV commit at once but answers it only after
// delay, and from then on loses every keep-alive: the server's deadline
// passes while it waits for the answer.
type slowAck struct {
	kv.Store
	rt    rt.Runtime
	arm   bool
	delay time.Duration
	noKA  bool
}

func (s *slowAck) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	if s.noKA {
		return 0, kv.ErrUnavailable
	}
	return s.Store.KeepAlive(ctx, id)
}

func (s *slowAck) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	res, err := s.Store.Commit(ctx, t)
	if s.arm && isActorKVCommit(t) {
		s.arm = false
		s.noKA = true
		_ = s.rt.Sleep(context.Background(), s.delay)
	}
	return res, err
}

// An actor's outgoing call must not leave after its server's lease deadline
// (rule 3). Before the fix the deadline was checked before the pre-call
// commit (which can take seconds), not before the send.
func TestOutgoingCallNotSentAfterDeadline(t *testing.T) {
	w := simrt.New(3)
	err := w.Run(func() {
		ctx := context.Background()
		inner := memkv.New(w.Node("store"), memkv.Options{})
		n0, n1, driver := w.Node("s0"), w.Node("s1"), w.Node("driver")
		slow := &slowAck{Store: inner, rt: n0, delay: 5 * time.Second}
		var called bool
		types := map[string]nola.Factory{
			"src": func(nola.Ref) (nola.Actor, error) {
				return nola.FuncActor(func(cx *nola.Context, op string, _ []byte) ([]byte, error) {
					if err := cx.Put([]byte("k"), []byte("v")); err != nil {
						return nil, err
					}
					return cx.Invoke("dst", "dst", "hit", nil)
				}), nil
			},
			"dst": func(nola.Ref) (nola.Actor, error) {
				return nola.FuncActor(func(*nola.Context, string, []byte) ([]byte, error) {
					called = true
					return nil, nil
				}), nil
			},
		}
		nodes := []*simrt.Node{n0, n1}
		c, err := nola.NewCluster(ctx, nola.ClusterConfig{
			Servers: 2, Store: inner, Async: true, Types: types,
			Runtime:       func(i int) rt.Runtime { return nodes[i] },
			ClientRuntime: driver,
			Configure: func(i int, cfg *nola.ServerConfig) {
				cfg.LeaseTTL = 3 * time.Second
				if i == 0 {
					cfg.Store = slow
				}
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Halt()
		reg := registry.New(inner, driver, registry.Options{})
		src := ""
		for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
			if p, err := reg.EnsureActivation(ctx, "ns", id, "src"); err == nil && p.ServerID == "s0" {
				src = id
				break
			}
		}
		if src == "" {
			t.Fatal("test setup: no src actor landed on s0")
		}
		slow.arm = true
		cctx, cancel := driver.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err = c.Client().Invoke(cctx, "ns", src, "src", "go", nil)
		if err == nil {
			t.Error("the call whose server passed its deadline succeeded")
		}
		if called {
			t.Error("the outgoing call took effect after the caller's lease deadline")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// slowLoadCommits makes every load report take 4 s (an fsync stall: etcd
// transactions need the disk, lease renewals do not).
type slowLoadCommits struct {
	kv.Store
	rt rt.Runtime
}

func (s *slowLoadCommits) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	for _, op := range t.Ops {
		if e, err := tuple.Unpack(op.Key); err == nil && len(e) >= 2 && e[1] == "load" {
			if err := s.rt.Sleep(ctx, 4*time.Second); err != nil {
				return kv.CommitResult{}, err
			}
		}
	}
	return s.Store.Commit(ctx, t)
}

// Slow load reports must not hold up keep-alives: before the fix they were
// unbounded and ran in line with the heartbeat, and a server whose
// keep-alives all succeeded fenced itself again and again.
func TestSlowLoadReportsDoNotFence(t *testing.T) {
	w := simrt.New(5)
	err := w.Run(func() {
		ctx := context.Background()
		inner := memkv.New(w.Node("store"), memkv.Options{})
		n0, driver := w.Node("s0"), w.Node("driver")
		c, err := nola.NewCluster(ctx, nola.ClusterConfig{
			Servers: 1, Store: inner, Async: true, Types: actors.Types(),
			Runtime:       func(int) rt.Runtime { return n0 },
			ClientRuntime: driver,
			Configure: func(_ int, cfg *nola.ServerConfig) {
				cfg.LeaseTTL = 6 * time.Second
				cfg.Store = &slowLoadCommits{Store: inner, rt: n0}
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Halt()
		_ = driver.Sleep(ctx, 60*time.Second)
		if f := c.Server(0).Stats().Fences; f != 0 {
			t.Errorf("%d fences in 60 s with slow load reports and healthy keep-alives", f)
		}
		cctx, cancel := driver.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := c.Client().Invoke(cctx, "ns", "x", "counter", "inc", nil); err != nil && !errors.Is(err, nola.ErrTimeout) {
			t.Errorf("server unusable: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
