package sim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/linearizability"
	"github.com/nolaproject/nola/nola"
)

// ActorKind is one actor type the simulation can place in a cluster: how to
// create it and how clients exercise it and check its history.
//
// This is the extension point for more actor implementations: a Go actor
// is a Factory; a WASM actor is a Module (see wasm.go), whose operations
// reuse the Go twin's generator and model when it has the same semantics
// (the C counter: CounterOps and CounterWithReset). Pass a catalog in
// Options.Catalog, or extend DefaultCatalog.
type ActorKind struct {
	// Type is the actor type name: registered on every server for a Go
	// kind, the module's ID in Namespace for a WASM kind.
	Type    string
	Factory nola.Factory
	// Module, if set, makes the kind a WASM actor: it returns the module's
	// bytes, uploaded as module Type before the workload starts and run by
	// each server's wasm.Host (Factory is then unused).
	Module func() ([]byte, error)
	// Weight is the kind's relative frequency among the checked actors;
	// 0 keeps it out of the draw (helpers: callers, tickers).
	Weight int
	// Op draws one client operation on actor id; seq is unique per
	// client, for unique written values.
	Op func(r *rand.Rand, id string, client, seq int) Call
	// Final is the read issued on id (or each of its objects) after the
	// faults have healed, so that lost writes show; nil for none.
	Final func(id string) []Call
	// ViaCaller, if set, is an operation a caller actor may forward to
	// this kind (actor-to-actor calls); its result is the same.
	ViaCaller string
}

// Call is one operation as the client sends it and the history records
// it.
type Call struct {
	Operation string
	Payload   []byte
	// Object, Kind, Name and Arg are recorded in the history.
	Object string
	Kind   linearizability.Kind
	Name   string
	Arg    string
	// Decode turns a successful result into the history's value.
	Decode func(result []byte) (value string, found bool)
	// CreationArgs go with the call (Request.CreationArgs): stored if it
	// creates the actor.
	CreationArgs []byte
	// Delete makes the call a delete of the actor (Client.Delete), not
	// an invocation.
	Delete bool
}

// deletable reports whether the model of kind k checks deletes. A register
// object is one key of an actor, and a delete changes every key at once:
// a multi-object operation that per-object checking cannot judge.
func deletable(k linearizability.Kind) bool {
	return k == linearizability.Counter || k == linearizability.CounterWithReset
}

func decodeNumber(b []byte) (string, bool) { return string(b), true }

// CounterOps exercises an in-memory counter (examples/actors.Counter):
// inc returns the value before the increment; memory resets with every
// new activation.
func CounterOps(r *rand.Rand, id string, _, _ int) Call {
	op := "inc"
	if r.IntN(6) == 0 {
		op = "get"
	}
	return Call{Operation: op, Object: id, Kind: linearizability.CounterWithReset, Name: op, Decode: decodeNumber}
}

// KVCounterOps exercises a durable counter (examples/actors.KVCounter): inc
// returns the value after the increment; it never resets.
func KVCounterOps(r *rand.Rand, id string, _, _ int) Call {
	op := "inc"
	if r.IntN(4) == 0 {
		op = "get"
	}
	return Call{Operation: op, Object: id, Kind: linearizability.Counter, Name: op, Decode: decodeNumber}
}

// regKeys are the keys of every KVRegister the workload uses.
func regKeys() []string { return []string{"x", "y", "z"} }

// RegisterOps exercises a KVRegister: puts of unique values and gets on a
// few keys, each key its own register in the history.
func RegisterOps(r *rand.Rand, id string, client, seq int) Call {
	keys := regKeys()
	key := keys[r.IntN(len(keys))]
	c := Call{Object: id + "/" + key, Kind: linearizability.Register, Arg: ""}
	if r.IntN(2) == 0 {
		v := fmt.Sprintf("c%d.%d", client, seq)
		c.Operation, c.Name, c.Arg, c.Payload = "put", "put", v, []byte(key+"="+v)
		c.Decode = func(b []byte) (string, bool) { return string(b), true }
		return c
	}
	c.Operation, c.Name, c.Payload = "get", "get", []byte(key)
	c.Decode = func(b []byte) (string, bool) {
		if len(b) == 0 {
			return "", false
		}
		return string(b[1:]), true
	}
	return c
}

