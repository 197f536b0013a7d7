package nola

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nolaproject/nola/registry"
)

// Deletion (issue 14; docs/deletion.md). Once Delete returns nil, no
// invocation observes the old activation or its KV: the record is a
// tombstone, and the activation is gone — either it never existed, its
// owner's incarnation had fenced itself, or the owner dropped it before
// committing the tombstone, while a placeholder held the actor's slot in
// its table so that no call could activate the old life meanwhile.

// Delete deletes actor (ns, id). Afterwards an untyped call answers that
// the actor does not exist, and a typed call creates a new actor with an
// empty KV. Deleting a missing actor fails with CodeNotFound
// (errors.Is(err, ErrNotFound)). An actor must not delete itself from one
// of its own invocations: the delete waits for that invocation to end.
func (c *Client) Delete(ctx context.Context, ns, id string) error {
	if err := checkName("namespace", ns, c.limits, false); err != nil {
		return err
	}
	if err := checkName("actor ID", id, c.limits, false); err != nil {
		return err
	}
	key := actorKey{ns, id}
	var lastErr error
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 1 {
			if err := c.backoff(ctx, attempt); err != nil {
				return deleteNotSent(ns, id, lastErr, err)
			}
		}
		c.routes.drop(key, route{})
		_, err := c.reg.Delete(ctx, nil, ns, id)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, registry.ErrActorNotFound):
			return notFound(ns, id)
		case errors.Is(err, registry.ErrOwned):
			err = c.deleteAtOwner(ctx, ns, id)
			if err == nil || !IsRetryable(err) {
				return err
			}
		default:
			if err = wrapErr(err, true, ""); !IsRetryable(err) {
				return err
			}
		}
		lastErr = err
		if ctx.Err() != nil {
			return deleteNotSent(ns, id, lastErr, ctx.Err())
		}
	}
	return lastErr
}

// deleteAtOwner asks the actor's live owner to delete it.
func (c *Client) deleteAtOwner(ctx context.Context, ns, id string) error {
	// Untyped: finds the live owner; places nothing unless the owner died
	// meanwhile (then the new owner deletes it just as well).
	p, err := c.reg.EnsureActivation(ctx, ns, id, "")
	if errors.Is(err, registry.ErrActorNotFound) {
		return notFound(ns, id)
	}
	if err != nil {
		return wrapBefore(err, "")
	}
	r := route{addr: p.Addr, typ: p.Type, owner: target{p.ServerID, p.Incarnation}}
	_, gone, err := c.send(ctx, r, Request{Namespace: ns, ActorID: id, Delete: true})
	if gone && err != nil && !IsRetryable(err) {
		return &Error{Code: CodeTimeout, cause: err, Message: fmt.Sprintf(
			"delete %s/%s: its owner %s#%d lost its lease while the delete was in flight; outcome unknown", ns, id, p.ServerID, p.Incarnation)}
	}
	return err
}

func notFound(ns, id string) error {
	return &Error{Code: CodeNotFound, cause: registry.ErrActorNotFound,
		Message: fmt.Sprintf("actor %s/%s does not exist (never created, or deleted)", ns, id)}
}

func deleteNotSent(ns, id string, last, cause error) error {
	msg := fmt.Sprintf("delete %s/%s: deadline passed before the delete could be applied; it was not", ns, id)
	if last != nil {
		msg += ": " + last.Error()
	}
	return &Error{Code: CodeTimeout, Retryable: true, Message: msg, cause: cause}
}

// errDeleted resolves the activation attempts that waited on a deleted
// actor's slot: retryable, so their callers re-resolve and meet the
// tombstone.
func errDeleted(id string) error {
	return &Error{Code: CodeNotOwner, Retryable: true, Message: "actor " + id + " was deleted"}
}

// handleDelete serves Request.Delete: this server should own the actor. It
// takes the actor's slot in the activation table — the ready activation
// under its lock, or a placeholder that holds concurrent calls back — so
// that no invocation of the old life runs from the delete's commit on.
func (s *Server) handleDelete(ctx context.Context, req *Request) error {
	key := actorKey{req.Namespace, req.ActorID}
	for {
		l := s.lease.Load()
		if s.stopped.Load() || l == nil || !s.mayServe(l.inc) {
			return s.notServing()
		}
		t := s.table.Load()
		sh := t.shard(key)
		sh.mu.Lock()
		a := sh.m[key]
		placeholder := a == nil
		if placeholder {
			a = s.newActivation(t, key, "", l.inc)
			s.activations.Add(1)
			a.charged = activationBytes
			s.memBytes.Add(activationBytes)
			sh.m[key] = a
		}
		sh.mu.Unlock()
		if placeholder && (s.table.Load() != t || s.stopped.Load()) {
			// As in activateFirst: a fence swapped the table under us.
			s.dropWith(a, stateFenced, &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " was fenced"})
			continue
		}
		if !placeholder && a.state.Load() == stateActivating {
			// Another call is activating it: wait, then take it.
			if err := a.waitActivated(ctx); err != nil && ctx.Err() != nil {
				return wrapBefore(ctx.Err(), "delete %s: waiting for its activation", key.id)
			}
			continue
		}
		if err := a.lock.Acquire(ctx, s.rt); err != nil {
			if placeholder {
				s.dropWith(a, stateEvicted, errDeleted(key.id))
			}
			return wrapBefore(err, "delete %s: waiting for the actor", key.id)
		}
		if !placeholder && a.state.Load() != stateReady {
			a.lock.Release() // dropped meanwhile: look again
			continue
		}
		doubt := a.epoch
		if !placeholder {
			// Out of the slot first, as a release does: put a placeholder
			// in the activation's slot (calls keep waiting instead of
			// activating the old life), then drop the activation (its
			// Deactivate hook does not run: the life is ending, not
			// moving). Its timers stop, and no execution of it can run
			// again.
			ph, ok := s.swapPlaceholder(a)
			a.lock.Release()
			if !ok {
				continue // dropped meanwhile
			}
			a = ph
		}
		err := s.deleteHeld(ctx, a, doubt)
		a.lock.Release()
		return err
	}
}

