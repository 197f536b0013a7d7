package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

type node struct {
	srv  *nola.Server
	http *httptest.Server
	url  string
}

// startCluster runs n nola servers, each behind its own HTTP listener with
// the HTTP transport between them, over one memkv store.
func startCluster(t *testing.T, n int, opts httpapi.Options) []*node {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	return startOn(t, r, store, n, opts)
}

func startOn(t *testing.T, r rt.Runtime, store kv.Store, n int, opts httpapi.Options, configure ...func(*nola.ServerConfig)) []*node {
	t.Helper()
	var nodes []*node
	for i := range n {
		hs := httptest.NewUnstartedServer(nil)
		url := "http://" + hs.Listener.Addr().String()
		tr := httpapi.NewTransport(httpapi.TransportOptions{Token: opts.AdminToken})
		cfg := nola.ServerConfig{
			ID: fmt.Sprintf("h%d", i), Addr: url, Runtime: r, Store: store,
			Transport: tr, Types: actors.Types(), LeaseTTL: 3 * time.Second,
			Limits: nola.Limits{MaxPayloadBytes: 1 << 10},
		}
		for _, f := range configure {
			f(&cfg)
		}
		srv, err := nola.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tr.SetLocal(url, srv)
		o := opts
		o.Metrics = prometheus.NewRegistry()
		hs.Config.Handler = httpapi.NewHandler(srv, o)
		hs.Start()
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			hs.Close()
			tr.Close()
		})
		nodes = append(nodes, &node{srv: srv, http: hs, url: url})
	}
	return nodes
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestInvokeThroughAnyServer(t *testing.T) {
	nodes := startCluster(t, 2, httpapi.Options{})
	c0 := httpapi.NewClient(nodes[0].url, "")
	c1 := httpapi.NewClient(nodes[1].url, "")
	defer c0.Close()
	defer c1.Close()
	// Alternate entry points: every call after the first is routed to the
	// owner, wherever it entered.
	for i := range 6 {
		c := []*httpapi.Client{c0, c1}[i%2]
		got, err := c.Invoke(ctx(t), "web", "ctr", "counter", "inc", nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != fmt.Sprint(i) {
			t.Fatalf("call %d = %s", i, got)
		}
	}
	owners := 0
	for _, n := range nodes {
		if n.srv.Hosts("web", "ctr") {
			owners++
		}
	}
	if owners != 1 {
		t.Fatalf("%d servers host the actor", owners)
	}
	// Actor-to-actor across the HTTP transport.
	for i := range 4 {
		id := fmt.Sprintf("target%d", i)
		got, err := c0.Invoke(ctx(t), "web", "caller"+id, "caller", "call", []byte("counter/"+id+"/inc"))
		if err != nil || string(got) != "0" {
			t.Fatalf("caller → %s: %q %v", id, got, err)
		}
	}
}

func TestErrorsKeepTheirCodes(t *testing.T) {
	nodes := startCluster(t, 2, httpapi.Options{})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	check := func(name string, err error, code nola.Code) {
		t.Helper()
		var ne *nola.Error
		if !errors.As(err, &ne) || ne.Code != code {
			t.Errorf("%s: got %v, want code %s", name, err, code)
		}
	}
	_, err := c.Invoke(ctx(t), "web", "x", "no-such-type", "inc", nil)
	check("unknown type", err, nola.CodeBadRequest)
	_, err = c.Invoke(ctx(t), "web", "x", "counter", "nope", nil)
	check("actor error", err, nola.CodeActorError)
	_, err = c.Invoke(ctx(t), "web", "x", "echo", "echo", bytes.Repeat([]byte("x"), 2<<10))
	check("payload over the server's 1 KiB limit", err, nola.CodeTooLarge)
	_, err = c.Invoke(ctx(t), "web", "x", "kvcounter", "inc", nil)
	check("type mismatch", err, nola.CodeBadRequest)

	// The internal endpoint of a server that does not own the actor says
	// so, retryably.
	var owner, other *node
	for _, n := range nodes {
		if n.srv.Hosts("web", "x") {
			owner = n
		} else {
			other = n
		}
	}
	if owner == nil {
		t.Fatal("no owner")
	}
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	defer tr.Close()
	_, err = tr.Invoke(ctx(t), other.url, nola.Request{Namespace: "web", ActorID: "x", ActorType: "counter", Operation: "inc"})
	check("internal call to a non-owner", err, nola.CodeNotOwner)
	if !nola.IsRetryable(err) {
		t.Error("not_owner must be retryable")
	}

	// A timeout header beyond the cap is capped, not overflowed into the
	// past.
	for _, huge := range []string{"10000000000000", "99999999999999999999999"} { // the second overflows int64
		req0, _ := http.NewRequest(http.MethodPost, nodes[0].url+"/v1/ns/web/actors/x/invoke/inc", nil)
		req0.Header.Set(httpapi.HeaderTimeout, huge)
		if resp, err := http.DefaultClient.Do(req0); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("huge timeout header %s: %v %v", huge, resp.StatusCode, err)
		} else {
			resp.Body.Close()
		}
	}

	// A bad timeout header is a bad request, not a crash.
	req, _ := http.NewRequest(http.MethodPost, nodes[0].url+"/v1/ns/web/actors/x/invoke/inc", nil)
	req.Header.Set(httpapi.HeaderTimeout, "soon")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad timeout header: HTTP %d", resp.StatusCode)
	}
	// A closed port is unavailable and retryable: nothing was sent.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	_, err = tr.Invoke(ctx(t), deadURL, nola.Request{Namespace: "web", ActorID: "x", ActorType: "counter", Operation: "inc"})
	check("closed port", err, nola.CodeUnavailable)
	if !nola.IsRetryable(err) {
		t.Error("a refused connection must be retryable")
	}
}

