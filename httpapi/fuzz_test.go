package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

const (
	fuzzAdmin = "fuzz-admin"
	fuzzAlice = "fuzz-alice" // grants namespace "alice" only
)

// FuzzHandler sends arbitrary requests (method, target, header lines,
// body), parsed by net/http's own request reader as a server would, to the
// whole API of one server on memkv with a module store and both kinds of
// token. Whatever the request, the handler must not panic and:
//   - never answers 500 (memkv does not fail: a 500 is a bug);
//   - every error is the JSON ErrorBody with a code whose status it has,
//     and a 405 lists the allowed methods;
//   - authentication holds: without the admin token nothing but /healthz
//     and /readyz succeeds, and the namespace token succeeds only in its
//     own namespace.
func FuzzHandler(f *testing.F) {
	seeds := []struct{ method, target, headers, body string }{
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "Authorization: Bearer " + fuzzAlice, ""},
		{"POST", "/v1/ns/alice/actors/k/invoke/add?type=kvcounter", "Authorization: bearer " + fuzzAlice + "\nNola-Timeout-Ms: 500", "7"},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "Authorization: Bearer " + fuzzAlice, ""},
		{"POST", "/v1/ns/bob/actors/e/invoke/echo?type=echo", "Authorization: Bearer " + fuzzAdmin, "hello"},
		{"POST", "/v1/ns/bob/actors/e/invoke/panic?type=echo", "Authorization: Bearer " + fuzzAdmin, ""},
		{"POST", "/v1/internal/invoke?ns=alice&id=a&type=counter&op=inc&chain=x", "Authorization: Bearer " + fuzzAdmin + "\nNola-Timeout-Ms: 99999999999999999999", ""},
		{"GET", "/v1/ns/alice/actors?limit=5&after=a", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/alice/actors/k/kv?prefix=n&limit=1", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/alice/actors/k/kv?start=a&end=z&cursor=bg", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/alice/actors/k/kv/n", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/alice/modules", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/alice/modules/m", "Authorization: Bearer " + fuzzAlice, ""},
		{"PUT", "/v1/ns/alice/modules/bomb", "Authorization: Bearer " + fuzzAlice, "\x00asm\x01\x00\x00\x00\x06\x0d\xff\xff\xff\xff\x0f\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"GET", "/v1/cluster", "Authorization: Bearer " + fuzzAdmin, ""},
		{"GET", "/metrics", "Authorization: Bearer " + fuzzAdmin, ""},
		{"DELETE", "/v1/ns/alice/actors", "Authorization: Bearer " + fuzzAlice, ""},
		{"GET", "/v1/ns/%2E%2E/actors/%00/kv/a%2Fb", "Authorization: Bearer " + fuzzAdmin, ""},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "Transfer-Encoding: chunked", "0\r\n\r\n"},
		{"POST", "/v1/ns/alice/actors/a/invoke/inc", "Authorization: Bearer " + fuzzAlice + "\nContent-Length: 99", "short"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.headers, []byte(s.body))
	}
	// A real module upload, so that the fuzzer starts from a valid one.
	f.Add("PUT", "/v1/ns/alice/modules/counter", "Authorization: Bearer "+fuzzAlice, wasmtest.C(f, "counter"))

	h, stop := fuzzHandler(f)
	defer stop()
	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte) {
		req := fuzzRequest(method, target, headers, body)
		if req == nil {
			return // net/http's server would not have accepted it either
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkFuzzResponse(t, req, rec)
	})
}

// fuzzRequest builds the request a server would read from these bytes, or
// nil if net/http refuses them.
func fuzzRequest(method, target, headers string, body []byte) *http.Request {
	if strings.ContainsAny(method+target, " \r\n") {
		return nil
	}
	var raw strings.Builder
	raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: fuzz\r\n")
	for line := range strings.SplitSeq(headers, "\n") {
		if line = strings.TrimSuffix(line, "\r"); line != "" && !strings.Contains(line, "\r") {
			raw.WriteString(line + "\r\n")
		}
	}
	// Without framing of its own, the body is what follows the headers
	// (as a client would send it).
	if lh := strings.ToLower(headers); !strings.Contains(lh, "content-length") && !strings.Contains(lh, "transfer-encoding") {
		raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	raw.WriteString("\r\n")
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(raw.String()), bytes.NewReader(body))))
	if err != nil {
		return nil
	}
	return req
}

