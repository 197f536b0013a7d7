package nola

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/rt"
)

// Server hosts activations. It registers itself in the registry as an
// incarnation, keeps its lease alive, and serves invocations only for actors
// whose ownership it confirmed under its current incarnation and only before
// its local deadline. When the deadline passes (or the lease is gone) it
// fences itself: every activation is dropped, as in a crash, and it
// registers again as a new incarnation.
type Server struct {
	cfg    ServerConfig
	rt     rt.Runtime
	reg    *registry.Registry
	client *Client
	log    *slog.Logger

	lease atomic.Pointer[leaseState] // nil while not registered (fenced)
	// fencedInc is the incarnation fenced last; its lease is revoked
	// before registering again, so the new registration need not wait for
	// it to expire.
	fencedInc atomic.Pointer[registry.Incarnation]
	table     atomic.Pointer[table]

	activations    atomic.Int64
	nextActivation atomic.Uint64
	memBytes       atomic.Int64
	stats          serverStats

	ctx    context.Context // cancelled by Shutdown/Halt: ends background tasks
	cancel context.CancelFunc
	tasks  *taskGroup

	mu      sync.Mutex // guards started/stopped transitions
	started bool
	stopped atomic.Bool
}

// leaseState is one incarnation, its local deadline and when the keep-alive
// that set it was sent (monotonic nanos).
type leaseState struct {
	inc      *registry.Incarnation
	deadline atomic.Int64
	sent     atomic.Int64

	// doubt holds the actors whose last commit under this incarnation has
	// an unknown outcome: their next activation must Bump the epoch first.
	mu    sync.Mutex
	doubt map[actorKey]struct{}
}

// inDoubt reports whether k is in doubt under incarnation inc; clear takes
// it out. markDoubt puts it in.
func (s *Server) inDoubt(inc *registry.Incarnation, k actorKey, clear bool) bool {
	l := s.lease.Load()
	if l == nil || l.inc != inc {
		return false // a later incarnation: its records are new anyway
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, in := l.doubt[k]
	if clear {
		delete(l.doubt, k)
	}
	return in
}

func (s *Server) markDoubt(inc *registry.Incarnation, k actorKey) {
	l := s.lease.Load()
	if l == nil || l.inc != inc {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.doubt == nil {
		l.doubt = map[actorKey]struct{}{}
	}
	l.doubt[k] = struct{}{}
}

// LeaseInfo describes the server's current lease.
type LeaseInfo struct {
	// Incarnation is 0 while the server is fenced or stopped.
	Incarnation int64
	// Age is the time since the last successful keep-alive was sent.
	Age time.Duration
	// Valid reports whether the server may serve now (before its deadline).
	Valid bool
}

// Lease returns the server's current lease.
func (s *Server) Lease() LeaseInfo {
	l := s.lease.Load()
	if l == nil {
		return LeaseInfo{}
	}
	now := s.rt.Mono()
	return LeaseInfo{
		Incarnation: l.inc.Num,
		Age:         now - time.Duration(l.sent.Load()),
		Valid:       now < time.Duration(l.deadline.Load()),
	}
}

// Limits returns the server's effective limits.
func (s *Server) Limits() Limits { return s.cfg.Limits }

type serverStats struct {
	invocations, activated, evicted, fences, failedCommits atomic.Int64
	lease                                                  leaseStats
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Invocations   int64
	Activated     int64
	Evicted       int64
	Fences        int64
	FailedCommits int64
	Activations   int64
	// MemoryBytes estimates the memory held by activations (what load
	// reports carry for placement's tie-break).
	MemoryBytes int64
	Incarnation int64
	// KeepAlive describes the lease keep-alives: round-trip latency,
	// failures and fences by cause.
	KeepAlive KeepAliveStats
}

// NewServer validates cfg and returns a server; Start registers it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	reg := registry.New(cfg.Store, cfg.Runtime, registry.Options{
		Root:                    cfg.Root,
		UnsafeSkipFence:         cfg.Mutations.SkipStoreFence,
		UnsafeIgnoreIncarnation: cfg.Mutations.IgnoreIncarnation,
	})
	s := &Server{
		cfg: cfg,
		rt:  cfg.Runtime,
		reg: reg,
		log: cfg.Logger.With("server", cfg.ID),
	}
	s.client = newClient(cfg.Runtime, reg, cfg.Transport, cfg.Limits, 0)
	s.client.watch.interval = cfg.LeaseTTL / 8
	s.client.checkType = func(ctx context.Context, ns, typ string) error {
		_, err := s.factory(ctx, ns, typ)
		return err
	}
	s.table.Store(newTable())
	return s, nil
}

