package nola

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// maxNameBytesLimit is the largest Limits.MaxNameBytes a server accepts.
const maxNameBytesLimit = 1 << 20

// Limits bound what callers and actors may send. Zero fields take defaults.
type Limits struct {
	// MaxNameBytes bounds namespaces, actor IDs, actor types and
	// operation names. Default 512; at most 1 MiB.
	MaxNameBytes int
	// MaxPayloadBytes bounds invocation payloads; default 4 MiB.
	MaxPayloadBytes int
	// MaxResultBytes bounds invocation results; default 4 MiB.
	MaxResultBytes int
	// MaxKVKeyBytes and MaxKVValueBytes bound one KV entry; defaults
	// 2 KiB and 512 KiB. One invocation's writes are further bounded by the
	// store's limits (etcd: 128 writes, 1.5 MiB).
	MaxKVKeyBytes   int
	MaxKVValueBytes int
	// MaxActorKVBytes bounds what one actor's KV holds: the sum of its
	// keys' and values' lengths. A commit that would take the actor past
	// it is refused (too_large, nothing written); commits that shrink the
	// KV always pass. The count is kept in a usage record written by the
	// same fenced commit (registry.CommitKVCounted). Zero (the default):
	// no limit and no usage record, so commits cost nothing extra.
	MaxActorKVBytes int64
	// MaxNamespaceKVBytes bounds what the KV of all the actors of one
	// namespace holds (keys + values). Each actor holds a grant of it, a
	// little above its bytes, taken and given back by its own fenced
	// commits in the same commit that writes (registry.CommitKVQuota),
	// so the bound holds however many servers write. A commit it has no
	// room for is refused (too_large, nothing written); commits that
	// shrink an actor's KV always pass. Zero (the default): no limit.
	MaxNamespaceKVBytes int64
	// MaxCreationArgsBytes bounds the creation arguments a call that
	// creates an actor may carry (Request.CreationArgs, Client.Create);
	// default 64 KiB. They are stored with the actor for its life.
	MaxCreationArgsBytes int
}

// kvQuota is the KV quotas the registry holds commits to (zero: none, and
// nothing is counted).
func (l Limits) kvQuota() registry.KVQuota {
	return registry.KVQuota{Actor: l.MaxActorKVBytes, Namespace: l.MaxNamespaceKVBytes}
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxNameBytes, 512)
	def(&l.MaxPayloadBytes, 4<<20)
	def(&l.MaxResultBytes, 4<<20)
	def(&l.MaxKVKeyBytes, 2<<10)
	def(&l.MaxKVValueBytes, 512<<10)
	def(&l.MaxCreationArgsBytes, 64<<10)
	return l
}

// TypeResolver supplies factories for actor types that are not registered
// up front (WASM modules uploaded at runtime). Resolve returns an error
// wrapping ErrBadRequest for an unknown type.
type TypeResolver interface {
	Resolve(ctx context.Context, ns, typ string) (Factory, error)
}

// WorkerResolver supplies worker types that are not registered up front
// (WASM modules of a namespace, run as stateless workers). ResolveWorker
// returns an error wrapping ErrBadRequest for an unknown type. The function
// it returns must be safe for concurrent use; the server keeps it for the
// type (a module is immutable).
type WorkerResolver interface {
	ResolveWorker(ctx context.Context, ns, typ string) (WorkerFunc, error)
}

// MemoryReporter is implemented by a TypeResolver whose actors hold memory
// the engine cannot see (the WASM host: linear memory). The server adds
// MemoryBytes to its memory estimate (Stats.MemoryBytes) and to the load it
// reports for placement.
type MemoryReporter interface {
	MemoryBytes() int64
}