func checkFuzzResponse(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	code := rec.Code
	what := req.Method + " " + req.RequestURI
	if code == http.StatusInternalServerError {
		t.Fatalf("%s: 500: %s", what, rec.Body.String())
	}
	if code >= 400 {
		var eb ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Code == "" {
			t.Fatalf("%s: HTTP %d with a body that is not an ErrorBody: %q", what, code, rec.Body.String())
		}
		if want := statusOf(eb.Code); want != code {
			t.Fatalf("%s: HTTP %d for code %q (which is HTTP %d)", what, code, eb.Code, want)
		}
		if code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Fatalf("%s: 405 without Allow", what)
		}
	}
	if code < 200 || code > 299 {
		return
	}
	path := req.URL.Path
	switch tok := bearer(req); {
	case path == "/healthz" || path == "/readyz":
	case tok == fuzzAdmin:
	case tok == fuzzAlice && strings.HasPrefix(path, "/v1/ns/alice/"):
	default:
		t.Fatalf("%s with token %q: HTTP %d; the token does not grant it", what, tok, code)
	}
}

// fuzzHandler runs one server on memkv behind the API with a module store
// and tokens; stop shuts it down.
func fuzzHandler(tb testing.TB) (http.Handler, func()) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	tr := NewTransport(TransportOptions{Token: fuzzAdmin})
	srv, err := nola.NewServer(nola.ServerConfig{
		ID: "fuzz", Addr: "http://fuzz.invalid", Runtime: r, Store: store,
		Transport: tr, Types: actors.Types(),
		Limits: nola.Limits{MaxPayloadBytes: 1 << 12},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tr.SetLocal("http://fuzz.invalid", srv)
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	mods := modules.New(store, modules.Config{Quota: modules.Quota{MaxBytes: 4 << 20, MaxModules: 16}})
	h := NewHandler(srv, Options{
		AdminToken:      fuzzAdmin,
		NamespaceTokens: map[string]string{fuzzAlice: "alice"},
		Modules:         Modules(mods),
		Metrics:         prometheus.NewRegistry(),
		// Nothing the fuzzer sends may hold an exec for long.
		DefaultTimeout: 2 * time.Second, MaxTimeout: 2 * time.Second,
		MaxModuleBytes: 1 << 20,
	})
	return h, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		tr.Close()
		_ = store.Close()
	}
}

// The fuzz harness reaches the API: a few seeds succeed, others are refused
// for the reason they should be (a harness whose every request failed
// early would fuzz nothing).
func TestFuzzHandlerHarness(t *testing.T) {
	h, stop := fuzzHandler(t)
	defer stop()
	for _, c := range []struct {
		method, target, headers, body string
		want                          int
	}{
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "Authorization: Bearer " + fuzzAlice, "", 200},
		{"POST", "/v1/ns/alice/actors/k/invoke/add?type=kvcounter", "Authorization: bearer " + fuzzAlice, "7", 200},
		{"GET", "/v1/ns/alice/actors/k/kv/n", "Authorization: Bearer " + fuzzAlice, "", 200},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "Authorization: Bearer " + fuzzAlice, "", 403},
		{"PUT", "/v1/ns/alice/modules/counter", "Authorization: Bearer " + fuzzAlice, string(wasmtest.C(t, "counter")), 201},
		{"GET", "/v1/cluster", "Authorization: Bearer " + fuzzAdmin, "", 200},
		{"GET", "/v1/cluster", "", "", 401},
		{"DELETE", "/v1/ns/alice/actors", "Authorization: Bearer " + fuzzAlice, "", 405},
	} {
		req := fuzzRequest(c.method, c.target, c.headers, []byte(c.body))
		if req == nil {
			t.Fatalf("%s %s: not a request", c.method, c.target)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s: HTTP %d (%s), want %d", c.method, c.target, rec.Code, rec.Body.String(), c.want)
		}
		checkFuzzResponse(t, req, rec)
	}
}