// ID returns the server's ID.
func (s *Server) ID() string { return s.cfg.ID }

// Addr returns the server's address.
func (s *Server) Addr() string { return s.cfg.Addr }

// Registry returns the server's registry handle.
func (s *Server) Registry() *Registry { return s.reg }

// Registry is the protocol handle type, re-exported for embedders.
type Registry = registry.Registry

// Client returns a client that routes through this server's registry and
// transport (the one its actors use to call other actors).
func (s *Server) Client() *Client { return s.client }

// Incarnation returns the current incarnation number, or 0 while fenced.
func (s *Server) Incarnation() int64 {
	if l := s.lease.Load(); l != nil {
		return l.inc.Num
	}
	return 0
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Invocations:   s.stats.invocations.Load(),
		Activated:     s.stats.activated.Load(),
		Evicted:       s.stats.evicted.Load(),
		Fences:        s.stats.fences.Load(),
		FailedCommits: s.stats.failedCommits.Load(),
		Activations:   s.activations.Load(),
		MemoryBytes:   s.memoryBytes(),
		Incarnation:   s.Incarnation(),
		KeepAlive:     s.stats.lease.snapshot(),
	}
}

// memoryBytes estimates the memory held by activations: the engine's
// share and what the resolver reports (WASM linear memory).
func (s *Server) memoryBytes() int64 {
	n := s.memBytes.Load()
	if r, ok := s.cfg.Resolver.(MemoryReporter); ok {
		n += r.MemoryBytes()
	}
	return n
}

// Start registers the server (retrying until ctx is done) and starts its
// heartbeat and idle-eviction tasks. It returns once the server can serve.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("nola: server %s: already started", s.cfg.ID)
	}
	s.started = true
	s.ctx, s.cancel = s.rt.WithCancel(context.Background())
	s.tasks = newTaskGroup(s.rt)
	s.mu.Unlock()

	if err := s.register(ctx); err != nil {
		s.cancel()
		return err
	}
	s.tasks.Go("heartbeat "+s.cfg.ID, s.heartbeat)
	s.tasks.Go("sweeper "+s.cfg.ID, s.sweeper)
	return nil
}

// register starts a new incarnation, retrying with backoff.
func (s *Server) register(ctx context.Context) error {
	backoff := s.cfg.LeaseTTL / 20
	for {
		if s.stopped.Load() {
			return &Error{Code: CodeUnavailable, Message: "server " + s.cfg.ID + " is stopped"}
		}
		if prev := s.fencedInc.Load(); prev != nil {
			if err := s.reg.Deregister(ctx, prev); err == nil {
				s.fencedInc.CompareAndSwap(prev, nil)
			}
		}
		inc, err := s.reg.Register(ctx, s.cfg.ID, s.cfg.Addr, s.cfg.LeaseTTL)
		if err == nil {
			l := &leaseState{inc: inc}
			l.deadline.Store(int64(registry.LocalDeadline(inc.Sent, s.cfg.LeaseTTL, s.cfg.Rho, s.cfg.Margin)))
			l.sent.Store(int64(inc.Sent))
			s.lease.Store(l)
			s.log.Info("registered", "incarnation", inc.Num)
			if s.rt.Tracing() {
				s.rt.Trace(fmt.Sprintf("register %s#%d", s.cfg.ID, inc.Num))
			}
			s.reportLoad(ctx, l)
			return nil
		}
		if errors.Is(err, registry.ErrServerIDInUse) {
			s.log.Info("waiting for the previous incarnation's lease to expire", "err", err)
		} else {
			s.log.Warn("registration failed", "err", err)
		}
		if serr := s.rt.Sleep(ctx, backoff); serr != nil {
			return wrapErr(errors.Join(serr, err), false, "server %s: register", s.cfg.ID)
		}
	}
}