func TestTokensAndNamespaceIsolation(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{
		AdminToken:      "admin-secret",
		NamespaceTokens: map[string]string{"alice-token": "alice"},
		Pprof:           true,
	})
	status := statusOf(t, nodes[0].url)
	cases := []struct {
		method, path, token string
		want                int
	}{
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "", 401},
		// A token nobody configured is not authenticated (401); a known
		// token without the namespace is authenticated but refused (403).
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "wrong", 401},
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "alice-token", 200},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "alice-token", 403},
		{"GET", "/v1/ns/bob/actors", "alice-token", 403},
		{"GET", "/v1/ns/alice/actors", "alice-token", 200},
		{"GET", "/v1/cluster", "alice-token", 403},
		{"POST", "/v1/internal/invoke?ns=alice&id=a&type=counter&op=inc", "alice-token", 403},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "admin-secret", 200},
		{"GET", "/v1/cluster", "admin-secret", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "alice-token", 403},
		{"GET", "/metrics", "wrong", 401},
		{"GET", "/metrics", "admin-secret", 200},
		{"GET", "/debug/pprof/cmdline", "", 401},
		{"GET", "/debug/pprof/cmdline", "admin-secret", 200},
	}
	for _, c := range cases {
		if got := status(c.method, c.path, c.token); got != c.want {
			t.Errorf("%s %s with %q: HTTP %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
	// The scheme is case-insensitive (RFC 7235): "bearer" works too.
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest("GET", nodes[0].url+"/v1/ns/alice/actors", nil)
		req.Header.Set("Authorization", scheme+" alice-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("scheme %q: HTTP %d, want 200", scheme, resp.StatusCode)
		}
	}
}

// A wrong method on an existing path is 405 with Allow; an unknown path
// stays 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	for _, c := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/v1/ns/a/actors/x/invoke/inc", 405, "POST"},
		{"DELETE", "/v1/cluster", 405, "GET, HEAD"},
		{"POST", "/v1/no/such/thing", 404, ""},
	} {
		req, _ := http.NewRequest(c.method, nodes[0].url+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: HTTP %d Allow %q (%s), want %d Allow %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), body, c.want, c.allow)
		}
	}
}

