package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/kvtest"
	"github.com/nolaproject/nola/rt"
)

// Group commit changes nothing a caller can see.
func TestGroupCommitConformance(t *testing.T) {
	kvtest.Run(t, kvtest.Harness{
		Open: func(t *testing.T) kv.Store {
			return startEmbedded(t, etcdkv.EmbeddedConfig{})
		},
		Compact:         compact,
		SkipLeaseExpiry: true, // leases never go through the batcher
	})
}

// Many concurrent commits, half of them fenced out (their compare fails):
// batched together, every fenced commit applies nothing and reports so,
// every other one applies in full — one commit's failed fence neither
// fails nor leaks into another's.
func TestGroupCommitIsolatesFences(t *testing.T) {
	e := startEmbedded(t, etcdkv.EmbeddedConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("fence"), []byte("live"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 20
	type result struct {
		res kv.CommitResult
		err error
	}
	results := make([][]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := []byte("live")
			if w%2 == 1 {
				want = []byte("dead") // a zombie's fence
			}
			for i := range each {
				a, b := fmt.Sprintf("g/%02d/%02d/a", w, i), fmt.Sprintf("g/%02d/%02d/b", w, i)
				res, err := e.Commit(ctx, kv.Txn{
					Compares: []kv.Compare{kv.ValueEquals([]byte("fence"), want)},
					Ops:      []kv.Op{kv.Put([]byte(a), []byte("x"), kv.NoLease), kv.Put([]byte(b), []byte("y"), kv.NoLease)},
				})
				results[w] = append(results[w], result{res, err})
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		for i, r := range results[w] {
			if r.err != nil {
				t.Fatalf("worker %d commit %d: %v", w, i, r.err)
			}
			fenced := w%2 == 1
			if r.res.Succeeded == fenced {
				t.Fatalf("worker %d commit %d (fenced=%v): succeeded=%v", w, i, fenced, r.res.Succeeded)
			}
			for _, k := range []string{"a", "b"} {
				e2, found, err := e.Get(ctx, []byte(fmt.Sprintf("g/%02d/%02d/%s", w, i, k)), 0)
				if err != nil {
					t.Fatal(err)
				}
				if found == fenced {
					t.Fatalf("worker %d commit %d (fenced=%v): key %s found=%v", w, i, fenced, k, found)
				}
				if found && e2.ModRev != r.res.Rev {
					t.Fatalf("worker %d commit %d: applied at %d, reported %d", w, i, e2.ModRev, r.res.Rev)
				}
			}
		}
	}
	st := e.GroupStats()
	t.Logf("group commit: %d commits in %d requests, largest batch %d", st.Commits, st.Requests, st.MaxBatch)
	if st.MaxBatch < 2 || st.Commits <= st.Requests {
		t.Fatalf("no batching happened (%+v): the test proved nothing", st)
	}
}

// Commits that conflict (compare-and-swap on one counter) are never
// batched together: no increment is lost or doubled, and no batch is
// refused for writing a key twice.
func TestGroupCommitSeparatesConflicts(t *testing.T) {
	e := startEmbedded(t, etcdkv.EmbeddedConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				cur, found, err := e.Get(ctx, []byte("counter"), 0)
				if err != nil {
					errs <- err
					return
				}
				n := 0
				if found {
					n, _ = strconv.Atoi(string(cur.Value))
				}
				res, err := e.Commit(ctx, kv.Txn{
					Compares: []kv.Compare{kv.ModRevEquals([]byte("counter"), cur.ModRev)},
					Ops: []kv.Op{
						kv.Put([]byte("counter"), []byte(strconv.Itoa(n+1)), kv.NoLease),
						kv.Put([]byte(fmt.Sprintf("own/%d/%d", w, i)), []byte("1"), kv.NoLease),
					},
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
				if res.Succeeded {
					i++
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, _, err := e.Get(ctx, []byte("counter"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d successful increments", v.Value, workers*each)
	}
	t.Logf("group commit: %+v", e.GroupStats())
}

// The registry over a group-committing store: a zombie incarnation's KV
// commits, batched with a live server's, are all fenced; the live ones all
// land.
func TestGroupCommitZombieAmongLiveCommits(t *testing.T) {
	e := startEmbedded(t, etcdkv.EmbeddedConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg := registry.New(e, rt.NewReal(), registry.Options{})
	zombie, err := reg.Register(ctx, "zombie", "z", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const actorsN = 16
	for i := range actorsN {
		if _, err := reg.EnsureActivation(ctx, "ns", fmt.Sprintf("z%d", i), "t"); err != nil {
			t.Fatal(err)
		}
	}
	// The zombie's lease ends in etcd; it is not told.
	if err := e.Revoke(ctx, zombie.Lease); err != nil {
		t.Fatal(err)
	}
	live, err := reg.Register(ctx, "live", "l", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range actorsN {
		p, err := reg.EnsureActivation(ctx, "ns", fmt.Sprintf("l%d", i), "t")
		if err != nil || p.ServerID != "live" {
			t.Fatalf("placement of l%d: %+v %v", i, p, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*actorsN)
	for i := range 2 * actorsN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inc, id := live, fmt.Sprintf("l%d", i/2)
			if i%2 == 1 {
				inc, id = zombie, fmt.Sprintf("z%d", i/2)
			}
			for j := range 10 {
				err := reg.CommitKV(ctx, inc, "ns", id, inc.OwnerRecord("t", 1, 0), []registry.KVWrite{{Key: []byte(strconv.Itoa(j)), Value: []byte("v")}})
				if err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Fatalf("live commit failed: %v", err)
		}
		if i%2 == 1 && !errors.Is(err, registry.ErrFenced) {
			t.Fatalf("zombie commit: %v, want registry.ErrFenced", err)
		}
	}
	for i := range actorsN {
		pairs, _, err := reg.ScanKV(ctx, "ns", fmt.Sprintf("l%d", i), 0, nil, nil, 0)
		if err != nil || len(pairs) != 10 {
			t.Fatalf("live actor l%d has %d keys (%v), want 10", i, len(pairs), err)
		}
		pairs, _, err = reg.ScanKV(ctx, "ns", fmt.Sprintf("z%d", i), 0, nil, nil, 0)
		if err != nil || len(pairs) != 0 {
			t.Fatalf("zombie actor z%d has %d keys (%v), want none", i, len(pairs), err)
		}
	}
	st := e.GroupStats()
	t.Logf("group commit: %+v", st)
	if st.MaxBatch < 2 {
		t.Fatalf("no batching happened (%+v): the test proved nothing", st)
	}
}
