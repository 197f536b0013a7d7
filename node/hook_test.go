package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/nodehook"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
)

// countingObserver counts the invocations that started.
type countingObserver struct{ starts atomic.Int64 }

func (*countingObserver) Activated(nola.ActivationEvent)     {}
func (*countingObserver) Dropped(nola.ActivationEvent)       {}
func (o *countingObserver) ExecStart(nola.ActivationEvent)   { o.starts.Add(1) }
func (*countingObserver) ExecEnd(nola.ActivationEvent, bool) {}
func (*countingObserver) Committed(nola.ActivationEvent)     {}
func (*countingObserver) CallSent(nola.ActivationEvent)      {}

// The in-module hook (nodehook) reaches the server's configuration: this
// is how cmd/nola gives the execution tracer and the test-build mutations.
func TestNodehookConfiguresTheServer(t *testing.T) {
	obs := &countingObserver{}
	ctx := nodehook.Configure(context.Background(), func(cfg *nola.ServerConfig) { cfg.Observer = obs })
	n, err := node.Start(ctx, node.Options{Store: node.Store{Kind: "memory"}, Types: actors.Types(), LeaseTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for range 3 {
		if _, err := n.Client().Invoke(context.Background(), "ns", "c", "counter", "inc", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := obs.starts.Load(); got != 3 {
		t.Fatalf("observer saw %d invocations start, want 3", got)
	}
}
