// Command locality measures communication locality on a cluster of
// separate processes: three `nola serve` processes on one etcd (the first
// one's embedded member, which the other two reach as an external
// endpoint), and pairs of actors in which a caller actor calls its
// partner counter on every request. Placement puts about two pairs in
// three on different servers; locality moves bring each pair together.
// It prints throughput and latency percentiles in windows, with the share
// of pairs on one server, so that the windows before and after
// convergence can be compared. With --locality=false the servers run
// without moves: the control.
//
//	go build -o /tmp/nola ./cmd/nola
//	go run ./bench/locality --bin /tmp/nola --pairs 32 --concurrency 8 --windows 10 --window 4s
//
// Not part of make test (a main package without tests); figures in
// bench/README.md and docs/placement.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/registry/etcdkv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "locality:", err)
		os.Exit(1)
	}
}

type proc struct {
	id, url string
	cmd     *exec.Cmd
}

func run() error {
	bin := flag.String("bin", "nola", "the nola binary")
	pairs := flag.Int("pairs", 64, "actor pairs (a caller and a counter)")
	conc := flag.Int("concurrency", 16, "concurrent HTTP clients")
	windows := flag.Int("windows", 12, "measurement windows")
	window := flag.Duration("window", 5*time.Second, "length of a window")
	locality := flag.Bool("locality", true, "run the servers with locality moves")
	interval := flag.Duration("interval", time.Second, "--locality-interval of the servers")
	sample := flag.Int("sample", 4, "--locality-sample of the servers")
	keep := flag.Bool("keep", false, "keep the work directory (logs)")
	flag.Parse()
	if *pairs <= 0 || *conc <= 0 || *windows <= 0 || *window <= 0 {
		return errors.New("--pairs, --concurrency, --windows and --window must be positive")
	}
	dir, err := os.MkdirTemp("", "nola-locality-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	addrs, err := etcdkv.FreeAddrs(4)
	if err != nil {
		return err
	}
	etcdAddr := addrs[3]
	var procs []*proc
	defer func() {
		for _, p := range procs {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
		}
	}()
	for i := range 3 {
		id := fmt.Sprintf("s%d", i+1)
		ready := filepath.Join(dir, id+".ready")
		args := []string{"serve", "--id", id, "--listen", addrs[i], "--ready-file", ready,
			"--log-level", "warn", "--example-actors", "--lease-ttl", "3s",
			fmt.Sprintf("--locality=%v", *locality), "--locality-interval", interval.String(),
			"--locality-sample", fmt.Sprint(*sample)}
		if i == 0 {
			args = append(args, "--data-dir", filepath.Join(dir, "data"), "--etcd-listen", etcdAddr)
		} else {
			args = append(args, "--etcd-endpoints", "http://"+etcdAddr)
		}
		log, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			return err
		}
		defer log.Close()
		cmd := exec.Command(*bin, args...)
		cmd.Stdout, cmd.Stderr = log, log
		// The servers die with the harness, however it ends (Linux).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		procs = append(procs, &proc{id: id, url: "http://" + addrs[i], cmd: cmd})
		if err := waitReady(ready, 60*time.Second); err != nil {
			return fmt.Errorf("%s: %w (log in %s)", id, err, dir)
		}
	}
	ctx := context.Background()
	var clients []*httpapi.Client
	for _, p := range procs {
		c := httpapi.NewClient(p.url, "")
		defer c.Close()
		clients = append(clients, c)
	}
	const ns = "loc"
	call := func(c *httpapi.Client, i int) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Invoke(cctx, ns, fmt.Sprintf("a%d", i), "caller", "call", fmt.Appendf(nil, "counter/b%d/inc", i))
		return err
	}
	// Place every pair once, the counter first: placement spreads them.
	for i := range *pairs {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := clients[i%3].Invoke(cctx, ns, fmt.Sprintf("b%d", i), "counter", "inc", nil)
		cancel()
		if err != nil {
			return err
		}
		if err := call(clients[(i+1)%3], i); err != nil {
			return err
		}
	}
	fmt.Printf("3 nola serve processes on one etcd, %d pairs, %d clients, locality=%v (interval %v, 1 in %d sampled), windows of %v\n",
		*pairs, *conc, *locality, *interval, *sample, *window)
	fmt.Printf("%6s %9s %9s %9s %9s %8s %7s\n", "t", "calls/s", "p50", "p99", "p99.9", "together", "errors")
	var (
		mu    sync.Mutex
		lats  []time.Duration
		errs  atomic.Int64
		stop  atomic.Bool
		wg    sync.WaitGroup
		start = time.Now()
	)
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				i := (w + n*(*conc)) % *pairs
				t0 := time.Now()
				if err := call(clients[(w+n)%3], i); err != nil {
					errs.Add(1)
					continue
				}
				d := time.Since(t0) // a call takes milliseconds: the lock is noise
				mu.Lock()
				lats = append(lats, d)
				mu.Unlock()
			}
		}()
	}
	for range *windows {
		t0 := time.Now()
		time.Sleep(*window)
		mu.Lock()
		got := lats
		lats = nil
		mu.Unlock()
		el := time.Since(t0)
		together, err := colocated(ctx, clients[0], ns, *pairs)
		if err != nil {
			return err
		}
		slices.Sort(got)
		fmt.Printf("%6.0f %9.0f %9v %9v %9v %7.0f%% %7d\n", time.Since(start).Seconds(), float64(len(got))/el.Seconds(),
			pct(got, 0.50), pct(got, 0.99), pct(got, 0.999), 100*together, errs.Swap(0))
	}
	stop.Store(true)
	wg.Wait()
	return nil
}

// colocated returns the share of pairs whose caller and counter have the
// same owner in the registry.
func colocated(ctx context.Context, c *httpapi.Client, ns string, pairs int) (float64, error) {
	owner := map[string]string{}
	after := ""
	for {
		l, err := c.ListActors(ctx, ns, after, 1000)
		if err != nil {
			return 0, err
		}
		for _, a := range l.Actors {
			owner[a.ID] = a.Owner
		}
		if !l.More || len(l.Actors) == 0 {
			break
		}
		after = l.Actors[len(l.Actors)-1].ID
	}
	n := 0
	for i := range pairs {
		if o := owner[fmt.Sprintf("a%d", i)]; o != "" && o == owner[fmt.Sprintf("b%d", i)] {
			n++
		}
	}
	return float64(n) / float64(pairs), nil
}

func pct(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Microsecond)
}

func waitReady(path string, limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
			return nil
		}
	}
	return fmt.Errorf("not ready after %v", limit)
}
