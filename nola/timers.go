package nola

import (
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/rt"
)

// SetTimer arranges for op(payload) to be invoked on this activation after
// delay, and then every period if period > 0. A timer with the same name
// replaces the old one. Timers belong to the activation: they stop when it
// is evicted, released or fenced, and they do not keep it from going idle.
func (c *Context) SetTimer(name string, delay, period time.Duration, op string, payload []byte) error {
	if c.over {
		return errOver()
	}
	return c.act.setTimer(name, delay, period, op, payload)
}

// CancelTimer stops the named timer. It reports whether one was set.
func (c *Context) CancelTimer(name string) bool { return !c.over && c.act.cancelTimer(name) }

// actorTimer is one named timer of an activation.
type actorTimer struct {
	name    string
	period  time.Duration
	op      string
	payload []byte
	timer   rt.Timer
	stopped bool
}

func (t *actorTimer) stop() {
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (a *activation) setTimer(name string, delay, period time.Duration, op string, payload []byte) error {
	s := a.srv
	if err := checkName("timer name", name, s.cfg.Limits, false); err != nil {
		err.own = true
		return err
	}
	if err := checkName("timer operation", op, s.cfg.Limits, false); err != nil {
		err.own = true
		return err
	}
	if delay < 0 || period < 0 || (period > 0 && period < s.cfg.MinTimerPeriod) {
		return ownErr(CodeBadRequest, "timer %q: delay must be >= 0 and period 0 or at least this server's minimum of %v (nola serve --min-timer-period)", name, s.cfg.MinTimerPeriod)
	}
	if len(payload) > s.cfg.Limits.MaxPayloadBytes {
		return ownErr(CodeTooLarge, "timer payload of %d bytes exceeds the limit of %d", len(payload), s.cfg.Limits.MaxPayloadBytes)
	}
	if err := s.effectAllowed(a); err != nil {
		return err
	}
	t := &actorTimer{name: name, period: period, op: op, payload: append([]byte(nil), payload...)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.state.Load(); st == stateEvicted || st == stateFenced {
		return &Error{Code: CodeFenced, Message: "activation of " + a.actorID() + " is gone"}
	}
	x := a.auxOf()
	if x.timers == nil {
		x.timers = map[string]*actorTimer{}
	}
	if old := x.timers[name]; old != nil {
		old.stop()
	} else if len(x.timers) >= s.cfg.MaxTimersPerActor {
		return ownErr(CodeTooLarge, "timer %q: the actor already has %d pending timers, this server's limit (cancel one first, or raise nola serve --max-timers-per-actor)", name, len(x.timers))
	}
	x.timers[name] = t
	t.timer = s.rt.AfterFunc(delay, "timer "+name, func() { s.fireTimer(a, t) })
	return nil
}

func (a *activation) cancelTimer(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.timerLocked(name)
	if t == nil {
		return false
	}
	t.stop()
	delete(a.aux.Load().timers, name)
	return true
}

// timerLocked returns a's timer of that name, or nil. The caller holds a.mu.
func (a *activation) timerLocked(name string) *actorTimer {
	x := a.aux.Load()
	if x == nil {
		return nil
	}
	return x.timers[name]
}

// fireTimer invokes the timer's operation through the normal serialized,
// fenced path, then re-arms a periodic timer.
func (s *Server) fireTimer(a *activation, t *actorTimer) {
	a.mu.Lock()
	current := !t.stopped && a.timerLocked(t.name) == t
	a.mu.Unlock()
	if !current || (s.effectAllowed(a) != nil && !s.cfg.Mutations.Has(mutation.TimerIgnoresFence)) {
		return
	}
	// A timer armed by the Activate hook can fire before the activation
	// is ready (the hook released its lock, or is still running; lookup
	// has not yet marked it ready): wait for that — however long the hook
	// takes — or the firing would find it "dropped".
	if a.state.Load() == stateActivating {
		if err := a.waitActivated(s.ctx); err != nil {
			return // the activation failed or went (or the server): its timers with it
		}
	}
	ctx, cancel := s.rt.WithTimeout(s.ctx, s.cfg.TimerTimeout)
	req := Request{Namespace: a.ns(), ActorID: a.actorID(), ActorType: a.typ, Operation: t.op, Payload: t.payload}
	_, err := s.invokeOn(ctx, a, &req, true)
	cancel()
	if err != nil && err != errGone {
		s.log.Warn("timer invocation failed", "actor", a.actorID(), "timer", t.name, "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.stopped || a.timerLocked(t.name) != t {
		return
	}
	if t.period > 0 {
		t.timer = s.rt.AfterFunc(t.period, "timer "+t.name, func() { s.fireTimer(a, t) })
		return
	}
	delete(a.aux.Load().timers, t.name)
}
