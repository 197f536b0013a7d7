package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// Namespace tokens alone (no admin token) turn authentication on: a missing
// token is 401, a namespace token grants its namespace only, and the admin
// endpoints are closed (an empty admin token once let everyone in).
func TestNamespaceTokensWithoutAdminTokenAreEnforced(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{
		NamespaceTokens: map[string]string{"alice-token": "alice"},
	})
	status := statusOf(t, nodes[0].url)
	cases := []struct {
		method, path, token string
		want                int
	}{
		{"POST", "/v1/ns/alice/actors/a/invoke/inc?type=counter", "", 401},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "", 401},
		{"POST", "/v1/ns/bob/actors/a/invoke/inc?type=counter", "alice-token", 403},
		{"GET", "/v1/cluster", "", 401},
		{"GET", "/metrics", "alice-token", 403},
		{"POST", "/v1/internal/invoke?ns=bob&id=a&type=counter&op=inc", "", 401},
	}
	for _, c := range cases {
		if got := status(c.method, c.path, c.token); got != c.want {
			t.Errorf("%s %s with %q: HTTP %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
}

// A password in the server URL never appears in the client's errors
// (every CLI command prints them).
func TestClientErrorsDoNotLeakURLCredentials(t *testing.T) {
	c := httpapi.NewClient("http://nola:s3cret-pw@127.0.0.1:1", "")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Invoke(ctx, "ns", "a", "counter", "inc", nil)
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error leaks the URL's password: %v", err)
	}
}

// A request that can never be sent (a URL of another scheme) is a bad
// request, not a call of unknown outcome.
func TestUnsendableRequestIsNotUnknownOutcome(t *testing.T) {
	c := httpapi.NewClient("ftp://127.0.0.1:1", "")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Invoke(ctx, "ns", "a", "counter", "inc", nil)
	if code := nola.CodeOf(err); code != nola.CodeBadRequest {
		t.Errorf("unsupported scheme reported as %s: %v", code, err)
	}
}

// Actor IDs "." and ".." are valid; the client escapes them, or the
// server's path cleaning would resolve them away.
func TestClientReachesDotActorIDs(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	for _, id := range []string{".", ".."} {
		got, err := c.Invoke(ctx(t), "web", id, "echo", "echo", []byte("hi"))
		if err != nil || string(got) != "hi" {
			t.Errorf("invoke actor %q: %q %v", id, got, err)
		}
	}
	// The raw API accepts them escaped.
	resp, err := http.Post(nodes[0].url+"/v1/ns/web/actors/%2E%2E/invoke/echo?type=echo", "", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("escaped %%2E%%2E: HTTP %d", resp.StatusCode)
	}
}

// Invocations rejected before the engine runs (a bad timeout header) are
// counted in nola_invocations_total too.
func TestRejectedInvocationsAreCounted(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	u := nodes[0].url
	req, _ := http.NewRequest("POST", u+"/v1/ns/m/actors/a/invoke/inc?type=counter", nil)
	req.Header.Set(httpapi.HeaderTimeout, "abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("bad header: HTTP %d", resp.StatusCode)
	}
	resp, err = http.Get(u + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `nola_invocations_total{code="bad_request",path="public"} 1`) {
		t.Errorf("a rejected invocation is missing from nola_invocations_total")
	}
}

// Empty names are refused by the client with an error that names them
// (not a path problem: the server has no route for an empty element).
func TestClientRefusesEmptyNames(t *testing.T) {
	c := httpapi.NewClient("http://127.0.0.1:1", "")
	defer c.Close()
	for _, call := range []struct {
		want string
		err  error
	}{
		{"empty namespace", func() error { _, err := c.Invoke(ctx(t), "", "a", "t", "op", nil); return err }()},
		{"empty actor ID", func() error { _, err := c.Invoke(ctx(t), "ns", "", "t", "op", nil); return err }()},
		{"empty operation", func() error { _, err := c.Invoke(ctx(t), "ns", "a", "t", "", nil); return err }()},
		{"empty KV key", func() error { _, _, err := c.GetKV(ctx(t), "ns", "a", ""); return err }()},
		{"empty module ID", func() error { _, err := c.GetModule(ctx(t), "ns", ""); return err }()},
	} {
		var ne *nola.Error
		if !errors.As(call.err, &ne) || ne.Code != nola.CodeBadRequest || ne.Message != call.want {
			t.Errorf("%v, want bad_request %q", call.err, call.want)
		}
	}
}

// The server says which name is empty too, for callers other than the
// client (it once redirected "actors//invoke" to a path that meant
// something else), and an unknown actor called without a type is told how
// to create it.
func TestServerNamesEmptyAndUnknownActors(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/v1/ns/ns/actors//invoke/inc", "empty actor ID"},
		{"POST", "/v1/ns//actors/a/invoke/inc", "empty namespace"},
		{"POST", "/v1/ns/ns/actors/a/invoke/", "empty operation"},
		{"GET", "/v1/ns/ns/actors//kv", "empty actor ID"},
		{"POST", "/v1/ns/ns/actors/nobody/invoke/inc", "actor ns/nobody not found: to create it, name its type (?type=TYPE)"},
	} {
		req, _ := http.NewRequest(c.method, nodes[0].url+c.path, nil)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body httpapi.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 400 || body.Code != nola.CodeBadRequest || body.Message != c.want {
			t.Errorf("%s %s: HTTP %d %+v (%v), want 400 %q", c.method, c.path, resp.StatusCode, body, err, c.want)
		}
	}
}

// A client that sends the headers and then stalls mid-body is answered
// (timeout) once the call's deadline passes, not held forever.
func TestStalledRequestBodyEndsAtTheDeadline(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(nodes[0].url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /v1/ns/web/actors/x/invoke/inc?type=counter HTTP/1.1\r\nHost: x\r\n%s: 300\r\nContent-Length: 100\r\n\r\nabc", httpapi.HeaderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout && resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: HTTP %d, want a timeout status", resp.StatusCode)
	}
}
