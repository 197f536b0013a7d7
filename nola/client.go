package nola

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// Client invokes actors by name. It resolves an actor's server through the
// registry (placing the actor if it has no live owner), caches the route,
// and retries — after re-resolving — when a server answers that it does not
// own the actor. Stale routes cost a retry, never a wrong answer: only the
// owner under its current incarnation ever runs an invocation.
type Client struct {
	rt        rt.Runtime
	reg       *registry.Registry
	tr        Transport
	limits    Limits
	attempts  int
	checkType func(ctx context.Context, ns, typ string) error
	routes    routeCache
	watch     ownerWatch
	// local is the server this client belongs to, if any: worker calls
	// run there (worker.go).
	local *Server
	// workerAddrs caches the live servers' addresses for a standalone
	// client's worker calls, read without a lock.
	workerAddrs atomic.Pointer[addrList]
}

// addrList is a snapshot of live servers' addresses and when it was taken.
type addrList struct {
	addrs []string
	at    time.Duration
}

// workerAddrTTL bounds how stale the address list for worker calls may be
// (the registry's own server list is cached for as long again).
const workerAddrTTL = time.Second

// ClientConfig configures a standalone client.
type ClientConfig struct {
	// Runtime is the client's clock, tasks and randomness (default: the
	// real one).
	Runtime   rt.Runtime
	Store     kv.Store
	Root      string
	Transport Transport
	Limits    Limits
	// MaxAttempts bounds sends per invocation (default 8); retries back
	// off from 1ms to 100ms.
	MaxAttempts int
	// CheckType, if set, vets an actor type before the client places (and
	// so creates) an actor of that type, so that a typo does not leave an
	// actor of a type no server can run. Servers' own clients check
	// against the server's types.
	CheckType func(ctx context.Context, ns, typ string) error
	// OwnerCheckInterval is how often, while calls are in flight, the
	// client checks that their owners still hold their leases, so that a
	// call to a paused or cut-off owner ends (and its actor moves) about a
	// lease TTL after the owner stopped, not at the call's deadline
	// (default 250ms; negative: never). Servers' own clients use TTL/8.
	OwnerCheckInterval time.Duration
	// Placement weighs the load figures when this client places an actor
	// (zero: registry.DefaultPlacement; docs/placement.md).
	Placement registry.PlacementPolicy
}

// NewClient returns a client that is not part of a server.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Store == nil || cfg.Transport == nil {
		return nil, errors.New("nola: client config: Store and Transport are required")
	}
	if cfg.Runtime == nil {
		cfg.Runtime = rt.NewReal()
	}
	if err := cfg.Placement.Validate(); err != nil {
		return nil, fmt.Errorf("nola: client config: %w", err)
	}
	reg := registry.New(cfg.Store, cfg.Runtime, registry.Options{Root: cfg.Root, Placement: cfg.Placement})
	c := newClient(cfg.Runtime, reg, cfg.Transport, cfg.Limits.withDefaults(), cfg.MaxAttempts)
	c.checkType = cfg.CheckType
	switch {
	case cfg.OwnerCheckInterval < 0:
		c.watch.interval = 0
	case cfg.OwnerCheckInterval > 0:
		c.watch.interval = cfg.OwnerCheckInterval
	}
	return c, nil
}

func newClient(r rt.Runtime, reg *registry.Registry, tr Transport, l Limits, attempts int) *Client {
	if attempts <= 0 {
		attempts = 8
	}
	c := &Client{rt: r, reg: reg, tr: tr, limits: l, attempts: attempts}
	c.watch = ownerWatch{c: c, interval: defaultOwnerCheck}
	c.routes.init()
	return c
}

const defaultOwnerCheck = 250 * time.Millisecond

// Call runs operation op with payload on the actor ref names, creating it
// (as a ref.Type) if it does not exist, and returns its result. An empty
// ref.Type invokes an existing actor of any type. nola.Call is its typed
// form.
func (c *Client) Call(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error) {
	return c.typedInvoke(ctx, ref, op, payload)
}

