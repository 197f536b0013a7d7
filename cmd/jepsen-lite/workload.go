package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
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
	Key     string `json:"key,omitempty"` // map key (kvmap)
	Arg     string `json:"arg,omitempty"` // value written (kvmap put)
	Server  string `json:"server"`
	Via     string `json:"via,omitempty"` // the caller actor, for actor→actor calls
	Start   int64  `json:"start_ns"`
	End     int64  `json:"end_ns"`
	Outcome string `json:"outcome"`
	Value   string `json:"value,omitempty"`
	Err     string `json:"err,omitempty"`
}

// wasmType is the actor type (the module ID) of the WASM durable counter,
// uploaded from wasmModule before the workload starts.
const (
	wasmType   = "kvcounter-wasm"
	wasmModule = "wasm/guests/c/kvcounter.wasm"
)

// mapKeys are the keys of every KV map actor (few, for contention).
var mapKeys = []string{"a", "b", "c"}

type actorRef struct{ typ, id string }

func (a actorRef) String() string { return a.typ + "/" + a.id }

// durable actors are checked for lost acknowledged writes (not the
// deletable ones: a delete legitimately drops what was acknowledged).
func (a actorRef) durable() bool { return a.typ != "counter" && !a.deletable() }

// deletable actors ("kvcounter/dN") are also deleted by the workload, and
// recreated empty by the next typed call; porcupine's counter model checks
// that nothing of an old life is seen after a delete.
func (a actorRef) deletable() bool { return a.typ == "kvcounter" && strings.HasPrefix(a.id, "d") }

// counter: the actor is a counter (inc/get), durable or in memory.
func (a actorRef) counter() bool { return a.typ != "kvmap" }

func (a actorRef) kind() linearizability.Kind {
	switch a.typ {
	case "kvcounter", wasmType:
		return linearizability.Counter
	case "kvmap":
		return linearizability.Register
	}
	return linearizability.CounterWithReset
}

// objects are the history objects of a: one per key for a map (a map of
// registers whose operations each touch one key is linearizable iff
// every key is: linearizability is local).
func (a actorRef) objects() []string {
	if a.typ != "kvmap" {
		return []string{a.String()}
	}
	var out []string
	for _, k := range mapKeys {
		out = append(out, a.String()+"/"+k)
	}
	return out
}

type workload struct {
	t0        time.Time
	servers   []*server
	clients   []*httpapi.Client
	actors    []actorRef // checked actors
	picks     []actorRef // the actors clients pick from (not the fence actor)
	callers   []string   // caller actors (actor→actor calls)
	tickers   []string   // ticker actors (timers; checked by the oracle only)
	greeters  []string   // greeter actors (creation arguments; answers checked)
	timeout   time.Duration
	callRatio float64

	mu   sync.Mutex
	hist linearizability.History
	ops  []opRecord
}

func newWorkload(t0 time.Time, servers []*server, hot int, timeout time.Duration, wasm bool) *workload {
	w := &workload{t0: t0, servers: servers, timeout: timeout, callRatio: 0.2}
	for _, s := range servers {
		w.clients = append(w.clients, httpapi.NewClient(s.clientURL(), ""))
	}
	for i := range hot {
		n := strconv.Itoa(i)
		w.actors = append(w.actors, actorRef{"counter", "c" + n}, actorRef{"kvcounter", "k" + n}, actorRef{"kvmap", "m" + n}, actorRef{"kvcounter", "d" + n})
		if wasm {
			w.actors = append(w.actors, actorRef{wasmType, "w" + n})
		}
		w.callers = append(w.callers, "x"+n)
		w.tickers = append(w.tickers, "t"+n)
		w.greeters = append(w.greeters, "g"+n)
	}
	w.picks = slices.Clone(w.actors)
	return w
}

