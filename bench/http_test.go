package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// The HTTP path (issue 16, item 4): what a call through nola's public
// invoke endpoint costs over real loopback HTTP, against a bare net/http
// handler in the same binary that reads the body and answers 8 bytes.
//
// Sub-benchmarks, each at 8 and 64 parallel callers (keep-alive net/http
// clients, one connection per caller once warm):
//
//   - bare: a bare net/http server whose handler reads the body and
//     writes 8 bytes — the floor;
//   - nola: one node (node.Start: the httpapi handler with its metrics,
//     the engine, memkv) and a warm Go echo actor per caller, invoked
//     with an 8-byte payload, which it returns;
//   - bare-forward: three bare servers; each call enters one, whose
//     handler forwards the body over HTTP to the next, which answers — the
//     floor of a forwarded call;
//   - forward: three nodes on one memkv store, each with its own listener;
//     every call is sent to a node that does not host its actor, which
//     forwards it to the owner over the HTTP transport.
//
// Metrics: ns/op is wall time per call across all callers (1/throughput);
// cpu-ns/op is the process's CPU time per call (user and system, all
// threads: the callers' net/http clients, the servers, the collector);
// gc-cpu-ns/op is the runtime's estimate of the collector's CPU per call
// (runtime/metrics /cpu/classes/gc/total:cpu-seconds less its idle
// marking, see gcStats); gc/kop the GC cycles per thousand calls (with a
// small live heap, proportional to B/op); allocs/op and B/op count the whole process.
// The clients run in the process too, so the ratios of cpu-ns/op include
// the same client cost on both sides; the difference (nola − bare) is the
// server-side cost nola adds.
//
// Reproduce (the sub-benchmarks interleave across -count rounds):
//
//	go test -run '^$' -bench BenchmarkHTTPPath -count 3 -benchtime 3s ./bench/

// httpPayload is the 8-byte body of every call; the answer has 8 bytes too.
var httpPayload = []byte("12345678")

var httpCallers = []int{8, 16, 64}

func BenchmarkHTTPPath(b *testing.B) {
	for _, callers := range httpCallers {
		b.Run(fmt.Sprintf("bare/callers=%d", callers), func(b *testing.B) {
			url := startBare(b, "")
			runHTTPCallers(b, callers, func(int) string { return url + "/call" })
		})
		b.Run(fmt.Sprintf("nola/callers=%d", callers), func(b *testing.B) {
			nodes := startHTTPNodes(b, 1)
			runHTTPCallers(b, callers, func(i int) string { return invokeURL(nodes[0].URL(), i) })
		})
		b.Run(fmt.Sprintf("bare-forward/callers=%d", callers), func(b *testing.B) {
			urls := make([]string, 3)
			// Each server forwards to the next: start them last to first.
			urls[2] = startBare(b, "")
			urls[1] = startBare(b, urls[2])
			urls[0] = startBare(b, urls[1])
			runHTTPCallers(b, callers, func(i int) string { return urls[i%2] + "/fwd" })
		})
		b.Run(fmt.Sprintf("forward/callers=%d", callers), func(b *testing.B) {
			nodes := startHTTPNodes(b, 3)
			entry := forwardEntries(b, nodes, callers)
			runHTTPCallers(b, callers, func(i int) string { return invokeURL(entry[i], i) })
		})
	}
}

func invokeURL(base string, caller int) string {
	return base + "/v1/ns/bench/actors/e" + strconv.Itoa(caller) + "/invoke/echo?type=echo"
}

// forwardEntries activates each caller's echo actor and returns, per
// caller, the URL of a node that does not host it.
func forwardEntries(b *testing.B, nodes []*node.Node, callers int) []string {
	b.Helper()
	c := &http.Client{}
	defer c.CloseIdleConnections()
	entry := make([]string, callers)
	for i := range callers {
		if err := httpCall(c, invokeURL(nodes[0].URL(), i)); err != nil {
			b.Fatal(err)
		}
		owner := -1
		for k, n := range nodes {
			if n.Server().Hosts("bench", "e"+strconv.Itoa(i)) {
				owner = k
			}
		}
		if owner < 0 {
			b.Fatalf("no node hosts e%d after a call", i)
		}
		entry[i] = nodes[(owner+1+i%2)%len(nodes)].URL()
	}
	return entry
}