// heartbeat keeps the lease alive every TTL/3, moves the local deadline
// forward after each success, reports load, and fences the server when the
// lease is gone or the deadline has passed; then it registers again.
func (s *Server) heartbeat() {
	ctx := s.ctx
	period := s.cfg.LeaseTTL / 3
	retry := s.cfg.LeaseTTL / 10
	wait := period
	// cause is what a fence at the local deadline would be blamed on: the
	// outcome of the last keep-alive attempt of the current incarnation.
	cause := FenceDeadline
	for {
		if l := s.lease.Load(); l != nil && !s.cfg.Mutations.SkipDeadlineCheck {
			// Wake at the deadline at the latest, so that the server
			// fences itself on time even if the store hangs.
			wait = max(0, min(wait, time.Duration(l.deadline.Load())-s.rt.Mono()))
		}
		if err := s.rt.Sleep(ctx, wait); err != nil {
			return
		}
		l := s.lease.Load()
		if l == nil {
			if s.stopped.Load() {
				return // Shutdown or Halt: never register again
			}
			if err := s.register(ctx); err != nil {
				return
			}
			wait, cause = period, FenceDeadline
			continue
		}
		sent := s.rt.Mono()
		if sent >= time.Duration(l.deadline.Load()) && !s.cfg.Mutations.SkipDeadlineCheck {
			s.fence(l, cause, "local deadline passed")
			wait = 0
			continue
		}
		kctx, cancel := s.rt.WithTimeout(ctx, max(period/10, min(period, time.Duration(l.deadline.Load())-sent)))
		err := s.reg.KeepAlive(kctx, l.inc)
		timedOut := kctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() == nil {
			s.keepAliveDone(sent, err)
			cause = attemptCause(err, timedOut)
		}
		switch {
		case err == nil:
			next := int64(registry.LocalDeadline(sent, s.cfg.LeaseTTL, s.cfg.Rho, s.cfg.Margin))
			if next > l.deadline.Load() {
				l.deadline.Store(next)
				l.sent.Store(int64(sent))
			}
			wait = period
			s.reportLoad(ctx, l)
		case errors.Is(err, registry.ErrLeaseLost):
			s.fence(l, FenceLeaseLost, "lease lost")
			wait = 0
			continue
		case ctx.Err() != nil:
			return
		default:
			s.log.Warn("keep-alive failed", "err", err)
			wait = retry
		}
		if s.rt.Mono() >= time.Duration(l.deadline.Load()) && !s.cfg.Mutations.SkipDeadlineCheck {
			s.fence(l, cause, "local deadline passed")
			wait = 0
		}
	}
}

func (s *Server) reportLoad(ctx context.Context, l *leaseState) {
	// Bounded: a slow store must not hold up the keep-alives behind it.
	ctx, cancel := s.rt.WithTimeout(ctx, s.cfg.LeaseTTL/12)
	defer cancel()
	err := s.reg.ReportLoad(ctx, l.inc, registry.Load{
		Activations: s.activations.Load(),
		Bytes:       s.memoryBytes(),
		Limit:       int64(s.cfg.MaxActivations),
	})
	if errors.Is(err, registry.ErrFenced) {
		// Our server record is not ours any more (another process took
		// the ID, or the lease expired in between).
		s.fence(l, FenceRecordReplaced, "server record replaced")
		return
	}
	if err != nil {
		s.log.Debug("load report failed", "err", err)
	}
}

// fence ends incarnation l: no more serving under it, every activation
// dropped (their in-memory state is lost, as in a crash; their deactivation
// hooks do not run). The heartbeat registers a new incarnation.
func (s *Server) fence(l *leaseState, cause FenceCause, reason string) {
	if !s.lease.CompareAndSwap(l, nil) {
		return
	}
	s.fencedInc.Store(l.inc)
	s.stats.fences.Add(1)
	s.stats.lease.countFence(cause)
	s.log.Warn("fenced: dropping every activation", "incarnation", l.inc.Num, "reason", reason, "cause", string(cause))
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("fence %s#%d %s", s.cfg.ID, l.inc.Num, reason))
	}
	if s.cfg.Mutations.IgnoreIncarnation {
		return // the bug: activations outlive their incarnation
	}
	old := s.table.Swap(newTable())
	for _, a := range old.sorted() {
		s.drop(a, stateFenced)
	}
}

