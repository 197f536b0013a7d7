package nola_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
)

// creator is a Creator that counts, in its KV, how often its creation hook
// committed, and keeps the arguments it was given. arm, if set, is called
// at the end of Create, right before the hook's commit (the test's fault
// point).
type creator struct {
	arm func()
}

func (c creator) Create(ctx *nola.Context, args []byte) error {
	n, err := kvInt(ctx, "creates")
	if err != nil {
		return err
	}
	if err := ctx.Put([]byte("creates"), strconv.AppendInt(nil, n+1, 10)); err != nil {
		return err
	}
	if err := ctx.Put([]byte("given"), args); err != nil {
		return err
	}
	if c.arm != nil {
		c.arm()
	}
	return nil
}

func (c creator) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	switch op {
	case "creates":
		n, err := kvInt(ctx, "creates")
		return strconv.AppendInt(nil, n, 10), err
	case "given":
		v, _, err := ctx.Get([]byte("given"))
		return v, err
	case "args":
		return ctx.CreationArgs()
	}
	return nil, fmt.Errorf("unknown op %q", op)
}

func kvInt(ctx *nola.Context, key string) (int64, error) {
	v, ok, err := ctx.Get([]byte(key))
	if err != nil || !ok {
		return 0, err
	}
	return strconv.ParseInt(string(v), 10, 64)
}

// faultOnce wraps a server's store: once armed, the next commit is
// refused before it reaches the store (lost=false: as if the server
// crashed before the commit) or applied with its answer lost (lost=true:
// as if it crashed right after the commit landed).
type faultOnce struct {
	kv.Store
	armed atomic.Bool
	lost  bool
	// skip is how many commits an armed fault lets pass first.
	skip  atomic.Int32
	fired atomic.Int32
}

func (f *faultOnce) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if !f.armed.Load() || f.skip.Add(-1) >= 0 {
		return f.Store.Commit(ctx, t)
	}
	f.armed.Store(false)
	f.fired.Add(1)
	if !f.lost {
		return kv.CommitResult{}, fmt.Errorf("fault: %w", kv.ErrUnavailable)
	}
	if _, err := f.Store.Commit(ctx, t); err != nil {
		return kv.CommitResult{}, err
	}
	return kv.CommitResult{}, fmt.Errorf("fault: answer lost: %w", kv.ErrIndeterminate)
}

// creationSim runs body on a three-server cluster with the creator type;
// faults[i] is server i's store wrapper, armed by the creator's hook when
// armed is set.
func creationSim(t *testing.T, seed uint64, m mutation.Set, lost bool, skip int32, body func(e *simtest.Env, faults []*faultOnce, armed *atomic.Bool)) {
	t.Helper()
	var armed atomic.Bool
	faults := make([]*faultOnce, 3)
	types := actors.Types()
	types["creator"] = func(ref nola.Ref) (nola.Actor, error) {
		return creator{arm: func() {
			if armed.CompareAndSwap(true, false) {
				for _, f := range faults {
					f.armed.Store(true) // only the owner commits
				}
			}
		}}, nil
	}
	configure := func(i int, cfg *nola.ServerConfig) {
		faults[i] = &faultOnce{Store: cfg.Store, lost: lost}
		faults[i].skip.Store(skip)
		cfg.Store = faults[i]
		cfg.Mutations = m
	}
	runSim(t, seed, 3, types, configure, func(e *simtest.Env) { body(e, faults, &armed) })
}

// ownerIndex is the index of the server that owns actor id.
func ownerIndex(t *testing.T, e *simtest.Env, id string) int {
	t.Helper()
	rec, ok, err := e.C.Client().Inspector().Actor(context.Background(), ns, id)
	if err != nil || !ok || rec.Owner == "" {
		t.Fatalf("actor %s: record %+v found=%v err=%v", id, rec, ok, err)
	}
	i, err := strconv.Atoi(rec.Owner[1:])
	if err != nil {
		t.Fatalf("owner %q: %v", rec.Owner, err)
	}
	return i
}

// createThenCrashes creates an actor with arguments, crashes its owner
// before the first activation, activates it, crashes the new owner after
// that, activates it again, and returns how many times the creation hook
// committed and what the actor saw.
func createThenCrashes(t *testing.T, m mutation.Set) (creates, given, args string) {
	creationSim(t, 301, m, false, 0, func(e *simtest.Env, _ []*faultOnce, _ *atomic.Bool) {
		created, err := e.C.Client().Create(e.Ctx, ns, "c", "creator", []byte("hello"))
		if err != nil || !created {
			t.Fatalf("Create = %v, %v; want created", created, err)
		}
		// The creation is in the store only: crash the owner before the
		// first activation.
		e.Crash(ownerIndex(t, e, "c"))
		if _, _, err := e.InvokeUntil(4*e.TTL, "c", "creator", "creates"); err != nil {
			t.Fatal(err)
		}
		// Reactivate on another server: the hook must not run again.
		e.Crash(ownerIndex(t, e, "c"))
		var err2 error
		if creates, _, err2 = e.InvokeUntil(4*e.TTL, "c", "creator", "creates"); err2 != nil {
			t.Fatal(err2)
		}
		given = e.MustInvoke("c", "creator", "given", nil)
		args = e.MustInvoke("c", "creator", "args", nil)
	})
	return creates, given, args
}

