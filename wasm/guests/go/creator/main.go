//go:build wasip1

// Command creator is the Go twin of the C creator guest: its creation hook
// counts in KV ("creates") how often it committed and stores the arguments
// it got ("given"); "creates" and "given" return them, "args" returns
// guest.CreationArgs.
package main

import (
	"fmt"
	"strconv"

	"github.com/nolaproject/nola/wasm/guest"
)

//go:wasmexport nola_create
func create(opLen, argsLen uint32) uint32 { return guest.Create(opLen, argsLen, onCreate) }

func onCreate(args []byte) error {
	cur, _, err := guest.Get([]byte("creates"))
	if err != nil {
		return err
	}
	var n int64
	if len(cur) > 0 {
		if n, err = strconv.ParseInt(string(cur), 10, 64); err != nil {
			return fmt.Errorf("creator: stored count %q: %w", cur, err)
		}
	}
	if err := guest.Put([]byte("creates"), guest.Int(n+1)); err != nil {
		return err
	}
	return guest.Put([]byte("given"), args)
}

func handle(op string, _ []byte) ([]byte, error) {
	switch op {
	case "creates", "given":
		v, _, err := guest.Get([]byte(op))
		return v, err
	case "args":
		return guest.CreationArgs()
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

func init() { guest.Handle(handle) }

func main() {}
