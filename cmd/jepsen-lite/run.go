package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

// mutationTag is the build tag under which `nola serve` accepts
// --unsafe-mutation.
const mutationTag = "nolamutation"

func addMutationFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "unsafe-mutation", "", "build nola with -tags "+mutationTag+" and run every server with this protocol mutation (SkipStoreFence, IgnoreIncarnation, SkipDeadlineCheck, TimerIgnoresFence, …) to show the checkers catch it")
}

var allNemeses = []string{
	"kill", "pause", "partition-etcd", "partition-peers", "partition-clients",
	"latency-etcd", "stall-etcd", "loss-etcd", "etcd-kill", "etcd-leader-pause",
	staleOwnerKind, "etcd-partition", "etcd-leader-isolate",
}

// netnsOnly are the faults only the network-namespace mode can inject
// (etcd's peer links are not proxied on loopback).
var netnsOnly = []string{"etcd-partition", "etcd-leader-isolate"}

// embeddedNemeses are the faults of the single-node scenario (its etcd
// lives in the server's process: no link to cut, no member to kill alone).
var embeddedNemeses = []string{"kill", "pause", "partition-clients"}

func selectNemeses(spec string) (map[string]bool, error) {
	out := map[string]bool{}
	switch spec {
	case "all":
		for _, n := range allNemeses {
			out[n] = true
		}
		return out, nil
	case "none", "":
		return out, nil
	}
	for _, n := range strings.Split(spec, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(allNemeses, n) {
			return nil, fmt.Errorf("unknown nemesis %q (have %s)", n, strings.Join(allNemeses, ", "))
		}
		out[n] = true
	}
	return out, nil
}

// candidates lists every fault the run may inject.
func candidates(c *cluster, cfg config, chosen map[string]bool, so *staleOwner) []*nemesis.FuncFault {
	var out []*nemesis.FuncFault
	add := func(fs ...*nemesis.FuncFault) {
		for _, f := range fs {
			if chosen[f.K] {
				out = append(out, f)
			}
		}
	}
	for _, s := range c.servers {
		add(nemesis.Kill("kill", s.proc))
		p := nemesis.Pause("pause", s.proc)
		p.MinHold = cfg.ttl + 1500*time.Millisecond
		add(p)
		if c.netns != nil {
			add(netnsCuts(c, s)...)
		} else {
			add(nemesis.Cut("partition-etcd", s.id, s.etcdPx, s.id))
			add(nemesis.Cut("partition-peers", s.id, []*nemesis.Proxy{s.peerPx}, s.id))
			add(nemesis.Cut("partition-clients", s.id, []*nemesis.Proxy{s.clientPx}, s.id))
			add(nemesis.Lossy("loss-etcd", s.id, s.etcdPx, 0.05, s.id))
		}
		add(nemesis.Slow("latency-etcd", s.id, s.etcdPx, 100*time.Millisecond, s.id))
		// A stall: every byte to and from etcd arrives TTL+1.5s late, so
		// the lease expires in etcd while requests the server sent in time
		// are still on the way — a commit can reach etcd after the actor
		// moved. Only the store's fence stops it (SkipStoreFence). The
		// delay must stay below etcdkv's 5 s request timeout: past it the
		// client's cancel follows the request in and etcd drops both.
		add(nemesis.Slow("stall-etcd", s.id, s.etcdPx, cfg.ttl+1500*time.Millisecond, s.id))
	}
	if c.netns != nil {
		add(etcdCuts(c)...)
	}
	for _, m := range c.etcd {
		k := nemesis.Kill("etcd-kill", m.proc)
		k.Resource = []string{"etcd"}
		add(k)
	}
	if so != nil && staleOwnerApplies(cfg, chosen, len(c.servers)) {
		// Weighted: Plan draws candidates uniformly, and a round holds
		// every server and the store, so it starts only where no other
		// fault is active. As one entry among dozens of per-server faults
		// it was hardly ever planned (staleOwnerWeight).
		for range staleOwnerWeight(len(c.servers)) {
			out = append(out, so.fault)
		}
	}
	if chosen["etcd-leader-pause"] {
		var victim *etcdMember
		out = append(out, &nemesis.FuncFault{K: "etcd-leader-pause", T: "leader", Resource: []string{"etcd"},
			StartFn: func(ctx context.Context) error {
				i, err := c.leader(ctx)
				if err != nil {
					return err
				}
				victim = c.etcd[i]
				return victim.proc.Signal(syscall.SIGSTOP)
			},
			StopFn: func(context.Context) error {
				if victim == nil {
					return nil
				}
				v := victim
				victim = nil
				return v.proc.Signal(syscall.SIGCONT)
			},
		})
	}
	return out
}

