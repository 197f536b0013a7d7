package sim

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/internal/race"
	"github.com/nolaproject/nola/linearizability"
)

// seedCount is how many seeds TestSeeds runs: NOLA_SIM_SEEDS, or 400
// (fewer under -short and the race detector).
func seedCount(t *testing.T) int {
	if s := os.Getenv("NOLA_SIM_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("NOLA_SIM_SEEDS=%q: want a positive number", s)
		}
		return n
	}
	switch {
	case race.Enabled:
		return 40
	case testing.Short():
		return 100
	}
	return 400
}

// seedBudget is porcupine's budget per object in the seed sweeps: the
// default, and five times it under the race detector (which slows the
// checker down about tenfold), so that a loaded machine does not leave
// histories unchecked.
func seedBudget() time.Duration {
	if race.Enabled {
		return 5 * LinCheckBudget
	}
	return LinCheckBudget
}

// errorLogger is the part of testing.TB checkSeed uses (recordingTB has
// it too).
type errorLogger interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// checkSeed fails t for a run that found a violation, broke, or left a
// history unchecked because porcupine's budget ran out — a sweep with
// unchecked histories has not passed.
func checkSeed(t errorLogger, r *Result, dir string) {
	t.Helper()
	if r.Failed() {
		files, err := r.WriteHTML(dir)
		t.Errorf("%s\nreplay: %s\nHTML: %v %v", r.Report(), r.Repro(dir), files, err)
	}
	if r.Inconclusive() {
		t.Errorf("%s", r.Unchecked(dir))
	}
	if r.Stats.FinalUnanswered > 0 {
		// The object's final state went unread: what it would have shown
		// was not checked.
		t.Errorf("seed %d: %d final reads never answered after the faults healed\nreplay: %s", r.Config.Seed, r.Stats.FinalUnanswered, r.Repro(dir))
	}
}

