package etcdkv

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// oneBatch is a store whose first n batchable commits are held until all
// n have arrived and then sent as one group-commit batch (the etcd
// transaction group commit would send if they arrived together); later
// commits go to the store as usual. Which commits share a batch is thereby
// fixed by the test, not by timing.
type oneBatch struct {
	*Store
	n int

	mu    sync.Mutex
	held  []*pending
	extra int // commits that were not batchable
}

func (o *oneBatch) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	o.mu.Lock()
	if len(o.held) == o.n {
		o.mu.Unlock()
		return o.Store.Commit(ctx, t)
	}
	cmps, ops, err := o.pbTxn(t)
	if err != nil {
		o.mu.Unlock()
		return kv.CommitResult{}, err
	}
	p := batchable(t, cmps, ops, o.opts.Limits)
	if p == nil {
		o.extra++
		o.mu.Unlock()
		return o.Store.Commit(ctx, t)
	}
	p.taken = true
	o.held = append(o.held, p)
	if len(o.held) == o.n {
		go o.group.send(context.Background(), o.held) // delivers to every member
	}
	o.mu.Unlock()
	<-p.done
	return p.res, p.err
}

// groupMember starts an embedded member with group commit on (the
// default), closed when t ends, and a context that ends with it, within a
// minute.
func groupMember(t *testing.T) (context.Context, *Embedded) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e, err := StartEmbedded(ctx, EmbeddedConfig{MemberConfig: MemberConfig{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return ctx, e
}

// createBatch creates actors c0..c(n-2) and, in the same etcd
// transaction, "x" again — an actor created (with arguments "first")
// before — all through registry.CreateActor's read-free first attempt,
// over a registry with opts. It returns what went wrong: the new actors
// must all be created on the live server, at one shared revision (they
// were one batch), with their creation records; x's creation must be
// refused by its own compare and leave x exactly as it was.
func createBatch(t *testing.T, opts registry.Options) string {
	t.Helper()
	ctx, e := groupMember(t)
	if e.group == nil {
		t.Fatal("group commit is off")
	}
	r := rt.NewReal()
	plain := registry.New(e.Store, r, registry.Options{})
	if _, err := plain.Register(ctx, "s0", "addr-s0", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if p, err := plain.CreateActor(ctx, "ns", "x", "t", []byte("first")); err != nil || !p.Created {
		t.Fatalf("create x: %+v, %v", p, err)
	}
	xKey := plain.Keys().Actor("ns", "x")
	xBefore, _, err := e.Get(ctx, xKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	ob := &oneBatch{Store: e.Store, n: n}
	reg := registry.New(ob, r, opts)
	if _, err := reg.Servers(ctx); err != nil { // warm the list: no read inside the batch
		t.Fatal(err)
	}
	ids := make([]string, n)
	places := make([]registry.Placement, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		ids[i] = fmt.Sprintf("c%d", i)
		args := []byte("args-" + ids[i])
		if i == n-1 {
			ids[i], args = "x", []byte("second")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			places[i], errs[i] = reg.CreateActor(ctx, "ns", ids[i], "t", args)
		}()
	}
	wg.Wait()
	if ob.extra != 0 || len(ob.held) != n {
		t.Fatalf("%d of the placements were batched (%d not batchable): the test proved nothing", len(ob.held), ob.extra)
	}
	var rev int64
	for i, id := range ids {
		if errs[i] != nil {
			return fmt.Sprintf("create %s: %v", id, errs[i])
		}
		if id == "x" {
			continue
		}
		p := places[i]
		if !p.Created || p.ServerID != "s0" {
			return fmt.Sprintf("create %s: %+v, want created on s0", id, p)
		}
		kvs, found, err := e.Get(ctx, reg.Keys().Actor("ns", id), 0)
		if err != nil || !found {
			return fmt.Sprintf("record of %s: found=%v %v", id, found, err)
		}
		if rev == 0 {
			rev = kvs.ModRev
		} else if kvs.ModRev != rev {
			return fmt.Sprintf("%s created at revision %d, others at %d: not one batch", id, kvs.ModRev, rev)
		}
		if c, err := reg.ReadCreation(ctx, "ns", id); err != nil || !c.Pending || string(c.Args) != "args-"+id {
			return fmt.Sprintf("creation records of %s: %+v %v", id, c, err)
		}
	}
	if p := places[n-1]; p.Created || p.ServerID != "s0" {
		return fmt.Sprintf("create of the existing x: %+v, want placed on s0 and not created", p)
	}
	xAfter, _, err := e.Get(ctx, xKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	if xAfter.ModRev != xBefore.ModRev {
		return fmt.Sprintf("x's record was rewritten (mod rev %d → %d)", xBefore.ModRev, xAfter.ModRev)
	}
	if c, err := reg.ReadCreation(ctx, "ns", "x"); err != nil || string(c.Args) != "first" {
		return fmt.Sprintf("x's creation records: %+v %v, want the first creation's arguments", c, err)
	}
	return ""
}

// A batch of creations that holds one conflicting creation (of an actor
// that exists): every other creation lands, the conflicting one is refused
// by its own compare and then answers with the existing placement.
func TestCreateActorBatchWithConflict(t *testing.T) {
	if msg := createBatch(t, registry.Options{}); msg != "" {
		t.Fatal(msg)
	}
}

// Without the per-actor compare (SkipCreateCompare), the same batch
// overwrites the existing actor: the test above is not vacuous.
func TestCreateActorBatchWithConflictCatchesMissingCompare(t *testing.T) {
	msg := createBatch(t, registry.Options{Mutations: mutation.Of(mutation.SkipCreateCompare)})
	if msg == "" {
		t.Fatal("the batch passed with the per-actor compare dropped")
	}
	t.Logf("caught: %s", msg)
}

// Adaptive group commit: an idle batcher lets a commit go alone
// (claimIdle), refuses a second claim while that one is in flight, queues
// commits that arrive meanwhile, and hands them to a flusher when the
// claimant is done — after which it is idle again.
func TestGroupCommitIdleClaim(t *testing.T) {
	ctx, e := groupMember(t)
	b := e.group
	idle0 := e.GroupStats().Idle
	if !b.claimIdle() {
		t.Fatal("an idle batcher refused the claim")
	}
	if b.claimIdle() {
		t.Fatal("a second claim while one commit is in flight")
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("queued"), []byte("1"), kv.NoLease)}})
		done <- err
	}()
	for queued := false; !queued; { // the commit must queue behind the claim
		select {
		case err := <-done:
			t.Fatalf("the commit went out while another was in flight (err %v)", err)
		default:
		}
		b.mu.Lock()
		queued = len(b.queue) == 1
		b.mu.Unlock()
		runtime.Gosched()
	}
	b.idleDone()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, found, err := e.Get(ctx, []byte("queued"), 0); err != nil || !found {
		t.Fatalf("queued commit: found=%v %v", found, err)
	}
	// GroupStats.Idle counts the claim, not the commit that queued.
	if st := e.GroupStats(); st.Idle != idle0+1 {
		t.Fatalf("GroupStats %+v: want Idle %d (one claim)", st, idle0+1)
	}
	b.wg.Wait() // the flusher has gone
	if !b.claimIdle() {
		t.Fatal("not idle after the queue drained")
	}
	b.idleDone()
	// A lone commit on an idle batcher takes the idle path.
	if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("alone"), []byte("1"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	if st := e.GroupStats(); st.Idle != idle0+3 {
		t.Fatalf("GroupStats %+v: want Idle %d", st, idle0+3)
	}
}

// Commits that are each within etcd's operations limit are never batched
// past it: etcd counts a nested transaction's operations against the limit
// less the batch's own (k commits of width w need k + w ≤ 128). Eight
// commits of 124 puts each, queued together, must all land — batched at
// most four at a time. Without the width rule take() puts all eight in
// one batch and etcd refuses it whole ("too many operations in txn
// request"), failing every one of them.
func TestGroupCommitRespectsNestedOpsLimit(t *testing.T) {
	ctx, e := groupMember(t)
	b := e.group
	if !b.claimIdle() { // hold the batcher, so that the commits queue
		t.Fatal("an idle batcher refused the claim")
	}
	const commits, width = 8, 124
	errs := make(chan error, commits)
	for c := range commits {
		go func() {
			ops := make([]kv.Op, width)
			for i := range ops {
				ops[i] = kv.Put([]byte(fmt.Sprintf("w/%d/%03d", c, i)), []byte("v"), kv.NoLease)
			}
			res, err := e.Commit(ctx, kv.Txn{Ops: ops})
			if err == nil && !res.Succeeded {
				err = fmt.Errorf("commit %d refused", c)
			}
			errs <- err
		}()
	}
	for queued := false; !queued; {
		b.mu.Lock()
		queued = len(b.queue) == commits
		b.mu.Unlock()
		runtime.Gosched()
	}
	before := e.GroupStats()
	b.idleDone()
	for range commits {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := e.GroupStats()
	if st.MaxBatch < 2 || st.MaxBatch > 128-width {
		t.Fatalf("largest batch %d, want 2..%d", st.MaxBatch, 128-width)
	}
	if n := st.Requests - before.Requests; n < 2 {
		t.Fatalf("%d commits of width %d went in %d request(s)", commits, width, n)
	}
}

// sendBatch sends txns as one group-commit batch, as take would have
// formed it, and returns each member's outcome.
func sendBatch(t *testing.T, e *Embedded, txns []kv.Txn) []kv.CommitResult {
	t.Helper()
	batch := make([]*pending, len(txns))
	for i, tx := range txns {
		cmps, ops, err := e.pbTxn(tx)
		if err != nil {
			t.Fatal(err)
		}
		if batch[i] = batchable(tx, cmps, ops, e.opts.Limits); batch[i] == nil {
			t.Fatalf("txn %d is not batchable", i)
		}
		batch[i].taken = true
	}
	e.group.send(context.Background(), batch)
	res := make([]kv.CommitResult, len(batch))
	for i, p := range batch {
		<-p.done
		if p.err != nil {
			t.Fatalf("member %d: %v", i, p.err)
		}
		res[i] = p.res
	}
	return res
}

// A compare every member of a batch makes is sent once, for the whole
// batch (hoist), and must mean what it meant in each member: when it
// holds, each member still answers to its own other compares; when it
// fails, every member fails and nothing is written. A hoist that dropped
// the shared compare from the members without sending it for the batch
// fails the second half; one that sent a member's own compare for the
// batch fails the first.
func TestGroupCommitHoistsSharedCompares(t *testing.T) {
	ctx, e := groupMember(t)
	if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{
		kv.Put([]byte("server"), []byte("live"), kv.NoLease),
		kv.Put([]byte("taken"), []byte("1"), kv.NoLease),
	}}); err != nil {
		t.Fatal(err)
	}
	create := func(server, id string) kv.Txn {
		return kv.Txn{
			Compares: []kv.Compare{kv.Absent([]byte(id)), kv.ValueEquals([]byte("server"), []byte(server))},
			Ops:      []kv.Op{kv.Put([]byte(id), []byte(server), kv.NoLease)},
		}
	}
	before := e.GroupStats().Hoisted
	res := sendBatch(t, e, []kv.Txn{create("live", "a"), create("live", "taken"), create("live", "b")})
	if !res[0].Succeeded || res[1].Succeeded || !res[2].Succeeded {
		t.Fatalf("shared compare holds: outcomes %v %v %v, want true false true", res[0].Succeeded, res[1].Succeeded, res[2].Succeeded)
	}
	if h := e.GroupStats().Hoisted - before; h != 1 {
		t.Fatalf("%d compares hoisted, want the shared one", h)
	}
	res = sendBatch(t, e, []kv.Txn{create("gone", "c"), create("gone", "d")})
	for i, r := range res {
		if r.Succeeded {
			t.Fatalf("member %d succeeded although the shared compare fails", i)
		}
	}
	for _, k := range []string{"c", "d"} {
		if _, found, err := e.Get(ctx, []byte(k), 0); err != nil || found {
			t.Fatalf("%s: found=%v %v, want not written", k, found, err)
		}
	}
	for _, k := range []string{"a", "b"} {
		if _, found, err := e.Get(ctx, []byte(k), 0); err != nil || !found {
			t.Fatalf("%s: found=%v %v, want written", k, found, err)
		}
	}
}

// hoist sends at most len(batch) compares for the batch, so that the
// batch transaction stays as wide as take's operations-limit rule assumes,
// and leaves every compare it did not hoist with its member.
func TestHoistIsBoundedByBatchSize(t *testing.T) {
	s := &Store{}
	member := func(keys ...string) *pending {
		var tx kv.Txn
		for _, k := range keys {
			tx.Compares = append(tx.Compares, kv.Absent([]byte(k)))
		}
		tx.Ops = []kv.Op{kv.Put([]byte("w-"+keys[len(keys)-1]), []byte("v"), kv.NoLease)}
		cmps, ops, err := s.pbTxn(tx)
		if err != nil {
			t.Fatal(err)
		}
		return batchable(tx, cmps, ops, kv.Limits{})
	}
	batch := []*pending{member("a", "b", "c", "x"), member("a", "b", "c", "y")}
	common, rest := hoist(batch)
	if len(common) != len(batch) {
		t.Fatalf("%d compares hoisted for a batch of %d", len(common), len(batch))
	}
	for i, r := range rest {
		if len(r) != 2 { // "c" (over the bound) and the member's own
			t.Fatalf("member %d keeps %d compares, want 2", i, len(r))
		}
	}
	if common, _ := hoist([]*pending{member("a"), member("b")}); common != nil {
		t.Fatalf("hoisted %d compares no two members share", len(common))
	}
}

// cmpID must tell apart compares that differ anywhere, including where
// the key ends and the value begins: hoist treats equal IDs as one test,
// and two different tests sharing an ID would send only one of them.
func TestCmpIDDistinguishesCompares(t *testing.T) {
	cmps := []kv.Compare{
		kv.ValueEquals([]byte("a"), []byte("bc")),
		kv.ValueEquals([]byte("ab"), []byte("c")),
		kv.ValueEquals([]byte("abc"), nil),
		kv.ModRevEquals([]byte("abc"), 0),
		kv.ModRevEquals([]byte("abc"), 1),
		kv.Exists([]byte("abc")),
		kv.Absent([]byte("abc")),
	}
	seen := map[string]int{}
	for i, c := range cmps {
		id := cmpID(c)
		if j, ok := seen[id]; ok {
			t.Fatalf("compares %d (%+v) and %d (%+v) share the ID %q", j, cmps[j], i, c, id)
		}
		seen[id] = i
	}
	if cmpID(cmps[0]) != cmpID(kv.ValueEquals([]byte("a"), []byte("bc"))) {
		t.Fatal("equal compares have different IDs")
	}
}

// batchable's three key lists share one array: each must hold its own
// keys, in order, and a commit that writes one key twice (etcd's
// "duplicate key", which would fail a whole batch) must go alone.
func TestBatchableKeyListsAndDuplicateWrites(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	txn := kv.Txn{
		Compares: []kv.Compare{kv.Absent(k("r1")), kv.ModRevEquals(k("r2"), 7)},
		Ops:      []kv.Op{kv.Put(k("w1"), k("v"), kv.NoLease), kv.Delete(k("w2")), kv.Put(k("w3"), nil, kv.NoLease)},
	}
	p := batchable(txn, make([]*etcdserverpb.Compare, 2), make([]*etcdserverpb.RequestOp, 3), kv.Limits{})
	if p == nil {
		t.Fatal("a plain commit is not batchable")
	}
	if want := []string{"r1", "r2"}; !slices.Equal(p.reads, want) {
		t.Fatalf("reads %q, want %q", p.reads, want)
	}
	if want := []string{cmpID(txn.Compares[0]), cmpID(txn.Compares[1])}; !slices.Equal(p.cmpIDs, want) {
		t.Fatalf("cmpIDs %q, want %q", p.cmpIDs, want)
	}
	if want := []string{"w1", "w2", "w3"}; !slices.Equal(p.writes, want) {
		t.Fatalf("writes %q, want %q", p.writes, want)
	}

	for _, ops := range [][]kv.Op{
		{kv.Put(k("w1"), nil, kv.NoLease), kv.Put(k("w1"), nil, kv.NoLease)},
		{kv.Put(k("w1"), nil, kv.NoLease), kv.Delete(k("w2")), kv.Delete(k("w1"))},
	} {
		dup := kv.Txn{Compares: txn.Compares, Ops: ops}
		if p := batchable(dup, make([]*etcdserverpb.Compare, 2), make([]*etcdserverpb.RequestOp, len(ops)), kv.Limits{}); p != nil {
			t.Fatalf("a commit writing one key twice (%d ops) is batchable", len(ops))
		}
	}
}

// Callers that commit in a loop share one request per round: after a batch
// of n the flusher waits for n commits to queue before it takes the next
// (batcher's linger). Without the linger a batch leaves the moment the last
// one's outcomes are delivered, before its callers have committed again,
// so they split into two halves taking turns: about two requests per
// round. The linger's timers are the test's (lingerTimer): none fires
// until the first caller has finished, so the test does not depend on how
// fast the callers come back; after that every linger ends at once.
func TestGroupCommitLingersForItsCallers(t *testing.T) {
	ctx, e := groupMember(t)
	b := e.group
	// A linger ends when the commits it waits for have queued, or once a
	// caller has finished (then they never will all queue again).
	finished := make(chan time.Time)
	var once sync.Once
	b.lingerTimer = func(time.Duration) <-chan time.Time { return finished }
	const callers, rounds = 8, 20
	st0 := e.GroupStats()
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			defer once.Do(func() { close(finished) })
			for r := range rounds {
				key := []byte(fmt.Sprintf("linger/%d/%d", c, r))
				if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(key, []byte("1"), kv.NoLease)}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := e.GroupStats()
	requests, commits := st.Requests-st0.Requests, st.Commits-st0.Commits
	if commits != callers*rounds {
		t.Fatalf("GroupStats %+v: %d commits, want %d", st, commits, callers*rounds)
	}
	// The first rounds converge (the first commit goes alone, the next
	// batch holds the other seven, the one after that all eight); after
	// that, one request a round.
	if requests > rounds+4 {
		t.Fatalf("%d requests for %d rounds of %d callers (%+v): the batches did not wait for their callers",
			requests, rounds, callers, st)
	}
	t.Logf("%d requests, %d commits", requests, commits)
	if st.Lingers == st0.Lingers {
		t.Fatalf("GroupStats %+v: no linger counted", st)
	}
}
