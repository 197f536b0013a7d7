// Package wasm runs nola actors compiled to WebAssembly: modules uploaded
// at runtime (package wasm/modules), executed with wazero over the waPC
// protocol (package abi), mixed freely with Go actors.
//
// A Host is one server's WASM engine. It is the server's
// nola.TypeResolver: an actor's type is the ID of its module in the
// actor's namespace ("counter-v1"); a Go type registered under the same
// name in ServerConfig.Types wins, because the engine consults Types first.
//
//	host, _ := wasm.New(ctx, wasm.Config{Runtime: r, Modules: modules.New(store, modules.Config{})})
//	srv, _ := nola.NewServer(nola.ServerConfig{..., Resolver: host})
//	host.Attach(srv)
//	defer host.Close(ctx) // after the server stops
//
// # Execution
//
// Each module is compiled once per Host (per server) and shared; each
// activated actor gets its own instance, with its own linear memory, never
// shared. An instance is created by the actor's Activate (running the
// guest's _initialize and wapc_init, if exported, with host calls
// available) and closed by its Deactivate (idle eviction, release). A new
// instance's memory starts from the module's memory image, built once at
// compilation from its data segments (instrument.Rewrite) and mapped
// copy-on-write or copied (see memImage): a standard-Go guest's ~1.3 MB of
// data is neither evaluated nor copied per instance. Better still, once one
// instance of a module has initialized without an effecting host call, the
// module's later instances start from a snapshot of that instance's memory
// and globals and run no initialization at all (see snapshot.go;
// Config.NoSnapshot turns it off). And a deactivated actor's instance of
// such a module is reset to the snapshot rather than closed, and taken by
// the module's next activation, which then skips wazero's instantiation
// too (see recycle.go; Config.RecyclePool, and Config.Premade for
// instances made ahead of demand).
//
// The engine does not call Deactivate when a server fences itself or
// crashes. To bound what such dropped activations leave behind without
// finalizers, the Host tracks every instance and, at most once per
// Config.SweepInterval when it creates an instance, closes the idle ones
// whose actor the attached server no longer hosts (or hosts with a newer
// instance). Close closes everything.
//
// An instance keeps wazero's call engine for __guest_call (a fixed 10 KiB
// stack and more: 12 KB, most of an idle C actor's memory) while it is
// warm; the server's periodic MemoryBytes polls drop it from instances
// idle for Config.EngineIdle, and their next call fetches it again (some
// 20-30 µs, once).
//
// # Limits
//
// Modules are rewritten for fuel metering (package instrument) when
// compiled: every function entry and loop head is a checkpoint. Every
// Config.SliceFuel checkpoints (a slice, default 2^18) the host checks the
// invocation's deadline (the smaller of Config.InvokeTimeout and the
// caller's deadline) and its fuel budget (Config.MaxFuel) and aborts the
// guest past either. CPU is shared by execution slots
// (Config.GuestSlots, see slots.go): a guest computes only while it holds
// one, hands it to the oldest waiting guest at the end of each slice, and
// gives it up during host calls that can block. Memory is capped per
// instance (Config.MaxMemoryPages, lowered per module by its options) and
// for all instances together (Config.MemoryLimit: linear memory plus
// InstanceOverhead and the module's tables each, reserved before it is
// allocated). Past that
// limit memory.grow returns -1 to the guest, and an invocation that then
// fails, or an activation that does not fit, answers
// nola.CodeUnavailable (nola.CodeTooLarge if the limit could never hold
// it). The Host reports its memory to the server (MemoryBytes), which
// counts it in its own estimate and load reports. Results by
// Config.MaxResultBytes; host calls per invocation by
// Config.MaxHostCalls; log output by Config.MaxLogBytes (excess is
// dropped). A trap or an abort discards the instance (see TrapError); other
// actors keep serving.
//
// # Custom host functions
//
// Config.HostFunctions adds the embedder's own host calls, by waPC
// namespace and operation (see HostFunction). Each call is an external
// effect (nola.Context.ExternalEffect): the invocation's pending KV writes
// commit first, and the call is refused to a fenced activation or past the
// invocation's deadline; payload and result are bounded by
// Config.MaxHostCallBytes.
//
// # Determinism
//
// Host functions reach time, randomness and the outside only through the
// invocation's *nola.Context and the server's rt.Runtime, so WASM actors
// run unchanged under the deterministic simulator; fuel (not wall time)
// then bounds runaway guests. wazero itself starts goroutines while
// compiling (the caller waits for them; they touch nothing of the engine's),
// and, only with Config.ContextInterrupt, one per call.
package wasm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
)

