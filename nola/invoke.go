package nola

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"unicode/utf8"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
)

// errGone is internal: the activation was evicted between lookup and lock;
// the caller looks up again.
var errGone = errors.New("activation gone")

// HandleInvoke serves one invocation; it is the server's Handler.
func (s *Server) HandleInvoke(ctx context.Context, req Request) ([]byte, error) {
	if req.Delete {
		return nil, s.checkedDelete(ctx, &req, true)
	}
	if err := checkRequest(&req, s.cfg.Limits); err != nil {
		return nil, err
	}
	if req.Worker != "" {
		return s.handleWorker(ctx, &req)
	}
	return s.handle(ctx, &req)
}

// handleChecked serves a request from a Client of this process, which
// validated its names' encoding: the other checks run again against this
// server's limits (the UTF-8 scan is ~20 ns of a ~250 ns in-process call).
// LocalNetwork uses it.
func (s *Server) handleChecked(ctx context.Context, req Request) ([]byte, error) {
	if req.Delete {
		return nil, s.checkedDelete(ctx, &req, false)
	}
	if err := checkRequestLimits(&req, s.cfg.Limits, false); err != nil {
		return nil, err
	}
	if req.Worker != "" {
		return s.handleWorker(ctx, &req)
	}
	return s.handle(ctx, &req)
}

func (s *Server) handle(ctx context.Context, req *Request) ([]byte, error) {
	for _, id := range req.Chain {
		if id == req.ActorID {
			return nil, newErr(CodeBadRequest, false, nil,
				"call cycle: %s is waiting on a call that calls it back; it would deadlock", req.ActorID)
		}
	}
	for {
		a, err := s.lookup(ctx, req)
		if err != nil {
			return nil, err
		}
		res, err := s.invokeOn(ctx, a, req, false)
		if err == errGone {
			continue
		}
		return res, err
	}
}

// invokeResident runs req, from this server's own client, on the ready
// activation this server's table holds for its actor, if there is one; done
// is false when there is none (or it went before it ran req, or req failed
// retryably — nothing ran), and the client routes req as usual. The checks
// are those the route-cache path and handleChecked apply: the actor's
// namespace and ID were validated when it was activated (a table key equals
// them), its type is the activation's; the rest is checked against both the
// client's limits (read only, by pointer: they do not change while calls
// run) and the server's. gate runs before the invocation, as before a
// send.
func (s *Server) invokeResident(ctx context.Context, req *Request, clientLimits *Limits, gate func() error) (_ []byte, done bool, _ error) {
	if s.stopped.Load() {
		return nil, false, nil
	}
	key := actorKey{req.Namespace, req.ActorID}
	a := s.table.Load().lookup(key)
	if a == nil || a.state.Load() != stateReady || (req.ActorType != "" && req.ActorType != a.typ) {
		return nil, false, nil
	}
	if sl := &s.cfg.Limits; req.Operation == "" ||
		len(req.Operation) > min(clientLimits.MaxNameBytes, sl.MaxNameBytes) ||
		len(req.Payload) > min(clientLimits.MaxPayloadBytes, sl.MaxPayloadBytes) ||
		len(req.CreationArgs) > min(clientLimits.MaxCreationArgsBytes, sl.MaxCreationArgsBytes) ||
		!utf8.ValidString(req.Operation) {
		// Within both sets of limits the checks below pass: one pass
		// over the operation's bytes, not one per set. Past either, they
		// find the same error as always (the client's limits first).
		for _, l := range [2]*Limits{clientLimits, sl} {
			if err := checkName("operation", req.Operation, *l, false); err != nil {
				return nil, true, err
			}
			if len(req.Payload) > l.MaxPayloadBytes || len(req.CreationArgs) > l.MaxCreationArgsBytes {
				return nil, true, checkRequest(req, *l)
			}
		}
	}
	for _, id := range req.Chain {
		if id == req.ActorID {
			return nil, true, newErr(CodeBadRequest, false, nil,
				"call cycle: %s is waiting on a call that calls it back; it would deadlock", req.ActorID)
		}
	}
	if gate != nil {
		if err := gate(); err != nil {
			return nil, true, err
		}
	}
	if ctx.Err() != nil {
		return nil, false, nil // the client's path reports it
	}
	res, err := s.invokeOn(ctx, a, req, false)
	if err == errGone || (err != nil && IsRetryable(err)) {
		return nil, false, nil
	}
	return res, true, err
}

func (s *Server) notServing() error {
	if s.stopped.Load() {
		return &Error{Code: CodeNotOwner, Message: "server " + s.cfg.ID + " is shutting down", Retryable: true}
	}
	return &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " has no valid lease", Retryable: true}
}

// lookup returns the ready activation for req's actor, activating it first
// if needed. Concurrent first calls share one activation attempt.
func (s *Server) lookup(ctx context.Context, req *Request) (*activation, error) {
	key := actorKey{req.Namespace, req.ActorID}
	for {
		if s.stopped.Load() {
			return nil, s.notServing()
		}
		t := s.table.Load()
		a := t.lookup(key)
		var (
			retry bool
			err   error
		)
		if a != nil {
			retry, err = s.awaitReady(ctx, a, req)
		} else {
			a, retry, err = s.activateFirst(ctx, t, key, req)
		}
		switch {
		case err != nil:
			return nil, err
		case !retry:
			return a, nil
		}
	}
}