// Invoke is Call with the reference spelled out: operation op with payload
// on actor (ns, id) of type typ.
func (c *Client) Invoke(ctx context.Context, ns, id, typ, op string, payload []byte) ([]byte, error) {
	return c.invoke(ctx, Request{Namespace: ns, ActorID: id, ActorType: typ, Operation: op, Payload: payload})
}

// Create creates actor (ns, id) of type typ with creation arguments args
// (nil: none), without invoking it, and reports whether this call created
// it. The arguments are stored with the actor in the commit that creates
// it; the actor's Creator hook receives them at its first activation (the
// first invocation). If the actor exists already, nothing changes — its
// arguments are those of the call that created it — and created is false;
// an existing actor of another type is a bad_request.
func (c *Client) Create(ctx context.Context, ns, id, typ string, args []byte) (created bool, _ error) {
	if err := checkName("namespace", ns, c.limits, false); err != nil {
		return false, err
	}
	if err := checkName("actor ID", id, c.limits, false); err != nil {
		return false, err
	}
	if err := checkName("actor type", typ, c.limits, false); err != nil {
		return false, err
	}
	if err := checkCreationArgs(args, c.limits); err != nil {
		return false, err
	}
	if c.checkType != nil {
		if err := c.checkType(ctx, ns, typ); err != nil {
			return false, wrapBefore(err, "")
		}
	}
	// CreateActor, not EnsureActivationArgs: a caller creating actors
	// expects them not to exist, so the placement is committed without
	// reading the record first (one store round trip; concurrent creations
	// share etcd transactions). An existing actor costs one refused commit
	// more before the usual read.
	p, err := c.reg.CreateActor(ctx, ns, id, typ, args)
	if err != nil {
		return false, wrapBefore(err, "")
	}
	c.routes.put(actorKey{ns, id}, route{addr: p.Addr, typ: p.Type, owner: target{p.ServerID, p.Incarnation}})
	return p.Created, nil
}

// Do sends a prepared request.
func (c *Client) Do(ctx context.Context, req Request) ([]byte, error) { return c.invoke(ctx, req) }

func (c *Client) invoke(ctx context.Context, req Request) ([]byte, error) {
	return c.invokeGated(ctx, req, nil)
}

