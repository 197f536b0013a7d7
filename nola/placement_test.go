package nola_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
)

// blob is a Go actor that reports its size through nola.Sizer: "set n"
// makes it hold n bytes (as far as accounting knows), "spin d" runs for d
// of real time.
type blob struct{ size int64 }

func (b *blob) SizeBytes() int64 { return b.size }

func (b *blob) Invoke(_ *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "set":
		n, err := strconv.ParseInt(string(payload), 10, 64)
		if err != nil {
			return nil, err
		}
		b.size = n
	case "spin":
		d, err := time.ParseDuration(string(payload))
		if err != nil {
			return nil, err
		}
		for start := time.Now(); time.Since(start) < d; {
		}
	}
	return strconv.AppendInt(nil, b.size, 10), nil
}

func blobTypes() map[string]nola.Factory {
	types := actors.Types()
	types["blob"] = func(nola.Ref) (nola.Actor, error) { return &blob{}, nil }
	return types
}

// An actor's Sizer figure is charged to its server on every invocation —
// up, down, clamped — and uncharged when the activation goes.
func TestSizerIsCharged(t *testing.T) {
	runSim(t, 40, 1, blobTypes(), nil, func(e *simtest.Env) {
		srv := e.C.Server(0)
		base := func() int64 { return srv.Stats().MemoryBytes }
		e.MustInvoke("other", "counter", "inc", nil)
		perActivation := base() // the engine's share of one activation
		for _, c := range []struct {
			set  string
			want int64
		}{{"5000", 5000}, {"3000", 3000}, {"-7", 0}, {strconv.FormatInt(1<<50, 10), 1 << 40}, {"64", 64}} {
			e.MustInvoke("b", "blob", "set", []byte(c.set))
			if got := base() - 2*perActivation; got != c.want {
				t.Fatalf("after set %s: %d bytes charged for the blob, want %d", c.set, got, c.want)
			}
		}
		if err := srv.Shutdown(e.Ctx); err != nil {
			t.Fatal(err)
		}
		if got := base(); got != 0 {
			t.Fatalf("after shutdown %d bytes still charged", got)
		}
	})
}

// Invocation wall time is measured on the runtime's clock.
func TestBusyTimeIsMeasured(t *testing.T) {
	c := realCluster(t, 1, blobTypes())
	ctx := context.Background()
	before := c.Server(0).Stats().BusyNanos
	for range 3 {
		if _, err := c.Client().Invoke(ctx, ns, "spinner", "blob", "spin", []byte("2ms")); err != nil {
			t.Fatal(err)
		}
	}
	if got := time.Duration(c.Server(0).Stats().BusyNanos - before); got < 6*time.Millisecond {
		t.Fatalf("3 invocations of 2ms each: %v busy, want at least 6ms", got)
	}
}

// The original NOLA's bar: an actor that reports 64 MiB ends up alone on a
// server. Three servers shed relative to the cluster mean; the small
// actors that shared the big one's server are released, round by round
// (at most MaxPerRound each), and placed elsewhere on their next call; the
// big one has nowhere to go without putting another server over, so it
// stays. The loop advances virtual time one shedding interval per round
// and calls every actor, as clients would; it checks the end state, and
// how many rounds it took is logged.
func TestBigActorEndsUpAlone(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			bigActorAlone(t, seed, 0)
		})
	}
}

// With memory budgets instead of the mean: every server's budget is
// 32 MiB, so the 64 MiB actor fits nowhere and the others leave it.
func TestBigActorEndsUpAloneUnderBudget(t *testing.T) {
	bigActorAlone(t, 7, 32<<20)
}