// Config configures a Host. Runtime and Modules are required; zero fields
// take defaults.
type Config struct {
	// Runtime is the server's runtime: the clock, timers and randomness
	// guests see.
	Runtime rt.Runtime
	// Modules is where modules are read from.
	Modules *modules.Store
	// ModuleRecheck bounds how long a compiled module is served from the
	// host's cache without reading that it still exists (default 1s;
	// negative: read every time): a deleted module stops resolving — no
	// new actor of its type, no worker call — within this time.
	ModuleRecheck time.Duration
	// Logger receives guest logs and the host's own (default: discard).
	Logger *slog.Logger

	// MaxMemoryPages caps each instance's linear memory in 64 KiB pages
	// (default 256: 16 MiB).
	MaxMemoryPages uint32
	// MemoryLimit caps the memory of all instances together, in bytes:
	// their linear memory plus InstanceOverhead each, and what their
	// tables, element references, segments and globals take
	// (instrument.Rewritten.InstanceBytes). Default 4 GiB.
	// Growth past it fails (memory.grow returns -1); an activation
	// whose initial memory does not fit is refused.
	MemoryLimit int64
	// InvokeTimeout bounds one invocation of a guest (and its
	// initialization), host calls included; the caller's deadline bounds
	// it further. Default 10s. It is measured on the runtime's clock,
	// which stands still under simulation while a guest computes: there
	// MaxFuel is the bound.
	InvokeTimeout time.Duration
	// MaxFuel bounds the checkpoints (function entries and loop
	// iterations) of one invocation. Default 1<<33 (seconds of compute).
	MaxFuel uint64
	// MaxCallDepth bounds how deeply one invocation nests calls inside
	// the guest (default instrument.DefaultMaxCallDepth, 65536 frames; a
	// function with many locals counts as several); deeper, the guest is
	// aborted with a stack-overflow trap. Without it wazero lets a
	// recursing guest grow its stack to some 50 MB, outside
	// MaxMemoryPages and MemoryLimit.
	MaxCallDepth uint32
	// MaxResultBytes bounds a guest's result (default 4 MiB).
	MaxResultBytes int
	// MaxHostCalls bounds the host calls of one invocation (default
	// 100000); exceeding it aborts the guest.
	MaxHostCalls int
	// MaxLogBytes bounds the log output (host log calls, __console_log,
	// stdout and stderr) kept per invocation (default 64 KiB); the rest
	// is dropped.
	MaxLogBytes int
	// SweepInterval is how often, at most, the Host looks for instances
	// of activations the server dropped without deactivating them
	// (default 1m).
	SweepInterval time.Duration
	// EngineIdle is how long an instance stays idle before the Host
	// drops its call engine (default 10s): wazero's per-function call
	// engine, with its fixed 10 KiB stack, is the largest part of an idle
	// C actor's memory (about 12 of 29 KB through nola serve), but
	// fetching it again costs some 20-30 µs, so an instance keeps it
	// while warm and fetches it again on its first call after the drop.
	// The server's periodic MemoryBytes polls drop them (see
	// Host.maybeTrim). nola serve sets it with --wasm-engine-idle.
	EngineIdle time.Duration
	// CompilationCache, if set, shares compiled machine code between
	// Hosts (wazero.NewCompilationCache): useful when one process runs
	// many servers, as tests do.
	CompilationCache wazero.CompilationCache
	// HeapMemory puts instances' linear memory on the Go heap instead of one anonymous mapping per instance (Linux; see
	// mmapAllocator). The heap is faster to allocate from on some
	// machines; mappings keep idle actors' untouched pages out of both the
	// resident set and the Go heap, and give memory back when an instance
	// closes.
	HeapMemory bool
	// ContextInterrupt additionally enables wazero's
	// WithCloseOnContextDone, which interrupts a guest when the
	// invocation's context ends — at the price of a goroutine per call
	// (~0.7 µs). Fuel checkpoints already enforce the deadline; this is
	// for comparison and for production setups that want the caller's
	// cancellation (not only its deadline) to interrupt guests. Not
	// deterministic: never under simulation.
	ContextInterrupt bool

	// GuestSlots bounds the guests that compute at once on this server
	// (default GOMAXPROCS-1, at least 1: one processor stays free for the
	// network and the engine, which Go cannot schedule onto a processor
	// that runs guest code until the guest calls the host); the others wait their turn in FIFO
	// order, so that looping guests cannot starve other actors. A guest
	// gives its slot up at the end of every slice (SliceFuel) and during
	// host calls that can block (calls to actors, KV reads): calls nested
	// to any depth never deadlock the pool. A guest that gets no slot
	// before its deadline fails with nola.CodeTimeout. Negative: no bound
	// (every guest runs at once, as before slots existed).
	GuestSlots int
	// SliceFuel is how many checkpoints (function entries and loop
	// iterations) a guest runs between two looks at the clock, its fuel
	// budget and the guests waiting for a slot (default 1<<18, about a
	// millisecond of a tight loop).
	SliceFuel uint64
	// KeepDataSegments loads modules with their data segments as written
	// instead of merging nearby ones (instrument.CoalesceGap) or taking
	// them out into a memory image (see NoMemoryImage); this switch exists
	// to measure what those gain.
	KeepDataSegments bool
	// NoMemoryImage keeps a module's (merged) data segments in it, for
	// wazero to evaluate and copy into every new instance, instead of
	// building the module's initial memory once at compilation
	// (instrument.Rewrite) and placing that image into each instance's
	// fresh memory: mapped copy-on-write from a sealed memfd when it is
	// large and memory lives in mappings (Linux, not HeapMemory), else
	// copied. The image makes a standard-Go guest's instance cheaper to
	// create and smaller (its ~1.3 MB of data stays shared until written);
	// this switch exists to measure that.
	NoMemoryImage bool
	// NoSnapshot initializes every instance itself (_initialize and
	// wapc_init) instead of starting instances of a module from a
	// snapshot of its first instance's memory and globals, taken right
	// after that instance initialized (see snapshot.go and docs/wasm.md:
	// a module whose initialization has effects is never snapshotted, and
	// what initialization read — clocks, randomness — is shared by the
	// instances started from one snapshot). The snapshot makes a
	// standard-Go guest's instance several times cheaper to create; this
	// switch turns it off, to measure that or for guests that must see
	// fresh randomness in their runtime's own state.
	NoSnapshot bool
	// MaxSnapshotBytes bounds the memory all of this Host's snapshots
	// hold together (each keeps a copy of its module's initialized
	// memory, up to MaxMemoryPages, for as long as the module stays
	// compiled here; default 256 MiB). A module whose snapshot would pass
	// it is not snapshotted: its instances initialize themselves. Without
	// the bound, small uploaded modules whose initialization grows and
	// fills memory would hold memory the server's budget never sees.
	MaxSnapshotBytes int64
	// RecyclePool bounds the instances of one snapshotted module that
	// wait, reset to its snapshot, for the module's next activation
	// (default 4; negative: none). A deactivated actor's instance that
	// ended cleanly is reset — its memory set back to the snapshot's bytes,
	// its globals restored, its host state fresh — instead of closed, and
	// the next activation takes it without instantiating (see
	// recycle.go): with Go guests that are evicted or released and
	// created again, most of a create's cost. Pooled instances count
	// toward MemoryLimit, are closed first when a reservation does not
	// fit, and are closed by the sweep once idle for SweepInterval.
	RecyclePool int
	// Premade is how many instances of each snapshotted module the Host
	// keeps instantiated from the snapshot ahead of demand (default 0:
	// none), made by a task of the runtime (rt.Runtime.Go) after the
	// snapshot is taken and after each activation takes one. It lowers a
	// create's latency, not its CPU: the instantiation is still paid, off
	// the request path. Premade instances wait in the same pool as
	// recycled ones, counted and shed alike; RecyclePool bounds what
	// deactivations add to it, Premade what the task does (a negative
	// RecyclePool turns recycling off, not this).
	Premade int

	// HostFunctions are the embedder's host functions, called by guests
	// with waPC's __host_call (binding "nola") by namespace and
	// operation; see HostFunction. New refuses entries in nola's own
	// namespaces (abi.Reserved), duplicates and empty names with a
	// *HostFunctionError. A call to a function nobody registered fails
	// with "bad_request: unknown host call ns/op".
	HostFunctions []HostFunction
	// MaxHostCallBytes bounds the payload and the result of one call of
	// a HostFunction (default 1 MiB); past it the guest gets a
	// "too_large: ..." host error.
	MaxHostCallBytes int
}

