package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// A call that times out on the actor's owner, entered through another
// server, answers with an error that names the owner — its server ID and
// address — not only the entry server the caller spoke to (issue 12: a
// timeout named the entry server rather than the owner that did not
// answer).
func TestTimeoutNamesTheOwner(t *testing.T) {
	release := make(chan struct{})
	var released bool
	unblock := func() {
		if !released {
			released = true
			close(release)
		}
	}
	types := map[string]nola.Factory{
		"stall": func(nola.Ref) (nola.Actor, error) {
			return nola.FuncActor(func(_ *nola.Context, op string, _ []byte) ([]byte, error) {
				if op == "stall" {
					<-release // ignores its deadline: the owner cannot answer
				}
				return nil, nil
			}), nil
		},
	}
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() }) // after the servers' shutdown (startHTTPServers)
	srvs, urls := startHTTPServers(t, 2, func(int) kv.Store { return store }, types, unblock)
	// An actor owned by h1, created through h1.
	id := actorOn(t, urls[1], srvs[1], "s")

	// Call it through h0 with a 1s budget. The HTTP client's own bound is
	// long, so the answer is whatever h0 says when its budget runs out.
	req, err := http.NewRequest(http.MethodPost, urls[0]+"/v1/ns/t/actors/"+id+"/invoke/stall", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpapi.HeaderTimeout, "1000")
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	unblock()
	var body httpapi.ErrorBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("HTTP %d %s: %v", resp.StatusCode, b, err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout || body.Code != nola.CodeTimeout || body.Retryable {
		t.Fatalf("HTTP %d %+v, want a non-retryable 504 timeout", resp.StatusCode, body)
	}
	if !strings.Contains(body.Message, "on its owner h1#") || !strings.Contains(body.Message, urls[1]) {
		t.Fatalf("message %q does not name the owner h1 at %s", body.Message, urls[1])
	}
}

// A server forwards less than its remaining time, so that the next server
// answers before this one gives up on it.
func TestForwardedTimeoutKeepsAnAnswerMargin(t *testing.T) {
	var got []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(httpapi.HeaderTimeout))
		w.WriteHeader(http.StatusOK)
	}))
	defer hs.Close()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	defer tr.Close()
	for _, d := range []time.Duration{800 * time.Millisecond, 10 * time.Second} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_, err := tr.Invoke(ctx, hs.URL, nola.Request{Namespace: "n", ActorID: "a", ActorType: "t", Operation: "o"})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	// 800ms keeps an eighth (100ms); 10s keeps the 250ms cap.
	for i, max := range []int64{700, 9750} {
		ms, err := strconv.ParseInt(got[i], 10, 64)
		if err != nil || ms <= 0 || ms > max {
			t.Fatalf("forwarded timeout #%d = %q, want in (0, %d]", i, got[i], max)
		}
	}
}

// startHTTPServers starts n servers h0…hn-1, each behind an HTTP server of
// its own on loopback and talking to the others through httpapi's
// transport, on the stores store(i) gives. At cleanup unblock runs before
// each server's shutdown, which waits for the calls a test stalled.
func startHTTPServers(t *testing.T, n int, store func(i int) kv.Store, types map[string]nola.Factory, unblock func()) (srvs []*nola.Server, urls []string) {
	t.Helper()
	for i := range n {
		hs := httptest.NewUnstartedServer(nil)
		url := "http://" + hs.Listener.Addr().String()
		tr := httpapi.NewTransport(httpapi.TransportOptions{})
		srv, err := nola.NewServer(nola.ServerConfig{
			ID: fmt.Sprintf("h%d", i), Addr: url, Store: store(i), Transport: tr, Types: types, LeaseTTL: 3 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		tr.SetLocal(url, srv)
		hs.Config.Handler = httpapi.NewHandler(srv, httpapi.Options{})
		hs.Start()
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			unblock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			hs.Close()
			tr.Close()
		})
		srvs, urls = append(srvs, srv), append(urls, url)
	}
	return srvs, urls
}

// actorOn creates stall actors prefix0, prefix1, … through the server at
// url until one is placed on srv itself, and returns its ID.
func actorOn(t *testing.T, url string, srv *nola.Server, prefix string) string {
	t.Helper()
	c := httpapi.NewClient(url, "")
	defer c.Close()
	for i := range 32 {
		id := prefix + strconv.Itoa(i)
		if _, err := c.Invoke(ctx(t), "t", id, "stall", "noop", nil); err != nil {
			t.Fatal(err)
		}
		if srv.Hosts("t", id) {
			return id
		}
	}
	t.Fatalf("none of 32 actors was placed on %s", url)
	return ""
}
