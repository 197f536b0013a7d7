package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// Issue 10, finding 3: an upload past the namespace quota answers
// too_large, saying which quota and what to do, over HTTP.
func TestModuleQuotaAnswersTooLarge(t *testing.T) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	defer tr.Close()
	srv, err := nola.NewServer(nola.ServerConfig{ID: "q", Addr: url, Runtime: r, Store: store, Transport: tr, Types: actors.Types()})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(url, srv)
	mods := modules.New(store, modules.Config{Quota: modules.Quota{MaxModules: 1}})
	hs.Config.Handler = httpapi.NewHandler(srv, httpapi.Options{Modules: httpapi.Modules(mods)})
	hs.Start()
	defer hs.Close()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	c := httpapi.NewClient(url, "")
	defer c.Close()
	ctx := context.Background()
	if _, _, err := c.PutModule(ctx, "demo", "a", wasmtest.C(t, "counter")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.PutModule(ctx, "demo", "b", wasmtest.C(t, "echo"))
	if nola.CodeOf(err) != nola.CodeTooLarge || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("upload past the quota: %v (code %q), want too_large naming the quota", err, nola.CodeOf(err))
	}
}
