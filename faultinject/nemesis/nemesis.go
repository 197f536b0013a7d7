package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Fault is one injectable fault on one target.
type Fault interface {
	// Kind names the fault ("kill", "pause", "partition-etcd", …).
	Kind() string
	// Target names what it hits ("s1", "etcd2", …).
	Target() string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// FuncFault is a Fault made of two functions.
type FuncFault struct {
	K, T     string
	StartFn  func(ctx context.Context) error
	StopFn   func(ctx context.Context) error
	Resource []string // what it holds exclusively (processes, links)
	// MinHold, if set, is the shortest hold Plan gives it (a pause must
	// outlast the lease).
	MinHold time.Duration
}

func (f *FuncFault) Kind() string                    { return f.K }
func (f *FuncFault) Target() string                  { return f.T }
func (f *FuncFault) Start(ctx context.Context) error { return f.StartFn(ctx) }
func (f *FuncFault) Stop(ctx context.Context) error  { return f.StopFn(ctx) }

// Kill is kill -9 of a process; Stop restarts it (same ID, same data).
func Kill(kind string, p *Process) *FuncFault {
	return &FuncFault{K: kind, T: p.Name, Resource: []string{p.Name},
		StartFn: func(context.Context) error { return p.Kill() },
		StopFn:  p.Start,
	}
}

// Pause is SIGSTOP of a process group; Stop sends SIGCONT.
func Pause(kind string, p *Process) *FuncFault {
	return &FuncFault{K: kind, T: p.Name, Resource: []string{p.Name},
		StartFn: func(context.Context) error { return p.Signal(syscall.SIGSTOP) },
		StopFn:  func(context.Context) error { return p.Signal(syscall.SIGCONT) },
	}
}

// Cut partitions every proxy in links (one or more links) until Stop.
func Cut(kind, target string, links []*Proxy, resources ...string) *FuncFault {
	return &FuncFault{K: kind, T: target, Resource: resources,
		StartFn: func(context.Context) error {
			for _, l := range links {
				l.SetCut(true)
			}
			return nil
		},
		StopFn: func(context.Context) error {
			for _, l := range links {
				l.SetCut(false)
			}
			return nil
		},
	}
}

// Slow adds latency d to links until Stop.
func Slow(kind, target string, links []*Proxy, d time.Duration, resources ...string) *FuncFault {
	return &FuncFault{K: kind, T: target, Resource: resources,
		StartFn: func(context.Context) error {
			for _, l := range links {
				l.SetDelay(d)
			}
			return nil
		},
		StopFn: func(context.Context) error {
			for _, l := range links {
				l.SetDelay(0)
			}
			return nil
		},
	}
}

// Lossy resets connections on links with probability prob per chunk.
func Lossy(kind, target string, links []*Proxy, prob float64, resources ...string) *FuncFault {
	return &FuncFault{K: kind, T: target, Resource: resources,
		StartFn: func(context.Context) error {
			for _, l := range links {
				l.SetLoss(prob)
			}
			return nil
		},
		StopFn: func(context.Context) error {
			for _, l := range links {
				l.SetLoss(0)
			}
			return nil
		},
	}
}

// Step is one planned fault: Fault index into the candidate list, started
// At after the schedule begins and held for Hold.
type Step struct {
	At, Hold time.Duration
	Fault    int
}

// Plan draws a schedule from seed: over span, faults start at random
// times (mean gap `gap`), each held for a random time in [minHold,
// maxHold]; at most `overlap` faults are active at once and two active
// faults never share a resource. The same seed and inputs give the same
// plan.
func Plan(seed uint64, span, gap, minHold, maxHold time.Duration, overlap int, candidates []*FuncFault) []Step {
	rng := rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908))
	var steps []Step
	type active struct {
		end time.Duration
		res []string
	}
	var live []active
	at := gap / 2
	for at < span && len(candidates) > 0 {
		hold := minHold + time.Duration(rng.Int64N(int64(maxHold-minHold)+1))
		if at+hold > span {
			hold = span - at
		}
		live = slices.DeleteFunc(live, func(a active) bool { return a.end <= at })
		pick := rng.IntN(len(candidates))
		if mh := candidates[pick].MinHold; hold < mh {
			hold = min(mh, span-at)
		}
		ok := len(live) < overlap
		for _, a := range live {
			for _, r := range candidates[pick].Resource {
				if slices.Contains(a.res, r) {
					ok = false
				}
			}
		}
		if ok && hold > 0 {
			steps = append(steps, Step{At: at, Hold: hold, Fault: pick})
			live = append(live, active{end: at + hold, res: candidates[pick].Resource})
		}
		at += gap/2 + time.Duration(rng.Int64N(int64(gap)+1))
	}
	return steps
}

