package wasm

import (
	"testing"

	"github.com/nolaproject/nola/nola"
)

// An instance between invocations keeps nothing of the last one: not its
// context, payload, results or operation name (an operation sliced out of
// an HTTP request line would keep the line alive for the actor's life).
func TestEndDropsTheInvocation(t *testing.T) {
	in := &instance{invocation: &invocation{}}
	in.op, in.payload, in.hostResp, in.resp, in.guestErr = "inc", []byte("p"), []byte("h"), []byte("r"), "e"
	in.end()
	if in.op != "" || in.payload != nil || in.hostResp != nil || in.resp != nil || in.guestErr != "" || in.cx != nil {
		t.Fatalf("after end: op %q, payload %q, hostResp %q, resp %q, guestErr %q, cx %v",
			in.op, in.payload, in.hostResp, in.resp, in.guestErr, in.cx)
	}
}

// Refills of a compute-only call do not pile up across calls: each call
// starts its fuel budget afresh (begin resets the count; without that the
// sum over calls would reach MaxFuel and a cheap call would trap).
func TestRefillsDoNotAccumulate(t *testing.T) {
	h, mod := counterHost(t, "counter-c", Config{SliceFuel: 2, MaxFuel: 20})
	in, err := h.instantiate(initCx{}, mod, nola.Ref{Namespace: "t", ID: "refills"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	for i := range 50 {
		if !in.acquire() {
			t.Fatal("instance closed")
		}
		_, err := in.invoke(initCx{}, "inc", nil)
		in.release()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}