// TestSeeds runs hundreds of generated simulations — random clusters,
// workloads and fault schedules of the real engine — and checks every
// history with porcupine and every event with the oracle. Any violation
// fails the test with the seed's report, a one-line replay command and
// the HTML history; so does a history porcupine gave up on.
func TestSeeds(t *testing.T) {
	n := seedCount(t)
	dir := DefaultHTMLDir()
	var agg Aggregate
	var oracle OracleStats
	var mixed, wasmOK, goOK, buggified int
	fired := map[string]int{}
	start := time.Now()
	Sweep(1, n, 0, Options{CheckBudget: seedBudget()}, func(r *Result) bool {
		agg.Add(r)
		if r.Config.Buggify {
			buggified++
		}
		for p, k := range r.Buggified {
			fired[p] += k
		}
		w, g := okOpsByRuntime(r)
		wasmOK += w
		goOK += g
		if mixesGoAndWASM(r.Config) {
			mixed++
		}
		o := r.Stats.Oracle
		oracle.Activations += o.Activations
		oracle.Executions += o.Executions
		oracle.Withheld += o.Withheld
		oracle.TimerExecutions += o.TimerExecutions
		oracle.WASMTimerExecutions += o.WASMTimerExecutions
		oracle.StoreCommits += o.StoreCommits
		checkSeed(t, r, dir)
		if r.Stats.Ops < 200 || r.Stats.Faults < 5 {
			t.Errorf("seed %d: %d operations and %d faults, want at least 200 and 5", r.Config.Seed, r.Stats.Ops, r.Stats.Faults)
		}
		return false
	})
	t.Log(agg.Figures(time.Since(start)))
	t.Logf("oracle: %d activations, %d executions (%d withheld by the output gate, %d timer-driven, %d of them in WASM), %d KV commits applied; %d fences, %d evictions, %d Deactivate hooks",
		oracle.Activations, oracle.Executions, oracle.Withheld, oracle.TimerExecutions, oracle.WASMTimerExecutions, oracle.StoreCommits, agg.Fences, agg.Evictions, agg.Deactivations)
	t.Logf("WASM: %d of %d seeds mix Go and WASM checked actors; %d answered client operations on WASM actors, %d on Go actors; %d hosts, %d compilations, %d instances (%d swept after a fence, %d taken by crashes), %d traps",
		mixed, n, wasmOK, goOK, agg.WASM.Hosts, agg.WASM.Compiled, agg.WASM.Instantiated, agg.WASM.Swept, agg.WASM.Crashed, agg.WASM.Traps)
	if agg.Runs != n {
		t.Fatalf("%d runs, want %d", agg.Runs, n)
	}
	// The engine's fault points (rt.Buggify) were on in about half the
	// seeds, and every one of them fired: a point that never fires tests
	// nothing.
	t.Logf("fault points: on in %d of %d seeds, fired %v", buggified, n, fired)
	if buggified < n/4 || buggified > n*3/4 {
		t.Errorf("fault points on in %d of %d seeds, want about half", buggified, n)
	}
	for _, p := range []string{"client.route-forgotten", "kv.commit-delayed", "sweep.early", "sweep.overflow"} {
		if n >= 50 && fired[p] == 0 {
			t.Errorf("fault point %s never fired in %d seeds", p, n)
		}
	}
	// The runs exercised what the checkers watch: a sweep where nothing
	// moved, nothing timed out or nothing was fenced would prove little.
	switch {
	case agg.Fences == 0:
		t.Error("no server ever fenced itself")
	case agg.Indeterminate == 0:
		t.Error("no operation had an unknown outcome")
	case oracle.Withheld == 0:
		t.Error("the output gate never withheld a result")
	case oracle.TimerExecutions == 0:
		t.Error("no timer ever fired")
	case oracle.WASMTimerExecutions == 0:
		t.Error("no timer set by a WASM guest ever fired")
	case oracle.StoreCommits == 0:
		t.Error("no KV commit was applied")
	case agg.CheckedObjects == 0:
		t.Error("porcupine checked nothing")
	case agg.Evictions == 0:
		t.Error("no activation was ever evicted")
	case agg.Deactivations == 0:
		t.Error("no Deactivate hook ever ran")
	case oracle.Activations <= int64(agg.Runs)*2:
		t.Errorf("only %d activations in %d runs: actors barely moved", oracle.Activations, agg.Runs)
	}
	// Both release paths of the protocol ran, under faults: servers at
	// their activation limit released actors they were asked to activate
	// (in many seeds), and graceful stops released what they hosted —
	// some finished, some hit a fault while shutting down (an error: a
	// release or the revocation failed), some were killed midway.
	switch {
	case agg.CapacityReleases == 0 || agg.CapacitySeeds < n/8:
		t.Errorf("releases at capacity: %d, in %d of %d seeds (want some in at least an eighth)", agg.CapacityReleases, agg.CapacitySeeds, n)
	case agg.Stops == 0 || agg.StopSeeds < n/4:
		t.Errorf("graceful stops: %d finished, in %d of %d seeds (want some in at least a quarter)", agg.Stops, agg.StopSeeds, n)
	case agg.StopReleases == 0:
		t.Error("no graceful stop released an actor")
	case agg.StopErrors == 0:
		t.Error("no graceful stop met a fault (every shutdown released everything and revoked its lease)")
	case agg.StopsKilled == 0:
		t.Error("no shutdown was killed before it finished")
	}
	// WASM actors ran alongside Go actors, crashes and fences reclaimed
	// their instances (every run checks that none is left open), and no
	// guest trapped (the guests are well-behaved: a trap would be a host
	// or engine fault).
	switch {
	case mixed < n/2:
		t.Errorf("only %d of %d seeds mix Go and WASM checked actors", mixed, n)
	case wasmOK < goOK/4:
		t.Errorf("%d answered operations on WASM actors against %d on Go actors", wasmOK, goOK)
	case agg.WASM.Swept == 0:
		t.Error("no instance of a fenced activation was ever reclaimed")
	case agg.WASM.Crashed == 0:
		t.Error("no crash ever took a WASM instance")
	case agg.WASM.Traps > 0:
		t.Errorf("%d WASM guest executions trapped", agg.WASM.Traps)
	case agg.WASM.Leaked > 0:
		t.Errorf("%d WASM instances leaked", agg.WASM.Leaked)
	}
}

