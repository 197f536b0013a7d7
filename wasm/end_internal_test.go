package wasm

import "testing"

// An instance between invocations keeps nothing of the last one: not its
// context, payload, results or operation name (an operation sliced out of
// an HTTP request line would keep the line alive for the actor's life).
func TestEndDropsTheInvocation(t *testing.T) {
	in := &instance{invocation: &invocation{}}
	in.touch() // hostResp: a host call's
	in.op, in.payload, in.hostResp, in.resp, in.guestErr = "inc", []byte("p"), []byte("h"), []byte("r"), "e"
	in.end()
	if in.op != "" || in.payload != nil || in.hostResp != nil || in.resp != nil || in.guestErr != "" || in.cx != nil {
		t.Fatalf("after end: op %q, payload %q, hostResp %q, resp %q, guestErr %q, cx %v",
			in.op, in.payload, in.hostResp, in.resp, in.guestErr, in.cx)
	}
}
