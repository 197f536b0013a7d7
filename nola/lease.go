package nola

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
)

// leaseState is one incarnation, its local deadline and when the keep-alive
// that set it was sent (monotonic nanos).
type leaseState struct {
	inc      *registry.Incarnation
	deadline atomic.Int64
	sent     atomic.Int64

	// doubt holds the actors whose last commit under this incarnation has
	// an unknown outcome, with the epoch it was made at: their next
	// activation must Bump the epoch past it first.
	mu    sync.Mutex
	doubt map[actorKey]int64
}

// LeaseInfo describes the server's current lease.
type LeaseInfo struct {
	// Incarnation is 0 while the server is fenced or stopped.
	Incarnation int64
	// Age is the time since the last successful keep-alive was sent.
	Age time.Duration
	// Valid reports whether the server may serve now (before its deadline).
	Valid bool
}

// Lease returns the server's current lease.
func (s *Server) Lease() LeaseInfo {
	l := s.lease.Load()
	if l == nil {
		return LeaseInfo{}
	}
	now := s.rt.Mono()
	return LeaseInfo{
		Incarnation: l.inc.Num,
		Age:         now - time.Duration(l.sent.Load()),
		Valid:       now < time.Duration(l.deadline.Load()),
	}
}

// register starts a new incarnation, retrying with backoff.
func (s *Server) register(ctx context.Context) error {
	backoff := s.cfg.LeaseTTL / 20
	for {
		if s.stopped.Load() {
			return &Error{Code: CodeUnavailable, Message: "server " + s.cfg.ID + " is stopped"}
		}
		if prev := s.fencedInc.Load(); prev != nil {
			if err := s.reg.Deregister(ctx, prev); err == nil {
				s.fencedInc.CompareAndSwap(prev, nil)
			}
		}
		inc, err := s.reg.Register(ctx, s.cfg.ID, s.cfg.Addr, s.cfg.LeaseTTL)
		if err == nil {
			l := &leaseState{inc: inc}
			l.deadline.Store(int64(registry.LocalDeadline(inc.Sent, s.cfg.LeaseTTL, s.cfg.Rho, s.cfg.Margin)))
			l.sent.Store(int64(inc.Sent))
			s.lease.Store(l)
			if prev := s.lastInc.Swap(inc.Num); inc.Num <= prev {
				s.violated("registered as incarnation %d after incarnation %d", inc.Num, prev)
			}
			s.log.Info("registered", "incarnation", inc.Num)
			if s.rt.Tracing() {
				s.rt.Trace(fmt.Sprintf("register %s#%d", s.cfg.ID, inc.Num))
			}
			s.reportLoad(ctx, l)
			return nil
		}
		if errors.Is(err, registry.ErrServerIDInUse) {
			s.log.Info("waiting for the previous incarnation's lease to expire", "err", err)
		} else {
			s.log.Warn("registration failed", "err", err)
		}
		if serr := s.rt.Sleep(ctx, backoff); serr != nil {
			return wrapErr(errors.Join(serr, err), false, "server %s: register", s.cfg.ID)
		}
	}
}

// heartbeat keeps the lease alive every TTL/3, moves the local deadline
// forward after each success, reports load, and fences the server when the
// lease is gone or the deadline has passed; then it registers again.
func (s *Server) heartbeat() {
	ctx := s.ctx
	period := s.cfg.LeaseTTL / 3
	retry := s.cfg.LeaseTTL / 10
	wait := period
	// cause is what a fence at the local deadline would be blamed on: the
	// outcome of the last keep-alive attempt of the current incarnation.
	cause := FenceDeadline
	for {
		if l := s.lease.Load(); l != nil && !s.cfg.Mutations.Has(mutation.SkipDeadlineCheck) {
			// Wake at the deadline at the latest, so that the server
			// fences itself on time even if the store hangs.
			wait = max(0, min(wait, time.Duration(l.deadline.Load())-s.rt.Mono()))
		}
		if err := s.rt.Sleep(ctx, wait); err != nil {
			return
		}
		l := s.lease.Load()
		if l == nil {
			if s.stopped.Load() {
				return // Shutdown or Halt: never register again
			}
			if err := s.register(ctx); err != nil {
				return
			}
			wait, cause = period, FenceDeadline
			continue
		}
		sent := s.rt.Mono()
		if sent >= time.Duration(l.deadline.Load()) && !s.cfg.Mutations.Has(mutation.SkipDeadlineCheck) {
			s.fence(l, cause, "local deadline passed")
			wait = 0
			continue
		}
		kctx, cancel := s.rt.WithTimeout(ctx, max(period/10, min(period, time.Duration(l.deadline.Load())-sent)))
		err := s.reg.KeepAlive(kctx, l.inc)
		timedOut := kctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() == nil {
			s.keepAliveDone(sent, err)
			cause = attemptCause(err, timedOut)
		}
		switch {
		case err == nil:
			next := int64(registry.LocalDeadline(sent, s.cfg.LeaseTTL, s.cfg.Rho, s.cfg.Margin))
			if next > l.deadline.Load() {
				l.deadline.Store(next)
				l.sent.Store(int64(sent))
			}
			wait = period
			s.reportLoad(ctx, l)
		case errors.Is(err, registry.ErrLeaseLost):
			s.fence(l, FenceLeaseLost, "lease lost")
			wait = 0
			continue
		case ctx.Err() != nil:
			return
		default:
			s.log.Warn("keep-alive failed", "err", err)
			wait = retry
		}
		if s.rt.Mono() >= time.Duration(l.deadline.Load()) && !s.cfg.Mutations.Has(mutation.SkipDeadlineCheck) {
			s.fence(l, cause, "local deadline passed")
			wait = 0
		}
	}
}