// invokeGated is invoke with a check run right before each send: an
// actor's outgoing call must not leave after its server's lease deadline.
func (c *Client) invokeGated(ctx context.Context, req Request, gate func() error) ([]byte, error) {
	key := actorKey{req.Namespace, req.ActorID}
	if c.local != nil && !req.Delete && req.Worker == "" {
		// A server's own client (the HTTP API's, its actors'): an actor
		// this server hosts runs here, found by one lookup in its table
		// instead of a route lookup and then the table's.
		if res, done, err := c.local.invokeResident(ctx, &req, &c.limits, gate); done {
			return res, err
		}
	}
	cached, cachedOK := c.routes.get(key)
	if cachedOK && (req.ActorType == "" || req.ActorType == cached.typ) {
		// A cached route means this client validated the namespace, ID
		// and type before: only the rest of the request is new.
		if err := checkName("operation", req.Operation, c.limits, false); err != nil {
			return nil, err
		}
		if len(req.Payload) > c.limits.MaxPayloadBytes || len(req.CreationArgs) > c.limits.MaxCreationArgsBytes {
			return nil, checkRequest(&req, c.limits)
		}
	} else if err := checkRequest(&req, c.limits); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 1 {
			if err := c.backoff(ctx, attempt); err != nil {
				// The deadline passed between attempts: nothing ran (every
				// earlier attempt failed retryably).
				return nil, c.notSent(ctx, req, lastErr)
			}
		}
		r, ok := cached, cachedOK
		if attempt > 0 {
			r, ok = c.routes.get(key)
		}
		if ok && rt.Buggify(c.rt, "client.route-forgotten") {
			// A route cache may lose any entry at any time (it is only
			// a hint): resolve through the registry instead.
			c.routes.drop(key, r)
			ok = false
		}
		if ok && c.watch.isDead(r.owner) {
			// Its owner's lease is gone: place the actor afresh.
			c.routes.drop(key, r)
			ok = false
		}
		if !ok || (req.ActorType != "" && r.typ != req.ActorType) {
			if c.checkType != nil && req.ActorType != "" {
				if err := c.checkType(ctx, req.Namespace, req.ActorType); err != nil {
					if err = wrapBefore(err, ""); IsRetryable(err) && ctx.Err() != nil {
						return nil, c.notSent(ctx, req, err)
					}
					return nil, err
				}
			}
			p, err := c.reg.EnsureActivationArgs(ctx, req.Namespace, req.ActorID, req.ActorType, req.CreationArgs)
			if err != nil {
				// Placement comes before any send: the invocation did not
				// run, so a deadline here is a retryable timeout.
				err = wrapBefore(err, "")
				if IsRetryable(err) {
					if ctx.Err() != nil {
						return nil, c.notSent(ctx, req, err)
					}
					lastErr = err
					continue
				}
				return nil, err
			}
			r = route{addr: p.Addr, typ: p.Type, owner: target{p.ServerID, p.Incarnation}}
			c.routes.put(key, r)
		}
		sent := req
		sent.ActorType = r.typ
		sent.CreationArgs = nil // stored by placement, or ignored
		if gate != nil {
			if err := gate(); err != nil {
				return nil, err
			}
		}
		if ctx.Err() != nil {
			return nil, c.notSent(ctx, req, lastErr)
		}
		res, gone, err := c.send(ctx, r, sent)
		if err == nil {
			return res, nil
		}
		if gone && ctx.Err() == nil {
			// The owner's lease went while the call was in flight.
			c.routes.drop(key, r)
			if !IsRetryable(err) {
				return nil, &Error{Code: CodeTimeout, cause: err, Message: fmt.Sprintf(
					"invoke %s/%s: its owner %s#%d lost its lease while the call was in flight; outcome unknown",
					req.Namespace, req.ActorID, r.owner.sid, r.owner.inc)}
			}
			lastErr = err
			continue // never sent: place it again
		}
		if !IsRetryable(err) {
			if code := CodeOf(err); code == CodeTimeout || code == CodeUnavailable {
				// The server may be gone: resolve afresh next time. The
				// error names the owner the call went to, whatever
				// answered it: a caller several hops away learns which
				// server did not answer.
				c.routes.drop(key, r)
				return nil, ownerErr(req, r, err)
			}
			return nil, err
		}
		c.routes.drop(key, r)
		lastErr = err
		if ctx.Err() != nil {
			// Every attempt failed retryably: nothing ran.
			return nil, c.notSent(ctx, req, err)
		}
	}
	return nil, lastErr
}

// ownerErr wraps a timeout or unavailability of a call sent to r's owner
// so that its message names the owner (server ID, incarnation, address);
// code, retryability and cause stay the error's own.
func ownerErr(req Request, r route, err error) error {
	who := r.addr
	if r.owner.sid != "" {
		who = fmt.Sprintf("%s#%d at %s", r.owner.sid, r.owner.inc, r.addr)
	}
	msg := err.Error()
	var ne *Error
	if errors.As(err, &ne) {
		if ne.Message == "" {
			msg = string(ne.Code)
		} else {
			msg = ne.Message
		}
	}
	return &Error{Code: CodeOf(err), Retryable: IsRetryable(err), cause: err,
		Message: fmt.Sprintf("invoke %s/%s on its owner %s: %s", req.Namespace, req.ActorID, who, msg)}
}

// notSent is the error of an invocation whose deadline passed (or whose
// caller gave up) before it could have run anywhere: a timeout, retryable.
// cause is the last failure, if any.
func (c *Client) notSent(ctx context.Context, req Request, cause error) error {
	msg := fmt.Sprintf("invoke %s/%s: deadline passed before the invocation was sent; it did not run", req.Namespace, req.ActorID)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Error{Code: CodeTimeout, Retryable: true, Message: msg, cause: ctx.Err()}
}