func bigActorAlone(t *testing.T, seed uint64, budget int64) {
	const (
		small    = 30
		interval = 2 * time.Second
	)
	configure := func(_ int, cfg *nola.ServerConfig) {
		cfg.MemoryBudget = budget
		cfg.Shed = nola.ShedConfig{Interval: interval, MaxPerRound: 4}
		if budget == 0 {
			cfg.Shed.MeanFactor, cfg.Shed.MinBytes = 1.5, 1<<20
		}
	}
	runSim(t, seed, 3, blobTypes(), configure, func(e *simtest.Env) {
		callAll := func() {
			for i := range small {
				if _, _, err := e.InvokeUntil(10*time.Second, fmt.Sprint("c", i), "counter", "inc"); err != nil {
					t.Fatal(err)
				}
			}
			e.MustInvoke("big", "blob", "get", nil)
		}
		callAll()
		e.MustInvoke("big", "blob", "set", []byte(strconv.Itoa(64<<20)))
		home := e.C.Host(ns, "big")
		alone := func() (bool, int) {
			n := 0
			for i := range small {
				if e.C.Host(ns, fmt.Sprint("c", i)) == home {
					n++
				}
			}
			return n == 0, n
		}
		if ok, n := alone(); ok || n == 0 {
			t.Fatalf("big's server %d holds %d small actors at the start: the test shows nothing", home, n)
		}
		start := e.Driver.Mono()
		for round := 1; ; round++ {
			e.Sleep(interval)
			callAll()
			if h := e.C.Host(ns, "big"); h != home {
				t.Fatalf("round %d: the 64 MiB actor moved from s%d to s%d", round, home, h)
			}
			ok, n := alone()
			if ok {
				var shed int64
				for i := range 3 {
					shed += e.C.Server(i).Stats().Shed
				}
				t.Logf("alone after %d rounds (%v virtual), %d activations shed", round, e.Driver.Mono()-start, shed)
				break
			}
			if round == 20 {
				t.Fatalf("after %d rounds %d small actors still share the 64 MiB actor's server", round, n)
			}
		}
	})
}

// spread places actors of mixed sizes (drawn from seed: 3 in 4 of 4 KiB,
// 1 in 5 of 1 MiB, 1 in 20 of 16 MiB) in waves on three servers, letting a load report
// period pass between waves (placement sees sizes only through load
// reports), and returns the largest server's memory over the mean.
func spread(t *testing.T, seed uint64, p registry.PlacementPolicy) (ratio float64, bytes, counts []int64) {
	const waves, perWave = 12, 10
	sizes := []int64{4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 4 << 10, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 16 << 20}
	draw := rand.New(rand.NewPCG(seed, 1))
	simtest.Run(t, simtest.Options{Seed: seed, Servers: 3, Types: blobTypes(), TTL: simTTL, NS: ns, Placement: p}, func(e *simtest.Env) {
		n := 0
		for range waves {
			for range perWave {
				size := sizes[draw.IntN(len(sizes))]
				e.MustInvoke(fmt.Sprint("m", n), "blob", "set", []byte(strconv.FormatInt(size, 10)))
				n++
			}
			e.Sleep(simTTL / 3) // one keep-alive: every server reports its load
		}
		var total int64
		for i := range 3 {
			st := e.C.Server(i).Stats()
			bytes, counts = append(bytes, st.MemoryBytes), append(counts, st.Activations)
			total += st.MemoryBytes
		}
		ratio = float64(slices.Max(bytes)) / (float64(total) / 3)
	})
	return ratio, bytes, counts
}

// Memory-aware placement spreads memory, not just counts: over several
// draws of mixed sizes, the most loaded server holds less above the mean
// than with placement by counts alone (the bar: a lower mean excess than
// count-only placement, and at most 1.6× the mean in every draw).
// Placement cannot know a new actor's size — it learns sizes from load
// reports — so it cannot balance a burst of big actors exactly; shedding
// corrects what it gets wrong (TestBigActorEndsUpAlone).
func TestPlacementSpreadsMixedSizes(t *testing.T) {
	var defSum, cntSum float64
	const draws = 6
	for seed := uint64(1); seed <= draws; seed++ {
		def, db, dc := spread(t, seed, registry.PlacementPolicy{})
		cnt, cb, cc := spread(t, seed, registry.PlacementPolicy{Activations: 1})
		t.Logf("draw %d: default max/mean memory %.2f (bytes %v, activations %v); count-only %.2f (bytes %v, activations %v)", seed, def, db, dc, cnt, cb, cc)
		if def > 1.6 {
			t.Errorf("draw %d: memory-aware placement left a server at %.2f× the mean memory", seed, def)
		}
		defSum += def
		cntSum += cnt
	}
	t.Logf("mean max/mean memory over %d draws: default %.3f, count-only %.3f", draws, defSum/draws, cntSum/draws)
	if defSum >= cntSum {
		t.Fatalf("memory-aware placement (%.3f) spreads memory no better than count-only (%.3f)", defSum/draws, cntSum/draws)
	}
}

