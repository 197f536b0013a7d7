package nola

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// kvTxn is the implicit transaction of one invocation: reads see its own
// writes; the writes commit atomically, fenced, when the invocation succeeds
// (or before an outgoing call), and are discarded otherwise.
type kvTxn struct {
	writes map[string]pendingWrite
	bytes  int
	// use is the actor's KV usage after its last counted commit (nil: not
	// read yet); kept across invocations, only with a KV quota
	// (Limits.MaxActorKVBytes, Limits.MaxNamespaceKVBytes).
	use *registry.KVUsage
}

type pendingWrite struct {
	value []byte
	del   bool
}

// cacheEntry is a committed value the owner remembers. The owner is the
// only writer of its actor's KV, so its cache is authoritative while it owns
// the actor; it dies with the activation.
type cacheEntry struct {
	value  []byte
	exists bool
}

const (
	maxCacheEntries = 256
	maxCacheBytes   = 256 << 10
)

func (t *kvTxn) reset() {
	clear(t.writes)
	t.bytes = 0
}

func (t *kvTxn) dirty() bool { return len(t.writes) > 0 }

func (t *kvTxn) checkKey(c *Context, key []byte) error {
	if err := noKV(c); err != nil {
		return err
	}
	lim := c.act.srv.cfg.Limits
	if len(key) == 0 {
		return ownErr(CodeBadRequest, "KV key is empty")
	}
	if len(key) > lim.MaxKVKeyBytes {
		return ownErr(CodeTooLarge, "KV key of %d bytes exceeds the limit of %d", len(key), lim.MaxKVKeyBytes)
	}
	return nil
}

func (t *kvTxn) get(c *Context, key []byte) ([]byte, bool, error) {
	if err := t.checkKey(c, key); err != nil {
		return nil, false, err
	}
	if w, ok := t.writes[string(key)]; ok {
		if w.del {
			return nil, false, nil
		}
		return bytes.Clone(w.value), true, nil
	}
	a := c.act
	if e, ok := a.cached(key); ok {
		if !e.exists {
			return nil, false, nil
		}
		return bytes.Clone(e.value), true, nil
	}
	v, found, err := a.srv.reg.GetKV(c.cur(), a.ns(), a.actorID(), a.gen, key)
	if err != nil {
		return nil, false, wrapErr(err, false, "")
	}
	a.remember(key, v, found)
	if !found {
		return nil, false, nil
	}
	return bytes.Clone(v), true, nil
}

func (t *kvTxn) write(c *Context, key []byte, w pendingWrite) error {
	if err := t.checkKey(c, key); err != nil {
		return err
	}
	lim := c.act.srv.cfg.Limits
	if len(w.value) > lim.MaxKVValueBytes {
		return ownErr(CodeTooLarge, "KV value of %d bytes exceeds the limit of %d", len(w.value), lim.MaxKVValueBytes)
	}
	// Check the commit these writes will make against the store's limits
	// now, so that an oversized one fails at Put and never half-builds.
	b := c.act.budget()
	old, replacing := t.writes[string(key)]
	size := t.bytes + b.WriteSize(key, w.value)
	if replacing {
		size -= b.WriteSize(key, old.value)
	}
	if !replacing && b.MaxWrites > 0 && len(t.writes)+1 > b.MaxWrites {
		return ownErr(CodeTooLarge, "more than %d KV writes in one invocation", b.MaxWrites)
	}
	if b.MaxBytes > 0 && size > b.MaxBytes {
		return ownErr(CodeTooLarge, "KV writes of one invocation exceed the store's %d bytes per commit", b.MaxBytes)
	}
	if t.writes == nil {
		t.writes = map[string]pendingWrite{}
	}
	w.value = bytes.Clone(w.value)
	t.writes[string(key)] = w
	t.bytes = size
	c.wrote = true
	return nil
}

func (t *kvTxn) put(c *Context, key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return t.write(c, key, pendingWrite{value: value})
}

func (t *kvTxn) del(c *Context, key []byte) error {
	return t.write(c, key, pendingWrite{del: true})
}

