package modules_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// forStores runs f on memkv and on embedded etcd: the delete's range
// compare over the namespace's actors must mean the same in both.
func forStores(t *testing.T, f func(t *testing.T, store kv.Store)) {
	t.Run("memkv", func(t *testing.T) { f(t, newStore(t, kv.Limits{})) })
	t.Run("etcd", func(t *testing.T) {
		e, err := etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: t.TempDir()}})
		if err != nil {
			t.Fatalf("start embedded etcd: %v", err)
		}
		t.Cleanup(func() { _ = e.Close() })
		f(t, e)
	})
}

// A module is deleted only once no actor has its type; the delete removes
// the manifest and every chunk (orphans of a crashed upload too) and gives
// back its quota, and its ID is never reused.
func TestDeleteModule(t *testing.T) {
	forStores(t, func(t *testing.T, store kv.Store) {
		ctx := context.Background()
		ms := modules.New(store, modules.Config{Quota: modules.Quota{MaxModules: 2}})
		counter, echo := wasmtest.C(t, "counter"), wasmtest.C(t, "echo")
		if _, err := ms.Put(ctx, "ns", "m", counter, modules.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ms.Put(ctx, "ns", "other", echo, modules.Options{}); err != nil {
			t.Fatal(err)
		}
		keys := registry.NewKeyspace("nola")
		// An orphan chunk of a crashed upload under the same ID.
		orphan := tuple.AppendInt(keys.Sub("mod", "ns", "m", "c", []byte("crashed-upload-hash-0123456789ab")), 0)
		if _, err := store.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(orphan, []byte("x"), kv.NoLease)}}); err != nil {
			t.Fatal(err)
		}
		r := rt.NewReal()
		reg := registry.New(store, r, registry.Options{})
		inc, err := reg.Register(ctx, "s1", "addr", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.EnsureActivation(ctx, "ns", "user", "m"); err != nil {
			t.Fatal(err)
		}
		_, err = ms.Delete(ctx, "ns", "m")
		var ue *modules.InUseError
		if !errors.Is(err, modules.ErrInUse) || !errors.As(err, &ue) || ue.Actor != "user" {
			t.Fatalf("delete of a module in use: %v, want an *InUseError naming user", err)
		}
		if _, err := reg.Delete(ctx, inc, "ns", "user"); err != nil {
			t.Fatal(err)
		}
		// The tombstone of the deleted actor does not hold the module.
		info, err := ms.Delete(ctx, "ns", "m")
		if err != nil || info.Size != len(counter) {
			t.Fatalf("delete: %+v, %v", info, err)
		}
		begin := keys.Sub("mod", "ns", "m")
		res, err := store.Range(ctx, kv.RangeRequest{Begin: begin, End: tuple.PrefixEnd(begin), KeysOnly: true})
		if err != nil || len(res.KVs) != 1 {
			t.Fatalf("%d keys left under the module's ID (%v), want only the deleted marker", len(res.KVs), err)
		}
		if _, err := ms.Stat(ctx, "ns", "m"); !errors.Is(err, modules.ErrNotFound) {
			t.Fatalf("stat after delete: %v", err)
		}
		if list, err := ms.List(ctx, "ns"); err != nil || len(list) != 1 || list[0].ID != "other" {
			t.Fatalf("list after delete: %+v %v", list, err)
		}
		if use, err := ms.Usage(ctx, "ns"); err != nil || use.Modules != 1 || use.Bytes != int64(len(echo)) {
			t.Fatalf("usage after delete: %+v %v", use, err)
		}
		if _, err := ms.Put(ctx, "ns", "m", counter, modules.Options{}); !errors.Is(err, modules.ErrDeletedID) {
			t.Fatalf("put under a deleted ID: %v, want ErrDeletedID", err)
		}
		// The freed quota takes a module under a new ID.
		if _, err := ms.Put(ctx, "ns", "m2", counter, modules.Options{}); err != nil {
			t.Fatalf("put after the delete freed the quota: %v", err)
		}
		if _, err := ms.Delete(ctx, "ns", "m"); !errors.Is(err, modules.ErrNotFound) {
			t.Fatalf("second delete: %v, want ErrNotFound", err)
		}
	})
}

// The in-use check is atomic with the delete: an actor created between the
// check and the commit (here: by a store whose reads race a placement)
// fails the commit, and the retry sees the actor.
func TestDeleteModuleRacesCreate(t *testing.T) {
	forStores(t, func(t *testing.T, store kv.Store) {
		ctx := context.Background()
		ms := modules.New(&racing{Store: store, before: func() {
			r := rt.NewReal()
			reg := registry.New(store, r, registry.Options{})
			if _, err := reg.Register(ctx, "s1", "addr", 5*time.Second); err != nil && !errors.Is(err, registry.ErrServerIDInUse) {
				t.Error(err)
			}
			if _, err := reg.EnsureActivation(ctx, "ns", "late", "m"); err != nil {
				t.Error(err)
			}
		}}, modules.Config{})
		if _, err := ms.Put(ctx, "ns", "m", wasmtest.C(t, "counter"), modules.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ms.Delete(ctx, "ns", "m"); !errors.Is(err, modules.ErrInUse) {
			t.Fatalf("delete racing a create: %v, want ErrInUse", err)
		}
		if _, err := ms.Stat(ctx, "ns", "m"); err != nil {
			t.Fatalf("the module is gone although an actor uses it: %v", err)
		}
	})
}

// racing runs before once, just before the first commit that deletes
// something: after the delete's in-use check, before its commit.
type racing struct {
	kv.Store
	before func()
}

func (r *racing) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	for _, op := range t.Ops {
		if op.Kind == kv.OpDelete && r.before != nil {
			r.before()
			r.before = nil
			break
		}
	}
	return r.Store.Commit(ctx, t)
}
