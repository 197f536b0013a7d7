package storeless_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/storeless"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

func putModule(t *testing.T, url, token, ns, id string, wasm []byte) (copied string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url+"/v1/ns/"+ns+"/modules/"+id, bytes.NewReader(wasm))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT module: HTTP %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Nola-Copied-To")
}

// WASM actors work store-less: a module uploaded to one server is copied
// to the others (and to a server that joins later), every server reaches
// one activation per actor, and a WASM guest's KV call gets the typed
// error.
func TestWASMActorsAndModuleCopies(t *testing.T) {
	const token = "admin-token"
	c := startClusterWith(t, 3, func(o *node.Options) {
		o.WASM = &node.WASMOptions{}
		o.AdminToken = token
	})
	// Server 2 is cut off during the upload: it gets the module when it
	// comes back.
	c.net.setCut(c.urls[0], c.urls[2], true)
	c.net.setCut(c.urls[1], c.urls[2], true)
	c.round()
	if got := putModule(t, c.urls[0], token, "w", "counter", wasmtest.C(t, "counter")); got != "1/1" {
		t.Fatalf("copied to %q, want 1/1 (server 2 is cut off)", got)
	}
	putModule(t, c.urls[1], token, "w", "kvc", wasmtest.C(t, "kvcounter"))
	c.net.setCut(c.urls[0], c.urls[2], false)
	c.net.setCut(c.urls[1], c.urls[2], false)
	c.round() // server 2 joins the others' views: they push their modules

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nine actors, one of them owned by server 2 in the (agreed) ring:
	// the ring hashes the servers' URLs, whose ports are random, so nine
	// fixed IDs would all miss server 2 in about 1 run in 40.
	ids := make([]string, 9)
	for a := range ids {
		ids[a] = fmt.Sprintf("w%d", a)
	}
	ring := c.nodes[0].Router().Members()
	if !slices.ContainsFunc(ids, func(id string) bool { return ring.Owner("w", id) == c.urls[2] }) {
		for a := len(ids); ; a++ {
			if id := fmt.Sprintf("w%d", a); ring.Owner("w", id) == c.urls[2] {
				ids[len(ids)-1] = id
				break
			}
		}
	}
	owners := map[string]bool{}
	for r := range 3 {
		for a, id := range ids {
			b, err := httpapi.NewClient(c.urls[(a+r)%3], token).Invoke(ctx, "w", id, "counter", "inc", nil)
			if err != nil {
				t.Fatalf("%s via %d: %v", id, (a+r)%3, err)
			}
			if got, _ := strconv.Atoi(string(b)); got != r {
				t.Fatalf("%s round %d: got %s, want %d", id, r, b, r)
			}
		}
	}
	for _, id := range ids {
		h := c.hosts("w", id)
		if len(h) != 1 {
			t.Fatalf("%s hosted by %v", id, h)
		}
		owners[c.urls[h[0]]] = true
	}
	if !owners[c.urls[2]] {
		t.Fatalf("no WASM actor on server 2, which got its module late: %v", owners)
	}
	_, err := httpapi.NewClient(c.urls[2], token).Invoke(ctx, "w", "k", "kvc", "inc", nil)
	if !errors.Is(err, nola.ErrUnsupported) {
		t.Fatalf("WASM KV call: %v, want ErrUnsupported", err)
	}
}

// The forwarding mark is the cluster's: a client that forges it is
// refused, so it cannot pin an actor on a server of its choosing.
func TestForgedForwardingRefused(t *testing.T) {
	const token = "admin-token"
	c := startClusterWith(t, 2, func(o *node.Options) { o.AdminToken = token })
	req, _ := http.NewRequest(http.MethodPost, c.urls[0]+"/v1/ns/demo/actors/x/invoke/inc?type=counter", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(storeless.HeaderForwarded, "guess")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged %s: HTTP %d, want 403", storeless.HeaderForwarded, resp.StatusCode)
	}
	if h := c.hosts("demo", "x"); len(h) != 0 {
		t.Fatalf("the forged call activated the actor on %v", h)
	}
}

// A call whose owner crashed before any probe noticed fails retryably
// (it did not run); once the view changes it succeeds elsewhere.
func TestUnreachableOwnerIsRetryable(t *testing.T) {
	c := startCluster(t, 2)
	id := ""
	for i := range 100 {
		if x := fmt.Sprintf("u%d", i); c.nodes[0].Router().Members().Owner("demo", x) == c.urls[1] {
			id = x
			break
		}
	}
	_ = c.nodes[1].Close()
	c.nodes[1] = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.client(0).Invoke(ctx, "demo", id, "counter", "inc", nil)
	if !errors.Is(err, nola.ErrUnavailable) || !nola.IsRetryable(err) {
		t.Fatalf("owner down, not yet noticed: %v, want retryable unavailable", err)
	}
	c.round()
	if got := inc(t, c.client(0), id); got != 0 {
		t.Fatalf("after the view changed: got %d, want 0", got)
	}
}

func moduleStatus(t *testing.T, url, token, ns, id string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/ns/"+ns+"/modules/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// A module deleted while a member was cut off is deleted on that member
// when it rejoins, and the rejoiner's copy is not pushed back: a deletion
// is final (a deleted ID cannot be uploaded again), so it wins.
func TestDeletionReachesRejoiningMember(t *testing.T) {
	const token = "admin-token"
	c := startClusterWith(t, 3, func(o *node.Options) {
		o.WASM = &node.WASMOptions{}
		o.AdminToken = token
	})
	if got := putModule(t, c.urls[0], token, "w", "gone", wasmtest.C(t, "counter")); got != "2/2" {
		t.Fatalf("copied to %q, want 2/2", got)
	}
	putModule(t, c.urls[0], token, "w", "kept", wasmtest.C(t, "counter"))
	c.net.setCut(c.urls[0], c.urls[2], true)
	c.net.setCut(c.urls[1], c.urls[2], true)
	c.round()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := httpapi.NewClient(c.urls[0], token).DeleteModule(ctx, "w", "gone"); err != nil {
		t.Fatal(err)
	}
	if got := moduleStatus(t, c.urls[2], token, "w", "gone"); got != http.StatusOK {
		t.Fatalf("cut-off server: HTTP %d, want 200 (it missed the delete)", got)
	}
	c.net.setCut(c.urls[0], c.urls[2], false)
	c.net.setCut(c.urls[1], c.urls[2], false)
	c.round()
	for _, nd := range c.nodes {
		if err := nd.Router().WaitPushes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.urls {
		if got := moduleStatus(t, c.urls[i], token, "w", "gone"); got != http.StatusNotFound {
			t.Errorf("server %d after the rejoin: deleted module answers HTTP %d, want 404", i, got)
		}
		if got := moduleStatus(t, c.urls[i], token, "w", "kept"); got != http.StatusOK {
			t.Errorf("server %d after the rejoin: kept module answers HTTP %d, want 200", i, got)
		}
	}
}
