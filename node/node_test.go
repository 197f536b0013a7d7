package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm"
)

// start starts a node and stops it gracefully at the test's end.
func start(t *testing.T, o node.Options) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := n.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return n
}

func client(t *testing.T, n *node.Node, token string) *httpapi.Client {
	c := httpapi.NewClient(n.URL(), token)
	t.Cleanup(c.Close)
	return c
}

// Options that cannot work are refused before the listener is bound: the
// listen address here is taken, so a node that bound it first would
// answer "address already in use" instead of naming the bad option.
func TestBadOptionsAreReportedBeforeBinding(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	shared := memkv.New(rt.NewReal(), memkv.Options{})
	defer shared.Close()
	for _, c := range []struct {
		field string
		o     node.Options
	}{
		{"Store.Kind", node.Options{Store: node.Store{Kind: "bogus"}}},
		{"Store.Kind", node.Options{Store: node.Store{Kind: "memory", KV: shared}}},
		{"Store.Endpoints", node.Options{Store: node.Store{Kind: "memory", Endpoints: []string{"127.0.0.1:2379"}}}},
		{"Store.Endpoints", node.Options{Store: node.Store{CAFile: "ca.pem"}}},
		{"Store.EtcdListen", node.Options{Store: node.Store{Endpoints: []string{"127.0.0.1:2379"}, EtcdListen: "127.0.0.1:0"}}},
		{"Store.QuotaBytes", node.Options{Store: node.Store{QuotaBytes: -1}}},
		{"LeaseTTL", node.Options{LeaseTTL: 10 * time.Millisecond}},
		{"Limits", node.Options{Limits: nola.Limits{MaxPayloadBytes: -1}}},
		{"Types", node.Options{Types: map[string]nola.Factory{"x": nil}}},
		{"Workers", node.Options{Workers: map[string]nola.WorkerFunc{"x": nil}}},
		{"WASM.MemoryLimit", node.Options{WASM: &node.WASMOptions{MemoryLimit: 1}}},
		{"WASM.HostFunctions", node.Options{WASM: &node.WASMOptions{HostFunctions: []wasm.HostFunction{{Namespace: "kv", Operation: "get", Func: nopHostFn}}}}},
		{"WASM.HostFunctions", node.Options{WASM: &node.WASMOptions{HostFunctions: []wasm.HostFunction{{Namespace: "app", Operation: "x"}}}}},
		{"WASM.MaxHostCallBytes", node.Options{WASM: &node.WASMOptions{MaxHostCallBytes: -1}}},
		{"WASM.EngineIdle", node.Options{WASM: &node.WASMOptions{EngineIdle: -time.Second}}},
		{"Advertise", node.Options{Advertise: "ftp://x"}},
		{"NamespaceTokens", node.Options{NamespaceTokens: map[string]string{"t": "ns"}}},
		{"NamespaceTokens", node.Options{AdminToken: "a", NamespaceTokens: map[string]string{"a": "ns"}}},
	} {
		c.o.Listen = addr
		_, err := node.Start(context.Background(), c.o)
		var oe *node.Error
		if !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%+v: err = %v, want a *node.Error on %s", c.o, err, c.field)
		}
	}
	_, err = node.Start(context.Background(), node.Options{Listen: "nonsense"})
	var oe *node.Error
	if !errors.As(err, &oe) || oe.Field != "Listen" {
		t.Errorf("Listen nonsense: err = %v, want a *node.Error on Listen", err)
	}
	// Good options on the taken address fail on the listen itself.
	_, err = node.Start(context.Background(), node.Options{Listen: addr, Store: node.Store{Kind: "memory"}})
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("taken address: err = %v, want a listen error", err)
	}
}