// A history porcupine gave up on fails the seed sweep, with a message that
// says so and how to replay it with a larger budget.
func TestUncheckedHistoryFailsTheSweep(t *testing.T) {
	r := &Result{Config: Generate(7, Options{})}
	r.Lin = linearizability.Report{Checked: 2, Unknown: 1, Verdicts: []linearizability.Verdict{
		{Object: "a1", Kind: linearizability.CounterWithReset, Result: linearizability.Unknown, Ops: 40, Indeterminate: 3},
		{Object: "a2", Kind: linearizability.Counter, Result: linearizability.Ok, Ops: 12},
	}}
	if r.Failed() || !r.Inconclusive() {
		t.Fatalf("Failed=%v Inconclusive=%v, want a run that is not a violation but was not checked", r.Failed(), r.Inconclusive())
	}
	rec := &recordingTB{name: t.Name()}
	checkSeed(rec, r, "/tmp/h")
	msg := strings.Join(rec.log, "\n")
	if !rec.failed {
		t.Errorf("checkSeed passed a run with an unchecked history:\n%s", msg)
	}
	for _, want := range []string{"NOT checked", "a1 (counter-with-reset): 40 operations, 3 indeterminate", "go run ./sim/cmd/nolasim -seed 7 -check-budget 3m20s -html /tmp/h"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(r.Summary(), "UNCHECKED") {
		t.Errorf("summary %q does not say the run is unchecked", r.Summary())
	}
	var agg Aggregate
	agg.Add(r)
	if agg.Inconclusive != 1 || agg.UnknownObjects != 1 {
		t.Errorf("aggregate counts %d unchecked runs, %d unknown objects; want 1, 1", agg.Inconclusive, agg.UnknownObjects)
	}

	// Once checked, the same run passes.
	r.Lin.Unknown, r.Lin.Verdicts[0].Result = 0, linearizability.Ok
	rec = &recordingTB{name: t.Name()}
	checkSeed(rec, r, "/tmp/h")
	if rec.failed || r.Unchecked("/tmp/h") != "" {
		t.Errorf("checkSeed failed a checked run: %v", rec.log)
	}
}

// actorKinds maps each checked actor of a configuration to its kind.
func actorKinds(cfg *Config) map[string]ActorKind {
	byType := map[string]ActorKind{}
	for _, k := range cfg.catalog() {
		byType[k.Type] = k
	}
	out := map[string]ActorKind{}
	for _, a := range cfg.Actors {
		out[a.ID] = byType[a.Type]
	}
	return out
}

// okOpsByRuntime counts the answered client operations on checked WASM
// and Go actors.
func okOpsByRuntime(r *Result) (wasmOps, goOps int) {
	kinds := actorKinds(&r.Config)
	for _, op := range r.History {
		id, _, _ := strings.Cut(op.Object, "/")
		k, ok := kinds[id]
		switch {
		case op.Indeterminate || !ok:
		case k.Module != nil:
			wasmOps++
		default:
			goOps++
		}
	}
	return wasmOps, goOps
}

// mixesGoAndWASM reports whether a configuration has checked actors of
// both runtimes.
func mixesGoAndWASM(cfg Config) bool {
	var w, g bool
	for _, k := range actorKinds(&cfg) {
		w, g = w || k.Module != nil, g || k.Module == nil
	}
	return w && g
}

// TestDeterminism re-runs 20 seeds and compares the full trace hash (every
// scheduling decision, every traced event) and the histories. Most of the
// seeds run WASM actors; the first of those also runs with a cold
// compilation cache of its own (no module compiled yet) and must not
// notice.
func TestDeterminism(t *testing.T) {
	hashes := map[uint64]uint64{}
	withWASM, cold := 0, false
	for seed := uint64(1); seed <= 20; seed++ {
		cfg := Generate(seed, Options{})
		a, b := Run(cfg), Run(cfg)
		if a.Err != nil {
			t.Fatalf("seed %d: %v", seed, a.Err)
		}
		if a.Stats.WASM.Instantiated > 0 {
			withWASM++
			if !cold {
				cold = true
				c := run(cfg, newShared())
				if c.Stats.WASM.Compiled == 0 || c.Hash != a.Hash || !slices.Equal(c.History, a.History) {
					t.Errorf("seed %d with a cold compilation cache (%d compilations): hash %x, want %x", seed, c.Stats.WASM.Compiled, c.Hash, a.Hash)
				}
			}
		}
		if a.Hash != b.Hash || a.Steps != b.Steps || a.Virtual != b.Virtual {
			t.Errorf("seed %d replayed differently: hash %x/%x, %d/%d steps, %v/%v virtual", seed, a.Hash, b.Hash, a.Steps, b.Steps, a.Virtual, b.Virtual)
		}
		if !slices.Equal(a.History, b.History) {
			t.Errorf("seed %d: the histories differ", seed)
		}
		if other, dup := hashes[a.Hash]; dup {
			t.Errorf("seeds %d and %d have the same trace hash %x", other, seed, a.Hash)
		}
		hashes[a.Hash] = seed
	}
	if withWASM < 15 {
		t.Errorf("only %d of 20 seeds ran WASM actors", withWASM)
	}
}

// maxMutationSeeds bounds the search for each mutation (the bound).
const maxMutationSeeds = 200

// mutationSeeds is the search bound of one mutation and catalog: 200, but
// for the review's bug in WASM-only runs, which needs a commit of unknown
// outcome that lands late, after a later acknowledged write on the same
// activation (first caught at seed 344; see sim/README.md).
func mutationSeeds(name, variant string) int {
	if name == "ActorErrorHidesFailedCommit" && variant == "wasm-only" {
		return 500
	}
	return maxMutationSeeds
}

// wasmOnlyCatalog is the default catalog with WASM checked actors only
// (the helpers stay: Go and WASM callers, the Go ticker).
func wasmOnlyCatalog() []ActorKind {
	cat := DefaultCatalog()
	for i := range cat {
		if cat[i].Module == nil {
			cat[i].Weight = 0
		}
	}
	return cat
}

// TestMutationsAreCaught proves the checkers are not vacuous: each switch
// that breaks one rule of the protocol (and clocks drifting beyond ρ) must
// be caught — by porcupine or the oracle — within 200 seeds, both in the
// default mix of Go and WASM actors and with WASM checked actors only. It
// reports how many seeds each took, and checks that the failing seed's
// replay command and HTML history work.
//
// Under the race detector only the first mutation runs, in the default mix:
// the whole table takes over 10 minutes there on a loaded 2-core machine
// (past make test's race-step timeout), it exercises no concurrency the
// seed sweeps do not, and the plain step runs every mutation.
func TestMutationsAreCaught(t *testing.T) {
	names, variants := MutationNames(), []string{"mixed", "wasm-only"}
	if race.Enabled {
		names, variants = names[:1], variants[:1]
	}
	for _, name := range names {
		for _, variant := range variants {
			t.Run(name+"/"+variant, func(t *testing.T) {
				opts, err := ParseOptions(name)
				if err != nil {
					t.Fatal(err)
				}
				if variant == "wasm-only" {
					opts.Catalog = wasmOnlyCatalog()
				}
				var first *Result
				bound := mutationSeeds(name, variant)
				Sweep(1, bound, 0, opts, func(r *Result) bool {
					if r.Failed() && (first == nil || r.Config.Seed < first.Config.Seed) {
						first = r
					}
					return first != nil
				})
				if first == nil {
					t.Fatalf("mutation %s (%s) was not caught in %d seeds", name, variant, bound)
				}
				if first.Err != nil {
					t.Fatalf("seed %d broke instead of reporting a violation: %v", first.Config.Seed, first.Err)
				}
				t.Logf("%s (%s) caught at seed %d (%d seeds needed) by %s", name, variant, first.Config.Seed, first.Config.Seed, caughtBy(first))

				// The seed replays exactly; with the default catalog, the
				// repro line names the seed and the mutation.
				dir := t.TempDir()
				if opts.Catalog == nil {
					repro := first.Repro(dir)
					if !strings.Contains(repro, fmt.Sprintf("-seed %d ", first.Config.Seed)) || !strings.Contains(repro, "-mutations "+name) {
						t.Errorf("repro line %q lacks the seed or the mutation", repro)
					}
				}
				again := Run(Generate(first.Config.Seed, opts))
				if again.Hash != first.Hash || !again.Failed() {
					t.Errorf("seed %d did not replay: hash %x vs %x, failed=%v", first.Config.Seed, again.Hash, first.Hash, again.Failed())
				}
				files, err := first.WriteHTML(dir)
				if err != nil || len(files) == 0 {
					t.Fatalf("HTML history: %v, %v", files, err)
				}
				b, err := os.ReadFile(files[0])
				if err != nil || !strings.Contains(string(b), "<html") {
					t.Errorf("HTML history %s unreadable (%v)", files[0], err)
				}
			})
		}
	}
}

func caughtBy(r *Result) string {
	rules := map[string]int{}
	for _, v := range r.Violations {
		rules["oracle "+v.Rule]++
	}
	if r.Lin.Illegal > 0 {
		rules["porcupine"] = r.Lin.Illegal
	}
	var parts []string
	for _, k := range sortedKeys(rules) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, rules[k]))
	}
	return strings.Join(parts, ", ")
}

