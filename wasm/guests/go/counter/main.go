//go:build wasip1

// Command counter is an in-memory counter actor, the Go-guest twin of
// examples/actors.Counter: "inc" returns the value before incrementing
// (a fresh activation answers 0), "get" returns the value.
package main

import "github.com/nolaproject/nola/wasm/guest"

var n int64

func init() {
	guest.HandleOps(map[string]guest.Op{
		"inc": func([]byte) ([]byte, error) { n++; return guest.Int(n - 1), nil },
		"get": func([]byte) ([]byte, error) { return guest.Int(n), nil },
	})
}

func main() {}
