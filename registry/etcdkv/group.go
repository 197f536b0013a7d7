package etcdkv

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/nolaproject/nola/registry/kv"
)

// Group commit: concurrent commits are sent together as one etcd
// transaction whose success branch holds each commit as a nested
// transaction (etcd ≥3.3). Each nested transaction keeps its own compares
// and takes its own branch: a commit whose compares fail (a fenced actor)
// applies nothing and does not affect the others, which apply at one shared
// revision.
//
// etcd evaluates every nested transaction's compares against the state
// before the whole batch, so that batching is the same as running the
// commits concurrently only if no commit writes what another one reads or
// writes. A batch therefore never holds two commits whose keys overlap that
// way; commits with range compares, range deletes, leases, or a size above
// a quarter of the request limit are never batched. A failure of the whole
// request (no quorum, a timeout) is every member's failure, with the same
// meaning as for a lone commit. A compare every member makes is sent once,
// for the whole batch (see hoist).

// GroupStats counts group commit's work.
type GroupStats struct {
	// Requests is the number of etcd requests sent by the batcher and
	// Commits the number of commits they carried.
	Requests, Commits int64
	// MaxBatch is the largest batch sent.
	MaxBatch int64
	// Hoisted counts compares sent once for a whole batch instead of
	// once per member (see hoist).
	Hoisted int64
	// Idle counts the commits sent at once, alone, because nothing was
	// queued or in flight (claimIdle): batches of one that never waited.
	// They are counted in Requests and Commits too. Commits − Idle went
	// through the queue; (Commits − Idle) / (Requests − Idle) is how many
	// a queued batch carried.
	Idle int64
	// Lingers counts the times a flusher waited for the callers of its
	// last batch before taking the next one (see batcher).
	Lingers int64
}

type pending struct {
	cmps   []*etcdserverpb.Compare
	ops    []*etcdserverpb.RequestOp
	size   int
	width  int      // max(compares, ops): what etcd's ops limit counts
	reads  []string // compared keys
	cmpIDs []string // cmpID of each compare, in cmps' order
	writes []string // written keys
	taken  bool
	done   chan struct{}
	res    kv.CommitResult
	err    error
}

// batcher keeps one batch in flight at a time (maxInflight 1; the linger
// below, with its one want and arrived, assumes one flusher): commits that
// arrive meanwhile form the next batch (classic group commit). Measured on 2 cores
// with 16 callers, this batched about 5 commits per request and did better
// than 2 or 4 batches in flight; measured again for bulk creation (issue
// 16, item 5: 8 creations per request at 16 callers, 30 at 64), 2 or 4 in
// flight still lost (bench/README.md, "Round 4"). A commit whose context ends while it waits
// in the queue is taken back and fails with kv.ErrUnavailable (it was never
// sent).
//
// With one batch in flight, a caller whose commit was in batch i cannot be
// in batch i+1: that batch leaves the moment i's outcomes are delivered,
// before the caller has made its next commit. N callers that commit in a
// loop therefore split into two halves that take turns, N/2 commits per
// etcd request, and each request's fsync carries half of what it could.
// So after a batch of n ≥ 2, with q commits queued meanwhile, the flusher
// lingers until n+q are queued — the batch's callers are probably on their
// way back — while they keep arriving (a gap of a sixteenth of the last
// request's duration, and at least minLingerGap, with none ends it), and
// unless the queue holds as many as the last batch already, for at most a
// quarter of that duration (and maxLinger): the next request then carries
// about N, for the price of the callers' turn around. A lone caller never
// lingers (it goes through claimIdle).
type batcher struct {
	s           *Store
	maxCommits  int
	maxBytes    int
	maxInflight int

	mu       sync.Mutex
	queue    []*pending
	inflight int
	closed   bool
	wg       sync.WaitGroup // flushers
	// want, when > 0, is the queue length a lingering flusher waits for;
	// each commit queued meanwhile nudges arrived, and the one that
	// brings the queue to want (or close) resets it to 0.
	want    int
	arrived chan struct{} // capacity 1
	// lingerTimer, if set, replaces the linger's timers, its gaps' and
	// its bound's (tests: a linger that ends only when the awaited
	// commits arrive or the hook's channel says so).
	lingerTimer func(time.Duration) <-chan time.Time

	requests, commits, maxBatch, hoisted, idle, lingers atomic.Int64
}