// uploadModule uploads the WASM counter module through any server that
// answers (before the faults start).
func (w *workload) uploadModule(ctx context.Context, wasm []byte) error {
	var err error
	for range 3 {
		for _, c := range w.clients {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _, err = c.PutModule(cctx, namespace, wasmType, wasm)
			cancel()
			if err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("uploading the WASM module %s: %w", wasmModule, err)
}

func (w *workload) close() {
	for _, c := range w.clients {
		c.Close()
	}
}

func (w *workload) now() int64 { return int64(time.Since(w.t0)) }

// call invokes op on a through server si (directly, or via a caller actor)
// and records it in the history.
func (w *workload) call(ctx context.Context, client, si int, a actorRef, op, key, arg, via string) opRecord {
	obj := a.String()
	var payload []byte
	if key != "" {
		obj += "/" + key
		payload = []byte(key)
		if op == "put" {
			payload = []byte(key + "=" + arg)
		}
	}
	w.mu.Lock()
	p := w.hist.Call(client, obj, a.kind(), op, arg, w.now())
	w.mu.Unlock()
	rec := opRecord{Client: client, Actor: a.String(), Op: op, Key: key, Arg: arg, Server: w.servers[si].id, Via: via}
	rec.Start = int64(time.Since(w.t0))
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	var (
		b   []byte
		err error
	)
	switch {
	case op == "delete":
		err = w.clients[si].DeleteActor(cctx, namespace, a.id)
	case via == "":
		b, err = w.clients[si].Invoke(cctx, namespace, a.id, a.typ, op, payload)
	default:
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
	case op == "delete" && (err == nil || nola.CodeOf(err) == nola.CodeNotFound):
		// delete → ok (it existed) or ∅ (it did not).
		rec.Outcome, rec.Value = outOK, map[bool]string{true: "ok"}[err == nil]
		p.Ok(rec.Value, err == nil, end, info)
	case err == nil:
		rec.Outcome, rec.Value = outOK, string(b)
		// A map get answers nothing for a key never written.
		p.Ok(string(b), !(a.typ == "kvmap" && op == "get" && len(b) == 0), end, info)
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

// tickerPeriod is the period of the ticker actors' timers: their ticks
// are timer executions the activation oracle checks (a timer of a dropped
// activation must never fire: TimerIgnoresFence).
const tickerPeriod = "200ms"

// callTicker starts (re-arms) or reads a ticker. Ticks live in memory and
// have no model: these calls feed availability and the oracle, not
// porcupine.
func (w *workload) callTicker(ctx context.Context, client, si int, id string, start bool) {
	op, payload := "ticks", []byte(nil)
	if start {
		op, payload = "start", []byte(tickerPeriod)
	}
	rec := opRecord{Client: client, Actor: "ticker/" + id, Op: op, Server: w.servers[si].id, Start: w.now()}
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	b, err := w.clients[si].Invoke(cctx, namespace, id, "ticker", op, payload)
	cancel()
	w.record(rec, b, err)
}

// greeterArgs begins greeter id's creation arguments.
func greeterArgs(id string) string { return "args-of-" + id }

// greeterCallArgs are the creation arguments one call of greeter id
// passes: unique per call, so that an answer names the call that created
// the actor (the actor is never deleted: its one life keeps them, and
// every answer of its "hello" must name the same ones; see greeterLife).
func greeterCallArgs(id string, client, seq int) string {
	return fmt.Sprintf("%s/%d.%d", greeterArgs(id), client, seq)
}

// callGreeter calls a greeter, passing creation arguments of its own
// (used only if this call creates it).
func (w *workload) callGreeter(ctx context.Context, client, seq, si int, id string) {
	args := greeterCallArgs(id, client, seq)
	rec := opRecord{Client: client, Actor: "greeter/" + id, Op: "hello", Arg: args, Server: w.servers[si].id, Start: w.now()}
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	b, err := w.clients[si].InvokeCreating(cctx, namespace, id, "greeter", "hello", nil, []byte(args))
	cancel()
	w.record(rec, b, err)
}

// callWorker calls the stateless sha256 worker: no linearizability claim,
// only that an answer is the right one.
func (w *workload) callWorker(ctx context.Context, client, si int, payload string) {
	rec := opRecord{Client: client, Actor: "worker/sha256", Op: "hash", Arg: payload, Server: w.servers[si].id, Start: w.now()}
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	b, err := w.clients[si].CallWorker(cctx, namespace, "sha256", "hash", []byte(payload))
	cancel()
	w.record(rec, b, err)
}

// record classifies a call that has no history object and logs it.
func (w *workload) record(rec opRecord, b []byte, err error) {
	rec.End = w.now()
	switch {
	case err == nil:
		rec.Outcome, rec.Value = outOK, string(b)
	case nola.IsRetryable(err):
		rec.Outcome, rec.Err = outFail, err.Error()
	default:
		rec.Outcome, rec.Err = outIndet, err.Error()
	}
	w.mu.Lock()
	w.ops = append(w.ops, rec)
	w.mu.Unlock()
}

// run drives one client until ctx ends: hot actors, random servers,
// incs mostly, some gets, some through caller actors.
func (w *workload) run(ctx context.Context, client int, seed uint64, think time.Duration) {
	rng := rand.New(rand.NewPCG(seed, uint64(client)))
	for seq := 0; ctx.Err() == nil; seq++ {
		if rng.Float64() < 0.04 {
			// A ticker: mostly re-arm it, so that a moved one ticks again.
			w.callTicker(ctx, client, rng.IntN(len(w.servers)), w.tickers[rng.IntN(len(w.tickers))], rng.Float64() < 0.7)
			continue
		}
		if r := rng.Float64(); r < 0.06 {
			si := rng.IntN(len(w.servers))
			if r < 0.03 {
				w.callGreeter(ctx, client, seq, si, w.greeters[rng.IntN(len(w.greeters))])
			} else {
				w.callWorker(ctx, client, si, fmt.Sprintf("%d.%d", client, seq))
			}
			continue
		}
		a := w.picks[rng.IntN(len(w.picks))]
		op, key, arg, via := "inc", "", "", ""
		if r := rng.Float64(); r < 0.2 {
			op = "get"
		} else if a.deletable() && r < 0.28 {
			op = "delete"
		}
		if a.counter() {
			if op != "delete" && rng.Float64() < w.callRatio {
				via = w.callers[rng.IntN(len(w.callers))]
			}
		} else {
			key = mapKeys[rng.IntN(len(mapKeys))]
			op = "get"
			if rng.Float64() < 0.6 {
				// Unique values: a read names the one write it saw.
				op, arg = "put", fmt.Sprintf("%d.%d", client, seq)
			}
		}
		w.call(ctx, client, rng.IntN(len(w.servers)), a, op, key, arg, via)
		if think > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(think):
			}
		}
	}
}

// finalReads reads every durable object (counter, map key) after the
// faults healed, retrying through every server until one answers (bounded
// by limit). The reads join the history; they feed the lost-write check.
func (w *workload) finalReads(ctx context.Context, client int, limit time.Duration) (map[string]string, error) {
	out := map[string]string{}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var errs []error
	for _, a := range w.actors {
		if !a.durable() {
			continue
		}
		keys := []string{""}
		if !a.counter() {
			keys = mapKeys
		}
		for _, k := range keys {
			obj := a.String()
			if k != "" {
				obj += "/" + k
			}
			var last opRecord
			for i := 0; ctx.Err() == nil; i++ {
				last = w.call(ctx, client, i%len(w.servers), a, "get", k, "", "")
				if last.Outcome == outOK {
					out[obj] = last.Value
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			if _, ok := out[obj]; !ok {
				errs = append(errs, fmt.Errorf("%s: no final read within %v (last: %s)", obj, limit, last.Err))
			}
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
