// Command jepsen-lite attacks a real nola deployment — a real etcd cluster
// and several `nola serve` processes on this machine — with real faults
// (kill -9, SIGSTOP past the lease, partitions and packet loss — nft rules
// between network namespaces when it runs as root, proxied loopback links
// otherwise — latency and stalls on proxied links, etcd member kills,
// leader pauses and quorum partitions, and a stale-owner round) while
// clients call hot actors over HTTP, then checks the histories: porcupine
// per actor, no lost acknowledged write on durable actors, and an
// activation oracle over the servers' execution traces. It writes a JSON
// summary and a self-contained HTML report, and exits 0 only if every
// checker passed. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

type config struct {
	seed              uint64
	runs              int
	duration          time.Duration
	members, servers  int
	clients, hot      int
	ttl, opTimeout    time.Duration
	think             time.Duration
	faultGap, maxHold time.Duration
	overlap           int
	nemeses           string
	out               string
	keep              bool
	checkBudget       time.Duration
	mutation          string
	stopOnFail        bool
	wasm              bool
	embedded          bool
	net               string
}

// exit codes
const (
	exitPass = 0
	// exitFail: a checker found a violation.
	exitFail  = 1
	exitSetup = 2
	// exitInconclusive: a checker failed without finding a violation (a
	// porcupine budget ran out, an object has no history, no final read
	// answered). It fails make test like exitFail, but it is not a catch.
	exitInconclusive = 3
)

