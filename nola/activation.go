package nola

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

type actorKey struct{ ns, id string }

func (k actorKey) compare(o actorKey) int {
	if c := cmp.Compare(k.ns, o.ns); c != 0 {
		return c
	}
	return cmp.Compare(k.id, o.id)
}

// Activation states.
const (
	stateActivating int32 = iota
	stateReady
	stateEvicted // idle eviction or release: ownership may be kept
	stateFenced  // the incarnation ended, or the activation broke
)

// activationBytes is the memory charged to an activation besides its KV
// cache, for placement's memory tie-break.
const activationBytes = 1 << 10

// activation is one live instance of an actor on this server, confirmed
// under one incarnation. Invocations run one at a time under lock.
type activation struct {
	id       uint64
	srv      *Server
	tbl      *table
	key      actorKey
	ref      Ref
	inc      *registry.Incarnation
	epoch    int64              // of the actor record (see registry.Bump)
	ownerRec []byte             // the actor record this activation owns: fences compare it
	kvBudget *registry.KVBudget // computed on the first write (guarded by lock)

	state     atomic.Int32
	lastUsed  atomic.Int64 // monotonic nanos of the last invocation
	activated *rt.Future[struct{}]

	lock  rt.Sema
	actor Actor
	// Guarded by lock:
	txn        kvTxn // the running invocation's writes
	cache      map[string]cacheEntry
	cacheBytes int
	charged    int64 // bytes added to srv.memBytes

	mu     sync.Mutex // guards timers; never held across a blocking call
	timers map[string]*actorTimer
}

const nShards = 64

// table maps actors to activations, sharded to keep parallel invocations of
// different actors off one lock.
type table struct {
	shards [nShards]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[actorKey]*activation
}

func newTable() *table {
	t := &table{}
	for i := range t.shards {
		t.shards[i].m = map[actorKey]*activation{}
	}
	return t
}

// hash is FNV-1a over the key: deterministic (shard choice must not
// depend on a per-process seed under simulation) and allocation-free.
func (k actorKey) hash() uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(k.ns); i++ {
		h = (h ^ uint32(k.ns[i])) * 16777619
	}
	h = (h ^ 0xff) * 16777619
	for i := 0; i < len(k.id); i++ {
		h = (h ^ uint32(k.id[i])) * 16777619
	}
	return h
}

func (t *table) shard(k actorKey) *shard { return &t.shards[k.hash()%nShards] }

// sorted returns every activation in key order (iteration order must not
// depend on map order: determinism).
func (t *table) sorted() []*activation {
	return t.collect(func(*activation) bool { return true })
}

func (t *table) collect(keep func(*activation) bool) []*activation {
	var out []*activation
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, a := range sh.m {
			if keep(a) {
				out = append(out, a)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(x, y *activation) int { return x.key.compare(y.key) })
	return out
}

// errGone is internal: the activation was evicted between lookup and lock;
// the caller looks up again.
var errGone = errors.New("activation gone")

// HandleInvoke serves one invocation; it is the server's Handler.
func (s *Server) HandleInvoke(ctx context.Context, req Request) ([]byte, error) {
	if err := checkRequest(&req, s.cfg.Limits); err != nil {
		return nil, err
	}
	return s.handle(ctx, &req)
}

// handleChecked serves a request from a Client of this process, which
// validated its names' encoding: the other checks run again against this
// server's limits (the UTF-8 scan is ~20 ns of a ~250 ns in-process call).
// LocalNetwork uses it.
func (s *Server) handleChecked(ctx context.Context, req Request) ([]byte, error) {
	if err := checkRequestLimits(&req, s.cfg.Limits, false); err != nil {
		return nil, err
	}
	return s.handle(ctx, &req)
}

func (s *Server) handle(ctx context.Context, req *Request) ([]byte, error) {
	for _, id := range req.Chain {
		if id == req.ActorID {
			return nil, newErr(CodeBadRequest, false, nil,
				"call cycle: %s is waiting on a call that calls it back; it would deadlock", req.ActorID)
		}
	}
	for {
		a, err := s.lookup(ctx, req)
		if err != nil {
			return nil, err
		}
		res, err := s.invokeOn(ctx, a, req, false)
		if err == errGone {
			continue
		}
		return res, err
	}
}

func (s *Server) notServing() error {
	if s.stopped.Load() {
		return &Error{Code: CodeNotOwner, Message: "server " + s.cfg.ID + " is shutting down", Retryable: true}
	}
	return &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " has no valid lease", Retryable: true}
}

