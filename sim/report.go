package sim

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/linearizability"
)

// HTMLDirEnv names the environment variable that sets where HTML histories
// of failing runs are written; the default is DefaultHTMLDir().
const HTMLDirEnv = "NOLA_SIM_HTML"

// DefaultHTMLDir is where HTML histories go unless HTMLDirEnv says
// otherwise: under the system's temporary directory, never in the repo.
func DefaultHTMLDir() string {
	if d := os.Getenv(HTMLDirEnv); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "nola-sim")
}

// Repro is a one-line command that replays the run exactly and writes its
// HTML history to dir. Runs whose configuration did not come from Generate
// (rapid-drawn schedules) are replayed by rapid's fail file instead.
func (r *Result) Repro(dir string) string {
	if !r.Config.Generated {
		return "(a rapid-drawn schedule: rerun the test with the -rapid.failfile it printed)"
	}
	cmd := fmt.Sprintf("go run ./sim/cmd/nolasim -seed %d", r.Config.Seed)
	if o := r.Config.Options().String(); o != "" {
		cmd += " -mutations " + o
	}
	if r.Config.GoGuests {
		cmd += " -go-guests"
	}
	if r.Config.Deletes && !r.Config.Mutations.set.Has(mutation.DeleteSkipsGeneration) {
		cmd += " -deletes"
	}
	if r.Config.Workers {
		cmd += " -relay-worker"
	}
	if b := r.Config.CheckBudget; b > 0 && b != LinCheckBudget {
		cmd += " -check-budget " + b.String()
	}
	return cmd + " -html " + dir
}

// Report is a multi-line account of a failed run: the configuration, the
// oracle's violations and the histories porcupine rejected.
func (r *Result) Report() string {
	var b strings.Builder
	b.WriteString(r.Summary())
	b.WriteByte('\n')
	b.WriteString(r.Config.Describe())
	if r.Err != nil {
		fmt.Fprintf(&b, "run error: %v\n", r.Err)
	}
	if len(r.Stats.Codes) > 0 {
		b.WriteString("client errors:")
		for _, c := range r.Stats.sortedCodes() {
			fmt.Fprintf(&b, " %s=%d", c, r.Stats.Codes[c])
		}
		b.WriteByte('\n')
	}
	if len(r.Buggified) > 0 {
		b.WriteString("fault points fired:")
		for _, p := range slices.Sorted(maps.Keys(r.Buggified)) {
			fmt.Fprintf(&b, " %s=%d", p, r.Buggified[p])
		}
		b.WriteByte('\n')
	}
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "… %d more oracle violations\n", len(r.Violations)-20)
			break
		}
		fmt.Fprintf(&b, "oracle: %s\n", v)
	}
	parts := linearizability.Partition(r.History)
	for _, v := range r.Lin.Failures() {
		fmt.Fprintf(&b, "porcupine: %s (%s) is not linearizable; its %d operations (%d indeterminate):\n", v.Object, v.Kind, v.Ops, v.Indeterminate)
		b.WriteString(linearizability.Format(parts[v.Object]))
	}
	return b.String()
}

