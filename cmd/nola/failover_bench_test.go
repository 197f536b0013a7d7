package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
)

// BenchmarkFailover measures G3 on real processes: the time from SIGKILL of
// the server hosting an actor to the first successful call of that actor
// through a survivor. One iteration is one trial; run with -benchtime=10x.
// Reports p50 and max over the trials.
//
//	go test ./cmd/nola -run '^$' -bench Failover -benchtime=10x
func BenchmarkFailover(b *testing.B) {
	const ttl = 3 * time.Second
	endpoints := startEtcdCluster(b, 1)
	survivor := startServe(b, "survivor", endpoints, ttl)
	sc := httpapi.NewClient(survivor.url, "")
	defer sc.Close()
	var times []time.Duration
	for i := 0; b.Loop(); i++ {
		victim := startServe(b, fmt.Sprintf("victim%d", i), endpoints, ttl)
		vc := httpapi.NewClient(victim.url, "")
		// Create actors through the victim until one lands on it.
		id := ""
		for j := 0; j < 50 && id == ""; j++ {
			cand := fmt.Sprintf("t%d-%d", i, j)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := vc.Invoke(ctx, "failover", cand, "counter", "inc", nil); err != nil {
				b.Fatal(err)
			}
			list, err := vc.ListActors(ctx, "failover", "", 1000)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			for _, a := range list.Actors {
				if a.ID == cand && a.Owner == victim.id {
					id = cand
				}
			}
		}
		vc.Close()
		if id == "" {
			b.Fatal("no actor landed on the victim")
		}
		killed := time.Now()
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		<-victim.done
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := sc.Invoke(ctx, "failover", id, "counter", "inc", nil)
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 30*time.Second {
				b.Fatalf("actor %s unreachable 30s after SIGKILL: %v", id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		times = append(times, time.Since(killed))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(ttl.Milliseconds()), "ttl-ms")
}
