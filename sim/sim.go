package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/nolaproject/nola/linearizability"
	"github.com/nolaproject/nola/model"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt/simrt"
	"github.com/nolaproject/nola/wasm"
)

// Stats describe one run.
type Stats struct {
	// Client operations: answered, certainly not run (retryable error),
	// outcome unknown.
	Ops, OK, Failed, Indeterminate int
	// Faults counts the faults actually injected.
	Faults int
	// FinalUnanswered counts final reads that no attempt got an answer
	// to: those objects' final states went unchecked.
	FinalUnanswered int
	// Graceful stops (FaultStop): Stops finished their shutdown within
	// the grace period, StopErrors finished it with an error (a release
	// or the lease revocation failed: those actors wait for the lease to
	// expire), StopsKilled were killed before finishing (a crash, or
	// still shutting down when the process was due to restart).
	Stops, StopErrors, StopsKilled int
	// Releases the store applied, by cause: a server at its activation
	// limit giving up an actor it was asked to activate, and shutdowns;
	// ReleasesRefused counts releases that reached the store and failed
	// their compare (the record had moved on).
	CapacityReleases, StopReleases, ReleasesRefused int
	// Fences, Activations and Evictions (idle or least recently used;
	// ownership kept) are summed over every server process;
	// Deactivations counts the Deactivate hooks run (evictions and
	// graceful stops of actors that have one: the ticker).
	Fences, Activations, Evictions, Deactivations int64
	// Deletes counts acknowledged actor deletes (Config.Deletes).
	Deletes int
	// Sheds counts the activations servers released by shedding (their
	// releases are among CapacityReleases: the store link cannot tell
	// them apart).
	Sheds int64
	// LocalityMoves counts the activations servers released towards the
	// server most of their calls went to (also among CapacityReleases).
	LocalityMoves int64
	Net           NetStats
	Oracle        OracleStats
	// WASM sums the servers' WASM hosts.
	WASM WASMStats
	// ViaWorker counts client operations sent through RelayWorker
	// (Config.Workers).
	ViaWorker int
	// Codes counts client errors by code.
	Codes map[nola.Code]int
}

// Result is the outcome of one run.
type Result struct {
	Config Config
	// Hash is the world's trace hash: equal for equal runs.
	Hash    uint64
	Steps   int64
	Virtual time.Duration
	Wall    time.Duration
	History []linearizability.Op
	Stats   Stats
	// Violations are the oracle's findings; Lin is porcupine's verdict.
	Violations []Violation
	Lin        linearizability.Report
	// Err reports a run that could not complete (deadlock, livelock,
	// setup failure): a failure too.
	Err error
	// Refinement is the first step the protocol model rejected
	// (Config.Refine; nil: none), RefStats what the check saw.
	Refinement *model.RefError
	RefStats   model.RefStats
	// Buggified counts the engine's fault points that fired
	// (Config.Buggify), by name.
	Buggified map[string]int

	notes map[string][]note
}

// wasmTickerPrefix starts the IDs of WASM tickers (the oracle counts their
// timer executions apart).
const wasmTickerPrefix = "wticker"

// Failed reports whether the run found a violation or broke.
func (r *Result) Failed() bool {
	return r.Err != nil || len(r.Violations) > 0 || r.Lin.Illegal > 0 || r.Refinement != nil
}

// Inconclusive reports whether porcupine gave up on some object's
// history (its time budget ran out: Lin.Unknown): that history was not
// checked, so the run proves nothing about it. It is not a violation
// (Failed, and the mutation tests, want verdicts), but a sweep that
// passes with unchecked histories has not passed: TestSeeds and nolasim
// count it as a failure (see Unchecked).
func (r *Result) Inconclusive() bool { return r.Lin.Unknown > 0 }

// budget is porcupine's time budget per object.
func (c *Config) budget() time.Duration {
	if c.CheckBudget > 0 {
		return c.CheckBudget
	}
	return LinCheckBudget
}

// LinCheckBudget bounds porcupine's work on one object's history.
const LinCheckBudget = 20 * time.Second

// Run executes cfg on a fresh world and checks its history.
func Run(cfg Config) *Result { return run(cfg, process()) }

