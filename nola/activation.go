package nola

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unique"
	"unsafe"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

// Activation states. An activation starts activating; stateEvicted and
// stateFenced are final.
const (
	stateActivating int32 = iota
	stateReady
	stateEvicted // idle eviction or release: ownership may be kept
	stateFenced  // the incarnation ended, or the activation broke
	nStates
)

var stateNames = [nStates]string{"activating", "ready", "evicted", "fenced"}

func stateName(st int32) string {
	if st < 0 || st >= nStates {
		return fmt.Sprintf("state(%d)", st)
	}
	return stateNames[st]
}

// transitions is the activation state machine: transitions[from][to] is set
// for each legal edge. Activating goes to ready when the Activate hook and
// the ownership confirmation succeeded, or is dropped (evicted by a
// shutdown's release, fenced otherwise); a ready activation is dropped.
// Nothing leaves a final state: a second drop of an activation finds it
// final and does nothing (see dropWith).
var transitions = [nStates][nStates]bool{
	stateActivating: {stateReady: true, stateEvicted: true, stateFenced: true},
	stateReady:      {stateEvicted: true, stateFenced: true},
}

func legalTransition(from, to int32) bool {
	return from >= 0 && from < nStates && to >= 0 && to < nStates && transitions[from][to]
}

func finalState(st int32) bool { return st == stateEvicted || st == stateFenced }

// transition moves a from one state to another by compare-and-swap. It
// reports false, changing nothing, when a was not in from (another task
// moved it first: the caller decides what losing that race means). Asking
// for an edge the table lacks is a bug in the engine.
func (a *activation) transition(from, to int32) bool {
	if !legalTransition(from, to) {
		a.srv.violated("activation %s/%s: illegal transition %s → %s", a.ns(), a.actorID(), stateName(from), stateName(to))
		return false
	}
	return a.state.CompareAndSwap(from, to)
}

// activationBytes is the memory charged to an activation besides its KV
// cache, for placement's memory tie-break.
const activationBytes = 1 << 10

// activation is one live instance of an actor on this server, confirmed
// under one incarnation. Invocations run one at a time under lock.
//
// Layout: the fields every warm invocation reads or writes (lookup,
// invokeOn, account) are activationHot, first, in the activation's first
// two cache lines — the actor's key among them, its bytes inline for keys
// of up to inlineKeyBytes, since the table's lookup compares it; the rest
// (identity, ownership record, KV state, size) is activationCold, after
// it, and what few activations need (timers, creation arguments, waiters,
// KV cache) is activationAux, a separate object made on first need. Both
// parts are embedded by value — one object per activation, fields
// promoted — and the activation is a whole number of 64-byte lines (256
// bytes), so that it lands in a size class whose slots start on a line
// boundary: a call touches two lines of it, not three. With a million live
// actors each line is a likely cache miss. TestActivationHotFields guards
// the layout: a new field goes into activationCold unless every call reads
// it, and one that takes the activation past 256 bytes needs padding of
// activationCold to the next line (or a field less, or a field moved to
// activationAux).
type activation struct {
	activationHot
	activationCold
}

// inlineKeyBytes is the longest key (namespace and ID together) kept
// inside the activation; a longer one has its own allocation.
const inlineKeyBytes = 32

// maxKeyPart bounds a key's namespace and ID (their lengths are uint32s).
const maxKeyPart = math.MaxUint32

type activationHot struct {
	// The first line.
	state    atomic.Int32
	resolved bool // an actor of a TypeResolver (its size is already part of the resolver's MemoryReporter figure)
	// creating is set while the Creator hook's commit is due: the next
	// commit carries registry.CommitOptions.Created, even without writes.
	// argsRead says aux.args holds the creation arguments. Guarded by
	// lock. Not hot: here because they fit in state's padding.
	creating bool
	argsRead bool

	// placeholder marks an entry that only holds an actor's slot while
	// a release or delete commits (swapPlaceholder, shed.go): it is no activation,
	// so it is never counted in Server.activations. Set before the entry
	// is visible, never changed.
	placeholder bool

	lock     actLock // serializes invocations and hooks (actlock.go)
	inc      *registry.Incarnation
	actor    Actor
	lastUsed atomic.Int64 // monotonic nanos of the last invocation
	// sizer says actor is a Sizer, found once at activation: account
	// samples its size after every invocation, and a type assertion per
	// call to learn it costs more than the sample of a non-Sizer.
	sizer bool

	// The second line: the actor's type, checked against every request's,
	// and its key, which the table compares. The key's bytes are kp[:nsLen]
	// (the namespace) then the ID's idLen; kp points at keyBuf when they fit
	// in it. All four are set before the activation is visible and never
	// change (see ns and actorID).
	typ          string
	kp           *byte
	nsLen, idLen uint32
	keyBuf       [inlineKeyBytes]byte
}