func (c *Config) defaults() error {
	if c.Runtime == nil || c.Modules == nil {
		return errors.New("wasm: config: Runtime and Modules are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxMemoryPages == 0 {
		c.MaxMemoryPages = 256
	}
	if c.MaxMemoryPages > 65536 {
		return fmt.Errorf("wasm: config: MaxMemoryPages %d exceeds 65536", c.MaxMemoryPages)
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("wasm: config: negative MemoryLimit %d", c.MemoryLimit)
	}
	if c.MemoryLimit == 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.InvokeTimeout <= 0 {
		c.InvokeTimeout = 10 * time.Second
	}
	if c.MaxFuel == 0 {
		c.MaxFuel = 1 << 33
	}
	if c.MaxCallDepth == 0 {
		c.MaxCallDepth = instrument.DefaultMaxCallDepth
	}
	if c.MaxCallDepth > instrument.MaxCallDepthLimit {
		return fmt.Errorf("wasm: config: MaxCallDepth %d exceeds %d", c.MaxCallDepth, instrument.MaxCallDepthLimit)
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = 4 << 20
	}
	if c.MaxHostCalls <= 0 {
		c.MaxHostCalls = 100_000
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = 64 << 10
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
	}
	if c.EngineIdle <= 0 {
		c.EngineIdle = 10 * time.Second
	}
	if c.MaxSnapshotBytes <= 0 {
		c.MaxSnapshotBytes = 256 << 20
	}
	if c.RecyclePool == 0 {
		c.RecyclePool = DefaultRecyclePool
	}
	if c.Premade < 0 || c.Premade > maxPremade {
		return fmt.Errorf("wasm: config: Premade %d is outside [0, %d]", c.Premade, maxPremade)
	}
	if c.GuestSlots == 0 {
		c.GuestSlots = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if c.ModuleRecheck == 0 {
		c.ModuleRecheck = time.Second
	}
	if c.SliceFuel == 0 {
		c.SliceFuel = DefaultSliceFuel
	}
	if c.MaxHostCallBytes <= 0 {
		c.MaxHostCallBytes = DefaultMaxHostCallBytes
	}
	if c.SliceFuel > 1<<30 {
		// The fuel counter is an i32 global.
		return fmt.Errorf("wasm: config: SliceFuel %d exceeds 2^30", c.SliceFuel)
	}
	return nil
}

// DefaultMemoryLimit is Config.MemoryLimit's default.
const DefaultMemoryLimit = 4 << 30

// DefaultRecyclePool is Config.RecyclePool's default.
const DefaultRecyclePool = 4

// DefaultSliceFuel is Config.SliceFuel's default.
const DefaultSliceFuel = 1 << 18

// Host runs the WASM actors of one server. It is safe for concurrent use.
type Host struct {
	cfg   Config
	rt    rt.Runtime
	log   *slog.Logger
	wz    wazero.Runtime
	modCf wazero.ModuleConfig
	// sys is where wazero's module type keeps its system context
	// (sysField.drop), found on the first instantiation.
	sys sysField

	isClosed atomic.Bool  // mirrors closed, for the invocation path
	busy     atomic.Int64 // guest executions in flight
	wzClose  sync.Once
	mem      memBudget
	// idleWorker is the part of mem.used held by idle pooled worker
	// instances (worker.go): not activation memory.
	idleWorker atomic.Int64
	// pool holds the idle recycled instances (recycle.go), also charged
	// to mem and, like idle workers, left out of MemoryBytes.
	pool  recyclePool
	slots slotPool
	// images are the memory images with open files: a separate object,
	// which their cleanups may reach without reaching the Host.
	images *imageSet
	// executing counts the slots held, waiting the guests waiting for
	// one, preempted the slices that ended with another guest waiting.
	executing, waiting, preempted atomic.Int64

	mu        sync.Mutex
	closed    bool
	compiled  map[modKey]*compiled
	live      map[*instance]struct{}
	seq       uint64
	lastSweep time.Duration
	// lastTrim is when (monotonic) the last engine trim ran; trimmed
	// counts the engines dropped (see maybeTrim).
	lastTrim atomic.Int64
	trimmed  atomic.Int64
	hosted   func(ns, id string) bool
	stats    Stats

	// custom holds Config.HostFunctions; read-only after New.
	custom map[hostFnKey]*hostFn
}

type modKey struct{ ns, id string }

// compiled is one module compiled for this Host.
type compiled struct {
	ready *rt.Future[struct{}]
	// Set before ready resolves:
	err      error
	name     string // "ns/id", for errors
	info     modules.Info
	cm       wazero.CompiledModule
	minBytes int64 // initial size of its linear memory
	// overhead is what the memory budget charges an instance besides its
	// linear memory: InstanceOverhead and its tables and element
	// references (instrument.Rewritten.InstanceBytes).
	overhead   int64
	initialize bool // exports _initialize
	wapcInit   bool // exports wapc_init
	create     bool // exports nola_create: its actors are nola.Creators
	// image is the initial memory its instances start from (the module
	// has no active data segments left), or nil: the module keeps them.
	image *memImage
	// snap is its post-initialization snapshot's state.
	snap snapState
	// premaking: a task is making instances ahead (Config.Premade).
	premaking atomic.Bool

	// checkedAt is when (the host's monotonic clock, ns) the module was
	// last seen in the store: a cached compilation is served without a
	// store read for Config.ModuleRecheck after that (see stillThere).
	checkedAt atomic.Int64
}

// Stats counts a Host's work.
type Stats struct {
	// Compiled counts module compilations; Instances the live instances;
	// Instantiated, Closed and Swept count instances created, closed, and
	// closed by the sweep of dropped activations; Traps counts aborted
	// guest executions; Running the guest executions in flight.
	Compiled, Instances, Instantiated, Closed, Swept, Traps, Running int64
	// Executing counts the execution slots held (Config.GuestSlots),
	// Waiting the executions waiting for one, Preempted the slices a
	// guest ended by handing its slot to a waiting one.
	Executing, Waiting, Preempted int64
	// MemoryBytes is the memory charged to live instances: their linear
	// memory and overhead each (see Config.MemoryLimit).
	// IdleWorkerBytes is the part of it held by idle pooled worker
	// instances, which Host.MemoryBytes leaves out.
	MemoryBytes, IdleWorkerBytes int64
	// EnginesTrimmed counts the call engines dropped from instances idle
	// for Config.EngineIdle (fetched again by their next invocation).
	EnginesTrimmed int64
	// Pooled counts the idle recycled (or premade) instances
	// (Config.RecyclePool, Config.Premade), which Instances does not, and
	// PooledBytes what they hold of MemoryBytes; Recycled counts the
	// activations that took one instead of instantiating (Instantiated
	// does not count those; it counts premade instances when they are
	// made). A recycled instance counts in Closed when its actor is
	// deactivated, and in nothing more when the pool closes it.
	Pooled, PooledBytes, Recycled int64
}

// New returns a Host. Close it after its server has stopped.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	custom, err := hostFunctionTable(cfg.HostFunctions)
	if err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(cfg.MaxMemoryPages).
		WithCloseOnContextDone(cfg.ContextInterrupt)
	if cfg.CompilationCache != nil {
		rc = rc.WithCompilationCache(cfg.CompilationCache)
	}
	h := &Host{
		mem:      memBudget{limit: cfg.MemoryLimit},
		images:   &imageSet{},
		cfg:      cfg,
		rt:       cfg.Runtime,
		log:      cfg.Logger,
		wz:       wazero.NewRuntimeWithConfig(ctx, rc),
		compiled: map[modKey]*compiled{},
		live:     map[*instance]struct{}{},
		custom:   custom,
	}
	if cfg.GuestSlots > 0 {
		h.slots = slotPool{sema: cfg.Runtime.NewSema(cfg.GuestSlots), n: cfg.GuestSlots}
	}
	h.mem.shed = h.shedPool
	h.modCf = moduleConfig()
	if err := h.instantiateHostModules(ctx); err != nil {
		_ = h.wz.Close(ctx)
		return nil, err
	}
	return h, nil
}

// Attach lets the Host ask srv which actors it still hosts, to reclaim the
// instances of activations dropped without Deactivate (fencing, crashes).
// Without it those instances live until Close.
func (h *Host) Attach(srv *nola.Server) {
	h.mu.Lock()
	h.hosted = srv.Hosts
	h.mu.Unlock()
}

// Stats returns the Host's counters.
func (h *Host) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.stats
	s.Instances = int64(len(h.live))
	s.Running = h.busy.Load()
	s.MemoryBytes = h.mem.used.Load()
	s.IdleWorkerBytes = h.idleWorker.Load()
	s.EnginesTrimmed = h.trimmed.Load()
	s.Pooled, s.Recycled = h.pool.counts()
	s.PooledBytes = h.pool.idleBytes()
	s.Executing, s.Waiting, s.Preempted = h.executing.Load(), h.waiting.Load(), h.preempted.Load()
	return s
}