// run executes cfg with sh's compilation cache and module uploads (tests
// compare a cold cache with the process's).
func run(cfg Config, sh *shared) *Result {
	start := time.Now()
	res := &Result{Config: cfg, Stats: Stats{Codes: map[nola.Code]int{}}}
	w := simrt.New(cfg.Seed)
	if os.Getenv("NOLA_SIM_TRACE") != "" {
		w.SetTraceWriter(os.Stderr)
	}
	w.SetMaxSteps(100_000_000)
	if cfg.Buggify {
		w.EnableBuggify()
	}
	s := &sim{w: w, cfg: cfg, res: res, rng: w.Rand(), shared: sh}
	err := w.Run(s.main)
	res.Hash, res.Steps, res.Virtual = w.Hash(), w.Steps(), w.Now()
	res.Buggified = w.Buggified()
	res.Err = errors.Join(err, s.err)
	res.History = s.hist.Ops()
	if s.oracle != nil {
		res.Violations = s.oracle.Violations()
		res.Stats.Oracle = s.oracle.stats
		res.notes = s.oracle.notes
		for _, n := range s.faultNotes {
			for _, a := range cfg.Actors {
				res.notes[a.ID] = append(res.notes[a.ID], n)
			}
		}
	}
	if s.ref != nil {
		res.Refinement, res.RefStats = s.ref.ref.Err(), s.ref.ref.Stats()
	}
	if s.net != nil {
		res.Stats.Net = s.net.stats
		res.Stats.Deactivations = s.net.fx.deactivations
	}
	// Every task has unwound: every instance must be closed by now (a
	// crash, the final halt, or the sweep closed it).
	res.Stats.WASM = s.wasmStats()
	if n := res.Stats.WASM.Leaked; n > 0 {
		res.Err = errors.Join(res.Err, fmt.Errorf("sim: %d WASM instances still open after the run", n))
	}
	lin, lerr := linearizability.Check(res.History, cfg.budget())
	res.Lin = lin
	res.Err = errors.Join(res.Err, lerr)
	res.Wall = time.Since(start)
	return res
}

// sim is one run in progress. Everything in it is touched only by the
// world's tasks, one at a time.
type sim struct {
	w   *simrt.World
	cfg Config
	res *Result
	rng *rand.Rand
	err error

	driver    *simrt.Node
	storeNode *simrt.Node
	store     *memkv.Store
	net       *Network
	oracle    *Oracle
	ref       *refinement // Config.Refine
	types     map[string]nola.Factory
	kinds     map[string]ActorKind
	// wasm: the run uses WASM kinds, so every server process gets a
	// wasmProc (its host, created on demand); shared holds the compilation
	// cache; hosts lists every host (for the stats); wasmCrashed counts the
	// instances crashes took.
	wasm        bool
	shared      *shared
	hosts       []*wasm.Host
	wasmCrashed int64
	// callers are the helper actors that forward client operations.
	callers []ActorSpec
	tickers []ActorSpec // timer-driven helpers, Go and WASM alternating

	servers []*slot
	clients []*clientSlot
	hist    linearizability.History

	faultNotes []note
}

// slot is one server: a node (the host) and the current server process.
type slot struct {
	i       int
	name    string
	node    *simrt.Node
	link    *storeLink
	srv     *nola.Server
	wasm    *wasmProc // the process's WASM side, if the run uses WASM kinds
	crashed bool      // no process: crashed, or stopped
	// stopping is the process shutting down gracefully (FaultStop), if
	// any.
	stopping *nola.Server
	rate     float64 // the base clock rate drift faults return to
	// fences, activations and evictions of earlier processes.
	fences, activations, evictions, sheds int64
	localityMoves                         int64
}

type clientSlot struct {
	name string
	node *simrt.Node
	cl   *nola.Client
	seq  int
}

func (s *sim) fail(err error) {
	s.err = errors.Join(s.err, err)
}