func (s *Server) reportLoad(ctx context.Context, l *leaseState) {
	// Bounded: a slow store must not hold up the keep-alives behind it.
	ctx, cancel := s.rt.WithTimeout(ctx, s.cfg.LeaseTTL/12)
	defer cancel()
	busy, rate := s.rates(s.cfg.LeaseTTL / 4)
	err := s.reg.ReportLoad(ctx, l.inc, registry.Load{
		Activations: s.activations.Load(),
		Bytes:       s.memoryBytes(),
		Limit:       int64(s.cfg.MaxActivations),
		HeapBytes:   s.heapBytes(),
		BusyPPM:     busy,
		RateMilli:   rate,
		Budget:      s.cfg.MemoryBudget,
	})
	if errors.Is(err, registry.ErrFenced) {
		// Our server record is not ours any more (another process took
		// the ID, or the lease expired in between).
		s.fence(l, FenceRecordReplaced, "server record replaced")
		return
	}
	if err != nil {
		s.log.Debug("load report failed", "err", err)
	}
}

// checkLease asks the heartbeat to verify the lease soon; a fenced commit
// means the incarnation may be gone.
func (s *Server) checkLease() {
	l := s.lease.Load()
	if l == nil {
		return
	}
	s.tasks.Go("lease check "+s.cfg.ID, func() {
		ctx, cancel := s.rt.WithTimeout(s.ctx, s.cfg.LeaseTTL/3)
		defer cancel()
		s.reportLoad(ctx, l)
	})
}

// fence ends incarnation l: no more serving under it, every activation
// dropped (their in-memory state is lost, as in a crash; their deactivation
// hooks do not run). The heartbeat registers a new incarnation.
func (s *Server) fence(l *leaseState, cause FenceCause, reason string) {
	if !s.lease.CompareAndSwap(l, nil) {
		return
	}
	s.fencedInc.Store(l.inc)
	s.stats.fences.Add(1)
	s.stats.lease.countFence(cause)
	s.log.Warn("fenced: dropping every activation", "incarnation", l.inc.Num, "reason", reason, "cause", string(cause))
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("fence %s#%d %s", s.cfg.ID, l.inc.Num, reason))
	}
	if s.cfg.Mutations.Has(mutation.IgnoreIncarnation) {
		return // the bug: activations outlive their incarnation
	}
	old := s.table.Swap(newTable())
	for _, a := range old.sorted() {
		s.drop(a, stateFenced)
	}
}

// mayServe reports whether the server may act for incarnation inc now: inc
// is the current incarnation and its local deadline has not passed.
func (s *Server) mayServe(inc *registry.Incarnation) bool {
	_, ok := s.mayServeAt(inc)
	return ok
}

// mayServeAt is mayServe that also returns the clock reading it checked
// against (zero if it did not need one).
func (s *Server) mayServeAt(inc *registry.Incarnation) (time.Duration, bool) {
	l := s.lease.Load()
	if l == nil {
		return 0, false
	}
	if l.inc != inc && !s.cfg.Mutations.Has(mutation.IgnoreIncarnation) {
		return 0, false
	}
	now := s.rt.Mono()
	return now, s.cfg.Mutations.Has(mutation.SkipDeadlineCheck) || now < time.Duration(l.deadline.Load())
}

// effectAllowed is checked before every effect that leaves an activation
// (KV commit, outgoing call, timer): none may take effect after the local
// deadline or under an old incarnation.
func (s *Server) effectAllowed(a *activation) error {
	if !s.mayServe(a.inc) {
		return &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " lost its lease; effect refused"}
	}
	return nil
}

// inDoubt reports whether k is in doubt under incarnation inc, and the
// highest epoch a commit of unknown outcome was made at.
func (s *Server) inDoubt(inc *registry.Incarnation, k actorKey) (epoch int64, in bool) {
	l := s.lease.Load()
	if l == nil || l.inc != inc {
		return 0, false // a later incarnation: its records are new anyway
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	epoch, in = l.doubt[k]
	return epoch, in
}

// clearDoubt takes k out of doubt under inc, once its epoch moved on.
func (s *Server) clearDoubt(inc *registry.Incarnation, k actorKey) {
	l := s.lease.Load()
	if l == nil || l.inc != inc {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.doubt, k)
}

// markDoubt puts k in doubt under inc: a commit (or release) made at epoch
// has an unknown outcome.
func (s *Server) markDoubt(inc *registry.Incarnation, k actorKey, epoch int64) {
	l := s.lease.Load()
	if l == nil || l.inc != inc {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.doubt == nil {
		l.doubt = map[actorKey]int64{}
	}
	if old, in := l.doubt[k]; !in || epoch > old {
		// A copy of the key's bytes (an assignment stores its key even
		// over an existing entry's): k may be an activation's own, inline
		// in it (activation.keyBuf), and the entry outlives the
		// activation it would otherwise keep alive.
		l.doubt[k.owned()] = epoch
	}
}