// verdictCode is a run's exit code: exitPass, exitFail if a checker found
// a violation, exitInconclusive if a checker failed without one.
func verdictCode(s *summary) int {
	switch {
	case s.Pass:
		return exitPass
	case s.Violation:
		return exitFail
	}
	return exitInconclusive
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("jepsen-lite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: jepsen-lite [flags]

Starts a real etcd cluster and nola servers on this machine, attacks them
with a seeded fault schedule while clients call hot actors, checks the
histories and writes OUT/run-SEED/{report.html,summary.json}. Exit status:
0 every checker passed, 1 a checker found a violation, 2 the run could not
be set up, 3 a checker failed without finding a violation (inconclusive: a
porcupine budget ran out, an object has no history, no final read).

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nNemeses (--nemeses, comma-separated, or all / none):\n  %s\n", strings.Join(allNemeses, ", "))
		fmt.Fprintf(stderr, "%s need the netns mode (etcd's peer links). stale-owner holds every server for one\nround: it stalls the owner of kvcounter/f0 mid-commit, lets a new owner acknowledge, then kills\nit so a fresh activation reads the store (catches SkipStoreFence). See README.md.\n", strings.Join(netnsOnly, " and "))
	}
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the fault schedule and the clients' choices (run i uses seed+i)")
	fs.IntVar(&c.runs, "runs", 1, "number of runs (each a fresh cluster); a summary table follows")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "workload duration of each run (faults are injected during it)")
	fs.IntVar(&c.members, "etcd-members", 3, "etcd cluster size: 1, 3 or 5")
	fs.IntVar(&c.servers, "servers", 3, "number of nola servers (3 to 5)")
	fs.IntVar(&c.clients, "clients", 6, "concurrent clients")
	fs.IntVar(&c.hot, "hot", 2, "hot actors per kind (counter, kvcounter, kvmap, WASM kvcounter, caller): few, on purpose")
	fs.DurationVar(&c.ttl, "lease-ttl", 3*time.Second, "servers' lease TTL")
	fs.DurationVar(&c.opTimeout, "op-timeout", 2*time.Second, "client timeout per call (a timeout is an indeterminate outcome)")
	fs.DurationVar(&c.think, "think", 5*time.Millisecond, "pause between a client's calls")
	fs.DurationVar(&c.faultGap, "fault-gap", 6*time.Second, "mean time between fault starts")
	fs.DurationVar(&c.maxHold, "max-hold", 0, "longest fault (default: lease TTL + 4s)")
	fs.IntVar(&c.overlap, "overlap", 2, "most faults active at once (on distinct targets)")
	fs.StringVar(&c.nemeses, "nemeses", "all", "faults to draw from (see below)")
	fs.StringVar(&c.out, "out", "jepsen-out", "report directory")
	fs.BoolVar(&c.keep, "keep", false, "keep the data directories of etcd and the servers")
	fs.DurationVar(&c.checkBudget, "check-budget", 20*time.Second, "porcupine time budget per actor (running out is a failure)")
	fs.BoolVar(&c.stopOnFail, "stop-on-fail", false, "with --runs: stop after the first run that found a violation (an inconclusive run does not stop it)")
	fs.BoolVar(&c.wasm, "wasm", true, "also call WASM durable counters of a module uploaded from "+wasmModule)
	fs.BoolVar(&c.embedded, "embedded", false, "single-node scenario: one `nola serve` on its embedded etcd (fsync on), killed with -9 and restarted on the same data directory; --etcd-members and --servers are ignored, and --nemeses all means "+strings.Join(embeddedNemeses, ",")+" (the others have no target)")
	fs.StringVar(&c.net, "net", "auto", "network mode: netns (every etcd member and server in its own network namespace, partitions and packet loss by nft; needs root, ip and nft), loopback (loopback ports, partitions by TCP proxies) or auto (netns when it can be set up, else loopback; --embedded always runs on loopback)")
	addMutationFlag(fs, &c.mutation)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.embedded {
		c.members, c.servers = 0, 1
		if c.nemeses == "all" {
			c.nemeses = strings.Join(embeddedNemeses, ",")
		}
		for _, n := range strings.Split(c.nemeses, ",") {
			if n = strings.TrimSpace(n); n != "" && n != "none" && !slices.Contains(embeddedNemeses, n) {
				return c, fmt.Errorf("--embedded: nemesis %q has no target (have %s)", n, strings.Join(embeddedNemeses, ", "))
			}
		}
	}
	switch {
	case fs.NArg() != 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case !c.embedded && c.members != 1 && c.members != 3 && c.members != 5:
		return c, fmt.Errorf("--etcd-members must be 1, 3 or 5, got %d", c.members)
	case !c.embedded && (c.servers < 2 || c.servers > 9):
		return c, fmt.Errorf("--servers must be between 2 and 9, got %d", c.servers)
	case c.clients < 1 || c.clients > 64 || c.hot < 1 || c.hot > 16:
		return c, fmt.Errorf("--clients must be 1..64 and --hot 1..16")
	case c.runs < 1 || c.runs > 1000:
		return c, fmt.Errorf("--runs must be 1..1000")
	case c.duration < 5*time.Second || c.duration > 2*time.Hour:
		return c, fmt.Errorf("--duration must be between 5s and 2h")
	case c.net != "auto" && c.net != "netns" && c.net != "loopback":
		return c, fmt.Errorf("--net must be auto, netns or loopback, got %q", c.net)
	case c.embedded && c.net == "netns":
		return c, fmt.Errorf("--embedded runs on loopback only (its etcd lives in the server's process): drop --net netns")
	case c.ttl < time.Second || c.opTimeout <= 0 || c.faultGap <= 0 || c.overlap < 1:
		return c, fmt.Errorf("--lease-ttl must be ≥ 1s; --op-timeout, --fault-gap and --overlap positive")
	}
	if c.maxHold == 0 {
		c.maxHold = c.ttl + 4*time.Second
	}
	if _, err := selectNemeses(c.nemeses); err != nil {
		return c, err
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintln(stderr, "jepsen-lite:", err)
		return exitSetup
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		fmt.Fprintln(stderr, "jepsen-lite:", err)
		return exitSetup
	}
	bin, err := os.MkdirTemp("", "jepsen-lite-bin-")
	if err != nil {
		fmt.Fprintln(stderr, "jepsen-lite:", err)
		return exitSetup
	}
	defer os.RemoveAll(bin)
	tags := ""
	if c.mutation != "" {
		tags = mutationTag
	}
	fmt.Fprintln(stdout, "jepsen-lite: building nola and etcd …")
	nolaBin, etcdBin, err := buildBinaries(ctx, bin, tags)
	if err != nil {
		fmt.Fprintln(stderr, "jepsen-lite:", err)
		return exitSetup
	}
	if nemesis.NetnsAvailable() == nil {
		// Namespaces of runs killed with -9 (which could not clean up).
		if gone, err := nemesis.SweepNetns(ctx); len(gone) > 0 || err != nil {
			fmt.Fprintf(stdout, "jepsen-lite: removed %d network namespaces of dead runs %v\n", len(gone), err)
		}
	}
	var sums []*summary
	code := exitPass
	for i := range c.runs {
		if ctx.Err() != nil {
			break
		}
		s, err := runOnce(ctx, c, c.seed+uint64(i), nolaBin, etcdBin, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "jepsen-lite: run seed %d: %v\n", c.seed+uint64(i), err)
			return exitSetup
		}
		sums = append(sums, s)
		switch verdictCode(s) {
		case exitFail:
			code = exitFail
		case exitInconclusive:
			if code == exitPass {
				code = exitInconclusive
			}
		}
		if c.stopOnFail && s.Violation {
			break
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "jepsen-lite: interrupted; everything it started was stopped")
		return exitSetup
	}
	if len(sums) > 1 {
		printTable(stdout, sums)
		if err := writeTotals(filepath.Join(c.out, "summary.json"), sums); err != nil {
			fmt.Fprintln(stderr, "jepsen-lite:", err)
		}
	}
	return code
}
