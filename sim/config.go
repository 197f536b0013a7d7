// Package sim is nola's deterministic simulator: the production engine
// (package nola, the registry protocol, memkv, and the WASM host running
// the C guests, mixed with Go actors) runs unchanged on the deterministic
// runtime (rt/simrt) under a seeded fault schedule, while
// clients record histories that are checked for linearizability (package
// linearizability) and an internal oracle, which sees every activation,
// execution and store commit, checks single activation and fencing
// directly.
//
// A simulation is a seed: Generate(seed) draws the cluster, the workload
// and the fault schedule, and Run executes it; the same seed replays the
// same run, bit for bit (the world's trace hash proves it). See README.md.
package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/nola"
)

// Namespace is the namespace every simulated actor lives in.
const Namespace = "sim"

// LinkKind classifies a network link by its endpoints.
type LinkKind uint8

// The link kinds faults can target.
const (
	LinkClientServer LinkKind = iota
	LinkServerServer
	LinkServerStore
	// LinkClientStore carries clients' registry reads and placements; only
	// store outages affect it.
	LinkClientStore
)

func (k LinkKind) String() string {
	switch k {
	case LinkClientServer:
		return "client-server"
	case LinkServerServer:
		return "server-server"
	case LinkServerStore:
		return "server-store"
	case LinkClientStore:
		return "client-store"
	}
	return fmt.Sprintf("link(%d)", k)
}

// FaultKind is what a fault does.
type FaultKind uint8

// The faults.
const (
	// FaultCrash kills a server (its tasks, timers and memory) and starts
	// a fresh process with the same ID after Dur.
	FaultCrash FaultKind = iota
	// FaultPause freezes a server's tasks and timers for Dur while time
	// (and its clock) runs on: a GC or SIGSTOP pause, often longer than
	// the lease.
	FaultPause
	// FaultPartition cuts links for Dur: between Server and the store, or
	// Server and server Peer (-1: every other server), or Server and
	// client Peer (-1: every client). With Buffer the messages are held
	// and delivered when the partition heals (TCP retransmission), else
	// dropped.
	FaultPartition
	// FaultDrift sets Server's clock rate to Rate for Dur.
	FaultDrift
	// FaultStoreDown makes the store answer every request with
	// "unavailable" (nothing applied) for Dur.
	FaultStoreDown
	// FaultSlowLinks adds up to Extra latency to every message on links
	// of kind Link touching Server for Dur.
	FaultSlowLinks
	// FaultStop stops Server gracefully — nola.Server.Shutdown: it stops
	// serving, deactivates and releases every actor, revokes its lease —
	// within a grace period of Dur/2, then ends the process; a fresh
	// process with the same ID starts after Dur. A shutdown still running
	// then (held up by a pause or an outage) is killed first, like a
	// process that ignored its grace period.
	FaultStop
)

func (k FaultKind) String() string {
	return [...]string{"crash", "pause", "partition", "drift", "store-down", "slow-links", "stop"}[k]
}

// Fault is one entry of a fault schedule.
type Fault struct {
	At     time.Duration
	Kind   FaultKind
	Dur    time.Duration
	Server int
	Link   LinkKind
	Peer   int
	Buffer bool
	Rate   float64
	Extra  time.Duration
}

func (f Fault) String() string {
	s := fmt.Sprintf("@%v %s", f.At.Round(time.Millisecond), f.Kind)
	switch f.Kind {
	case FaultCrash, FaultPause, FaultStop:
		s += fmt.Sprintf(" s%d", f.Server)
	case FaultPartition:
		peer := "store"
		switch {
		case f.Link == LinkServerServer && f.Peer < 0:
			peer = "all servers"
		case f.Link == LinkServerServer:
			peer = fmt.Sprintf("s%d", f.Peer)
		case f.Link == LinkClientServer && f.Peer < 0:
			peer = "all clients"
		case f.Link == LinkClientServer:
			peer = fmt.Sprintf("c%d", f.Peer)
		}
		mode := "drop"
		if f.Buffer {
			mode = "buffer"
		}
		s += fmt.Sprintf(" s%d|%s (%s)", f.Server, peer, mode)
	case FaultDrift:
		s += fmt.Sprintf(" s%d rate=%.3f", f.Server, f.Rate)
	case FaultSlowLinks:
		s += fmt.Sprintf(" s%d %s +%v", f.Server, f.Link, f.Extra.Round(time.Millisecond))
	}
	return s + fmt.Sprintf(" for %v", f.Dur.Round(time.Millisecond))
}

