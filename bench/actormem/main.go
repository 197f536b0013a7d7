// Command actormem measures the memory one live actor costs in a real
// `nola serve` process (issue 16, item 7): it starts the server (and, with
// --etcd external, a separate etcd member process, so that the server's
// resident memory and etcd's are measured apart), activates --n actors
// over HTTP from --concurrency callers (each created by its first call,
// "inc"), waits until the server's nola_activations counts them all, and
// prints, before and after, per actor:
//
//   - the server's RSS, PSS and anonymous memory (/proc/PID/smaps_rollup);
//   - its Go heap in use after a collection (fetching /debug/pprof/heap
//     with gc=1 runs one; /metrics go_memstats_heap_inuse_bytes after it);
//   - the mappings WASM linear memories live in (the kernel marks
//     MAP_NORESERVE mappings "nr" in smaps; the Go runtime makes none),
//     their count, reserved size and resident part, and all mappings
//     against vm.max_map_count;
//   - the heap profile's difference (go tool pprof -diff_base), which names
//     the allocations: wazero's instance, the activation, the route table;
//   - etcd's RSS and its database file, and the registry's keys and bytes.
//
// Kinds: go (the example counter, `--example-actors`), wasm-c (the C
// counter guest, wasm/guests/c/counter.wasm) and wasm-go (the standard-Go
// counter guest, built with wasmtest.BuildGo). Every phase is bounded by
// --timeout.
//
//	go run ./bench/actormem --n 20000 --kind wasm-c --etcd external
//
// Not part of make test (a main package without tests); figures in
// bench/README.md ("Memory per live actor through nola serve").
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

const ns = "mem"

func main() {
	// As the child started for --etcd external, this process is an etcd
	// member and never returns from here.
	etcdtest.MemberMain()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "actormem:", err)
		os.Exit(1)
	}
}

type config struct {
	bin, kind, etcd string
	module          string
	profileRate     int
	n, conc, warm   int
	timeout         time.Duration
	settle          time.Duration
	keep            bool
	releaseEvery    int
}

func run() error {
	var c config
	flag.StringVar(&c.bin, "nola", "", "nola binary (default: go build ./cmd/nola into the work directory)")
	flag.StringVar(&c.kind, "kind", "wasm-c", "actors: go (example counter), wasm-c (C counter guest) or wasm-go (standard-Go counter guest)")
	flag.StringVar(&c.etcd, "etcd", "external", "embedded (nola serve's own member, in its process) or external (a separate member process)")
	flag.IntVar(&c.n, "n", 20000, "actors to activate")
	flag.IntVar(&c.conc, "concurrency", 64, "concurrent HTTP callers")
	flag.IntVar(&c.warm, "warm", 200, "actors activated before the baseline (compilation, first table growth)")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "wait after the last activation before sampling (scavenger, lease rounds)")
	flag.StringVar(&c.module, "module", "", "with --kind wasm-c or wasm-go: upload this module file instead of the example counter (it must answer \"inc\")")
	flag.IntVar(&c.profileRate, "memprofilerate", 4096, "the server's runtime.MemProfileRate (GODEBUG=memprofilerate): one sampled allocation per this many bytes, for the heap profile's breakdown")
	flag.IntVar(&c.releaseEvery, "release-every", 0, "after the measurement, delete every this-many-th actor (0: none) and count the server's mappings, then activate as many new ones: freed linear memories split the kernel's merged mappings (vm.max_map_count)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, heap profiles)")
	flag.Parse()
	switch {
	case c.kind != "go" && c.kind != "wasm-c" && c.kind != "wasm-go":
		return fmt.Errorf("--kind must be go, wasm-c or wasm-go, not %q", c.kind)
	case c.etcd != "embedded" && c.etcd != "external":
		return fmt.Errorf("--etcd must be embedded or external, not %q", c.etcd)
	case c.n <= 0 || c.n > 5_000_000 || c.conc <= 0 || c.conc > 4096 || c.warm < 0 || c.profileRate <= 0:
		return errors.New("--n must be in 1..5000000, --concurrency in 1..4096, --warm not negative, --memprofilerate positive")
	case c.releaseEvery < 0:
		return errors.New("--release-every must not be negative")
	case c.module != "" && c.kind == "go":
		return errors.New("--module needs --kind wasm-c or wasm-go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "nola-actormem-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Println("work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if c.bin == "" {
		c.bin = filepath.Join(dir, "nola")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", c.bin, "./cmd/nola")
		cmd.Dir = wasmtest.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/nola: %w\n%s", err, out)
		}
	}
	return measure(ctx, c, dir)
}