// drawConfig draws a small cluster and a fault schedule with rapid, so
// that a failing schedule shrinks to a minimal one.
func drawConfig(t *rapid.T, opts Options) Config {
	ttl := rapid.SampledFrom([]time.Duration{time.Second, 2 * time.Second}).Draw(t, "ttl")
	c := Config{
		Seed:           rapid.Uint64().Draw(t, "seed"),
		Servers:        rapid.IntRange(2, 4).Draw(t, "servers"),
		Clients:        rapid.IntRange(1, 4).Draw(t, "clients"),
		Callers:        rapid.IntRange(0, 1).Draw(t, "callers"),
		WASMCallers:    rapid.IntRange(0, 1).Draw(t, "wasm callers"),
		Tickers:        rapid.IntRange(0, 1).Draw(t, "tickers"),
		Ops:            200,
		Horizon:        8 * ttl,
		OpTimeout:      time.Second,
		LeaseTTL:       ttl,
		IdleTimeout:    2 * ttl,
		MaxActivations: rapid.SampledFrom([]int{0, 2, 3}).Draw(t, "max activations"),
		Rho:            0.01,
		StoreTimeout:   time.Second,
		HandlerTimeout: 3 * time.Second,
		Mutations:      opts.Mutations,
		BeyondRho:      opts.BeyondRho,
		Net: NetParams{
			MinLatency: 100 * time.Microsecond,
			MaxLatency: 2 * time.Millisecond,
			SpikeProb:  rapid.SampledFrom([]float64{0, 0.003}).Draw(t, "spikes"),
			SpikeMax:   ttl,
			Loss:       rapid.SampledFrom([]float64{0, 0.003}).Draw(t, "loss"),
		},
	}
	types := rapid.SliceOfN(rapid.SampledFrom([]string{TypeCounter, TypeKVCounter, TypeRegister, TypeWASMCounter, TypeWASMKVCounter}), 1, 6).Draw(t, "actors")
	for i, typ := range types {
		c.Actors = append(c.Actors, ActorSpec{ID: fmt.Sprintf("a%d", i), Type: typ})
	}
	for range c.Servers {
		c.Rates = append(c.Rates, 1)
	}
	rate := rapid.Float64Range(1-c.Rho, 1+3*c.Rho)
	if opts.BeyondRho {
		rate = rapid.Float64Range(0.3, 0.8)
	}
	// rapid favours small draws (and shrinks towards them), so every
	// field is laid out for its smallest value to still be a real fault:
	// after the warm-up, longer than a lease, the most dangerous kinds
	// and links first.
	kinds := []FaultKind{FaultPause, FaultPartition, FaultCrash, FaultStop, FaultStoreDown, FaultSlowLinks, FaultDrift}
	links := []LinkKind{LinkServerStore, LinkClientServer, LinkServerServer}
	fault := rapid.Custom(func(t *rapid.T) Fault {
		return Fault{
			Kind:   rapid.SampledFrom(kinds).Draw(t, "kind"),
			At:     ttl + time.Duration(rapid.Int64Range(0, int64(c.Horizon-2*ttl)).Draw(t, "at")),
			Dur:    ttl*3/2 + time.Duration(rapid.Int64Range(0, int64(2*ttl)).Draw(t, "dur")),
			Server: rapid.IntRange(0, c.Servers-1).Draw(t, "server"),
			Link:   rapid.SampledFrom(links).Draw(t, "link"),
			Peer:   rapid.IntRange(-1, c.Servers-1).Draw(t, "peer"),
			Buffer: rapid.Bool().Draw(t, "buffer"),
			Rate:   rate.Draw(t, "rate"),
			Extra:  ttl/2 + time.Duration(rapid.Int64Range(0, int64(2*ttl)).Draw(t, "extra")),
		}
	})
	c.Faults = rapid.SliceOfN(fault, 1, 10).Draw(t, "faults")
	sortFaults(c.Faults)
	return c
}