type activationCold struct {
	id    uint64
	srv   *Server
	tbl   *table
	epoch int64 // of the actor record (see registry.Bump)
	gen   int64 // the actor's generation: which life's KV it reads (docs/deletion.md)
	// ownerRec is the actor record this activation owns, which its KV
	// commits' fences compare: made when first needed (owner), as most
	// actors never write. Guarded by lock.
	ownerRec []byte
	kvBudget *registry.KVBudget // computed on the first write (guarded by lock)
	txn      kvTxn              // the running invocation's writes (guarded by lock)
	charged  int64              // bytes added to srv.memBytes
	// size is what the actor reported through Sizer at the last sample
	// (accounting.go).
	size atomic.Int64

	mu sync.Mutex // guards aux's timers and activated; never held across a blocking call
	// aux is made by the first need of one of its fields (auxOf), and
	// then kept: once set it never changes.
	aux atomic.Pointer[activationAux]
}

// activationAux holds what most activations never need, out of the
// activation itself: a million live actors without timers, creation
// arguments, waiters or KV reads save its bytes each.
type activationAux struct {
	timers map[string]*actorTimer // guarded by activation.mu
	// activated is made by the first call that waits for the activation
	// to finish (most activations have no such waiter) and resolved, and
	// dropped, when it leaves stateActivating (see waitActivated).
	// Guarded by activation.mu.
	activated *rt.Future[struct{}]
	// args caches the creation arguments once read (argsRead). Guarded by
	// activation.lock.
	args []byte
	// The KV read cache. Guarded by activation.lock.
	cache      map[string]cacheEntry
	cacheBytes int
}

// auxOf returns a's aux, made if it has none.
func (a *activation) auxOf() *activationAux {
	if x := a.aux.Load(); x != nil {
		return x
	}
	a.aux.CompareAndSwap(nil, &activationAux{})
	return a.aux.Load()
}

// owner returns the actor record this activation owns (see ownerRec).
// The caller holds a.lock.
func (a *activation) owner() []byte {
	if a.ownerRec == nil {
		a.ownerRec = a.inc.OwnerRecord(a.typ, a.epoch, a.gen)
	}
	return a.ownerRec
}

// ns returns the actor's namespace.
func (a *activation) ns() string { return unsafe.String(a.kp, a.nsLen) }

// actorID returns the actor's ID.
func (a *activation) actorID() string {
	if a.idLen == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(a.kp), a.nsLen)), a.idLen)
}

// key is the actor's table key.
func (a *activation) key() actorKey { return actorKey{a.ns(), a.actorID()} }

// ref is the actor's reference.
func (a *activation) ref() Ref { return Ref{Namespace: a.ns(), ID: a.actorID(), Type: a.typ} }

// setKey stores a copy of k's bytes: inline when they fit, else in one
// allocation of their own. An activation's key never aliases the caller's
// strings: an ID sliced out of an HTTP request line would keep the whole
// line alive as long as the actor.
func (a *activation) setKey(k actorKey) {
	if uint64(len(k.ns)) > maxKeyPart || uint64(len(k.id)) > maxKeyPart {
		// Config.Limits.MaxNameBytes is at most maxNameBytesLimit, and
		// every key here passed checkName.
		a.srv.violated("activation of a %d-byte namespace and %d-byte ID: past the name limit", len(k.ns), len(k.id))
		k = actorKey{k.ns[:min(len(k.ns), maxKeyPart)], k.id[:min(len(k.id), maxKeyPart)]}
	}
	n := len(k.ns) + len(k.id)
	var b []byte
	if n <= inlineKeyBytes {
		b = a.keyBuf[:n]
	} else {
		b = make([]byte, n)
	}
	copy(b[copy(b, k.ns):], k.id)
	if n == 0 {
		b = a.keyBuf[:]
	}
	a.kp, a.nsLen, a.idLen = &b[0], uint32(len(k.ns)), uint32(len(k.id))
}

