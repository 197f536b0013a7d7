package wasm

import (
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
)

// BenchmarkLiveInstanceHeap keeps b.N C counter instances live at once and
// reports the Go heap each holds after a collection (live-B/instance): the
// in-process part of what a live C-WASM actor costs a server (issue 16,
// item 7), without the engine's activation and route. Run it with a fixed
// -benchtime (e.g. 5000x) and -memprofile to see where the bytes go
// (NOLA_LIVEHEAP_PROFILE=file writes the heap profile with the instances
// live; -test.memprofilerate 1 for exact figures).
func BenchmarkLiveInstanceHeap(b *testing.B) {
	h, mod := counterCHost(b)
	b.ReportMetric(liveInstanceHeap(b, h, mod, b.Loop), "live-B/instance")
}

// liveInstanceHeap instantiates C counter instances while more() says so,
// trims them as the server leaves instances idle for Config.EngineIdle,
// and returns the Go heap each holds after a collection.
func liveInstanceHeap(tb testing.TB, h *Host, mod *compiled, more func() bool) float64 {
	tb.Helper()
	ref := nola.Ref{Namespace: "t", ID: "a"}
	first, err := h.instantiate(initCx{}, mod, ref) // takes the snapshot
	if err != nil {
		tb.Fatal(err)
	}
	defer first.close()
	var live []*instance
	defer func() {
		for _, in := range live {
			in.close()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for more() {
		in, err := h.instantiate(initCx{}, mod, ref)
		if err != nil {
			tb.Fatal(err)
		}
		live = append(live, in)
	}
	// As the server leaves them after Config.EngineIdle: engines dropped.
	for _, in := range live {
		in.trimEngine(time.Duration(math.MaxInt64))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p := os.Getenv("NOLA_LIVEHEAP_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		_ = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	n := len(live)
	runtime.KeepAlive(live)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}