// lookup returns the ready activation for req's actor, activating it first
// if needed. Concurrent first calls share one activation attempt.
func (s *Server) lookup(ctx context.Context, req *Request) (*activation, error) {
	key := actorKey{req.Namespace, req.ActorID}
	for {
		if s.stopped.Load() {
			return nil, s.notServing()
		}
		t := s.table.Load()
		sh := t.shard(key)
		sh.mu.RLock()
		a := sh.m[key]
		sh.mu.RUnlock()
		if a != nil {
			// invokeOn checks the lease and deadline of a ready one.
			switch a.state.Load() {
			case stateReady:
				if req.ActorType != "" && req.ActorType != a.ref.Type {
					return nil, newErr(CodeBadRequest, false, nil, "actor %s is a %q, not a %q", req.ActorID, a.ref.Type, req.ActorType)
				}
				return a, nil
			case stateActivating:
				if _, err := a.activated.Wait(ctx); err != nil {
					if ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
						// The attempt ran on the first caller's context, and
						// that caller gave up; ours still has time.
						continue
					}
					// Our invocation has not started: nothing ran.
					return nil, wrapBefore(err, "waiting for activation of %s", req.ActorID)
				}
			}
			continue
		}
		l := s.lease.Load()
		if l == nil || !s.live(l.inc) {
			return nil, s.notServing()
		}
		if req.ActorType == "" {
			return nil, newErr(CodeBadRequest, false, nil, "actor type is required to activate %s", req.ActorID)
		}
		a = s.newActivation(t, key, req.ActorType, l.inc)
		sh.mu.Lock()
		if sh.m[key] != nil {
			sh.mu.Unlock()
			continue
		}
		sh.m[key] = a
		sh.mu.Unlock()
		s.activations.Add(1)
		s.charge(a, activationBytes)
		if s.table.Load() != t || s.stopped.Load() {
			// A fence (or Shutdown) swapped the table between our load and
			// our insert: its sweep of the old table may have missed this
			// entry, and the next call would not find it. Or Shutdown
			// began after our check, with our table already its new one,
			// which it never releases. Start over (and stop).
			s.dropWith(a, stateFenced, &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " was fenced"})
			continue
		}

		if err := s.activate(ctx, a, req.Chain); err != nil {
			s.dropWith(a, stateFenced, err)
			return nil, err
		}
		if !a.state.CompareAndSwap(stateActivating, stateReady) {
			err := &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " was fenced during activation", Retryable: true}
			a.activated.Resolve(struct{}{}, err)
			return nil, err
		}
		a.lastUsed.Store(int64(s.rt.Mono()))
		a.activated.Resolve(struct{}{}, nil)
		s.stats.activated.Add(1)
		if o := s.cfg.Observer; o != nil {
			o.Activated(a.event("", false))
		}
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("activate %s/%s on %s#%d", key.ns, key.id, s.cfg.ID, a.inc.Num))
		}
		return a, nil
	}
}