// staleOwnerApplies reports whether a stale-owner round can run: it was
// chosen, and the cluster has an owner to stall and a second server to
// take the fence actor over (not the embedded scenario). The fence actor
// is a kvcounter, one of the example actors every server of the tool
// registers (--example-actors).
func staleOwnerApplies(cfg config, chosen map[string]bool, servers int) bool {
	return chosen[staleOwnerKind] && !cfg.embedded && servers >= 2
}

// staleOwnerWeight is how many times the stale-owner round is entered
// among the candidates: three times the servers, so that about half of
// the default 45 s runs plan one (Plan drops a draw of it whenever
// another fault is active then, which is most of the time). Entered once,
// 6 seeds of 40 planned one (TestScheduleDrawsStaleOwner).
func staleOwnerWeight(servers int) int { return 3 * servers }

// planFaults is the run's seeded fault schedule over cands.
func planFaults(seed uint64, cfg config, cands []*nemesis.FuncFault) []nemesis.Step {
	span := cfg.duration * 85 / 100
	return nemesis.Plan(seed, span, cfg.faultGap, 2*time.Second, cfg.maxHold, cfg.overlap, cands)
}

// faultRecord is a fault as the report shows it, with who was hit.
type faultRecord struct {
	nemesis.Event
	// Victims are the actors the target owned when the fault started (all
	// actors for etcd faults and in the embedded scenario).
	Victims []string `json:"victims"`
	// RecoveryNs: from the fault's start to the first successful call on a
	// victim that started after it; HealNs: from the heal to the first
	// successful call that started after it. -1: none.
	RecoveryNs int64 `json:"recovery_ns"`
	HealNs     int64 `json:"heal_recovery_ns"`
}

