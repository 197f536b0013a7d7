package nola

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nolaproject/nola/registry"
)

// Shedding: a server whose activations hold more memory than its budget
// (ServerConfig.MemoryBudget), or far more than the cluster's mean, gives
// some up — largest first — so that placement puts them elsewhere on their
// next call. Every move is a release (Registry.Release, the compare that
// this incarnation still owns the actor at its epoch) after the activation
// was dropped; nothing else moves an actor (docs/placement.md).

// ShedConfig paces shedding. Zero fields take defaults.
type ShedConfig struct {
	// Interval is the time between two shedding rounds (default
	// LeaseTTL/2): with MaxPerRound it bounds the rate of releases.
	Interval time.Duration
	// MaxPerRound bounds the releases of one round (default 4).
	MaxPerRound int
	// LowWater is the hysteresis: a server that started shedding because
	// it was above a threshold goes on, round after round, until it is at
	// or below LowWater × that threshold (default 0.9, in (0, 1]).
	LowWater float64
	// MeanFactor turns on shedding relative to the cluster: a server
	// holding more than MeanFactor × the mean memory of the live servers
	// sheds (0, the default: off; must be ≥ 1 otherwise). nola serve
	// turns it on (--shed-mean-factor).
	MeanFactor float64
	// MinBytes exempts small servers from MeanFactor: below it a server
	// never sheds relative to the mean (default 16 MiB), so clusters of
	// small actors are not churned for the sake of a few KiB.
	MinBytes int64
}

func (c ShedConfig) check() error {
	switch {
	case c.Interval < 0 || c.MaxPerRound < 0 || c.MinBytes < 0:
		return fmt.Errorf("nola: server config: negative shed setting in %+v", c)
	case c.LowWater < 0 || c.LowWater > 1 || math.IsNaN(c.LowWater):
		return fmt.Errorf("nola: server config: Shed.LowWater %v outside (0, 1]", c.LowWater)
	case c.MeanFactor != 0 && !(c.MeanFactor >= 1 && !math.IsInf(c.MeanFactor, 0)):
		return fmt.Errorf("nola: server config: Shed.MeanFactor %v: 0 (off) or at least 1", c.MeanFactor)
	}
	return nil
}

func (c ShedConfig) withDefaults(ttl time.Duration) ShedConfig {
	if c.Interval <= 0 {
		c.Interval = ttl / 2
	}
	if c.MaxPerRound <= 0 {
		c.MaxPerRound = 4
	}
	if c.LowWater <= 0 {
		c.LowWater = 0.9
	}
	if c.MinBytes <= 0 {
		c.MinBytes = 16 << 20
	}
	return c
}

// shedEnabled reports whether the server runs the shedder task.
func (s *Server) shedEnabled() bool { return s.cfg.MemoryBudget > 0 || s.cfg.Shed.MeanFactor > 0 }

// shedder runs a shedding round every Shed.Interval.
func (s *Server) shedder() {
	for {
		if err := s.rt.Sleep(s.ctx, s.cfg.Shed.Interval); err != nil {
			return
		}
		s.shedRound(s.ctx)
	}
}

// shedPlan is one round's view: its thresholds and the other servers'
// memory, to check that a shed activation has somewhere to go.
type shedPlan struct {
	high, low float64 // shed above high (or while shedding), down to low
	reason    string
	meanCap   float64 // MeanFactor × mean, +Inf when off
	others    []registry.Member
}

