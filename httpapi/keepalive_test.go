package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// deadlineConn remembers the read deadline last set on a server connection.
type deadlineConn struct {
	net.Conn
	mu sync.Mutex
	rd time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *deadlineConn) readDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rd
}

// countingListener wraps accepted connections in deadlineConns and counts
// them.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*deadlineConn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, dc)
	l.mu.Unlock()
	return dc, nil
}

func (l *countingListener) accepted() []*deadlineConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*deadlineConn(nil), l.conns...)
}

// holdWriter delays the response of an overrunning call until whatever the
// connection's read deadline does to the connection has happened: if a
// deadline is still armed (it is in the past by then), until net/http's
// background read has failed on it and cancelled the request's context;
// if none is armed, at once. This makes the poisoning deterministic rather
// than a race between that read and the end of the handler.
type holdWriter struct {
	http.ResponseWriter
	r    *http.Request
	conn func() *deadlineConn
	stop <-chan struct{}
	once sync.Once
}

func (w *holdWriter) hold() {
	w.once.Do(func() {
		if w.conn().readDeadline().IsZero() {
			return
		}
		select {
		case <-w.r.Context().Done():
		case <-w.stop:
		}
	})
}

func (w *holdWriter) WriteHeader(code int) { w.hold(); w.ResponseWriter.WriteHeader(code) }
func (w *holdWriter) Write(b []byte) (int, error) {
	w.hold()
	return w.ResponseWriter.Write(b)
}
func (w *holdWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// overrunNode is one server with an actor type "block" whose "wait"
// operation returns only when its call's deadline has passed, behind a
// listener that records its connections.
type overrunNode struct {
	url string
	ln  *countingListener
}

func startOverrunNode(t *testing.T, opts httpapi.Options) *overrunNode {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	types := actors.Types()
	types["block"] = func(nola.Ref) (nola.Actor, error) { return blockActor{}, nil }
	hs := httptest.NewUnstartedServer(nil)
	ln := &countingListener{Listener: hs.Listener}
	hs.Listener = ln
	url := "http://" + ln.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	srv, err := nola.NewServer(nola.ServerConfig{
		ID: "k0", Addr: url, Runtime: r, Store: store,
		Transport: tr, Types: types, LeaseTTL: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(url, srv) // only the test's own clients connect
	o := opts
	o.Metrics = prometheus.NewRegistry()
	api := httpapi.NewHandler(srv, o)
	stop := make(chan struct{})
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.RawQuery, "op=wait") || strings.HasSuffix(r.URL.Path, "/invoke/wait") {
			conns := ln.accepted()
			w = &holdWriter{ResponseWriter: w, r: r, conn: func() *deadlineConn { return conns[len(conns)-1] }, stop: stop}
		}
		api.ServeHTTP(w, r)
	})
	hs.Start()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(stop)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		tr.Close()
	})
	return &overrunNode{url: url, ln: ln}
}

type blockActor struct{}

func (blockActor) Invoke(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
	if op == "wait" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return nil, err // a call that arrives already cancelled
	}
	return []byte("ok"), nil
}

// oneConnClient is an HTTP client that keeps at most one connection.
func oneConnClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func post(t *testing.T, c *http.Client, url, timeoutMs, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpapi.HeaderTimeout, timeoutMs)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A call that runs past its deadline must not poison its keep-alive
// connection: the next call on that connection runs normally (issue 10,
// finding 2). Before the fix the read deadline set for the body stayed
// armed, net/http's background read failed on it and cancelled the
// connection's context, and every later call on it answered 504 at once.
func TestOverrunDoesNotPoisonKeepAlive(t *testing.T) {
	// Without a body the background read runs from the start, and the
	// deadline used to be armed on it: the case that failed before the
	// fix. With a body net/http disarms the deadline itself when the body
	// ends; that case guards the disarming (its deadline must leave time
	// to read the body, else the call fails reading it and the server
	// rightly closes the connection).
	for _, c := range []struct{ body, timeoutMs string }{{"", "1"}, {"payload", "500"}} {
		body := c.body
		t.Run(fmt.Sprintf("body=%d", len(body)), func(t *testing.T) {
			n := startOverrunNode(t, httpapi.Options{})
			hc := oneConnClient(t)
			base := n.url + "/v1/ns/ka/actors/"
			if code, b := post(t, hc, base+"b1/invoke/wait?type=block", c.timeoutMs, body); code == http.StatusOK {
				t.Fatalf("overrunning call: HTTP %d %s, want an error", code, b)
			}
			if code, b := post(t, hc, base+"c1/invoke/inc?type=counter", "10000", body); code != http.StatusOK {
				t.Fatalf("next call on the connection: HTTP %d %s", code, b)
			}
			if got := len(n.ln.accepted()); got != 1 {
				t.Errorf("%d connections, want 1 (the keep-alive connection was dropped)", got)
			}
		})
	}
}

// The same through the server-to-server transport: a forwarded call that
// overruns on the owner must not poison the pooled connection for the next
// forward.
func TestOverrunDoesNotPoisonTransport(t *testing.T) {
	// No header from the caller: the server's default timeout is the
	// call's deadline, and the caller's side never gives up first (so
	// it keeps the connection, as it does when the owner answers 504
	// just before the caller's own deadline).
	n := startOverrunNode(t, httpapi.Options{DefaultTimeout: time.Millisecond})
	c := httpapi.NewClient(n.url, "")
	defer c.Close()
	if _, err := c.Invoke(ctx(t), "ka", "b1", "block", "noop", nil); err != nil {
		t.Fatal(err) // places b1 on the node
	}
	before := len(n.ln.accepted())
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	defer tr.Close()
	for _, payload := range [][]byte{nil, []byte("payload")} {
		req := nola.Request{Namespace: "ka", ActorID: "b1", ActorType: "block", Operation: "wait", Payload: payload}
		// Its answer depends on which fires first, the deadline or (before
		// the fix) the poisoned connection: only the next call matters.
		_, err := tr.Invoke(context.Background(), n.url, req)
		if err == nil {
			t.Fatal("overrunning forward succeeded")
		}
		req.Operation = "noop"
		if got, err := tr.Invoke(ctx(t), n.url, req); err != nil || string(got) != "ok" {
			t.Fatalf("next forward: %q %v", got, err)
		}
	}
	t.Logf("the transport used %d connections", len(n.ln.accepted())-before)
}
