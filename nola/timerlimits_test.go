package nola_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
)

// Timers cannot become a busy loop: a period under MinTimerPeriod is
// refused (it was accepted down to 1 ms: 50 tickers made ~11k KV commits/s),
// and an actor has at most MaxTimersPerActor pending timers (replacing one
// by name is always allowed).
func TestTimerLimits(t *testing.T) {
	types := actors.Types()
	types["timers"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, op string, p []byte) ([]byte, error) {
			switch op {
			case "fast":
				return nil, cx.SetTimer("fast", time.Hour, 10*time.Millisecond, "tick", nil)
			case "ok":
				return nil, cx.SetTimer("ok", time.Hour, 50*time.Millisecond, "tick", nil)
			case "many":
				for i := range 4 {
					if err := cx.SetTimer(fmt.Sprint("t", i), time.Hour, 0, "tick", nil); err != nil {
						return nil, err
					}
				}
				return nil, cx.SetTimer("t0", time.Hour, 0, "tick", nil) // a replacement
			case "one-more":
				return nil, cx.SetTimer("t-extra", time.Hour, 0, "tick", nil)
			}
			return nil, nil
		}), nil
	}
	c := realCluster(t, 1, types, func(cfg *nola.ServerConfig) { cfg.MaxTimersPerActor = 5 })
	call := func(op string) error {
		_, err := c.Client().Invoke(context.Background(), "ns", "a", "timers", op, nil)
		return err
	}
	if err := call("fast"); !errors.Is(err, nola.ErrBadRequest) {
		t.Fatalf("a 10ms period: %v, want bad_request", err)
	}
	if err := call("ok"); err != nil {
		t.Fatalf("a 50ms period: %v", err)
	}
	if err := call("many"); err != nil {
		t.Fatalf("5 timers with a limit of 5: %v", err)
	}
	if err := call("one-more"); !errors.Is(err, nola.ErrTooLarge) {
		t.Fatalf("a 6th timer: %v, want too_large", err)
	}
}
