package storeless

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// A module copy carries the forwarding mark, whose value is the cluster's
// admin token, and the token itself. A member (or whatever answers at its
// URL: an ingress, a restarted host) that redirects the copy must not make
// the router send them on to another host.
func TestModuleCopyDoesNotFollowRedirects(t *testing.T) {
	const token = "admin-secret"
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if v := r.Header.Get(HeaderForwarded); v != "" {
			leaked = append(leaked, HeaderForwarded+": "+v)
		}
		if v := r.Header.Get("Authorization"); v != "" {
			leaked = append(leaked, "Authorization: "+v)
		}
	}))
	defer other.Close()
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer member.Close()

	m, err := NewMembers(MembersConfig{Self: "http://127.0.0.1:1", Peers: []string{member.URL},
		Probe: func(context.Context, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	m.Round(context.Background())
	if len(m.Live()) != 2 {
		t.Fatalf("live = %v, want self and the member", m.Live())
	}
	r := NewRouter(RouterConfig{Members: m, AdminToken: token})
	api := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body) // the API stores the module
		w.WriteHeader(http.StatusCreated)
	})
	req := httptest.NewRequest(http.MethodPut, "/v1/ns/demo/modules/m", strings.NewReader("\x00asm module bytes"))
	rec := httptest.NewRecorder()
	r.Wrap(api).ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("upload: HTTP %d, want 201", rec.Code)
	}
	if got := rec.Header().Get("Nola-Copied-To"); got != "0/1" {
		t.Errorf("Nola-Copied-To = %q, want 0/1 (a redirect is not a stored copy)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Fatalf("the copy followed the member's redirect and sent %v to another host", leaked)
	}
}

// countingRT is a RoundTripper that counts CloseIdleConnections calls.
type countingRT struct {
	http.RoundTripper
	closed int
}

func (c *countingRT) CloseIdleConnections() { c.closed++ }

// A stopping node closes the idle connections of forwarding and probes:
// each keep-alive connection to a peer holds goroutines until the peer
// closes it, which a peer that keeps running never does.
func TestCloseIdleConnections(t *testing.T) {
	probes, fwd := &countingRT{}, &countingRT{}
	m, err := NewMembers(MembersConfig{Self: "http://127.0.0.1:1", HTTPClient: &http.Client{Transport: probes}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(RouterConfig{Members: m, HTTP: fwd})
	r.CloseIdleConnections()
	if probes.closed != 1 || fwd.closed != 1 {
		t.Fatalf("idle connections closed: probes %d, forwarding %d times; want 1 each", probes.closed, fwd.closed)
	}
}