// live returns the lease if inc is the current incarnation and its deadline
// has not passed.
func (s *Server) live(inc *registry.Incarnation) bool {
	_, ok := s.liveAt(inc)
	return ok
}

// liveAt is live that also returns the clock reading it checked against
// (zero if it did not need one).
func (s *Server) liveAt(inc *registry.Incarnation) (time.Duration, bool) {
	l := s.lease.Load()
	if l == nil {
		return 0, false
	}
	if l.inc != inc && !s.cfg.Mutations.IgnoreIncarnation {
		return 0, false
	}
	now := s.rt.Mono()
	return now, s.cfg.Mutations.SkipDeadlineCheck || now < time.Duration(l.deadline.Load())
}

// effectAllowed is checked before every effect that leaves an activation
// (KV commit, outgoing call, timer): none may take effect after the local
// deadline or under an old incarnation.
func (s *Server) effectAllowed(a *activation) error {
	if !s.live(a.inc) {
		return &Error{Code: CodeFenced, Message: "server " + s.cfg.ID + " lost its lease; effect refused"}
	}
	return nil
}

// Shutdown stops the server gracefully: it stops accepting invocations,
// deactivates every activation (waiting for in-flight ones) and releases its
// ownership so the actors move at once, then ends its incarnation.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.beginStop() {
		return nil
	}
	var errs []error
	deregister := func(l *leaseState) {
		if err := s.reg.Deregister(ctx, l.inc); err != nil {
			errs = append(errs, err)
		}
	}
	if l := s.lease.Load(); l != nil {
		old := s.table.Swap(newTable())
		for _, a := range old.sorted() {
			if err := s.release(ctx, a); err != nil {
				errs = append(errs, err)
			}
		}
		// Nothing may run once the store lease is gone (another server
		// may then own our actors): give up the local lease first.
		s.lease.Store(nil)
		deregister(l)
	}
	s.cancel()
	if err := s.tasks.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("nola: server %s: waiting for tasks: %w", s.cfg.ID, err))
	}
	// A registration that was in flight when we began may have succeeded
	// since: end that incarnation too, or it stays placeable for a TTL.
	if l := s.lease.Swap(nil); l != nil {
		deregister(l)
	}
	s.log.Info("shut down")
	return errors.Join(errs...)
}

// Halt stops the server as a crash would: background tasks end, every
// activation is dropped, nothing is released, the lease is left to expire.
// For tests and tools; a real crash needs no call.
func (s *Server) Halt() {
	if !s.beginStop() {
		return
	}
	if l := s.lease.Swap(nil); l != nil && s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("halt %s#%d", s.cfg.ID, l.inc.Num))
	}
	old := s.table.Swap(newTable())
	for _, a := range old.sorted() {
		s.drop(a, stateFenced)
	}
	s.cancel()
}

func (s *Server) beginStop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.stopped.Load() {
		return false
	}
	s.stopped.Store(true)
	return true
}

// taskGroup tracks tasks so that their owner can wait for them, through the
// runtime (sync.WaitGroup would block the simulator).
type taskGroup struct {
	rt   rt.Runtime
	mu   sync.Mutex
	n    int
	done rt.Sema
}

func newTaskGroup(r rt.Runtime) *taskGroup { return &taskGroup{rt: r, done: r.NewSema(0)} }

func (g *taskGroup) Go(name string, f func()) {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	g.rt.Go(name, func() {
		defer g.done.Release()
		f()
	})
}

// Wait waits for every task started so far.
func (g *taskGroup) Wait(ctx context.Context) error {
	g.mu.Lock()
	n := g.n
	g.n = 0
	g.mu.Unlock()
	for i := 0; i < n; i++ {
		if err := g.done.Acquire(ctx); err != nil {
			return err
		}
	}
	return nil
}