// Creation arguments survive a crash between creation and the first
// activation, reach the creation hook once, and stay readable after a
// reactivation elsewhere.
func TestCreationArgsDeliveredOnceAcrossCrashes(t *testing.T) {
	creates, given, args := createThenCrashes(t, mutation.Set{})
	if creates != "1" || given != "hello" || args != "hello" {
		t.Errorf("creation hook committed %s times with %q, CreationArgs = %q; want once, hello, hello", creates, given, args)
	}
}

// Non-vacuity: with the hook's record ignored, the same scenario runs it
// again at the reactivation, and the test above would fail.
func TestCreationGuardBrokenIsCaught(t *testing.T) {
	creates, _, _ := createThenCrashes(t, mutation.Of(mutation.CreateEveryActivation))
	if creates == "1" {
		t.Errorf("with CreateEveryActivation the hook committed once: the scenario cannot catch a broken guard")
	}
}

// hookFault runs the creation hook with its commit failing once, either
// before it reaches the store or after it landed (its answer lost), then
// activates the actor again and returns the creation count.
func hookFault(t *testing.T, seed uint64, m mutation.Set, lost bool, skip int32) (first error, creates string) {
	creationSim(t, seed, m, lost, skip, func(e *simtest.Env, faults []*faultOnce, armed *atomic.Bool) {
		armed.Store(true)
		_, first = e.Invoke("h", "creator", "creates", nil)
		fired := faults[0].fired.Load() + faults[1].fired.Load() + faults[2].fired.Load()
		if fired != 1 {
			t.Fatalf("test setup: the fault fired %d times", fired)
		}
		var err error
		if creates, _, err = e.InvokeUntil(4*e.TTL, "h", "creator", "creates"); err != nil {
			t.Fatal(err)
		}
	})
	return first, creates
}

// A creation hook whose commit never reached the store runs again at the
// next activation (it had no effect); one whose commit landed though its
// answer was lost does not (its effects stand, with the record that it
// ran: one commit).
func TestCreationHookCommitFaults(t *testing.T) {
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("lost=%v", lost), func(t *testing.T) {
			first, creates := hookFault(t, 302, mutation.Set{}, lost, 0)
			if first == nil {
				t.Fatal("the first invocation succeeded although its activation's creation commit failed")
			}
			if creates != "1" {
				t.Errorf("creation hook committed %s times, want 1", creates)
			}
		})
	}
}

// Non-vacuity: with the hook's writes and its record in two commits, a
// failure of the second (the "crash" between them) runs the hook again
// over its own committed effects.
func TestCreationMarkerInSeparateCommitIsCaught(t *testing.T) {
	// The fault lets the first commit (the hook's writes) pass and
	// refuses the second (the marker).
	_, creates := hookFault(t, 302, mutation.Of(mutation.CreateCommitsMarkerSeparately), false, 1)
	if creates == "1" {
		t.Errorf("with the marker committed separately the hook committed once: the fault scenario cannot catch it")
	}
}

// The first creation wins: a later Create or creating call with other
// arguments changes nothing and says so.
func TestSecondCreateDoesNotOverwriteArgs(t *testing.T) {
	creationSim(t, 303, mutation.Set{}, false, 0, func(e *simtest.Env, _ []*faultOnce, _ *atomic.Bool) {
		cl := e.C.Client()
		ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*e.TTL)
		defer cancel()
		if _, err := cl.Do(ctx, nola.Request{Namespace: ns, ActorID: "d", ActorType: "creator", Operation: "creates", CreationArgs: []byte("first")}); err != nil {
			t.Fatal(err)
		}
		created, err := cl.Create(ctx, ns, "d", "creator", []byte("second"))
		if err != nil || created {
			t.Fatalf("second Create = %v, %v; want not created", created, err)
		}
		cl.Forget(ns, "d") // no cached route: placement runs again
		if _, err := cl.Do(ctx, nola.Request{Namespace: ns, ActorID: "d", ActorType: "creator", Operation: "creates", CreationArgs: []byte("third")}); err != nil {
			t.Fatal(err)
		}
		if got := e.MustInvoke("d", "creator", "args", nil); got != "first" {
			t.Errorf("CreationArgs = %q, want first", got)
		}
		if got := e.MustInvoke("d", "creator", "creates", nil); got != "1" {
			t.Errorf("creation hook committed %s times, want 1", got)
		}
		if _, err := cl.Create(ctx, ns, "d", "counter", nil); !errors.Is(err, nola.ErrBadRequest) {
			t.Errorf("Create with another type: %v, want bad_request", err)
		}
	})
}