// sortedWrites returns the pending writes in key order (commits must not
// depend on map order: determinism).
func (t *kvTxn) sortedWrites() []registry.KVWrite {
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]registry.KVWrite, len(keys))
	for i, k := range keys {
		w := t.writes[k]
		out[i] = registry.KVWrite{Key: []byte(k), Value: w.value, Delete: w.del}
	}
	return out
}

// flush commits the pending writes now, fenced. On failure they are
// discarded and the error says why.
func (t *kvTxn) flush(c *Context) error {
	if broken := c.brokenErr(); broken != nil && !c.act.srv.cfg.Mutations.Has(mutation.ActorErrorHidesFailedCommit) {
		// A commit of this invocation failed: nothing after it may commit
		// (the invocation fails as a whole), and no call may leave.
		t.reset()
		return broken
	}
	a := c.act
	if !t.dirty() && !a.creating {
		return nil
	}
	writes := t.sortedWrites()
	t.reset()
	a.srv.checkWrites(a.key(), writes)
	if r := a.srv.rt; rt.Buggify(r, "kv.commit-delayed") {
		// A commit may be slow to prepare (a GC pause, a loaded CPU): long
		// enough, here, to outlive the lease, so that the gate below has to
		// refuse it. (Delays after the gate are the network's: the
		// simulator's links delay and reorder the commit itself, and the
		// store's fence rejects it.)
		_ = r.Sleep(c.ctx, time.Duration(1+r.Uint64()%3000)*time.Millisecond)
	}
	if err := a.srv.effectAllowed(a); err != nil {
		return c.setBroken(err)
	}
	// The commit does not inherit the caller's cancellation: a caller that
	// gives up must not turn a commit into one of unknown outcome (which
	// costs the next activation a Bump, below). It is bounded by
	// CommitTimeout instead.
	cctx, cancel := a.srv.rt.WithTimeout(context.WithoutCancel(c.ctx), a.srv.cfg.CommitTimeout)
	defer cancel()
	if err := t.commit(c, cctx, writes); err != nil {
		if commitOutcomeUnknown(err) {
			// The commit may still reach the store and be applied later
			// (a slow link, a stalled connection). Its fence compares the
			// incarnation and the actor record at this activation's
			// epoch: a newer activation under the same epoch would commit
			// and then see its acknowledged writes replaced by this late
			// one. So the next activation bumps the epoch first, after
			// which the late commit's fence fails. (Found by the
			// simulator; see sim.TestLateCommitOfDroppedActivationIsNotApplied.)
			a.srv.markDoubt(a.inc, a.key(), a.epoch)
		}
		return c.setBroken(wrapErr(err, false, ""))
	}
	c.effects = true
	if a.creating {
		// The creation is recorded: later commits (after an outgoing call
		// of the hook) must not try again, and their budget is the usual.
		a.creating, a.kvBudget = false, nil
	}
	if o := a.srv.cfg.Observer; o != nil {
		o.Committed(a.event("", false))
	}
	for _, w := range writes {
		a.remember(w.Key, w.Value, !w.Delete)
	}
	return nil
}

// commit sends the writes in one fenced commit; with a KV quota the
// registry checks it and moves the usage records in the same commit.
func (t *kvTxn) commit(c *Context, ctx context.Context, writes []registry.KVWrite) error {
	a := c.act
	q := a.srv.cfg.Limits.kvQuota()
	opts := registry.CommitOptions{Created: a.creating}
	if q == (registry.KVQuota{}) {
		return a.srv.reg.CommitKVWith(ctx, a.inc, a.ns(), a.actorID(), a.owner(), writes, opts)
	}
	if t.use == nil {
		use, err := a.srv.reg.ReadKVUsage(ctx, a.ns(), a.actorID(), a.gen)
		if err != nil {
			return &notSent{err}
		}
		t.use = &use
	}
	delta, err := t.delta(c, ctx, writes)
	if err != nil {
		return &notSent{err}
	}
	use := *t.use
	// Whatever happens next, the count this activation holds may be
	// stale: read it again unless the commit succeeds. (A quota refusal
	// leaves it valid, but one read per refusal costs little.)
	t.use = nil
	next, err := a.srv.reg.CommitKVQuota(ctx, a.inc, a.ns(), a.actorID(), a.owner(), writes, use, delta, q, opts)
	if err != nil {
		return err
	}
	t.use = &next
	return nil
}