// TestRapidFaultSchedules: no schedule rapid can draw breaks linearizability
// or the oracle's rules; a failure shrinks to a minimal schedule.
func TestRapidFaultSchedules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := drawConfig(t, Options{})
		r := Run(cfg)
		if r.Failed() {
			t.Fatalf("%s", r.Report())
		}
		if r.Inconclusive() {
			t.Fatalf("%s", r.Unchecked(os.TempDir()))
		}
		if r.Stats.FinalUnanswered > 0 {
			t.Fatalf("%d final reads never answered after the faults healed:\n%s", r.Stats.FinalUnanswered, r.Report())
		}
	})
}

// recordingTB lets a test run rapid.Check on a property that is expected
// to fail, and inspect the outcome instead of failing.
type recordingTB struct {
	name   string
	failed bool
	log    []string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Name() string              { return r.name }
func (r *recordingTB) Logf(f string, a ...any)   { r.log = append(r.log, fmt.Sprintf(f, a...)) }
func (r *recordingTB) Log(a ...any)              { r.log = append(r.log, fmt.Sprint(a...)) }
func (r *recordingTB) Skipf(f string, a ...any)  { r.Logf(f, a...) }
func (r *recordingTB) Skip(a ...any)             { r.Log(a...) }
func (r *recordingTB) SkipNow()                  {}
func (r *recordingTB) Errorf(f string, a ...any) { r.failed = true; r.Logf(f, a...) }
func (r *recordingTB) Error(a ...any)            { r.failed = true; r.Log(a...) }
func (r *recordingTB) Fatalf(f string, a ...any) { r.failed = true; r.Logf(f, a...) }
func (r *recordingTB) Fatal(a ...any)            { r.failed = true; r.Log(a...) }
func (r *recordingTB) FailNow()                  { r.failed = true }
func (r *recordingTB) Fail()                     { r.failed = true }
func (r *recordingTB) Failed() bool              { return r.failed }

// setFlag sets a command-line flag for the rest of a test.
func setFlag(t *testing.T, name, value string) {
	f := flag.Lookup(name)
	if f == nil {
		t.Fatalf("no flag %s", name)
	}
	old := f.Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set(name, old) })
}

