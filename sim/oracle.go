package sim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt/simrt"
)

// Oracle checks, with a view no deployment has, the two properties the
// protocol exists for. It sees the engine's events (nola.Observer) and
// every KV commit the store applies (through the server store links).
//
// The rules follow docs/proofs/single-activation.md. Activations of one
// actor are ordered by their Activated event (confirmation order, since an
// activation is reported only after its confirming commit and a final
// liveness check). An invocation is linearized at its start check; its end
// check is the output gate. The proof shows that every invocation on an
// activation α starts and, if its result is released, ends before any
// newer activation β of the same actor is confirmed. An invocation that
// started on α before that and is still running when β starts (a zombie,
// after a pause past the lease) is allowed as long as its result is
// withheld (ExecEnd with released=false): nothing it did is observable —
// its memory dies with α and its commits are fenced by the store.
//
//	G1.stale-start     an execution starts on α after a newer activation β
//	                   of the same actor was activated;
//	G1.release-overlap an execution on α releases its result after an
//	                   execution on a newer activation β started;
//	G1.dropped-start   an execution starts on an activation after it was
//	                   dropped (fenced, evicted, crashed);
//	G2.fenced-commit   a KV commit of actor A sent by incarnation (s, i) is
//	                   applied by the store while (s, i) does not own A or
//	                   its server record is gone or another incarnation's —
//	                   its lease expired or was revoked, or A moved;
//	G2.stale-commit    a KV commit sent by activation α is applied after a
//	                   newer activation β of the same actor was activated
//	                   (on another incarnation or the same one): β may
//	                   have read or written since, and α's late write
//	                   silently replaces what β wrote;
//	G2.deleted-life-commit a KV commit of generation g of actor A is
//	                   applied while A's record names another generation:
//	                   a commit of a deleted life landed (docs/deletion.md);
//	G1.release-live    an owner (s, i) rewrites the record of an actor it
//	                   owns — a release (at its activation limit, or when
//	                   shutting down), an epoch bump or a delete — and the store
//	                   applies it while an activation of that actor on
//	                   (s, i) is live (activated, not dropped). The proof's
//	                   Lemma 3 needs the activation dropped first: once
//	                   the record names nobody, placement may activate the
//	                   actor elsewhere while the live one still serves, and
//	                   a bump leaves it serving under a fence that no
//	                   longer holds.
//	G1.release-foreign a release sent by (s, i) — a commit that puts an
//	                   actor record naming no owner — is applied while
//	                   the record names another owner than (s, i), with
//	                   i the incarnation the release compares (or, with
//	                   no compare, the server's at the send). The
//	                   release compare exists to make this impossible:
//	                   clearing another owner's record lets placement
//	                   activate the actor a second time while that
//	                   owner's activation serves.
//
// The sender of a commit is identified when the server sends it: the
// activation of the actor on that server and incarnation that is running
// an execution (invocations of one activation are serialized, and a
// server commits only from a live execution).
//
// Order is the order of events in the simulation (one task runs at a time),
// not timestamps, so nothing is lost to equal virtual instants.
type Oracle struct {
	w      *simrt.World
	store  *memkv.Store
	keys   registry.Keyspace
	seq    uint64
	actors map[string]*actorTrack

	violations []Violation
	stats      OracleStats
	// notes are the per-actor timelines drawn on HTML pages.
	notes map[string][]note
}

// OracleStats counts what the oracle saw.
type OracleStats struct {
	Activations, Drops, Executions, Released, Withheld, TimerExecutions, Commits, StoreCommits, Calls int64
	// WASMTimerExecutions are the timer-driven executions of WASM tickers
	// (timers a guest set through its host calls).
	WASMTimerExecutions int64
}

// Violation is one broken rule.
type Violation struct {
	Rule   string
	Actor  string
	At     time.Duration
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s @%v: %s", v.Rule, v.Actor, v.At, v.Detail)
}

