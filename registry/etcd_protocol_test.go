package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// openEtcd starts a fresh single-member etcd (fsync on) in a temporary
// directory for one test; it starts in about a tenth of a second.
func openEtcd(t testing.TB, _ rt.Runtime) kv.Store {
	t.Helper()
	e, err := etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{
		MemberConfig: etcdkv.MemberConfig{Dir: t.TempDir()},
	})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close embedded etcd: %v", err)
		}
	})
	return e
}

// A zombie server — one whose lease is gone but which does not know it yet
// — tries to commit actor KV with its old incarnation. etcd's own compare
// rejects the commit: ErrFenced, nothing written, no revision used. Both
// ways a lease ends are covered: revoked, and expired in etcd.
func TestEtcdRejectsZombieCommit(t *testing.T) {
	for _, how := range []string{"revoked", "expired"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			store := openEtcd(t, nil)
			r := rt.NewReal()
			reg := registry.New(store, r, registry.Options{})
			leaseTTL := 30 * time.Second
			if how == "expired" {
				leaseTTL = 2 * time.Second // etcd's minimum with default settings
			}
			zombie, err := reg.Register(ctx, "s1", "addr-1", leaseTTL)
			if err != nil {
				t.Fatal(err)
			}
			p, err := reg.EnsureActivation(ctx, "ns", "a", "kvcounter")
			if err != nil || p.ServerID != "s1" {
				t.Fatalf("placement %+v, %v", p, err)
			}
			epoch, _, ok, err := reg.Confirm(ctx, zombie, "ns", "a", "kvcounter")
			owner := zombie.OwnerRecord("kvcounter", epoch, 0)
			if err != nil || !ok {
				t.Fatalf("confirm: %v, %v", ok, err)
			}
			if err := reg.CommitKV(ctx, zombie, "ns", "a", owner, []registry.KVWrite{{Key: []byte("n"), Value: []byte("1")}}); err != nil {
				t.Fatalf("commit while live: %v", err)
			}
			// The lease ends in etcd; the zombie is not told.
			switch how {
			case "revoked":
				if err := store.Revoke(ctx, zombie.Lease); err != nil {
					t.Fatal(err)
				}
			case "expired":
				for {
					_, found, err := store.Get(ctx, reg.Keys().Server("s1"), 0)
					if err != nil {
						t.Fatal(err)
					}
					if !found {
						break
					}
					if ctx.Err() != nil {
						t.Fatal("the server record never expired")
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			if _, err := store.KeepAlive(ctx, zombie.Lease); !errors.Is(err, kv.ErrLeaseNotFound) {
				t.Fatalf("keep-alive of the ended lease: %v, want kv.ErrLeaseNotFound", err)
			}
			before, err := store.(*etcdkv.Embedded).Rev(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = reg.CommitKV(ctx, zombie, "ns", "a", owner, []registry.KVWrite{
				{Key: []byte("n"), Value: []byte("zombie")}, {Key: []byte("other"), Value: []byte("zombie")},
			})
			if !errors.Is(err, registry.ErrFenced) {
				t.Fatalf("zombie commit: %v, want registry.ErrFenced", err)
			}
			// Confirm is a read: it still says the record names the zombie
			// (the engine's lease check refuses it). Any write the zombie
			// fences on its server record fails, Bump included.
			if _, _, ok, err := reg.Bump(ctx, zombie, "ns", "a", "kvcounter"); err != nil || ok {
				t.Fatalf("zombie bump: %v, %v; want false", ok, err)
			}
			after, err := store.(*etcdkv.Embedded).Rev(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Fatalf("the rejected commits moved etcd's revision from %d to %d", before, after)
			}
			v, found, err := reg.GetKV(ctx, "ns", "a", 0, []byte("n"))
			if err != nil || !found || string(v) != "1" {
				t.Fatalf("n = %q (found %v, %v), want the live commit's 1", v, found, err)
			}
			if _, found, _ := reg.GetKV(ctx, "ns", "a", 0, []byte("other")); found {
				t.Fatal("the zombie's second write landed")
			}
			// A new incarnation of the same server takes the actor over and
			// commits; the zombie still cannot.
			fresh, err := reg.Register(ctx, "s1", "addr-1", 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if fresh.Num <= zombie.Num {
				t.Fatalf("new incarnation %d after %d", fresh.Num, zombie.Num)
			}
			if _, err := reg.EnsureActivation(ctx, "ns", "a", "kvcounter"); err != nil {
				t.Fatal(err)
			}
			if err := reg.CommitKV(ctx, fresh, "ns", "a", recordFor(t, reg, fresh, "ns", "a", "kvcounter"), []registry.KVWrite{{Key: []byte("n"), Value: []byte("2")}}); err != nil {
				t.Fatalf("commit by the new incarnation: %v", err)
			}
			if err := reg.CommitKV(ctx, zombie, "ns", "a", owner, []registry.KVWrite{{Key: []byte("n"), Value: []byte("zombie")}}); !errors.Is(err, registry.ErrFenced) {
				t.Fatalf("zombie commit after takeover: %v, want registry.ErrFenced", err)
			}
			if v, _, _ := reg.GetKV(ctx, "ns", "a", 0, []byte("n")); string(v) != "2" {
				t.Fatalf("n = %q, want 2", v)
			}
		})
	}
}