// TestRapidShrinksBrokenProtocol shows that the rapid property bites and
// shrinks: with the deadline check switched off, rapid finds a failing
// schedule and reduces it to a couple of faults.
func TestRapidShrinksBrokenProtocol(t *testing.T) {
	setFlag(t, "rapid.nofailfile", "true") // the failure is expected: leave no fail file
	setFlag(t, "rapid.checks", "200")
	if flag.Lookup("rapid.seed").Value.String() == "0" {
		setFlag(t, "rapid.seed", "1") // reproducible
	}
	opts := Options{}
	opts.Mutations.set = opts.Mutations.set.With(mutation.SkipDeadlineCheck)
	var (
		last  *Config
		found int
	)
	rec := &recordingTB{name: t.Name()}
	rapid.Check(rec, func(rt *rapid.T) {
		cfg := drawConfig(rt, opts)
		if r := Run(cfg); r.Failed() {
			found++
			last = &cfg
			rt.Fatalf("seed %d: %s", cfg.Seed, caughtBy(r))
		}
	})
	if !rec.failed || last == nil {
		t.Fatalf("rapid found no failing schedule with SkipDeadlineCheck:\n%s", strings.Join(rec.log, "\n"))
	}
	var faults []string
	for _, f := range last.Faults {
		faults = append(faults, f.String())
	}
	t.Logf("rapid ran %d failing schedules while shrinking; the minimal one: %d servers, %d clients, %d actors, faults %v",
		found, last.Servers, last.Clients, len(last.Actors), faults)
	if len(last.Faults) > 3 {
		t.Errorf("the shrunk schedule still has %d faults: %v", len(last.Faults), faults)
	}
}