// ActorSpec is one actor of the workload.
type ActorSpec struct {
	ID   string
	Type string
}

// NetParams shape the simulated network.
type NetParams struct {
	// Every message takes a latency drawn uniformly from [MinLatency,
	// MaxLatency]; with probability SpikeProb it takes an extra delay up
	// to SpikeMax (a retransmission, a stalled connection). Independent
	// latencies reorder messages.
	MinLatency, MaxLatency time.Duration
	SpikeProb              float64
	SpikeMax               time.Duration
	// Loss is the probability that a message is lost.
	Loss float64
}

// Config is everything a run depends on. Generate draws one from a seed;
// rapid properties build their own.
type Config struct {
	Seed    uint64
	Servers int
	Clients int
	// Actors are the checked actors; Callers, WASMCallers and Tickers
	// are helpers: actors that call other actors (Go actors.Caller, the C
	// guest caller.wasm), and actors with timers.
	Actors      []ActorSpec
	Callers     int
	WASMCallers int
	Tickers     int
	// Ops is the number of client operations, spread over Horizon.
	Ops     int
	Horizon time.Duration
	// OpTimeout bounds one client operation (drawn per op up to it).
	OpTimeout time.Duration

	LeaseTTL    time.Duration
	IdleTimeout time.Duration
	// MaxActivations caps each server's activations (0: the engine's
	// default, never reached here). A small cap makes servers release
	// actors they are asked to activate (placement then puts them
	// elsewhere) and evict the least recently used.
	MaxActivations int
	// MemoryBudget and Shed turn on shedding (nola.ServerConfig): a
	// server above its budget or far above the cluster's mean memory
	// releases activations, largest first, so that placement moves them
	// (release-then-place). Zero: no shedding, and no shedder task.
	MemoryBudget int64
	Shed         nola.ShedConfig
	// Locality turns on communication-locality moves (nola.ServerConfig):
	// actors whose calls go mostly to another server are released
	// towards it, with a placement hint (release-then-place).
	Locality nola.LocalityConfig
	// ViaCallerOneIn sends one in this many operations that a caller may
	// forward through one (0: 4). Locality seeds lower it: their callers'
	// calls are the edges moves follow.
	ViaCallerOneIn int
	Rho            float64
	// Rates are the servers' initial clock rates, relative to the store's
	// lease clock.
	Rates []float64
	Net   NetParams
	// StoreTimeout bounds one store request seen from its caller (an etcd
	// client's request timeout); HandlerTimeout bounds the server side of
	// one invocation.
	StoreTimeout, HandlerTimeout time.Duration

	Faults    []Fault
	Mutations Mutations
	// BeyondRho records that clocks were drawn beyond ρ (expect G1 to
	// break).
	BeyondRho bool
	// Deletes mixes actor deletes (Client.Delete) into the clients'
	// operations on counters (docs/deletion.md).
	Deletes bool

	// Buggify turns on the engine's fault points (rt.Buggifier): rare
	// but legal paths — a route forgotten, a commit delayed past the
	// lease, an early idle sweep, an activation-table overflow — each on
	// for the run or off, and firing, as the seed decides. Generate sets
	// it in half the seeds.
	Buggify bool

	// Generated marks a configuration drawn by Generate: Seed and the
	// options replay it (see Result.Repro).
	Generated bool

	// CheckBudget bounds porcupine's wall time per object (0:
	// LinCheckBudget). It decides only whether a verdict comes in time,
	// never which one.
	CheckBudget time.Duration `json:"-"`

	// GoGuests adds the Go guests' kinds (GoGuestKinds) to the default
	// catalog.
	GoGuests bool
	// Workers registers the stateless worker RelayWorker on every server
	// and sends some forwardable client operations through it (as others
	// go through caller actors): a worker on a random live server calls
	// the actor. Off by default, so that the default seeds' runs (and
	// trace hashes) do not change.
	Workers bool
	// Refine runs the refinement check against the protocol model
	// (model.Refiner) alongside the oracle; it observes only, so the run
	// and its trace hash are the same either way.
	Refine bool `json:"-"`
	// Catalog defines the actor types; nil means DefaultCatalog() (and
	// GoGuestKinds() with GoGuests).
	Catalog []ActorKind `json:"-"`
}