func (s *sim) main() {
	cfg := s.cfg
	w := s.w
	ctx := context.Background()
	s.driver = w.Node("driver")
	s.storeNode = w.Node(storeName)
	s.store = memkv.New(s.storeNode, memkv.Options{})
	s.net = newNetwork(w, cfg.Net, cfg.HandlerTimeout)
	s.oracle = newOracle(w, s.store)
	if cfg.Refine {
		s.ref = newRefinement(s)
	}
	s.types, s.kinds = map[string]nola.Factory{}, map[string]ActorKind{}
	for _, k := range cfg.catalog() {
		if k.Module == nil {
			// WASM kinds are resolved by each server's host.
			s.types[k.Type] = s.net.fx.traced(k.Factory)
		}
		s.kinds[k.Type] = k
	}
	for i := range cfg.Callers {
		s.callers = append(s.callers, ActorSpec{ID: fmt.Sprintf("caller%d", i), Type: TypeCaller})
	}
	if _, ok := s.kinds[TypeWASMCaller]; ok {
		for i := range cfg.WASMCallers {
			s.callers = append(s.callers, ActorSpec{ID: fmt.Sprintf("wcaller%d", i), Type: TypeWASMCaller})
		}
	}
	// Tickers alternate Go and WASM (the C guest ticker.wasm) when the
	// catalog has both.
	for i := range cfg.Tickers {
		spec := ActorSpec{ID: fmt.Sprintf("ticker%d", i), Type: TypeTicker}
		if _, ok := s.kinds[TypeWASMTicker]; ok && i%2 == 1 {
			spec = ActorSpec{ID: fmt.Sprintf("%s%d", wasmTickerPrefix, i), Type: TypeWASMTicker}
		}
		s.tickers = append(s.tickers, spec)
	}
	// The WASM kinds the run uses: servers get hosts only if there are
	// any.
	used := map[string]bool{}
	for _, a := range cfg.Actors {
		used[a.Type] = s.kinds[a.Type].Module != nil
	}
	for _, c := range slices.Concat(s.callers, s.tickers) {
		used[c.Type] = s.kinds[c.Type].Module != nil
	}
	for _, on := range used {
		s.wasm = s.wasm || on
	}
	if s.wasm {
		if err := s.uploadModules(ctx, used); err != nil {
			s.fail(err)
			return
		}
	}
	for _, a := range cfg.Actors {
		if _, ok := s.kinds[a.Type]; !ok {
			s.fail(fmt.Errorf("sim: actor %s has type %q, which is not in the catalog", a.ID, a.Type))
			return
		}
	}

	for i := range cfg.Servers {
		sl := &slot{i: i, name: fmt.Sprintf("s%d", i), rate: 1}
		sl.node = w.Node(sl.name)
		if i < len(cfg.Rates) && cfg.Rates[i] > 0 {
			sl.rate = cfg.Rates[i]
		}
		sl.node.SetRate(sl.rate)
		sl.link = &storeLink{n: s.net, from: sl.name, node: sl.node, inner: s.store, storeNode: s.storeNode,
			timeout: cfg.StoreTimeout, oracle: s.oracle, incarnation: func() int64 {
				if sl.srv == nil {
					return 0
				}
				return sl.srv.Incarnation()
			},
			released: func(atStop bool, res kv.CommitResult, err error) {
				st := &s.res.Stats
				switch {
				case err != nil:
				case !res.Succeeded:
					st.ReleasesRefused++
				case atStop:
					st.StopReleases++
				default:
					st.CapacityReleases++
				}
			},
			stopping: func() bool { return sl.stopping != nil && sl.stopping == sl.srv },
			ref:      s.ref,
		}
		s.net.listen(sl.name, sl.node, nil)
		s.servers = append(s.servers, sl)
	}
	started := s.driver.NewSema(0)
	for _, sl := range s.servers {
		sl.node.Go("start", func() {
			defer started.Release()
			s.startServer(sl)
		})
	}
	for range s.servers {
		if err := started.Acquire(ctx); err != nil {
			s.fail(err)
			return
		}
	}
	if s.err != nil {
		return
	}

	for j := range cfg.Clients {
		c := &clientSlot{name: fmt.Sprintf("c%d", j)}
		c.node = w.Node(c.name)
		link := &storeLink{n: s.net, from: c.name, node: c.node, inner: s.store, storeNode: s.storeNode, timeout: cfg.StoreTimeout, ref: s.ref}
		cl, err := nola.NewClient(nola.ClientConfig{Runtime: c.node, Store: link, Transport: s.net.Transport(c.name, c.node)})
		if err != nil {
			s.fail(err)
			return
		}
		c.cl = cl
		s.clients = append(s.clients, c)
	}

	done := s.driver.NewSema(0)
	per, extra := cfg.Ops/cfg.Clients, cfg.Ops%cfg.Clients
	for j, c := range s.clients {
		n := per
		if j < extra {
			n++
		}
		c.node.Go("client", func() {
			defer done.Release()
			s.runClient(j, n)
		})
	}
	nemesis := w.Node("nemesis")
	nemesis.Go("nemesis", func() {
		defer done.Release()
		s.runNemesis(nemesis)
	})
	for range len(s.clients) + 1 {
		if err := done.Acquire(ctx); err != nil {
			s.fail(err)
			return
		}
	}

	// Heal everything, let leases settle, and read every object once more
	// so that lost or resurrected writes show in the histories.
	s.healAll()
	_ = s.driver.Sleep(ctx, 2*cfg.LeaseTTL+time.Second)
	s.finalReads()

	s.setHorizons()
	s.oracle.finish()
	for _, sl := range s.servers {
		sl.halt()
		sl.wasm.close(false)
		s.res.Stats.Fences += sl.fences
		s.res.Stats.Activations += sl.activations
		s.res.Stats.Evictions += sl.evictions
		s.res.Stats.Sheds += sl.sheds
		s.res.Stats.LocalityMoves += sl.localityMoves
	}
}