func measure(ctx context.Context, c config, dir string) error {
	addrs, err := etcdkv.FreeAddrs(3)
	if err != nil {
		return err
	}
	etcdURL := ""
	var etcdPID int
	if c.etcd == "external" {
		pid, stop, err := startEtcd(dir, addrs[1], addrs[2])
		if err != nil {
			return err
		}
		defer stop()
		etcdPID, etcdURL = pid, "http://"+addrs[1]
	}
	// Above 90% of --max-activations the server evicts the least
	// recently used down to 80%: keep the count well below.
	limit := max(int64(c.n+c.warm+1000)*4<<20, 4<<30) // never the bound: each instance is charged its linear memory + 16 KiB
	args := []string{"serve", "--listen", addrs[0], "--ready-file", filepath.Join(dir, "ready"),
		"--log-level", "warn", "--pprof", "--example-actors", "--locality=false",
		"--idle-timeout", "10h", "--max-activations", fmt.Sprint(max(1_000_000, 2*(c.n+c.warm))),
		"--wasm-memory-limit", fmt.Sprint(limit)}
	if etcdURL != "" {
		args = append(args, "--etcd-endpoints", etcdURL)
	} else {
		args = append(args, "--data-dir", filepath.Join(dir, "data"), "--etcd-listen", addrs[1])
		etcdURL = "http://" + addrs[1]
	}
	log, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	srv := exec.Command(c.bin, args...)
	srv.Stdout, srv.Stderr = log, log
	srv.Env = append(os.Environ(), fmt.Sprintf("GODEBUG=memprofilerate=%d", c.profileRate))
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start nola serve: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGKILL)
		_ = srv.Wait()
	}()
	if err := waitFile(ctx, filepath.Join(dir, "ready"), srv.Process.Pid); err != nil {
		return fmt.Errorf("%w (serve.log in %s; --keep keeps it)", err, dir)
	}
	base := "http://" + addrs[0]
	cl := httpapi.NewClient(base, "")
	defer cl.Close()
	typ := "counter"
	switch c.kind {
	case "wasm-c":
		typ = "counter-c"
		mod, err := os.ReadFile(cmp.Or(c.module, filepath.Join(wasmtest.Root(), "wasm", "guests", "c", "counter.wasm")))
		if err != nil {
			return err
		}
		if _, _, err := cl.PutModule(ctx, ns, typ, mod); err != nil {
			return fmt.Errorf("upload the C counter: %w", err)
		}
	case "wasm-go":
		typ = "counter-go"
		var mod []byte
		var err error
		if c.module != "" {
			mod, err = os.ReadFile(c.module)
		} else {
			mod, err = wasmtest.BuildGo("counter")
		}
		if err != nil {
			return err
		}
		if _, _, err := cl.PutModule(ctx, ns, typ, mod); err != nil {
			return fmt.Errorf("upload the Go counter: %w", err)
		}
	}
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer ec.Close()
	pid := srv.Process.Pid
	if etcdPID == 0 {
		etcdPID = pid
	}
	fmt.Printf("nola serve pid %d (%s), etcd %s pid %d; %d %s actors (%s) from %d callers; load %s",
		pid, base, c.etcd, etcdPID, c.n, c.kind, typ, c.conc, loadavg())

	if _, err := activate(ctx, cl, typ, "warm", c.warm, c.conc); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := waitLive(ctx, base, c.warm); err != nil {
		return err
	}
	sleep(ctx, c.settle)
	s0, err := sample(ctx, base, pid, etcdPID, c.etcd == "external", ec, filepath.Join(dir, "heap0.pb.gz"))
	if err != nil {
		return err
	}
	start := time.Now()
	errs, err := activate(ctx, cl, typ, "a", c.n, c.conc)
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Printf("activated %d in %v (%.0f/s, %d errors); load %s", c.n, took.Round(time.Millisecond),
		float64(c.n)/took.Seconds(), errs, loadavg())
	if err := waitLive(ctx, base, c.warm+c.n-int(errs)); err != nil {
		return err
	}
	sleep(ctx, c.settle)
	s1, err := sample(ctx, base, pid, etcdPID, c.etcd == "external", ec, filepath.Join(dir, "heap1.pb.gz"))
	if err != nil {
		return err
	}
	live := float64(s1.live - s0.live)
	report(s0, s1, live, c.etcd == "external")
	fmt.Printf("\nheap profile, after minus baseline (inuse_space, flat; the server samples one allocation per %d bytes):\n", c.profileRate)
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-sample_index=inuse_space", "-top", "-nodecount=30",
		"-unit=B", "-diff_base="+s0.heapProfile, s1.heapProfile).Output()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w", err)
	}
	printProfile(out, live)
	if c.releaseEvery > 0 {
		return release(ctx, c, cl, typ, base, pid, s1)
	}
	return nil
}