// TestGoGuests runs a few seeds with the optional Go-guest kinds
// (Options.GoGuests: WASM actors built from wasm/guests/go, ~3 ms per
// instance) besides the default mix; it is skipped with -short and under
// the race detector, where compiling a Go guest takes ~10 s.
func TestGoGuests(t *testing.T) {
	if testing.Short() || race.Enabled {
		t.Skip("Go guests are slow to compile and instantiate")
	}
	goTypes := map[string]bool{}
	for _, k := range GoGuestKinds() {
		goTypes[k.Type] = true
	}
	answered := 0
	Sweep(1, 4, 0, Options{GoGuests: true}, func(r *Result) bool {
		checkSeed(t, r, DefaultHTMLDir())
		if !strings.Contains(r.Repro(""), " -go-guests") {
			t.Errorf("repro line %q lacks -go-guests", r.Repro(""))
		}
		kinds := actorKinds(&r.Config)
		for _, op := range r.History {
			id, _, _ := strings.Cut(op.Object, "/")
			if !op.Indeterminate && goTypes[kinds[id].Type] {
				answered++
			}
		}
		return false
	})
	if answered == 0 {
		t.Error("no client operation on a Go guest was answered")
	}
	t.Logf("%d answered operations on Go guests", answered)
}

// TestWorkers runs seeds with Options.Workers: some client operations go
// through the stateless relay worker, on whichever live server the client
// picks, under the default fault schedules; the oracle and porcupine
// check them like every other operation. The repro line names the option.
func TestWorkers(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	via, answered := 0, 0
	Sweep(1, seeds, 0, Options{Workers: true}, func(r *Result) bool {
		checkSeed(t, r, DefaultHTMLDir())
		if !strings.Contains(r.Repro(""), " -relay-worker") {
			t.Errorf("repro line %q lacks -relay-worker", r.Repro(""))
		}
		via += r.Stats.ViaWorker
		for _, op := range r.History {
			if !op.Indeterminate && strings.Contains(op.Info, "via worker") {
				answered++
			}
		}
		return false
	})
	if via == 0 || answered == 0 {
		t.Fatalf("%d operations through the worker, %d of them answered: want some", via, answered)
	}
	t.Logf("%d operations through the relay worker, %d answered", via, answered)
}
