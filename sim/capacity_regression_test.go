package sim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// holdReleases, while armed, holds every actor release (a put of an actor
// record naming no owner): it is not applied, and its caller is told the
// outcome is unknown — a release whose answer did not come back in time
// (a latency spike, a stalled connection). The first one held is kept for
// the test to deliver later.
type holdReleases struct {
	kv.Store
	arm  bool
	held *kv.Txn
	n    int
}

func isRelease(t kv.Txn) bool {
	if len(t.Ops) != 1 || t.Ops[0].Kind != kv.OpPut {
		return false
	}
	k, err := tuple.Unpack(t.Ops[0].Key)
	if err != nil || len(k) != 4 || k[1] != "act" {
		return false
	}
	v, err := tuple.Unpack(t.Ops[0].Value)
	return err == nil && len(v) == 4 && v[1] == ""
}

func (h *holdReleases) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if !h.arm || !isRelease(t) {
		return h.Store.Commit(ctx, t)
	}
	h.n++
	if h.held == nil {
		t = cloneTxn(t)
		h.held = &t
	}
	return kv.CommitResult{}, fmt.Errorf("hold: no answer in time: %w", kv.ErrIndeterminate)
}

// Regression test for the second engine bug the simulator found (TestSeeds,
// seeds 15, 103, 217 and 261
// of 1–400, and by the nolasim sweep; see README.md). A server at its
// activation limit releases an actor it was asked to activate
// (activation.go, activate: reg.Release, whose error is only logged). If
// the release's outcome is unknown, nothing remembers it: the next call
// confirms the actor on the same server, at the same epoch (Confirm reads
// a record that still names this incarnation), and activates it. When the
// late release lands, its compare — the owner record at that epoch —
// still holds: the record now names no owner while the activation serves.
// Placement then starts a second activation elsewhere, and both serve an
// in-memory actor: two counters, G1 broken. (A commit of unknown outcome
// marks the actor in doubt, so that its next activation bumps the epoch;
// a release of unknown outcome did not. Fixed: it does now.)
func TestLateCapacityReleaseOfLiveActivation(t *testing.T) {
	w := simrt.New(11)
	err := w.Run(func() {
		ctx := context.Background()
		inner := memkv.New(w.Node("store"), memkv.Options{})
		hold := &holdReleases{Store: inner}
		n0, n1, driver := w.Node("s0"), w.Node("s1"), w.Node("driver")
		c, err := nola.NewCluster(ctx, nola.ClusterConfig{
			Servers: 1, Store: hold, Async: true, Types: actors.Types(),
			Runtime:       func(int) rt.Runtime { return n0 },
			ClientRuntime: driver,
			Configure: func(_ int, cfg *nola.ServerConfig) {
				cfg.LeaseTTL = 3 * time.Second
				// One activation at a time. The sweeper evicts every
				// activation each 30 s (an hour's idle timeout is capped
				// to a 30 s sweep; the cap of 1 makes it evict down to 0).
				cfg.MaxActivations = 1
				cfg.IdleTimeout = time.Hour
			},
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Halt()
		call := func(cl *nola.Client, id string) (string, error) {
			cctx, cancel := driver.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			b, err := cl.Invoke(cctx, "ns", id, "counter", "inc", nil)
			return string(b), err
		}
		old := c.Client()
		if _, err := call(old, "b"); err != nil { // s0 hosts b: it is full
			t.Fatal(err)
		}
		hold.arm = true
		if v, err := call(old, "a"); err == nil { // s0 releases a (held)
			t.Fatalf("a answered %s on a full server", v)
		}
		hold.arm = false
		if hold.held == nil {
			t.Fatal("test setup: no release at capacity was sent")
		}
		_ = driver.Sleep(ctx, 31*time.Second) // the sweep evicts b
		if c.Server(0).Hosts("ns", "b") {
			t.Fatal("test setup: b was not evicted")
		}
		for want := range 2 { // a reactivates on s0 (it still owns a)
			if v, err := call(old, "a"); err != nil || v != fmt.Sprint(want) {
				t.Fatalf("a inc = %q, %v; want %d", v, err, want)
			}
		}
		// s0 reports its load (full), then the held release reaches the
		// store.
		_ = driver.Sleep(ctx, 2*time.Second)
		res, err := inner.Commit(ctx, *hold.held)
		t.Logf("%d releases held; the first applied late: %v (err %v)", hold.n, res.Succeeded, err)

		// A second server, and a caller without a cached route.
		s1, err := nola.NewServer(nola.ServerConfig{ID: "s1", Addr: "local://s1", Runtime: n1, Store: inner,
			Transport: c.Network().Transport(n1), Types: actors.Types(), LeaseTTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.Network().Listen(s1.Addr(), s1, n1)
		if err := s1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer s1.Halt()
		fresh, err := nola.NewClient(nola.ClientConfig{Runtime: driver, Store: inner, Transport: c.Network().Transport(driver)})
		if err != nil {
			t.Fatal(err)
		}
		vNew, errNew := call(fresh, "a")
		vOld, errOld := call(old, "a")
		t.Logf("new caller: %q %v; old caller (route to s0): %q %v", vNew, errNew, vOld, errOld)
		if c.Server(0).Hosts("ns", "a") && s1.Hosts("ns", "a") {
			t.Errorf("two activations of a: on s0 and on s1")
		}
		if errNew == nil && errOld == nil && vNew == "0" && vOld == "2" {
			t.Errorf("a counted 0, 1 on s0, then 0 on s1 and 2 on s0: two activations serve (G1)")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
