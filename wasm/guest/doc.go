// Package guest is the Go SDK for nola WASM actors, built with the standard
// Go toolchain (no TinyGo):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o actor.wasm ./myactor
//
// An actor is a main package that registers its handler in init (a
// c-shared module runs package initialization, never main):
//
//	package main
//
//	import "github.com/nolaproject/nola/wasm/guest"
//
//	var n int64
//
//	func init() {
//		guest.HandleOps(map[string]guest.Op{
//			"inc": func([]byte) ([]byte, error) { n++; return guest.Int(n - 1), nil },
//			"get": func([]byte) ([]byte, error) { return guest.Int(n), nil },
//		})
//	}
//
//	func main() {}
//
// An actor with a creation hook (nola.Creator) exports nola_create itself
// and serves it with Create; any actor reads its creation arguments with
// CreationArgs.
//
// The package exports the waPC entry point __guest_call and wraps the host
// calls of package abi: Invoke, CallWorker (stateless workers), KV access (inside the invocation's
// transaction), timers, logging and the server's clock. Everything except
// this file builds only for GOOS=wasip1.
package guest
