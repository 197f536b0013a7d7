package model

import (
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"sync"
	"time"
)

// System is a finite transition system the checker explores. S must be a
// plain value type (fixed-size arrays, no pointers): states are copied,
// hashed with maphash.Comparable and stored only as hashes.
type System[S comparable, A any] interface {
	// Init returns the initial state.
	Init() S
	// Successors calls emit once per transition from s, in a deterministic
	// order. viol names a safety property the transition itself breaks
	// ("" if none): properties of an event, such as "a commit was applied
	// whose fence no longer held", are checked on the transition.
	Successors(s *S, emit func(a A, t *S, viol string))
	// Canon returns the representative of s's symmetry class: equal for
	// states that differ only by a permutation of server or actor
	// identities.
	Canon(s *S) S
	// Invariant names a safety property s breaks ("" if none).
	Invariant(s *S) string
}

// Options steer one exploration.
type Options[S comparable, A any] struct {
	// Progress receives a line every ProgressEvery (nil: silent).
	Progress      io.Writer
	ProgressEvery time.Duration
	// StopAtViolation ends the search at the first violation (its trace is
	// the shortest: BFS).
	StopAtViolation bool
	// MaxStates aborts the search (Result.Truncated) beyond this many
	// distinct states; 0: no bound. The scopes in Scopes never hit it.
	MaxStates int
	// Visit, if set, is called once per distinct state (canonical), with
	// its index and the worker (0 ≤ worker < Workers) calling it; used by
	// the liveness check. Calls with different workers run concurrently.
	Visit func(worker int, idx uint32, s *S)
	// Label, if set, is called once per transition with its action, the
	// (canonical) source state, the target state before canonicalisation
	// and the source's BFS depth; the reachability check uses it. It is
	// called from the worker goroutines, concurrently.
	Label func(a A, from, to *S, depth int)
	// Workers expand each batch of the frontier in parallel (0:
	// GOMAXPROCS). The result does not depend on it: the merge, which
	// numbers new states, takes the workers' candidates in frontier order.
	Workers int
}

