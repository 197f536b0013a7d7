package wasm_test

import (
	"strings"
	"testing"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
)

// WASM actors (C and Go guests) call stateless workers through the
// "worker"/"call" host call; a worker's errors reach the guest as waPC
// host errors with their code, and a worker called from a WASM actor can
// call actors in turn.
func TestWASMActorCallsWorker(t *testing.T) {
	e := newEnv(t, envOpts{servers: 2, server: func(cfg *nola.ServerConfig) { cfg.Workers = actors.Workers() }})
	e.putGuests("caller")
	for _, typ := range []string{"caller-c", "caller-go"} {
		e.want("w-"+typ, typ, "worker", []byte("sha256/run/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
		e.want("w-"+typ, typ, "worker", []byte("echo/run/hi"), "hi")
	}
	// WASM actor → worker → Go actor.
	e.want("w1", "caller-c", "worker", []byte("count/run/ctr"), "0")
	e.want("w2", "caller-go", "worker", []byte("count/run/ctr"), "1")
	e.want("ctr", "counter", "get", nil, "2")
	// An unknown worker type: the guest sees the host error and fails
	// with it.
	_, err := e.invoke("w1", "caller-c", "worker", []byte("nope/run/x"))
	ne := wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(ne.Message, "bad_request") || !strings.Contains(ne.Message, "unknown worker type") {
		t.Fatalf("unknown worker from a guest: %v", err)
	}
}