func newBatcher(s *Store) *batcher {
	return &batcher{
		s:           s,
		maxCommits:  max(1, s.opts.Limits.MaxOpsPerTxn),
		maxBytes:    s.opts.Limits.MaxRequestBytes,
		maxInflight: 1,
		arrived:     make(chan struct{}, 1),
	}
}

// maxLinger bounds how long a flusher waits for the callers of its last
// batch to commit again (see batcher).
const maxLinger = 2 * time.Millisecond

// minLingerGap is the least gap of a linger (see batcher.linger).
const minLingerGap = 20 * time.Microsecond

// nudge wakes a lingering flusher; b.mu is held.
func (b *batcher) nudge() {
	select {
	case b.arrived <- struct{}{}:
	default:
	}
}

// GroupStats reports group commit's counters (zero when it is off).
func (s *Store) GroupStats() GroupStats {
	if s.group == nil {
		return GroupStats{}
	}
	return GroupStats{Requests: s.group.requests.Load(), Commits: s.group.commits.Load(), MaxBatch: s.group.maxBatch.Load(),
		Hoisted: s.group.hoisted.Load(), Idle: s.group.idle.Load(), Lingers: s.group.lingers.Load()}
}

// batchable returns the pending form of t, or nil if t must go alone.
func batchable(t kv.Txn, cmps []*etcdserverpb.Compare, ops []*etcdserverpb.RequestOp, limits kv.Limits) *pending {
	size := kv.RequestSize(t)
	if len(ops) == 0 || len(ops) != len(t.Ops) || (limits.MaxRequestBytes > 0 && size > limits.MaxRequestBytes/4) {
		return nil
	}
	for _, c := range t.Compares {
		if c.End != nil {
			return nil
		}
	}
	// One backing array for the three key lists: a creation commits
	// through here once per actor, and its allocations are a large part
	// of what bulk creation costs this process (issue 16, item 5).
	nc := len(t.Compares)
	keys := make([]string, 2*nc+len(t.Ops))
	p := &pending{cmps: cmps, ops: ops, size: size, width: max(nc, len(t.Ops)), done: make(chan struct{}),
		reads: keys[:0:nc], cmpIDs: keys[nc : nc : 2*nc], writes: keys[2*nc : 2*nc]}
	for _, c := range t.Compares {
		p.reads = append(p.reads, string(c.Key))
		p.cmpIDs = append(p.cmpIDs, cmpID(c))
	}
	for _, o := range t.Ops {
		// A key written twice is etcd's "duplicate key" error, which
		// would fail the whole batch: such a commit goes alone. (A
		// linear scan: commits write a handful of keys.)
		if o.End != nil || o.Lease != kv.NoLease || slices.Contains(p.writes, string(o.Key)) {
			return nil
		}
		p.writes = append(p.writes, string(o.Key))
	}
	return p
}

// cmpID is a compare's identity: two compares with the same cmpID are
// the same test and, evaluated against the same state, give the same
// answer. The encoding is injective (the key's length comes first), so
// different compares never share one.
func cmpID(c kv.Compare) string {
	b := make([]byte, 0, 3*binary.MaxVarintLen64+binary.MaxVarintLen64+len(c.Key)+len(c.Value))
	b = binary.AppendVarint(b, int64(c.Target))
	b = binary.AppendVarint(b, int64(c.Op))
	b = binary.AppendVarint(b, c.Num)
	b = binary.AppendUvarint(b, uint64(len(c.Key)))
	b = append(b, c.Key...)
	b = append(b, c.Value...)
	return string(b)
}

