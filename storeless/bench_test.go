package storeless_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/nolaproject/nola/httpapi"
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

// BenchmarkHTTPCall: a warm counter over HTTP, called through its owner,
// through another server (one proxy hop), and through a bare
// httputil.ReverseProxy in front of the owner (the floor of any HTTP
// hop, to tell the router's cost from the hop's). Rounds interleave the
// three, so that load changes hit them alike.
func BenchmarkHTTPCall(b *testing.B) {
	c := startCluster(b, 2)
	owner := 0
	if c.nodes[0].Router().Members().Owner("demo", "bench") != c.urls[0] {
		owner = 1
	}
	target, _ := url.Parse(c.urls[owner])
	bare := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	defer bare.Close()
	vias := []struct {
		name string
		cl   *httpapi.Client
	}{{"owner", c.client(owner)}, {"proxied", c.client(1 - owner)}, {"bareproxy", httpapi.NewClient(bare.URL, "")}}
	for round := range 3 {
		for _, via := range vias {
			b.Run(fmt.Sprintf("%s/round=%d", via.name, round), func(b *testing.B) {
				ctx := context.Background()
				for b.Loop() {
					if _, err := via.cl.Invoke(ctx, "demo", "bench", "counter", "inc", nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
