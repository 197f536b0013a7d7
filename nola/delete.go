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
// under its lock, swapped for a placeholder, or a placeholder in the empty
// slot — so that no invocation of the old life runs from the delete's
// commit on: calls that arrive meanwhile wait on the placeholder.
func (s *Server) handleDelete(ctx context.Context, req *Request) error {
	key := actorKey{req.Namespace, req.ActorID}
	for {
		l := s.lease.Load()
		if s.stopped.Load() || l == nil || !s.mayServe(l.inc) {
			return s.notServing()
		}
		t := s.table.Load()
		sh, h := t.shard(key)
		sh.mu.Lock()
		a := sh.get(h, key)
		if a == nil {
			ph := s.newPlaceholder(t, key, "", l.inc)
			sh.put(h, ph)
			sh.mu.Unlock()
			if s.table.Load() != t || s.stopped.Load() {
				// As in activateFirst: a fence swapped the table under us.
				s.removePlaceholder(ph, stateFenced, &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " was fenced"})
				continue
			}
			return s.deleteHeld(ctx, ph, 0)
		}
		sh.mu.Unlock()
		if a.state.Load() == stateActivating {
			// Another call is activating it (or another delete or release
			// holds its slot): wait, then look again.
			if err := a.waitActivated(ctx); err != nil && ctx.Err() != nil {
				return wrapBefore(ctx.Err(), "delete %s: waiting for its activation", key.id)
			}
			continue
		}
		if err := a.lock.Acquire(ctx, s.rt); err != nil {
			return wrapBefore(err, "delete %s: waiting for the actor", key.id)
		}
		if a.state.Load() != stateReady {
			a.lock.Release() // dropped meanwhile: look again
			continue
		}
		// Out of the slot first, as a release does; its Deactivate hook
		// does not run: the life is ending, not moving. Its timers stop,
		// and no execution of it can run again.
		doubt := a.epoch
		ph, ok := s.swapPlaceholder(a, false)
		a.lock.Release()
		if !ok {
			continue // dropped meanwhile
		}
		return s.deleteHeld(ctx, ph, doubt)
	}
}

// deleteHeld commits the delete of placeholder ph's actor, fenced on ph's
// incarnation, and removes ph, resolving the calls that waited on it with
// a retryable error. doubt is the epoch the actor's activation had (0:
// none), should the outcome be unknown.
func (s *Server) deleteHeld(ctx context.Context, ph *activation, doubt int64) error {
	k := ph.key()
	if !s.mayServe(ph.inc) {
		s.removePlaceholder(ph, stateFenced, nil)
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " is past its lease deadline"}
	}
	// Like a KV commit: not cancelled by the caller, so that giving up
	// does not turn into an unknown outcome needlessly.
	cctx, cancel := s.rt.WithTimeout(context.WithoutCancel(ctx), s.cfg.CommitTimeout)
	start := s.rt.Mono()
	_, err := s.reg.Delete(cctx, ph.inc, k.ns, k.id)
	cancel()
	drop := errDeleted(k.id)
	switch {
	case err == nil:
		s.removePlaceholder(ph, stateEvicted, drop)
		s.stats.deleted.Add(1)
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("delete %s/%s on %s#%d in %v", k.ns, k.id, s.cfg.ID, ph.inc.Num, time.Duration(s.rt.Mono()-start)))
		}
		return nil
	case errors.Is(err, registry.ErrActorNotFound):
		s.removePlaceholder(ph, stateEvicted, drop)
		return notFound(k.ns, k.id)
	case errors.Is(err, registry.ErrNotOwner):
		s.removePlaceholder(ph, stateFenced, drop)
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s#%d does not own %s/%s", s.cfg.ID, ph.inc.Num, k.ns, k.id)}
	case errors.Is(err, registry.ErrFenced):
		s.removePlaceholder(ph, stateFenced, drop)
		s.checkLease()
		return &Error{Code: CodeFenced, Retryable: true, Message: "delete of " + k.id + " was fenced: " + err.Error(), cause: err}
	}
	werr := wrapErr(err, true, "delete %s", k.id)
	if !IsRetryable(werr) {
		// Unknown outcome: the tombstone may still land. The next
		// activation here bumps the epoch first, so a late tombstone
		// fails its compare (or has landed, and the bump fails).
		s.markDoubt(ph.inc, k, doubt)
	}
	s.removePlaceholder(ph, stateFenced, drop)
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