// release deletes every c.releaseEvery-th actor, waits for the WASM
// Host's sweep to close their instances, then activates as many
// new ones, printing the server's mappings after each step: each linear
// memory freed from the middle of a merged run of them splits the
// kernel's mapping, and a new instance's reservation may fill the hole.
func release(ctx context.Context, c config, cl *httpapi.Client, typ, base string, pid int, s1 snap) error {
	var ids []string
	for i := 0; i < c.n; i += c.releaseEvery {
		ids = append(ids, "a"+strconv.Itoa(i))
	}
	failed, err := parallel(ctx, len(ids), c.conc, func(ctx context.Context, i int) error {
		return cl.DeleteActor(ctx, ns, ids[i])
	})
	if err != nil {
		return fmt.Errorf("deleting: %w", err)
	}
	// A deleted actor's activation is dropped without Deactivate: the
	// Host's sweep closes its instance once it has been idle for the
	// sweep interval (1 min), at the next instantiation.
	sleep(ctx, 65*time.Second)
	if _, err := activate(ctx, cl, typ, "trigger", 1, 1); err != nil {
		return err
	}
	sleep(ctx, c.settle)
	m, _ := metrics(ctx, base)
	ms := smaps(pid)
	maps, nr, nrRSS := ms.maps, ms.nrCount, ms.nrRSS
	fmt.Printf("\ndeleted %d actors (every %d-th, %d failed): %v live; mappings %.0f -> %.0f (MAP_NORESERVE %.0f -> %.0f, resident %.1f -> %.1f MB); server alive: %v\n",
		len(ids), c.releaseEvery, failed, m["nola_activations"], s1.maps, maps, s1.nrCount, nr, s1.nrRSS/(1<<20), nrRSS/(1<<20), syscall.Kill(pid, 0) == nil)
	errs, err := activate(ctx, cl, typ, "b", len(ids), c.conc)
	if err != nil {
		fmt.Println("re-activating:", err)
	}
	sleep(ctx, c.settle)
	m, _ = metrics(ctx, base)
	ms = smaps(pid)
	maps2, nr2, nrRSS2 := ms.maps, ms.nrCount, ms.nrRSS
	fmt.Printf("activated %d new ones (%d failed): %v live; mappings %.0f (MAP_NORESERVE %.0f, resident %.1f MB); server alive: %v\n",
		len(ids), errs, m["nola_activations"], maps2, nr2, nrRSS2/(1<<20), syscall.Kill(pid, 0) == nil)
	return nil
}

// printProfile prints pprof -top -unit=B's table as bytes per actor.
func printProfile(out []byte, n float64) {
	fmt.Printf("  %10s %10s  %s\n", "flat B/act", "cum B/act", "function")
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[0], "B") {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[0], "B"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[3], "B"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		fmt.Printf("  %10.0f %10.0f  %s\n", flat/n, cum/n, strings.Join(f[5:], " "))
	}
}

// activate calls "inc" on n actors prefix0…prefix(n-1) from conc callers
// (each call creates and activates its actor) and returns how many
// failed.
func activate(ctx context.Context, cl *httpapi.Client, typ, prefix string, n, conc int) (int64, error) {
	return parallel(ctx, n, conc, func(ctx context.Context, i int) error {
		_, err := cl.Invoke(ctx, ns, prefix+strconv.Itoa(i), typ, "inc", nil)
		return err
	})
}

// parallel runs f(0)…f(n-1) from conc goroutines, each call bounded to
// 30 s, and returns how many failed; it gives up after 100 failures, or
// if more than 1% fail.
func parallel(ctx context.Context, n, conc int, f func(context.Context, int) error) (int64, error) {
	var (
		next, failed atomic.Int64
		first        error
		once         sync.Once
		wg           sync.WaitGroup
	)
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil || failed.Load() >= 100 {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := f(cctx, int(i))
				cancel()
				if err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return failed.Load(), err
	}
	if f := failed.Load(); f >= 100 || (f > 0 && f*100 > int64(n)) {
		return f, fmt.Errorf("%d calls failed, the first: %w", f, first)
	}
	if first != nil {
		fmt.Println("first error:", first)
	}
	return failed.Load(), nil
}

