package nola

// Observer sees the engine's protocol events as they happen. The simulator's
// oracle uses it to check, with a view no real deployment has, that no two
// activations of an actor ever overlap and that no fenced incarnation
// commits. Calls are synchronous on the task that caused the event and must
// not block. Nil (the default) costs one comparison per event.
type Observer interface {
	// Activated: an activation passed ownership confirmation and is ready.
	Activated(ev ActivationEvent)
	// Dropped: an activation was evicted, released, fenced or broken.
	Dropped(ev ActivationEvent)
	// ExecStart: an invocation (or timer) passed its start check.
	ExecStart(ev ActivationEvent)
	// ExecEnd: it finished; released reports whether its result passed the
	// output gate and was handed back (false: it failed or was withheld).
	ExecEnd(ev ActivationEvent, released bool)
	// Committed: a fenced KV commit of this activation succeeded.
	Committed(ev ActivationEvent)
	// CallSent: an outgoing call of this activation (ev.Operation is the
	// called operation) passed its gate and is being sent.
	CallSent(ev ActivationEvent)
}

// ActivationEvent identifies an activation and what happened to it. Its
// Namespace and ActorID share the activation's own memory (the key bytes
// are inline in it): an observer that keeps them past the activation's
// Dropped event keeps the dropped activation, its actor included, alive.
// Keep a copy (strings.Clone) instead.
type ActivationEvent struct {
	Server      string
	Incarnation int64
	// Activation is unique per server process.
	Activation uint64
	Namespace  string
	ActorID    string
	// Operation is set for ExecStart/ExecEnd.
	Operation string
	// Timer marks timer-triggered executions.
	Timer bool
}

func (a *activation) event(op string, timer bool) ActivationEvent {
	return ActivationEvent{
		Server: a.srv.cfg.ID, Incarnation: a.inc.Num, Activation: a.id,
		Namespace: a.ns(), ActorID: a.actorID(), Operation: op, Timer: timer,
	}
}