// Options steer Generate.
type Options struct {
	// Mutations are deliberate protocol bugs (non-vacuity tests).
	Mutations Mutations
	// BeyondRho draws clock rates far below 1−ρ: servers' clocks run slow
	// enough that their local deadline comes after the store's expiry.
	BeyondRho bool
	// Deletes mixes actor deletes into the workload (Config.Deletes).
	Deletes bool
	// GoGuests adds WASM actors built from the Go guests (GoGuestKinds)
	// to the default catalog: off by default, they are slow (~3 ms per
	// instance).
	GoGuests bool
	// Workers is Config.Workers (nolasim -relay-worker).
	Workers bool
	// Catalog replaces DefaultCatalog (to add actor kinds).
	Catalog []ActorKind
	// CheckBudget is Config.CheckBudget (0: LinCheckBudget).
	CheckBudget time.Duration
}

// Mutations are deliberate protocol bugs switched on in a simulation
// (ParseOptions reads them by name). The set they hold cannot be taken out
// of the simulator: a program outside this module can run simulations with
// mutations, but cannot switch one on in a server of its own.
type Mutations struct{ set mutation.Set }

// String lists the mutations' names, comma-separated.
func (m Mutations) String() string { return m.set.String() }

// Empty reports whether no mutation is on.
func (m Mutations) Empty() bool { return m.set.Empty() }

// MutationNames lists the names ParseOptions understands: the engine's
// mutations (internal/mutation, the repository's one list), then BeyondRho.
func MutationNames() []string {
	var names []string
	for _, m := range mutation.All() {
		if m.Engine() {
			names = append(names, m.String())
		}
	}
	return append(names, "BeyondRho")
}

// ParseOptions turns comma-separated mutation names (MutationNames) into
// Options.
func ParseOptions(names string) (Options, error) {
	var o Options
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if n == "BeyondRho" {
			o.BeyondRho = true
			continue
		}
		m, ok := mutation.Lookup(n)
		if !ok || !m.Engine() {
			return o, fmt.Errorf("sim: unknown mutation %q (known: %s)", n, strings.Join(MutationNames(), ", "))
		}
		o.Mutations.set = o.Mutations.set.With(m)
		if m == mutation.DeleteSkipsGeneration {
			o.Deletes = true // only deletes can show it
		}
	}
	return o, nil
}

// String names the options as ParseOptions reads them.
func (o Options) String() string {
	s := o.Mutations.String()
	if o.BeyondRho {
		if s != "" {
			s += ","
		}
		s += "BeyondRho"
	}
	return s
}

// Options returns the options a config was generated with (a custom
// catalog excepted).
func (c *Config) Options() Options {
	return Options{Mutations: c.Mutations, BeyondRho: c.BeyondRho, Deletes: c.Deletes, GoGuests: c.GoGuests, Workers: c.Workers, CheckBudget: c.CheckBudget}
}