type snap struct {
	rss, pss, anon float64
	mapStats
	heapInuse, heapSys, heapRel, heapAlloc float64
	goSys, stack, actMem                   float64
	live                                   int64
	activated, evicted, shed               float64
	etcdRSS, etcdPSS, dbSize               float64
	keys, keyBytes, valBytes               float64
	heapProfile                            string
}

func sample(ctx context.Context, base string, pid, etcdPID int, external bool, ec *clientv3.Client, prof string) (snap, error) {
	var s snap
	// The heap profile with gc=1 runs a collection first: the heap
	// figures below are after it.
	if err := fetch(ctx, base+"/debug/pprof/heap?gc=1", prof); err != nil {
		return s, err
	}
	s.heapProfile = prof
	m, err := metrics(ctx, base)
	if err != nil {
		return s, err
	}
	s.heapInuse, s.heapSys, s.heapRel = m["go_memstats_heap_inuse_bytes"], m["go_memstats_heap_sys_bytes"], m["go_memstats_heap_released_bytes"]
	s.heapAlloc = m["go_memstats_heap_alloc_bytes"]
	s.goSys, s.stack, s.actMem = m["go_memstats_sys_bytes"], m["go_memstats_stack_inuse_bytes"], m["nola_activation_memory_bytes"]
	s.live = int64(m["nola_activations"])
	s.activated, s.evicted, s.shed = m["nola_activated_total"], m["nola_evictions_total"], m["nola_shed_total"]
	r := rollup(pid)
	s.rss, s.pss, s.anon = r["Rss:"], r["Pss:"], r["Anonymous:"]
	s.mapStats = smaps(pid)
	if external {
		e := rollup(etcdPID)
		s.etcdRSS, s.etcdPSS = e["Rss:"], e["Pss:"]
	}
	st, err := ec.Status(ctx, ec.Endpoints()[0])
	if err != nil {
		return s, fmt.Errorf("etcd status: %w", err)
	}
	s.dbSize = float64(st.DbSizeInUse)
	// The registry's keys and bytes, in pages.
	key := []byte{0}
	for {
		resp, err := ec.Get(ctx, string(key), clientv3.WithRange("\xff"), clientv3.WithLimit(10000))
		if err != nil {
			return s, fmt.Errorf("etcd range: %w", err)
		}
		for _, kv := range resp.Kvs {
			s.keys++
			s.keyBytes += float64(len(kv.Key))
			s.valBytes += float64(len(kv.Value))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
	}
	return s, nil
}

func report(a, b snap, n float64, external bool) {
	per := func(x, y float64) string { return fmt.Sprintf("%12.0f B", (y-x)/n) }
	row := func(name string, x, y float64) {
		fmt.Printf("  %-46s %14.1f MB %14.1f MB %s\n", name, x/(1<<20), y/(1<<20), per(x, y))
	}
	cnt := func(name string, x, y float64) {
		fmt.Printf("  %-46s %17.0f %17.0f %12.3f\n", name, x, y, (y-x)/n)
	}
	fmt.Printf("\n%d more live activations (nola_activations %d -> %d)\n", int64(n), a.live, b.live)
	fmt.Printf("  %-46s %17s %17s %14s\n", "", "baseline", "after", "per actor")
	cnt("activated (nola_activated_total)", a.activated, b.activated)
	cnt("evicted (nola_evictions_total)", a.evicted, b.evicted)
	cnt("shed (nola_shed_total)", a.shed, b.shed)
	fmt.Println("nola serve process:")
	row("RSS", a.rss, b.rss)
	row("PSS", a.pss, b.pss)
	row("anonymous", a.anon, b.anon)
	// Idle heap not yet returned to the OS moves with the scavenger's
	// timing (a baseline taken right after compiling a large module holds
	// a lot): PSS without it is the steadier figure.
	idle := func(x snap) float64 { return x.heapSys - x.heapInuse - x.heapRel }
	row("PSS without idle heap not yet returned", a.pss-idle(a), b.pss-idle(b))
	row("Go heap in use (after GC)", a.heapInuse, b.heapInuse)
	row("Go heap live objects (after GC)", a.heapAlloc, b.heapAlloc)
	row("Go heap mapped, not released", a.heapSys-a.heapRel, b.heapSys-b.heapRel)
	row("Go runtime, all mapped (sys)", a.goSys, b.goSys)
	row("goroutine stacks", a.stack, b.stack)
	row("RSS - (sys - released): outside the Go runtime", a.rss-(a.goSys-a.heapRel), b.rss-(b.goSys-b.heapRel))
	row("MAP_NORESERVE mappings (linear memory): size", a.nrSize, b.nrSize)
	row("MAP_NORESERVE mappings: resident", a.nrRSS, b.nrRSS)
	row("memfd image mappings: resident", a.memfdRSS, b.memfdRSS)
	row("nola_activation_memory_bytes (charged)", a.actMem, b.actMem)
	cnt("mappings (vm.max_map_count "+strings.TrimSpace(readFile("/proc/sys/vm/max_map_count"))+")", a.maps, b.maps)
	cnt("MAP_NORESERVE mappings", a.nrCount, b.nrCount)
	cnt("memfd image mappings", a.memfdCount, b.memfdCount)
	if external {
		fmt.Println("etcd member process:")
		row("RSS", a.etcdRSS, b.etcdRSS)
		row("PSS", a.etcdPSS, b.etcdPSS)
	} else {
		fmt.Println("etcd (embedded: its memory is in the RSS above):")
	}
	row("database in use", a.dbSize, b.dbSize)
	cnt("keys", a.keys, b.keys)
	row("key bytes", a.keyBytes, b.keyBytes)
	row("value bytes", a.valBytes, b.valBytes)
}

// rollup reads /proc/PID/smaps_rollup (bytes by field).
func rollup(pid int) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v * 1024
		}
	}
	return out
}