// startBare starts a bare net/http server with the timeouts a node's
// server has. /call reads the body and answers 8 bytes; /fwd, if next is
// set, sends the body to next's /call and relays its answer.
func startBare(b *testing.B, next string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /call", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(io.LimitReader(r.Body, 1<<10)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(httpPayload)
	})
	if next != "" {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
		b.Cleanup(c.CloseIdleConnections)
		mux.HandleFunc("POST /fwd", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, next+"/call", bytes.NewReader(body))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			if err != nil || resp.StatusCode != http.StatusOK {
				http.Error(w, "forwarding failed", http.StatusBadGateway)
				return
			}
			_, _ = w.Write(out)
		})
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = hs.Serve(ln) }()
	b.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String()
}

// startHTTPNodes starts n nodes (what `nola serve` runs, metrics
// included) on one memkv store, each with its own loopback listener.
func startHTTPNodes(b *testing.B, n int) []*node.Node {
	b.Helper()
	store := memkv.New(rt.NewReal(), memkv.Options{})
	b.Cleanup(func() { _ = store.Close() })
	nodes := make([]*node.Node, n)
	for i := range nodes {
		nd, err := node.Start(context.Background(), node.Options{
			ID: "h" + strconv.Itoa(i), Listen: "127.0.0.1:0", Store: node.Store{KV: store},
			Types: actors.Types(), IdleTimeout: time.Hour,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = nd.Shutdown(ctx)
		})
		nodes[i] = nd
	}
	return nodes
}

// httpCall posts the payload to url and checks the 8-byte answer.
func httpCall(c *http.Client, url string) error {
	resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(httpPayload))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, httpPayload) {
		return fmt.Errorf("POST %s: HTTP %d %q, want 200 %q", url, resp.StatusCode, body, httpPayload)
	}
	return nil
}

// httpLoad is a fixed set of callers, caller i posting to urls[i] over its
// own keep-alive connection.
type httpLoad struct {
	c    *http.Client
	urls []string
}

func newHTTPLoad(b *testing.B, callers int, url func(int) string) *httpLoad {
	l := &httpLoad{c: &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: callers, DisableCompression: true, IdleConnTimeout: time.Minute,
	}}, urls: make([]string, callers)}
	b.Cleanup(l.c.CloseIdleConnections)
	for i := range l.urls {
		l.urls[i] = url(i)
	}
	// Warm-up outside any measurement: connections, activations, routes.
	if err := l.run(int64(callers) * 20); err != nil {
		b.Fatal(err)
	}
	return l
}

