package model

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The refinement check: a run of the real engine (the simulator's) is
// abstracted, event by event, into steps of this model, and each step must
// be a transition the model allows from the abstract state reached so far.
//
// The abstract state is the model's State without its bounds: per server
// the store's incarnation counter (SInc), its record (SRec) and the lease
// holding it; per actor the record act/A (Owner, OInc, Ep) and its
// activations, with the model's phases collapsed to what the engine
// reports (activated, running, dropped) and the model's ghost flags
// (superseded, overlapped); and the fenced commits in flight with their
// superseded flag. Time is dense, not ticks: a lease is expired once the
// store's clock reaches the last grant or keep-alive it processed plus the
// TTL (A2, exact), and a server's local liveness (the model's Rem > 0 with
// Reg = inc) is read from the server itself at the instant of each step
// (RefEnv.Live). Each event names the model transition it refines; Step
// checks that transition's guard (the conditions under which
// Model.Successors emits it) and the model's safety rules, and applies its
// effect. README.md ("Refinement") lists which engine behaviours are
// abstracted and how.

// RefKind is the kind of an abstracted engine event.
type RefKind uint8

// The abstract events, with the model transition each refines.
const (
	RefGrant       RefKind = iota + 1 // store grants a lease (part of ARegister)
	RefRegister                       // store applies a registration commit (ARegister)
	RefKeepAlive                      // store processes a keep-alive (AKeepAlive: renewed, or lease lost)
	RefRevoke                         // store revokes a lease (ARegister's revoke of the fenced lease; AShutdownEnd)
	RefRead                           // store answers a server's read of act/A (AArrive's Confirm read)
	RefPlace                          // store applies a placement commit (APlace)
	RefBump                           // store applies an owner's epoch bump (AArrive with Bump)
	RefRelease                        // store applies an owner's release (AStoreApply of a release)
	RefCommitSend                     // a server sends a fenced KV commit (ACommitSend)
	RefCommitApply                    // store applies or refuses a KV commit (AStoreApply of a commit)
	RefActivated                      // an activation becomes ready (AActivated)
	RefDropped                        // an activation is dropped (fence, eviction, release, crash)
	RefStart                          // an execution passes its start check (AStart)
	RefEnd                            // an execution ends: released (AEnd) or not (AWithhold / failure)
	RefCall                           // an outgoing call passes its gate (ACall)
	RefCommitted                      // a commit's success reaches its activation (AReply)
)

var refNames = [...]string{"", "grant", "register", "keep-alive", "revoke", "read", "place", "bump", "release",
	"commit-send", "commit-apply", "activated", "dropped", "start", "end", "call", "committed"}

func (k RefKind) String() string {
	if int(k) < len(refNames) {
		return refNames[k]
	}
	return fmt.Sprintf("refkind(%d)", k)
}

// RefEvent is one abstracted engine event. Which fields matter depends on
// Kind; unused ones are zero.
type RefEvent struct {
	Kind RefKind
	// Now is the store's clock for store events (the lease clock).
	Now    time.Duration
	Server string
	Inc    int64
	Actor  string
	// Act identifies an activation within its server process (with
	// Server and Inc).
	Act uint64
	// Lease and TTL: grants, registrations, keep-alives, revokes.
	Lease int64
	TTL   time.Duration
	// Owner, OwnerInc, Epoch: the actor record a store event writes or a
	// read returns ("" owner: released); for commits, Epoch is the epoch
	// the fence compares (-1: the commit carries no fence compare).
	Owner    string
	OwnerInc int64
	Epoch    int64
	// Found: a read found the record.
	Found bool
	// Applied: the store applied the commit / renewed or revoked the
	// lease; for RefEnd, the result was released.
	Applied bool
	Timer   bool
	// Msg links a commit's send to its application.
	Msg uint64
	// Op is the operation of an execution or call (for messages only).
	Op string
}

func (e RefEvent) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	add := func(f string, args ...any) { b.WriteByte(' '); fmt.Fprintf(&b, f, args...) }
	if e.Server != "" {
		add("%s#%d", e.Server, e.Inc)
	}
	if e.Act != 0 {
		add("act%d", e.Act)
	}
	if e.Actor != "" {
		add("actor=%s", e.Actor)
	}
	switch e.Kind {
	case RefGrant, RefRegister, RefKeepAlive, RefRevoke:
		add("lease=%d", e.Lease)
	case RefRead, RefPlace, RefBump, RefRelease:
		add("record=(%q,%d,ep %d) found=%v", e.Owner, e.OwnerInc, e.Epoch, e.Found)
	case RefCommitSend:
		add("msg=%d fence-epoch=%d", e.Msg, e.Epoch)
	case RefCommitApply:
		add("msg=%d", e.Msg)
	case RefStart, RefEnd, RefCall:
		add("op=%s timer=%v", e.Op, e.Timer)
	}
	switch e.Kind {
	case RefRegister, RefKeepAlive, RefRevoke, RefPlace, RefBump, RefRelease, RefCommitApply, RefEnd:
		add("applied=%v", e.Applied)
	}
	if e.Now != 0 {
		add("@store %v", e.Now)
	}
	return b.String()
}

