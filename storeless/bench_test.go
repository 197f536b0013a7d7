package storeless_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nolaproject/nola/storeless"
)

// BenchmarkOwner: the ring lookup every routed call makes.
func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{3, 32} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			var peers []string
			for i := range n {
				peers = append(peers, fmt.Sprintf("http://10.0.0.%d:9090", i+1))
			}
			m, err := storeless.NewMembers(storeless.MembersConfig{Self: peers[0], Peers: peers,
				Probe: func(context.Context, string) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			m.Round(context.Background())
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = m.Owner("demo", "actor-12345")
			}
		})
	}
}

// BenchmarkHTTPCall: a warm counter over HTTP, called through its owner
// and through another server (one proxy hop).
func BenchmarkHTTPCall(b *testing.B) {
	c := startCluster(b, 2)
	owner := 0
	if c.nodes[0].Router().Members().Owner("demo", "bench") != c.urls[0] {
		owner = 1
	}
	for _, via := range []struct {
		name string
		i    int
	}{{"owner", owner}, {"proxied", 1 - owner}} {
		b.Run(via.name, func(b *testing.B) {
			cl := c.client(via.i)
			ctx := context.Background()
			for b.Loop() {
				if _, err := cl.Invoke(ctx, "demo", "bench", "counter", "inc", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