// shedRound sheds up to MaxPerRound activations if the server is above a
// threshold (or still shedding, above its low water). It returns how many
// it released.
func (s *Server) shedRound(ctx context.Context) int {
	l := s.lease.Load()
	if l == nil || !s.mayServe(l.inc) {
		s.shedding = false
		return 0
	}
	mem := float64(s.memoryBytes())
	plan, ok := s.planShed(ctx, l, mem)
	if !ok {
		s.shedding = false
		return 0
	}
	if mem <= plan.low || (!s.shedding && mem <= plan.high) {
		s.shedding = false
		return 0
	}
	if !s.shedding {
		s.shedding = true
		s.stats.shedEpisodes.Add(1)
		s.log.Info("shedding activations", "reason", plan.reason, "memory", int64(mem), "threshold", int64(plan.high), "target", int64(plan.low))
	}
	cands := s.table.Load().collect(func(a *activation) bool { return a.state.Load() == stateReady })
	// Largest first; among equals the least recently used, then by key.
	slices.SortStableFunc(cands, func(x, y *activation) int {
		if c := cmp.Compare(y.bytes(), x.bytes()); c != 0 {
			return c
		}
		return cmp.Compare(x.lastUsed.Load(), y.lastUsed.Load())
	})
	shed := 0
	for _, a := range cands {
		if shed >= s.cfg.Shed.MaxPerRound || mem <= plan.low {
			break
		}
		n := a.bytes()
		dest := plan.destination(n)
		if dest < 0 {
			continue // it would put another server over: keep it
		}
		if err := s.releaseOne(ctx, a, ""); err != nil {
			s.log.Debug("shed failed", "actor", a.actorID(), "err", err)
			if !s.mayServe(l.inc) {
				break
			}
			continue
		}
		plan.others[dest].Load.Bytes += n
		mem -= float64(n)
		shed++
		s.stats.shed.Add(1)
		s.stats.shedBytes.Add(n)
		s.log.Info("shed activation", "ns", a.ns(), "actor", a.actorID(), "bytes", n, "reason", plan.reason)
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("shed %s/%s from %s#%d bytes=%d", a.ns(), a.actorID(), s.cfg.ID, l.inc.Num, n))
		}
	}
	if shed > 0 {
		// Let placement see the lighter server before the next keep-alive.
		s.reportLoad(ctx, l)
	}
	return shed
}

// planShed computes the round's thresholds; ok is false when no threshold
// applies (nothing to shed, or the member list could not be read).
func (s *Server) planShed(ctx context.Context, l *leaseState, mem float64) (shedPlan, bool) {
	p := shedPlan{high: math.Inf(1), meanCap: math.Inf(1)}
	if b := s.cfg.MemoryBudget; b > 0 {
		p.high, p.reason = float64(b), "memory budget"
	}
	meanOn := s.cfg.Shed.MeanFactor > 0 && mem >= float64(s.cfg.Shed.MinBytes)
	if mem <= p.high*s.cfg.Shed.LowWater && !meanOn {
		return p, false // cheap exit: no store read for a server under its budget
	}
	ctx, cancel := s.rt.WithTimeout(ctx, s.cfg.LeaseTTL/4)
	defer cancel()
	list, err := s.reg.Servers(ctx)
	if err != nil {
		s.log.Debug("shed: list servers", "err", err)
		return p, false
	}
	total, n := mem, 1.0
	for _, m := range list {
		if m.Record.ID == s.cfg.ID {
			continue
		}
		p.others = append(p.others, m)
		total += float64(m.Load.Bytes)
		n++
	}
	if meanOn {
		p.meanCap = s.cfg.Shed.MeanFactor * total / n
		if p.meanCap < p.high {
			p.high, p.reason = p.meanCap, "above cluster mean"
		}
	}
	if math.IsInf(p.high, 1) || len(p.others) == 0 {
		return p, false
	}
	p.low = p.high * s.cfg.Shed.LowWater
	return p, true
}

// destination returns the index of the lightest other server that can take
// n more bytes and stay under its own threshold (its budget, and the
// cluster cap when shedding relative to the mean), or -1. An activation
// with nowhere to go stays: moving it would only make another server shed
// it back (the 64 MiB actor of docs/placement.md stays, alone).
func (p *shedPlan) destination(n int64) int {
	best := -1
	for i, m := range p.others {
		if m.Load.Limit > 0 && m.Load.Activations >= m.Load.Limit {
			continue
		}
		if best < 0 || m.Load.Bytes < p.others[best].Load.Bytes {
			best = i
		}
	}
	if best < 0 {
		return -1
	}
	m := p.others[best]
	limit := p.meanCap
	if m.Load.Budget > 0 {
		limit = min(limit, float64(m.Load.Budget))
	}
	if float64(m.Load.Bytes+n) > limit {
		return -1
	}
	return best
}

