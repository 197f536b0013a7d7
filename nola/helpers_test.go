package nola_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
)

const (
	ns     = "test"
	simTTL = 6 * time.Second
)

// runSim builds an n-server cluster on a fresh deterministic world (see
// internal/simtest) and runs body as the world's main task.
func runSim(t *testing.T, seed uint64, n int, types map[string]nola.Factory, configure func(i int, cfg *nola.ServerConfig), body func(e *simtest.Env)) {
	t.Helper()
	if types == nil {
		types = actors.Types()
	}
	simtest.Run(t, simtest.Options{
		Seed: seed, Servers: n, Types: types, TTL: simTTL, NS: ns, MaxSteps: 2_000_000,
		Configure: func(_ *simtest.Env, i int, cfg *nola.ServerConfig) {
			if configure != nil {
				configure(i, cfg)
			}
		},
	}, body)
}

func wantCode(t *testing.T, err error, code nola.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != code {
		t.Fatalf("got %v (code %s), want code %s", err, nola.CodeOf(err), code)
	}
}
