// Command nolasim runs nola's deterministic simulations: many seeds with
// progress (make sim-long), or one seed replayed exactly with its report and
// HTML history.
//
//	go run ./sim/cmd/nolasim -seeds 10000            # sweep seeds 1…10000
//	go run ./sim/cmd/nolasim -seed 42 -html /tmp/h   # replay one seed
//	go run ./sim/cmd/nolasim -seed 42 -minimize      # shrink a failing seed
//	go run ./sim/cmd/nolasim -seeds 200 -mutations SkipStoreFence
//	go run ./sim/cmd/nolasim -seeds 100 -go-guests   # with Go WASM guests too
//	go run ./sim/cmd/nolasim -seeds 100 -deletes     # with actor deletes
//	go run ./sim/cmd/nolasim -seed 42 -check-budget 5m   # porcupine's budget per object
//
// It exits with status 1 if any run failed, or if porcupine gave up on any
// object's history (its budget ran out: that history was not checked).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/sim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nolasim:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("nolasim", flag.ContinueOnError)
	var (
		seed      = fs.Uint64("seed", 0, "replay this one seed (0: sweep)")
		seeds     = fs.Int("seeds", 1000, "number of seeds to sweep")
		start     = fs.Uint64("start", 1, "first seed of the sweep")
		workers   = fs.Int("workers", 0, "parallel runs (0: GOMAXPROCS)")
		mutations = fs.String("mutations", "", "comma-separated protocol bugs to switch on: "+strings.Join(sim.MutationNames(), ", "))
		htmlDir   = fs.String("html", sim.DefaultHTMLDir(), "directory for HTML histories of failing runs (env "+sim.HTMLDirEnv+")")
		every     = fs.Duration("progress", 5*time.Second, "progress line interval (wall time)")
		verbose   = fs.Bool("v", false, "print every run's summary (with -seed: its configuration too)")
		minimize  = fs.Bool("minimize", false, "with -seed: shrink the failing configuration")
		maxFail   = fs.Int("max-failures", 10, "stop the sweep after this many failing seeds (0: never)")
		goGuests  = fs.Bool("go-guests", false, "add WASM actors built from the Go guests (slow: ~3 ms per instance)")
		deletes   = fs.Bool("deletes", false, "mix actor deletes into the workload (docs/deletion.md)")
		viaWorker = fs.Bool("relay-worker", false, "send some client operations through a stateless relay worker")
		refine    = fs.Bool("refine", false, "with -seed: run the seed's short configuration (sim.RefineConfig) with the refinement check against the protocol model, as TestRefinement does")
		budget    = fs.Duration("check-budget", sim.LinCheckBudget, "porcupine's wall-time budget per object (a run whose budget runs out fails as unchecked)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts, err := sim.ParseOptions(*mutations)
	if err != nil {
		return err
	}
	opts.GoGuests = *goGuests
	opts.Deletes = opts.Deletes || *deletes
	opts.Workers = *viaWorker
	if *budget <= 0 {
		return fmt.Errorf("-check-budget %v: want a positive duration", *budget)
	}
	opts.CheckBudget = *budget
	if *seed != 0 {
		return replay(out, *seed, opts, *htmlDir, *verbose, *minimize, *refine)
	}
	return sweep(out, *start, *seeds, *workers, opts, *htmlDir, *every, *verbose, *maxFail)
}

func replay(out io.Writer, seed uint64, opts sim.Options, dir string, verbose, minimize, refine bool) error {
	cfg := sim.Generate(seed, opts)
	if refine {
		cfg = sim.RefineConfig(seed, opts)
	}
	r := sim.Run(cfg)
	if refine {
		fmt.Fprintf(out, "refinement: %d steps checked", r.RefStats.Steps)
		if r.Refinement != nil {
			fmt.Fprintf(out, "; %v", r.Refinement)
		}
		fmt.Fprintln(out)
	}
	if verbose || r.Failed() {
		fmt.Fprint(out, r.Report())
	} else {
		fmt.Fprintln(out, r.Summary())
	}
	fmt.Fprintf(out, "trace hash %016x\n", r.Hash)
	if !r.Failed() {
		if r.Inconclusive() {
			fmt.Fprint(out, r.Unchecked(dir))
			return fmt.Errorf("seed %d: porcupine gave up on %d objects: not checked", seed, r.Lin.Unknown)
		}
		return nil
	}
	files, err := r.WriteHTML(dir)
	for _, f := range files {
		fmt.Fprintln(out, "HTML:", f)
	}
	if err != nil {
		return err
	}
	if minimize {
		small, sr, runs := sim.Minimize(cfg, func(x *sim.Result) bool { return x.Failed() })
		fmt.Fprintf(out, "\nminimized in %d runs:\n%s", runs, small.Describe())
		fmt.Fprint(out, sr.Report())
	}
	return fmt.Errorf("seed %d failed", seed)
}

func sweep(out io.Writer, from uint64, n, workers int, opts sim.Options, dir string, every time.Duration, verbose bool, maxFail int) error {
	var agg sim.Aggregate
	began := time.Now()
	last := began
	if o := opts.String(); o != "" {
		fmt.Fprintf(out, "mutations: %s\n", o)
	}
	var failed, unchecked []uint64
	sim.Sweep(from, n, workers, opts, func(r *sim.Result) bool {
		agg.Add(r)
		if verbose {
			fmt.Fprintln(out, r.Summary())
		}
		if r.Failed() {
			failed = append(failed, r.Config.Seed)
			fmt.Fprintf(out, "\n%s", r.Report())
			files, err := r.WriteHTML(dir)
			for _, f := range files {
				fmt.Fprintln(out, "HTML:", f)
			}
			if err != nil {
				fmt.Fprintln(out, "HTML:", err)
			}
			fmt.Fprintf(out, "replay: %s\n\n", r.Repro(dir))
		}
		if r.Inconclusive() {
			unchecked = append(unchecked, r.Config.Seed)
			fmt.Fprintf(out, "\n%s\n", r.Unchecked(dir))
		}
		if now := time.Now(); now.Sub(last) >= every {
			last = now
			fmt.Fprintf(out, "[%5.0fs] %d/%d seeds, %.1f seeds/s, %.0f ops/s, violations so far: %d seeds (%d oracle, %d illegal objects), %d seeds unchecked\n",
				now.Sub(began).Seconds(), agg.Runs, n, float64(agg.Runs)/now.Sub(began).Seconds(),
				float64(agg.Ops)/now.Sub(began).Seconds(), agg.Failed, agg.OracleViolations, agg.IllegalObjects, agg.Inconclusive)
		}
		return maxFail > 0 && len(failed)+len(unchecked) >= maxFail
	})
	fmt.Fprintln(out, agg.Figures(time.Since(began)))
	fmt.Fprintf(out, "totals: %d ops (%d indeterminate), %d faults, %d fences, %.0f virtual seconds in %.1f wall seconds\n",
		agg.Ops, agg.Indeterminate, agg.Faults, agg.Fences, agg.Virtual.Seconds(), time.Since(began).Seconds())
	if w := agg.WASM; w.Hosts > 0 {
		fmt.Fprintf(out, "WASM: %d hosts, %d compilations, %d instances (%d swept after fences, %d taken by crashes), %d traps, %d left open\n",
			w.Hosts, w.Compiled, w.Instantiated, w.Swept, w.Crashed, w.Traps, w.Leaked)
	}
	slices.Sort(failed)
	slices.Sort(unchecked)
	var errs []error
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("%d seeds failed: %v", len(failed), failed))
	}
	if len(unchecked) > 0 {
		errs = append(errs, fmt.Errorf("%d seeds not fully checked (porcupine gave up on some object): %v", len(unchecked), unchecked))
	}
	return errors.Join(errs...)
}