func (s *Server) newActivation(t *table, key actorKey, typ string, inc *registry.Incarnation) *activation {
	a := &activation{
		id:        s.nextActivation.Add(1),
		srv:       s,
		tbl:       t,
		key:       key,
		ref:       Ref{Namespace: key.ns, ID: key.id, Type: typ},
		inc:       inc,
		activated: rt.NewFuture[struct{}](s.rt),
		lock:      s.rt.NewSema(1),
	}
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
	factory, err := s.factory(ctx, a.key.ns, a.ref.Type)
	if err != nil {
		return err
	}
	var (
		epoch int64
		ok    bool
	)
	if s.inDoubt(a.inc, a.key, false) {
		// The last commit of this actor here has an unknown outcome:
		// move the record to a new epoch so that commit can never land.
		if epoch, ok, err = s.reg.Bump(ctx, a.inc, a.key.ns, a.key.id, a.ref.Type); err == nil && ok {
			s.inDoubt(a.inc, a.key, true)
		}
	} else {
		epoch, ok, err = s.reg.Confirm(ctx, a.inc, a.key.ns, a.key.id, a.ref.Type)
	}
	if err != nil {
		return wrapBefore(err, "")
	}
	if !ok {
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s#%d does not own %s/%s", s.cfg.ID, a.inc.Num, a.key.ns, a.key.id)}
	}
	// The confirmation holds only if the lease was still valid when it
	// answered (the read says who owns the actor; the lease says the
	// incarnation was current).
	if !s.live(a.inc) {
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " lost its lease during activation"}
	}
	a.epoch, a.ownerRec = epoch, a.inc.OwnerRecord(a.ref.Type, epoch)
	if n := s.activations.Load(); n > int64(s.cfg.MaxActivations) {
		// Full: give the actor up so that placement puts it elsewhere.
		if err := s.reg.Release(ctx, a.inc, a.key.ns, a.key.id, a.ref.Type, epoch); err != nil {
			s.log.Debug("release at capacity failed", "actor", a.key.id, "err", err)
			if !errors.Is(err, registry.ErrFenced) {
				// The release may still land. Should this server activate
				// the actor again meanwhile, the late release would leave
				// it serving an actor the record says nobody owns: bump
				// the epoch first, as after a commit of unknown outcome.
				// (Found by the simulator.)
				s.markDoubt(a.inc, a.key)
			}
		}
		return &Error{Code: CodeNotOwner, Retryable: true,
			Message: fmt.Sprintf("server %s is at its activation limit (%d)", s.cfg.ID, s.cfg.MaxActivations)}
	}
	actor, err := safeFactory(factory, a.ref)
	if err != nil {
		return actorError(a.key.id, fmt.Errorf("create: %w", err))
	}
	a.actor = actor
	if hook, ok := actor.(Activator); ok {
		if err := a.lock.Acquire(ctx); err != nil {
			return wrapBefore(err, "activate %s", a.key.id)
		}
		err := s.runHook(ctx, a, "activate", chain, hook.Activate)
		a.lock.Release()
		if err != nil {
			return err
		}
	}
	if !s.live(a.inc) {
		return &Error{Code: CodeFenced, Retryable: true, Message: "server " + s.cfg.ID + " lost its lease during activation"}
	}
	return nil
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
	if cx.broken != nil {
		err = cx.broken // as in invokeOn: a failed commit fails the hook
	}
	if err != nil {
		a.txn.reset()
		if _, isPanic := err.(*panicError); isPanic {
			s.log.Error("actor hook panicked", "actor", a.key.id, "hook", name, "err", err)
		}
		var ne *Error
		if errors.As(err, &ne) && ne.own {
			// A limit of the hook's own (the WASM host's memory limit):
			// keep its code, as invocationFailed does.
			return &Error{Code: ne.Code, Message: a.key.id + ": " + name + ": " + ne.Message}
		}
		return actorError(a.key.id, fmt.Errorf("%s: %w", name, err))
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

type panicError struct {
	val   any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.val) }

// end closes the invocation: later KV, call and timer use of cx fails (its
// context methods stay valid, for code that kept it as a context.Context).
func (cx *Context) end() { cx.over = true }

