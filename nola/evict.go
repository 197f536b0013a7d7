package nola

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/nolaproject/nola/rt"
)

// sweeper evicts idle activations, and the least recently used ones when
// the server nears its activation limit.
func (s *Server) sweeper() {
	interval := min(max(s.cfg.IdleTimeout/4, 10*time.Millisecond), 30*time.Second)
	for {
		if err := s.rt.Sleep(s.ctx, interval); err != nil {
			return
		}
		s.evictIdle()
	}
}

func (s *Server) evictIdle() {
	now := int64(s.rt.Mono())
	idle := int64(s.cfg.IdleTimeout)
	// An early sweep treats every activation not in use as idle: eviction
	// is legal at any moment an activation is not executing.
	early := rt.Buggify(s.rt, "sweep.early")
	t := s.table.Load()
	cands := t.collect(func(a *activation) bool {
		return a.state.Load() == stateReady && (early || now-a.lastUsed.Load() >= idle)
	})
	for _, a := range cands {
		s.evict(a, !early)
	}
	// Near the limit: evict the least recently used down to 80%. An
	// overflow (a fault point) evicts down to half of what is active.
	limit := int64(s.cfg.MaxActivations)
	target := limit * 8 / 10
	n := s.activations.Load()
	overflow := rt.Buggify(s.rt, "sweep.overflow")
	if overflow {
		target = min(target, n/2)
	}
	if n > limit*9/10 || (overflow && n > target) {
		all := t.collect(func(a *activation) bool { return a.state.Load() == stateReady })
		slices.SortStableFunc(all, func(x, y *activation) int { return cmp.Compare(x.lastUsed.Load(), y.lastUsed.Load()) })
		for _, a := range all {
			if s.activations.Load() <= target {
				break
			}
			s.evict(a, false)
		}
	}
}

// evict deactivates a if it is not busy (and, if onlyIdle, still idle).
// Ownership is kept: the next call reactivates it here without placement.
func (s *Server) evict(a *activation, onlyIdle bool) {
	if !a.lock.TryAcquire() {
		return
	}
	defer a.lock.Release()
	if a.state.Load() != stateReady {
		return
	}
	if onlyIdle && int64(s.rt.Mono())-a.lastUsed.Load() < int64(s.cfg.IdleTimeout) {
		return
	}
	s.deactivate(a)
	s.drop(a, stateEvicted)
	s.stats.evicted.Add(1)
}

// deactivate runs the Deactivate hook, if any. The caller holds a.lock.
func (s *Server) deactivate(a *activation) {
	hook, ok := a.actor.(Deactivator)
	if !ok || !s.mayServe(a.inc) {
		return
	}
	ctx, cancel := s.rt.WithTimeout(s.ctx, s.cfg.TimerTimeout)
	defer cancel()
	if err := s.runHook(ctx, a, "deactivate", nil, hook.Deactivate); err != nil {
		s.log.Warn("deactivate hook failed", "actor", a.actorID(), "err", err)
	}
}

// release deactivates a and gives up its ownership (graceful shutdown).
func (s *Server) release(ctx context.Context, a *activation) error {
	if err := a.lock.Acquire(ctx, s.rt); err != nil {
		return wrapErr(err, false, "release %s", a.actorID())
	}
	ready := a.state.Load() == stateReady
	if ready {
		s.deactivate(a)
	}
	s.drop(a, stateEvicted)
	a.lock.Release()
	if !ready {
		return nil
	}
	if err := s.reg.Release(ctx, a.inc, a.ns(), a.actorID(), a.typ, a.epoch, a.gen); err != nil {
		return wrapErr(err, false, "")
	}
	return nil
}