// hoist returns the compares that every member of batch makes (as
// cmpIDs, with batch[0]'s clientv3 form) and each member's compares less
// those. Every nested transaction's compares are evaluated against the
// state before the whole batch, so a compare all members make has one
// answer for all of them: sent once, as the batch transaction's own
// compare, it fails every member exactly when each member's copy would
// have failed it. This is what makes creations cheap in etcd: each
// creation compares the record of the server it places the actor on, the
// same record for all creations placed there, and etcd reads the key once
// per compare. Hoisting is limited to len(batch) compares so that the
// batch transaction's width stays len(batch), the figure take's
// operations-limit rule assumes.
func hoist(batch []*pending) (common []*etcdserverpb.Compare, rest [][]*etcdserverpb.Compare) {
	if len(batch) < 2 {
		return nil, nil
	}
	shared := map[string]bool{}
	for _, id := range batch[0].cmpIDs {
		shared[id] = true
	}
	for _, p := range batch[1:] {
		mine := map[string]bool{}
		for _, id := range p.cmpIDs {
			if shared[id] {
				mine[id] = true
			}
		}
		shared = mine
		if len(shared) == 0 {
			return nil, nil
		}
	}
	sent := map[string]bool{}
	for i, id := range batch[0].cmpIDs {
		if shared[id] && !sent[id] && len(common) < len(batch) {
			sent[id] = true
			common = append(common, batch[0].cmps[i])
		}
	}
	rest = make([][]*etcdserverpb.Compare, len(batch))
	for j, p := range batch {
		for i, id := range p.cmpIDs {
			if !sent[id] {
				rest[j] = append(rest[j], p.cmps[i])
			}
		}
	}
	return common, rest
}

// commit queues p and waits for its outcome.
func (b *batcher) commit(ctx context.Context, p *pending) (kv.CommitResult, error) {
	if err := ctx.Err(); err != nil {
		return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", kv.ErrClosed)
	}
	if b.inflight == 0 && len(b.queue) == 0 {
		// Idle (it went idle since Store.Commit looked): send it from
		// this goroutine, with the caller's context.
		b.inflight++
		p.taken = true
		b.idle.Add(1)
		b.mu.Unlock()
		_ = b.send(ctx, []*pending{p})
		b.idleDone()
		return p.res, p.err
	}
	b.queue = append(b.queue, p)
	if b.want > 0 {
		// A lingering flusher: wake it, to send if this is the last
		// commit it waits for, to wait another gap if not.
		if len(b.queue) >= b.want {
			b.want = 0
		}
		b.nudge()
	}
	if b.inflight < b.maxInflight {
		b.inflight++
		b.wg.Add(1)
		go b.flush() // ends when the queue is empty
	}
	b.mu.Unlock()
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-p.done: // the outcome arrived after all
		return p.res, p.err
	default:
	}
	if !p.taken {
		// Never sent: take it back.
		for i, q := range b.queue {
			if q == p {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w (%w)", kv.ErrUnavailable, ctx.Err())
	}
	return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w (%w)", kv.ErrIndeterminate, ctx.Err())
}

// claimIdle reports whether nothing is queued or in flight and, if so,
// marks a commit in flight: the caller sends its commit at once, alone,
// then calls idleDone. This is the adaptive half of group commit: with
// nothing to group (one caller, or a lull) a commit costs what it costs
// with group commit off — no batch bookkeeping, no hand-off to another
// goroutine — and commits only queue while one is already in flight, when
// waiting for it is what they would do anyway (etcd applies one request
// after another).
func (b *batcher) claimIdle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.inflight > 0 || len(b.queue) > 0 {
		return false
	}
	b.inflight++
	b.requests.Add(1) // a batch of one, as GroupStats counts it
	b.commits.Add(1)
	b.idle.Add(1)
	if b.maxBatch.Load() == 0 {
		b.maxBatch.Store(1)
	}
	return true
}

