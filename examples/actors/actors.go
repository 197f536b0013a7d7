// Package actors holds small Go actors used by the examples, the tests, the
// simulator and the benchmarks.
package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nolaproject/nola/nola"
)

// Workers returns the example stateless workers, by type name: "echo"
// answers its payload; "sha256" answers the hex SHA-256 of its payload;
// "count" calls the counter actor named by its payload ("inc") and answers
// what it answered, showing a worker calling an actor.
func Workers() map[string]nola.WorkerFunc {
	return map[string]nola.WorkerFunc{
		"echo": func(_ *nola.WorkerContext, _ string, p []byte) ([]byte, error) { return p, nil },
		"sha256": func(_ *nola.WorkerContext, _ string, p []byte) ([]byte, error) {
			sum := sha256.Sum256(p)
			return []byte(hex.EncodeToString(sum[:])), nil
		},
		"count": func(wx *nola.WorkerContext, _ string, p []byte) ([]byte, error) {
			if len(p) == 0 {
				return nil, errors.New("count: the payload names the counter actor")
			}
			return wx.Invoke(string(p), "counter", "inc", nil)
		},
	}
}

// Types returns the factories of every actor in this package, by type name.
func Types() map[string]nola.Factory {
	return map[string]nola.Factory{
		"counter":   NewCounter,
		"kvcounter": NewKVCounter,
		"caller":    NewCaller,
		"echo":      NewEcho,
		"ticker":    NewTicker,
		"kvmap":     NewKVMap,
		"greeter":   NewGreeter,
	}
}

// Counter keeps a counter in memory. "inc" returns the value before
// incrementing (fetch-and-add), so a fresh activation answers 0: a caller
// looping inc sees 0,1,2,… and a reset to 0 whenever the actor is
// reactivated. "get" returns the value.
type Counter struct{ n int64 }

// NewCounter is the counter's factory.
func NewCounter(nola.Ref) (nola.Actor, error) { return &Counter{}, nil }

// Invoke implements nola.Actor.
func (c *Counter) Invoke(_ *nola.Context, op string, _ []byte) ([]byte, error) {
	switch op {
	case "inc":
		v := c.n
		c.n++
		return strconv.AppendInt(nil, v, 10), nil
	case "get":
		return strconv.AppendInt(nil, c.n, 10), nil
	}
	return nil, fmt.Errorf("counter: unknown operation %q", op)
}

// KVCounter keeps a counter in the actor's durable KV under key "n". "inc"
// adds one and returns the new value; "get" returns it; "add" adds the
// decimal payload. It never resets.
type KVCounter struct{}

// NewKVCounter is the KV counter's factory.
func NewKVCounter(nola.Ref) (nola.Actor, error) { return KVCounter{}, nil }

var keyN = []byte("n")

// Invoke implements nola.Actor.
func (KVCounter) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	cur, _, err := ctx.Get(keyN)
	if err != nil {
		return nil, err
	}
	var n int64
	if len(cur) > 0 {
		if n, err = strconv.ParseInt(string(cur), 10, 64); err != nil {
			return nil, fmt.Errorf("kvcounter: stored value %q: %w", cur, err)
		}
	}
	switch op {
	case "get":
		return strconv.AppendInt(nil, n, 10), nil
	case "inc":
		n++
	case "add":
		d, err := strconv.ParseInt(string(payload), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("kvcounter: add %q: %w", payload, err)
		}
		n += d
	default:
		return nil, fmt.Errorf("kvcounter: unknown operation %q", op)
	}
	out := strconv.AppendInt(nil, n, 10)
	if err := ctx.Put(keyN, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Caller calls other actors: "call" with payload "<type>/<id>/<op>" invokes
// op on that actor and returns its result.
type Caller struct{}

// NewCaller is the caller's factory.
func NewCaller(nola.Ref) (nola.Actor, error) { return Caller{}, nil }

// Invoke implements nola.Actor.
func (Caller) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	if op != "call" {
		return nil, fmt.Errorf("caller: unknown operation %q", op)
	}
	typ, id, target, err := ParseTarget(string(payload))
	if err != nil {
		return nil, err
	}
	return ctx.Invoke(id, typ, target, nil)
}