// invokeOn runs one invocation on a, serialized with all others on a.
func (s *Server) invokeOn(ctx context.Context, a *activation, req *Request, fromTimer bool) ([]byte, error) {
	if err := a.lock.Acquire(ctx); err != nil {
		// Before the start check: the invocation did not run.
		return nil, wrapBefore(err, "waiting for actor %s", a.key.id)
	}
	unfenced := fromTimer && s.cfg.Mutations.TimerIgnoresFence
	switch st := a.state.Load(); {
	case st == stateReady, unfenced:
	case st == stateEvicted:
		a.lock.Release()
		return nil, errGone
	default:
		a.lock.Release()
		return nil, &Error{Code: CodeFenced, Message: "activation of " + a.key.id + " was dropped", Retryable: true}
	}
	// Rule 3: run only under the current incarnation, before the deadline.
	if _, ok := s.liveAt(a.inc); !ok && !unfenced {
		a.lock.Release()
		return nil, &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " is past its lease deadline", Retryable: true}
	}
	s.stats.invocations.Add(1)
	obs := s.cfg.Observer
	if obs != nil {
		obs.ExecStart(a.event(req.Operation, fromTimer))
	}
	// A fresh Context per invocation (its one allocation): code may keep it
	// as a context.Context beyond the call, as net/http does.
	cx := &Context{ctx: ctx, act: a, chain: req.Chain}
	res, err := a.call(cx, req.Operation, req.Payload)
	if err == nil && len(res) > s.cfg.Limits.MaxResultBytes {
		err = ownErr(CodeTooLarge, "result of %d bytes exceeds the limit of %d", len(res), s.cfg.Limits.MaxResultBytes)
	}
	if err == nil {
		err = a.txn.flush(cx)
	}
	if cx.broken != nil && (err == nil || !s.cfg.Mutations.ActorErrorHidesFailedCommit) {
		// A commit failed. Whatever the actor made of it (ignored it, or
		// reported it as an error of its own, as WASM guests must), its
		// memory and cache may disagree with its KV, and a commit of
		// unknown outcome may still land: the activation must go, and the
		// next one bump the epoch. So the commit's error wins.
		err = cx.broken
	}
	end, live := s.liveAt(a.inc)
	if err == nil && !live && !unfenced {
		// The output gate: the invocation ran past the deadline (a pause
		// after the start check). Its reads may postdate another owner's
		// writes, so its answer is withheld and the activation dropped.
		gate := &Error{Code: CodeFenced, Retryable: true,
			Message: "server " + s.cfg.ID + " passed its lease deadline during the invocation; it had no effect"}
		if cx.effects {
			// Its commits or calls stand: retrying would repeat them.
			gate = &Error{Code: CodeTimeout,
				Message: "server " + s.cfg.ID + " passed its lease deadline during the invocation; its effects stand but its answer is withheld"}
		}
		err = &commitError{err: gate}
	}
	cx.end()
	if obs != nil {
		obs.ExecEnd(a.event(req.Operation, fromTimer), err == nil)
	}
	if err != nil {
		a.txn.reset()
		err = s.invocationFailed(a, err)
		a.lock.Release()
		return nil, err
	}
	if !fromTimer {
		a.lastUsed.Store(int64(end))
	}
	a.lock.Release()
	return res, nil
}

