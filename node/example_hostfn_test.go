package node_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// A node whose WASM guests may call a host function of the app's, here
// "test"/"echo" (the host call the example of the third-party
// AssemblyScript SDK makes). The guest, wasm/guests/c/hostfn.c, makes the
// host calls its payload lists and answers with the last response, or
// fails with the host's error.
func ExampleStart_hostFunctions() {
	ctx := context.Background()
	echo := wasm.HostFunction{Namespace: "test", Operation: "echo",
		Func: func(ctx context.Context, call wasm.HostCall) ([]byte, error) {
			// The invocation's pending KV writes are committed by now;
			// ctx carries its deadline.
			return fmt.Appendf(nil, "%s says %s", call.Ref.ID, call.Payload), nil
		}}
	n, err := node.Start(ctx, node.Options{
		Store: node.Store{Kind: "memory"},
		WASM:  &node.WASMOptions{HostFunctions: []wasm.HostFunction{echo}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Shutdown(ctx)

	c := httpapi.NewClient(n.URL(), "")
	defer c.Close()
	bin, err := os.ReadFile(filepath.Join(wasmtest.Root(), "wasm", "guests", "c", "hostfn.wasm"))
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := c.PutModule(ctx, "demo", "hostfn", bin); err != nil {
		log.Fatal(err)
	}
	call := func(ns, op, payload string) []byte {
		return abi.AppendStringField(abi.AppendStringField(abi.AppendStringField(nil, ns), op), payload)
	}
	out, err := c.Invoke(ctx, "demo", "a1", "hostfn", "calls", call("test", "echo", "hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// A host call nobody registered is the guest's error to handle; this
	// guest passes it on.
	_, err = c.Invoke(ctx, "demo", "a1", "hostfn", "calls", call("test", "nope", ""))
	fmt.Println(err)
	// Output:
	// a1 says hello
	// nola: actor_error: a1: bad_request: unknown host call test/nope
}