// startServer starts a fresh server process in sl. It runs as a task of
// the slot's node, so a crash during registration kills it.
func (s *sim) startServer(sl *slot) {
	cfg := nola.ServerConfig{
		ID:             sl.name,
		Addr:           Addr(sl.name),
		Runtime:        sl.node,
		Store:          sl.link,
		Transport:      s.net.Transport(sl.name, sl.node),
		Types:          s.types,
		LeaseTTL:       s.cfg.LeaseTTL,
		Rho:            s.cfg.Rho,
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxActivations: s.cfg.MaxActivations,
		MemoryBudget:   s.cfg.MemoryBudget,
		Shed:           s.cfg.Shed,
		Locality:       s.cfg.Locality,
		Observer:       s.observer(),
		Mutations:      s.cfg.Mutations.set,
	}
	if s.cfg.Workers {
		cfg.Workers = map[string]nola.WorkerFunc{RelayWorker: relay}
	}
	var proc *wasmProc
	if s.wasm {
		proc = &wasmProc{s: s, sl: sl}
		cfg.Resolver = proc
	}
	srv, err := nola.NewServer(cfg)
	if err != nil {
		s.fail(fmt.Errorf("sim: server %s: %w", sl.name, err))
		return
	}
	if proc != nil {
		proc.srv = srv
		sl.wasm = proc
	}
	sl.srv = srv
	s.net.listen(sl.name, sl.node, srv)
	if err := srv.Start(context.Background()); err != nil && sl.stopping != srv {
		// (A process stopped while it registers gives up registering.)
		s.fail(fmt.Errorf("sim: start %s: %w", sl.name, err))
	}
}

// stop shuts server sl down gracefully (FaultStop) within grace, as a
// task of its node (so that a pause holds the shutdown and a crash kills
// it), then ends the process. It reports false if there is no process to
// stop or it is stopping already.
func (s *sim) stop(sl *slot, grace time.Duration) bool {
	srv := sl.srv
	if sl.crashed || srv == nil || sl.stopping != nil {
		return false
	}
	sl.stopping = srv
	sl.node.Go("shutdown", func() {
		ctx, cancel := sl.node.WithTimeout(context.Background(), grace)
		err := srv.Shutdown(ctx)
		cancel()
		if sl.stopping != srv {
			return // killed meanwhile (a crash kills this task anyway)
		}
		st := &s.res.Stats
		if err != nil {
			st.StopErrors++
		} else {
			st.Stops++
		}
		s.w.Trace(fmt.Sprintf("stopped %s (error: %v)", sl.name, err != nil))
		// The process exits: whatever it still runs (handlers waiting on
		// the network) dies with it.
		s.down(sl, false)
	})
	return true
}

// restartStopped restarts a stopped server; one still shutting down is
// killed first.
func (s *sim) restartStopped(sl *slot, srv *nola.Server) {
	if sl.stopping == srv && sl.srv == srv {
		s.crash(sl) // counted in StopsKilled
	}
	s.restart(sl)
}

// crash kills server i: its process (tasks, timers, memory) is gone; its
// lease is left to expire.
func (s *sim) crash(sl *slot) bool {
	if sl.crashed {
		return false
	}
	if sl.stopping != nil && sl.stopping == sl.srv {
		s.res.Stats.StopsKilled++ // killed during its shutdown
	}
	s.down(sl, true)
	return true
}

