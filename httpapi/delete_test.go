package httpapi_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// DELETE through a server that does not own the actor: the delete travels
// the HTTP transport to the owner, which stops the activation and commits
// the tombstone; afterwards the actor is gone everywhere.
func TestDeleteActorOverHTTP(t *testing.T) {
	nodes := startCluster(t, 3, httpapi.Options{})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	for range 3 {
		if _, err := c.Invoke(ctx(t), "dns", "a", "kvcounter", "inc", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Invoke(ctx(t), "dns", "b", "kvcounter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	owner := -1
	for i, n := range nodes {
		if n.srv.Hosts("dns", "a") {
			owner = i
		}
	}
	if owner < 0 {
		t.Fatal("no server hosts the actor")
	}
	via := httpapi.NewClient(nodes[(owner+1)%len(nodes)].url, "")
	defer via.Close()
	if err := via.DeleteActor(ctx(t), "dns", "a"); err != nil {
		t.Fatalf("delete via a non-owner: %v", err)
	}
	if nodes[owner].srv.Hosts("dns", "a") {
		t.Fatal("the owner still hosts the deleted actor")
	}
	if nodes[owner].srv.Stats().Deleted != 1 {
		t.Fatalf("owner counted %d deletes, want 1", nodes[owner].srv.Stats().Deleted)
	}
	if _, found, err := c.GetKV(ctx(t), "dns", "a", "n"); err != nil || found {
		t.Fatalf("KV of the deleted actor: found=%v err=%v", found, err)
	}
	if scan, err := c.ScanKV(ctx(t), "dns", "a", nil, "", "", 10); err != nil || len(scan.Entries) != 0 {
		t.Fatalf("scan of the deleted actor = %+v, %v", scan, err)
	}
	if _, err := c.Invoke(ctx(t), "dns", "a", "", "get", nil); !errors.Is(err, nola.ErrBadRequest) {
		t.Fatalf("untyped invoke of the deleted actor: %v, want bad_request (not found)", err)
	}
	list, err := c.ListActors(ctx(t), "dns", "", 10)
	if err != nil || len(list.Actors) != 1 || list.Actors[0].ID != "b" {
		t.Fatalf("listing after delete = %+v, %v", list, err)
	}
	if err := c.DeleteActor(ctx(t), "dns", "a"); !errors.Is(err, nola.ErrNotFound) {
		t.Fatalf("second delete: %v, want not_found", err)
	}
	if v, err := c.Invoke(ctx(t), "dns", "a", "kvcounter", "inc", nil); err != nil || string(v) != "1" {
		t.Fatalf("typed invoke after delete = %q, %v; want a new actor (1)", v, err)
	}
	// The raw answers: 204, then 404 with the not_found body.
	for _, want := range []int{http.StatusNoContent, http.StatusNotFound} {
		req, _ := http.NewRequest(http.MethodDelete, nodes[2].url+"/v1/ns/dns/actors/b", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("DELETE b: HTTP %d, want %d", resp.StatusCode, want)
		}
	}
}

// DELETE of a module: refused (409 conflict) while an actor has its type,
// done (204) once the actor is deleted; the ID cannot be used again.
func TestDeleteModuleOverHTTP(t *testing.T) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	ms := modules.New(store, modules.Config{})
	nodes := startOn(t, r, store, 1, httpapi.Options{Modules: httpapi.Modules(ms)})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	bin := wasmtest.C(t, "counter")
	if _, _, err := c.PutModule(ctx(t), "mns", "m", bin); err != nil {
		t.Fatal(err)
	}
	// An actor of the module's type (placed directly: the Go-only test
	// server has no WASM host to run it).
	if _, err := registry.New(store, r, registry.Options{}).EnsureActivation(ctx(t), "mns", "user", "m"); err != nil {
		t.Fatal(err)
	}
	err := c.DeleteModule(ctx(t), "mns", "m")
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != "conflict" || !strings.Contains(ne.Message, `"user"`) {
		t.Fatalf("delete of a module in use: %v, want conflict naming the actor", err)
	}
	if err := c.DeleteActor(ctx(t), "mns", "user"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModule(ctx(t), "mns", "m"); err != nil {
		t.Fatalf("delete of an unused module: %v", err)
	}
	if _, err := c.GetModule(ctx(t), "mns", "m"); !errors.Is(err, nola.ErrNotFound) {
		t.Fatalf("download after delete: %v, want not_found", err)
	}
	if _, _, err := c.PutModule(ctx(t), "mns", "m", bin); !errors.Is(err, nola.ErrBadRequest) {
		t.Fatalf("upload under a deleted ID: %v, want bad_request", err)
	}
	if err := c.DeleteModule(ctx(t), "mns", "m"); !errors.Is(err, nola.ErrNotFound) {
		t.Fatalf("second delete: %v, want not_found", err)
	}
}