// run makes n calls, shared among the callers.
func (l *httpLoad) run(n int64) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		fail atomic.Pointer[error]
	)
	for _, url := range l.urls {
		wg.Go(func() {
			for next.Add(1) <= n && fail.Load() == nil {
				if err := httpCall(l.c, url); err != nil {
					fail.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := fail.Load(); err != nil {
		return *err
	}
	return nil
}

// runHTTPCallers makes b.N calls from callers goroutines, caller i posting
// to url(i) over its own keep-alive connection, and reports the figures
// described above BenchmarkHTTPPath. Every caller first makes warm-up
// calls outside the timer (connection, activation, route caches).
func runHTTPCallers(b *testing.B, callers int, url func(int) string) {
	l := newHTTPLoad(b, callers, url)
	runtime.GC()
	b.ReportAllocs()
	gc0, cycles0 := gcStats()
	cpu0 := procCPU()
	b.ResetTimer()
	if err := l.run(int64(b.N)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu1 := procCPU()
	gc1, cycles1 := gcStats()
	n := float64(b.N)
	b.ReportMetric(float64(cpu1-cpu0)/n, "cpu-ns/op")
	b.ReportMetric((gc1-gc0)*1e9/n, "gc-cpu-ns/op")
	b.ReportMetric(float64(cycles1-cycles0)*1000/n, "gc/kop")
	b.ReportMetric(n/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkHTTPPathInterleaved compares nola with the bare floor batch by
// batch, on a machine shared with other jobs: both servers run in the
// process, and each iteration times one batch of httpBatch calls against
// each (in alternating order, after a full GC outside the timing, so that
// each batch pays mostly for its own garbage). The figures are medians
// over iterations: cpu-ratio and ops-ratio are the per-iteration ratios
// of nola to the floor (process CPU per call; calls per second), the
// cpu-ns figures each side's own and their difference. Load that changes
// between sub-benchmarks shifts both sides of a ratio alike here, where
// BenchmarkHTTPPath's separate sub-benchmarks see whatever load each ran
// under. Reproduce:
//
//	go test -run '^$' -bench BenchmarkHTTPPathInterleaved -benchtime 20x ./bench/
func BenchmarkHTTPPathInterleaved(b *testing.B) {
	for _, callers := range httpCallers {
		b.Run(fmt.Sprintf("nola-vs-bare/callers=%d", callers), func(b *testing.B) {
			url := startBare(b, "")
			nodes := startHTTPNodes(b, 1)
			interleave(b,
				newHTTPLoad(b, callers, func(int) string { return url + "/call" }),
				newHTTPLoad(b, callers, func(i int) string { return invokeURL(nodes[0].URL(), i) }))
		})
		b.Run(fmt.Sprintf("forward-vs-bare-forward/callers=%d", callers), func(b *testing.B) {
			urls := make([]string, 3)
			urls[2] = startBare(b, "")
			urls[1] = startBare(b, urls[2])
			urls[0] = startBare(b, urls[1])
			nodes := startHTTPNodes(b, 3)
			entry := forwardEntries(b, nodes, callers)
			interleave(b,
				newHTTPLoad(b, callers, func(i int) string { return urls[i%2] + "/fwd" }),
				newHTTPLoad(b, callers, func(i int) string { return invokeURL(entry[i], i) }))
		})
	}
}

const httpBatch = 400

func interleave(b *testing.B, floor, subject *httpLoad) {
	batch := func(l *httpLoad) (cpu, wall float64) {
		runtime.GC()
		c0, t0 := procCPU(), time.Now()
		if err := l.run(httpBatch); err != nil {
			b.Fatal(err)
		}
		return float64(procCPU()-c0) / httpBatch, float64(time.Since(t0)) / httpBatch
	}
	var cpuRatio, opsRatio, floorCPU, subjectCPU, extra []float64
	b.ResetTimer()
	for i := range b.N {
		var fc, fw, sc, sw float64
		if i%2 == 0 {
			fc, fw = batch(floor)
			sc, sw = batch(subject)
		} else {
			sc, sw = batch(subject)
			fc, fw = batch(floor)
		}
		cpuRatio = append(cpuRatio, sc/fc)
		opsRatio = append(opsRatio, fw/sw)
		floorCPU, subjectCPU, extra = append(floorCPU, fc), append(subjectCPU, sc), append(extra, sc-fc)
	}
	b.StopTimer()
	b.ReportMetric(httpMedian(cpuRatio), "cpu-ratio")
	b.ReportMetric(httpMedian(opsRatio), "ops-ratio")
	b.ReportMetric(httpMedian(floorCPU), "floor-cpu-ns/call")
	b.ReportMetric(httpMedian(subjectCPU), "cpu-ns/call")
	b.ReportMetric(httpMedian(extra), "extra-cpu-ns/call")
}

func httpMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	return s[len(s)/2]
}

// procCPU is the CPU time the process used so far, user and system, on
// all threads.
func procCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gcStats returns the collector's CPU time so far (the runtime's
// estimate, in seconds), leaving out its idle-priority marking, and the
// number of completed GC cycles. Idle marking runs on processors that
// have nothing else to do: the runtime counts all of their time, whether
// the machine gave it to the process or to another job, so on a shared
// machine it measures the load more than the collector's work.
func gcStats() (cpuSeconds float64, cycles uint64) {
	s := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64 && s[1].Value.Kind() == metrics.KindFloat64 {
		cpuSeconds = s[0].Value.Float64() - s[1].Value.Float64()
	}
	if s[2].Value.Kind() == metrics.KindUint64 {
		cycles = s[2].Value.Uint64()
	}
	return cpuSeconds, cycles
}