// down ends server i's process: crashed, or exiting after a graceful
// stop (its instances then are those the shutdown left, if any).
func (s *sim) down(sl *slot, crashed bool) {
	sl.stopping = nil
	s.net.listen(sl.name, sl.node, nil)
	sl.halt()
	sl.srv = nil
	sl.node.Crash()
	// The process's memory is gone: its WASM instances with it (those
	// busy in a killed task close as it unwinds).
	sl.wasm.close(crashed)
	sl.wasm = nil
	sl.crashed = true
}

// halt stops the slot's server process, if any, keeping its counters.
func (sl *slot) halt() {
	if sl.srv == nil {
		return
	}
	st := sl.srv.Stats()
	sl.fences += st.Fences
	sl.activations += st.Activated
	sl.evictions += st.Evicted
	sl.sheds += st.Shed
	sl.localityMoves += st.LocalityMoves
	sl.srv.Halt()
}

// restart boots a new server process on a crashed host.
func (s *sim) restart(sl *slot) {
	if !sl.crashed {
		return
	}
	sl.crashed = false
	sl.node.Restart()
	sl.node.Go("restart", func() { s.startServer(sl) })
}

func (s *sim) healAll() {
	s.net.healAll()
	for _, sl := range s.servers {
		sl.node.Resume()
		if sl.stopping != nil {
			s.restartStopped(sl, sl.stopping)
		}
		s.restart(sl)
	}
}

func (s *sim) runNemesis(node *simrt.Node) {
	ctx := context.Background()
	var last time.Duration
	for _, f := range s.cfg.Faults {
		if d := f.At - s.w.Now(); d > 0 {
			if err := node.Sleep(ctx, d); err != nil {
				return
			}
		}
		if applied, ok := s.inject(node, f); ok {
			s.res.Stats.Faults++
			s.faultNotes = append(s.faultNotes, note{tag: "nemesis", start: s.w.Now(), end: s.w.Now() + f.Dur, text: applied.String()})
			s.w.Trace("nemesis " + applied.String())
		}
		last = max(last, f.At+f.Dur)
	}
	if d := last - s.w.Now(); d > 0 {
		_ = node.Sleep(ctx, d+time.Millisecond)
	}
}

// inject applies one fault and schedules its end; it returns the fault as
// applied and whether it did anything.
func (s *sim) inject(node *simrt.Node, f Fault) (Fault, bool) {
	if f.Server < 0 || f.Server >= len(s.servers) {
		return f, false
	}
	if f.Kind == FaultCrash || f.Kind == FaultPause || f.Kind == FaultStop {
		// A crashed or paused host cannot crash or pause again, nor a
		// stopping one stop again: take the next one that can; if none
		// can, cut the first from the store. (A paused server can be
		// asked to stop: its shutdown starts when it resumes.)
		first := f.Server
		f.Server = -1
		for k := range len(s.servers) {
			o := s.servers[(first+k)%len(s.servers)]
			if !o.crashed && (f.Kind == FaultStop && o.stopping == nil && o.srv != nil || f.Kind != FaultStop && !o.node.Paused()) {
				f.Server = o.i
				break
			}
		}
		if f.Server < 0 {
			f.Kind, f.Server, f.Link = FaultPartition, first, LinkServerStore
		}
	}
	sl := s.servers[f.Server]
	later := func(fn func()) { node.AfterFunc(f.Dur, "heal", fn) }
	switch f.Kind {
	case FaultCrash:
		if !s.crash(sl) {
			return f, false
		}
		later(func() { s.restart(sl) })
	case FaultPause:
		if sl.crashed || sl.node.Paused() {
			return f, false
		}
		sl.node.Pause()
		later(sl.node.Resume)
	case FaultPartition:
		switch f.Link {
		case LinkServerStore:
			s.net.partition(sl.name, storeName, f.Dur, f.Buffer)
		case LinkServerServer:
			if f.Peer == f.Server {
				f.Peer = -1 // cut from itself: read as from every other server
			}
			for _, o := range s.servers {
				if o != sl && (f.Peer < 0 || f.Peer == o.i) {
					s.net.partition(sl.name, o.name, f.Dur, f.Buffer)
				}
			}
		case LinkClientServer:
			for j, c := range s.clients {
				if f.Peer < 0 || f.Peer == j {
					s.net.partition(sl.name, c.name, f.Dur, f.Buffer)
				}
			}
		}
	case FaultDrift:
		sl.node.SetRate(f.Rate)
		later(func() { sl.node.SetRate(sl.rate) })
	case FaultStoreDown:
		s.net.storeDown(f.Dur)
	case FaultSlowLinks:
		s.net.slowDown(sl.name, f.Link, f.Dur, f.Extra)
	case FaultStop:
		srv := sl.srv
		if !s.stop(sl, f.Dur/2) {
			return f, false
		}
		later(func() { s.restartStopped(sl, srv) })
	default:
		return f, false
	}
	return f, true
}

