package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// runBench drives N concurrent callers over HTTP against one or more
// servers for a bounded time (and at most a bounded number of requests),
// printing a progress line every second and, at the end, throughput and
// latency percentiles.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [flags]", stderr)
	servers := fs.String("servers", envOr("NOLA_SERVER", "http://127.0.0.1:9090"), "comma-separated server URLs; callers are spread over them")
	token := fs.String("token", "", "API token (default: env NOLA_API_TOKEN)")
	conc := fs.Int("concurrency", 16, "concurrent callers")
	dur := fs.Duration("duration", 10*time.Second, "how long to run")
	maxReq := fs.Int64("requests", 10_000_000, "stop after this many requests in all, dealt out evenly to the callers")
	ns := fs.String("ns", "bench", "namespace")
	typ := fs.String("type", "counter", "actor type (Go type or WASM module ID)")
	op := fs.String("op", "inc", "operation")
	payload := fs.String("payload", "", "payload of every call")
	nActors := fs.Int("actors", 0, "distinct actors, dealt out to the callers (default: one per caller)")
	warm := fs.Bool("warm", true, "call each actor once before measuring")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *conc <= 0 || *dur <= 0 || *maxReq <= 0 {
		return usageErr("--concurrency, --duration and --requests must be positive")
	}
	if *nActors <= 0 {
		*nActors = *conc
	}
	tok := *token
	if tok == "" {
		tok = envOr("NOLA_API_TOKEN", os.Getenv("NOLA_TOKEN"))
	}
	var clients []*httpapi.Client
	for _, s := range strings.Split(*servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c := httpapi.NewClient(s, tok)
			defer c.Close()
			clients = append(clients, c)
		}
	}
	if len(clients) == 0 {
		return usageErr("--servers is empty")
	}
	actorID := func(i int) string { return fmt.Sprintf("bench-%s-%d", *typ, i%*nActors) }
	if *warm {
		for i := range *nActors {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := clients[i%len(clients)].Invoke(wctx, *ns, actorID(i), *typ, *op, []byte(*payload))
			cancel()
			if err != nil {
				return fmt.Errorf("warming actor %s: %w", actorID(i), err)
			}
		}
	}

	runCtx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	var (
		done   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		lats   []time.Duration
		codes  = map[nola.Code]int64{}
	)
	start := time.Now()
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			// Caller w takes actors w, w+conc, w+2·conc, …: with at least
			// as many actors as callers, no two callers share one.
			var ids []string
			for i := w; i < *nActors; i += *conc {
				ids = append(ids, actorID(i))
			}
			if len(ids) == 0 {
				ids = []string{actorID(w)}
			}
			// The request budget is dealt out too, so a caller that the
			// scheduler favours cannot use up the others' share and leave
			// their actors uncalled.
			share := *maxReq / int64(*conc)
			if int64(w) < *maxReq%int64(*conc) {
				share++
			}
			local := make([]time.Duration, 0, min(share, 1<<16))
			localCodes := map[nola.Code]int64{}
			for k := int64(0); runCtx.Err() == nil && k < share; k++ {
				t0 := time.Now()
				_, err := c.Invoke(runCtx, *ns, ids[k%int64(len(ids))], *typ, *op, []byte(*payload))
				if runCtx.Err() != nil {
					break // cut by the end of the run: not a failure
				}
				local = append(local, time.Since(t0))
				if err != nil {
					failed.Add(1)
					localCodes[nola.CodeOf(err)]++
				}
				done.Add(1)
			}
			mu.Lock()
			lats = append(lats, local...)
			for k, v := range localCodes {
				codes[k] += v
			}
			mu.Unlock()
		}()
	}
	finished := make(chan struct{}) // the callers are done
	var progress sync.WaitGroup
	if !*quiet {
		progress.Add(1)
		go func() {
			defer progress.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			last := int64(0)
			for {
				select {
				case <-finished:
					return
				case <-tick.C:
					n := done.Load()
					fmt.Fprintf(stderr, "  %5.1fs  %9d calls  %8d/s  %d failed\n", time.Since(start).Seconds(), n, n-last, failed.Load())
					last = n
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	progress.Wait()
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	n := done.Load()
	fmt.Fprintf(stdout, "%d calls in %v with %d callers over %d server(s): %.0f calls/s\n",
		n, elapsed.Round(time.Millisecond), *conc, len(clients), float64(n)/elapsed.Seconds())
	fmt.Fprintf(stdout, "latency p50 %v  p90 %v  p99 %v  max %v\n", pct(0.50), pct(0.90), pct(0.99), pct(1))
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(stdout, "%d failed: %v\n", f, codes)
		return fmt.Errorf("%d of %d calls failed", f, n)
	}
	return nil
}