// Three nodes on one store form a cluster: a call entering through any
// of them reaches the actor's one activation, and a graceful shutdown
// hands the actors to the survivors.
func TestThreeNodesOneStore(t *testing.T) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	t.Cleanup(func() { _ = store.Close() }) // after the nodes' shutdowns
	var nodes []*node.Node
	for i := range 3 {
		nodes = append(nodes, start(t, node.Options{
			ID: fmt.Sprintf("n%d", i), Store: node.Store{KV: store}, Types: actors.Types(),
			LeaseTTL: 2 * time.Second, AdminToken: "secret",
		}))
	}
	ctx := context.Background()
	for i, n := range nodes {
		out, err := client(t, n, "secret").Invoke(ctx, "demo", "c", "counter", "inc", nil)
		if err != nil || string(out) != fmt.Sprint(i) {
			t.Fatalf("counter inc through n%d = %q, %v; want %d", i, out, err, i)
		}
		out, err = client(t, n, "secret").Invoke(ctx, "demo", "k", "kvcounter", "inc", nil)
		if err != nil || string(out) != fmt.Sprint(i+1) {
			t.Fatalf("kvcounter inc through n%d = %q, %v; want %d", i, out, err, i+1)
		}
	}
	// Shut down whichever node hosts k; the KV counter goes on elsewhere.
	var host, other *node.Node
	for _, n := range nodes {
		if n.Server().Hosts("demo", "k") {
			host = n
		} else {
			other = n
		}
	}
	if host == nil {
		t.Fatal("no node hosts kvcounter k")
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := host.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	<-host.Done()
	if err := host.Err(); err != nil {
		t.Fatalf("Err after Shutdown = %v", err)
	}
	out, err := other.Client().Invoke(ctx, "demo", "k", "kvcounter", "inc", nil)
	if err != nil || string(out) != "4" {
		t.Fatalf("kvcounter after its host shut down = %q, %v; want 4", out, err)
	}
}

// The default store is an embedded etcd in DataDir: a node restarted on
// the same directory finds its actors' KV.
func TestEmbeddedEtcdKeepsKV(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	for want := 1; want <= 2; want++ {
		n, err := node.Start(ctx, node.Options{
			ID: "e", Store: node.Store{DataDir: dir}, Types: actors.Types(), LeaseTTL: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(n.EtcdEndpoints()) != 1 {
			t.Errorf("EtcdEndpoints = %v, want one", n.EtcdEndpoints())
		}
		out, err := httpapi.NewClient(n.URL(), "").Invoke(ctx, "ns", "k", "kvcounter", "inc", nil)
		if err != nil || string(out) != fmt.Sprint(want) {
			t.Errorf("run %d: kvcounter inc = %q, %v; want %d", want, out, err, want)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := n.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
	}
}

// Close stops at once; Done closes and later stops return at once.
func TestCloseThenShutdown(t *testing.T) {
	n, err := node.Start(context.Background(), node.Options{Store: node.Store{Kind: "memory"}, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	<-n.Done()
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close = %v", err)
	}
	if _, err := httpapi.NewClient(n.URL(), "").Invoke(context.Background(), "ns", "a", "", "x", nil); err == nil {
		t.Fatal("a closed node answered")
	}
}

func nopHostFn(context.Context, wasm.HostCall) ([]byte, error) { return nil, nil }

// A store-less node listening on every interface must say which URL the
// others know it by; a store and Hash together are refused.
func TestHashOptionsChecked(t *testing.T) {
	for _, o := range []node.Options{
		{Listen: "0.0.0.0:0", Hash: &node.Hash{Peers: []string{"http://10.0.0.1:9090"}}},
		{Listen: "[::]:0", Hash: &node.Hash{}},
		{Store: node.Store{Endpoints: []string{"127.0.0.1:2379"}}, Hash: &node.Hash{}},
		{Hash: &node.Hash{Peers: []string{"10.0.0.1:9090"}}},
	} {
		_, err := node.Start(context.Background(), o)
		var ne *node.Error
		if !errors.As(err, &ne) {
			t.Errorf("Start(%+v) = %v, want *node.Error", o, err)
		}
	}
}