// send forwards req along r, watching r's owner (see ownerWatch) unless
// the transport runs the call on this task. gone reports that the owner's
// lease was found gone and the call cancelled because of it. The call
// runs under a child of ctx that the watch can cancel: ctx's own
// ForkCancel's if it has one (CancelForker), the runtime's WithCancel
// otherwise.
func (c *Client) send(ctx context.Context, r route, req Request) (_ []byte, gone bool, _ error) {
	if c.watch.interval <= 0 || r.owner.sid == "" {
		res, err := c.tr.Invoke(ctx, r.addr, req)
		return res, false, err
	}
	if d, ok := c.tr.(DirectTransport); ok && d.Direct(r.addr) {
		res, err := c.tr.Invoke(ctx, r.addr, req)
		return res, false, err
	}
	var (
		fctx   context.Context
		cancel context.CancelFunc
	)
	if f, ok := ctx.(CancelForker); ok {
		fctx, cancel = f.ForkCancel()
	} else {
		fctx, cancel = c.rt.WithCancel(ctx)
	}
	p := c.watch.begin(r.owner, cancel)
	res, err := c.tr.Invoke(fctx, r.addr, req)
	gone = c.watch.end(p)
	cancel()
	return res, gone && err != nil, err
}

// backoff sleeps before attempt: 1ms doubling to 100ms, with jitter.
func (c *Client) backoff(ctx context.Context, attempt int) error {
	d := time.Millisecond << min(attempt-2, 7)
	d = min(d, 100*time.Millisecond)
	d = d/2 + time.Duration(c.rt.Uint64()%uint64(d/2+1))
	return c.rt.Sleep(ctx, d)
}

// Forget drops the cached route of an actor.
func (c *Client) Forget(ns, id string) { c.routes.drop(actorKey{ns, id}, route{}) }

type route struct {
	addr, typ string
	owner     target // the incarnation placement named
}

// routeCache maps actors to routes. Its entries point to interned routes:
// the actors placed on one server incarnation share one route value, so
// an entry is a key and one pointer (40 bytes of map slot, three pointers
// for the collector to follow) instead of a key and three strings and an
// int (88 bytes, six pointers) — what a million cached routes cost in
// memory and in GC marking work is most of the difference.
type routeCache struct {
	shards [nShards]routeShard

	internMu sync.Mutex
	interned map[route]*route
}

type routeShard struct {
	mu sync.RWMutex
	m  map[actorKey]*route
}

func (rc *routeCache) init() {
	for i := range rc.shards {
		rc.shards[i].m = map[actorKey]*route{}
	}
	rc.interned = map[route]*route{}
}

func (rc *routeCache) shard(k actorKey) *routeShard { return &rc.shards[k.hash()%nShards] }

func (rc *routeCache) get(k actorKey) (route, bool) {
	sh := rc.shard(k)
	sh.mu.RLock()
	p := sh.m[k]
	sh.mu.RUnlock()
	if p == nil {
		return route{}, false
	}
	return *p, true
}

// maxRoutesPerShard bounds the cache (64 shards: about a million routes).
// A full shard is emptied: a forgotten route costs one registry read.
const maxRoutesPerShard = 1 << 14

// maxInterned bounds the interned routes: one per (server address,
// incarnation, actor type) seen, so a few per live server; beyond it
// (incarnations come and go) the set starts over. Interning only saves
// memory, so starting over is always correct: routes already cached
// keep their pointers, equal routes are compared by value.
const maxInterned = 1 << 10

// intern returns the shared copy of r. Interned routes are never
// modified.
func (rc *routeCache) intern(r route) *route {
	rc.internMu.Lock()
	defer rc.internMu.Unlock()
	if p, ok := rc.interned[r]; ok {
		return p
	}
	if len(rc.interned) >= maxInterned {
		clear(rc.interned)
	}
	p := &r
	rc.interned[r] = p
	return p
}