// swapPlaceholder replaces the ready activation a (whose lock the caller
// holds) in its table by a placeholder, whose lock it returns held, and
// drops a.
func (s *Server) swapPlaceholder(a *activation) (*activation, bool) {
	ph := s.newActivation(a.tbl, a.key, "", a.inc)
	if !ph.lock.TryAcquire() {
		s.violated("activation %s/%s: a fresh placeholder's lock is taken", a.key.ns, a.key.id)
		return nil, false
	}
	sh := a.tbl.shard(a.key)
	sh.mu.Lock()
	if sh.m[a.key] != a {
		sh.mu.Unlock()
		return nil, false
	}
	s.activations.Add(1)
	ph.charged = activationBytes
	s.memBytes.Add(activationBytes)
	sh.m[a.key] = ph
	sh.mu.Unlock()
	s.dropWith(a, stateEvicted, nil)
	return ph, true
}

// deleteHeld commits the delete of placeholder a's actor, fenced on a's
// incarnation, and drops a, resolving the calls that waited on it with a
// retryable error. The caller holds a.lock. doubt is the epoch the actor's
// activation had (0: none), should the outcome be unknown.
func (s *Server) deleteHeld(ctx context.Context, a *activation, doubt int64) error {
	k := a.key
	if !s.mayServe(a.inc) {
		s.dropWith(a, stateFenced, nil)
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " is past its lease deadline"}
	}
	// Like a KV commit: not cancelled by the caller, so that giving up
	// does not turn into an unknown outcome needlessly.
	cctx, cancel := s.rt.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
	start := s.rt.Mono()
	_, err := s.reg.Delete(cctx, a.inc, k.ns, k.id)
	cancel()
	drop := errDeleted(k.id)
	switch {
	case err == nil:
		s.dropWith(a, stateEvicted, drop)
		s.stats.deleted.Add(1)
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("delete %s/%s on %s#%d in %v", k.ns, k.id, s.cfg.ID, a.inc.Num, time.Duration(s.rt.Mono()-start)))
		}
		return nil
	case errors.Is(err, registry.ErrActorNotFound):
		s.dropWith(a, stateEvicted, drop)
		return notFound(k.ns, k.id)
	case errors.Is(err, registry.ErrNotOwner):
		s.dropWith(a, stateFenced, drop)
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s#%d does not own %s/%s", s.cfg.ID, a.inc.Num, k.ns, k.id)}
	case errors.Is(err, registry.ErrFenced):
		s.dropWith(a, stateFenced, drop)
		s.checkLease()
		return &Error{Code: CodeFenced, Retryable: true, Message: "delete of " + k.id + " was fenced: " + err.Error(), cause: err}
	}
	werr := wrapErr(err, true, "delete %s", k.id)
	if !IsRetryable(werr) {
		// Unknown outcome: the tombstone may still land. The next
		// activation here bumps the epoch first, so a late tombstone
		// fails its compare (or has landed, and the bump fails).
		s.markDoubt(a.inc, k, doubt)
	}
	s.dropWith(a, stateFenced, drop)
	return werr
}

// reclaimer sweeps the KV of deleted actors: once at start-up (a crash may
// have left a reclaim half done), then every ReclaimInterval.
func (s *Server) reclaimer() {
	for {
		if st, err := s.reg.Reclaim(s.ctx, reclaimCommitsPerSweep); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("reclaim of deleted actors' KV failed", "err", err)
		} else if st.Keys > 0 {
			s.log.Debug("reclaimed deleted actors' KV", "keys", st.Keys, "commits", st.Commits, "pending", st.Pending)
		}
		if err := s.rt.Sleep(s.ctx, s.cfg.ReclaimInterval); err != nil {
			return
		}
	}
}

// reclaimCommitsPerSweep bounds one sweep, so that a huge backlog is worked
// off in slices instead of one long burst of store commits.
const reclaimCommitsPerSweep = 1000

// checkedDelete validates a delete request's names, then serves it.
func (s *Server) checkedDelete(ctx context.Context, req *Request, encoding bool) error {
	if err := checkNameEnc("namespace", req.Namespace, s.cfg.Limits, false, encoding); err != nil {
		return err
	}
	if err := checkNameEnc("actor ID", req.ActorID, s.cfg.Limits, false, encoding); err != nil {
		return err
	}
	return s.handleDelete(ctx, req)
}