// MemoryBytes returns the memory charged to live instances (linear memory
// and overhead each) except idle pooled worker instances: the
// memory of activations (and of worker invocations in flight). It
// implements nola.MemoryReporter: the server adds it to its memory
// estimate and load reports, which shedding reads as activation memory —
// a pool of idle workers must not make a server shed its actors. The
// Host's MemoryLimit still counts every instance (Stats.MemoryBytes).
//
// Polled periodically by the server, it also runs the engine trim when due
// (maybeTrim).
func (h *Host) MemoryBytes() int64 {
	h.maybeTrim()
	return max(h.mem.used.Load()-h.idleWorker.Load()-h.pool.idleBytes(), 0)
}

var _ nola.MemoryReporter = (*Host)(nil)

// Close closes every instance and compiled module. Actors of this Host
// fail afterwards; close it after its server has stopped.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.isClosed.Store(true)
	live := h.sortedLive()
	h.mu.Unlock()
	for _, in := range h.pool.drain(true, nil) {
		in.close()
	}
	for _, in := range live {
		// Busy instances are closed when their invocation ends.
		in.reclaim()
	}
	if h.busy.Load() == 0 {
		return h.closeRuntime(ctx)
	}
	return nil
}

// closeRuntime releases wazero's runtime (compiled code included) once no
// guest runs: closing it under a running guest would unmap its code.
func (h *Host) closeRuntime(ctx context.Context) error {
	var err error
	h.wzClose.Do(func() {
		err = h.wz.Close(ctx)
		// No instantiation runs or can start (busy is 0, the Host
		// closed): the images' files are no longer needed. Mappings
		// of live instances keep their pages.
		h.images.closeAll()
	})
	return err
}

