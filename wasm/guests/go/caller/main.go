//go:build wasip1

// Command caller calls other actors: "call" with payload
// "<type>/<id>/<op>" invokes op on that actor (Go or WASM) and returns its
// result, like examples/actors.Caller; "worker" with payload
// "<worker-type>/<op>/<payload>" calls that stateless worker.
package main

import (
	"errors"
	"strings"

	"github.com/nolaproject/nola/wasm/guest"
)

func init() {
	guest.HandleOps(map[string]guest.Op{
		"call": func(p []byte) ([]byte, error) {
			parts := strings.SplitN(string(p), "/", 3)
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return nil, errors.New("caller: payload must be <type>/<id>/<op>")
			}
			return guest.Invoke(parts[1], parts[0], parts[2], nil)
		},
		"worker": func(p []byte) ([]byte, error) {
			parts := strings.SplitN(string(p), "/", 3)
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return nil, errors.New("caller: payload must be <worker-type>/<op>/<payload>")
			}
			return guest.CallWorker(parts[0], parts[1], []byte(parts[2]))
		},
	})
}

func main() {}
