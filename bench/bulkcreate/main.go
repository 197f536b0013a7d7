// Command bulkcreate measures bulk actor creation on real etcd at scale
// (issue 16, item 5: a million actors in under two minutes): it creates
// --n never-seen actors through the public client (nola.Client.Create,
// the path BenchmarkEtcdBulkCreate measures in rounds of 500) from
// --callers goroutines, on a fresh etcd with fsync on — one embedded
// member (--members 1) or an in-process cluster (--members 3) — and one
// nola server. It prints the rate of every --every creations (so that a
// fall-off as the keyspace grows shows), the total time and rate, and
// etcd's database size and key count at the end. The whole run is bounded
// by --timeout; a run cut off reports what it created.
//
//	go run ./bench/bulkcreate --n 1000000 --callers 64 --members 1
//
// Not part of make test (a main package without tests); figures in
// bench/README.md ("Bulk creation and adaptive group commit").
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
	"github.com/nolaproject/nola/rt"
)

func main() {
	n := flag.Int("n", 100000, "actors to create")
	callers := flag.Int("callers", 64, "concurrent callers")
	members := flag.Int("members", 1, "etcd members: 1 (embedded) or 3 (in-process cluster)")
	every := flag.Int("every", 100000, "print the rate of every this many creations")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the creations from --profile-after on to this file")
	profileAfter := flag.Int("profile-after", 0, "start the CPU profile once this many actors exist (a multiple of --every): profiles a late window, to see what grows with the keyspace")
	flag.Parse()
	if *n <= 0 || *n > 10_000_000 || *callers <= 0 || *callers > 4096 || *every <= 0 || *timeout <= 0 || (*members != 1 && *members != 3) ||
		*profileAfter < 0 || *profileAfter >= *n || *profileAfter%*every != 0 {
		fmt.Fprintln(os.Stderr, "bulkcreate: need 0 < --n ≤ 10M, 0 < --callers ≤ 4096, --every > 0, --timeout > 0, --members 1 or 3, 0 ≤ --profile-after < --n and a multiple of --every")
		os.Exit(2)
	}
	var prof *profile
	if *cpuprofile != "" {
		prof = &profile{path: *cpuprofile, after: int64(*profileAfter)}
	}
	if err := run(*n, *callers, *members, *every, *timeout, prof); err != nil {
		fmt.Fprintln(os.Stderr, "bulkcreate:", err)
		os.Exit(1)
	}
}

// profile is a CPU profile of the creations from the after'th on.
type profile struct {
	path  string
	after int64
	f     *os.File
}

// at starts the profile once d actors exist.
func (p *profile) at(d int64) error {
	if p == nil || p.f != nil || d < p.after {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	p.f = f
	fmt.Printf("  (CPU profile from %d on)\n", d)
	return nil
}

// stop ends the profile, if it was started.
func (p *profile) stop() error {
	if p == nil || p.f == nil {
		return nil
	}
	pprof.StopCPUProfile()
	return p.f.Close()
}

func run(n, callers, members, every int, timeout time.Duration, prof *profile) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "bulkcreate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var store *etcdkv.Store
	if members == 1 {
		e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: dir}})
		if err != nil {
			return err
		}
		defer e.Close()
		store = e.Store
	} else {
		// etcd's own election timing, as BenchmarkEtcdBulkCreate runs it.
		c, err := etcdtest.StartCluster(ctx, etcdtest.Options{Members: members, Dir: dir, TickMs: 100, ElectionMs: 1000})
		if err != nil {
			return err
		}
		defer c.Close()
		if store, err = c.Open(ctx, etcdkv.Options{}); err != nil {
			return err
		}
		defer store.Close()
	}

	r := rt.NewReal()
	cl, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers: 1, Store: store, Types: actors.Types(),
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = cl.Shutdown(sctx)
		r.Wait()
	}()
	client := cl.Client()

	fmt.Printf("bulkcreate: %d actors, %d callers, %d etcd member(s), GOMAXPROCS %d, load %s\n",
		n, callers, members, runtime.GOMAXPROCS(0), loadavg())
	if err := prof.at(0); err != nil {
		return err
	}
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		failed     atomic.Pointer[error]
		cpu0       = cpuTime()
		start      = time.Now()
		marks      = make(chan int64, 1)
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				created, err := client.Create(ctx, "bulk", "a"+strconv.FormatInt(i, 10), "kvcounter", nil)
				if err == nil && !created {
					err = fmt.Errorf("actor a%d was not created (it existed)", i)
				}
				if err != nil && ctx.Err() != nil {
					// Cut off (--timeout, or another caller failed):
					// the call's error says only that; the run's end
					// reports the cut-off and what was created.
					return
				}
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					cancel()
					return
				}
				if d := done.Add(1); d%int64(every) == 0 {
					marks <- d
				}
			}
		}()
	}
	go func() { wg.Wait(); close(marks) }()
	last, lastAt, lastCPU := int64(0), start, cpu0
	for d := range marks {
		now, c := time.Now(), cpuTime()
		fmt.Printf("  %8d created: %7.0f/s over the last %d (%6.1f µs cpu each), load %s\n",
			d, float64(d-last)/now.Sub(lastAt).Seconds(), d-last,
			float64((c-lastCPU).Microseconds())/float64(d-last), loadavg())
		last, lastAt, lastCPU = d, now, c
		if err := prof.at(d); err != nil {
			return err
		}
	}
	elapsed, total := time.Since(start), done.Load()
	if err := prof.stop(); err != nil {
		return err
	}
	fmt.Printf("total: %d created in %v: %.0f/s, %.1f µs process cpu each\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(),
		float64((cpuTime()-cpu0).Microseconds())/float64(max(total, 1)))
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	reportDB(sctx, store.Client())
	if ms := store.MaintenanceStats(); ms.Passes > 0 {
		fmt.Printf("maintenance: %d passes, %d compactions (the last took %v), %d paced, %d commits waited\n",
			ms.Passes, ms.Compactions, ms.LastCompaction.Round(time.Millisecond), ms.Paced, ms.Waits)
	}
	gs := store.GroupStats()
	fmt.Printf("group commit: %.1f commits per etcd request, largest batch %d, %d lingers\n",
		float64(gs.Commits)/float64(max(gs.Requests, 1)), gs.MaxBatch, gs.Lingers)
	if p := failed.Load(); p != nil {
		return *p
	}
	if total < int64(n) {
		return fmt.Errorf("cut off by --timeout %v after %d of %d: %w", timeout, total, n, ctx.Err())
	}
	return nil
}

// reportDB prints every endpoint's database size and the key count.
func reportDB(ctx context.Context, cli *clientv3.Client) {
	for _, ep := range cli.Endpoints() {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			fmt.Printf("etcd %s: status: %v\n", ep, err)
			continue
		}
		fmt.Printf("etcd member: db size %.1f MB (in use %.1f MB), revision %d\n",
			float64(st.DbSize)/(1<<20), float64(st.DbSizeInUse)/(1<<20), st.Header.Revision)
	}
	res, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		fmt.Printf("etcd keys: %v\n", err)
		return
	}
	fmt.Printf("etcd keys: %d\n", res.Count)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "?"
	}
	return string(b[:14])
}