// RefEnv answers, at the instant of a step, what the abstraction function
// reads from the running system.
type RefEnv interface {
	// Live reports whether server's process is up and its local lease is
	// incarnation inc with its deadline not passed, on its own clock: the
	// model's live(v, inc) (Rem > 0, Reg = inc).
	Live(server string, inc int64) bool
}

// RefError is a step the model does not allow.
type RefError struct {
	Step  int64
	Event RefEvent
	Rule  string
	Why   string
}

func (e *RefError) Error() string {
	return fmt.Sprintf("refinement: step %d (%s) is not a model transition: %s: %s", e.Step, e.Event, e.Rule, e.Why)
}

type refActKey struct {
	server string
	inc    int64
	id     uint64
}

type refAct struct {
	key        refActKey
	actor      string
	order      int
	ep         int64
	dropped    bool
	running    bool
	superseded bool
	overlapped bool
}

type refActor struct {
	exists  bool
	owner   string
	oinc    int64
	ep      int64
	latest  int
	acts    map[refActKey]*refAct
	byOrder []*refAct
}

type refLease struct {
	server string // set once a server record is attached
	inc    int64
	ttl    time.Duration
	expiry time.Duration
	gone   bool
}

type refServer struct {
	sinc, rec int64
	lease     int64
}

type refMsg struct {
	server     string
	inc        int64
	actor      string
	ep         int64
	sender     *refAct
	superseded bool
}

type confirmKey struct {
	server string
	inc    int64
	actor  string
}

// RefStats count what a refinement check saw.
type RefStats struct {
	Steps   int64
	ByKind  [len(refNames)]int64
	Actors  int
	Servers int
}

// Refiner replays an abstracted engine run against the model.
type Refiner struct {
	env      RefEnv
	servers  map[string]*refServer
	leases   map[int64]*refLease
	actors   map[string]*refActor
	msgs     map[uint64]*refMsg
	confirms map[confirmKey]int64
	// zombies are superseded activations not yet dropped: each must stay
	// not live (G1.superseded-live), whatever step comes next.
	zombies []*refAct
	stats   RefStats
	err     *RefError
}

// NewRefiner starts a refinement check from the model's initial state:
// no lease, no server record, no actor.
func NewRefiner(env RefEnv) *Refiner {
	return &Refiner{env: env, servers: map[string]*refServer{}, leases: map[int64]*refLease{},
		actors: map[string]*refActor{}, msgs: map[uint64]*refMsg{}, confirms: map[confirmKey]int64{}}
}

// Err returns the first step the model rejected (nil: none).
func (r *Refiner) Err() *RefError { return r.err }

// Stats returns the steps checked so far.
func (r *Refiner) Stats() RefStats {
	st := r.stats
	st.Actors, st.Servers = len(r.actors), len(r.servers)
	return st
}

func (r *Refiner) server(s string) *refServer {
	v := r.servers[s]
	if v == nil {
		v = &refServer{}
		r.servers[s] = v
	}
	return v
}

func (r *Refiner) actor(a string) *refActor {
	x := r.actors[a]
	if x == nil {
		x = &refActor{acts: map[refActKey]*refAct{}}
		r.actors[a] = x
	}
	return x
}

// expire is the model's ATick at dense time: every lease whose expiry the
// store's clock has reached is gone, and with it its server record.
func (r *Refiner) expire(now time.Duration) {
	for _, l := range r.leases {
		if !l.gone && now >= l.expiry {
			r.endLease(l)
		}
	}
}

func (r *Refiner) endLease(l *refLease) {
	l.gone = true
	if l.server != "" {
		if v := r.servers[l.server]; v != nil && v.rec == l.inc {
			v.rec, v.lease = 0, 0
		}
	}
}

