package httpapi_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// workerNodes starts n servers whose "where" worker answers with the ID of
// the server that ran it, and whose "hold" worker blocks until released
// (with a limit of one in flight).
func workerNodes(t *testing.T, n int, opts httpapi.Options, hold <-chan struct{}, entered chan<- struct{}) ([]*node, *memkv.Store, rt.Runtime) {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	nodes := startOn(t, r, store, n, opts, func(cfg *nola.ServerConfig) {
		id := cfg.ID
		cfg.MaxWorkerInFlight = 1
		cfg.Workers = map[string]nola.WorkerFunc{
			"where": func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
				if op == "fail" {
					return nil, errors.New("refused")
				}
				return append([]byte(id+":"+op+":"), p...), nil
			},
			"hold": func(wx *nola.WorkerContext, _ string, _ []byte) ([]byte, error) {
				entered <- struct{}{}
				<-hold
				return nil, nil
			},
		}
	})
	return nodes, store, r
}

// The public endpoint runs the worker on the server that received the
// call; errors keep their codes (429 and the retryable header for
// overloaded); the metrics count calls, errors, rejections and in-flight
// invocations per worker type.
func TestWorkerOverHTTP(t *testing.T) {
	hold, entered := make(chan struct{}), make(chan struct{}, 1)
	nodes, _, _ := workerNodes(t, 2, httpapi.Options{}, hold, entered)
	for i, nd := range nodes {
		c := httpapi.NewClient(nd.url, "")
		defer c.Close()
		res, err := c.CallWorker(ctx(t), "w", "where", "op", []byte("pay"))
		if want := nodes[i].srv.ID() + ":op:pay"; err != nil || string(res) != want {
			t.Fatalf("node %d: %q, %v; want %q", i, res, err, want)
		}
	}
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	_, err := c.CallWorker(ctx(t), "w", "where", "fail", nil)
	if nola.CodeOf(err) != nola.CodeActorError || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("failing worker: %v", err)
	}
	_, err = c.CallWorker(ctx(t), "w", "nope", "x", nil)
	if nola.CodeOf(err) != nola.CodeBadRequest {
		t.Fatalf("unknown worker: %v", err)
	}
	if _, err := c.CallWorker(ctx(t), "w", "", "x", nil); err == nil || !strings.Contains(err.Error(), "empty worker type") {
		t.Fatalf("empty type, client side: %v", err)
	}
	status := statusOf(t, nodes[0].url)
	for path, want := range map[string]int{
		"/v1/ns/w/workers//x":                 400,
		"/v1/ns/w/workers/where/":             400,
		"/v1/ns/w/workers/where/x":            200,
		"/v1/ns/w/workers/" + long() + "/x":   400,
		"/v1/ns/" + long() + "/workers/x/x":   400,
		"/v1/ns/w/workers/where/" + long():    400,
		"/v1/ns/w/workers/where/x?type=actor": 200, // query ignored
	} {
		if got := status(http.MethodPost, path, ""); got != want {
			t.Errorf("POST %s: %d, want %d", path, got, want)
		}
	}
	if got := status(http.MethodGet, "/v1/ns/w/workers/where/x", ""); got != 405 {
		t.Errorf("GET on a worker: %d, want 405", got)
	}

	// Fill the limit of one, then one more is overloaded: 429, retryable.
	done := make(chan error, 1)
	go func() {
		_, err := c.CallWorker(ctx(t), "w", "hold", "x", nil)
		done <- err
	}()
	<-entered
	req, _ := http.NewRequest(http.MethodPost, nodes[0].url+"/v1/ns/w/workers/hold/x", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(httpapi.HeaderRetryable) != "true" || !strings.Contains(string(body), `"overloaded"`) {
		t.Fatalf("at the limit: %d %q %s", resp.StatusCode, resp.Header.Get(httpapi.HeaderRetryable), body)
	}
	metrics := scrape(t, nodes[0].url)
	for _, want := range []string{
		`nola_worker_in_flight{namespace="",worker="hold"} 1`,
		`nola_worker_rejected_total{namespace="",worker="hold"} 1`,
		`nola_worker_max_in_flight{namespace="",worker="hold"} 1`,
		`nola_worker_calls_total{namespace="",worker="where"} 4`, // op, fail, x, x?type
		`nola_worker_errors_total{namespace="",worker="where"} 1`,
		`nola_invocations_total{code="overloaded",path="worker"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	st, err := c.Cluster(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var hold1 httpapi.WorkerCounters
	for _, w := range st.Self.Workers {
		if w.Type == "hold" {
			hold1 = w
		}
	}
	if hold1 != (httpapi.WorkerCounters{Type: "hold", Calls: 1, Rejected: 1, InFlight: 1, MaxInFlight: 1}) {
		t.Errorf("cluster view of the hold worker: %+v (all: %+v)", hold1, st.Self.Workers)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, nodes[0].url), `nola_worker_in_flight{namespace="",worker="hold"} 0`) {
		t.Error("in flight did not drop back to 0")
	}
}

// A standalone Go client reaches workers over the HTTP transport's
// internal endpoint, on whichever live server it picks.
func TestWorkerFromStandaloneClientOverHTTP(t *testing.T) {
	nodes, store, r := workerNodes(t, 2, httpapi.Options{AdminToken: "adm"}, nil, nil)
	tr := httpapi.NewTransport(httpapi.TransportOptions{Token: "adm"})
	defer tr.Close()
	cl, err := nola.NewClient(nola.ClientConfig{Runtime: r, Store: store, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for range 40 {
		res, err := cl.CallWorker(ctx(t), "w", "where", "op", []byte("p"))
		if err != nil {
			t.Fatal(err)
		}
		id, rest, _ := strings.Cut(string(res), ":")
		if rest != "op:p" {
			t.Fatalf("result %q", res)
		}
		ran[id] = true
	}
	// Chosen at random among live servers: 40 calls on 2 servers miss one
	// with probability 2^-39.
	if len(ran) != len(nodes) {
		t.Fatalf("ran on %v, want every server", ran)
	}
	_, err = cl.CallWorker(ctx(t), "w", "nope", "x", nil)
	if nola.CodeOf(err) != nola.CodeBadRequest {
		t.Fatalf("unknown worker: %v", err)
	}
}

func long() string { return strings.Repeat("n", 600) }

func scrape(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
