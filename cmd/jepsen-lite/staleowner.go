package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

// staleOwnerKind is the nemesis that makes a late commit of a dropped
// owner land after a new owner acknowledged writes, and then makes that
// late commit visible to clients. Only the store's fence stops it
// (SkipStoreFence).
//
// Why a dedicated nemesis: a random etcd stall seldom lines up the three
// things the fence guards against — a commit in flight on exactly the
// owner of an actor, a new owner acknowledging writes before that commit
// lands, and a reader that sees the store afterwards. The last one is the
// subtle part: the new owner's KV cache is authoritative while it owns the
// actor, so its next write (an absolute value, computed from its cache)
// overwrites the stale one, and its reads are answered from the cache. A
// late commit that landed is therefore invisible unless the actor is
// activated afresh, from the store, before it is written again.
//
// One round, on the dedicated durable counter fenceActor (no other client
// calls it):
//  1. find its owner O and make O cache its value (a get through O);
//  2. stall O's etcd links by staleStall: every byte reaches etcd that much
//     later, so O's lease expires in etcd while O still believes it;
//  3. send one inc through O: O's commit enters the stalled link at once,
//     while O's lease is still valid locally, and reaches etcd at about
//     "due";
//  4. meanwhile two clients call inc through the other servers: once O's
//     lease expired a new owner N activates, reads the store and
//     acknowledges increments;
//  5. stop calling 1.5 s before due (with 0.7 s, one round in four
//     missed: the late commit landed while the new owner still wrote, and
//     its next write hid it), wait past due (the late commit has landed,
//     or was fenced), heal the stall;
//  6. kill -9 N and read through the other servers: the next activation
//     reads the store. With the fence the read counts every acknowledged
//     increment; without it the read returns O's stale value, below what
//     N acknowledged — porcupine and the lost-write check both fail.
//
// A round is "effective" when the inc through O ended indeterminate (its
// commit was in flight) and N acknowledged at least two increments before
// due (one is not enough: O's stale value equals N's first).
const staleOwnerKind = "stale-owner"

// fenceActor is the durable counter only the stale-owner nemesis calls.
var fenceActor = actorRef{"kvcounter", "f0"}

// staleRound is one round as the report shows it.
type staleRound struct {
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	// Owner is O (stalled), NewOwner N (killed), "" if none took over.
	Owner    string `json:"owner"`
	NewOwner string `json:"new_owner,omitempty"`
	// StaleOutcome is what the client of the inc through O saw.
	StaleOutcome string `json:"stale_outcome"`
	// NewAcked: increments acknowledged through the other servers before
	// the stale commit was due.
	NewAcked int `json:"new_acked"`
	// LastAcked is the largest value they returned; FreshRead what the
	// first read after N's kill returned ("" if none answered).
	LastAcked string `json:"last_acked,omitempty"`
	FreshRead string `json:"fresh_read,omitempty"`
	// FreshReadS is when the fresh read returned (seconds into the run):
	// with SkipStoreFence, when the violation became visible.
	FreshReadS float64 `json:"fresh_read_s,omitempty"`
	Effective  bool    `json:"effective"`
	Note       string  `json:"note,omitempty"`
}

type staleOwner struct {
	ctx    context.Context // the run's: Ctrl-C ends a round, the workload's end does not
	c      *cluster
	w      *workload
	stall  time.Duration
	client int // first client ID of its calls (beyond the workload's)
	rng    *rand.Rand
	fault  *nemesis.FuncFault
	out    func(string)

	mu     sync.Mutex
	rounds []staleRound
	done   chan struct{} // the current round's choreography ended
}

// staleStall is how late O's etcd traffic arrives: past the lease TTL by
// enough for a new owner to take over (etcd expires leases on its own
// clock, checking about every 500 ms) and acknowledge increments.
func staleStall(ttl time.Duration) time.Duration { return ttl + 3*time.Second }

func newStaleOwner(ctx context.Context, c *cluster, w *workload, cfg config, seed uint64, out func(string)) *staleOwner {
	so := &staleOwner{ctx: ctx, c: c, w: w, stall: staleStall(cfg.ttl), client: cfg.clients + 1,
		rng: rand.New(rand.NewPCG(seed, 0x5eed5)), out: out}
	var res []string
	for _, s := range c.servers {
		res = append(res, s.id)
	}
	so.fault = &nemesis.FuncFault{K: staleOwnerKind, T: "owner-of-" + fenceActor.id,
		// Every server (a round stalls one, kills another and calls through
		// the rest) and the store: no other fault overlaps a round.
		Resource: append(res, "etcd"),
		MinHold:  so.stall + 2*time.Second,
		StartFn:  so.start, StopFn: so.stop}
	return so
}