// idleDone ends a commit sent after claimIdle: whatever queued meanwhile
// goes to a flusher, which inherits the in-flight slot.
func (b *batcher) idleDone() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) > 0 && !b.closed {
		b.wg.Add(1)
		go b.flush() // ends when the queue is empty
		return
	}
	for _, q := range b.queue { // closed meanwhile: never sent
		q.err = fmt.Errorf("etcdkv: commit: %w", kv.ErrClosed)
		close(q.done)
	}
	b.queue = nil
	b.inflight--
}

// close refuses new commits and waits for the flushers, whose requests
// fail fast once the client is closed.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.want = 0 // a lingering flusher stops
	b.nudge()
	b.mu.Unlock()
	b.wg.Wait()
}

// flush sends batches until the queue is empty, lingering after each
// batch of two or more for its callers to commit again (see batcher).
func (b *batcher) flush() {
	defer b.wg.Done()
	var (
		last   int           // size of the batch just sent
		others int           // commits queued when its outcomes went out
		took   time.Duration // how long its request took
		timer  *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		// The callers of the last batch and those that queued before its
		// outcomes went out (others) are the ones committing now; wait
		// for all of them. (Counted after delivery the queue would hold
		// some of the batch's callers twice over.) A queue that holds as
		// many as the last batch carried goes at once: what the linger
		// would wait for may not fit the next batch anyway (its bytes,
		// the operations limit, conflicts).
		if want := min(last+others, b.maxCommits); last >= 2 && len(b.queue) < min(want, last) && !b.closed {
			b.want = want
			b.mu.Unlock()
			b.linger(took, &timer)
			b.mu.Lock()
			b.want = 0
			b.lingers.Add(1)
		}
		batch := b.take()
		if len(batch) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// Not the context of any one commit: the batch is everyone's.
		start := time.Now()
		others = b.send(context.Background(), batch)
		last, took = len(batch), time.Since(start)
	}
}

// linger waits, after a request that took took, until b.want commits are
// queued (commit resets b.want then), or no commit has arrived for a gap
// of took/16 — the callers that were coming back are back; the others
// are gone, done or busy elsewhere, and waiting for them would only delay
// those queued — or for min(took/4, maxLinger) in all. A burst of commits
// thus ends with a wait of one gap, not of the whole bound.
func (b *batcher) linger(took time.Duration, timer **time.Timer) {
	bound := time.Now().Add(min(took/4, maxLinger))
	gap := max(took/16, minLingerGap)
	for {
		d := gap
		if b.lingerTimer == nil { // the hook owns the linger's end
			if d = min(gap, time.Until(bound)); d <= 0 {
				return
			}
		}
		var expired <-chan time.Time
		switch {
		case b.lingerTimer != nil:
			expired = b.lingerTimer(d)
		case *timer == nil:
			*timer = time.NewTimer(d)
			expired = (*timer).C
		default:
			(*timer).Reset(d)
			expired = (*timer).C
		}
		select {
		case <-b.arrived:
			b.mu.Lock()
			reached := b.want == 0
			b.mu.Unlock()
			if reached {
				return
			}
		case <-expired:
			return
		}
	}
}

// take removes the next batch from the queue: pending commits in order,
// skipping (for a later batch) any that conflict with those taken or that
// would take the batch past etcd's operations limit.
//
// etcd checks a nested transaction against the limit less the operations
// of the transaction holding it (v3rpc checkTxnRequest): a batch of k
// commits is accepted only if k plus the widest member's compares or ops
// stays within the limit. Otherwise etcd refuses the whole batch with
// "too many operations", failing commits that are each within the limit
// (found when 128 creations were batched: k = 128 left no room at all).
func (b *batcher) take() []*pending {
	var (
		batch  []*pending
		rest   []*pending
		bytes  int
		width  int // the widest member's compares or ops
		reads  = map[string]bool{}
		writes = map[string]bool{}
	)
	for i, p := range b.queue {
		if len(batch) == b.maxCommits {
			rest = append(rest, b.queue[i:]...)
			break
		}
		conflict := b.maxBytes > 0 && bytes+p.size+64 > b.maxBytes
		// A batch of one goes as a plain transaction, with no nesting.
		conflict = conflict || (len(batch) > 0 && len(batch)+1+max(width, p.width) > b.maxCommits)
		for _, k := range p.writes {
			conflict = conflict || reads[k] || writes[k]
		}
		for _, k := range p.reads {
			conflict = conflict || writes[k]
		}
		if conflict {
			rest = append(rest, p)
			continue
		}
		for _, k := range p.writes {
			writes[k] = true
		}
		for _, k := range p.reads {
			reads[k] = true
		}
		bytes += p.size + 64
		width = max(width, p.width)
		p.taken = true
		batch = append(batch, p)
	}
	b.queue = rest
	return batch
}