func registerFinal(id string) []Call {
	keys := regKeys()
	out := make([]Call, len(keys))
	for i, k := range keys {
		out[i] = Call{Operation: "get", Payload: []byte(k), Object: id + "/" + k, Kind: linearizability.Register, Name: "get",
			Decode: func(b []byte) (string, bool) {
				if len(b) == 0 {
					return "", false
				}
				return string(b[1:]), true
			}}
	}
	return out
}

// TickerOps exercises a SimTicker: arm a periodic timer, read the tick
// count, disarm. Timer-driven executions are what the oracle watches;
// the history is kept for the record only.
func TickerOps(r *rand.Rand, id string, _, _ int) Call {
	c := Call{Object: id, Kind: linearizability.Unchecked, Decode: decodeNumber}
	switch n := r.IntN(10); {
	case n < 4:
		period := time.Duration(50+r.IntN(400)) * time.Millisecond
		c.Operation, c.Payload = "arm", []byte(period.String())
	case n < 5:
		c.Operation = "disarm"
	default:
		c.Operation = "ticks"
	}
	c.Name, c.Arg = c.Operation, string(c.Payload)
	return c
}

// RelayWorker is the stateless worker of runs with Config.Workers: "call"
// with payload "<type>/<id>/<op>" invokes op on that actor from whichever
// server received the call, like a caller actor but with no activation of
// its own.
const RelayWorker = "relay"

func relay(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
	parts := strings.SplitN(string(p), "/", 3)
	if op != "call" || len(parts) != 3 {
		return nil, fmt.Errorf("relay: want call <type>/<id>/<op>, got %s %q", op, p)
	}
	return wx.Invoke(parts[1], parts[0], parts[2], nil)
}

// Catalog type names.
const (
	TypeCounter   = "counter"
	TypeKVCounter = "kvcounter"
	TypeRegister  = "kvreg"
	TypeCaller    = "caller"
	TypeTicker    = "ticker"
	// WASM kinds (module IDs): the C guests of wasm/guests/c.
	TypeWASMCounter   = "wasm-counter"
	TypeWASMKVCounter = "wasm-kvcounter"
	TypeWASMCaller    = "wasm-caller"
	TypeWASMTicker    = "wasm-ticker"
	TypeWASMKVNotify  = "wasm-kvnotify"
	TypeKVNotify      = "kvnotify"
	// Go guests (wasm/guests/go), only with Options.GoGuests.
	TypeGoGuestCounter   = "wasm-go-counter"
	TypeGoGuestKVCounter = "wasm-go-kvcounter"
)

// KVCreator is a durable counter (KV key "n", inc returning the new value,
// like examples/actors.KVCounter) whose Creator hook sets the counter to
// its creation argument. Clients create it with "0", so its history is a
// counter from 0 without reset — unless the hook ran twice (a second run
// resets the counter: it goes back) or the arguments were lost (the hook
// then starts it at kvCreatorLost: a value no history reaches).
type KVCreator struct{}

// kvCreatorLost is where a KVCreator created without arguments starts.
const kvCreatorLost = "1000000000"

// NewKVCreator is KVCreator's factory.
func NewKVCreator(nola.Ref) (nola.Actor, error) { return KVCreator{}, nil }

// Create implements nola.Creator.
func (KVCreator) Create(ctx *nola.Context, args []byte) error {
	if len(args) == 0 {
		args = []byte(kvCreatorLost)
	}
	return ctx.Put([]byte("n"), args)
}

// Invoke implements nola.Actor.
func (KVCreator) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	cur, _, err := ctx.Get([]byte("n"))
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(string(cur), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("kvcreator: stored value %q: %w", cur, err)
	}
	switch op {
	case "get":
		return strconv.AppendInt(nil, n, 10), nil
	case "inc":
		out := strconv.AppendInt(nil, n+1, 10)
		return out, ctx.Put([]byte("n"), out)
	}
	return nil, fmt.Errorf("kvcreator: unknown operation %q", op)
}