// Creation arguments are bounded before anything is stored; an actor
// created without any reads nil, and its hook gets nil.
func TestCreationArgsBounds(t *testing.T) {
	creationSim(t, 304, mutation.Set{}, false, 0, func(e *simtest.Env, _ []*faultOnce, _ *atomic.Bool) {
		cl := e.C.Client()
		big := bytes.Repeat([]byte("x"), 64<<10+1)
		_, err := cl.Create(e.Ctx, ns, "big", "creator", big)
		wantCode(t, err, nola.CodeTooLarge)
		_, err = cl.Do(e.Ctx, nola.Request{Namespace: ns, ActorID: "big", ActorType: "creator", Operation: "creates", CreationArgs: big})
		wantCode(t, err, nola.CodeTooLarge)
		if _, found, err := cl.Inspector().Actor(e.Ctx, ns, "big"); err != nil || found {
			t.Errorf("refused creation left an actor record (found=%v, err=%v)", found, err)
		}
		if got := e.MustInvoke("plain", "creator", "args", nil); got != "" {
			t.Errorf("CreationArgs of an actor created without = %q", got)
		}
		if got := e.MustInvoke("plain", "creator", "creates", nil); got != "1" {
			t.Errorf("creation hook of an actor created without arguments committed %s times, want 1", got)
		}
		exact := bytes.Repeat([]byte("y"), 64<<10)
		if _, err := cl.Create(e.Ctx, ns, "exact", "creator", exact); err != nil {
			t.Fatalf("Create at the limit: %v", err)
		}
		if got := e.MustInvoke("exact", "creator", "args", nil); got != string(exact) {
			t.Errorf("CreationArgs at the limit: %d bytes back", len(got))
		}
	})
}

type opening struct {
	Owner string `json:"owner"`
	Cents int64  `json:"cents"`
}

var openingArgs = nola.Args[opening]{}

// account is a typed Creator: its creation arguments are an opening.
type account struct{}

func (account) Create(cx *nola.Context, args []byte) error {
	o, err := openingArgs.Decode(args)
	if err != nil {
		return err
	}
	return nola.Key[int64]{Name: "cents"}.Put(cx, o.Cents)
}

func (account) Invoke(cx *nola.Context, op string, _ []byte) ([]byte, error) {
	o, err := openingArgs.Get(cx)
	if err != nil {
		return nil, err
	}
	n, _, err := nola.Key[int64]{Name: "cents"}.Get(cx)
	return fmt.Appendf(nil, "%s:%d", o.Owner, n), err
}

// Typed creation arguments (nola.Args) round-trip through Create, the
// hook and Get; arguments that do not decode fail the hook, and with it
// the activation, every time (the actor is unusable: nothing committed).
func TestTypedCreationArgs(t *testing.T) {
	types := actors.Types()
	types["account"] = func(nola.Ref) (nola.Actor, error) { return account{}, nil }
	runSim(t, 305, 1, types, nil, func(e *simtest.Env) {
		ref := nola.Ref{Namespace: ns, ID: "acct", Type: "account"}
		if created, err := openingArgs.Create(e.Ctx, e.C.Client(), ref, opening{Owner: "ada", Cents: 250}); err != nil || !created {
			t.Fatalf("create = %v, %v", created, err)
		}
		if got := e.MustInvoke("acct", "account", "show", nil); got != "ada:250" {
			t.Errorf("show = %q, want ada:250", got)
		}
		if _, err := e.C.Client().Create(e.Ctx, ns, "bad", "account", []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := e.Invoke("bad", "account", "show", nil)
			wantCode(t, err, nola.CodeActorError)
		}
		if c, err := e.C.Client().Inspector().Creation(e.Ctx, ns, "bad"); err != nil || !c.Pending {
			t.Errorf("a hook that failed left the actor created: %+v, %v", c, err)
		}
	})
}

// With a KV quota, the creation hook's commit is a counted one: the usage
// record moves in the same commit as the hook's writes and the marker.
func TestCreationHookUnderKVQuota(t *testing.T) {
	configure := func(_ int, cfg *nola.ServerConfig) { cfg.Limits.MaxActorKVBytes = 1 << 20 }
	runSim(t, 306, 1, nil, configure, func(e *simtest.Env) {
		if _, err := e.C.Client().Create(e.Ctx, ns, "q", "greeter", []byte("ada")); err != nil {
			t.Fatal(err)
		}
		if got := e.MustInvoke("q", "greeter", "hello", nil); got != "hello, ada" {
			t.Fatalf("hello = %q", got)
		}
		in := e.C.Client().Inspector()
		if use, err := in.KVUsage(e.Ctx, ns, "q"); err != nil || use.Bytes != int64(len("name")+len("ada")) {
			t.Errorf("KV usage after the hook = %+v, %v; want 7", use, err)
		}
		// Stored, not computed: the hook's commit was a counted one.
		if _, found, err := e.Store.Get(e.Ctx, registry.NewKeyspace("nola").KVUsage(ns, "q"), 0); err != nil || !found {
			t.Errorf("no KV usage record after the hook's commit (found=%v, err=%v)", found, err)
		}
		if c, err := in.Creation(e.Ctx, ns, "q"); err != nil || c.Pending {
			t.Errorf("creation after the hook = %+v, %v", c, err)
		}
	})
}
