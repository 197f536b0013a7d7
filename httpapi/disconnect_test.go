package httpapi_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// hangActor's "wait" tells started it runs, then returns when its call's
// context ends, reporting why on ended.
type hangActor struct {
	started chan<- struct{}
	ended   chan<- error
}

func (a hangActor) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	a.started <- struct{}{}
	<-ctx.Done()
	a.ended <- ctx.Err()
	return nil, ctx.Err()
}

// A call ends when its client goes away: the request's context ends, and
// with it the call's (a callCtx, which builds its real context only when
// something waits on it), long before the call's own deadline.
func TestClientDisconnectEndsCall(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	nodes := startOn(t, r, store, 1, httpapi.Options{}, func(c *nola.ServerConfig) {
		c.Types["hang"] = func(nola.Ref) (nola.Actor, error) { return hangActor{started, ended}, nil }
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(nodes[0].url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The call may take two minutes; failing, the test ends after one
	// (and its cleanup waits out the call).
	req := "POST /v1/ns/n/actors/a/invoke/wait?type=hang HTTP/1.1\r\nHost: x\r\n" +
		httpapi.HeaderTimeout + ": 120000\r\nContent-Length: 2\r\n\r\nhi"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// A hang bound, not a timing assertion: the call's own deadline is
	// two minutes away.
	bound := time.After(time.Minute)
	select {
	case <-started:
	case <-bound:
		t.Fatal("the call never reached its actor")
	}
	_ = conn.Close()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the call's context ended without an error")
		}
	case <-bound:
		t.Fatal("the call did not end when its client went away")
	}
}

// A body declared over the payload limit is refused at once, 413 with the
// connection closed, rather than waited for until the call's deadline
// (and then answered 504, as if the client were merely slow).
func TestDeclaredOversizeBodyRefusedAtOnce(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{}) // 1 KiB payloads
	conn, err := net.Dial("tcp", strings.TrimPrefix(nodes[0].url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A hang bound, not a timing assertion: the call's deadline is two
	// minutes away.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	req := "POST /v1/ns/n/actors/a/invoke/echo?type=echo HTTP/1.1\r\nHost: x\r\n" +
		httpapi.HeaderTimeout + ": 120000\r\nContent-Length: 1025\r\n\r\nonly this much"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a body declared over the limit: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("answer %d (close %v), want 413 with the connection closed", resp.StatusCode, resp.Close)
	}
}