// ServerConfig configures a Server. ID, Addr, Store and Transport are
// required; everything else has a default.
type ServerConfig struct {
	// ID names the server in the registry; stable across restarts.
	ID string
	// Addr is where other servers and clients reach it.
	Addr string
	// Runtime is the server's clock, tasks and randomness (default: the
	// real one, rt.NewReal; the simulator passes its deterministic one).
	Runtime rt.Runtime
	// Store is the registry's store; Root prefixes nola's keys in it.
	Store kv.Store
	Root  string
	// Transport carries this server's calls to other servers' actors.
	Transport Transport
	// Types maps actor type names to Go factories.
	Types map[string]Factory
	// Resolver is consulted for types missing from Types.
	Resolver TypeResolver
	// Workers maps stateless worker type names to their functions (see
	// WorkerFunc). Worker types are a namespace of their own, apart from
	// actor types; every server of a cluster should register the same ones.
	Workers map[string]WorkerFunc
	// WorkerResolver is consulted for worker types missing from Workers
	// (the WASM host: a namespace's modules); nil: none.
	WorkerResolver WorkerResolver
	// MaxWorkerInFlight bounds the invocations of one worker type that
	// this server runs at once (default DefaultMaxWorkerInFlight); one more
	// is refused with CodeOverloaded (retryable: it did not run).
	MaxWorkerInFlight int

	// LeaseTTL is the server's lease in the store (default 6s); it
	// renews it every LeaseTTL/3. A crashed server's actors move after at
	// most LeaseTTL.
	LeaseTTL time.Duration
	// Rho bounds the rate of this server's clock relative to the store's
	// lease clock (default 0.01); Margin is subtracted from the local
	// deadline for scheduling delays (default LeaseTTL/50).
	Rho    float64
	Margin time.Duration
	// KeepAliveWarn: a keep-alive round trip longer than this is logged
	// as a warning (at most once a minute) and counted in
	// Stats.KeepAlive.Slow. Default LeaseTTL/4: two round trips in a row
	// of about LeaseTTL/3 each fence the server. Negative: never warn.
	KeepAliveWarn time.Duration
	// IdleTimeout evicts activations unused for that long (default 5m).
	IdleTimeout time.Duration
	// MaxActivations caps the activations of this server (default 1e6).
	MaxActivations int
	// TimerTimeout bounds one timer-triggered invocation (default 30s).
	TimerTimeout time.Duration
	// MinTimerPeriod is the shortest period a periodic timer may have
	// (default 50ms): a shorter one is refused (CodeBadRequest), so that
	// timers cannot turn into a busy loop of invocations and commits.
	MinTimerPeriod time.Duration
	// MaxTimersPerActor bounds the pending timers of one activation
	// (default 64); setting one more is refused (CodeTooLarge).
	MaxTimersPerActor int
	// CommitTimeout bounds one KV commit (default 10s; a store may bound
	// it further, etcdkv by its RequestTimeout of 5s). Commits are not
	// cancelled by their caller; one that times out has an unknown outcome,
	// and the actor's next activation bumps its epoch first
	// (docs/architecture.md).
	CommitTimeout time.Duration
	// ReclaimInterval is how often the server sweeps the KV of deleted
	// actors out of the store (default 30s; negative: never — another
	// process must then call registry.Reclaim). It sweeps once at start-up
	// too. Reclaim is garbage collection only: a deleted actor's KV is
	// unreachable from the delete on (docs/deletion.md).
	ReclaimInterval time.Duration
	// Limits bound names, payloads and KV entries.
	Limits Limits

	// Placement weighs activations, memory and CPU when this server's
	// registry handle places actors (its own actors' calls to others);
	// zero: registry.DefaultPlacement. docs/placement.md.
	Placement registry.PlacementPolicy
	// MemoryBudget is the memory (Stats.MemoryBytes) this server aims to
	// stay under: placement avoids it once there, and it sheds
	// activations, largest first, while above (Shed). Zero: no budget.
	MemoryBudget int64
	// Shed paces shedding (releasing activations so that placement puts
	// them elsewhere) and turns on shedding relative to the cluster mean;
	// zero fields take defaults.
	Shed ShedConfig
	// NoKV, if set, takes actor KV away: every Get, Put, Delete, Scan and
	// ScanPrefix of an actor fails with CodeUnsupported (errors.Is
	// ErrUnsupported) and this text as its message, which should say why
	// and what to use instead. A store-less server (package storeless)
	// sets it: its store is private to the process, so KV written there
	// would vanish when the actor moves.
	NoKV string
	// Locality turns on and paces communication-locality moves: actors
	// whose calls go mostly to another server are released towards it
	// (locality.go, docs/placement.md). Off unless Locality.Enabled.
	Locality LocalityConfig
	// Logger receives the server's logs (default: discard).
	Logger *slog.Logger
	// Observer, if set, sees activation, execution and commit events (the
	// simulator's oracle).
	Observer Observer

	// Mutations break one protocol rule each, so that the repository's
	// checkers can prove they catch the resulting violations. The type is
	// internal: outside this module only the zero value (none) can be set.
	Mutations mutation.Set
}