func (rc *routeCache) put(k actorKey, r route) {
	p := rc.intern(r)
	sh := rc.shard(k)
	sh.mu.Lock()
	if len(sh.m) >= maxRoutesPerShard {
		clear(sh.m)
	}
	if cur, ok := sh.m[k]; !ok || cur != p {
		// A copy of the key, even over an existing entry: an assignment
		// stores the key it is given, and k may alias a request line or
		// (Context.Invoke) the calling activation's inline key.
		sh.m[k.owned()] = p
	}
	sh.mu.Unlock()
}

// drop removes k's route if it is still r (or unconditionally for a zero r).
func (rc *routeCache) drop(k actorKey, r route) {
	sh := rc.shard(k)
	sh.mu.Lock()
	if cur := sh.m[k]; cur != nil && (r == route{} || *cur == r) {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
}

// CallWorker runs operation op of the stateless worker type typ in
// namespace ns and returns its result. A server's own client (an actor's,
// or the HTTP API's) runs it on that server; a standalone client sends it
// to a live server chosen at random, and tries another when one answers
// with a retryable error (unavailable, overloaded, shutting down). No
// placement and no owner lookup are involved.
func (c *Client) CallWorker(ctx context.Context, ns, typ, op string, payload []byte) ([]byte, error) {
	req := Request{Namespace: ns, Worker: typ, Operation: op, Payload: payload}
	if err := checkRequest(&req, c.limits); err != nil {
		return nil, err
	}
	if c.local != nil {
		return c.local.runWorker(ctx, &req, nil)
	}
	return c.sendWorker(ctx, req)
}

// sendWorker sends a worker request to some live server, retrying
// retryable failures on others.
func (c *Client) sendWorker(ctx context.Context, req Request) ([]byte, error) {
	var (
		lastErr  error
		lastAddr string
	)
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 1 {
			if err := c.backoff(ctx, attempt); err != nil {
				return nil, c.notSentWorker(ctx, req, lastErr)
			}
		}
		addrs, err := c.workerTargets(ctx)
		if err != nil {
			if !IsRetryable(err) {
				return nil, err
			}
			lastErr = err
			continue
		}
		i := int(c.rt.Uint64() % uint64(len(addrs)))
		if addrs[i] == lastAddr && len(addrs) > 1 {
			i = (i + 1) % len(addrs) // not where it just failed
		}
		addr := addrs[i]
		if ctx.Err() != nil {
			return nil, c.notSentWorker(ctx, req, lastErr)
		}
		res, err := c.tr.Invoke(ctx, addr, req)
		if err == nil {
			return res, nil
		}
		if !IsRetryable(err) {
			return nil, err
		}
		if CodeOf(err) != CodeOverloaded {
			// The server may be gone: list them afresh.
			c.forgetWorkerTargets()
		}
		lastErr, lastAddr = err, addr
		if ctx.Err() != nil {
			return nil, c.notSentWorker(ctx, req, err)
		}
	}
	return nil, lastErr
}

// workerTargets returns the addresses of the live servers (never empty).
func (c *Client) workerTargets(ctx context.Context) ([]string, error) {
	now := c.rt.Mono()
	if l := c.workerAddrs.Load(); l != nil && now-l.at < workerAddrTTL {
		return l.addrs, nil
	}
	members, err := c.reg.CachedServers(ctx)
	if err != nil {
		return nil, wrapBefore(err, "list servers")
	}
	if len(members) == 0 {
		c.reg.ForgetServers()
		return nil, &Error{Code: CodeUnavailable, Retryable: true, cause: registry.ErrNoServers, Message: "no live server"}
	}
	addrs := make([]string, len(members))
	for i, m := range members {
		addrs[i] = m.Record.Addr
	}
	c.workerAddrs.Store(&addrList{addrs: addrs, at: now})
	return addrs, nil
}

func (c *Client) forgetWorkerTargets() {
	c.workerAddrs.Store(nil)
	c.reg.ForgetServers()
}

// notSentWorker is notSent for a worker call.
func (c *Client) notSentWorker(ctx context.Context, req Request, cause error) error {
	msg := fmt.Sprintf("call worker %s/%s: deadline passed before the call was sent; it did not run", req.Namespace, req.Worker)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Error{Code: CodeTimeout, Retryable: true, Message: msg, cause: ctx.Err()}
}
