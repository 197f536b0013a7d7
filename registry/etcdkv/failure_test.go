package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// outcome of one write, as its caller knows it.
type outcome int

const (
	acked         outcome = iota // acknowledged: must be there forever
	notApplied                   // kv.ErrUnavailable: must never appear
	indeterminate                // may or may not have applied, atomically
)

// ledger records every write of the failure tests and checks them at the
// end: acknowledged writes are all there, refused ones are not, and
// indeterminate ones are all-or-nothing.
type ledger struct {
	writes  []outcome
	byPhase map[string][]outcome
}

// writeKeys are the two keys one write puts in one commit.
func writeKeys(i int) (string, string) {
	return fmt.Sprintf("w/%05d/a", i), fmt.Sprintf("w/%05d/b", i)
}

// write puts both keys of write number len(l.writes) in one commit and
// classifies the result. A write must end with nil, kv.ErrUnavailable or
// kv.ErrIndeterminate: any other error fails the test.
func (l *ledger) write(ctx context.Context, t *testing.T, s kv.Store, phase string) outcome {
	t.Helper()
	i := len(l.writes)
	a, b := writeKeys(i)
	v := []byte(strconv.Itoa(i))
	_, err := s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte(a), v, kv.NoLease), kv.Put([]byte(b), v, kv.NoLease)}})
	var o outcome
	switch {
	case err == nil:
		o = acked
	case errors.Is(err, kv.ErrIndeterminate):
		o = indeterminate
	case errors.Is(err, kv.ErrUnavailable):
		o = notApplied
	default:
		t.Fatalf("%s: write %d failed with an untyped error: %v", phase, i, err)
	}
	l.writes = append(l.writes, o)
	if l.byPhase == nil {
		l.byPhase = map[string][]outcome{}
	}
	l.byPhase[phase] = append(l.byPhase[phase], o)
	return o
}

func (l *ledger) check(ctx context.Context, t *testing.T, s kv.Store) {
	t.Helper()
	counts := map[outcome]int{}
	for i, o := range l.writes {
		counts[o]++
		a, b := writeKeys(i)
		_, fa, err := s.Get(ctx, []byte(a), 0)
		if err != nil {
			t.Fatal(err)
		}
		_, fb, err := s.Get(ctx, []byte(b), 0)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case fa != fb:
			t.Errorf("write %d (outcome %d) was applied partly: a=%v b=%v", i, o, fa, fb)
		case o == acked && !fa:
			t.Errorf("acknowledged write %d is lost", i)
		case o == notApplied && fa:
			t.Errorf("write %d failed with kv.ErrUnavailable but was applied", i)
		}
	}
	t.Logf("writes: %d acknowledged, %d refused (unavailable), %d indeterminate", counts[acked], counts[notApplied], counts[indeterminate])
}

// noHang runs f and fails the test if it has not returned after limit: a
// hang detector with a wide margin, not a performance assertion.
func noHang(t *testing.T, limit time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { // owned here: we wait for it below, whatever happens
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Errorf("%s still blocked after %v", what, limit)
		<-done
	}
}