// Shedding on the production runtime, under concurrent callers: server 0
// has a tiny budget and sheds whenever placement (which learns its memory
// only from load reports) has put more on it; server 1 has none and takes
// what it sheds. Every call must succeed (a shed actor answers not_owner,
// retryable, and the client places it again); under -race, shedding's
// table swaps, size samples and releases race with invocations. It ends
// when enough sheds happened (or after a bounded number of calls), not
// after some time.
func TestSheddingUnderConcurrentCalls(t *testing.T) {
	c := realCluster(t, 2, blobTypes(), func(cfg *nola.ServerConfig) {
		cfg.Shed = nola.ShedConfig{Interval: 5 * time.Millisecond, MaxPerRound: 2}
		if cfg.ID == "s0" {
			cfg.MemoryBudget = 8 << 10
		}
	})
	ctx := context.Background()
	const want = 10
	sheds := func() int64 { return c.Server(0).Stats().Shed }
	const workers, actorsPer = 4, 64
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := 0; sheds() < want && i < 200_000; i++ {
				id := fmt.Sprintf("w%d-%d", w, i%actorsPer)
				if _, err := c.Client().Invoke(ctx, ns, id, "blob", "set", []byte("2048")); err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := sheds(); n < want {
		t.Fatalf("%d sheds: server 0 hardly shed", n)
	}
}

// A server that joins gets work over time, not in a stampede: two servers
// hold 30 actors each when a third joins. They shed relative to the mean
// (factor 1.2), at most MaxPerRound per shedding round each, and the
// released actors are placed on the newcomer on their next call. Checked:
// no server ever exceeds MaxPerRound releases per elapsed round (the rate
// limit; with it removed s0 sheds 16 in the first round and this fails),
// shedding stops at the low water (no server sheds below 0.9 × 1.2 × the
// mean), and the newcomer ends with a fair share.
func TestJoiningServerGetsWorkGradually(t *testing.T) {
	const (
		n        = 60
		perRound = 3
		interval = 2 * time.Second
	)
	configure := func(_ int, cfg *nola.ServerConfig) {
		cfg.Shed = nola.ShedConfig{Interval: interval, MaxPerRound: perRound, MeanFactor: 1.2, MinBytes: 1}
	}
	runSim(t, 11, 3, nil, configure, func(e *simtest.Env) {
		e.C.Crash(2)
		e.Sleep(simTTL + time.Second) // its lease expires: nothing is placed on it
		callAll := func() {
			for i := range n {
				if _, _, err := e.InvokeUntil(10*time.Second, fmt.Sprint("c", i), "counter", "inc"); err != nil {
					t.Fatal(err)
				}
			}
		}
		callAll()
		count := func(srv int) int {
			k := 0
			for i := range n {
				if e.C.Host(ns, fmt.Sprint("c", i)) == srv {
					k++
				}
			}
			return k
		}
		if a, b := count(0), count(1); a+b != n || a < 25 || b < 25 {
			t.Fatalf("before the join: %d and %d actors, want about 30 each", a, b)
		}
		if err := e.C.Restart(e.Ctx, 2); err != nil {
			t.Fatal(err)
		}
		start := e.Driver.Mono()
		var log []string
		for round := 1; round <= 15; round++ {
			e.Sleep(interval)
			callAll()
			elapsed := int64((e.Driver.Mono()-start)/interval) + 1
			for i := range 2 {
				if shed := e.C.Server(i).Stats().Shed; shed > perRound*elapsed {
					t.Fatalf("round %d: s%d shed %d activations in %d rounds, over the limit of %d per round", round, i, shed, elapsed, perRound)
				}
			}
			log = append(log, fmt.Sprintf("%d/%d/%d", count(0), count(1), count(2)))
		}
		t.Logf("actors on s0/s1/s2 after each round: %v", log)
		low := 21 // the low water 0.9 × 1.2 × the mean of 20 actors of 1 KiB, rounded down
		for i := range 2 {
			if c := count(i); c < low-1 {
				t.Errorf("s%d shed down to %d actors, below its low water of about %d", i, c, low)
			}
		}
		if c := count(2); c < n/4 {
			t.Fatalf("the new server holds %d of %d actors after 15 rounds", c, n)
		}
	})
}