func TestKVAndActorListing(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	for i := range 3 {
		for range i + 1 {
			if _, err := c.Invoke(ctx(t), "kvns", fmt.Sprintf("k%d", i), "kvcounter", "inc", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	v, found, err := c.GetKV(ctx(t), "kvns", "k2", "n")
	if err != nil || !found || string(v) != "3" {
		t.Fatalf("kv get = %q %v %v", v, found, err)
	}
	if _, found, err := c.GetKV(ctx(t), "kvns", "k2", "missing"); err != nil || found {
		t.Fatalf("missing key: found=%v err=%v", found, err)
	}
	scan, err := c.ScanKV(ctx(t), "kvns", "k1", nil, "", "", 10)
	if err != nil || len(scan.Entries) != 1 || scan.Entries[0].Text != "2" {
		t.Fatalf("scan = %+v %v", scan, err)
	}
	page, err := c.ListActors(ctx(t), "kvns", "", 2)
	if err != nil || len(page.Actors) != 2 || !page.More || page.Actors[0].ID != "k0" {
		t.Fatalf("actors page 1 = %+v %v", page, err)
	}
	rest, err := c.ListActors(ctx(t), "kvns", page.Actors[1].ID, 2)
	if err != nil || len(rest.Actors) != 1 || rest.More || rest.Actors[0].ID != "k2" || rest.Actors[0].Type != "kvcounter" {
		t.Fatalf("actors page 2 = %+v %v", rest, err)
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	u := nodes[0].url
	get := func(path string) (int, string) {
		resp, err := http.Get(u + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	c := httpapi.NewClient(u, "")
	defer c.Close()
	if _, err := c.Invoke(ctx(t), "m", "a", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz %d while the lease is valid", code)
	}
	code, body := get("/metrics")
	for _, want := range []string{"nola_activations 1", `nola_invocations_total{code="ok",path="public"} 1`, "nola_invocation_seconds_bucket", "nola_lease_age_seconds", "nola_fences_total 0",
		"nola_activation_memory_bytes 1024", "nola_heap_bytes", "nola_invocation_busy_seconds_total", "nola_invocation_rate", "nola_shed_total 0", "nola_locality_moves_total 0"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	nodes[0].srv.Halt()
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("readyz %d after the server lost its lease", code)
	}
	if code, _ := get("/v1/nope"); code != 404 {
		t.Fatalf("unknown endpoint: %d", code)
	}
}

// statusOf returns a function that sends an empty request to the server at
// u, with token as its bearer token if set, and returns the HTTP status.
func statusOf(t *testing.T, u string) func(method, path, token string) int {
	return func(method, path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(method, u+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
}

// Creation arguments over HTTP: POST …/actors/{id} creates with the body
// (201, then 200 and nothing changed), the invoke header creates with its
// arguments, and both are bounded before anything is stored.
func TestCreateActorWithArgs(t *testing.T) {
	nodes := startCluster(t, 2, httpapi.Options{})
	c := httpapi.NewClient(nodes[1].url, "")
	defer c.Close()
	created, err := c.Create(ctx(t), "cr", "g1", "greeter", []byte("ada"))
	if err != nil || !created {
		t.Fatalf("create = %v, %v", created, err)
	}
	if created, err = c.Create(ctx(t), "cr", "g1", "greeter", []byte("bob")); err != nil || created {
		t.Fatalf("second create = %v, %v; want existed", created, err)
	}
	if got, err := c.Invoke(ctx(t), "cr", "g1", "", "hello", nil); err != nil || string(got) != "hello, ada" {
		t.Fatalf("hello = %q, %v", got, err)
	}
	got, err := c.InvokeCreating(ctx(t), "cr", "g2", "greeter", "hello", nil, []byte("\x00bin\xff"))
	if err != nil || string(got) != "hello, \x00bin\xff" {
		t.Fatalf("creating invoke = %q, %v", got, err)
	}
	if got, _ := c.Invoke(ctx(t), "cr", "g2", "", "args", nil); string(got) != "\x00bin\xff" {
		t.Fatalf("args = %q", got)
	}

	// Raw requests: status codes and the bounds.
	post := func(path string, body []byte, header http.Header) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, nodes[0].url+path, bytes.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/v1/ns/cr/actors/g3?type=greeter", nil, nil); code != http.StatusCreated || !strings.Contains(body, `"created": true`) {
		t.Errorf("create: %d %s", code, body)
	}
	if code, body := post("/v1/ns/cr/actors/g3?type=greeter", nil, nil); code != http.StatusOK || !strings.Contains(body, `"created": false`) {
		t.Errorf("create again: %d %s", code, body)
	}
	if code, body := post("/v1/ns/cr/actors/g4", nil, nil); code != http.StatusBadRequest {
		t.Errorf("create without type: %d %s", code, body)
	}
	big := bytes.Repeat([]byte("x"), 64<<10+1)
	if code, body := post("/v1/ns/cr/actors/g5?type=greeter", big, nil); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized create: %d %s", code, body)
	}
	hdr := http.Header{httpapi.HeaderCreationArgs: {strings.Repeat("A", 87384+4)}}
	if code, body := post("/v1/ns/cr/actors/g6/invoke/hello?type=greeter", nil, hdr); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized header: %d %s", code, body)
	}
	hdr = http.Header{httpapi.HeaderCreationArgs: {"not base64!"}}
	if code, body := post("/v1/ns/cr/actors/g6/invoke/hello?type=greeter", nil, hdr); code != http.StatusBadRequest {
		t.Errorf("malformed header: %d %s", code, body)
	}
	for _, id := range []string{"g5", "g6"} {
		if _, found, err := nodes[0].srv.Inspector().Actor(ctx(t), "cr", id); err != nil || found {
			t.Errorf("refused creation of %s left a record (found=%v err=%v)", id, found, err)
		}
	}
}

// An internal invoke's result carries its Content-Length, whatever its
// size: a small one is written without touching the response's headers
// (net/http then counts it, issue 16), a larger one with them set, as a
// public result is. Raising the bare writer's limit past net/http's
// buffer would send results just above it chunked, and fail here.
func TestInternalResultHasItsLength(t *testing.T) {
	n := startOn(t, rt.NewReal(), memkv.New(rt.NewReal(), memkv.Options{}), 1, httpapi.Options{}, func(c *nola.ServerConfig) {
		c.Limits.MaxPayloadBytes = 16 << 10
	})[0]
	// Placed (on n, the only server) by a public call first: the internal
	// endpoint runs only actors its server owns.
	resp, err := http.Post(n.url+"/v1/ns/web/actors/e/invoke/echo?type=echo", "application/octet-stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("placing the actor: HTTP %d", resp.StatusCode)
	}
	for _, size := range []int{0, 8, 2048, 2049, 3000, 9000} {
		payload := bytes.Repeat([]byte("x"), size)
		resp, err := http.Post(n.url+"/v1/internal/invoke?id=e&ns=web&op=echo&type=echo", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(b, payload) {
			t.Fatalf("%d bytes: HTTP %d, %d bytes back, %v", size, resp.StatusCode, len(b), err)
		}
		if resp.ContentLength != int64(size) || len(resp.TransferEncoding) != 0 {
			t.Fatalf("%d bytes: Content-Length %d, Transfer-Encoding %v; want the length, not chunked", size, resp.ContentLength, resp.TransferEncoding)
		}
		if ct := resp.Header.Get("Content-Type"); size > 2048 && ct != "application/octet-stream" {
			t.Fatalf("%d bytes: Content-Type %q", size, ct)
		}
	}
}