// delta is how much the writes change the actor's KV usage. The size an
// entry had comes from the cache (authoritative while the activation owns
// the actor) or, for keys not cached, from the store.
func (t *kvTxn) delta(c *Context, ctx context.Context, writes []registry.KVWrite) (int64, error) {
	a := c.act
	var d int64
	for _, w := range writes {
		if !w.Delete {
			d += registry.EntrySize(w.Key, w.Value)
		}
		if e, ok := a.cached(w.Key); ok {
			if e.exists {
				d -= registry.EntrySize(w.Key, e.value)
			}
			continue
		}
		old, found, err := a.srv.reg.GetKV(ctx, a.ns(), a.actorID(), a.gen, w.Key)
		if err != nil {
			return 0, err
		}
		if found {
			d -= registry.EntrySize(w.Key, old)
		}
	}
	return d, nil
}

// commitOutcomeUnknown reports whether a failed commit may nevertheless
// have been (or yet be) applied: anything but a definite refusal.
func commitOutcomeUnknown(err error) bool {
	if errors.Is(err, kv.ErrIndeterminate) {
		return true
	}
	var early *notSent
	if errors.As(err, &early) {
		return false
	}
	return !errors.Is(err, registry.ErrFenced) && !errors.Is(err, kv.ErrUnavailable) &&
		!errors.Is(err, kv.ErrTooLarge) && !errors.Is(err, kv.ErrInvalid) &&
		!errors.Is(err, registry.ErrContention)
}

// notSent marks a commit that failed before it was sent (reading the KV
// usage for the quota): its outcome is known, nothing was written.
type notSent struct{ err error }

func (e *notSent) Error() string { return e.err.Error() }
func (e *notSent) Unwrap() error { return e.err }

// commitError marks a failed commit: the activation's memory may now
// disagree with its KV, so the activation is discarded.
type commitError struct{ err error }

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// noKV is the error of every KV operation of a server without KV
// (ServerConfig.NoKV), or nil.
func noKV(c *Context) error {
	if m := c.act.srv.cfg.NoKV; m != "" {
		return &Error{Code: CodeUnsupported, own: true, Message: m}
	}
	return nil
}