// ParseTarget splits "<type>/<id>/<op>".
func ParseTarget(s string) (typ, id, op string, err error) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", errors.New("caller: payload must be <type>/<id>/<op>")
	}
	return parts[0], parts[1], parts[2], nil
}

// Echo returns its payload; "fail" returns an error and "panic" panics,
// after writing to KV (those writes must be discarded).
type Echo struct{}

// NewEcho is the echo actor's factory.
func NewEcho(nola.Ref) (nola.Actor, error) { return Echo{}, nil }

// Invoke implements nola.Actor.
func (Echo) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "echo":
		return payload, nil
	case "put":
		return nil, ctx.Put([]byte("last"), payload)
	case "get":
		v, _, err := ctx.Get([]byte("last"))
		return v, err
	case "fail":
		if err := ctx.Put([]byte("last"), []byte("from a failed call")); err != nil {
			return nil, err
		}
		return nil, errors.New("echo: asked to fail")
	case "panic":
		if err := ctx.Put([]byte("last"), []byte("from a panicking call")); err != nil {
			return nil, err
		}
		panic("echo: asked to panic")
	}
	return nil, fmt.Errorf("echo: unknown operation %q", op)
}

// Ticker counts timer ticks in memory: "start" sets a periodic timer with
// the period given in the payload (a Go duration), "ticks" returns the
// count, "stop" cancels the timer.
type Ticker struct{ ticks int64 }

// NewTicker is the ticker's factory.
func NewTicker(nola.Ref) (nola.Actor, error) { return &Ticker{}, nil }

// Invoke implements nola.Actor.
func (t *Ticker) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "start":
		d, err := time.ParseDuration(string(payload))
		if err != nil {
			return nil, fmt.Errorf("ticker: period %q: %w", payload, err)
		}
		return nil, ctx.SetTimer("tick", d, d, "tick", nil)
	case "tick":
		t.ticks++
		return nil, nil
	case "ticks":
		return strconv.AppendInt(nil, t.ticks, 10), nil
	case "stop":
		ctx.CancelTimer("tick")
		return nil, nil
	}
	return nil, fmt.Errorf("ticker: unknown operation %q", op)
}

// KVMap is a map of registers kept in the actor's durable KV, one KV key
// per map key: "put" with payload "<key>=<value>" stores value and answers
// "ok"; "get" with payload "<key>" answers the value, or nothing when the
// key was never written. Keys and values must be non-empty.
type KVMap struct{}

// NewKVMap is the KV map's factory.
func NewKVMap(nola.Ref) (nola.Actor, error) { return KVMap{}, nil }

// Invoke implements nola.Actor.
func (KVMap) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	switch op {
	case "get":
		if len(payload) == 0 {
			return nil, errors.New("kvmap: get: empty key")
		}
		v, _, err := ctx.Get(append([]byte("m/"), payload...))
		return v, err
	case "put":
		k, v, ok := strings.Cut(string(payload), "=")
		if !ok || k == "" || v == "" {
			return nil, errors.New("kvmap: put: payload must be <key>=<value>, both non-empty")
		}
		if err := ctx.Put([]byte("m/"+k), []byte(v)); err != nil {
			return nil, err
		}
		return []byte("ok"), nil
	}
	return nil, fmt.Errorf("kvmap: unknown operation %q", op)
}

// Greeter is a Creator: its creation arguments name whom it greets. Create
// stores the name (default "world") in KV once, when the actor is created;
// "hello" answers "hello, NAME"; "args" returns the creation arguments as
// given.
type Greeter struct{}

// NewGreeter is the greeter's factory.
func NewGreeter(nola.Ref) (nola.Actor, error) { return Greeter{}, nil }

// Create implements nola.Creator.
func (Greeter) Create(ctx *nola.Context, args []byte) error {
	if len(args) == 0 {
		args = []byte("world")
	}
	return ctx.Put([]byte("name"), args)
}

// Invoke implements nola.Actor.
func (Greeter) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	switch op {
	case "hello":
		name, _, err := ctx.Get([]byte("name"))
		if err != nil {
			return nil, err
		}
		return append([]byte("hello, "), name...), nil
	case "args":
		return ctx.CreationArgs()
	}
	return nil, fmt.Errorf("greeter: unknown operation %q", op)
}