// Generate draws a configuration from seed: 2–5 servers, 1–8 clients, 1–20
// checked actors plus helpers (in a quarter of the seeds each server holds
// at most 2–4 activations, and there are more actors than the servers can
// hold at once: up to twice as many), 200–500 operations (plus final
// reads) and 5–12 faults (a graceful stop may bring a second fault that
// meets its shutdown).
func Generate(seed uint64, opts Options) Config {
	r := rand.New(rand.NewPCG(seed, 0x6e6f6c6173696d)) // "nolasim"
	ttl := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}[r.IntN(3)]
	c := Config{
		Seed:           seed,
		Servers:        2 + r.IntN(4),
		Clients:        1 + r.IntN(8),
		Callers:        r.IntN(3),
		Tickers:        r.IntN(3),
		Ops:            200 + r.IntN(301),
		LeaseTTL:       ttl,
		IdleTimeout:    ttl/2 + time.Duration(r.Int64N(int64(4*ttl))),
		Rho:            0.01,
		OpTimeout:      time.Duration(500+r.IntN(2000)) * time.Millisecond,
		StoreTimeout:   time.Second,
		HandlerTimeout: 3 * time.Second,
		Mutations:      opts.Mutations,
		BeyondRho:      opts.BeyondRho,
		Deletes:        opts.Deletes,
		GoGuests:       opts.GoGuests,
		Workers:        opts.Workers,
		Catalog:        opts.Catalog,
		CheckBudget:    opts.CheckBudget,
		Generated:      true,
	}
	c.Horizon = time.Duration(8+r.IntN(8)) * ttl
	// Half the seeds buggify. The bit comes from the seed itself, not from
	// r, so every other field of a seed's configuration is what it was
	// before fault points existed.
	c.Buggify = (seed*0x9e3779b97f4a7c15)>>63 == 1
	// Releases and evictions: a quarter of the seeds cap activations per
	// server (releases at capacity, least-recently-used evictions), a
	// sixth evict idle activations within a fraction of a lease. (Not
	// more: activations that live briefly rarely outlive a fault, and the
	// protocol bugs of the mutation tests need them to.)
	if r.IntN(4) == 0 {
		c.MaxActivations = 2 + r.IntN(3)
	}
	if r.IntN(6) == 0 {
		c.IdleTimeout = ttl/20 + time.Duration(r.Int64N(int64(ttl/5)))
	}
	c.Net = NetParams{
		MinLatency: time.Duration(50+r.IntN(200)) * time.Microsecond,
		MaxLatency: time.Duration(1+r.IntN(5)) * time.Millisecond,
		SpikeProb:  []float64{0, 0.001, 0.003, 0.01}[r.IntN(4)],
		SpikeMax:   time.Duration(float64(ttl) * (0.2 + 2.3*r.Float64())),
		Loss:       []float64{0, 0.001, 0.003, 0.01}[r.IntN(4)],
	}
	cat := c.catalog()
	var weights []int
	total := 0
	for _, k := range cat {
		weights = append(weights, k.Weight)
		total += k.Weight
	}
	n := 1 + r.IntN(20)
	if c.MaxActivations > 0 {
		// More actors than the servers can hold at once, so that servers
		// reach their cap (helpers come on top).
		capacity := c.Servers * c.MaxActivations
		n = max(n, capacity+1+r.IntN(capacity))
	}
	for i := range n {
		pick := r.IntN(total)
		for j, w := range weights {
			if pick < w {
				c.Actors = append(c.Actors, ActorSpec{ID: fmt.Sprintf("a%d", i), Type: cat[j].Type})
				break
			}
			pick -= w
		}
	}
	for range c.Servers {
		c.Rates = append(c.Rates, rateWithin(r, c.Rho))
	}
	if opts.BeyondRho {
		// At least one server's clock runs far slower than the store's.
		for i := range c.Rates {
			if i == 0 || r.IntN(2) == 0 {
				c.Rates[i] = rateBeyond(r)
			}
		}
	}
	nf := 5 + r.IntN(8) // every one is injected (see sim.inject)
	for range nf {
		c.Faults = append(c.Faults, drawFault(r, &c)...)
	}
	sortFaults(c.Faults)
	if slices.ContainsFunc(cat, func(k ActorKind) bool { return k.Type == TypeWASMCaller }) {
		c.WASMCallers = r.IntN(3)
	}
	drawShedding(r, &c)
	drawLocality(r, &c)
	return c
}