// WriteHTML draws, into dir, every object porcupine rejected and every
// object of an actor the oracle caught, annotated with activation
// lifetimes, faults and violations. It returns the files written.
func (r *Result) WriteHTML(dir string) ([]string, error) {
	var files []string
	flagged := map[string]bool{}
	for _, v := range r.Violations {
		flagged[v.Actor] = true
	}
	for _, v := range r.Lin.Verdicts {
		actor, _, _ := strings.Cut(v.Object, "/")
		if v.Result != linearizability.Illegal && !flagged[actor] {
			continue
		}
		name := fmt.Sprintf("seed-%d-%s.html", r.Config.Seed, linearizability.FileName(v.Object))
		if o := r.Config.Options().String(); o != "" {
			name = fmt.Sprintf("seed-%d-%s-%s.html", r.Config.Seed, linearizability.FileName(o), linearizability.FileName(v.Object))
		}
		path := filepath.Join(dir, name)
		if err := v.WriteHTML(path, r.annotations(actor)); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	// An oracle violation on an actor without client operations (a
	// ticker firing alone) still deserves a page: draw its timeline.
	for _, actor := range sortedKeys(flagged) {
		if slices.ContainsFunc(r.History, func(o linearizability.Op) bool { return strings.HasPrefix(o.Object, actor) }) {
			continue
		}
		rep, err := linearizability.Check([]linearizability.Op{{Object: actor, Kind: linearizability.Unchecked, Name: "(no client calls)"}}, 0)
		if err != nil || len(rep.Verdicts) == 0 {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("seed-%d-%s.html", r.Config.Seed, linearizability.FileName(actor)))
		if err := rep.Verdicts[0].WriteHTML(path, r.annotations(actor)); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

func (r *Result) annotations(actor string) []linearizability.Annotation {
	var out []linearizability.Annotation
	for _, n := range r.notes[actor] {
		out = append(out, linearizability.Annotation{Tag: n.tag, Start: int64(n.start), End: int64(n.end), Description: n.text, Alarm: n.alarm})
	}
	for _, v := range r.Violations {
		if v.Actor == actor {
			out = append(out, linearizability.Annotation{Tag: "oracle", Start: int64(v.At), End: int64(v.At),
				Description: v.Rule, Details: v.Detail, Alarm: true})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Aggregate sums many runs for progress lines and READMEs.
type Aggregate struct {
	Runs, Failed                       int
	Ops, Indeterminate, Faults         int
	Fences, Evictions, Deactivations   int64
	Virtual, Wall, CPU                 time.Duration
	OracleViolations, IllegalObjects   int
	UnknownObjects, CheckedObjects     int
	FirstFailure                       *Result
	TimerExecutions, ReleasedExecution int64
	// Graceful stops (finished, with errors, killed) and releases applied
	// (at capacity, at stop), summed over the runs; CapacitySeeds and
	// StopSeeds count the runs with at least one of each.
	Stops, StopErrors, StopsKilled int
	CapacityReleases, StopReleases int
	CapacitySeeds, StopSeeds       int
	// Inconclusive counts runs where porcupine gave up on some object.
	Inconclusive int
	// WASM sums the runs' WASM hosts.
	WASM WASMStats
}

// Add folds one run in.
func (a *Aggregate) Add(r *Result) {
	a.Runs++
	a.Ops += r.Stats.Ops
	a.Indeterminate += r.Stats.Indeterminate
	a.Faults += r.Stats.Faults
	a.Fences += r.Stats.Fences
	a.Evictions += r.Stats.Evictions
	a.Deactivations += r.Stats.Deactivations
	a.Virtual += r.Virtual
	a.CPU += r.Wall
	a.OracleViolations += len(r.Violations)
	a.IllegalObjects += r.Lin.Illegal
	a.UnknownObjects += r.Lin.Unknown
	a.CheckedObjects += r.Lin.Checked
	a.TimerExecutions += r.Stats.Oracle.TimerExecutions
	a.ReleasedExecution += r.Stats.Oracle.Released
	a.WASM.add(r.Stats.WASM)
	st := &r.Stats
	a.Stops += st.Stops
	a.StopErrors += st.StopErrors
	a.StopsKilled += st.StopsKilled
	a.CapacityReleases += st.CapacityReleases
	a.StopReleases += st.StopReleases
	if st.CapacityReleases > 0 {
		a.CapacitySeeds++
	}
	if st.Stops+st.StopErrors > 0 {
		a.StopSeeds++
	}
	if r.Inconclusive() {
		a.Inconclusive++
	}
	if r.Failed() {
		a.Failed++
		if a.FirstFailure == nil || r.Config.Seed < a.FirstFailure.Config.Seed {
			a.FirstFailure = r
		}
	}
}

// Figures renders the throughput figures over wall time elapsed.
func (a *Aggregate) Figures(elapsed time.Duration) string {
	sec := elapsed.Seconds()
	if sec <= 0 || a.Runs == 0 {
		return "no runs"
	}
	runs := float64(a.Runs)
	return fmt.Sprintf("%d seeds in %.1fs: %.2f seeds/s, %.0f simulated ops/s, %.1f virtual s per wall s, %.1f faults/seed, %.1f ops/seed, %.1f%% indeterminate; "+
		"%.2f graceful stops/seed (%d finished, %d with errors, %d killed; in %d seeds), %.1f releases at capacity/seed (in %d seeds), %.2f releases at stop/seed; "+
		"%d failed (%d oracle violations, %d illegal objects), %d/%d objects unknown (in %d seeds)",
		a.Runs, sec, runs/sec, float64(a.Ops)/sec, a.Virtual.Seconds()/sec,
		float64(a.Faults)/runs, float64(a.Ops)/runs, 100*float64(a.Indeterminate)/float64(max(a.Ops, 1)),
		float64(a.Stops+a.StopErrors+a.StopsKilled)/runs, a.Stops, a.StopErrors, a.StopsKilled, a.StopSeeds,
		float64(a.CapacityReleases)/runs, a.CapacitySeeds, float64(a.StopReleases)/runs,
		a.Failed, a.OracleViolations, a.IllegalObjects, a.UnknownObjects, a.CheckedObjects, a.Inconclusive)
}

// Unchecked describes the objects porcupine gave up on (Inconclusive)
// and how to replay the run, or returns "" if there are none.
func (r *Result) Unchecked(dir string) string {
	if !r.Inconclusive() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: porcupine gave up on %d of %d objects (budget %v each): their histories were NOT checked, so this run proves nothing about them:\n",
		r.Config.Seed, r.Lin.Unknown, r.Lin.Checked, r.Config.budget())
	for _, v := range r.Lin.Verdicts {
		if v.Result == linearizability.Unknown {
			fmt.Fprintf(&b, "  %s (%s): %d operations, %d indeterminate\n", v.Object, v.Kind, v.Ops, v.Indeterminate)
		}
	}
	more := *r
	more.Config.CheckBudget = 10 * r.Config.budget()
	fmt.Fprintf(&b, "replay: %s\n(a loaded machine slows porcupine down; this replays the seed with ten times the budget — a history still unknown then is a finding in itself)\n",
		more.Repro(dir))
	return b.String()
}