// invocationFailed classifies a failed invocation. A panic or a failed
// commit drops the activation (its memory can no longer be trusted); an
// error the actor returned keeps it.
func (s *Server) invocationFailed(a *activation, err error) error {
	var (
		pe *panicError
		ce *commitError
		ne *Error
	)
	switch {
	case errors.As(err, &ce):
		s.stats.failedCommits.Add(1)
		s.drop(a, stateFenced)
		if errors.Is(ce.err, registry.ErrFenced) {
			s.checkLease()
		}
		return ce.err
	case errors.As(err, &pe):
		s.log.Error("actor panicked", "ns", a.key.ns, "actor", a.key.id, "panic", fmt.Sprint(pe.val), "stack", string(pe.stack))
		s.drop(a, stateFenced)
		return actorError(a.key.id, err)
	case errors.As(err, &ne) && ne.own:
		// A limit or misuse of this invocation's own Context (result, KV
		// entry): its writes are discarded; the actor keeps its memory.
		// Errors of nested calls are not own: they become actor errors.
		return &Error{Code: ne.Code, Message: a.key.id + ": " + ne.Message}
	default:
		return actorError(a.key.id, err)
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

func (a *activation) call(cx *Context, op string, payload []byte) (res []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{val: r, stack: debug.Stack()}
		}
	}()
	return a.actor.Invoke(cx, op, payload)
}

// drop removes a from its table and kills it: no invocation runs on it
// again, its timers stop. Ownership is untouched.
func (s *Server) drop(a *activation, st int32) { s.dropWith(a, st, nil) }

// dropWith is drop that resolves a pending activation attempt with err
// (nil: "dropped"), after the entry left the table: a waiter that retries
// then finds it gone instead of spinning on it.
func (s *Server) dropWith(a *activation, st int32, err error) {
	sh := a.tbl.shard(a.key)
	sh.mu.Lock()
	if sh.m[a.key] == a {
		delete(sh.m, a.key)
	}
	sh.mu.Unlock()
	prev := a.state.Swap(st)
	if prev == stateEvicted || prev == stateFenced {
		a.state.Store(prev)
		return
	}
	s.activations.Add(-1)
	s.memBytes.Add(-atomic.LoadInt64(&a.charged))
	if !s.cfg.Mutations.TimerIgnoresFence {
		a.mu.Lock()
		for _, t := range a.timers {
			t.stop()
		}
		a.timers = nil
		a.mu.Unlock()
	}
	if prev == stateActivating {
		if err == nil {
			err = &Error{Code: CodeFenced, Retryable: true, Message: "activation of " + a.key.id + " was dropped"}
		}
		a.activated.Resolve(struct{}{}, err)
	} else if o := s.cfg.Observer; o != nil {
		o.Dropped(a.event("", false))
	}
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("drop %s/%s on %s state=%d", a.key.ns, a.key.id, s.cfg.ID, st))
	}
}

func (s *Server) charge(a *activation, n int64) {
	atomic.AddInt64(&a.charged, n)
	s.memBytes.Add(n)
}

// budget returns the activation's KV commit budget, computing it on first
// use (most actors never write). The caller holds a.lock.
func (a *activation) budget() registry.KVBudget {
	if a.kvBudget == nil {
		budget := a.srv.reg.KVBudget
		if a.srv.cfg.Limits.MaxActorKVBytes > 0 {
			budget = a.srv.reg.CountedKVBudget
		}
		b := budget(a.inc, a.key.ns, a.key.id, a.ownerRec)
		a.kvBudget = &b
	}
	return *a.kvBudget
}

// remember caches a committed KV value (the owner is the only writer).
func (a *activation) remember(key, value []byte, exists bool) {
	if a.cache == nil {
		a.cache = map[string]cacheEntry{}
	}
	before := a.cacheBytes
	if old, ok := a.cache[string(key)]; ok {
		// Gone in any case: a value too big to cache must not leave the
		// old one behind to be read.
		delete(a.cache, string(key))
		a.cacheBytes -= len(key) + len(old.value)
	}
	if len(a.cache) >= maxCacheEntries || a.cacheBytes+len(key)+len(value) > maxCacheBytes {
		clear(a.cache)
		a.cacheBytes = 0
	}
	if len(key)+len(value) <= maxCacheBytes {
		a.cache[string(key)] = cacheEntry{value: value, exists: exists}
		a.cacheBytes += len(key) + len(value)
	}
	if d := a.cacheBytes - before; d != 0 {
		a.srv.charge(a, int64(d))
	}
}

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
		return &Error{Code: CodeFenced, Message: "activation of " + a.key.id + " is gone"}
	}
	if a.timers == nil {
		a.timers = map[string]*actorTimer{}
	}
	if old := a.timers[name]; old != nil {
		old.stop()
	} else if len(a.timers) >= s.cfg.MaxTimersPerActor {
		return ownErr(CodeTooLarge, "timer %q: the actor already has %d pending timers, this server's limit (cancel one first, or raise nola serve --max-timers-per-actor)", name, len(a.timers))
	}
	a.timers[name] = t
	t.timer = s.rt.AfterFunc(delay, "timer "+name, func() { s.fireTimer(a, t) })
	return nil
}