// KVCreatorOps are KVCounterOps carrying the creation argument "0".
func KVCreatorOps(r *rand.Rand, id string, client, seq int) Call {
	c := KVCounterOps(r, id, client, seq)
	c.CreationArgs = []byte("0")
	return c
}

func kvCreatorFinal(id string) []Call {
	c := kvCounterFinal(id)
	c[0].CreationArgs = []byte("0")
	return c
}

// TypeKVCreator is KVCreator's type (CreatorCatalog).
const TypeKVCreator = "kvcreator"

// CreatorCatalog is the default catalog plus KVCreator, for the creation
// hook's tests (sim_test.go); the default catalog leaves it out so that
// the seeds of every other test keep their workloads.
func CreatorCatalog() []ActorKind {
	return append(DefaultCatalog(), ActorKind{Type: TypeKVCreator, Factory: NewKVCreator, Weight: 3, Op: KVCreatorOps, Final: kvCreatorFinal})
}

func counterFinal(id string) []Call {
	return []Call{{Operation: "get", Object: id, Kind: linearizability.CounterWithReset, Name: "get", Decode: decodeNumber}}
}

func kvCounterFinal(id string) []Call {
	return []Call{{Operation: "get", Object: id, Kind: linearizability.Counter, Name: "get", Decode: decodeNumber}}
}

// DefaultCatalog returns the actor kinds of every run. Checked: the Go
// in-memory counter, durable counter and durable register, and their WASM
// twins — the C guests counter.wasm (in-memory fetch-and-add, like
// examples/actors.Counter: counter-with-reset) and kvcounter.wasm (a
// counter in the actor's KV under "n", inc returning the new value, like
// examples/actors.KVCounter: counter without reset). Helpers: the Go and
// the C caller (actor-to-actor calls, Go↔WASM both ways) and the Go and
// the C ticker (ticker.wasm: timers set from WASM).
func DefaultCatalog() []ActorKind {
	return []ActorKind{
		{Type: TypeCounter, Factory: actors.NewCounter, Weight: 3, Op: CounterOps, ViaCaller: "inc", Final: counterFinal},
		{Type: TypeKVCounter, Factory: actors.NewKVCounter, Weight: 2, Op: KVCounterOps, ViaCaller: "inc", Final: kvCounterFinal},
		{Type: TypeRegister, Factory: NewKVRegister, Weight: 3, Op: RegisterOps, Final: registerFinal},
		{Type: TypeWASMCounter, Module: CGuest("counter"), Weight: 3, Op: CounterOps, ViaCaller: "inc", Final: counterFinal},
		{Type: TypeWASMKVCounter, Module: CGuest("kvcounter"), Weight: 2, Op: KVCounterOps, ViaCaller: "inc", Final: kvCounterFinal},
		{Type: TypeKVNotify, Factory: NewKVNotify, Weight: 2, Op: KVCounterOps, Final: kvCounterFinal},
		{Type: TypeWASMKVNotify, Module: CGuest("kvnotify"), Weight: 2, Op: KVCounterOps, Final: kvCounterFinal},
		{Type: TypeCaller, Factory: actors.NewCaller},
		{Type: TypeWASMCaller, Module: CGuest("caller")},
		{Type: TypeTicker, Factory: NewTicker, Op: TickerOps},
		{Type: TypeWASMTicker, Module: CGuest("ticker"), Op: TickerOps},
	}
}

// GoGuestKinds are the Go guests' counter and KV counter (same semantics
// as the C ones), for Options.GoGuests: off by default, since a Go guest
// takes ~3 ms and ~2.4 MB per instance, 50 times a C guest's.
func GoGuestKinds() []ActorKind {
	return []ActorKind{
		{Type: TypeGoGuestCounter, Module: GoGuest("counter"), Weight: 2, Op: CounterOps, ViaCaller: "inc", Final: counterFinal},
		{Type: TypeGoGuestKVCounter, Module: GoGuest("kvcounter"), Weight: 2, Op: KVCounterOps, ViaCaller: "inc", Final: kvCounterFinal},
	}
}

// KVNotify is the Go twin of the C guest kvnotify.c: a durable counter
// (KV key "n") whose "inc" commits the new value (the flush before an
// outgoing call) and then calls the counter "notify-sink"; a failure of
// either it reports with an error of its own, not the engine's, as much Go
// code does and every WASM guest must. "get" returns the counter.
type KVNotify struct{}