type actKey struct {
	server string
	inc    int64
	id     uint64
}

func (k actKey) String() string { return fmt.Sprintf("%s#%d/act%d", k.server, k.inc, k.id) }

type activationTrack struct {
	key         actKey
	order       int // rank among the actor's activations
	activatedAt time.Duration
	dropped     bool
	droppedAt   time.Duration
	running     *execTrack
}

type execTrack struct {
	op        string
	timer     bool
	startSeq  uint64
	startAt   time.Duration
	overtaken string // set when a newer activation started meanwhile
}

type actorTrack struct {
	acts   map[actKey]*activationTrack
	latest int // highest order so far
}

type note struct {
	tag        string
	start, end time.Duration
	text       string
	alarm      bool
}

func newOracle(w *simrt.World, store *memkv.Store) *Oracle {
	return &Oracle{w: w, store: store, keys: registry.NewKeyspace("nola"), actors: map[string]*actorTrack{}, notes: map[string][]note{}}
}

var _ nola.Observer = (*Oracle)(nil)

func (o *Oracle) violate(rule, actor, format string, args ...any) {
	v := Violation{Rule: rule, Actor: actor, At: o.w.Now(), Detail: fmt.Sprintf(format, args...)}
	o.violations = append(o.violations, v)
	o.notes[actor] = append(o.notes[actor], note{tag: "oracle", start: v.At, end: v.At, text: rule, alarm: true})
}

func actorName(ev nola.ActivationEvent) string { return ev.ActorID }

func keyOf(ev nola.ActivationEvent) actKey {
	return actKey{server: ev.Server, inc: ev.Incarnation, id: ev.Activation}
}

func (o *Oracle) track(ev nola.ActivationEvent) (*actorTrack, *activationTrack) {
	a := o.actors[actorName(ev)]
	if a == nil {
		a = &actorTrack{acts: map[actKey]*activationTrack{}}
		o.actors[actorName(ev)] = a
	}
	return a, a.acts[keyOf(ev)]
}

// Activated implements nola.Observer.
func (o *Oracle) Activated(ev nola.ActivationEvent) {
	o.seq++
	o.stats.Activations++
	a, t := o.track(ev)
	if t != nil {
		o.violate("G1.reactivated", actorName(ev), "activation %s reported activated twice", keyOf(ev))
		return
	}
	a.latest++
	a.acts[keyOf(ev)] = &activationTrack{key: keyOf(ev), order: a.latest, activatedAt: o.w.Now()}
}

// Dropped implements nola.Observer.
func (o *Oracle) Dropped(ev nola.ActivationEvent) {
	o.seq++
	o.stats.Drops++
	_, t := o.track(ev)
	if t == nil || t.dropped {
		return
	}
	t.dropped, t.droppedAt = true, o.w.Now()
	o.notes[actorName(ev)] = append(o.notes[actorName(ev)], note{tag: ev.Server, start: t.activatedAt, end: t.droppedAt, text: t.key.String()})
}

// ExecStart implements nola.Observer.
func (o *Oracle) ExecStart(ev nola.ActivationEvent) {
	o.seq++
	o.stats.Executions++
	if ev.Timer {
		o.stats.TimerExecutions++
		if strings.HasPrefix(ev.ActorID, wasmTickerPrefix) {
			o.stats.WASMTimerExecutions++
		}
	}
	name := actorName(ev)
	a, t := o.track(ev)
	if t == nil {
		o.violate("G1.unknown-activation", name, "execution %s on %s, which was never activated", ev.Operation, keyOf(ev))
		return
	}
	if t.dropped {
		o.violate("G1.dropped-start", name, "%s (timer=%v) started on %s, dropped at %v", ev.Operation, ev.Timer, t.key, t.droppedAt)
	}
	if t.order < a.latest {
		newer := o.newest(a)
		o.violate("G1.stale-start", name, "%s (timer=%v) started on %s (activated %v) after the newer %s was activated at %v",
			ev.Operation, ev.Timer, t.key, t.activatedAt, newer.key, newer.activatedAt)
	}
	// Every execution still running on an older activation is overtaken:
	// it must not release its result.
	for _, other := range a.sorted() {
		if other.order < t.order && other.running != nil && other.running.overtaken == "" {
			other.running.overtaken = fmt.Sprintf("%s started on the newer %s at %v", ev.Operation, t.key, o.w.Now())
		}
	}
	t.running = &execTrack{op: ev.Operation, timer: ev.Timer, startSeq: o.seq, startAt: o.w.Now()}
}