// releaseOne moves a off this server, for shedding and for locality
// (hint: the server the next placement should prefer, or ""): it skips a
// running a's invocation (busy this round), runs its
// Deactivate hook, drops it, and clears its ownership with a compare on
// this incarnation's record at a's epoch (Registry.Release). Between the
// drop and the release a placeholder holds a's place in the table
// (swapPlaceholder): a call arriving meanwhile waits for it instead of
// activating a anew on the ownership the release is about to clear (the
// activation the proof's Lemma 3 forbids to be live at the release). A
// release of unknown outcome puts the actor in doubt, so that a later
// activation here bumps its epoch first.
func (s *Server) releaseOne(ctx context.Context, a *activation, hint string) error {
	if !a.lock.TryAcquire() {
		return errBusy // running now: not idle enough to move this round
	}
	defer a.lock.Release()
	if a.state.Load() != stateReady || !s.mayServe(a.inc) {
		return errGone
	}
	ph, ok := s.swapPlaceholder(a, true)
	if !ok {
		return errGone
	}
	moved := &Error{Code: CodeNotOwner, Retryable: true, Message: a.actorID() + " moved off server " + s.cfg.ID}
	defer s.removePlaceholder(ph, stateEvicted, moved)
	// Bounded like every store call of the engine: the placeholder holds
	// the actor's slot (and its callers) until the release returns.
	rctx, cancel := s.rt.WithTimeout(ctx, s.cfg.CommitTimeout)
	defer cancel()
	err := s.reg.ReleaseTo(rctx, a.inc, a.ns(), a.actorID(), a.typ, a.epoch, a.gen, hint)
	if err != nil && !errors.Is(err, registry.ErrFenced) {
		s.markDoubt(a.inc, a.key(), a.epoch)
	}
	return err
}

// Placeholders. A release (releaseOne) or a delete (handleDelete) ends an
// activation's life before the store commit that makes the end visible:
// meanwhile a placeholder holds the actor's slot in the table, as an
// activation attempt would (state activating), so that calls wait for the
// commit instead of activating the old life anew. A placeholder is not an
// activation: it is not counted in Server.activations (dropWith skips it),
// charges no memory, and is never ready, so none of the figures a server
// reports — Stats, the load record placement reads, HostedActors — and
// neither the activation limit nor the sweeper's target see it. Its lock
// is held from its making to its removal.

// newPlaceholder makes a placeholder for key in table t, its lock held.
// The caller puts it in the table.
func (s *Server) newPlaceholder(t *table, key actorKey, typ string, inc *registry.Incarnation) *activation {
	ph := s.newActivation(t, key, typ, inc)
	ph.placeholder = true
	if !ph.lock.TryAcquire() {
		s.violated("activation %s/%s: a fresh placeholder's lock is taken", key.ns, key.id)
	}
	return ph
}

// swapPlaceholder replaces the ready activation a, whose lock the caller
// holds, by a placeholder in its table, runs a's Deactivate hook if
// deactivate (a release moves the actor; a delete ends it), and drops a.
// It returns the placeholder, its lock held, for removePlaceholder; ok is
// false, and nothing changed, if a was no longer in its table.
func (s *Server) swapPlaceholder(a *activation, deactivate bool) (ph *activation, ok bool) {
	ph = s.newPlaceholder(a.tbl, a.key(), a.typ, a.inc)
	sh, h := a.tbl.shard(a.key())
	sh.mu.Lock()
	if sh.get(h, a.key()) != a {
		sh.mu.Unlock()
		ph.lock.Release()
		return nil, false
	}
	sh.put(h, ph)
	sh.mu.Unlock()
	if deactivate {
		s.deactivate(a)
	}
	s.drop(a, stateEvicted)
	return ph, true
}

// removePlaceholder takes ph out of its table (unless a fence did first),
// resolves the calls that waited on it with err (nil: a retryable
// "dropped"), and releases its lock.
func (s *Server) removePlaceholder(ph *activation, st int32, err error) {
	s.dropWith(ph, st, err)
	ph.lock.Release()
}