// activateFirst makes the activation of key, for the first call that finds
// none: it enters the table as activating (later calls wait for it), then
// confirms ownership and runs the Activate hook; retry says to look the
// actor up again.
func (s *Server) activateFirst(ctx context.Context, t *table, key actorKey, req *Request) (_ *activation, retry bool, _ error) {
	l := s.lease.Load()
	if l == nil || !s.mayServe(l.inc) {
		return nil, false, s.notServing()
	}
	if req.ActorType == "" {
		return nil, false, newErr(CodeBadRequest, false, nil, "actor type is required to activate %s", req.ActorID)
	}
	// newActivation copies the key's bytes (setKey): the activation and
	// its table entry never keep the caller's strings.
	a := s.newActivation(t, key, req.ActorType, l.inc)
	sh, h := t.shard(key)
	sh.mu.Lock()
	if sh.get(h, key) != nil {
		sh.mu.Unlock()
		return nil, true, nil // another call got there first
	}
	// Counted before the entry is visible: a fence that finds it
	// and drops it at once must not take the counters below zero.
	s.activations.Add(1)
	a.charged = activationBytes
	s.memBytes.Add(activationBytes)
	sh.put(h, a)
	sh.mu.Unlock()
	if s.table.Load() != t || s.stopped.Load() {
		// A fence (or Shutdown) swapped the table between our load and
		// our insert: its sweep of the old table may have missed this
		// entry, and the next call would not find it. Or Shutdown
		// began after our check, with our table already its new one,
		// which it never releases. Start over (and stop).
		s.dropWith(a, stateFenced, &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " was fenced"})
		return nil, true, nil
	}
	if err := s.activate(ctx, a, req.Chain); err != nil {
		s.dropWith(a, stateFenced, err)
		return nil, false, err
	}
	if !a.transition(stateActivating, stateReady) {
		err := &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " was fenced during activation", Retryable: true}
		a.resolveActivated(err)
		return nil, false, err
	}
	a.lastUsed.Store(int64(s.rt.Mono()))
	a.resolveActivated(nil)
	s.stats.activated.Add(1)
	if o := s.cfg.Observer; o != nil {
		o.Activated(a.event("", false))
	}
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("activate %s/%s on %s#%d", key.ns, key.id, s.cfg.ID, a.inc.Num))
	}
	return a, false, nil
}

func (s *Server) newActivation(t *table, key actorKey, typ string, inc *registry.Incarnation) *activation {
	a := &activation{}
	a.id, a.srv, a.tbl = s.nextActivation.Add(1), s, t
	// The type name interned: the caller's may be a slice of a request
	// line (HTTP's ?type=), which would otherwise live as long as the
	// actor; and a million actors of a few types share a few strings.
	a.typ = unique.Make(typ).Value()
	typ = a.typ
	a.setKey(key)
	a.inc, a.resolved = inc, s.cfg.Types[typ] == nil
	return a
}

func (s *Server) factory(ctx context.Context, ns, typ string) (Factory, error) {
	if f, ok := s.cfg.Types[typ]; ok {
		return f, nil
	}
	if s.cfg.Resolver != nil {
		f, err := s.cfg.Resolver.Resolve(ctx, ns, typ)
		if err != nil {
			// Nothing ran: retryable if the store could not be reached or
			// the deadline passed.
			return nil, wrapBefore(err, "resolve actor type %q", typ)
		}
		return f, nil
	}
	return nil, newErr(CodeBadRequest, false, nil, "unknown actor type %q", typ)
}

