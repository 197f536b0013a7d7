package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
)

// A forward whose deadline passed before it had a connection certainly did
// not run: a retryable timeout (issue 10, finding 7).
func TestForwardBeforeConnectionIsRetryableTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := NewTransport(TransportOptions{})
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tr.Invoke(ctx, "http://"+ln.Addr().String(), nola.Request{Namespace: "n", ActorID: "a", ActorType: "t", Operation: "op"})
	if nola.CodeOf(err) != nola.CodeTimeout || !nola.IsRetryable(err) {
		t.Fatalf("got %v (retryable %v), want a retryable timeout", err, nola.IsRetryable(err))
	}
}

// The internal invoke Invoke builds for a plain address is, on the wire,
// the request http.NewRequestWithContext builds from InternalInvokeURL,
// and it can be sent again (GetBody) after its body was read; any other
// address form takes NewRequestWithContext itself.
func TestInternalRequestMatchesNewRequest(t *testing.T) {
	reqs := []nola.Request{
		{Namespace: "ns", ActorID: "a b/c", ActorType: "t", Operation: "op&x", Payload: []byte("12345678")},
		{Namespace: "ns", ActorID: "a", Operation: "op", Chain: []string{"x", "y%"}, Delete: true},
		{Namespace: "ns", Worker: "w", Operation: "op", Payload: []byte{0, 1, 2}},
	}
	addrs := []string{"http://127.0.0.1:8080", "http://h:1/", "https://[::1]:443", "http://h", // plain
		"http://h:1/prefix", "http://u@h:1", "http://h:", "http://h%41:1", "HTTP://h:1"} // parsed
	// The request as written, and in how many writes: net/http flushes
	// the headers of a body it does not know to be in memory before the
	// body, one more syscall per forward.
	write := func(r *http.Request) string {
		r.Header["Content-Type"] = octetStream
		var w countingWriter
		if err := r.Write(&w); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d writes: %q", w.writes, w.b.String())
	}
	for _, addr := range addrs {
		for _, req := range reqs {
			st := &sendState{}
			got, err := st.request(context.Background(), addr, req, http.Header{})
			if err != nil {
				if _, perr := url.Parse(addr); perr == nil {
					t.Fatalf("%s: %v", addr, err)
				}
				continue // not an address: Invoke answers bad_request
			}
			if got.GetBody == nil && len(req.Payload) > 0 {
				t.Fatalf("%s: no GetBody: the request cannot be sent again", addr)
			}
			want, err := http.NewRequestWithContext(context.Background(), http.MethodPost, InternalInvokeURL(addr, req), bytes.NewReader(req.Payload))
			if err != nil {
				t.Fatal(err)
			}
			var again io.ReadCloser
			if got.GetBody != nil {
				if again, err = got.GetBody(); err != nil {
					t.Fatal(err)
				}
			}
			if g, w := write(got), write(want); g != w {
				t.Fatalf("%s %+v:\n got %s\nwant %s", addr, req, g, w)
			}
			if again != nil {
				// Sent again after the first body was read to its end.
				if b, _ := io.ReadAll(again); !bytes.Equal(b, req.Payload) {
					t.Fatalf("%s: GetBody gave %q, want %q", addr, b, req.Payload)
				}
			}
			if _, _, plain := splitAddr(addr); plain != (got.URL == &st.url) {
				t.Fatalf("%s: built by the plain path %v, want %v", addr, got.URL == &st.url, plain)
			}
		}
	}
}

// splitAddr accepts only what url.Parse reads as a bare scheme and host,
// and then gives the same scheme and host.
func TestSplitAddrMatchesParse(t *testing.T) {
	for _, addr := range []string{"http://127.0.0.1:8080", "http://h:1/", "https://[::1]:443", "http://h", "http://a-b.c:1//",
		"http://h:1/prefix", "http://u@h:1", "http://h:", "http://h%41:1", "HTTP://h:1", "http://", "h:1", "http://h:1?x", "http://h:1#f", "http://h 1",
		// url.Parse rejects these: a port that is no number, colons in
		// the host, brackets that are no IPv6 literal.
		"http://h:port", "http://h:-1", "http://h:1:2", "http://::1:8080", "http://[::1", "http://[::1]x:1", "http://[h]:1",
		"http://[1.2.3.4]:1", "http://a[b:1", "https://[::1]:443:1", "http://[::1]]:1"} {
		scheme, host, ok := splitAddr(addr)
		if !ok {
			continue
		}
		u, err := url.Parse(strings.TrimRight(addr, "/"))
		if err != nil || u.Scheme != scheme || u.Host != host || u.Path != "" || u.RawQuery != "" || u.User != nil {
			t.Fatalf("splitAddr(%q) = %q, %q; url.Parse: %+v, %v", addr, scheme, host, u, err)
		}
	}
	for _, addr := range []string{"http://h:1/prefix", "http://u@h:1", "http://h:", "http://h%41:1", "HTTP://h:1", "http://", "http://h:1?x"} {
		if _, _, ok := splitAddr(addr); ok {
			t.Fatalf("splitAddr(%q) took it for a plain address", addr)
		}
	}
}