// checkAndFillDefaults rejects an unusable configuration and fills in the
// defaults of the fields left zero.
func (c *ServerConfig) checkAndFillDefaults() error {
	for _, m := range mutation.All() {
		if c.Mutations.Has(m) && !m.Server() {
			return fmt.Errorf("nola: server config: mutation %s acts on registry schedules only, not on servers", m)
		}
	}
	if c.Runtime == nil {
		c.Runtime = rt.NewReal()
	}
	switch {
	case c.ID == "":
		return fmt.Errorf("nola: server config: empty ID")
	case c.Addr == "":
		return fmt.Errorf("nola: server config: empty Addr")
	case c.Store == nil:
		return fmt.Errorf("nola: server config: nil Store")
	case c.Transport == nil:
		return fmt.Errorf("nola: server config: nil Transport")
	case c.Rho < 0 || c.Rho >= 0.5:
		return fmt.Errorf("nola: server config: Rho %v outside [0, 0.5)", c.Rho)
	case c.LeaseTTL < 0 || c.Margin < 0 || c.IdleTimeout < 0 || c.TimerTimeout < 0 || c.CommitTimeout < 0:
		return fmt.Errorf("nola: server config: negative duration (LeaseTTL %v, Margin %v, IdleTimeout %v, TimerTimeout %v, CommitTimeout %v)",
			c.LeaseTTL, c.Margin, c.IdleTimeout, c.TimerTimeout, c.CommitTimeout)
	case c.MaxActivations < 0:
		return fmt.Errorf("nola: server config: negative MaxActivations %d", c.MaxActivations)
	case c.MemoryBudget < 0:
		return fmt.Errorf("nola: server config: negative MemoryBudget %d", c.MemoryBudget)
	case c.Limits.MaxNameBytes < 0 || c.Limits.MaxPayloadBytes < 0 || c.Limits.MaxResultBytes < 0 ||
		c.Limits.MaxKVKeyBytes < 0 || c.Limits.MaxKVValueBytes < 0 || c.Limits.MaxActorKVBytes < 0 ||
		c.Limits.MaxNamespaceKVBytes < 0 || c.Limits.MaxCreationArgsBytes < 0:
		return fmt.Errorf("nola: server config: negative limit in %+v", c.Limits)
	case c.Limits.MaxNameBytes > maxNameBytesLimit:
		return fmt.Errorf("nola: server config: Limits.MaxNameBytes %d is above %d (namespaces, actor IDs and types are names, not data: keep larger values in the payload or KV)", c.Limits.MaxNameBytes, maxNameBytesLimit)
	}
	if err := checkWorkers(c); err != nil {
		return err
	}
	if err := c.Placement.Validate(); err != nil {
		return fmt.Errorf("nola: server config: %w", err)
	}
	if err := c.Shed.check(); err != nil {
		return err
	}
	if err := c.Locality.check(); err != nil {
		return err
	}
	if c.Margin >= c.LeaseTTL && c.LeaseTTL > 0 {
		return fmt.Errorf("nola: server config: Margin %v must be smaller than LeaseTTL %v", c.Margin, c.LeaseTTL)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 6 * time.Second
	}
	if c.Rho == 0 {
		c.Rho = 0.01
	}
	if c.Margin <= 0 {
		c.Margin = c.LeaseTTL / 50
	}
	if c.KeepAliveWarn == 0 {
		c.KeepAliveWarn = c.LeaseTTL / 4
	}
	if c.ReclaimInterval == 0 {
		c.ReclaimInterval = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.MaxActivations <= 0 {
		c.MaxActivations = 1_000_000
	}
	if c.MinTimerPeriod <= 0 {
		c.MinTimerPeriod = 50 * time.Millisecond
	}
	if c.MaxTimersPerActor <= 0 {
		c.MaxTimersPerActor = 64
	}
	if c.TimerTimeout <= 0 {
		c.TimerTimeout = 30 * time.Second
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 10 * time.Second
	}
	if c.MaxWorkerInFlight <= 0 {
		c.MaxWorkerInFlight = DefaultMaxWorkerInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Limits = c.Limits.withDefaults()
	c.Shed = c.Shed.withDefaults(c.LeaseTTL)
	c.Locality = c.Locality.withDefaults(c.LeaseTTL)
	return nil
}

// checkName validates a namespace, ID, type or operation name.
func checkName(what, v string, l Limits, allowEmpty bool) *Error {
	return checkNameEnc(what, v, l, allowEmpty, true)
}

func checkNameEnc(what, v string, l Limits, allowEmpty, encoding bool) *Error {
	if v == "" {
		if allowEmpty {
			return nil
		}
		return newErr(CodeBadRequest, false, nil, "%s is empty", what)
	}
	if len(v) > l.MaxNameBytes {
		return newErr(CodeBadRequest, false, nil, "%s of %d bytes exceeds the limit of %d", what, len(v), l.MaxNameBytes)
	}
	if encoding && !utf8.ValidString(v) {
		return newErr(CodeBadRequest, false, nil, "%s is not valid UTF-8", what)
	}
	return nil
}

// checkRequest validates an invocation before it goes anywhere.
func checkRequest(req *Request, l Limits) error { return checkRequestLimits(req, l, true) }

// checkRequestLimits is checkRequest, with the names' UTF-8 check optional
// (for requests this process's own Client validated).
func checkRequestLimits(req *Request, l Limits, encoding bool) error {
	if err := checkNameEnc("namespace", req.Namespace, l, false, encoding); err != nil {
		return err
	}
	if req.Worker != "" {
		if req.ActorID != "" || req.ActorType != "" {
			return newErr(CodeBadRequest, false, nil, "a worker call names no actor (actor ID %q, type %q)", clip(req.ActorID), clip(req.ActorType))
		}
		if err := checkNameEnc("worker type", req.Worker, l, false, encoding); err != nil {
			return err
		}
	} else {
		if err := checkNameEnc("actor ID", req.ActorID, l, false, encoding); err != nil {
			return err
		}
		if err := checkNameEnc("actor type", req.ActorType, l, true, encoding); err != nil {
			return err
		}
	}
	if err := checkNameEnc("operation", req.Operation, l, false, encoding); err != nil {
		return err
	}
	if len(req.Payload) > l.MaxPayloadBytes {
		return newErr(CodeTooLarge, false, nil, "payload of %d bytes exceeds the limit of %d", len(req.Payload), l.MaxPayloadBytes)
	}
	return checkCreationArgs(req.CreationArgs, l)
}

// checkCreationArgs bounds creation arguments before they go anywhere.
func checkCreationArgs(args []byte, l Limits) error {
	if len(args) > l.MaxCreationArgsBytes {
		return newErr(CodeTooLarge, false, nil, "creation arguments of %d bytes exceed the limit of %d", len(args), l.MaxCreationArgsBytes)
	}
	return nil
}