// Event is a fault as it happened: offsets from the schedule's start.
type Event struct {
	Kind     string        `json:"kind"`
	Target   string        `json:"target"`
	Start    time.Duration `json:"start_ns"`
	End      time.Duration `json:"end_ns"`
	StartErr string        `json:"start_err,omitempty"`
	StopErr  string        `json:"stop_err,omitempty"`
}

// Run executes steps against candidates, with t0 as the time origin of
// Event offsets, and returns the log. Cancelling ctx stops every active
// fault at once (heals) and returns. onEvent, if set, is called at each
// start (End 0) and end.
func Run(ctx context.Context, t0 time.Time, steps []Step, candidates []*FuncFault, onEvent func(Event)) []Event {
	var (
		mu  sync.Mutex
		log []Event
		wg  sync.WaitGroup
	)
	// busy holds the resources of faults started and not yet healed: a
	// plan step starts only once its resources are free in real time (a
	// slow heal — a restart waiting for its process — must not let two
	// faults on one resource overlap).
	busy := map[string]int{}
	freed := make(chan struct{}, 1)
	isFree := func(res []string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range res {
			if busy[r] > 0 {
				return false
			}
		}
		for _, r := range res {
			busy[r]++
		}
		return true
	}
	record := func(e Event) {
		mu.Lock()
		log = append(log, e)
		mu.Unlock()
		if onEvent != nil {
			onEvent(e)
		}
	}
	for _, s := range steps {
		if d := time.Until(t0.Add(s.At)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		f := candidates[s.Fault]
		for ctx.Err() == nil && !isFree(f.Resource) {
			select {
			case <-ctx.Done():
			case <-freed:
			}
		}
		if ctx.Err() != nil {
			break
		}
		e := Event{Kind: f.Kind(), Target: f.Target(), Start: time.Since(t0)}
		if err := f.Start(ctx); err != nil {
			e.StartErr = err.Error()
		}
		// A fault may pick its target when it starts (the owner of an
		// actor): log the one it hit.
		e.Target = f.Target()
		if onEvent != nil {
			onEvent(e)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(t0.Add(s.At + s.Hold))):
			}
			// Healing must not be cut short by ctx: use a fresh bound.
			sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := f.Stop(sctx); err != nil {
				e.StopErr = err.Error()
			}
			e.End = time.Since(t0)
			record(e)
			mu.Lock()
			for _, r := range f.Resource {
				busy[r]--
			}
			mu.Unlock()
			select {
			case freed <- struct{}{}:
			default:
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(log, func(a, b Event) int { return int(a.Start - b.Start) })
	return log
}

func (e Event) String() string {
	s := fmt.Sprintf("%-16s %-8s %7.2fs → %7.2fs", e.Kind, e.Target, e.Start.Seconds(), e.End.Seconds())
	if e.StartErr != "" || e.StopErr != "" {
		s += " errors: " + e.StartErr + " " + e.StopErr
	}
	return s
}

// Switch is a fault made of one function that turns it on (Start) and
// off (Stop): an nft rule set in a namespace (Node.Cut and friends).
func Switch(kind, target string, set func(ctx context.Context, on bool) error, resources ...string) *FuncFault {
	return &FuncFault{K: kind, T: target, Resource: resources,
		StartFn: func(ctx context.Context) error { return set(ctx, true) },
		StopFn:  func(ctx context.Context) error { return set(ctx, false) },
	}
}