// activate confirms ownership under a's incarnation, builds the actor and
// runs its Activate hook. Nothing of the caller's invocation has run when it
// fails, so its errors are retryable where the cause is.
func (s *Server) activate(ctx context.Context, a *activation, chain []string) error {
	factory, err := s.factory(ctx, a.ns(), a.typ)
	if err != nil {
		return err
	}
	var (
		epoch, gen int64
		ok         bool
	)
	if doubted, in := s.inDoubt(a.inc, a.key()); in {
		// The last commit of this actor here has an unknown outcome:
		// move the record to a new epoch so that commit can never land.
		if epoch, gen, ok, err = s.reg.Bump(ctx, a.inc, a.ns(), a.actorID(), a.typ); err == nil && ok {
			s.checkBumped(a.key(), doubted, epoch)
			s.clearDoubt(a.inc, a.key())
		}
	} else {
		epoch, gen, ok, err = s.reg.Confirm(ctx, a.inc, a.ns(), a.actorID(), a.typ)
	}
	if err != nil {
		return wrapBefore(err, "")
	}
	if !ok {
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s#%d does not own %s/%s", s.cfg.ID, a.inc.Num, a.ns(), a.actorID())}
	}
	// The confirmation holds only if the lease was still valid when it
	// answered (the read says who owns the actor; the lease says the
	// incarnation was current).
	if !s.mayServe(a.inc) {
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " lost its lease during activation"}
	}
	a.epoch, a.gen = epoch, gen
	if n := s.activations.Load(); n > int64(s.cfg.MaxActivations) {
		// Full: give the actor up so that placement puts it elsewhere.
		if err := s.reg.Release(ctx, a.inc, a.ns(), a.actorID(), a.typ, epoch, gen); err != nil {
			s.log.Debug("release at capacity failed", "actor", a.actorID(), "err", err)
			if !errors.Is(err, registry.ErrFenced) {
				// The release may still land. Should this server activate
				// the actor again meanwhile, the late release would leave
				// it serving an actor the record says nobody owns: bump
				// the epoch first, as after a commit of unknown outcome.
				// (Found by the simulator.)
				s.markDoubt(a.inc, a.key(), epoch)
			}
		}
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s is at its activation limit (%d)", s.cfg.ID, s.cfg.MaxActivations)}
	}
	actor, err := safeFactory(factory, a.ref())
	if err != nil {
		return actorError(a.actorID(), fmt.Errorf("create: %w", err))
	}
	a.actor = actor
	_, a.sizer = actor.(Sizer)
	if hook, ok := actor.(Activator); ok {
		if err := a.lock.Acquire(ctx, s.rt); err != nil {
			return wrapBefore(err, "activate %s", a.actorID())
		}
		err := s.runHook(ctx, a, "activate", chain, hook.Activate)
		if err == nil {
			s.sampleSize(a)
		}
		a.lock.Release()
		if err != nil {
			return err
		}
	}
	if hook, ok := actor.(Creator); ok {
		if err := s.runCreate(ctx, a, chain, hook); err != nil {
			return err
		}
	}
	if !s.mayServe(a.inc) {
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " lost its lease during activation"}
	}
	return nil
}

// runCreate runs a Creator's hook if the store says the actor is new. The
// read comes after the ownership confirmation (or Bump) under the fence, so
// it sees every commit of earlier activations that can ever land.
func (s *Server) runCreate(ctx context.Context, a *activation, chain []string, hook Creator) error {
	if err := a.lock.Acquire(ctx, s.rt); err != nil {
		return wrapBefore(err, "create %s", a.actorID())
	}
	defer a.lock.Release()
	c, err := s.reg.ReadCreation(ctx, a.ns(), a.actorID())
	if err != nil {
		return wrapBefore(err, "")
	}
	a.cacheArgs(c.Args)
	if !c.Pending && !s.cfg.Mutations.Has(mutation.CreateEveryActivation) {
		return nil
	}
	a.creating, a.kvBudget = c.Pending, nil
	defer func() { a.creating, a.kvBudget = false, nil }()
	return s.runHook(ctx, a, "create", chain, func(cx *Context) error {
		if s.cfg.Mutations.Has(mutation.CreateCommitsMarkerSeparately) {
			// The broken variant: the hook's writes commit on their own,
			// and the marker only afterwards (below, in a second commit).
			a.creating = false
			if err := hook.Create(cx, c.Args); err != nil {
				return err
			}
			if err := a.txn.flush(cx); err != nil {
				return err
			}
			a.creating = true
			return nil
		}
		return hook.Create(cx, c.Args)
	})
}

// cacheArgs remembers the creation arguments (read once per activation).
func (a *activation) cacheArgs(args []byte) {
	if a.argsRead {
		return
	}
	a.auxOf().args, a.argsRead = args, true
	if n := len(args); n > 0 {
		a.srv.charge(a, int64(n))
	}
}

func safeFactory(f Factory, ref Ref) (a Actor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("factory panicked: %v", r)
		}
	}()
	a, err = f(ref)
	if err == nil && a == nil {
		err = fmt.Errorf("factory returned no actor")
	}
	return a, err
}