// warmUp gives the fence actor a history even if no round runs (the
// checkers fail an actor that was never called).
func (so *staleOwner) warmUp(ctx context.Context) error {
	for i := 0; ctx.Err() == nil && i < 50; i++ {
		if so.w.call(ctx, so.client, i%len(so.w.servers), fenceActor, "inc", "", "", "").Outcome == outOK {
			return nil
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("%s: no call answered before the workload", fenceActor)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// settle finds the fence actor's owner and makes it cache the value.
func (so *staleOwner) settle(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	w := so.w
	for ctx.Err() == nil {
		if w.call(ctx, so.client, so.rng.IntN(len(w.servers)), fenceActor, "get", "", "", "").Outcome != outOK {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		owner := w.owners(ctx, "")[fenceActor.id]
		for i, s := range w.servers {
			if s.id == owner && w.call(ctx, so.client, i, fenceActor, "get", "", "", "").Outcome == outOK {
				return i, nil
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return -1, fmt.Errorf("%s: owner not found or not answering", fenceActor)
}

func (so *staleOwner) start(ctx context.Context) error {
	so.mu.Lock()
	so.done = nil
	so.mu.Unlock()
	r := staleRound{StartS: time.Duration(so.w.now()).Seconds()}
	oi, err := so.settle(so.ctx)
	if err != nil {
		return err
	}
	o := so.c.servers[oi]
	r.Owner = o.id
	so.fault.T = o.id
	for _, p := range o.etcdPx {
		p.SetDelay(so.stall)
	}
	done := make(chan struct{})
	so.mu.Lock()
	so.done = done
	so.mu.Unlock()
	go func() {
		defer close(done)
		so.play(&r, oi)
		r.EndS = time.Duration(so.w.now()).Seconds()
		so.mu.Lock()
		so.rounds = append(so.rounds, r)
		so.mu.Unlock()
		if so.out != nil {
			so.out(fmt.Sprintf("stale-owner round: owner %s, new owner %q, %d acknowledged before due (last %s), stale inc %s, fresh read %q, effective %v %s",
				r.Owner, r.NewOwner, r.NewAcked, r.LastAcked, r.StaleOutcome, r.FreshRead, r.Effective, r.Note))
		}
	}()
	return nil
}

// play runs steps 3–6 of a round on owner oi.
func (so *staleOwner) play(r *staleRound, oi int) {
	ctx, w, o := so.ctx, so.w, so.c.servers[oi]
	heal := func() {
		for _, p := range o.etcdPx {
			p.SetDelay(0)
		}
	}
	defer heal()
	due := time.Now().Add(so.stall)
	stopAt := due.Add(-1500 * time.Millisecond)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		last int64 = -1
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.StaleOutcome = w.call(ctx, so.client, oi, fenceActor, "inc", "", "", "").Outcome
	}()
	var others []int
	for i := range w.servers {
		if i != oi {
			others = append(others, i)
		}
	}
	for k := range 2 {
		rng := rand.New(rand.NewPCG(so.rng.Uint64(), uint64(k)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Let the inc through O go first: a call forwarded to O must
			// not take its place in O's queue (it would be the stale one,
			// and the round's record would blame the wrong call).
			sleep(ctx, 200*time.Millisecond)
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				rec := w.call(ctx, so.client+1+k, others[rng.IntN(len(others))], fenceActor, "inc", "", "", "")
				if rec.Outcome == outOK && w.t0.Add(time.Duration(rec.End)).Before(due) {
					var v int64
					_, _ = fmt.Sscan(rec.Value, &v)
					mu.Lock()
					r.NewAcked++
					last = max(last, v)
					mu.Unlock()
				}
				sleep(ctx, 20*time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if last >= 0 {
		r.LastAcked = fmt.Sprint(last)
	}
	// The late commit reaches etcd at about due (plus the time O took to
	// send it): wait well past it before anyone may activate the actor
	// afresh.
	sleep(ctx, time.Until(due.Add(time.Second)))
	n := w.owners(ctx, o.id)[fenceActor.id]
	heal()
	var ns *server
	for _, s := range w.servers {
		if s.id == n && s != o {
			ns = s
		}
	}
	if ns == nil {
		r.Note = "no new owner took over during the stall"
		return
	}
	r.NewOwner = n
	// Effective: a commit of unknown outcome was in flight on O and N
	// acknowledged enough for a stale value to be told apart.
	r.Effective = r.NewAcked >= 2 && r.StaleOutcome == outIndet
	if err := ns.proc.Kill(); err != nil {
		r.Note = "kill of the new owner: " + err.Error()
		return
	}
	restarted := make(chan error, 1)
	go func() { restarted <- ns.proc.Start(ctx) }()
	// The fresh activation reads the store: through any server but N.
	deadline := time.Now().Add(4*so.c.ttl + 10*time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		si := so.rng.IntN(len(w.servers))
		if w.servers[si] == ns {
			continue
		}
		if rec := w.call(ctx, so.client, si, fenceActor, "get", "", "", ""); rec.Outcome == outOK {
			r.FreshRead, r.FreshReadS = rec.Value, time.Duration(rec.End).Seconds()
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	if err := <-restarted; err != nil {
		r.Note = "restart of the new owner: " + err.Error()
	}
}

// stop waits for the round to end (it heals and restarts what it hit).
func (so *staleOwner) stop(ctx context.Context) error {
	so.mu.Lock()
	done := so.done
	so.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stale-owner round did not end: %w", ctx.Err())
	}
}

func (so *staleOwner) results() []staleRound {
	so.mu.Lock()
	defer so.mu.Unlock()
	return append([]staleRound(nil), so.rounds...)
}
