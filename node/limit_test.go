package node

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// At most MaxConns connections are served at once: of five keep-alive
// connections that each send a request, two are answered; the others are
// answered only as answered ones close, and never more than two are open.
func TestConnectionsAreBounded(t *testing.T) {
	n, err := Start(context.Background(), Options{Store: Store{Kind: "memory"}, LeaseTTL: time.Second, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	answered := make(chan net.Conn, 5)
	for range 5 {
		c, err := net.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Errorf("reading a response: %v", err)
				return
			}
			resp.Body.Close()
			answered <- c
		}()
	}
	// Each answered connection stays open (keep-alive) until closed here,
	// which lets the listener accept the next one.
	for range 5 {
		c := <-answered
		if p := n.ln.peak.Load(); p > 2 {
			t.Fatalf("%d connections served at once, bound 2", p)
		}
		c.Close()
	}
	if p := n.ln.peak.Load(); p != 2 {
		t.Fatalf("peak = %d connections, want 2", p)
	}
}

func TestConnBound(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		want  int
	}{{1024, 384}, {256, 96}, {20, 8}, {1 << 20, (1<<20 - 256) / 2}} {
		if got := connBound(c.limit); got != c.want {
			t.Errorf("connBound(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

// A server without a token warns when it listens beyond loopback; the
// check is on the listener's address, so 0.0.0.0 and [::] count as open.
func TestIsLoopback(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{{"127.0.0.1", true}, {"127.3.4.5", true}, {"::1", true}, {"0.0.0.0", false}, {"::", false}, {"192.0.2.1", false}} {
		if got := isLoopback(&net.TCPAddr{IP: net.ParseIP(c.ip), Port: 1}); got != c.want {
			t.Errorf("isLoopback(%s) = %v, want %v", c.ip, got, c.want)
		}
	}
}