// target is what a client operation is sent to.
type target struct {
	spec ActorSpec
	kind ActorKind
	via  ActorSpec // a caller actor forwarding the operation, if any
	// viaWorker: RelayWorker forwards the operation (Config.Workers).
	viaWorker bool
}

func (s *sim) runClient(j, n int) {
	c := s.clients[j]
	ctx := context.Background()
	pace := s.cfg.Horizon / time.Duration(max(n, 1))
	for range n {
		think := time.Duration(float64(pace) * (0.2 + 1.6*s.rng.Float64()))
		if err := c.node.Sleep(ctx, think); err != nil {
			return
		}
		t, call := s.draw(c, j)
		timeout := time.Duration(float64(s.cfg.OpTimeout) * (0.5 + 0.5*s.rng.Float64()))
		s.do(c, j, t, call, timeout)
	}
}

// draw picks an actor (hot ones more often, so that clients collide) and
// an operation on it.
func (s *sim) draw(c *clientSlot, j int) (target, Call) {
	c.seq++
	if len(s.tickers) > 0 && s.rng.IntN(10) == 0 {
		spec := s.tickers[s.rng.IntN(len(s.tickers))]
		k := s.kinds[spec.Type]
		return target{spec: spec, kind: k}, k.Op(s.rng, spec.ID, j, c.seq)
	}
	n := len(s.cfg.Actors)
	i := min(s.rng.IntN(n), s.rng.IntN(n))
	spec := s.cfg.Actors[i]
	k := s.kinds[spec.Type]
	call := k.Op(s.rng, spec.ID, j, c.seq)
	t := target{spec: spec, kind: k}
	if s.cfg.Deletes && deletable(call.Kind) && s.rng.IntN(12) == 0 {
		// Drawn only with deletes on: other seeds keep their runs.
		return t, Call{Object: call.Object, Kind: call.Kind, Name: "delete", Delete: true}
	}
	if (len(s.callers) > 0 || s.cfg.Workers) && k.ViaCaller != "" && call.Operation == k.ViaCaller && s.rng.IntN(s.cfg.viaCallerOneIn()) == 0 {
		// (Without Workers, exactly the draws of earlier versions: the
		// default seeds replay unchanged.)
		if s.cfg.Workers && (len(s.callers) == 0 || s.rng.IntN(2) == 0) {
			t.viaWorker = true
		} else {
			t.via = s.callers[s.rng.IntN(len(s.callers))]
		}
	}
	return t, call
}

