package storeless_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/linearizability"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/storeless"
)

// net is a test network: probes between servers whose pair is cut fail,
// as they would across a partition. Forwarding follows the views, so a
// cut pair never forwards to each other once their probes have failed.
type testNet struct {
	mu  sync.Mutex
	cut map[[2]string]bool
}

func (tn *testNet) setCut(a, b string, cut bool) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	tn.cut[[2]string{a, b}] = cut
	tn.cut[[2]string{b, a}] = cut
}

func (tn *testNet) probe(from string) func(ctx context.Context, url string) error {
	return func(ctx context.Context, url string) error {
		tn.mu.Lock()
		cut := tn.cut[[2]string{from, url}]
		tn.mu.Unlock()
		if cut {
			return errors.New("partitioned")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
}

// freeAddrs reserves n loopback ports (the peers' URLs must be known
// before the nodes start).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

type cluster struct {
	t     testing.TB
	net   *testNet
	urls  []string
	nodes []*node.Node
}

// startCluster starts n store-less nodes on loopback that know each other
// by a static list; membership rounds run only when the test calls round.
func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	return startClusterWith(t, n, func(*node.Options) {})
}

func startClusterWith(t testing.TB, n int, opt func(*node.Options)) *cluster {
	t.Helper()
	c := &cluster{t: t, net: &testNet{cut: map[[2]string]bool{}}}
	for _, a := range freeAddrs(t, n) {
		c.urls = append(c.urls, "http://"+a)
	}
	for i := range n {
		o := node.Options{
			ID: fmt.Sprintf("s%d", i), Listen: strings.TrimPrefix(c.urls[i], "http://"),
			Types: actors.Types(), Workers: actors.Workers(), LeaseTTL: 2 * time.Second,
			Hash: &node.Hash{Peers: c.urls, Interval: -1, Probe: c.net.probe(c.urls[i])},
		}
		opt(&o)
		nd, err := node.Start(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
		t.Cleanup(func() { _ = nd.Close() })
	}
	c.round()
	return c
}

// round runs a membership round on every running node, twice (a member
// counts as gone after two failed probes).
func (c *cluster) round() {
	for range 2 {
		for _, nd := range c.nodes {
			if nd != nil {
				nd.Router().Round(context.Background())
			}
		}
	}
}

func (c *cluster) client(i int) *httpapi.Client { return httpapi.NewClient(c.urls[i], "") }

// hosts lists the nodes that hold an activation of (ns, id).
func (c *cluster) hosts(ns, id string) []int {
	var out []int
	for i, nd := range c.nodes {
		if nd != nil && nd.Server().Hosts(ns, id) {
			out = append(out, i)
		}
	}
	return out
}

func inc(t *testing.T, cl *httpapi.Client, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := cl.Invoke(ctx, "demo", id, "counter", "inc", nil)
	if err != nil {
		t.Fatalf("inc %s: %v", id, err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("inc %s: %q", id, b)
	}
	return n
}

// While membership is stable, calls through any server reach one
// activation per actor, on the actor's owner in every view, and each
// actor's counter runs 0, 1, 2, … without a reset.
func TestStableMembershipOneActivation(t *testing.T) {
	c := startCluster(t, 3)
	for _, nd := range c.nodes {
		if got := len(nd.Router().Members().Live()); got != 3 {
			t.Fatalf("%s sees %d live members, want 3", nd.URL(), got)
		}
	}
	const actorsN, rounds = 12, 4
	used := map[int]bool{}
	for r := range rounds {
		for a := range actorsN {
			id := fmt.Sprintf("c%d", a)
			via := (a + r) % 3 // every actor is called through every server
			if got := inc(t, c.client(via), id); got != r {
				t.Fatalf("%s round %d via server %d: got %d, want %d (a second activation?)", id, r, via, got, r)
			}
		}
	}
	for a := range actorsN {
		id := fmt.Sprintf("c%d", a)
		h := c.hosts("demo", id)
		if len(h) != 1 {
			t.Fatalf("%s is hosted by %v, want exactly one server", id, h)
		}
		owner := c.nodes[0].Router().Members().Owner("demo", id)
		if c.urls[h[0]] != owner {
			t.Fatalf("%s is hosted by %s, its ring owner is %s", id, c.urls[h[0]], owner)
		}
		used[h[0]] = true
	}
	if len(used) < 2 {
		t.Fatalf("all %d actors on one server: the ring does not spread them", actorsN)
	}
}

// Actor-to-actor calls route by the ring too: a caller actor on one
// server reaches the counter on its owner, and the counter has one
// activation.
func TestActorToActorRoutesByRing(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := c.nodes[0].Router().Members()
	// A caller and a target owned by different servers.
	target := ""
	for i := range 100 {
		id := fmt.Sprintf("t%d", i)
		if m.Owner("demo", id) != m.Owner("demo", "caller") {
			target = id
			break
		}
	}
	for want := range 3 {
		b, err := c.client(want%3).Invoke(ctx, "demo", "caller", "caller", "call", []byte("counter/"+target+"/inc"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != strconv.Itoa(want) {
			t.Fatalf("call %d: got %q, want %d", want, b, want)
		}
	}
	h := c.hosts("demo", target)
	if len(h) != 1 || c.urls[h[0]] != m.Owner("demo", target) {
		t.Fatalf("target hosted by %v, want only its owner %s", h, m.Owner("demo", target))
	}
	if hc := c.hosts("demo", "caller"); len(hc) != 1 || c.urls[hc[0]] != m.Owner("demo", "caller") {
		t.Fatalf("caller hosted by %v, want only its owner", hc)
	}
}

// A server that leaves: its actors come back on the others, with their
// in-memory state reset; the others' actors stay where they were.
func TestMemberLeavesActorsMove(t *testing.T) {
	c := startCluster(t, 3)
	const actorsN = 12
	for a := range actorsN {
		for range 2 {
			inc(t, c.client(0), fmt.Sprintf("c%d", a))
		}
	}
	gone := c.hosts("demo", "c0")[0]
	stayed := map[string]int{}
	for a := range actorsN {
		id := fmt.Sprintf("c%d", a)
		if h := c.hosts("demo", id); h[0] != gone {
			stayed[id] = h[0]
		}
	}
	_ = c.nodes[gone].Close() // a crash: nothing is handed over
	c.nodes[gone] = nil
	c.round()
	alive := (gone + 1) % 3
	if got := len(c.nodes[alive].Router().Members().Live()); got != 2 {
		t.Fatalf("after the crash %d members are live, want 2", got)
	}
	for a := range actorsN {
		id := fmt.Sprintf("c%d", a)
		got := inc(t, c.client(alive), id)
		if host, ok := stayed[id]; ok {
			if got != 2 || c.hosts("demo", id)[0] != host {
				t.Fatalf("%s did not live on the crashed server but got %d on %v, want 2 on %d", id, got, c.hosts("demo", id), host)
			}
			continue
		}
		if got != 0 {
			t.Fatalf("%s moved off the crashed server: got %d, want 0 (its memory is lost)", id, got)
		}
		if h := c.hosts("demo", id); len(h) != 1 || h[0] == gone {
			t.Fatalf("%s hosted by %v after the move", id, h)
		}
	}
}

// A membership change releases the actors whose owner moved: when a
// partitioned server comes back, the activations the others made of its
// actors are released, and the next call activates them on it.
func TestRejoinReleasesMovedActors(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.urls[0], c.urls[1]
	id := ""
	for i := range 100 {
		if x := fmt.Sprintf("r%d", i); c.nodes[0].Router().Members().Owner("demo", x) == b {
			id = x
			break
		}
	}
	c.net.setCut(a, b, true)
	c.round()
	inc(t, c.client(0), id) // 0, on server 0: it sees no one else
	if h := c.hosts("demo", id); len(h) != 1 || h[0] != 0 {
		t.Fatalf("during the cut: hosted by %v, want [0]", h)
	}
	c.net.setCut(a, b, false)
	c.round()
	if h := c.hosts("demo", id); len(h) != 0 {
		t.Fatalf("after the heal the moved activation should be released; hosted by %v", h)
	}
	if got := c.nodes[0].Router().Moved(); got != 1 {
		t.Fatalf("server 0 counts %d moves, want 1", got)
	}
	if got := inc(t, c.client(0), id); got != 0 {
		t.Fatalf("after the move back: got %d, want 0", got)
	}
	if h := c.hosts("demo", id); len(h) != 1 || h[0] != 1 {
		t.Fatalf("after the heal: hosted by %v, want [1] (its owner)", h)
	}
}

// KV calls fail with a typed error (errors.Is nola.ErrUnsupported, HTTP
// 501) whose message says why and what to use instead; so do the KV read,
// list and delete endpoints.
func TestKVIsUnsupported(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		_, err := c.client(i).Invoke(ctx, "demo", "k1", "kvcounter", "inc", nil)
		if !errors.Is(err, nola.ErrUnsupported) {
			t.Fatalf("via %d: KV call: %v, want ErrUnsupported", i, err)
		}
		if !strings.Contains(err.Error(), "store-less") || !strings.Contains(err.Error(), "--registry store") {
			t.Fatalf("via %d: message does not say why and what to use: %v", i, err)
		}
	}
	for _, p := range []struct{ method, path string }{
		{"GET", "/v1/ns/demo/actors/k1/kv"}, {"GET", "/v1/ns/demo/actors/k1/kv/n"},
		{"GET", "/v1/ns/demo/actors"}, {"DELETE", "/v1/ns/demo/actors/k1"},
	} {
		req, _ := http.NewRequestWithContext(ctx, p.method, c.urls[1]+p.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), `"unsupported"`) {
			t.Fatalf("%s %s: HTTP %d %s, want 501 unsupported", p.method, p.path, resp.StatusCode, body)
		}
	}
}

// THE test that shows store-less mode is not linearizable: two servers
// that cannot see each other both activate the same counter and both
// answer, so one caller alternating between them sees two interleaved
// counters (0,0,1,1,2,2), which the counter-with-reset model rejects. If
// this test ever fails because the history became linearizable, the mode
// changed and its documentation must change with it.
func TestPartitionTwoActivations(t *testing.T) {
	c := startCluster(t, 2)
	c.net.setCut(c.urls[0], c.urls[1], true)
	c.round()
	for i, nd := range c.nodes {
		if live := nd.Router().Members().Live(); len(live) != 1 {
			t.Fatalf("server %d sees %v during the partition, want only itself", i, live)
		}
	}
	var ops []linearizability.Op
	var got []int
	for i := range 6 {
		call := int64(2 * i)
		v := inc(t, c.client(i%2), "split")
		got = append(got, v)
		ops = append(ops, linearizability.Op{Object: "split", Kind: linearizability.CounterWithReset,
			Name: "inc", Value: strconv.Itoa(v), Found: true, Call: call, Return: call + 1})
	}
	if fmt.Sprint(got) != "[0 0 1 1 2 2]" {
		t.Fatalf("alternating callers saw %v, want two interleaved counters [0 0 1 1 2 2]", got)
	}
	if h := c.hosts("demo", "split"); len(h) != 2 {
		t.Fatalf("hosted by %v, want both servers", h)
	}
	rep, err := linearizability.Check(ops, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures()) != 1 {
		t.Fatalf("the checker accepted two interleaved counters %v; store-less mode must show as not linearizable", got)
	}
}

// Timers fire on the local activation, the actor's owner, whichever
// server the call that set them came through.
func TestTimersFireOnTheOwner(t *testing.T) {
	c := startCluster(t, 3)
	m := c.nodes[0].Router().Members()
	owner := -1
	for i, u := range c.urls {
		if m.Owner("demo", "tick") == u {
			owner = i
		}
	}
	via := (owner + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.client(via).Invoke(ctx, "demo", "tick", "ticker", "start", []byte("50ms")); err != nil {
		t.Fatal(err)
	}
	for {
		b, err := c.client((owner+2)%3).Invoke(ctx, "demo", "tick", "ticker", "ticks", nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(string(b)); n >= 2 {
			break
		}
		select { // wait for the next tick, bounded by the test's deadline
		case <-ctx.Done():
			t.Fatal("the timer never fired twice")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if h := c.hosts("demo", "tick"); len(h) != 1 || h[0] != owner {
		t.Fatalf("ticker hosted by %v, want only its owner %d", h, owner)
	}
}

// GET /v1/cluster shows the ring's members and their probe state, not
// only the private registry (where each server is alone); the default
// mode's fields are still there.
func TestClusterShowsRingMembers(t *testing.T) {
	c := startCluster(t, 3)
	c.net.setCut(c.urls[0], c.urls[2], true)
	c.round()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.client(0).Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, s := range st.Servers {
		addrs = append(addrs, s.Addr)
	}
	if fmt.Sprint(addrs) != fmt.Sprint([]string{c.urls[0], c.urls[1]}) && fmt.Sprint(addrs) != fmt.Sprint([]string{c.urls[1], c.urls[0]}) {
		t.Fatalf("servers = %v, want server 0 and 1 (2 is cut off)", addrs)
	}
	if st.Self.ID == "" {
		t.Fatalf("self status lost: %+v", st.Self)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.urls[0]+"/v1/cluster", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Members []storeless.MemberStatus `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{c.urls[0]: true, c.urls[1]: true, c.urls[2]: false}
	if len(body.Members) != 3 {
		t.Fatalf("members = %+v, want 3", body.Members)
	}
	for _, m := range body.Members {
		live, ok := want[m.URL]
		if !ok || m.Live != live || m.Self != (m.URL == c.urls[0]) {
			t.Fatalf("member %+v: want live=%v self=%v", m, live, m.URL == c.urls[0])
		}
		if !live && (m.Failures < 2 || !strings.Contains(m.LastError, "partitioned")) {
			t.Fatalf("cut member %+v: want its probe failures and error", m)
		}
	}
}
