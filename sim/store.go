package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nolaproject/nola/model"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// storeLink is one participant's connection to the store: a kv.Store whose
// every request travels the simulated network to the store's node, runs
// there against memkv, and whose answer travels back. A request lost on
// the way, or whose answer is lost, or that the caller stops waiting for,
// surfaces like a real one: kv.ErrIndeterminate (it may still be applied
// later, when it arrives). A request the caller knows it could not send
// (a connection error) fails with kv.ErrUnavailable: certainly not applied.
//
// Server links report every applied KV commit to the oracle with the
// incarnation the server had when it sent the commit.
type storeLink struct {
	n         *Network
	from      string
	node      *simrt.Node
	inner     *memkv.Store
	storeNode *simrt.Node
	timeout   time.Duration
	// incarnation returns the sending server's current incarnation (0
	// while it has none); nil for clients.
	incarnation func() int64
	oracle      *Oracle
	// released, on server links, counts each actor release that reaches
	// the store, with whether the server was shutting down (stopping)
	// when it sent it.
	released func(atStop bool, res kv.CommitResult, err error)
	stopping func() bool
	// ref, if set, abstracts what the store applies into model steps
	// (Config.Refine).
	ref *refinement
}

var _ kv.Store = (*storeLink)(nil)

type storeReply[T any] struct {
	v   T
	err error
}

// roundTrip sends one request; apply runs on the store's node when (if) it
// arrives.
func roundTrip[T any](l *storeLink, ctx context.Context, op string, apply func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	n := l.n
	fut := rt.NewFuture[storeReply[T]](l.node)
	answer := func(v T, err error) {
		n.send(storeName, l.from, func() { fut.Resolve(storeReply[T]{v: v, err: err}, nil) }, nil)
	}
	sent := n.send(l.from, storeName, func() {
		if n.storeIsDown() {
			answer(zero, fmt.Errorf("simstore: %s: no quorum: %w", op, kv.ErrUnavailable))
			return
		}
		l.storeNode.Go("store", func() { answer(apply()) })
	}, nil)
	if !sent && n.rng.IntN(2) == 0 {
		// The client noticed that it could not reach the store.
		return zero, fmt.Errorf("simstore: %s from %s: connection failed: %w", op, l.from, kv.ErrUnavailable)
	}
	wctx, cancel := l.node.WithTimeout(ctx, l.timeout)
	defer cancel()
	r, err := fut.Wait(wctx)
	if err != nil {
		return zero, fmt.Errorf("simstore: %s from %s: no answer: %w: %w", op, l.from, kv.ErrIndeterminate, err)
	}
	return r.v, r.err
}

func (l *storeLink) Get(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	key = bytes.Clone(key)
	type got struct {
		kv    kv.KeyValue
		found bool
	}
	r, err := roundTrip(l, ctx, "get", func() (got, error) {
		v, found, err := l.inner.Get(context.Background(), key, rev)
		if l.ref != nil && rev == 0 {
			l.ref.refRead(l, key, v, found, err)
		}
		return got{v, found}, err
	})
	return r.kv, r.found, err
}

func (l *storeLink) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	r.Begin, r.End = bytes.Clone(r.Begin), bytes.Clone(r.End)
	return roundTrip(l, ctx, "range", func() (kv.RangeResult, error) {
		return l.inner.Range(context.Background(), r)
	})
}

func (l *storeLink) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	t = cloneTxn(t)
	var (
		inc     int64
		senders map[string]actKey
	)
	if l.incarnation != nil && l.oracle != nil {
		// The incarnation under which the server sends the commit: the
		// engine checked it is live just before (no blocking in between);
		// and the activations sending it.
		inc = l.incarnation()
		senders = l.oracle.senders(l.from, inc, t)
	}
	tok := tokenOf(ctx)
	// An owner's rewrite of an actor record (a release, an epoch bump) is
	// checked by the oracle when applied; releases are counted.
	var (
		owner          ownerRewrite
		isOwner        bool
		atStop, gaveUp bool
	)
	if l.incarnation != nil && l.oracle != nil {
		owner, isOwner = l.oracle.ownerWrite(l.from, t)
		atStop = l.stopping != nil && l.stopping()
	}
	var refApply func(bool)
	if l.ref != nil {
		var send *model.RefEvent
		send, refApply = l.ref.refCommit(l, t)
		if send != nil {
			l.ref.step(*send)
		}
	}
	res, err := roundTrip(l, ctx, "commit", func() (kv.CommitResult, error) {
		var applied, foreign func()
		if l.incarnation != nil && l.oracle != nil {
			applied = l.oracle.beforeCommit(l.from, inc, senders, t)
			foreign = l.oracle.releaseCheck(l.from, inc, t)
		}
		res, err := l.inner.Commit(context.Background(), t)
		if refApply != nil && err == nil {
			refApply(res.Succeeded)
		}
		if isOwner && owner.release && !owner.deleted && l.released != nil {
			l.released(atStop, res, err)
		}
		if isOwner && err == nil && res.Succeeded {
			l.oracle.ownerWritten(owner, gaveUp, atStop)
		}
		if err == nil && res.Succeeded {
			// A durable effect of the client operation that sent it.
			l.n.fx.effect(tok)
			if applied != nil {
				applied()
			}
			if foreign != nil {
				foreign()
			}
		}
		return res, err
	})
	gaveUp = errors.Is(err, kv.ErrIndeterminate)
	return res, err
}

func (l *storeLink) Grant(ctx context.Context, ttl time.Duration) (kv.LeaseID, error) {
	return roundTrip(l, ctx, "grant", func() (kv.LeaseID, error) {
		id, err := l.inner.Grant(context.Background(), ttl)
		if l.ref != nil {
			l.ref.refLease(model.RefGrant, id, ttl, err)
		}
		return id, err
	})
}

func (l *storeLink) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	return roundTrip(l, ctx, "keep-alive", func() (time.Duration, error) {
		d, err := l.inner.KeepAlive(context.Background(), id)
		if l.ref != nil {
			l.ref.refLease(model.RefKeepAlive, id, 0, err)
		}
		return d, err
	})
}

func (l *storeLink) Revoke(ctx context.Context, id kv.LeaseID) error {
	_, err := roundTrip(l, ctx, "revoke", func() (struct{}, error) {
		err := l.inner.Revoke(context.Background(), id)
		if l.ref != nil {
			l.ref.refLease(model.RefRevoke, id, 0, err)
		}
		return struct{}{}, err
	})
	return err
}

func (l *storeLink) Limits() kv.Limits { return l.inner.Limits() }

// Close does not close the shared store.
func (l *storeLink) Close() error { return nil }

func cloneTxn(t kv.Txn) kv.Txn {
	out := kv.Txn{Compares: make([]kv.Compare, len(t.Compares)), Ops: make([]kv.Op, len(t.Ops))}
	for i, c := range t.Compares {
		c.Key, c.End, c.Value = bytes.Clone(c.Key), bytes.Clone(c.End), bytes.Clone(c.Value)
		out.Compares[i] = c
	}
	for i, o := range t.Ops {
		o.Key, o.End, o.Value = bytes.Clone(o.Key), bytes.Clone(o.End), bytes.Clone(o.Value)
		out.Ops[i] = o
	}
	return out
}
