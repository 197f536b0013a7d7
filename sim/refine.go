package sim

import (
	"bytes"
	"errors"
	"time"

	"github.com/nolaproject/nola/model"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// refinement abstracts a run, event by event, into steps of the protocol
// model (model.Refiner) and checks each is a transition the model allows
// from the abstract state reached so far (issue 13's refinement check).
// Its sources are the engine's observer events (tee'd with the oracle's)
// and the store links, which see every request the store applies, in the
// store's order, with the store's clock. It only reads: it draws no
// randomness, starts no task and traces nothing, so a run's trace hash is
// the same with or without it.
type refinement struct {
	s   *sim
	ref *model.Refiner
	// msg numbers KV commits from their send to their application.
	msg uint64
}

// RefineConfig is seed's generated configuration with the refinement
// check on and a quarter of its client operations (at least 40): the
// cluster, the actors and the whole fault schedule are kept (faults are
// what move ownership), the workload thinned so that hundreds of seeds fit
// in a test (TestRefinement; nolasim -refine replays one).
func RefineConfig(seed uint64, opts Options) Config {
	cfg := Generate(seed, opts)
	cfg.Ops = max(cfg.Ops/4, 40)
	cfg.Refine = true
	return cfg
}

func newRefinement(s *sim) *refinement {
	r := &refinement{s: s}
	r.ref = model.NewRefiner(r)
	return r
}

// Live implements model.RefEnv: the server's current process, if any, is
// serving under incarnation inc and its local deadline has not passed on
// its own clock.
func (r *refinement) Live(server string, inc int64) bool {
	for _, sl := range r.s.servers {
		if sl.name != server {
			continue
		}
		if sl.crashed || sl.srv == nil {
			return false
		}
		li := sl.srv.Lease()
		return li.Incarnation == inc && li.Valid
	}
	return false
}

func (r *refinement) step(e model.RefEvent) {
	if e.Now == 0 && isStoreEvent(e.Kind) {
		e.Now = r.s.storeNode.Mono()
	}
	r.ref.Step(e)
}

func isStoreEvent(k model.RefKind) bool {
	switch k {
	case model.RefGrant, model.RefRegister, model.RefKeepAlive, model.RefRevoke, model.RefRead,
		model.RefPlace, model.RefBump, model.RefRelease, model.RefCommitApply:
		return true
	}
	return false
}

// observer tees the engine's events to the oracle and the refinement.
type observer struct {
	o *Oracle
	r *refinement
}

var _ nola.Observer = observer{}

func refEvent(k model.RefKind, ev nola.ActivationEvent) model.RefEvent {
	return model.RefEvent{Kind: k, Server: ev.Server, Inc: ev.Incarnation, Actor: ev.ActorID, Act: ev.Activation, Timer: ev.Timer, Op: ev.Operation}
}

func (x observer) Activated(ev nola.ActivationEvent) {
	x.o.Activated(ev)
	x.r.step(refEvent(model.RefActivated, ev))
}

func (x observer) Dropped(ev nola.ActivationEvent) {
	x.o.Dropped(ev)
	x.r.step(refEvent(model.RefDropped, ev))
}

func (x observer) ExecStart(ev nola.ActivationEvent) {
	x.o.ExecStart(ev)
	x.r.step(refEvent(model.RefStart, ev))
}

func (x observer) ExecEnd(ev nola.ActivationEvent, released bool) {
	x.o.ExecEnd(ev, released)
	e := refEvent(model.RefEnd, ev)
	e.Applied = released
	x.r.step(e)
}

func (x observer) Committed(ev nola.ActivationEvent) {
	x.o.Committed(ev)
	x.r.step(refEvent(model.RefCommitted, ev))
}

func (x observer) CallSent(ev nola.ActivationEvent) {
	x.o.CallSent(ev)
	x.r.step(refEvent(model.RefCall, ev))
}

// actorRecord decodes an actor record (type, owner, owner incarnation,
// epoch).
func actorRecord(b []byte) (owner string, inc, epoch int64, ok bool) {
	t, err := tuple.Unpack(b)
	if err != nil || !actorRecordLen(len(t)) {
		return "", 0, 0, false
	}
	owner, ok1 := t[1].(string)
	inc, ok2 := t[2].(int64)
	epoch, ok3 := t[3].(int64)
	return owner, inc, epoch, ok1 && ok2 && ok3
}

// refCommit classifies a commit a link sends: the events to emit when the
// store applies or refuses it (nil: nothing the model abstracts, such as a
// load report), and, for a KV commit, the event of its sending.
func (r *refinement) refCommit(l *storeLink, t kv.Txn) (send *model.RefEvent, apply func(applied bool)) {
	o := r.s.oracle
	server := l.incarnation != nil
	// Registration: the server record of the sender, put with a lease.
	if server {
		srvKey := o.keys.Server(l.from)
		for _, op := range t.Ops {
			if op.Kind != kv.OpPut || !bytes.Equal(op.Key, srvKey) {
				continue
			}
			rec, err := tuple.Unpack(op.Value)
			if err != nil || len(rec) == 0 {
				return nil, nil
			}
			inc, _ := rec[0].(int64)
			e := model.RefEvent{Kind: model.RefRegister, Server: l.from, Inc: inc, Lease: int64(op.Lease)}
			return nil, func(applied bool) { e.Applied = applied; r.step(e) }
		}
	}
	// An actor record: placement (which, creating the actor, writes its
	// creation records too), or its owner's bump or release.
	if len(t.Ops) >= 1 && t.Ops[0].Kind == kv.OpPut {
		put := t.Ops[0]
		if id, ok := o.actActor(put.Key); ok && onlyCreation(o, id, t.Ops[1:]) {
			owner, oinc, ep, ok := actorRecord(put.Value)
			if !ok {
				return nil, nil
			}
			e := model.RefEvent{Kind: model.RefPlace, Actor: id, Owner: owner, OwnerInc: oinc, Epoch: ep}
			for _, c := range t.Compares {
				if !server || c.Target != kv.TargetValue || c.Op != kv.Equal || !bytes.Equal(c.Key, put.Key) {
					continue
				}
				if old, inc, _, ok := actorRecord(c.Value); ok && old == l.from {
					e.Kind, e.Server, e.Inc = model.RefBump, l.from, inc
					if owner == "" {
						e.Kind = model.RefRelease
					}
				}
			}
			return nil, func(applied bool) { e.Applied = applied; r.step(e) }
		}
	}
	// A KV commit of a server, fenced (unless a mutation dropped the
	// fence) on the actor record's exact bytes, epoch included.
	if !server {
		return nil, nil
	}
	actor := ""
	for _, op := range t.Ops {
		if _, id, _, ok := o.fencedActor(op); ok {
			actor = id
			break
		}
	}
	if actor == "" {
		return nil, nil
	}
	epoch := int64(-1)
	for _, c := range t.Compares {
		if id, ok := o.actActor(c.Key); ok && id == actor && c.Target == kv.TargetValue && c.Op == kv.Equal {
			if _, _, ep, ok := actorRecord(c.Value); ok {
				epoch = ep
			}
		}
	}
	r.msg++
	send = &model.RefEvent{Kind: model.RefCommitSend, Server: l.from, Inc: l.incarnation(), Actor: actor, Epoch: epoch, Msg: r.msg}
	msg := r.msg
	return send, func(applied bool) {
		r.step(model.RefEvent{Kind: model.RefCommitApply, Actor: actor, Msg: msg, Applied: applied})
	}
}

// onlyCreation reports whether every op writes a creation record of id.
func onlyCreation(o *Oracle, id string, ops []kv.Op) bool {
	for _, op := range ops {
		if !o.creationOf(op.Key, id) {
			return false
		}
	}
	return true
}

// refRead reports a server's read of an actor record, as the store
// answers it.
func (r *refinement) refRead(l *storeLink, key []byte, v kv.KeyValue, found bool, err error) {
	if l.incarnation == nil || err != nil {
		return
	}
	id, ok := r.s.oracle.actActor(key)
	if !ok {
		return
	}
	e := model.RefEvent{Kind: model.RefRead, Server: l.from, Actor: id, Found: found}
	if found {
		if e.Owner, e.OwnerInc, e.Epoch, ok = actorRecord(v.Value); !ok {
			return
		}
	}
	r.step(e)
}

func (r *refinement) refLease(k model.RefKind, id kv.LeaseID, ttl time.Duration, err error) {
	if err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		return
	}
	if k == model.RefGrant && err != nil {
		return
	}
	r.step(model.RefEvent{Kind: k, Lease: int64(id), TTL: ttl, Applied: err == nil})
}