// doneBusy ends one guest execution; the last one after Close closes the
// runtime.
func (h *Host) doneBusy() {
	if h.busy.Add(-1) == 0 && h.isClosed.Load() {
		_ = h.closeRuntime(context.Background())
	}
}

func (h *Host) sortedLive() []*instance {
	out := make([]*instance, 0, len(h.live))
	for in := range h.live {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b *instance) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

var _ nola.TypeResolver = (*Host)(nil)

// Resolve implements nola.TypeResolver: typ names a module of namespace ns.
// An unknown module is a bad request (nola.CodeBadRequest).
func (h *Host) Resolve(ctx context.Context, ns, typ string) (nola.Factory, error) {
	c, err := h.load(ctx, ns, typ)
	if err != nil {
		return nil, err
	}
	if c.create {
		// Only guests with the hook are Creators: the engine reads the
		// creation record at the first activation of those alone.
		return func(nola.Ref) (nola.Actor, error) {
			return &creatorActor{actor{h: h, mod: c}}, nil
		}, nil
	}
	return func(nola.Ref) (nola.Actor, error) {
		return &actor{h: h, mod: c}, nil
	}, nil
}

// load returns module id of ns, compiled, compiling it on first use.
// Concurrent first uses share one compilation.
func (h *Host) load(ctx context.Context, ns, id string) (*compiled, error) {
	k := modKey{ns, id}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "wasm host is closed", Retryable: true}
	}
	c := h.compiled[k]
	fresh := c == nil
	if fresh {
		c = &compiled{ready: rt.NewFuture[struct{}](h.rt), name: ns + "/" + id}
		h.compiled[k] = c
	}
	h.mu.Unlock()
	if fresh {
		h.compileOnce(ctx, k, c)
	} else if _, err := c.ready.Wait(ctx); err != nil {
		return nil, fmt.Errorf("wasm: waiting for module %s/%s to compile: %w", ns, id, err)
	}
	if c.err != nil {
		return nil, c.err
	}
	if !fresh {
		if err := h.stillThere(ctx, k, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stillThere checks, at most once per Config.ModuleRecheck, that a cached
// module was not deleted (modules.Store.Delete): a deleted module's
// compilation is dropped and it resolves no more, so no new actor of its
// type is created and no worker call runs it. (Activations that already
// exist keep their instances; a module with actors cannot be deleted.)
func (h *Host) stillThere(ctx context.Context, k modKey, c *compiled) error {
	now := int64(h.rt.Mono())
	if last := c.checkedAt.Load(); last != 0 && now-last < int64(h.cfg.ModuleRecheck) {
		return nil
	}
	_, err := h.cfg.Modules.Stat(ctx, k.ns, k.id)
	if errors.Is(err, modules.ErrNotFound) {
		h.mu.Lock()
		if h.compiled[k] == c {
			delete(h.compiled, k)
		}
		h.mu.Unlock()
		return &missingModule{&nola.Error{Code: nola.CodeBadRequest,
			Message: fmt.Sprintf("unknown actor type %q: no Go type and no WASM module %q in namespace %q (it was deleted)", k.id, k.id, k.ns)}}
	}
	if err != nil {
		return fmt.Errorf("wasm: check module %s/%s: %w", k.ns, k.id, err)
	}
	c.checkedAt.Store(now)
	return nil
}

// compileOnce compiles c and resolves its future, whatever happens (a
// simulated crash unwinds the task with runtime.Goexit).
func (h *Host) compileOnce(ctx context.Context, k modKey, c *compiled) {
	c.err = errors.New("wasm: compilation of " + c.name + " was abandoned")
	defer func() {
		if c.err != nil {
			// Failures are not cached: the module may be uploaded
			// later, or the store may come back.
			h.mu.Lock()
			delete(h.compiled, k)
			h.mu.Unlock()
		}
		c.ready.Resolve(struct{}{}, nil)
	}()
	c.err = h.compile(ctx, k, c)
}

func (h *Host) compile(ctx context.Context, k modKey, c *compiled) error {
	m, err := h.cfg.Modules.Get(ctx, k.ns, k.id)
	if errors.Is(err, modules.ErrNotFound) {
		return &missingModule{&nola.Error{Code: nola.CodeBadRequest,
			Message: fmt.Sprintf("unknown actor type %q: no Go type and no WASM module %q in namespace %q", k.id, k.id, k.ns)}}
	}
	if err != nil {
		return fmt.Errorf("wasm: load module %s/%s: %w", k.ns, k.id, err)
	}
	pages := h.cfg.MaxMemoryPages
	if p := m.Options.MaxMemoryPages; p > 0 && p < pages {
		pages = p
	}
	rw, err := instrument.Rewrite(m.Bytes, instrument.Options{
		InitialFuel: int32(h.cfg.SliceFuel), MaxMemoryPages: pages, MaxCallDepth: h.cfg.MaxCallDepth,
		NoCoalesce: h.cfg.KeepDataSegments, MemoryImage: !h.cfg.KeepDataSegments && !h.cfg.NoMemoryImage,
		ExportGlobals: !h.cfg.NoSnapshot,
	})
	bin := rw.Module
	if err != nil {
		return &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf("WASM module %s/%s cannot run here: %v", k.ns, k.id, err)}
	}
	cm, err := h.cfg.Modules.Compile(ctx, h.wz, bin)
	if err == nil {
		err = modules.CheckABI(cm)
	}
	if err != nil {
		return &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf("WASM module %s/%s cannot run here: %v", k.ns, k.id, err)}
	}
	exports := cm.ExportedFunctions()
	if mem := cm.ExportedMemories()[abi.Memory]; mem != nil { // CheckABI made sure
		c.minBytes = int64(mem.Min()) * pageSize
	}
	c.overhead = InstanceOverhead + rw.InstanceBytes
	_, c.initialize = exports[abi.Initialize]
	_, c.wapcInit = exports[abi.WAPCInit]
	_, c.create = exports[abi.CreateExport]
	if rw.Memory != nil {
		if int64(len(rw.Memory.Data)) > c.minBytes { // instrument checked it
			return &nola.Error{Code: nola.CodeInternal, Message: fmt.Sprintf("wasm %s: memory image of %d bytes exceeds the initial memory of %d", c.name, len(rw.Memory.Data), c.minBytes)}
		}
		c.image = newMemImage(rw.Memory.Data, !h.cfg.HeapMemory)
		h.trackImage(c, c.image)
	}
	switch {
	case h.cfg.NoSnapshot:
		c.snap.refuse("Config.NoSnapshot")
	case !c.initialize && !c.wapcInit:
		c.snap.refuse("nothing to initialize")
	case rw.Snapshot.Refused != "":
		c.snap.refuse(rw.Snapshot.Refused)
	case rw.Memory == nil:
		// Its active data segments, applied by every instantiation,
		// would overwrite what initialization changed.
		c.snap.refuse("the module keeps its data segments")
	default:
		c.snap.globals = rw.Snapshot.Globals
	}
	c.info, c.cm = m.Info, cm
	c.checkedAt.Store(int64(h.rt.Mono()))
	h.mu.Lock()
	h.stats.Compiled++
	h.mu.Unlock()
	return nil
}

