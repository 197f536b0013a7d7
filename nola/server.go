package nola

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

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
	memBytes       atomic.Int64 // the engine's share: activationBytes and KV caches
	acct           accounting   // Sizer figures, invocation time, rates (accounting.go)
	stats          serverStats
	invariants     invariantMode // what a broken invariant does (invariant.go)
	// workers is the worker table, fixed at NewServer (worker.go).
	workers  map[string]*workerType
	resolved resolvedWorkers // worker types from cfg.WorkerResolver
	// lastInc is the number of this server's latest incarnation:
	// registrations only move it up.
	lastInc atomic.Int64

	// shedding is the hysteresis state of shedding; only the shedder
	// task touches it.
	shedding bool
	// loc is the communication-locality edge table (locality.go).
	loc locality

	ctx    context.Context // cancelled by Shutdown/Halt: ends background tasks
	cancel context.CancelFunc
	tasks  *taskGroup

	mu      sync.Mutex // guards started/stopped transitions
	started bool
	stopped atomic.Bool
}

// Limits returns the server's effective limits.
func (s *Server) Limits() Limits { return s.cfg.Limits }

type serverStats struct {
	invocations, activated, evicted, fences, failedCommits, deleted atomic.Int64
	shed, shedBytes, shedEpisodes                                   atomic.Int64
	localityMoves, localityRounds                                   atomic.Int64
	lease                                                           leaseStats
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Invocations   int64
	Activated     int64
	Evicted       int64
	Fences        int64
	FailedCommits int64
	// Deleted counts the actors this server deleted (as their owner).
	Deleted     int64
	Activations int64
	// MemoryBytes is the memory held by activations: the engine's share
	// (1 KiB each and their KV caches), what actors report through Sizer,
	// and WASM linear memory with its instance overhead. Load reports
	// carry it; placement scores by it; shedding compares it to
	// ServerConfig.MemoryBudget.
	MemoryBytes int64
	// HeapBytes is the process heap as the runtime reports it (the
	// simulator's runtime does not: there it is MemoryBytes).
	HeapBytes int64
	// BusyNanos is the wall time spent in invocations (actor code and
	// their KV commits), on the runtime's clock.
	BusyNanos int64
	// BusyPPM and RateMilli are the busy share (parts per million of one
	// invocation running at all times) and the invocation rate (per
	// 1000 s) over the last load-report window.
	BusyPPM, RateMilli int64
	// Shed counts activations released because the server was over its
	// memory budget or far above the cluster mean, ShedBytes what they
	// held, ShedEpisodes the times shedding began (shed.go).
	Shed, ShedBytes, ShedEpisodes int64
	// LocalityMoves counts actors released towards the server most of
	// their calls went to, LocalityRounds the rounds that looked for
	// them; LocalityActors is the edge table's size and LocalityDropped
	// the samples it had no room for (locality.go).
	LocalityMoves, LocalityRounds, LocalityDropped int64
	LocalityActors                                 int
	Incarnation                                    int64
	// KeepAlive describes the lease keep-alives: round-trip latency,
	// failures and fences by cause.
	KeepAlive KeepAliveStats
}

// NewServer validates cfg and returns a server; Start registers it.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.checkAndFillDefaults(); err != nil {
		return nil, err
	}
	reg := registry.New(cfg.Store, cfg.Runtime, registry.Options{
		Root:      cfg.Root,
		Placement: cfg.Placement,
		Mutations: cfg.Mutations,
	})
	s := &Server{
		cfg: cfg,
		rt:  cfg.Runtime,
		reg: reg,
		log: cfg.Logger.With("server", cfg.ID),

		invariants: invariantModeFor(cfg.Runtime, cfg.Mutations),
		workers:    newWorkerTypes(&cfg),
	}
	s.client = newClient(cfg.Runtime, reg, cfg.Transport, cfg.Limits, 0)
	s.client.watch.interval = cfg.LeaseTTL / 8
	s.client.local = s
	s.client.checkType = func(ctx context.Context, ns, typ string) error {
		_, err := s.factory(ctx, ns, typ)
		return err
	}
	s.table.Store(newTable())
	s.loc.actors = map[actorKey]*callerEdges{}
	if cfg.Locality.Enabled {
		s.loc.every = uint64(cfg.Locality.SampleEvery)
	}
	return s, nil
}

// ID returns the server's ID.
func (s *Server) ID() string { return s.cfg.ID }

// Addr returns the server's address.
func (s *Server) Addr() string { return s.cfg.Addr }

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
	st := Stats{
		Invocations:   s.stats.invocations.Load(),
		Activated:     s.stats.activated.Load(),
		Evicted:       s.stats.evicted.Load(),
		Fences:        s.stats.fences.Load(),
		FailedCommits: s.stats.failedCommits.Load(),
		Deleted:       s.stats.deleted.Load(),
		Activations:   s.activations.Load(),
		MemoryBytes:   s.memoryBytes(),
		HeapBytes:     s.heapBytes(),
		BusyNanos:     s.acct.busy.Load(),
		Incarnation:   s.Incarnation(),
		KeepAlive:     s.stats.lease.snapshot(),
		Shed:          s.stats.shed.Load(),
		ShedBytes:     s.stats.shedBytes.Load(),
		ShedEpisodes:  s.stats.shedEpisodes.Load(),
	}
	st.BusyPPM, st.RateMilli = s.acct.last()
	st.LocalityMoves, st.LocalityRounds = s.stats.localityMoves.Load(), s.stats.localityRounds.Load()
	st.LocalityActors, st.LocalityDropped = s.loc.size()
	return st
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
	if s.cfg.ReclaimInterval > 0 {
		s.tasks.Go("reclaimer "+s.cfg.ID, s.reclaimer)
	}
	if s.shedEnabled() {
		s.tasks.Go("shedder "+s.cfg.ID, s.shedder)
	}
	if s.cfg.Locality.Enabled {
		s.tasks.Go("locality "+s.cfg.ID, s.localityMover)
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