// WorkerCount is the number of workers Explore uses for Options.Workers
// = n.
func WorkerCount(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// batchSize is how many frontier states the workers expand between two
// merges: it bounds the candidates held at once.
const batchSize = 1 << 14

// Result is what an exploration found.
type Result[S comparable, A any] struct {
	States, Transitions int64
	// Depth is the length of the longest shortest path from the initial
	// state (BFS levels - 1).
	Depth     int
	Wall      time.Duration
	PeakBytes uint64
	Truncated bool

	// Violation is the first broken property ("" if none), Trace the
	// shortest run to it.
	Violation string
	Trace     []Step[S, A]
}

// Step is one transition of a counterexample: the action and the state it
// led to (concrete, with identities as in the initial state, not
// canonicalised).
type Step[S comparable, A any] struct {
	Action A
	State  S
}

type key [2]uint64

// checker holds the visited set: a 128-bit hash per canonical state
// (two independent 64-bit maphashes; a collision, which would hide a
// state, has probability about n²/2¹²⁹ — below 10⁻²⁵ for 10⁸ states), and
// per state its BFS parent and which successor of the parent it is, so that
// a counterexample is rebuilt by replay instead of storing states.
type checker[S comparable, A any] struct {
	sys            System[S, A]
	seed1, seed2   maphash.Seed
	visited        map[key]uint32
	parent         []uint32
	succIdx        []uint16
	peak           uint64
	lastMem        time.Time
	transitionsAll int64
}

func (c *checker[S, A]) hash(s *S) key {
	return key{maphash.Comparable(c.seed1, *s), maphash.Comparable(c.seed2, *s)}
}

func (c *checker[S, A]) sampleMem(force bool) {
	if !force && time.Since(c.lastMem) < 500*time.Millisecond {
		return
	}
	c.lastMem = time.Now()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > c.peak {
		c.peak = ms.HeapInuse
	}
}

// Explore runs a breadth-first search of sys from its initial state over
// canonical states. Every reachable state is visited once; the invariant is
// checked in each, and each transition's own check on each transition.
func Explore[S comparable, A any](sys System[S, A], opts Options[S, A]) Result[S, A] {
	start := time.Now()
	c := &checker[S, A]{sys: sys, seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), visited: map[key]uint32{}}
	var res Result[S, A]
	init := sys.Init()
	init = sys.Canon(&init)
	c.visited[c.hash(&init)] = 0
	c.parent = append(c.parent, 0)
	c.succIdx = append(c.succIdx, 0)
	if opts.Visit != nil {
		opts.Visit(0, 0, &init)
	}
	if v := sys.Invariant(&init); v != "" {
		res.Violation = v
		return c.finish(res, start)
	}
	type item struct {
		s   S
		idx uint32
	}
	// A candidate is one transition of a frontier state, found by a
	// worker: its violation, or its canonical target if that was not
	// visited before the batch began (the target's invariant checked).
	type cand struct {
		s    S
		h    key
		from uint32
		k    uint16
		viol string // the transition's own
		inv  string // the target's invariant
	}
	workers := WorkerCount(opts.Workers)
	// expand runs in worker goroutines: Successors, Canon, hashing and
	// the invariant are pure, and the visited set is only read (the merge
	// below, which writes it, runs between batches).
	expand := func(items []item, depth int, out *[]cand, trans *int64) {
		for fi := range items {
			it := &items[fi]
			k := 0
			c.sys.Successors(&it.s, func(a A, t *S, viol string) {
				k++
				*trans++
				if viol != "" {
					*out = append(*out, cand{from: it.idx, k: uint16(k - 1), viol: viol})
					return
				}
				if opts.Label != nil {
					opts.Label(a, &it.s, t, depth)
				}
				ct := sys.Canon(t)
				h := c.hash(&ct)
				if _, seen := c.visited[h]; seen {
					return
				}
				*out = append(*out, cand{s: ct, h: h, from: it.idx, k: uint16(k - 1), inv: sys.Invariant(&ct)})
			})
		}
	}
	frontier := []item{{init, 0}}
	var next []item
	lastProgress := time.Now()
	var lastStates int64
	depth := 0
	violAt, violSucc := uint32(0), -1
	outs := make([][]cand, workers)
	trans := make([]int64, workers)
	for len(frontier) > 0 && res.Violation == "" {
		next = next[:0]
		for b := 0; b < len(frontier) && res.Violation == "" && !res.Truncated; b += batchSize {
			batch := frontier[b:min(b+batchSize, len(frontier))]
			nextAt := len(next)
			// Contiguous chunks, merged in order: the same candidates in
			// the same order as one worker would produce.
			chunk := (len(batch) + workers - 1) / workers
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				lo, hi := min(w*chunk, len(batch)), min((w+1)*chunk, len(batch))
				outs[w], trans[w] = outs[w][:0], 0
				if lo == hi {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					expand(batch[lo:hi], depth, &outs[w], &trans[w])
				}()
			}
			wg.Wait()
			for w := 0; w < workers && res.Violation == "" && !res.Truncated; w++ {
				c.transitionsAll += trans[w]
				for ci := range outs[w] {
					cd := &outs[w][ci]
					if cd.viol != "" {
						res.Violation, violAt, violSucc = cd.viol, cd.from, int(cd.k)
						break
					}
					if _, seen := c.visited[cd.h]; seen {
						continue // found twice within the batch
					}
					if opts.MaxStates > 0 && len(c.parent) >= opts.MaxStates {
						res.Truncated = true
						break
					}
					idx := uint32(len(c.parent))
					c.visited[cd.h] = idx
					c.parent = append(c.parent, cd.from)
					c.succIdx = append(c.succIdx, cd.k)
					if cd.inv != "" {
						res.Violation, violAt, violSucc = cd.inv, idx, -1
						break
					}
					next = append(next, item{cd.s, idx})
				}
			}
			if opts.Visit != nil {
				// The batch's new states, in contiguous chunks.
				fresh := next[nextAt:]
				chunk := (len(fresh) + workers - 1) / workers
				var wg sync.WaitGroup
				for w := 0; w < workers; w++ {
					lo, hi := min(w*chunk, len(fresh)), min((w+1)*chunk, len(fresh))
					if lo == hi {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := lo; i < hi; i++ {
							opts.Visit(w, fresh[i].idx, &fresh[i].s)
						}
					}()
				}
				wg.Wait()
			}
			if opts.Progress != nil && time.Since(lastProgress) >= opts.ProgressEvery {
				el := time.Since(lastProgress).Seconds()
				n := int64(len(c.parent))
				c.sampleMem(true)
				fmt.Fprintf(opts.Progress, "  %10d states  %9.0f states/s  depth %3d  queue %9d  heap %5.0f MiB\n",
					n, float64(n-lastStates)/el, depth, len(frontier)-b-len(batch)+len(next), float64(c.peak)/(1<<20))
				lastProgress, lastStates = time.Now(), n
			}
			c.sampleMem(false)
		}
		if len(next) > 0 {
			depth++
		}
		frontier, next = next, frontier
		if res.Truncated {
			break
		}
	}
	res.Depth = depth
	if res.Violation != "" {
		res.Trace = c.rebuild(violAt, violSucc)
	}
	return c.finish(res, start)
}