func runOnce(ctx context.Context, cfg config, seed uint64, nolaBin, etcdBin string, stdout io.Writer) (*summary, error) {
	wall := time.Now()
	out := filepath.Join(cfg.out, fmt.Sprintf("run-%d", seed))
	_ = os.RemoveAll(out)
	logs := filepath.Join(out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "jepsen-lite-")
	if err != nil {
		return nil, err
	}
	c := &cluster{work: work, logs: logs}
	defer func() {
		c.stop()
		if !cfg.keep {
			_ = os.RemoveAll(work)
		}
	}()
	mode := "loopback, proxied links"
	if cfg.net == "netns" || (cfg.net == "auto" && !cfg.embedded) {
		n, err := nemesis.NewNetns(ctx, strconv.FormatUint(seed, 10))
		switch {
		case err == nil:
			c.netns = n
			mode = "network namespaces " + n.Prefix() + "*, nft faults"
		case cfg.net == "netns":
			return nil, fmt.Errorf("--net netns: %w", err)
		default:
			fmt.Fprintf(stdout, "jepsen-lite: no network namespaces (%v): loopback mode\n", err)
		}
	}
	if cfg.embedded {
		fmt.Fprintf(stdout, "jepsen-lite: seed %d: starting one nola server on its embedded etcd (%s) …\n", seed, mode)
	} else {
		fmt.Fprintf(stdout, "jepsen-lite: seed %d: starting %d etcd members and %d nola servers (%s) …\n", seed, cfg.members, cfg.servers, mode)
	}
	if err := startCluster(ctx, c, clusterOptions{members: cfg.members, servers: cfg.servers, ttl: cfg.ttl, seed: seed, mutation: cfg.mutation, embedded: cfg.embedded}, nolaBin, etcdBin); err != nil {
		return nil, err
	}
	netnsRun := c.netns != nil // c.stop forgets it
	chosen, _ := selectNemeses(cfg.nemeses)
	var so *staleOwner
	if staleOwnerApplies(cfg, chosen, len(c.servers)) {
		so = newStaleOwner(ctx, c, nil, cfg, seed, func(line string) { fmt.Fprintln(stdout, "  "+line) })
	}
	cands := candidates(c, cfg, chosen, so)
	skipped := notInjectable(c, chosen)
	if len(skipped) > 0 {
		fmt.Fprintf(stdout, "jepsen-lite: seed %d: not injected in this mode: %s\n", seed, strings.Join(skipped, ", "))
	}
	span := cfg.duration * 85 / 100
	steps := planFaults(seed, cfg, cands)
	fmt.Fprintf(stdout, "jepsen-lite: seed %d: %d faults planned over %v; workload %v with %d clients on %d hot actors per kind\n",
		seed, len(steps), span.Round(time.Second), cfg.duration, cfg.clients, cfg.hot)

	t0 := time.Now()
	w := newWorkload(t0, c.servers, cfg.hot, cfg.opTimeout, cfg.wasm)
	defer w.close()
	if so != nil {
		so.w = w
		if slices.ContainsFunc(steps, func(s nemesis.Step) bool { return cands[s.Fault] == so.fault }) {
			// The fence actor is checked like every durable actor, but
			// only the stale-owner rounds call it.
			w.actors = append(w.actors, fenceActor)
			if err := so.warmUp(ctx); err != nil {
				return nil, err
			}
		}
	}
	if cfg.wasm {
		mod, err := os.ReadFile(wasmModule)
		if err != nil {
			return nil, fmt.Errorf("the WASM workload needs %s (run from the repository root, or --wasm=false): %w", wasmModule, err)
		}
		if err := w.uploadModule(ctx, mod); err != nil {
			return nil, err
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, cfg.duration)
	defer wcancel()

	var (
		vmu     sync.Mutex
		victims = map[string][]string{} // kind/target/start → actor IDs
		vwg     sync.WaitGroup
	)
	onEvent := func(e nemesis.Event) {
		if e.End == 0 {
			fmt.Fprintf(stdout, "  %6.1fs  fault %-18s on %-6s starts %s\n", e.Start.Seconds(), e.Kind, e.Target, e.StartErr)
			key := fmt.Sprint(e.Kind, e.Target, e.Start)
			vwg.Add(1)
			go func() {
				defer vwg.Done()
				own := w.owners(ctx, e.Target)
				var v []string
				for id, sid := range own {
					if sid == e.Target {
						v = append(v, id)
					}
				}
				vmu.Lock()
				victims[key] = v
				vmu.Unlock()
			}()
			return
		}
		fmt.Fprintf(stdout, "  %6.1fs  fault %-18s on %-6s healed %s\n", e.End.Seconds(), e.Kind, e.Target, e.StopErr)
	}
	var wg sync.WaitGroup
	var events []nemesis.Event
	wg.Add(1)
	go func() {
		defer wg.Done()
		events = nemesis.Run(wctx, t0, steps, cands, onEvent)
	}()
	for i := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx, i, seed, cfg.think)
		}()
	}
	progressDone := make(chan struct{})
	go progress(wctx, w, stdout, progressDone)
	wg.Wait()
	<-progressDone
	vwg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Heal: every link and every process back (a fault that failed to
	// heal is retried): a cut left in place would fail the final reads.
	c.healLinks(ctx)
	for _, s := range c.servers {
		if !s.proc.Running() {
			if err := s.proc.Start(ctx); err != nil {
				return nil, fmt.Errorf("restarting %s after the faults: %w", s.id, err)
			}
		}
	}
	for _, m := range c.etcd {
		if !m.proc.Running() {
			if err := m.proc.Start(ctx); err != nil {
				return nil, err
			}
		}
	}
	fmt.Fprintf(stdout, "jepsen-lite: seed %d: workload done (%d calls); final reads …\n", seed, len(w.ops))
	final, finalErr := w.finalReads(ctx, cfg.clients, 30*time.Second+2*cfg.ttl)
	// Let every server flush its trace, then stop them: SIGKILL keeps what
	// was written (each record is one write).
	c.stop()

	fmt.Fprintf(stdout, "jepsen-lite: seed %d: checking …\n", seed)
	var checks []checkerResult
	lin := checkLinearizable(w, out, cfg.checkBudget)
	lw, lost := checkLostWrites(w, final, finalErr)
	var traces []string
	for _, s := range c.servers {
		traces = append(traces, s.trace)
	}
	act, oracle := checkActivations(w, traces)
	checks = append(checks, lin, lw, act, checkAnswers(w))

	faults := make([]faultRecord, 0, len(events))
	for _, e := range events {
		fr := faultRecord{Event: e}
		if strings.HasPrefix(e.Kind, "etcd") || cfg.embedded {
			// The whole store (or, embedded, the only server) was hit.
			for _, a := range w.actors {
				fr.Victims = append(fr.Victims, a.id)
			}
		} else {
			fr.Victims = victims[fmt.Sprint(e.Kind, e.Target, e.Start)]
		}
		sort.Strings(fr.Victims)
		fr.RecoveryNs, fr.HealNs = recovery(w.ops, fr.Victims, int64(e.Start), int64(e.End))
		faults = append(faults, fr)
	}
	s := summarize(cfg, seed, w, checks, faults, oracle, lost, netnsRun)
	s.NotInjected = skipped
	if so != nil {
		s.StaleOwner = so.results()
	}
	s.WallSeconds = time.Since(wall).Seconds()
	if err := writeReport(out, s, w); err != nil {
		return nil, err
	}
	verdict := "PASS"
	switch verdictCode(s) {
	case exitFail:
		verdict = "FAIL"
	case exitInconclusive:
		verdict = "FAIL (inconclusive: no checker found a violation)"
	}
	fmt.Fprintf(stdout, "jepsen-lite: seed %d: %s in %.0fs — ops ok %d / failed %d / indeterminate %d; %d faults; violations: lin %d, lost %d, oracle %d, answers %d\n",
		seed, verdict, s.WallSeconds, s.Ops.OK, s.Ops.Failed, s.Ops.Indeterminate, len(faults), s.Violations.Linearizability, s.Violations.LostWrites, s.Violations.Oracle, s.Violations.Answers)
	for _, ch := range checks {
		mark := "ok  "
		if !ch.Ok {
			mark = "FAIL"
		}
		fmt.Fprintf(stdout, "  [%s] %s\n", mark, ch.Name)
		if !ch.Ok {
			for _, d := range ch.Detail[:min(len(ch.Detail), 5)] {
				fmt.Fprintf(stdout, "         %s\n", d)
			}
			for a, v := range ch.PerActor {
				if !strings.HasPrefix(v, "ok") && !strings.HasPrefix(v, "Ok") && !strings.Contains(v, "activations on") {
					fmt.Fprintf(stdout, "         %s: %s\n", a, v)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "  report: %s\n", filepath.Join(out, "report.html"))
	return s, nil
}

// recovery finds the first successful call on a victim that started at or
// after from (the fault start) and after heal.
func recovery(ops []opRecord, victims []string, from, heal int64) (int64, int64) {
	rec, hr := int64(-1), int64(-1)
	for _, o := range ops {
		if o.Outcome != outOK || !slices.Contains(victims, strings.SplitN(o.Actor, "/", 2)[1]) {
			continue
		}
		if o.Start >= from && (rec < 0 || o.End-from < rec) {
			rec = o.End - from
		}
		if o.Start >= heal && (hr < 0 || o.End-heal < hr) {
			hr = o.End - heal
		}
	}
	return rec, hr
}

func progress(ctx context.Context, w *workload, stdout io.Writer, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.mu.Lock()
		var ok, fail, indet int
		for _, o := range w.ops {
			switch o.Outcome {
			case outOK:
				ok++
			case outFail:
				fail++
			default:
				indet++
			}
		}
		w.mu.Unlock()
		fmt.Fprintf(stdout, "  %6.1fs  calls ok %d, failed %d, indeterminate %d\n", time.Since(w.t0).Seconds(), ok, fail, indet)
	}
}
