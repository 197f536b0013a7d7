// Package nodehook carries settings that only nola's own programs may give
// a node (node.Start): the deliberate protocol mutations of test builds and
// the execution tracer of cmd/jepsen-lite. They ride on the start-up
// context under a key no package outside this module can name, so the
// public node.Options stays free of switches that could break G1 or G2.
package nodehook

import (
	"context"

	"github.com/nolaproject/nola/nola"
)

type key struct{}

// Configure returns a context that makes node.Start call f on the server
// configuration it built, just before it creates the server.
func Configure(ctx context.Context, f func(*nola.ServerConfig)) context.Context {
	return context.WithValue(ctx, key{}, f)
}

// From returns the function Configure put on ctx, or nil.
func From(ctx context.Context) func(*nola.ServerConfig) {
	f, _ := ctx.Value(key{}).(func(*nola.ServerConfig))
	return f
}