func (c *checker[S, A]) finish(res Result[S, A], start time.Time) Result[S, A] {
	c.sampleMem(true)
	res.States = int64(len(c.parent))
	res.Transitions = c.transitionsAll
	res.Wall = time.Since(start)
	res.PeakBytes = c.peak
	return res
}

// rebuild returns the concrete run from the initial state to state idx,
// then (succ >= 0) along that state's succ-th transition. It replays
// canonical successors to find each step's target class, then follows, from
// the concrete state, the first transition into that class, so the trace
// keeps the identities of the initial state.
func (c *checker[S, A]) rebuild(idx uint32, succ int) []Step[S, A] {
	var path []uint32
	for i := idx; i != 0; i = c.parent[i] {
		path = append(path, i)
	}
	// Canonical chain, forwards.
	canon := c.sys.Init()
	canon = c.sys.Canon(&canon)
	concrete := c.sys.Init()
	var steps []Step[S, A]
	follow := func(wantIdx int, wantHash *key) bool {
		// Find the wantIdx-th successor of canon (its class), then the first
		// concrete successor in that class.
		var target key
		var nextCanon S
		if wantHash == nil {
			k := 0
			c.sys.Successors(&canon, func(_ A, t *S, _ string) {
				if k == wantIdx {
					nextCanon = c.sys.Canon(t)
					target = c.hash(&nextCanon)
				}
				k++
			})
		} else {
			target = *wantHash
		}
		found := false
		c.sys.Successors(&concrete, func(a A, t *S, _ string) {
			if found {
				return
			}
			ct := c.sys.Canon(t)
			if c.hash(&ct) == target {
				found = true
				steps = append(steps, Step[S, A]{Action: a, State: *t})
				concrete = *t
				canon = ct
			}
		})
		return found
	}
	for i := len(path) - 1; i >= 0; i-- {
		if !follow(int(c.succIdx[path[i]]), nil) {
			panic("model: counterexample replay lost its way (nondeterministic Successors?)")
		}
	}
	if succ >= 0 {
		// The violating transition itself: the succ-th from canon, mapped
		// onto the concrete state by matching the violation.
		var viol string
		k := 0
		var target S
		c.sys.Successors(&canon, func(_ A, t *S, v string) {
			if k == succ {
				viol, target = v, c.sys.Canon(t)
			}
			k++
		})
		th := c.hash(&target)
		done := false
		c.sys.Successors(&concrete, func(a A, t *S, v string) {
			if done || v != viol {
				return
			}
			ct := c.sys.Canon(t)
			if c.hash(&ct) == th {
				done = true
				steps = append(steps, Step[S, A]{Action: a, State: *t})
			}
		})
	}
	return steps
}
