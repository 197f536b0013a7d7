package nola_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
)

// effectActor exercises Context.ExternalEffect; reg reads the store behind
// the actor's back, as an outside system would see it.
type effectActor struct {
	env *simtest.Env
	// For "wait": started resolves when the invocation is running; it then
	// waits for release, deaf to its context (an outside call that does
	// not give up), and reports ExternalEffect's answer in gate.
	started, release *rt.Future[struct{}]
	gate             *rt.Future[error]
	kept             *nola.Context
}

func (a *effectActor) Invoke(cx *nola.Context, op string, _ []byte) ([]byte, error) {
	switch op {
	case "commit":
		if err := cx.Put([]byte("k"), []byte("v")); err != nil {
			return nil, err
		}
		if err := cx.ExternalEffect(); err != nil {
			return nil, err
		}
		// What the outside world sees once the gate opened.
		r := cx.Ref()
		v, found, err := a.env.C.Server(0).Inspector().GetKV(context.Background(), r.Namespace, r.ID, []byte("k"))
		if err != nil {
			return nil, err
		}
		if !found {
			return []byte("absent"), nil
		}
		return v, nil
	case "late":
		restore := cx.Limit(0)
		defer restore()
		return []byte(nola.CodeOf(cx.ExternalEffect())), nil
	case "keep":
		a.kept = cx
		return nil, nil
	case "wait":
		a.started.Resolve(struct{}{}, nil)
		_, _ = a.release.Wait(context.Background())
		err := cx.ExternalEffect()
		a.gate.Resolve(err, nil)
		return nil, err
	}
	return nil, errors.New("unknown op " + op)
}

func runEffectSim(t *testing.T, seed uint64, body func(e *simtest.Env, a *effectActor)) {
	t.Helper()
	a := &effectActor{}
	types := map[string]nola.Factory{"fx": func(nola.Ref) (nola.Actor, error) { return a, nil }}
	runSim(t, seed, 1, types, nil, func(e *simtest.Env) {
		a.env = e
		a.started, a.release = rt.NewFuture[struct{}](e.Driver), rt.NewFuture[struct{}](e.Driver)
		a.gate = rt.NewFuture[error](e.Driver)
		body(e, a)
	})
}

// ExternalEffect commits the invocation's pending writes before it
// returns: an outside system the effect reaches sees them.
func TestExternalEffectCommitsPendingWrites(t *testing.T) {
	runEffectSim(t, 1, func(e *simtest.Env, a *effectActor) {
		if got := e.MustInvoke("c", "fx", "commit", nil); got != "v" {
			t.Fatalf("the store after ExternalEffect holds %q, want the pending write v", got)
		}
	})
}

// Past the invocation's deadline ExternalEffect refuses with a timeout;
// after the invocation returned, with bad_request.
func TestExternalEffectRefusedPastDeadlineOrAfterReturn(t *testing.T) {
	runEffectSim(t, 2, func(e *simtest.Env, a *effectActor) {
		if got := e.MustInvoke("l", "fx", "late", nil); got != string(nola.CodeTimeout) {
			t.Fatalf("ExternalEffect past the deadline: code %q, want %s", got, nola.CodeTimeout)
		}
		e.MustInvoke("k", "fx", "keep", nil)
		wantCode(t, a.kept.ExternalEffect(), nola.CodeBadRequest)
	})
}

// An activation whose server lost its lease during the invocation is
// refused the effect (G1: a fenced activation never acts), even though
// its invocation started in time and its context never ended.
func TestExternalEffectRefusedWhenFenced(t *testing.T) {
	runEffectSim(t, 3, func(e *simtest.Env, a *effectActor) {
		e.MustInvoke("f", "fx", "commit", nil) // placed and running on server 0
		e.Driver.Go("caller", func() {
			ctx, cancel := e.Driver.WithTimeout(e.Ctx, 10*simTTL)
			defer cancel()
			_, _ = e.C.Client().Invoke(ctx, ns, "f", "fx", "wait", nil)
		})
		if _, err := a.started.Wait(e.Ctx); err != nil {
			t.Fatal(err)
		}
		inc := e.C.Server(0).Incarnation()
		e.Links[0].SetMode(faultinject.Down)
		e.Sleep(2 * simTTL)
		if l := e.C.Server(0).Lease(); l.Incarnation == inc && l.Valid {
			t.Fatalf("server 0 still holds its lease with the store unreachable for %v", 2*simTTL)
		}
		a.release.Resolve(struct{}{}, nil)
		err, _ := a.gate.Wait(e.Ctx)
		wantCode(t, err, nola.CodeFenced)
		e.Links[0].SetMode(faultinject.Pass)
	})
}

// A caller that gave up ends the invocation's context: ExternalEffect then
// refuses with a timeout, its deadline still far away.
func TestExternalEffectRefusedWhenCallerGaveUp(t *testing.T) {
	runEffectSim(t, 4, func(e *simtest.Env, a *effectActor) {
		ctx, cancel := e.Driver.WithCancel(e.Ctx)
		e.Driver.Go("caller", func() {
			_, _ = e.C.Client().Invoke(ctx, ns, "g", "fx", "wait", nil)
		})
		if _, err := a.started.Wait(e.Ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		a.release.Resolve(struct{}{}, nil)
		err, _ := a.gate.Wait(e.Ctx)
		wantCode(t, err, nola.CodeTimeout)
	})
}
