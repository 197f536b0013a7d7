package httpapi_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// A module download from the module store streams (modules.Store.Stream,
// a chunk at a time); it is the module's exact bytes, and a chunk found
// corrupt once the body has started cuts the response short, so the
// client gets an error rather than wrong bytes.
func TestStreamedModuleDownload(t *testing.T) {
	c := context.Background()
	store := memkv.New(rt.NewReal(), memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	ms := modules.New(store, modules.Config{ChunkBytes: 1024})
	bin := wasmtest.C(t, "hostile")
	info, err := ms.Put(c, "demo", "m", bin, modules.Options{})
	if err != nil || info.Chunks < 3 {
		t.Fatalf("put: %+v, %v", info, err)
	}
	if _, ok := httpapi.Modules(ms).(httpapi.ModuleStreamer); !ok {
		t.Fatal("the module store's adapter does not stream")
	}
	url, _ := startModuleServer(t, httpapi.Options{Modules: httpapi.Modules(ms)})
	cl := httpapi.NewClient(url, "")
	defer cl.Close()
	got, err := cl.GetModule(ctx(t), "demo", "m")
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("download: %d bytes, %v; want the module's %d", len(got), err, len(bin))
	}
	if _, err := cl.GetModule(ctx(t), "demo", "absent"); err == nil {
		t.Fatal("an absent module downloaded")
	}
	key := tuple.AppendInt(registry.NewKeyspace("nola").Sub("mod", "demo", "m", "c", info.Hash[:]), 2)
	if _, err := store.Commit(c, kv.Txn{Ops: []kv.Op{kv.Put(key, []byte("garbage"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.GetModule(ctx(t), "demo", "m"); err == nil {
		t.Fatalf("a corrupt module downloaded without error (%d bytes)", len(got))
	}
}