// ExecEnd implements nola.Observer.
func (o *Oracle) ExecEnd(ev nola.ActivationEvent, released bool) {
	o.seq++
	name := actorName(ev)
	_, t := o.track(ev)
	if t == nil || t.running == nil {
		o.violate("G1.unknown-execution", name, "execution %s ended on %s without a start", ev.Operation, keyOf(ev))
		return
	}
	x := t.running
	t.running = nil
	if !released {
		o.stats.Withheld++
		return
	}
	o.stats.Released++
	if x.overtaken != "" {
		o.violate("G1.release-overlap", name, "%s (timer=%v) on %s started at %v and released its result at %v, but %s",
			x.op, x.timer, t.key, x.startAt, o.w.Now(), x.overtaken)
	}
}

// CallSent implements nola.Observer: an outgoing call may only leave the
// current activation of its actor, while it runs (rules 3 and 4 of BRIEF
// §3: every effect is checked against the deadline right before it).
// Calls of an Activate hook, before its activation is known, are not
// checked.
func (o *Oracle) CallSent(ev nola.ActivationEvent) {
	o.seq++
	o.stats.Calls++
	name := actorName(ev)
	a, t := o.track(ev)
	if t == nil {
		return
	}
	if t.dropped {
		o.violate("G1.dropped-call", name, "call %s sent by %s, dropped at %v", ev.Operation, t.key, t.droppedAt)
	}
	if t.order < a.latest {
		newer := o.newest(a)
		o.violate("G1.stale-call", name, "call %s sent by %s (activated %v) after the newer %s was activated at %v",
			ev.Operation, t.key, t.activatedAt, newer.key, newer.activatedAt)
	}
}

// Committed implements nola.Observer.
func (o *Oracle) Committed(nola.ActivationEvent) {
	o.seq++
	o.stats.Commits++
}

func (a *actorTrack) sorted() []*activationTrack {
	out := make([]*activationTrack, 0, len(a.acts))
	for _, t := range a.acts {
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y *activationTrack) int { return x.order - y.order })
	return out
}

func (o *Oracle) newest(a *actorTrack) *activationTrack {
	s := a.sorted()
	return s[len(s)-1]
}