// trackImage makes sure img, c's memory image or snapshot, is closed:
// with the Host's runtime (closeRuntime) or, for a compilation dropped
// before (a deleted module), once nothing can instantiate it any more (c
// unreachable).
func (h *Host) trackImage(c *compiled, img *memImage) { h.trackCharged(c, img, 0) }

// trackCharged is trackImage for an image that holds charged bytes of the
// set's snapshot budget (take), given back when the image is closed.
func (h *Host) trackCharged(c *compiled, img *memImage, charged int64) {
	if !h.images.add(img) {
		h.images.giveBack(charged)
		return
	}
	// The cleanup must not reach c (or the Host, which reaches c).
	set := h.images
	runtime.AddCleanup(c, func(img *memImage) {
		set.remove(img)
		set.giveBack(charged)
		img.close()
	}, img)
}

// imageSet holds a Host's open memory images.
type imageSet struct {
	mu        sync.Mutex
	open      map[*memImage]struct{}
	closed    bool
	snapBytes int64 // what the open snapshots hold (take, giveBack)
}

// take charges n bytes of a snapshot to the set, if that keeps the total
// within limit.
func (s *imageSet) take(n, limit int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.snapBytes+n > limit {
		return false
	}
	s.snapBytes += n
	return true
}

func (s *imageSet) giveBack(n int64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.snapBytes -= n
	if s.snapBytes < 0 {
		panic(fmt.Sprintf("wasm: snapshot bytes below zero (%d)", s.snapBytes))
	}
	s.mu.Unlock()
}