// The store on a real 3-member cluster (members are processes; kill is
// SIGKILL): one member down changes nothing but a few in-flight requests;
// two down, every write fails with a typed error within the request
// timeout, nothing is applied partly, and writes work again once a member
// returns. Every acknowledged write is read back at the end.
func TestFailureStoreThreeMembers(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Processes: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const reqTimeout = 2 * time.Second
	s, err := c.Open(ctx, etcdkv.Options{RequestTimeout: reqTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var l ledger

	for range 20 {
		if o := l.write(ctx, t, s, "healthy"); o != acked {
			t.Fatalf("write on a healthy cluster: outcome %d", o)
		}
	}

	// One member down (the leader, the interesting one).
	first, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(first); err != nil {
		t.Fatal(err)
	}
	reg := registry.New(s, rt.NewReal(), registry.Options{Root: "one-down"})
	placed := false
	for ackedInRow := 0; ackedInRow < 20; {
		if ctx.Err() != nil {
			t.Fatal("writes never recovered after one member was killed")
		}
		if l.write(ctx, t, s, "one down") == acked {
			ackedInRow++
		} else {
			ackedInRow = 0
		}
		if !placed {
			// The registry works too: register a server, place an actor.
			inc, err := reg.Register(ctx, "srv", "addr", 5*time.Second)
			if err == nil {
				_, err = reg.EnsureActivation(ctx, "ns", "a1", "counter")
				placed = err == nil
				_ = reg.Deregister(ctx, inc)
			}
		}
	}
	if !placed {
		t.Fatal("the registry never placed an actor with one member down")
	}

	// Two members down: no quorum.
	second := (first + 1) % 3
	if err := c.Kill(second); err != nil {
		t.Fatal(err)
	}
	sawUnavailable := 0
	for sawUnavailable < 5 {
		if ctx.Err() != nil {
			t.Fatal("writes without quorum never failed with kv.ErrUnavailable")
		}
		var o outcome
		// No deadline from the caller: the store's own request timeout
		// must end every request.
		noHang(t, reqTimeout+10*time.Second, "a write without quorum", func() {
			o = l.write(context.Background(), t, s, "no quorum")
		})
		switch o {
		case acked:
			t.Fatal("a write was acknowledged without a quorum")
		case notApplied:
			sawUnavailable++
		}
	}
	noHang(t, reqTimeout+10*time.Second, "a read without quorum", func() {
		_, _, err = s.Get(context.Background(), []byte("w/00000/a"), 0)
	})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("read without quorum: %v, want kv.ErrUnavailable", err)
	}
	_, err = s.Grant(context.Background(), 5*time.Second)
	if !errors.Is(err, kv.ErrUnavailable) && !errors.Is(err, kv.ErrIndeterminate) {
		t.Fatalf("grant without quorum: %v, want kv.ErrUnavailable or kv.ErrIndeterminate", err)
	}

	// One member back: quorum again.
	if err := c.Restart(ctx, first); err != nil {
		t.Fatal(err)
	}
	for l.write(ctx, t, s, "quorum back") != acked {
		if ctx.Err() != nil {
			t.Fatal("writes never recovered after a member came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 10 {
		l.write(ctx, t, s, "quorum back")
	}
	if err := c.Restart(ctx, second); err != nil {
		t.Fatal(err)
	}
	l.check(ctx, t, s)
}

// engineOutcome classifies an invocation's error for the ledger: which
// codes guarantee that nothing was committed.
func engineOutcome(t *testing.T, err error) outcome {
	t.Helper()
	switch code := nola.CodeOf(err); code {
	case "":
		return acked
	case nola.CodeUnavailable, nola.CodeFenced, nola.CodeNotOwner:
		return notApplied
	case nola.CodeTimeout:
		return indeterminate
	default:
		t.Fatalf("invocation failed with code %q: %v", code, err)
		return indeterminate
	}
}

// actorLedger counts, per actor, the increments acknowledged and those
// whose outcome is unknown.
type actorLedger struct {
	acked, maybe map[string]int
}

func (l *actorLedger) inc(ctx context.Context, t *testing.T, c *nola.Cluster, id string) (outcome, error) {
	t.Helper()
	_, err := c.Client().Invoke(ctx, "fail", id, "kvcounter", "inc", nil)
	o := engineOutcome(t, err)
	switch o {
	case acked:
		l.acked[id]++
	case indeterminate:
		l.maybe[id]++
	}
	return o, err
}

// The engine over a real 3-member cluster: nola servers keep serving
// KV-writing invocations with one member killed; with two killed, every
// invocation fails with CodeUnavailable (the store refused: nothing
// committed) or CodeTimeout (a commit in flight when quorum went: outcome
// unknown) and none hangs; once a member returns, invocations succeed again.
// Every actor's counter ends between its acknowledged increments and those
// plus the unknown ones: no acknowledged write lost, none invented.
func TestFailureEngineThreeMembers(t *testing.T) {
	ec := etcdtest.Start(t, etcdtest.Options{Processes: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const reqTimeout = 2 * time.Second
	store, err := ec.Open(ctx, etcdkv.Options{RequestTimeout: reqTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := rt.NewReal()
	c, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers:       2,
		Store:         store,
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
		Types:         actors.Types(),
		Configure: func(_ int, cfg *nola.ServerConfig) {
			cfg.LeaseTTL = 3 * time.Second
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Halt()
		r.Wait()
	}()
	ids := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	l := &actorLedger{acked: map[string]int{}, maybe: map[string]int{}}
	for _, id := range ids {
		if o, err := l.inc(ctx, t, c, id); o != acked {
			t.Fatalf("healthy cluster: %v", err)
		}
	}

	// One member down: every actor (and a cold one) is served again.
	leader, err := ec.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.Kill(leader); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(ids, "cold-after-kill") {
		for {
			if o, _ := l.inc(ctx, t, c, id); o == acked {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("actor %s never served again with one member down", id)
			}
		}
	}

	// Two down: typed failures, bounded, nothing acknowledged.
	if err := ec.Kill((leader + 1) % 3); err != nil {
		t.Fatal(err)
	}
	unavailable := 0
	for i := 0; unavailable < 6; i++ {
		if ctx.Err() != nil {
			t.Fatal("invocations without quorum never failed with CodeUnavailable")
		}
		var (
			o   outcome
			err error
		)
		start := time.Now()
		noHang(t, 60*time.Second, "an invocation without quorum", func() {
			o, err = l.inc(context.Background(), t, c, ids[i%len(ids)])
		})
		t.Logf("without quorum: failed after %v with %v", time.Since(start).Round(time.Millisecond), err)
		switch {
		case o == acked:
			t.Fatal("an invocation committed without a quorum")
		case nola.CodeOf(err) == nola.CodeUnavailable:
			unavailable++
		case nola.CodeOf(err) != nola.CodeTimeout:
			t.Fatalf("invocation without quorum: code %q (%v), want unavailable or timeout", nola.CodeOf(err), err)
		}
	}

	// A member back: every actor is served again.
	if err := ec.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		for {
			if o, _ := l.inc(ctx, t, c, id); o == acked {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("actor %s never served again after quorum returned", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, id := range ids {
		b, err := c.Client().Invoke(ctx, "fail", id, "kvcounter", "get", nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(b))
		if n < l.acked[id] || n > l.acked[id]+l.maybe[id] {
			t.Errorf("actor %s counts %d; %d increments were acknowledged and %d are unknown", id, n, l.acked[id], l.maybe[id])
		}
	}
	t.Logf("acknowledged %v, unknown %v", l.acked, l.maybe)
}