// beforeCommit runs on the store's node just before it applies a commit
// sent by server sid under incarnation inc (no task runs in between). It
// reads, for every actor whose KV the commit writes, whether (sid, inc)
// owns it and is live in the store at this instant; the returned function
// is called if the commit is applied and reports a violation if not.
// (Owners' rewrites of actor records are checked by ownerWritten.)
func (o *Oracle) beforeCommit(sid string, inc int64, senders map[string]actKey, t kv.Txn) func() {
	type refusal struct{ id, why string }
	var (
		bad     []refusal
		written []string
	)
	var dead []refusal
	for _, op := range t.Ops {
		ns, id, gen, ok := o.fencedActor(op)
		if !ok || op.End != nil || slices.Contains(written, ns+"/"+id) {
			// A range delete is the reclaim of a deleted generation
			// (registry.Reclaim), not an actor's commit.
			continue
		}
		written = append(written, ns+"/"+id)
		if why := o.notOwner(sid, inc, ns, id); why != "" {
			bad = append(bad, refusal{id, why})
		}
		if cur, ok := o.generation(ns, id); ok && gen >= 0 && cur != gen {
			dead = append(dead, refusal{id, fmt.Sprintf("it writes generation %d and the actor's record is at generation %d", gen, cur)})
		}
	}
	if len(written) == 0 {
		return nil
	}
	return func() {
		o.stats.StoreCommits++
		for _, b := range bad {
			o.violate("G2.fenced-commit", b.id, "KV commit sent by %s#%d applied at rev %d although %s", sid, inc, o.store.Rev(), b.why)
		}
		for _, b := range dead {
			o.violate("G2.deleted-life-commit", b.id, "KV commit sent by %s#%d applied at rev %d although %s", sid, inc, o.store.Rev(), b.why)
		}
		for _, id := range sortedKeys(senders) {
			a := o.actors[id]
			k := senders[id]
			if a == nil || a.acts[k] == nil {
				continue
			}
			if t := a.acts[k]; t.order < a.latest {
				newer := o.newest(a)
				o.violate("G2.stale-commit", id, "KV commit sent by %s (activated %v, dropped=%v at %v) applied at rev %d after the newer %s was activated at %v",
					k, t.activatedAt, t.dropped, t.droppedAt, o.store.Rev(), newer.key, newer.activatedAt)
			}
		}
	}
}

// ownerRewrite is a commit by which server sid rewrites the record of an
// actor it owns under incarnation inc: a release (the new record names no
// owner) or an epoch bump.
type ownerRewrite struct {
	sid, id string
	inc     int64
	release bool
	deleted bool // a delete's tombstone (not counted as a release)
}

// ownerWrite recognizes an owner's rewrite of an actor record: a commit
// of server sid that puts act/A and compares it equal to a record naming
// sid (registry.Release and Bump). Placements compare mod revisions and
// are not rewrites by the owner.
func (o *Oracle) ownerWrite(sid string, t kv.Txn) (ownerRewrite, bool) {
	// The one put of an actor record (a delete writes a reclaim marker
	// and drops the usage record besides).
	var (
		put   kv.Op
		id    string
		found bool
	)
	for _, op := range t.Ops {
		if op.Kind != kv.OpPut {
			continue
		}
		if a, ok := o.actActor(op.Key); ok {
			if found {
				return ownerRewrite{}, false
			}
			put, id, found = op, a, true
		}
	}
	if !found {
		return ownerRewrite{}, false
	}
	for _, c := range t.Compares {
		if c.Target != kv.TargetValue || c.Op != kv.Equal || !bytes.Equal(c.Key, put.Key) {
			continue
		}
		old, err := tuple.Unpack(c.Value)
		if err != nil || !actorRecordLen(len(old)) || old[1] != sid {
			continue
		}
		inc, _ := old[2].(int64)
		next, err := tuple.Unpack(put.Value)
		if err != nil || !actorRecordLen(len(next)) {
			return ownerRewrite{}, false
		}
		if next[0] == "" {
			return ownerRewrite{sid: sid, id: id, inc: inc, deleted: true}, true
		}
		return ownerRewrite{sid: sid, id: id, inc: inc, release: next[1] == ""}, true
	}
	return ownerRewrite{}, false
}

// ownerWritten checks an owner's rewrite as the store applies it
// (G1.release-live). late reports that its sender had already given up
// waiting for the answer (it was told the outcome is unknown); atStop
// that the sender was shutting down when it sent it.
func (o *Oracle) ownerWritten(w ownerRewrite, late, atStop bool) {
	a := o.actors[w.id]
	if a == nil {
		return
	}
	what := "bumped the epoch of"
	switch {
	case w.release:
		what = "released"
	case w.deleted:
		what = "deleted"
	}
	how := ""
	if late {
		how = ", a commit whose sender had given up on it (outcome unknown)"
	}
	for _, t := range a.sorted() {
		if t.key.server != w.sid || t.key.inc != w.inc || t.dropped {
			continue
		}
		o.violate("G1.release-live", w.id, "%s#%d %s the actor (applied at rev %d%s) while its activation %s (activated %v) was live",
			w.sid, w.inc, what, o.store.Rev(), how, t.key, t.activatedAt)
	}
}