func (a *activation) cancelTimer(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.timers[name]
	if t == nil {
		return false
	}
	t.stop()
	delete(a.timers, name)
	return true
}

// fireTimer invokes the timer's operation through the normal serialized,
// fenced path, then re-arms a periodic timer.
func (s *Server) fireTimer(a *activation, t *actorTimer) {
	a.mu.Lock()
	current := !t.stopped && a.timers[t.name] == t
	a.mu.Unlock()
	if !current || (s.effectAllowed(a) != nil && !s.cfg.Mutations.TimerIgnoresFence) {
		return
	}
	// A timer armed by the Activate hook can fire before the activation
	// is ready (the hook released its lock, or is still running; lookup
	// has not yet marked it ready): wait for that — however long the hook
	// takes — or the firing would find it "dropped".
	if a.state.Load() == stateActivating {
		if _, err := a.activated.Wait(s.ctx); err != nil {
			return // the activation failed or went (or the server): its timers with it
		}
	}
	ctx, cancel := s.rt.WithTimeout(s.ctx, s.cfg.TimerTimeout)
	req := Request{Namespace: a.key.ns, ActorID: a.key.id, ActorType: a.ref.Type, Operation: t.op, Payload: t.payload}
	_, err := s.invokeOn(ctx, a, &req, true)
	cancel()
	if err != nil && err != errGone {
		s.log.Warn("timer invocation failed", "actor", a.key.id, "timer", t.name, "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.stopped || a.timers[t.name] != t {
		return
	}
	if t.period > 0 {
		t.timer = s.rt.AfterFunc(t.period, "timer "+t.name, func() { s.fireTimer(a, t) })
		return
	}
	delete(a.timers, t.name)
}

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
	t := s.table.Load()
	cands := t.collect(func(a *activation) bool {
		return a.state.Load() == stateReady && now-a.lastUsed.Load() >= idle
	})
	for _, a := range cands {
		s.evict(a, true)
	}
	// Near the limit: evict the least recently used down to 80%.
	limit := int64(s.cfg.MaxActivations)
	if n := s.activations.Load(); n > limit*9/10 {
		all := t.collect(func(a *activation) bool { return a.state.Load() == stateReady })
		slices.SortStableFunc(all, func(x, y *activation) int { return cmp.Compare(x.lastUsed.Load(), y.lastUsed.Load()) })
		for _, a := range all {
			if s.activations.Load() <= limit*8/10 {
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
	if !ok || !s.live(a.inc) {
		return
	}
	ctx, cancel := s.rt.WithTimeout(s.ctx, s.cfg.TimerTimeout)
	defer cancel()
	if err := s.runHook(ctx, a, "deactivate", nil, hook.Deactivate); err != nil {
		s.log.Warn("deactivate hook failed", "actor", a.key.id, "err", err)
	}
}

// release deactivates a and gives up its ownership (graceful shutdown).
func (s *Server) release(ctx context.Context, a *activation) error {
	if err := a.lock.Acquire(ctx); err != nil {
		return wrapErr(err, false, "release %s", a.key.id)
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
	if err := s.reg.Release(ctx, a.inc, a.key.ns, a.key.id, a.ref.Type, a.epoch); err != nil {
		return wrapErr(err, false, "")
	}
	return nil
}