// add tracks img; once the set is closed it closes img instead (a module
// compiled after Close is never instantiated) and reports false.
func (s *imageSet) add(img *memImage) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		img.close()
		return false
	}
	if s.open == nil {
		s.open = map[*memImage]struct{}{}
	}
	s.open[img] = struct{}{}
	return true
}

func (s *imageSet) remove(img *memImage) {
	s.mu.Lock()
	delete(s.open, img)
	s.mu.Unlock()
}

func (s *imageSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for img := range s.open {
		img.close()
	}
	s.open = nil
}

// instantiate creates an instance of c for the actor ref, running its
// initialization with cx as the host calls' context.
func (h *Host) instantiate(cx hostContext, c *compiled, ref nola.Ref) (*instance, error) {
	h.maybeSweep()
	h.busy.Add(1)
	defer h.doneBusy()
	if h.isClosed.Load() {
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "wasm host is closed", Retryable: true}
	}
	// Start from the module's snapshot, or take it from this instance.
	snap := c.snap.ready()
	if snap != nil {
		// Better still, from an instance recycled to it.
		in, err := h.takeRecycled(c, ref)
		h.premake(c)
		if in != nil || err != nil {
			return in, err
		}
	}
	take := snap == nil && c.snap.state.CompareAndSwap(snapUnknown, snapTaking)
	if take {
		// Unless captured or refused: the next instantiation tries.
		defer c.snap.state.CompareAndSwap(snapTaking, snapUnknown)
	}
	initBytes := c.minBytes
	if snap != nil {
		initBytes = snap.size
	}
	// Reserve the instance and its initial memory before wazero allocates
	// them (it cannot see that first allocation fail).
	if need := c.overhead + initBytes; !h.mem.reserve(need) {
		return nil, h.memoryError(c.name, "activation", need)
	}
	in := &instance{h: h, mod: c, ref: ref, overhead: c.overhead}
	in.state.Store(instBusy) // until initialized: the sweep leaves it alone
	in.begin(cx, "", nil)
	if _, err := in.takeSlot(false); err != nil {
		in.end()
		in.releaseOverhead()
		return nil, err
	}
	m, err := h.newModule(in, c, snap)
	if err != nil {
		defer in.end()
		// Validated modules only fail here by their own doing — a start
		// function that traps, runs out of fuel or time, a data segment
		// out of bounds — the guest's fault, like a trap in an invocation.
		// The error counts the overhead in the memory it reports needed:
		// released after.
		ferr := in.failed("instantiate", err)
		in.releaseOverhead()
		return nil, ferr
	}
	in.m = m
	in.mem = m.Memory()
	in.guestCall = m.ExportedFunction(abi.GuestCall)
	g, ok := m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
	if !ok || in.guestCall == nil || in.mem == nil {
		in.end()
		in.close()
		return nil, &nola.Error{Code: nola.CodeInternal, Message: "wasm " + c.name + ": instrumented module lacks its exports"}
	}
	in.fuel = g
	if snap != nil {
		if err := snap.restore(c, m); err != nil {
			in.end()
			in.close()
			return nil, &nola.Error{Code: nola.CodeInternal, Message: err.Error()}
		}
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		in.end()
		in.close()
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "wasm host is closed", Retryable: true}
	}
	h.seq++
	in.seq = h.seq
	in.lastSeen.Store(int64(in.lastUsed))
	h.live[in] = struct{}{}
	h.stats.Instantiated++
	h.mu.Unlock()

	for _, f := range []struct {
		name   string
		export bool
	}{{abi.Initialize, c.initialize}, {abi.WAPCInit, c.wapcInit}} {
		if !f.export || snap != nil {
			continue
		}
		if err := m.ExportedFunction(f.name).CallWithStack(in.callCtx(), nil); err != nil {
			terr := in.failed(f.name, err)
			in.end()
			in.close()
			return nil, terr
		}
	}
	if take {
		switch {
		case in.effects > 0:
			c.snap.refuse(fmt.Sprintf("its initialization made %d host calls with effects", in.effects))
		case in.refused > 0:
			// The budget refused a memory.grow the guest survived:
			// its state reflects a passing shortage that a later
			// initialization may not meet. The next one tries.
		default:
			h.capture(c, in)
			h.premake(c)
		}
	}
	in.end()
	in.state.Store(instIdle)
	return in, nil
}

// newModule instantiates c's compiled module for in: its linear memory
// from the Host's allocator, charged to the budget (the caller has
// reserved c.minBytes, or snap's size), starting from snap's memory or
// else c's memory image if it has one. It runs the module's start
// function, if any, and nothing else of the guest.
func (h *Host) newModule(in *instance, c *compiled, snap *snapshot) (api.Module, error) {
	img, prepaid := c.image, c.minBytes
	if snap != nil {
		img, prepaid = snap.img, snap.size
	}
	alloc := &budgetAllocator{b: &h.mem, in: in, img: img, prepaid: prepaid}
	if !h.cfg.HeapMemory {
		alloc.inner = memoryAllocator(img)
	}
	m, err := h.wz.InstantiateModule(experimental.WithMemoryAllocator(in.callCtx(), alloc), c.cm, h.modCf)
	if err != nil {
		// wazero drops a module whose instantiation failed without
		// closing it: its memory (our mapping) would never be freed.
		alloc.freeAll()
		return nil, err
	}
	alloc.settle()
	h.sys.drop(m)
	return m, nil
}