// releaseCheck runs just before the store applies a commit of server sid
// sent under incarnation inc. If the commit is a release (one put of an
// actor record naming no owner), it reads the record as it stands and
// returns a function that reports G1.release-foreign if the commit is
// applied although the record names another owner than the releasing
// incarnation: the one the release compares, or inc when it compares
// nothing.
func (o *Oracle) releaseCheck(sid string, inc int64, t kv.Txn) func() {
	if len(t.Ops) != 1 || t.Ops[0].Kind != kv.OpPut {
		return nil
	}
	put := t.Ops[0]
	id, ok := o.actActor(put.Key)
	if !ok {
		return nil
	}
	// Any shape of released record (a generation, a locality move's
	// hint), but not a tombstone: a delete may take over from a dead
	// owner, under its own compares (docs/deletion.md).
	if next, err := tuple.Unpack(put.Value); err != nil || !actorRecordLen(len(next)) || next[1] != "" || next[0] == "" {
		return nil
	}
	if w, ok := o.ownerWrite(sid, t); ok {
		inc = w.inc
	}
	cur, found, err := o.store.Get(context.Background(), put.Key, 0)
	if err != nil || !found {
		return nil
	}
	rec, err := tuple.Unpack(cur.Value)
	if err != nil || !actorRecordLen(len(rec)) || rec[1] == "" || (rec[1] == sid && rec[2] == inc) {
		return nil
	}
	return func() {
		o.violate("G1.release-foreign", id, "a release sent by %s#%d was applied at rev %d while the actor was owned by %v#%v",
			sid, inc, o.store.Rev(), rec[1], rec[2])
	}
}

// actActor parses an actor record key (root, "act", ns, id).
func (o *Oracle) actActor(key []byte) (id string, ok bool) {
	t, err := tuple.Unpack(key)
	if err != nil || len(t) != 4 {
		return "", false
	}
	if s, _ := t[1].(string); s != "act" {
		return "", false
	}
	id, ok = t[3].(string)
	return id, ok
}

// senders identifies, when server sid sends a commit under incarnation
// inc, the activation of each written actor that sends it: the one of
// that server and incarnation running an execution (the latest, should
// there be several — only a broken engine runs two); failing that, the
// latest live one of them, since lifecycle hooks commit without an
// execution (a Deactivate hook runs before its activation is dropped). An
// Activate hook's commit, before the activation is known, has no sender.
func (o *Oracle) senders(sid string, inc int64, t kv.Txn) map[string]actKey {
	out := map[string]actKey{}
	for _, op := range t.Ops {
		_, id, _, ok := o.fencedActor(op)
		if !ok || op.End != nil {
			continue
		}
		if _, done := out[id]; done {
			continue
		}
		a := o.actors[id]
		if a == nil {
			continue
		}
		var running, live *activationTrack
		for _, act := range a.sorted() {
			if act.key.server != sid || act.key.inc != inc {
				continue
			}
			if act.running != nil {
				running = act
			}
			if !act.dropped {
				live = act
			}
		}
		switch {
		case running != nil:
			out[id] = running.key
		case live != nil:
			out[id] = live.key
		}
	}
	return out
}

// kvActor parses an actor KV key: (root, "kv", ns, id, key) of generation
// 0, (root, "kvg", ns, id, gen, key) of a later one.
func (o *Oracle) kvActor(key []byte) (ns, id string, gen int64, ok bool) {
	t, err := tuple.Unpack(key)
	if err != nil || len(t) < 5 {
		return "", "", 0, false
	}
	switch s, _ := t[1].(string); {
	case s == "kv" && len(t) == 5:
	case s == "kvg" && len(t) == 6:
		if gen, ok = t[4].(int64); !ok {
			return "", "", 0, false
		}
	default:
		return "", "", 0, false
	}
	ns, ok1 := t[2].(string)
	id, ok2 := t[3].(string)
	return ns, id, gen, ok1 && ok2
}

