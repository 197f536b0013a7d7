package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/linearizability"
	"github.com/nolaproject/nola/nola"
)

const namespace = "jl"

// Outcomes of a call.
const (
	outOK    = "ok"
	outFail  = "fail"  // certainly did not happen (retryable error)
	outIndet = "indet" // unknown: timeout, cut connection, other errors
)

// opRecord is one call as the report shows it.
type opRecord struct {
	Client  int    `json:"client"`
	Actor   string `json:"actor"` // type/id
	Op      string `json:"op"`
	Server  string `json:"server"`
	Via     string `json:"via,omitempty"` // the caller actor, for actor→actor calls
	Start   int64  `json:"start_ns"`
	End     int64  `json:"end_ns"`
	Outcome string `json:"outcome"`
	Value   string `json:"value,omitempty"`
	Err     string `json:"err,omitempty"`
}

type actorRef struct{ typ, id string }

func (a actorRef) String() string { return a.typ + "/" + a.id }

func (a actorRef) kind() linearizability.Kind {
	if a.typ == "kvcounter" {
		return linearizability.Counter
	}
	return linearizability.CounterWithReset
}

type workload struct {
	t0        time.Time
	servers   []*server
	clients   []*httpapi.Client
	actors    []actorRef // checked actors
	callers   []string   // caller actors (actor→actor calls)
	timeout   time.Duration
	callRatio float64

	mu   sync.Mutex
	hist linearizability.History
	ops  []opRecord
}

func newWorkload(t0 time.Time, servers []*server, hot int, timeout time.Duration) *workload {
	w := &workload{t0: t0, servers: servers, timeout: timeout, callRatio: 0.2}
	for _, s := range servers {
		w.clients = append(w.clients, httpapi.NewClient(s.clientURL(), ""))
	}
	for i := range hot {
		w.actors = append(w.actors, actorRef{"counter", "c" + strconv.Itoa(i)}, actorRef{"kvcounter", "k" + strconv.Itoa(i)})
		w.callers = append(w.callers, "x"+strconv.Itoa(i))
	}
	return w
}

func (w *workload) close() {
	for _, c := range w.clients {
		c.Close()
	}
}

func (w *workload) now() int64 { return int64(time.Since(w.t0)) }

// call invokes op on a through server si (directly, or via a caller actor)
// and records it in the history.
func (w *workload) call(ctx context.Context, client, si int, a actorRef, op, via string) opRecord {
	w.mu.Lock()
	p := w.hist.Call(client, a.String(), a.kind(), op, "", w.now())
	w.mu.Unlock()
	rec := opRecord{Client: client, Actor: a.String(), Op: op, Server: w.servers[si].id, Via: via}
	rec.Start = int64(time.Since(w.t0))
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	var (
		b   []byte
		err error
	)
	if via == "" {
		b, err = w.clients[si].Invoke(cctx, namespace, a.id, a.typ, op, nil)
	} else {
		b, err = w.clients[si].Invoke(cctx, namespace, via, "caller", "call", []byte(a.typ+"/"+a.id+"/"+op))
	}
	cancel()
	end := w.now()
	rec.End = end
	info := rec.Server
	if via != "" {
		info += " via " + via
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		rec.Outcome, rec.Value = outOK, string(b)
		p.Ok(string(b), true, end, info)
	case nola.IsRetryable(err):
		rec.Outcome, rec.Err = outFail, err.Error()
		p.Failed(end, info+": "+err.Error())
	default:
		rec.Outcome, rec.Err = outIndet, err.Error()
		p.Indeterminate(end, info+": "+err.Error())
	}
	w.ops = append(w.ops, rec)
	return rec
}

// run drives one client until ctx ends: hot actors, random servers,
// incs mostly, some gets, some through caller actors.
func (w *workload) run(ctx context.Context, client int, seed uint64, think time.Duration) {
	rng := rand.New(rand.NewPCG(seed, uint64(client)))
	for ctx.Err() == nil {
		a := w.actors[rng.IntN(len(w.actors))]
		op := "inc"
		if rng.Float64() < 0.2 {
			op = "get"
		}
		via := ""
		if rng.Float64() < w.callRatio {
			via = w.callers[rng.IntN(len(w.callers))]
		}
		w.call(ctx, client, rng.IntN(len(w.servers)), a, op, via)
		if think > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(think):
			}
		}
	}
}

// finalReads reads every durable actor after the faults healed, retrying
// through every server until one answers (bounded by limit). The reads
// join the history; they feed the lost-write check.
func (w *workload) finalReads(ctx context.Context, client int, limit time.Duration) (map[string]int64, error) {
	out := map[string]int64{}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var errs []error
	for _, a := range w.actors {
		if a.typ != "kvcounter" {
			continue
		}
		var last opRecord
		for i := 0; ctx.Err() == nil; i++ {
			last = w.call(ctx, client, i%len(w.servers), a, "get", "")
			if last.Outcome == outOK {
				v, err := strconv.ParseInt(last.Value, 10, 64)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: final read %q", a, last.Value))
				}
				out[a.String()] = v
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if _, ok := out[a.String()]; !ok {
			errs = append(errs, fmt.Errorf("%s: no final read within %v (last: %s)", a, limit, last.Err))
		}
	}
	return out, errors.Join(errs...)
}

// owners maps actor IDs to their owning server, asking any server that
// answers within a second.
func (w *workload) owners(ctx context.Context, skip string) map[string]string {
	for i, c := range w.clients {
		if w.servers[i].id == skip {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		list, err := c.ListActors(cctx, namespace, "", 1000)
		cancel()
		if err != nil {
			continue
		}
		m := map[string]string{}
		for _, a := range list.Actors {
			m[a.ID] = a.Owner
		}
		return m
	}
	return nil
}