// liveActivations lists the activations of (server, inc) that are
// activated and not dropped (for actor, or every actor if "").
func (r *Refiner) liveActivations(server string, inc int64, actor string) []*refAct {
	var out []*refAct
	for _, name := range sortedNames(r.actors) {
		if actor != "" && name != actor {
			continue
		}
		for _, t := range r.actors[name].byOrder {
			if t.key.server == server && t.key.inc == inc && !t.dropped {
				out = append(out, t)
			}
		}
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Step checks one event and applies it. After the first rejected step
// every later one is ignored (the abstract state is no longer meaningful);
// Err reports it.
func (r *Refiner) Step(e RefEvent) *RefError {
	if r.err != nil {
		return r.err
	}
	r.stats.Steps++
	if int(e.Kind) < len(r.stats.ByKind) {
		r.stats.ByKind[e.Kind]++
	}
	if rule, why := r.step(&e); rule != "" {
		r.err = &RefError{Step: r.stats.Steps, Event: e, Rule: rule, Why: why}
		return r.err
	}
	// G1.superseded-live in the state reached.
	kept := r.zombies[:0]
	for _, z := range r.zombies {
		if z.dropped {
			continue
		}
		kept = append(kept, z)
		if r.err == nil && r.env.Live(z.key.server, z.key.inc) {
			x := r.actors[z.actor]
			newest := x.byOrder[len(x.byOrder)-1]
			r.err = &RefError{Step: r.stats.Steps, Event: e, Rule: "G1.superseded-live",
				Why: fmt.Sprintf("activation %s#%d/act%d of %s is still live although the newer %s#%d/act%d is ready",
					z.key.server, z.key.inc, z.key.id, z.actor, newest.key.server, newest.key.inc, newest.key.id)}
		}
	}
	r.zombies = kept
	return r.err
}

func (r *Refiner) step(e *RefEvent) (rule, why string) {
	switch e.Kind {
	case RefGrant:
		r.expire(e.Now)
		r.leases[e.Lease] = &refLease{ttl: e.TTL, expiry: e.Now + e.TTL}
		return "", ""

	case RefRegister:
		r.expire(e.Now)
		if !e.Applied {
			return "", "" // a refused registration changes nothing
		}
		v := r.server(e.Server)
		l := r.leases[e.Lease]
		switch {
		case v.rec != 0:
			return "register", fmt.Sprintf("the store already holds a live record of %s (incarnation %d): the model's ARegister needs SRec = 0", e.Server, v.rec)
		case e.Inc != v.sinc+1:
			return "register", fmt.Sprintf("incarnation %d does not follow the counter %d", e.Inc, v.sinc)
		case l == nil || l.gone:
			return "register", fmt.Sprintf("the record is attached to lease %d, which the model has as expired or unknown", e.Lease)
		}
		v.sinc, v.rec, v.lease = e.Inc, e.Inc, e.Lease
		l.server, l.inc = e.Server, e.Inc
		return "", ""

	case RefKeepAlive:
		r.expire(e.Now)
		l := r.leases[e.Lease]
		alive := l != nil && !l.gone
		if e.Applied != alive {
			return "keep-alive", fmt.Sprintf("the store answered renewed=%v, the model's lease is alive=%v (expiry exactly TTL after the last processed keep-alive, A2)", e.Applied, alive)
		}
		if alive {
			l.expiry = e.Now + l.ttl
		}
		return "", ""

	case RefRevoke:
		r.expire(e.Now)
		l := r.leases[e.Lease]
		alive := l != nil && !l.gone
		if e.Applied != alive {
			return "revoke", fmt.Sprintf("the store revoked=%v, the model's lease is alive=%v", e.Applied, alive)
		}
		if !alive {
			return "", ""
		}
		if l.server != "" {
			if acts := r.liveActivations(l.server, l.inc, ""); len(acts) > 0 {
				return "G1.revoke-live", fmt.Sprintf("lease of %s#%d revoked while its activation act%d of %s is live (the model revokes only a fenced incarnation, or at the end of a shutdown)",
					l.server, l.inc, acts[0].key.id, acts[0].actor)
			}
		}
		r.endLease(l)
		return "", ""

	case RefRead:
		r.expire(e.Now)
		x := r.actor(e.Actor)
		if e.Found != x.exists || (e.Found && (e.Owner != x.owner || e.OwnerInc != x.oinc || e.Epoch != x.ep)) {
			return "abstraction", fmt.Sprintf("the store returned (%q,%d,ep %d, found %v), the model holds (%q,%d,ep %d, exists %v)",
				e.Owner, e.OwnerInc, e.Epoch, e.Found, x.owner, x.oinc, x.ep, x.exists)
		}
		if e.Found && e.Owner == e.Server {
			r.confirms[confirmKey{e.Server, e.OwnerInc, e.Actor}] = e.Epoch
		}
		return "", ""

	case RefPlace:
		r.expire(e.Now)
		if !e.Applied {
			return "", ""
		}
		x := r.actor(e.Actor)
		if x.exists && x.owner != "" {
			if o := r.servers[x.owner]; o != nil && o.rec == x.oinc {
				return "place", fmt.Sprintf("%s placed on %s#%d while its owner %s#%d is live in the store (the model places only an actor whose owner's record is gone)",
					e.Actor, e.Owner, e.OwnerInc, x.owner, x.oinc)
			}
		}
		if t := r.servers[e.Owner]; t == nil || t.rec != e.OwnerInc {
			return "place", fmt.Sprintf("placed on %s#%d, which has no live record in the store", e.Owner, e.OwnerInc)
		}
		if want := x.ep + 1; x.exists && e.Epoch != want {
			return "place", fmt.Sprintf("new epoch %d, the model's placement moves %d to %d", e.Epoch, x.ep, want)
		}
		x.exists, x.owner, x.oinc, x.ep = true, e.Owner, e.OwnerInc, e.Epoch
		return "", ""

	case RefBump, RefRelease:
		r.expire(e.Now)
		if !e.Applied {
			return "", ""
		}
		x := r.actor(e.Actor)
		what := "bump"
		if e.Kind == RefRelease {
			what = "release"
		}
		if !x.exists || x.owner != e.Server || x.oinc != e.Inc {
			return what, fmt.Sprintf("applied although the record is (%q,%d), not %s#%d's", x.owner, x.oinc, e.Server, e.Inc)
		}
		if acts := r.liveActivations(e.Server, e.Inc, e.Actor); len(acts) > 0 {
			return "G1.release-live", fmt.Sprintf("%s of %s applied while its activation act%d on %s#%d is live", what, e.Actor, acts[0].key.id, e.Server, e.Inc)
		}
		if e.Kind == RefBump {
			if v := r.servers[e.Server]; v == nil || v.rec != e.Inc {
				return "bump", fmt.Sprintf("applied although %s#%d has no live record (Bump is fenced on srv/s)", e.Server, e.Inc)
			}
			if e.Epoch != x.ep+1 {
				return "bump", fmt.Sprintf("epoch %d after %d", e.Epoch, x.ep)
			}
			x.ep = e.Epoch
			r.confirms[confirmKey{e.Server, e.Inc, e.Actor}] = e.Epoch
			return "", ""
		}
		// The release's compare is on the whole owner record, epoch
		// included (e.OwnerInc carries the compared epoch's owner).
		if e.Epoch != x.ep+1 {
			return "release", fmt.Sprintf("released record at epoch %d, the model's release moves %d to %d", e.Epoch, x.ep, x.ep+1)
		}
		x.owner, x.oinc, x.ep = "", 0, e.Epoch
		return "", ""

	case RefCommitSend:
		if !r.env.Live(e.Server, e.Inc) {
			return "commit-send", fmt.Sprintf("%s#%d sent a KV commit of %s while not live (the model's ACommitSend needs live)", e.Server, e.Inc, e.Actor)
		}
		m := &refMsg{server: e.Server, inc: e.Inc, actor: e.Actor, ep: e.Epoch}
		// The sender: the activation of the actor on this incarnation
		// running an execution; failing that a live one (lifecycle hooks
		// commit outside executions).
		for _, t := range r.liveActivations(e.Server, e.Inc, e.Actor) {
			if m.sender == nil || t.running {
				m.sender = t
			}
		}
		if t := m.sender; t != nil {
			if t.superseded {
				return "G1.effect-after-superseded", fmt.Sprintf("KV commit sent by the superseded act%d", t.key.id)
			}
			if e.Epoch >= 0 && e.Epoch != t.ep {
				return "commit-send", fmt.Sprintf("the commit is fenced on epoch %d, its activation act%d was confirmed at %d", e.Epoch, t.key.id, t.ep)
			}
			if e.Epoch < 0 {
				m.ep = t.ep
			}
		}
		r.msgs[e.Msg] = m
		return "", ""

	case RefCommitApply:
		r.expire(e.Now)
		m := r.msgs[e.Msg]
		if m == nil {
			return "abstraction", fmt.Sprintf("commit %d applied but never sent", e.Msg)
		}
		delete(r.msgs, e.Msg)
		if !e.Applied {
			return "", ""
		}
		x := r.actor(m.actor)
		v := r.servers[m.server]
		switch {
		case v == nil || v.rec != m.inc:
			return "G2.fenced-commit", fmt.Sprintf("KV commit of %s by %s#%d applied while its server record is gone or another incarnation's", m.actor, m.server, m.inc)
		case !x.exists || x.owner != m.server || x.oinc != m.inc || x.ep != m.ep:
			return "G2.fenced-commit", fmt.Sprintf("KV commit of %s by %s#%d at epoch %d applied while the record is (%q,%d,ep %d)", m.actor, m.server, m.inc, m.ep, x.owner, x.oinc, x.ep)
		case m.superseded:
			return "G2.stale-commit", fmt.Sprintf("KV commit of %s by %s#%d applied after a newer activation became ready", m.actor, m.server, m.inc)
		}
		return "", ""

	case RefActivated:
		x := r.actor(e.Actor)
		k := refActKey{e.Server, e.Inc, e.Act}
		if x.acts[k] != nil {
			return "activated", fmt.Sprintf("act%d reported activated twice", e.Act)
		}
		ck := confirmKey{e.Server, e.Inc, e.Actor}
		ep, ok := r.confirms[ck]
		if !ok {
			return "activated", fmt.Sprintf("%s activated on %s#%d without a store read or bump confirming that incarnation as its owner (the model's AArrive)", e.Actor, e.Server, e.Inc)
		}
		delete(r.confirms, ck)
		if !r.env.Live(e.Server, e.Inc) {
			return "activated", fmt.Sprintf("%s#%d is not live when act%d becomes ready (the model's AActivated checks the lease again)", e.Server, e.Inc, e.Act)
		}
		if acts := r.liveActivations(e.Server, e.Inc, e.Actor); len(acts) > 0 {
			return "activated", fmt.Sprintf("act%d activated while act%d of the same actor on %s#%d is not dropped (one slot per server and actor)", e.Act, acts[0].key.id, e.Server, e.Inc)
		}
		x.latest++
		t := &refAct{key: k, actor: e.Actor, order: x.latest, ep: ep}
		// supersede: every other activation of the actor, and its commits
		// in flight.
		for _, o := range x.byOrder {
			if !o.dropped && !o.superseded {
				o.superseded = true
				r.zombies = append(r.zombies, o)
			}
		}
		for _, id := range sortedMsgs(r.msgs) {
			if m := r.msgs[id]; m.actor == e.Actor {
				m.superseded = true
			}
		}
		x.acts[k] = t
		x.byOrder = append(x.byOrder, t)
		return "", ""
	}

	// Activation events.
	x := r.actors[e.Actor]
	var t *refAct
	if x != nil {
		t = x.acts[refActKey{e.Server, e.Inc, e.Act}]
	}
	if t == nil {
		if e.Kind == RefDropped {
			return "", "" // dropped before it was ready (no model slot was ready)
		}
		return "abstraction", fmt.Sprintf("%s on act%d, which was never activated", e.Kind, e.Act)
	}
	live := r.env.Live(e.Server, e.Inc)
	switch e.Kind {
	case RefDropped:
		t.dropped = true
	case RefStart:
		switch {
		case t.dropped:
			return "G1.dropped-start", "an execution started on a dropped activation"
		case t.running:
			return "start", "a second execution started on a busy activation (one at a time)"
		case !live:
			return "start", fmt.Sprintf("the start check passed while %s#%d is not live", e.Server, e.Inc)
		case t.superseded:
			return "G1.stale-start", "an execution started on a superseded activation"
		}
		t.running, t.overlapped = true, false
		for _, o := range x.byOrder {
			if o != t && o.running {
				o.overlapped = true
			}
		}
	case RefEnd:
		if !t.running {
			return "end", "an execution ended that never started"
		}
		t.running = false
		if e.Applied {
			switch {
			case t.dropped:
				return "end", "a result released by a dropped activation"
			case !live:
				return "end", fmt.Sprintf("the output gate released a result while %s#%d is not live", e.Server, e.Inc)
			case t.overlapped:
				return "G1.release-overlap", "a result released after another activation's execution started during it"
			}
		}
	case RefCall:
		switch {
		case !t.running:
			return "call", "a call sent outside an execution"
		case t.dropped || !live:
			return "call", fmt.Sprintf("a call passed its gate while %s#%d is not live (or the activation is dropped)", e.Server, e.Inc)
		case t.superseded:
			return "G1.effect-after-superseded", "a call sent by a superseded activation"
		}
	case RefCommitted:
	default:
		return "abstraction", fmt.Sprintf("unknown event kind %d", e.Kind)
	}
	return "", ""
}

func sortedMsgs(m map[uint64]*refMsg) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
