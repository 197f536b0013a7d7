//go:build wasip1

// Command kvcounter keeps a counter in the actor's durable KV under key
// "n", like examples/actors.KVCounter: "inc" adds one and returns the new
// value, "get" returns it, "add" adds the decimal payload.
package main

import (
	"fmt"
	"strconv"

	"github.com/nolaproject/nola/wasm/guest"
)

func handle(op string, payload []byte) ([]byte, error) {
	cur, _, err := guest.Get([]byte("n"))
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
		return guest.Int(n), nil
	case "inc":
		n++
	case "add":
		d, err := strconv.ParseInt(string(payload), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("kvcounter: add %q: %w", payload, err)
		}
		n += d
	default:
		return nil, fmt.Errorf("unknown operation %q", op)
	}
	out := guest.Int(n)
	return out, guest.Put([]byte("n"), out)
}

func init() { guest.Handle(handle) }

func main() {}