func (t *kvTxn) scan(c *Context, start, end, prefix []byte, limit int) ([]KV, error) {
	if err := noKV(c); err != nil {
		return nil, err
	}
	a := c.act
	if limit < 0 {
		return nil, ownErr(CodeBadRequest, "negative scan limit")
	}
	inRange := func(k string) bool {
		if prefix != nil {
			return strings.HasPrefix(k, string(prefix))
		}
		return k >= string(start) && (end == nil || k < string(end))
	}
	var pending []string
	for k := range t.writes {
		if inRange(k) {
			pending = append(pending, k)
		}
	}
	fetch := limit
	if fetch > 0 {
		// Each pending write can hide at most one stored entry.
		fetch += len(pending)
	}
	var (
		stored []registry.KVPair
		err    error
	)
	if prefix != nil {
		stored, _, err = a.srv.reg.ScanKVPrefix(c.cur(), a.ns(), a.actorID(), a.gen, prefix, fetch)
	} else {
		stored, _, err = a.srv.reg.ScanKV(c.cur(), a.ns(), a.actorID(), a.gen, start, end, fetch)
	}
	if err != nil {
		return nil, wrapErr(err, false, "")
	}
	out := make([]KV, 0, len(stored)+len(pending))
	for _, p := range stored {
		if _, shadowed := t.writes[string(p.Key)]; shadowed {
			continue
		}
		out = append(out, KV{Key: p.Key, Value: p.Value})
	}
	for _, k := range pending {
		if w := t.writes[k]; !w.del {
			out = append(out, KV{Key: []byte(k), Value: bytes.Clone(w.value)})
		}
	}
	slices.SortFunc(out, func(x, y KV) int { return bytes.Compare(x.Key, y.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// KV is one entry of an actor's KV.
type KV struct {
	Key, Value []byte
}

// txn returns the invocation's KV transaction, or nil once it is over.
func (c *Context) txn() *kvTxn {
	if c.over {
		return nil
	}
	return &c.act.txn
}

// Get reads key from the actor's KV, seeing this invocation's own writes.
// The returned slice is the caller's.
func (c *Context) Get(key []byte) ([]byte, bool, error) {
	t := c.txn()
	if t == nil {
		return nil, false, errOver()
	}
	return t.get(c, key)
}

// Put writes key=value. Writes commit together when the invocation returns
// successfully (or before an outgoing call); an error or panic discards them.
func (c *Context) Put(key, value []byte) error {
	t := c.txn()
	if t == nil {
		return errOver()
	}
	return t.put(c, key, value)
}

// Delete removes key.
func (c *Context) Delete(key []byte) error {
	t := c.txn()
	if t == nil {
		return errOver()
	}
	return t.del(c, key)
}

// Scan returns up to limit entries (0: no limit) with keys in [start, end),
// end nil meaning to the last key, in key order, including this
// invocation's own writes.
func (c *Context) Scan(start, end []byte, limit int) ([]KV, error) {
	t := c.txn()
	if t == nil {
		return nil, errOver()
	}
	return t.scan(c, start, end, nil, limit)
}

// ScanPrefix returns up to limit entries whose keys start with prefix.
func (c *Context) ScanPrefix(prefix []byte, limit int) ([]KV, error) {
	t := c.txn()
	if t == nil {
		return nil, errOver()
	}
	return t.scan(c, nil, nil, prefix, limit)
}

// budget returns the activation's KV commit budget, computing it on first
// use (most actors never write). The caller holds a.lock.
func (a *activation) budget() registry.KVBudget {
	if a.kvBudget == nil {
		b := a.srv.reg.KVBudgetWith(a.inc, a.ns(), a.actorID(), a.owner(),
			a.srv.cfg.Limits.kvQuota() != (registry.KVQuota{}), registry.CommitOptions{Created: a.creating})
		a.kvBudget = &b
	}
	return *a.kvBudget
}

// cached returns the KV read cache's entry for key. The caller holds
// a.lock.
func (a *activation) cached(key []byte) (cacheEntry, bool) {
	x := a.aux.Load()
	if x == nil {
		return cacheEntry{}, false
	}
	e, ok := x.cache[string(key)]
	return e, ok
}

// remember caches a committed KV value (the owner is the only writer).
func (a *activation) remember(key, value []byte, exists bool) {
	x := a.auxOf()
	if x.cache == nil {
		x.cache = map[string]cacheEntry{}
	}
	before := x.cacheBytes
	if old, ok := x.cache[string(key)]; ok {
		// Gone in any case: a value too big to cache must not leave the
		// old one behind to be read.
		delete(x.cache, string(key))
		x.cacheBytes -= len(key) + len(old.value)
	}
	if len(x.cache) >= maxCacheEntries || x.cacheBytes+len(key)+len(value) > maxCacheBytes {
		clear(x.cache)
		x.cacheBytes = 0
	}
	if len(key)+len(value) <= maxCacheBytes {
		x.cache[string(key)] = cacheEntry{value: value, exists: exists}
		x.cacheBytes += len(key) + len(value)
	}
	a.srv.checkCount("KV cache bytes of "+a.actorID(), int64(x.cacheBytes))
	if d := x.cacheBytes - before; d != 0 {
		a.srv.charge(a, int64(d))
	}
}

// CreationArgs returns the arguments the call that created the actor
// carried (nil if it carried none), for any invocation of the actor's
// life; a Creator receives them in Create as well. They are read from the
// store once per activation. The returned slice is the caller's.
func (c *Context) CreationArgs() ([]byte, error) {
	if c.over {
		return nil, errOver()
	}
	a := c.act
	if !a.argsRead {
		cr, err := a.srv.reg.ReadCreation(c.cur(), a.ns(), a.actorID())
		if err != nil {
			return nil, wrapErr(err, false, "")
		}
		a.cacheArgs(cr.Args)
	}
	// argsRead: cacheArgs made a.aux, which is never unset.
	return bytes.Clone(a.aux.Load().args), nil
}