// maybeSweep closes, at most once per SweepInterval, the idle instances of
// activations the server no longer hosts.
func (h *Host) maybeSweep() {
	now := h.rt.Mono()
	h.mu.Lock()
	if h.hosted == nil || h.closed || now-h.lastSweep < h.cfg.SweepInterval {
		h.mu.Unlock()
		return
	}
	h.lastSweep = now
	hosted := h.hosted
	live := h.sortedLive()
	h.mu.Unlock()
	h.expirePool(now - h.cfg.SweepInterval)

	newest := map[modKey]*instance{}
	for _, in := range live {
		newest[modKey{in.ref.Namespace, in.ref.ID}] = in // sorted by seq: the last wins
	}
	for _, in := range live {
		k := modKey{in.ref.Namespace, in.ref.ID}
		if now-in.idleSince() < h.cfg.SweepInterval {
			continue
		}
		if newest[k] == in && hosted(k.ns, k.id) {
			continue
		}
		if in.reclaim() {
			h.mu.Lock()
			h.stats.Swept++
			h.mu.Unlock()
		}
	}
}

// maybeTrim drops, at most once per EngineIdle, the call engines of the
// instances idle for EngineIdle (their next call fetches them again). It
// runs on the caller of MemoryBytes — the server's lease and shed loops,
// which poll it periodically — so that it needs no goroutine or timer of
// its own (none to add to a simulated schedule) and still runs on a server
// that no call reaches any more. An instance is held only for the moment
// it takes to drop its engine (instTrim): a call that arrives meanwhile
// waits that moment out, and one in progress makes the trim skip it.
func (h *Host) maybeTrim() {
	now := h.rt.Mono()
	last := h.lastTrim.Load()
	if now-time.Duration(last) < h.cfg.EngineIdle || !h.lastTrim.CompareAndSwap(last, int64(now)) {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	live := make([]*instance, 0, len(h.live))
	for in := range h.live {
		live = append(live, in)
	}
	h.mu.Unlock()
	idleBefore := now - h.cfg.EngineIdle
	for _, in := range live {
		in.trimEngine(idleBefore)
	}
}

// forget removes a closed instance from the live set.
func (h *Host) forget(in *instance) {
	h.mu.Lock()
	if _, ok := h.live[in]; ok {
		delete(h.live, in)
		h.stats.Closed++
	}
	h.mu.Unlock()
}

func (h *Host) countTrap() {
	h.mu.Lock()
	h.stats.Traps++
	h.mu.Unlock()
}

// actor is a WASM actor: one activation's instance of a module. It keeps
// no Ref of its own (one per live actor, 48 B): its calls' Context has the
// activation's, which the instance copies.
type actor struct {
	h   *Host
	mod *compiled
	in  *instance // nil before Activate and after a trap
}

var (
	_ nola.Activator   = (*actor)(nil)
	_ nola.Deactivator = (*actor)(nil)
	_ nola.Sizer       = (*actor)(nil)
)

// SizeBytes implements nola.Sizer: the instance's linear memory and
// overhead, what the Host's memory budget charges it. The server
// calls it between invocations, so that a server over its memory budget
// can shed its largest WASM actors first.
func (a *actor) SizeBytes() int64 {
	if a.in == nil {
		return 0
	}
	return a.in.sizeBytes()
}

// Activate creates the instance.
func (a *actor) Activate(cx *nola.Context) error {
	in, err := a.h.instantiate(cx, a.mod, cx.Ref())
	if err != nil {
		return err
	}
	a.in = in
	return nil
}

// Invoke runs op on the instance; after a trap it first creates a fresh
// one.
func (a *actor) Invoke(cx *nola.Context, op string, payload []byte) ([]byte, error) {
	return a.run(cx, func(in *instance) ([]byte, error) { return in.invoke(cx, op, payload) })
}

// creatorActor is the actor of a module that exports nola_create.
type creatorActor struct{ actor }

var _ nola.Creator = (*creatorActor)(nil)

// Create calls the guest's nola_create with the creation arguments.
func (a *creatorActor) Create(cx *nola.Context, args []byte) error {
	_, err := a.run(cx, func(in *instance) ([]byte, error) { return nil, in.create(cx, args) })
	return err
}

// run runs f on the instance, acquired; after a trap it first creates a
// fresh one.
func (a *actor) run(cx *nola.Context, f func(in *instance) ([]byte, error)) ([]byte, error) {
	if a.in == nil || !a.in.acquire() {
		a.in = nil
		in, err := a.h.instantiate(cx, a.mod, cx.Ref())
		if err != nil {
			return nil, err
		}
		if !in.acquire() {
			return nil, &nola.Error{Code: nola.CodeInternal, Message: "wasm " + a.mod.name + ": fresh instance was closed"}
		}
		a.in = in
	}
	in := a.in
	defer func() {
		// Deferred: a simulated crash unwinds the task with Goexit.
		if in.release() {
			// The execution was aborted: the instance is gone.
			a.in = nil
		}
	}()
	return f(in)
}

// Deactivate ends the instance: recycled for the module's next
// activation if it can be (recycle.go), else closed.
func (a *actor) Deactivate(*nola.Context) error {
	if a.in != nil {
		a.h.retire(a.in)
		a.in = nil
	}
	return nil
}
