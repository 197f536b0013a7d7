// Command soak runs one `nola serve` on an embedded etcd under steady load
// and fails if its memory, goroutines, file descriptors or etcd files keep
// growing after warm-up (issue 10, finding 9). `make soak SOAK=10m` runs it.
//
// Load: two `nola bench` processes for the whole run, counter and
// kvcounter, 64 actors and 16 callers each (128 actors, 32 callers).
// Every -every it samples the server's RSS (/proc/PID/status VmRSS), Go
// heap in use and goroutines (its /metrics), open fds (/proc/PID/fd), the
// etcd database file (member/snap/db) and the WAL directory, and prints a
// row. Verdict per series: the samples after warm-up (the first quarter of
// the run) are split in halves; the series grows if the maximum of the
// second half exceeds the maximum of the first by more than -growth
// (default 25%) and by more than its absolute floor.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type series struct {
	name  string
	unit  float64 // divisor for printing
	floor float64 // growth below this many units is noise
	vals  []float64
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("nola", "bin/nola", "nola binary")
	dur := flag.Duration("duration", 10*time.Minute, "load duration")
	every := flag.Duration("every", 10*time.Second, "sampling interval")
	growth := flag.Float64("growth", 0.25, "allowed growth of the second half's max over the first half's, after warm-up")
	keep := flag.Bool("keep", false, "keep the data directory")
	flag.Parse()
	if *dur < 4**every {
		return fmt.Errorf("-duration %v needs at least 4 samples of -every %v", *dur, *every)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "nola-soak-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ready := filepath.Join(dir, "ready")
	srvLog, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return err
	}
	defer srvLog.Close()
	srv := exec.Command(*bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--ready-file", ready, "--log-level", "warn", "--pprof", "--example-actors")
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start nola serve: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	addr, err := waitReady(ctx, ready, srv, 60*time.Second)
	if err != nil {
		return err
	}
	url := "http://" + addr
	fmt.Printf("nola serve pid %d on %s, data in %s; load for %v, a sample every %v\n", srv.Process.Pid, url, dir, *dur, *every)

	var benches []*exec.Cmd
	for _, typ := range []string{"counter", "kvcounter"} {
		b := exec.CommandContext(ctx, *bin, "bench", "--servers", url, "--type", typ, "--actors", "64",
			"--concurrency", "16", "--duration", dur.String(), "--requests", "1000000000", "--quiet")
		b.Stdout, b.Stderr = os.Stdout, os.Stderr
		if err := b.Start(); err != nil {
			return fmt.Errorf("start nola bench: %w", err)
		}
		benches = append(benches, b)
	}

	mb := float64(1 << 20)
	ss := []*series{
		{name: "rss_MB", unit: mb, floor: 32},
		{name: "heap_MB", unit: mb, floor: 16},
		{name: "goroutines", unit: 1, floor: 50},
		{name: "fds", unit: 1, floor: 20},
		{name: "db_MB", unit: mb, floor: 16},
		{name: "wal_MB", unit: mb, floor: 64},
	}
	fmt.Printf("%8s", "t")
	for _, s := range ss {
		fmt.Printf(" %11s", s.name)
	}
	fmt.Println()
	start := time.Now()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	member := filepath.Join(dir, "data", "etcd", "member")
	for time.Since(start) < *dur {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		heap, gor := scrape(url)
		vals := []float64{
			procRSS(srv.Process.Pid), heap, gor, countFDs(srv.Process.Pid),
			fileSize(filepath.Join(member, "snap", "db")), dirSize(filepath.Join(member, "wal")),
		}
		fmt.Printf("%7.0fs", time.Since(start).Seconds())
		for i, s := range ss {
			s.vals = append(s.vals, vals[i])
			fmt.Printf(" %11.1f", vals[i]/s.unit)
		}
		fmt.Println()
	}
	var berr error
	for _, b := range benches {
		if err := b.Wait(); err != nil {
			berr = errors.Join(berr, fmt.Errorf("nola bench: %w", err))
		}
	}
	var grew []string
	for _, s := range ss {
		if g, ok := grows(s.vals, *growth, s.floor*s.unit); ok {
			grew = append(grew, fmt.Sprintf("%s (+%.0f%% after warm-up)", s.name, 100*g))
		}
	}
	if len(grew) > 0 {
		return errors.Join(berr, fmt.Errorf("still growing under steady load: %s (data: %s)", strings.Join(grew, ", "), dir))
	}
	if berr != nil {
		return berr
	}
	fmt.Println("soak: no series kept growing after warm-up")
	return nil
}

// grows reports whether vals keeps growing after warm-up (the first
// quarter): the second half's max over the first half's, beyond frac and
// floor.
func grows(vals []float64, frac, floor float64) (float64, bool) {
	rest := vals[len(vals)/4:]
	if len(rest) < 4 { // too few to tell
		return 0, false
	}
	a, b := maxOf(rest[:len(rest)/2]), maxOf(rest[len(rest)/2:])
	if a <= 0 {
		return 0, b > floor
	}
	g := (b - a) / a
	return g, g > frac && b-a > floor
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return m
}

func waitReady(ctx context.Context, file string, srv *exec.Cmd, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b)), nil
		}
		if err := syscall.Kill(srv.Process.Pid, 0); err != nil {
			return "", errors.New("nola serve exited before it was ready (see serve.log in the data directory; -keep keeps it)")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("nola serve not ready within %v", limit)
}

// scrape reads go_memstats_heap_inuse_bytes and go_goroutines from /metrics.
func scrape(url string) (heap, goroutines float64) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	heap, goroutines = -1, -1
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			heap, _ = strconv.ParseFloat(v, 64)
		case "go_goroutines":
			goroutines, _ = strconv.ParseFloat(v, 64)
		}
	}
	return heap, goroutines
}

func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return -1
}

func countFDs(pid int) float64 {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return float64(len(es))
}

func fileSize(p string) float64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return float64(fi.Size())
}

func dirSize(p string) float64 {
	var n int64
	_ = filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return float64(n)
}