// An address url.Parse rejects is a bad request, not a server that cannot
// be reached (which the client would retry until its deadline): the plain
// path (splitAddr) must not take it and dial it.
func TestInvokeBadAddressIsBadRequest(t *testing.T) {
	tr := NewTransport(TransportOptions{})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range []string{"http://127.0.0.1:port", "http://::1:8080", "http://127.0.0.1:1:2", "http://[::1", "http://[::1]x:1"} {
		_, err := tr.Invoke(ctx, addr, nola.Request{Namespace: "ns", ActorID: "a", Operation: "op"})
		if nola.CodeOf(err) != nola.CodeBadRequest || nola.IsRetryable(err) {
			t.Errorf("Invoke to %q: %v (code %s, retryable %v); want a non-retryable bad_request", addr, err, nola.CodeOf(err), nola.IsRetryable(err))
		}
	}
}

// countingWriter counts the writes it takes (it is no io.ByteWriter, so
// Request.Write buffers in front of it, as a connection's writer does).
type countingWriter struct {
	b      bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.b.Write(p)
}

// An internal invoke carries the headers the endpoint reads and no others
// (each costs the receiver a string or two per call): the timeout and the
// token, no Content-Type, no User-Agent.
func TestInternalInvokeHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Clone()
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	tr := NewTransport(TransportOptions{Token: "tok"})
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := tr.Invoke(ctx, srv.URL, nola.Request{Namespace: "ns", ActorID: "a", Operation: "op", Payload: []byte("12345678")})
	if err != nil || string(res) != "12345678" {
		t.Fatalf("Invoke = %q, %v", res, err)
	}
	h := <-got
	if h.Get(HeaderTimeout) == "" || h.Get("Authorization") != "Bearer tok" || h.Get("Content-Length") != "8" {
		t.Fatalf("headers %v: want the timeout, the token and the length", h)
	}
	delete(h, HeaderTimeout)
	delete(h, "Authorization")
	delete(h, "Content-Length")
	delete(h, "Accept-Encoding") // net/http's own, unless compression is off
	if len(h) != 0 {
		t.Fatalf("headers the endpoint does not read: %v", h)
	}
}

// Internal invokes share their header map while their timeout header is
// the same, and get one of their own when it differs: each call still
// tells the owner its own time, and the shared map is never modified —
// not by Invoke, not by net/http sending it.
func TestInternalInvokeSharesHeaderByTimeout(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		got <- r.Header.Get(HeaderTimeout)
	}))
	defer srv.Close()
	tr := NewTransport(TransportOptions{Token: "tok"})
	defer tr.Close()

	h100 := tr.headers(100, true)
	if again := tr.headers(100, true); fmt.Sprintf("%p", again) != fmt.Sprintf("%p", h100) {
		t.Fatal("two calls with the same timeout made two header maps")
	}
	if v := tr.headers(200, true)[HeaderTimeout]; len(v) != 1 || v[0] != "200" {
		t.Fatalf("timeout 200 after 100: header %q, want 200", v)
	}
	if v := tr.headers(100, true)[HeaderTimeout]; len(v) != 1 || v[0] != "100" {
		t.Fatalf("timeout 100 after 200: header %q, want 100", v)
	}
	if _, ok := tr.headers(0, false)[HeaderTimeout]; ok {
		t.Fatal("a call without a deadline sends a timeout header")
	}

	// Over the wire, alternating deadlines far apart: each call's header
	// is its own time less the margin, and the shared map is as made.
	for i, left := range []time.Duration{10 * time.Second, time.Minute, 10 * time.Second, 10 * time.Second, time.Minute} {
		ctx, cancel := context.WithTimeout(context.Background(), left)
		ms, _ := timeoutMillis(ctx)
		shared := tr.headers(ms, true)
		before := fmt.Sprint(shared)
		if _, err := tr.Invoke(ctx, srv.URL, nola.Request{Namespace: "ns", ActorID: "a", Operation: "op", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		cancel()
		v := <-got
		sent, err := strconv.ParseInt(v, 10, 64)
		want := (left - forwardMargin(left)).Milliseconds()
		if err != nil || sent > want || sent < want-5000 {
			t.Fatalf("call %d with %v left: timeout header %q, want about %d", i, left, v, want)
		}
		if after := fmt.Sprint(shared); after != before {
			t.Fatalf("call %d: the shared header changed from %s to %s", i, before, after)
		}
	}
}