// do runs one client operation and records it.
func (s *sim) do(c *clientSlot, j int, t target, call Call, timeout time.Duration) bool {
	p := s.hist.Call(j, call.Object, call.Kind, call.Name, call.Arg, int64(s.w.Now()))
	ctx, cancel := c.node.WithTimeout(withToken(context.Background(), p.ID()+1), timeout)
	var (
		b   []byte
		err error
	)
	switch {
	case call.Delete:
		if err = c.cl.Delete(ctx, Namespace, t.spec.ID); err == nil {
			b = []byte("ok")
		}
	case t.viaWorker:
		s.res.Stats.ViaWorker++
		b, err = c.cl.CallWorker(ctx, Namespace, RelayWorker, "call", []byte(t.spec.Type+"/"+t.spec.ID+"/"+call.Operation))
	case t.via.ID != "":
		b, err = c.cl.Invoke(ctx, Namespace, t.via.ID, t.via.Type, "call", []byte(t.spec.Type+"/"+t.spec.ID+"/"+call.Operation))
	default:
		b, err = c.cl.Do(ctx, nola.Request{Namespace: Namespace, ActorID: t.spec.ID, ActorType: t.spec.Type,
			Operation: call.Operation, Payload: call.Payload, CreationArgs: call.CreationArgs})
	}
	cancel()
	now := int64(s.w.Now())
	st := &s.res.Stats
	st.Ops++
	via := ""
	switch {
	case t.via.ID != "":
		via = " via " + t.via.ID
	case t.viaWorker:
		via = " via worker " + RelayWorker
	}
	switch {
	case err == nil && call.Delete:
		st.OK++
		st.Deletes++
		p.Ok("ok", true, now, "deleted")
		return true
	case call.Delete && errors.Is(err, nola.ErrNotFound):
		// A determinate answer: the actor did not exist.
		st.OK++
		p.Ok("", false, now, "not found")
		return true
	case err == nil:
		st.OK++
		v, found := call.Decode(b)
		p.Ok(v, found, now, "ok"+via)
		return true
	case nola.IsRetryable(err):
		// Certainly did not run (see nola.Error.Retryable).
		st.Failed++
		st.Codes[nola.CodeOf(err)]++
		p.Failed(now, err.Error())
	default:
		// Anything else may hide an effect: a timeout, an answer lost, a
		// fence after the actor ran, an actor error after partial effects,
		// even bad_request/too_large (raised after running when the
		// actor's own result or KV write hits a limit). Indeterminate.
		st.Indeterminate++
		st.Codes[nola.CodeOf(err)]++
		p.Indeterminate(now, err.Error()+via)
	}
	return false
}

// finalReads reads every checked object once more from a healed cluster,
// retrying (each attempt is recorded) until one answers.
func (s *sim) finalReads() {
	c := s.clients[0]
	for _, a := range s.cfg.Actors {
		k := s.kinds[a.Type]
		if k.Final == nil {
			continue
		}
		for _, call := range k.Final(a.ID) {
			answered := false
			for range 5 {
				if answered = s.do(c, 0, target{spec: a, kind: k}, call, 3*time.Second); answered {
					break
				}
				_ = c.node.Sleep(context.Background(), s.cfg.LeaseTTL/2)
			}
			if !answered {
				s.res.Stats.FinalUnanswered++
			}
		}
	}
}

// setHorizons bounds, from the simulator's full view, when each
// indeterminate operation may have taken effect (see effects).
func (s *sim) setHorizons() {
	for id := range s.hist.Len() {
		op := s.hist.Get(id)
		if !op.Indeterminate || op.Kind == "" || op.Kind == linearizability.Unchecked {
			continue
		}
		if first, last, ok := s.net.fx.span(id + 1); ok {
			s.hist.SetEffectWindow(id, max(int64(first), op.Call, 1), max(int64(last), op.Call, 1))
		} else {
			// It never took effect; it stays indeterminate, confined to
			// its call.
			s.hist.SetEffectWindow(id, max(op.Call, 1), max(op.Call, 1))
		}
	}
}

// Summary is a one-line account of a run.
func (r *Result) Summary() string {
	verdict := "ok"
	switch {
	case r.Failed():
		verdict = "FAIL"
	case r.Inconclusive():
		verdict = "UNCHECKED"
	}
	st := &r.Stats
	return fmt.Sprintf("seed %d %s: %d ops (%d ok, %d indeterminate, %d not run), %d faults, %d fences, %d stops (%d with errors, %d killed), %d releases (%d at capacity or shed, %d at stop, %d refused), %d shed, %d oracle violations, %d/%d objects illegal (%d unknown), %v virtual, %d steps, %v wall",
		r.Config.Seed, verdict, st.Ops, st.OK, st.Indeterminate, st.Failed, st.Faults, st.Fences,
		st.Stops+st.StopErrors, st.StopErrors, st.StopsKilled, st.CapacityReleases+st.StopReleases, st.CapacityReleases, st.StopReleases, st.ReleasesRefused, st.Sheds,
		len(r.Violations), r.Lin.Illegal, r.Lin.Checked, r.Lin.Unknown, r.Virtual.Round(time.Millisecond), r.Steps, r.Wall.Round(time.Millisecond))
}

// sortedCodes lists error codes in order, for reports.
func (st Stats) sortedCodes() []nola.Code {
	codes := make([]nola.Code, 0, len(st.Codes))
	for c := range st.Codes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// observer is what servers report their activations to: the oracle, and
// the refinement check when it runs.
func (s *sim) observer() nola.Observer {
	if s.ref == nil {
		return s.oracle
	}
	return observer{o: s.oracle, r: s.ref}
}