// runHook runs a lifecycle hook like an invocation (KV allowed, committed at
// the end). The caller holds a.lock.
func (s *Server) runHook(ctx context.Context, a *activation, name string, chain []string, hook func(*Context) error) error {
	cx := &Context{ctx: ctx, act: a, chain: chain}
	defer cx.end()
	err := callHook(hook, cx)
	if err == nil {
		err = a.txn.flush(cx)
	}
	if broken := cx.brokenErr(); broken != nil {
		err = broken // as in invokeOn: a failed commit fails the hook
	}
	if err != nil {
		a.txn.reset()
		if _, isPanic := err.(*panicError); isPanic {
			s.log.Error("actor hook panicked", "actor", a.actorID(), "hook", name, "err", err)
		}
		var ne *Error
		if errors.As(err, &ne) && ne.own {
			// A limit of the hook's own (the WASM host's memory limit):
			// keep its code, as invocationFailed does.
			return &Error{Code: ne.Code, Message: a.actorID() + ": " + name + ": " + ne.Message}
		}
		return actorError(a.actorID(), fmt.Errorf("%s: %w", name, err))
	}
	return nil
}

func callHook(hook func(*Context) error, cx *Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{val: r, stack: debug.Stack()}
		}
	}()
	return hook(cx)
}

// drop removes a from its table and kills it: no invocation runs on it
// again, its timers stop. Ownership is untouched.
func (s *Server) drop(a *activation, st int32) { s.dropWith(a, st, nil) }

// dropWith is drop that resolves a pending activation attempt with err
// (nil: "dropped"), after the entry left the table: a waiter that retries
// then finds it gone instead of spinning on it.
func (s *Server) dropWith(a *activation, st int32, err error) {
	sh, h := a.tbl.shard(a.key())
	sh.mu.Lock()
	sh.remove(h, a)
	sh.mu.Unlock()
	if !finalState(st) {
		s.violated("activation %s/%s: dropped to %s, not a final state", a.ns(), a.actorID(), stateName(st))
		return
	}
	var prev int32
	for {
		prev = a.state.Load()
		if finalState(prev) {
			return // dropped already (a fence and an eviction raced)
		}
		if a.transition(prev, st) {
			break
		}
	}
	if !a.placeholder {
		s.checkCount("activations", s.activations.Add(-1))
	}
	// The server's memory total is not asserted: a cache change racing
	// with a fence's drop moves it below zero for an instant.
	s.memBytes.Add(-atomic.LoadInt64(&a.charged))
	s.unchargeSize(a)
	if !s.cfg.Mutations.Has(mutation.TimerIgnoresFence) {
		a.mu.Lock()
		if x := a.aux.Load(); x != nil {
			for _, t := range x.timers {
				t.stop()
			}
			x.timers = nil
		}
		a.mu.Unlock()
	}
	if prev == stateActivating {
		if err == nil {
			err = &Error{Code: CodeFenced, Retryable: true, Message: "activation of " + a.actorID() + " was dropped"}
		}
		a.resolveActivated(err)
	} else if o := s.cfg.Observer; o != nil {
		o.Dropped(a.event("", false))
	}
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("drop %s/%s on %s state=%d", a.ns(), a.actorID(), s.cfg.ID, st))
	}
}

func (s *Server) charge(a *activation, n int64) {
	s.checkCount("memory charged to "+a.actorID(), atomic.AddInt64(&a.charged, n))
	s.memBytes.Add(n)
}

// waitActivated waits until a, found activating, is no longer: nil once it
// is ready, the failure of the attempt (a retryable error at least) if it
// was dropped instead, or ctx's error. The future is made here, by the
// first waiter: an activation nobody waits for never has one.
func (a *activation) waitActivated(ctx context.Context) error {
	a.mu.Lock()
	switch st := a.state.Load(); {
	case st == stateReady:
		a.mu.Unlock()
		return nil
	case st != stateActivating:
		a.mu.Unlock()
		return &Error{Code: CodeFenced, Retryable: true, Message: "activation of " + a.actorID() + " was dropped"}
	}
	x := a.auxOf()
	f := x.activated
	if f == nil {
		f = rt.NewFuture[struct{}](a.srv.rt)
		x.activated = f
	}
	a.mu.Unlock()
	_, err := f.Wait(ctx)
	return err
}

// resolveActivated wakes the waiters of a's activation with its outcome
// (nil: ready) and drops the future. The caller moved a out of
// stateActivating first, so a waiter that comes later finds the new state
// instead of a future.
func (a *activation) resolveActivated(err error) {
	var f *rt.Future[struct{}]
	a.mu.Lock()
	if x := a.aux.Load(); x != nil {
		f, x.activated = x.activated, nil
	}
	a.mu.Unlock()
	if f != nil {
		f.Resolve(struct{}{}, err)
	}
}