// NewKVNotify is KVNotify's factory.
func NewKVNotify(nola.Ref) (nola.Actor, error) { return KVNotify{}, nil }

// Invoke implements nola.Actor.
func (KVNotify) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	cur, _, err := ctx.Get([]byte("n"))
	if err != nil {
		return nil, err
	}
	var n int64
	if len(cur) > 0 {
		if n, err = strconv.ParseInt(string(cur), 10, 64); err != nil {
			return nil, fmt.Errorf("kvnotify: stored value %q: %w", cur, err)
		}
	}
	switch op {
	case "get":
		return strconv.AppendInt(nil, n, 10), nil
	case "inc":
		out := strconv.AppendInt(nil, n+1, 10)
		if err := ctx.Put([]byte("n"), out); err != nil {
			return nil, err
		}
		if _, err := ctx.Invoke("notify-sink", TypeCounter, "inc", nil); err != nil {
			return nil, fmt.Errorf("kvnotify: notify failed: %v", err) // not %w, on purpose
		}
		return out, nil
	}
	return nil, fmt.Errorf("kvnotify: unknown operation %q", op)
}

// KVRegister is a map in the actor's durable KV: "put" with payload
// "key=value" writes (and answers "ok"), "get" with payload "key" answers
// "=" + value, or nothing when the key is absent. A put commits through
// Context.ExternalEffect before it answers, as an actor that tells the
// outside world about its write would: the oracle sees each such effect
// (as an outgoing call) and checks it leaves only a live activation.
type KVRegister struct{}

// NewKVRegister is KVRegister's factory.
func NewKVRegister(nola.Ref) (nola.Actor, error) { return KVRegister{}, nil }

// Invoke implements nola.Actor.
func (KVRegister) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "put":
		k, v, ok := bytes.Cut(payload, []byte("="))
		if !ok || len(k) == 0 {
			return nil, fmt.Errorf("kvreg: put wants key=value, got %q", payload)
		}
		if err := ctx.Put(k, v); err != nil {
			return nil, err
		}
		if err := ctx.ExternalEffect(); err != nil {
			return nil, err
		}
		return []byte("ok"), nil
	case "get":
		v, found, err := ctx.Get(payload)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, nil
		}
		return append([]byte("="), v...), nil
	}
	return nil, fmt.Errorf("kvreg: unknown operation %q", op)
}

// Ticker counts timer ticks in memory and mirrors the count into its KV
// on every tick, so that timer-driven executions both run on the
// activation and commit: "arm" sets a periodic timer (payload: a Go
// duration), "disarm" cancels it, "ticks" returns the in-memory count.
// Its Deactivate hook (eviction, graceful shutdown) records the count
// under "last": a fenced commit of the hook, which runs under faults
// too.
type Ticker struct{ ticks int64 }

// Deactivate implements nola.Deactivator.
func (t *Ticker) Deactivate(ctx *nola.Context) error {
	return ctx.Put([]byte("last"), strconv.AppendInt(nil, t.ticks, 10))
}

// NewTicker is Ticker's factory.
func NewTicker(nola.Ref) (nola.Actor, error) { return &Ticker{}, nil }

// Invoke implements nola.Actor.
func (t *Ticker) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "arm":
		d, err := time.ParseDuration(string(payload))
		if err != nil {
			return nil, fmt.Errorf("ticker: period %q: %w", payload, err)
		}
		if err := ctx.SetTimer("tick", d, d, "tick", nil); err != nil {
			return nil, err
		}
		return strconv.AppendInt(nil, t.ticks, 10), nil
	case "disarm":
		ctx.CancelTimer("tick")
		return strconv.AppendInt(nil, t.ticks, 10), nil
	case "tick":
		t.ticks++
		return nil, ctx.Put([]byte("ticks"), strconv.AppendInt(nil, t.ticks, 10))
	case "ticks":
		return strconv.AppendInt(nil, t.ticks, 10), nil
	}
	return nil, fmt.Errorf("ticker: unknown operation %q", op)
}