// drawLocality turns locality moves on in a quarter of the seeds (drawn
// after shedding, so that every seed without locality is what it was
// before locality existed), tuned to move often: every call or one in 2
// sampled, edges hot from 1–2 sampled calls, hysteresis 1–1.5, 1–3 moves
// per round every 0.25–1.25 TTL, cooldown of half a round to one (idle
// timeout at least three rounds). The callers'
// forwarded calls make the edges (at least two callers, forwarding one or all of two operations they may). Like shedding, each such seed
// gets one more fault aimed at a round: a slow store link or a pause of
// one server, so that moves' releases are delayed past a lease, land
// late, or meet a fence.
func drawLocality(r *rand.Rand, c *Config) {
	if r.IntN(4) != 0 {
		return
	}
	ttl := c.LeaseTTL
	interval := ttl/4 + time.Duration(r.Int64N(int64(ttl)))
	c.Locality = nola.LocalityConfig{
		Enabled:     true,
		Interval:    interval,
		SampleEvery: 1 + r.IntN(2),
		MinCalls:    1 + r.Int64N(2),
		Factor:      1 + r.Float64()/2,
		MaxPerRound: 1 + r.IntN(3),
		Cooldown:    interval/2 + time.Duration(r.Int64N(int64(interval/2))),
	}
	// Idle eviction restarts an actor's edges (a new activation): let
	// callers live through a few rounds.
	c.IdleTimeout = max(c.IdleTimeout, 3*interval)
	// The callers' forwarded calls are the edges: at least two callers,
	// and one or two in two of the operations they may forward.
	c.Callers = max(c.Callers, 2)
	c.ViaCallerOneIn = 1 + r.IntN(2)
	rounds := int64(c.Horizon / interval)
	f := Fault{
		Server: r.IntN(c.Servers),
		At:     time.Duration(1+r.Int64N(max(rounds-1, 1))) * interval,
		Dur:    time.Duration(float64(ttl) * (0.5 + 2*r.Float64())),
	}
	if r.IntN(2) == 0 {
		f.Kind, f.Link = FaultSlowLinks, LinkServerStore
		f.Extra = time.Duration(float64(ttl) * (0.5 + 2*r.Float64()))
	} else {
		f.Kind = FaultPause
	}
	c.Faults = append(c.Faults, f)
	sortFaults(c.Faults)
}

// drawShedding turns shedding on in a third of the seeds (drawn last, so
// that every draw above — and so every seed without shedding — is what it
// was before shedding existed). Servers shed relative to the cluster mean
// from the first byte (every activation counts 1 KiB and its KV cache, so
// this moves the actors of servers holding more than their share), half of
// the time also above a budget of 2–5 activations' worth, in rounds of
// 1–4 releases every 0.25–1.25 TTL. Each such seed gets one more fault
// aimed at the moves: a slow store link or a pause of one server,
// starting at one of its shedding rounds, so that releases are delayed
// past a lease, land late, or meet a fence.
func drawShedding(r *rand.Rand, c *Config) {
	if r.IntN(3) != 0 {
		return
	}
	ttl := c.LeaseTTL
	c.Shed = nola.ShedConfig{
		Interval:    ttl/4 + time.Duration(r.Int64N(int64(ttl))),
		MaxPerRound: 1 + r.IntN(4),
		LowWater:    0.6 + 0.4*r.Float64(),
		MeanFactor:  1.1 + r.Float64(),
		MinBytes:    1,
	}
	if r.IntN(2) == 0 {
		c.MemoryBudget = int64(2+r.IntN(4)) << 10
	}
	rounds := int64(c.Horizon / c.Shed.Interval)
	f := Fault{
		Server: r.IntN(c.Servers),
		At:     time.Duration(1+r.Int64N(max(rounds-1, 1))) * c.Shed.Interval,
		Dur:    time.Duration(float64(ttl) * (0.5 + 2*r.Float64())),
	}
	if r.IntN(2) == 0 {
		f.Kind, f.Link = FaultSlowLinks, LinkServerStore
		f.Extra = time.Duration(float64(ttl) * (0.5 + 2*r.Float64()))
	} else {
		f.Kind = FaultPause
	}
	c.Faults = append(c.Faults, f)
	sortFaults(c.Faults)
}