// send commits a batch as one etcd transaction and hands each member its
// outcome. It returns how many commits were queued just before the first
// outcome went out (the flusher's linger counts on them; see flush).
func (b *batcher) send(ctx context.Context, batch []*pending) (queued int) {
	s := b.s
	b.requests.Add(1)
	b.commits.Add(int64(len(batch)))
	for {
		m := b.maxBatch.Load()
		if int64(len(batch)) <= m || b.maxBatch.CompareAndSwap(m, int64(len(batch))) {
			break
		}
	}
	queued = -1
	deliver := func(p *pending, res kv.CommitResult, err error) {
		if queued < 0 {
			b.mu.Lock()
			queued = len(b.queue)
			b.mu.Unlock()
		}
		p.res, p.err = res, err
		close(p.done)
	}
	c, err := s.begin(ctx)
	if err != nil {
		for _, p := range batch {
			deliver(p, kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", err))
		}
		return queued
	}
	defer c.cancel()
	if len(batch) == 1 {
		p := batch[0]
		resp, err := s.sendTxn(c, &etcdserverpb.TxnRequest{Compare: p.cmps, Success: p.ops})
		if err != nil {
			deliver(p, kv.CommitResult{}, s.fail(c, "commit", err, true))
			return queued
		}
		deliver(p, kv.CommitResult{Succeeded: resp.Succeeded, Rev: resp.Header.Revision}, nil)
		return queued
	}
	common, rest := hoist(batch)
	// One allocation for the nested transactions and one for their
	// wrappers (the messages are only read while the request is sent).
	nested := make([]*etcdserverpb.RequestOp, len(batch))
	reqs := make([]etcdserverpb.RequestOp, len(batch))
	txns := make([]etcdserverpb.TxnRequest, len(batch))
	wraps := make([]etcdserverpb.RequestOp_RequestTxn, len(batch))
	for i, p := range batch {
		cmps := p.cmps
		if common != nil {
			cmps = rest[i]
		}
		txns[i] = etcdserverpb.TxnRequest{Compare: cmps, Success: p.ops}
		wraps[i].RequestTxn = &txns[i]
		reqs[i].Request = &wraps[i]
		nested[i] = &reqs[i]
	}
	resp, err := s.sendTxn(c, &etcdserverpb.TxnRequest{Compare: common, Success: nested})
	if err != nil {
		err = s.fail(c, fmt.Sprintf("group commit of %d", len(batch)), err, true)
		for _, p := range batch {
			deliver(p, kv.CommitResult{}, err)
		}
		return queued
	}
	b.hoisted.Add(int64(len(common)))
	if !resp.Succeeded {
		// A hoisted compare failed: it fails every member, as each
		// member's own copy would have.
		for _, p := range batch {
			deliver(p, kv.CommitResult{Succeeded: false, Rev: resp.Header.Revision}, nil)
		}
		return queued
	}
	for i, p := range batch {
		r := resp.Responses[i].GetResponseTxn()
		if r == nil {
			deliver(p, kv.CommitResult{}, fmt.Errorf("etcdkv: group commit: response %d is not a transaction", i))
			continue
		}
		deliver(p, kv.CommitResult{Succeeded: r.Succeeded, Rev: resp.Header.Revision}, nil)
	}
	return queued
}