// awaitReady waits for an activation lookup found to be ready (another
// call is activating it); retry says to look it up again.
func (s *Server) awaitReady(ctx context.Context, a *activation, req *Request) (retry bool, _ error) {
	// invokeOn checks the lease and deadline of a ready one.
	switch a.state.Load() {
	case stateReady:
		if req.ActorType != "" && req.ActorType != a.typ {
			return false, newErr(CodeBadRequest, false, nil, "actor %s is a %q, not a %q", req.ActorID, a.typ, req.ActorType)
		}
		return false, nil
	case stateActivating:
		if err := a.waitActivated(ctx); err != nil {
			if ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				// The attempt ran on the first caller's context, and
				// that caller gave up; ours still has time.
				return true, nil
			}
			// Our invocation has not started: nothing ran.
			return false, wrapBefore(err, "waiting for activation of %s", req.ActorID)
		}
	}
	return true, nil
}

// invokeOn runs one invocation on a, serialized with all others on a.
func (s *Server) invokeOn(ctx context.Context, a *activation, req *Request, fromTimer bool) ([]byte, error) {
	if err := a.lock.Acquire(ctx, s.rt); err != nil {
		// Before the start check: the invocation did not run.
		return nil, wrapBefore(err, "waiting for actor %s", a.actorID())
	}
	unfenced := fromTimer && s.cfg.Mutations.Has(mutation.TimerIgnoresFence)
	switch st := a.state.Load(); {
	case st == stateReady, unfenced:
	case st == stateEvicted:
		a.lock.Release()
		return nil, errGone
	default:
		a.lock.Release()
		return nil, &Error{Code: CodeFenced, Message: "activation of " + a.actorID() + " was dropped", Retryable: true}
	}
	// Rule 3: run only under the current incarnation, before the deadline.
	start, ok := s.mayServeAt(a.inc)
	if !ok && !unfenced {
		a.lock.Release()
		return nil, &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " is past its lease deadline", Retryable: true}
	}
	s.stats.invocations.Add(1)
	obs := s.cfg.Observer
	if obs != nil {
		obs.ExecStart(a.event(req.Operation, fromTimer))
	}
	// A fresh Context per invocation (its one allocation, 64 bytes): code
	// may keep it as a context.Context beyond the call, as net/http does,
	// so it cannot be reused.
	cx := &Context{ctx: ctx, act: a, chain: req.Chain}
	res, err := a.call(cx, req.Operation, req.Payload)
	if err == nil && len(res) > s.cfg.Limits.MaxResultBytes {
		err = ownErr(CodeTooLarge, "result of %d bytes exceeds the limit of %d", len(res), s.cfg.Limits.MaxResultBytes)
	}
	if err == nil && (cx.wrote || a.creating || cx.brokenErr() != nil) {
		// Otherwise there is nothing to commit (flush would return at
		// once, after reading the activation's cold kvTxn).
		err = a.txn.flush(cx)
	}
	if broken := cx.brokenErr(); broken != nil && (err == nil || !s.cfg.Mutations.Has(mutation.ActorErrorHidesFailedCommit)) {
		// A commit failed. Whatever the actor made of it (ignored it, or
		// reported it as an error of its own, as WASM guests must), its
		// memory and cache may disagree with its KV, and a commit of
		// unknown outcome may still land: the activation must go, and the
		// next one bump the epoch. So the commit's error wins.
		err = broken
	}
	end, live := s.mayServeAt(a.inc)
	s.account(a, start, end)
	if err == nil && !live && !unfenced {
		// The output gate: the invocation ran past the deadline (a pause
		// after the start check). Its reads may postdate another owner's
		// writes, so its answer is withheld and the activation dropped.
		gate := &Error{Code: CodeFenced, Retryable: true,
			Message: "server " + s.cfg.ID + " passed its lease deadline during the invocation; it had no effect"}
		if cx.effects {
			// Its commits or calls stand: retrying would repeat them.
			gate = &Error{Code: CodeTimeout,
				Message: "server " + s.cfg.ID + " passed its lease deadline during the invocation; its effects stand but its answer is withheld"}
		}
		err = &commitError{err: gate}
	}
	cx.end()
	if obs != nil {
		obs.ExecEnd(a.event(req.Operation, fromTimer), err == nil)
	}
	if err != nil {
		a.txn.reset()
		err = s.invocationFailed(a, err)
		a.lock.Release()
		return nil, err
	}
	if !fromTimer {
		a.lastUsed.Store(int64(end))
	}
	a.lock.Release()
	return res, nil
}

func (a *activation) call(cx *Context, op string, payload []byte) (res []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{val: r, stack: debug.Stack()}
		}
	}()
	return a.actor.Invoke(cx, op, payload)
}

// end closes the invocation: later KV, call and timer use of cx fails (its
// context methods stay valid, for code that kept it as a context.Context).
func (cx *Context) end() { cx.over = true }

// invocationFailed classifies a failed invocation. A panic or a failed
// commit drops the activation (its memory can no longer be trusted); an
// error the actor returned keeps it.
func (s *Server) invocationFailed(a *activation, err error) error {
	var (
		pe *panicError
		ce *commitError
		ne *Error
	)
	switch {
	case errors.As(err, &ce):
		s.stats.failedCommits.Add(1)
		s.drop(a, stateFenced)
		if errors.Is(ce.err, registry.ErrFenced) {
			s.checkLease()
		}
		return ce.err
	case errors.As(err, &pe):
		s.log.Error("actor panicked", "ns", a.ns(), "actor", a.actorID(), "panic", fmt.Sprint(pe.val), "stack", string(pe.stack))
		s.drop(a, stateFenced)
		return actorError(a.actorID(), err)
	case errors.As(err, &ne) && ne.own:
		// A limit or misuse of this invocation's own Context (result, KV
		// entry): its writes are discarded; the actor keeps its memory.
		// Errors of nested calls are not own: they become actor errors.
		return &Error{Code: ne.Code, Message: a.actorID() + ": " + ne.Message}
	default:
		return actorError(a.actorID(), err)
	}
}

type panicError struct {
	val   any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.val) }
