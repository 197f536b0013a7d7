package wasm_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/wasm"
)

// BenchmarkBystanderLatency measures what looping guests cost an unrelated
// actor on the same server, over HTTP on loopback as a client sees it: a
// warm C counter ("the bystander") is invoked by one client, one call at a
// time with a 1 ms pause between calls, while 0 or 4 other clients keep
// actors running hostile-c's "spin" (an endless loop, cut at the 500 ms
// InvokeTimeout and started again at once). It reports the bystander's
// latency percentiles, with execution slots off (slots=-1: every guest
// runs at once), at their default (slots=0: GOMAXPROCS-1) and at 2.
//
//	go test -run '^$' -bench BystanderLatency -benchtime 300x ./wasm/
//
// Figures (2 cores) are in bench/README.md.
func BenchmarkBystanderLatency(b *testing.B) {
	for _, c := range []struct {
		loopers, slots int
	}{{0, 0}, {4, -1}, {4, 0}, {4, 2}} {
		loopers := c.loopers
		b.Run(fmt.Sprintf("loopers=%d/slots=%d", loopers, c.slots), func(b *testing.B) {
			e := newEnv(b, envOpts{host: func(hc *wasm.Config) { hc.InvokeTimeout = 500 * time.Millisecond; hc.GuestSlots = c.slots }})
			e.putGuests()
			hs := httptest.NewServer(httpapi.NewHandler(e.c.Server(0), httpapi.Options{}))
			defer hs.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			call := func(id, typ, op string) error {
				resp, err := cl.Post(hs.URL+"/v1/ns/"+ns+"/actors/"+id+"/invoke/"+op+"?type="+typ, "application/octet-stream", nil)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s %s.%s: HTTP %d", typ, id, op, resp.StatusCode)
				}
				return nil
			}
			if err := call("bystander", "counter-c", "inc"); err != nil {
				b.Fatal(err)
			}
			for i := range loopers {
				if err := call(fmt.Sprintf("loop-%d", i), "hostile-c", "inc"); err != nil {
					b.Fatal(err)
				}
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			for i := range loopers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						_ = call(fmt.Sprintf("loop-%d", i), "hostile-c", "spin")
					}
				}()
			}
			// Let the loopers get going (bounded: a benchmark, not a test).
			for deadline := time.Now().Add(5 * time.Second); loopers > 0 && time.Now().Before(deadline); {
				if e.hosts[0].Stats().Running >= int64(min(loopers, 2)) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				time.Sleep(time.Millisecond)
				start := time.Now()
				if err := call("bystander", "counter-c", "inc"); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			stop.Store(true)
			wg.Wait()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(pct(1), "max-ms")
		})
	}
}