// rateWithin draws a clock rate the protocol must tolerate: never slower
// than 1−ρ relative to the store (assumption A3); faster is harmless.
func rateWithin(r *rand.Rand, rho float64) float64 {
	return 1 - rho + r.Float64()*4*rho
}

// rateBeyond draws a clock far slower than 1−ρ allows.
func rateBeyond(r *rand.Rand) float64 { return 0.3 + 0.5*r.Float64() }

// drawFault draws one fault; a graceful stop comes, half of the time,
// with a second fault that strikes while the server shuts down.
func drawFault(r *rand.Rand, c *Config) []Fault {
	ttl := c.LeaseTTL
	scale := func(lo, hi float64) time.Duration {
		return time.Duration(float64(ttl) * (lo + (hi-lo)*r.Float64()))
	}
	f := Fault{
		At:     time.Duration(float64(c.Horizon) * (0.05 + 0.8*r.Float64())),
		Server: r.IntN(c.Servers),
	}
	switch w := r.IntN(16); {
	case w < 2:
		f.Kind, f.Dur = FaultCrash, scale(0.1, 2)
	case w < 5:
		f.Kind, f.Dur = FaultPause, scale(0.3, 3)
	case w < 9:
		f.Kind, f.Dur = FaultPartition, scale(0.3, 3)
		f.Link = LinkKind(r.IntN(3))
		f.Buffer = r.IntN(2) == 0
		switch f.Link {
		case LinkServerServer:
			f.Peer = r.IntN(c.Servers+1) - 1
			if f.Peer == f.Server {
				f.Peer = -1
			}
		case LinkClientServer:
			f.Peer = r.IntN(c.Clients+1) - 1
		}
	case w < 10:
		f.Kind, f.Dur = FaultDrift, scale(1, 5)
		f.Rate = rateWithin(r, c.Rho)
		if c.BeyondRho {
			f.Rate = rateBeyond(r)
		}
	case w < 11:
		f.Kind, f.Dur = FaultStoreDown, scale(0.2, 1.5)
	case w < 14:
		f.Kind, f.Dur = FaultSlowLinks, scale(0.5, 2)
		f.Link = LinkKind(r.IntN(3))
		f.Extra = scale(0.1, 2.5)
	default:
		f.Kind, f.Dur = FaultStop, scale(0.2, 2)
		if r.IntN(2) == 0 {
			return []Fault{f, duringStop(r, c, f, scale)}
		}
	}
	return []Fault{f}
}