// actorRecordLen: an actor record has four elements, five with a
// generation, six with a placement hint after it (a locality move's
// release: registry.ActorRecord.Hint).
func actorRecordLen(n int) bool { return n >= 4 && n <= 6 }

// generation reads the generation of actor (ns, id)'s record now.
func (o *Oracle) generation(ns, id string) (int64, bool) {
	act, found, err := o.store.Get(context.Background(), o.keys.Actor(ns, id), 0)
	if err != nil || !found {
		return 0, false
	}
	rec, err := tuple.Unpack(act.Value)
	if err != nil || !actorRecordLen(len(rec)) {
		return 0, false
	}
	if len(rec) >= 5 {
		g, _ := rec[4].(int64)
		return g, true
	}
	return 0, true
}

// fencedActor names the actor whose owner-only state op writes: a KV
// entry (of generation gen), or the creation marker that the commit of the
// actor's creation hook deletes (registry/creation.go; gen -1: the marker
// belongs to no generation). Placement writes the marker too, but as a
// put, and it is not an owner's write.
func (o *Oracle) fencedActor(op kv.Op) (ns, id string, gen int64, ok bool) {
	if ns, id, gen, ok := o.kvActor(op.Key); ok {
		return ns, id, gen, true
	}
	if op.Kind != kv.OpDelete {
		return "", "", 0, false
	}
	t, err := tuple.Unpack(op.Key)
	if err != nil || len(t) != 5 || t[1] != "crt" || t[4] != "new" {
		return "", "", 0, false
	}
	ns, ok1 := t[2].(string)
	id, ok2 := t[3].(string)
	return ns, id, -1, ok1 && ok2
}

// creationOf reports whether key is one of actor id's creation records.
func (o *Oracle) creationOf(key []byte, id string) bool {
	t, err := tuple.Unpack(key)
	return err == nil && len(t) == 5 && t[1] == "crt" && t[3] == id
}

// notOwner explains why (sid, inc) may not commit to (ns, id) now, or
// returns "".
func (o *Oracle) notOwner(sid string, inc int64, ns, id string) string {
	ctx := context.Background()
	if inc == 0 {
		return "the server had no incarnation when it sent it"
	}
	srv, found, err := o.store.Get(ctx, o.keys.Server(sid), 0)
	if err != nil {
		return "reading the server record: " + err.Error()
	}
	if !found {
		return fmt.Sprintf("the lease of %s#%d expired or was revoked (no server record)", sid, inc)
	}
	if rec, err := tuple.Unpack(srv.Value); err != nil || len(rec) == 0 || rec[0] != inc {
		return fmt.Sprintf("the server record belongs to another incarnation (%v)", rec)
	}
	act, found, err := o.store.Get(ctx, o.keys.Actor(ns, id), 0)
	if err != nil || !found {
		return "the actor record is missing"
	}
	rec, err := tuple.Unpack(act.Value)
	if err != nil || !actorRecordLen(len(rec)) || rec[1] != sid || rec[2] != inc {
		return fmt.Sprintf("the actor is owned by %v", rec)
	}
	return ""
}

// finish closes the timelines of activations still alive at the end.
func (o *Oracle) finish() {
	names := make([]string, 0, len(o.actors))
	for n := range o.actors {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, t := range o.actors[n].sorted() {
			if !t.dropped {
				o.notes[n] = append(o.notes[n], note{tag: t.key.server, start: t.activatedAt, end: o.w.Now(), text: t.key.String()})
			}
		}
	}
}

// Violations returns what the oracle found.
func (o *Oracle) Violations() []Violation { return o.violations }
