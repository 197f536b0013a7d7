package etcdkv_test

import (
	"context"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
	"github.com/nolaproject/nola/registry/kv"
)

// Both ways of running members: a 3-member cluster forms, serves, loses a
// member to Kill, elects a new leader and takes the member back.
func TestClusterHelper(t *testing.T) {
	for _, procs := range []bool{false, true} {
		name := "in-process"
		if procs {
			name = "processes"
		}
		t.Run(name, func(t *testing.T) {
			c := etcdtest.Start(t, etcdtest.Options{Processes: procs, UnsafeNoFsync: true})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := c.Open(ctx, etcdkv.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("k"), []byte("v1"), kv.NoLease)}}); err != nil {
				t.Fatal(err)
			}
			leader, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Kill(leader); err != nil {
				t.Fatal(err)
			}
			next, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if next == leader {
				t.Fatalf("killed member %d is still the leader", leader)
			}
			commitEventually(ctx, t, s, "k", "v2")
			if err := c.Restart(ctx, leader); err != nil {
				t.Fatal(err)
			}
			// The restarted member catches up: read through it alone.
			one, err := etcdkv.Open(ctx, etcdkv.ClientConfig{Endpoints: []string{c.Endpoint(leader)}})
			if err != nil {
				t.Fatal(err)
			}
			defer one.Close()
			e, found, err := one.Get(ctx, []byte("k"), 0)
			if err != nil || !found || string(e.Value) != "v2" {
				t.Fatalf("through the restarted member: %q found=%v err=%v, want v2", e.Value, found, err)
			}
			if procs {
				if err := c.Pause(next); err != nil {
					t.Fatal(err)
				}
				commitEventually(ctx, t, s, "k", "v3")
				if err := c.Resume(next); err != nil {
					t.Fatal(err)
				}
			} else if err := c.Pause(next); err == nil {
				t.Fatal("Pause worked on an in-process member")
			}
		})
	}
}

// commitEventually retries an unconditional put until it is acknowledged:
// right after a fault, a request may fail once (its connection was cut,
// the leader changed).
func commitEventually(ctx context.Context, t *testing.T, s kv.Store, key, value string) {
	t.Helper()
	var last error
	for ctx.Err() == nil {
		_, err := s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte(key), []byte(value), kv.NoLease)}})
		if err == nil {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("put %s=%s never acknowledged: %v", key, value, last)
}
