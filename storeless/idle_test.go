package storeless_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// persistConns counts the goroutines of HTTP keep-alive client
// connections in the process.
func persistConns() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "net/http.(*persistConn).readLoop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// A node that closes leaves no keep-alive connection to a peer that keeps
// running: each would hold two goroutines for as long as the peer does.
func TestCloseLeavesNoConnectionsToPeers(t *testing.T) {
	c := startCluster(t, 2)
	id := ""
	for i := range 100 {
		if x := fmt.Sprintf("p%d", i); c.nodes[0].Router().Members().Owner("demo", x) == c.urls[1] {
			id = x
			break
		}
	}
	cl := c.client(0)
	inc(t, cl, id) // proxied by node 0 to node 1 over a keep-alive connection
	cl.Close()
	_ = c.nodes[0].Close()
	c.nodes[0] = nil
	// The test's own probes (http.DefaultClient) hold connections too.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for persistConns() > 0 { // waits for the connections' goroutines to end
		select {
		case <-ctx.Done():
			t.Fatalf("%d keep-alive connections left after node 0 closed (node 1 still runs)", persistConns())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