// mapStats counts a process's mappings (/proc/PID/smaps): all of them,
// the MAP_NORESERVE ones (VmFlags "nr": WASM linear memories, which the
// wasm package's allocator reserves so; besides them only a few of glibc's
// malloc arenas, a page or so resident each, which the difference between
// two samples removes) and those of memory images (memfd
// "nola-wasm-image"). Adjacent anonymous
// mappings with the same flags are one mapping to the kernel, so nrCount
// can be far below the number of instances. Sizes are bytes.
type mapStats struct {
	maps, nrCount, nrSize, nrRSS float64
	memfdCount, memfdRSS         float64
}

func smaps(pid int) mapStats {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return mapStats{}
	}
	defer f.Close()
	return parseSmaps(f)
}

func parseSmaps(r io.Reader) mapStats {
	var m mapStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var size, rss float64
	memfd := false
	for sc.Scan() {
		l := sc.Text()
		fs := strings.Fields(l)
		if len(fs) == 0 {
			continue
		}
		switch {
		case !strings.HasSuffix(fs[0], ":"): // a mapping's first line: "start-end perms offset dev inode [path]"
			m.maps++
			memfd = strings.Contains(l, "/memfd:nola-wasm-image")
		case fs[0] == "Size:" && len(fs) > 1:
			size, _ = strconv.ParseFloat(fs[1], 64)
		case fs[0] == "Rss:" && len(fs) > 1:
			rss, _ = strconv.ParseFloat(fs[1], 64)
			if memfd {
				m.memfdCount++
				m.memfdRSS += rss * 1024
			}
		case fs[0] == "VmFlags:":
			if slices.Contains(fs[1:], "nr") {
				m.nrCount++
				m.nrSize += size * 1024
				m.nrRSS += rss * 1024
			}
		}
	}
	return m
}

func metrics(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if ok && !strings.HasPrefix(name, "#") {
			out[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out, sc.Err()
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// waitLive waits until the server counts at least n live activations.
func waitLive(ctx context.Context, base string, n int) error {
	for {
		m, err := metrics(ctx, base)
		if err == nil && m["nola_activations"] >= float64(n) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %d live activations (last %v): %w", n, m["nola_activations"], ctx.Err())
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// startEtcd runs this executable again as a one-member etcd (see
// etcdtest.MemberMain), with nola's member configuration, and returns its
// pid and a function that stops it.
func startEtcd(dir, client, peer string) (int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	spec, err := json.Marshal(etcdkv.MemberConfig{Dir: filepath.Join(dir, "etcd"), ClientAddr: client, PeerAddr: peer})
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "NOLA_ETCDTEST_MEMBER="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return 0, nil, err
	}
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start etcd member: %w", err)
	}
	stop := func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case ok := <-ready:
		if !ok {
			stop()
			return 0, nil, fmt.Errorf("etcd member did not start (etcd.log in %s)", dir)
		}
	case <-time.After(60 * time.Second):
		stop()
		return 0, nil, errors.New("etcd member not ready within 60s")
	}
	return cmd.Process.Pid, stop, nil
}

func waitFile(ctx context.Context, file string, pid int) error {
	for {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			return nil
		}
		if err := syscall.Kill(pid, 0); err != nil {
			return errors.New("nola serve exited before it was ready")
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nola serve not ready: %w", ctx.Err())
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?\n"
	}
	return strings.Join(f[:3], " ") + "\n"
}