// duringStop draws a fault that meets stop's shutdown in progress: the
// stopping server paused or killed a few messages into it, or its store
// link cut, slowed or the store down from just before (releases and the
// lease revocation then fail, time out or land late).
func duringStop(r *rand.Rand, c *Config, stop Fault, scale func(lo, hi float64) time.Duration) Fault {
	// A shutdown takes a store round trip per actor it releases: a few
	// maximal latencies reach into it.
	into := time.Duration(r.Int64N(int64(4*c.Net.MaxLatency) + 1))
	before := time.Duration(r.Int64N(int64(c.LeaseTTL / 20)))
	f := Fault{Server: stop.Server, At: stop.At + into}
	switch r.IntN(5) {
	case 0:
		f.Kind, f.Dur = FaultPause, scale(0.3, 3)
	case 1:
		f.Kind, f.Dur = FaultCrash, scale(0.1, 1)
	case 2:
		f.Kind, f.Dur, f.At = FaultPartition, scale(0.3, 2), stop.At-before
		f.Link, f.Buffer = LinkServerStore, r.IntN(2) == 0
	case 3:
		f.Kind, f.Dur, f.At = FaultStoreDown, scale(0.2, 1.5), stop.At-before
	default:
		f.Kind, f.Dur, f.At = FaultSlowLinks, scale(0.5, 2), stop.At-before
		f.Link, f.Extra = LinkServerStore, scale(0.1, 2.5)
	}
	f.At = max(f.At, 0)
	return f
}

func sortFaults(fs []Fault) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].At < fs[j-1].At; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

func (c *Config) catalog() []ActorKind {
	if c.Catalog != nil {
		return c.Catalog
	}
	if c.GoGuests {
		return append(DefaultCatalog(), GoGuestKinds()...)
	}
	return DefaultCatalog()
}

// Describe renders the configuration for a report.
func (c *Config) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d servers, %d clients, %d actors (+%d callers, %d WASM callers, %d tickers), %d ops over %v, TTL %v, idle %v, ρ %.3g, rates %.3f\n",
		c.Seed, c.Servers, c.Clients, len(c.Actors), c.Callers, c.WASMCallers, c.Tickers, c.Ops, c.Horizon, c.LeaseTTL, c.IdleTimeout, c.Rho, c.Rates)
	if c.MaxActivations > 0 {
		fmt.Fprintf(&b, "  at most %d activations per server\n", c.MaxActivations)
	}
	if c.Shed != (nola.ShedConfig{}) || c.MemoryBudget > 0 {
		fmt.Fprintf(&b, "  shedding: budget %d B, above %.2f× the mean, %d per round every %v, low water %.2f\n",
			c.MemoryBudget, c.Shed.MeanFactor, c.Shed.MaxPerRound, c.Shed.Interval.Round(time.Millisecond), c.Shed.LowWater)
	}
	if l := c.Locality; l.Enabled {
		fmt.Fprintf(&b, "  locality: 1 in %d calls sampled, hot from %d, factor %.2f, %d per round every %v, cooldown %v\n",
			l.SampleEvery, l.MinCalls, l.Factor, l.MaxPerRound, l.Interval.Round(time.Millisecond), l.Cooldown.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  net: latency %v–%v, spikes %.3g up to %v, loss %.3g\n", c.Net.MinLatency, c.Net.MaxLatency, c.Net.SpikeProb, c.Net.SpikeMax.Round(time.Millisecond), c.Net.Loss)
	if o := c.Options().String(); o != "" {
		fmt.Fprintf(&b, "  mutations: %s\n", o)
	}
	if c.Buggify {
		b.WriteString("  fault points (buggify) on\n")
	}
	if c.GoGuests {
		b.WriteString("  with Go guests\n")
	}
	if c.Workers {
		b.WriteString("  with operations through the relay worker\n")
	}
	types := map[string]int{}
	for _, a := range c.Actors {
		types[a.Type]++
	}
	fmt.Fprintf(&b, "  actors:")
	for _, k := range c.catalog() {
		if n := types[k.Type]; n > 0 {
			fmt.Fprintf(&b, " %d %s", n, k.Type)
		}
	}
	b.WriteString("\n  faults:\n")
	for _, f := range c.Faults {
		fmt.Fprintf(&b, "    %s\n", f)
	}
	return b.String()
}

func (c *Config) viaCallerOneIn() int {
	if c.ViaCallerOneIn <= 0 {
		return 4
	}
	return c.ViaCallerOneIn
}
