package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
)

// KV usage (issue 10, finding 3).
//
//	(root, "kvq", ns, id) → (format 1, bytes) or (format 2, bytes, granted)
//	(root, "kvqn", ns)    → (format 1, allotted)
//
// bytes is the sum of EntrySize over the actor's KV entries. The record is
// written by the same fenced commit that changes the entries, and that
// commit also compares the record with the value it started from: the
// actor's owner is its only writer (the fence), and a count that does not
// match the store fails the commit instead of drifting. The engine checks
// its KV quota against the count before committing, so the quota holds
// atomically with the write.
//
// The actor count is per actor: a namespace-wide count written by every
// commit of every actor of the namespace would turn independent actors into
// contenders for one key (every commit a compare-and-swap that fails under
// concurrency, and group commit could never batch two of them). The
// namespace KV quota is therefore held by allotment: each actor holds a
// grant (granted) of its namespace's quota, at least its bytes once it grew
// under the quota, and the namespace record sums the grants handed out
// (allotted). A commit that fits the actor's grant touches only the actor's
// record; one that outgrows it takes a larger grant in the same commit,
// comparing and rewriting the namespace record — so allotted ≤ limit holds
// inside the store's own commit, and so does the namespace's usage ≤
// allotted. Grants come with some slack (grantSlack) so that a growing
// actor takes one every few commits, not every commit; an actor holding
// much more than it uses gives the surplus back in a commit that shrinks
// it, and a deleted actor's grant goes back when its KV is reclaimed.

// ErrKVQuota is matched by KVQuotaError and NamespaceKVQuotaError: a KV
// commit refused by a quota (nothing was written).
var ErrKVQuota = errors.New("registry: KV quota exceeded")

// EntrySize is what one KV entry counts against its actor's quota: the
// user key and the value.
func EntrySize(key, value []byte) int64 { return int64(len(key) + len(value)) }

// KVUsage is an actor's KV usage as read from the store.
type KVUsage struct {
	// Bytes is the sum of EntrySize over the actor's entries.
	Bytes int64
	// Granted is the part of its namespace's KV quota the actor holds
	// (zero: none, as without a namespace quota).
	Granted int64
	// record is the stored record (nil: none is stored yet).
	record []byte
}

// KVQuotaError reports an actor KV commit refused because it would take
// the actor past its KV byte quota. Nothing was written. It matches
// kv.ErrTooLarge and ErrKVQuota.
type KVQuotaError struct {
	Namespace, ID       string
	Used, Adding, Limit int64
}

func (e *KVQuotaError) Error() string {
	return fmt.Sprintf("KV quota of actor %s/%s: %d bytes stored + %d would exceed the limit of %d; delete keys, or ask the operator to raise the actor KV quota (nola serve --actor-kv-bytes)",
		e.Namespace, e.ID, e.Used, e.Adding, e.Limit)
}

// Is makes errors.Is(err, kv.ErrTooLarge) and errors.Is(err, ErrKVQuota)
// hold.
func (e *KVQuotaError) Is(target error) bool { return target == kv.ErrTooLarge || target == ErrKVQuota }

// NamespaceKVQuotaError reports an actor KV commit refused because its
// namespace's KV quota has no room for it. Nothing was written. Used counts
// the grants of the namespace's actors (each at most a little above the
// actor's stored bytes). It matches kv.ErrTooLarge and ErrKVQuota.
type NamespaceKVQuotaError struct {
	Namespace, ID       string
	Used, Adding, Limit int64
}

func (e *NamespaceKVQuotaError) Error() string {
	return fmt.Sprintf("KV quota of namespace %s: %d bytes held by its actors + %d for actor %s would exceed the limit of %d; delete keys or actors of the namespace, or ask the operator to raise the namespace KV quota (nola serve --namespace-kv-bytes)",
		e.Namespace, e.Used, e.Adding, e.ID, e.Limit)
}

// Is makes errors.Is(err, kv.ErrTooLarge) and errors.Is(err, ErrKVQuota)
// hold.
func (e *NamespaceKVQuotaError) Is(target error) bool {
	return target == kv.ErrTooLarge || target == ErrKVQuota
}

const (
	kvUsageFormat        = 1
	kvUsageGrantedFormat = 2
	nsKVUsageFormat      = 1
)

// encodeKVUsage writes format 1 while the actor holds no grant, so that
// servers without a namespace quota write what they always wrote.
func encodeKVUsage(n, granted int64) []byte {
	if granted == 0 {
		return tuple.AppendInt(tuple.AppendInt(nil, kvUsageFormat), n)
	}
	return tuple.AppendInt(tuple.AppendInt(tuple.AppendInt(nil, kvUsageGrantedFormat), n), granted)
}

func decodeKVUsage(b []byte) (n, granted int64, err error) {
	f, rest, err := tuple.ReadInt(b)
	if err != nil {
		return 0, 0, err
	}
	if n, rest, err = tuple.ReadInt(rest); err != nil {
		return 0, 0, err
	}
	if f == kvUsageGrantedFormat {
		if granted, rest, err = tuple.ReadInt(rest); err != nil {
			return 0, 0, err
		}
		if granted <= 0 {
			return 0, 0, errors.New("bad fields")
		}
	} else if f != kvUsageFormat {
		return 0, 0, errors.New("unknown format")
	}
	if n < 0 || len(rest) != 0 {
		return 0, 0, errors.New("bad fields")
	}
	return n, granted, nil
}

func encodeNamespaceKVUsage(allotted int64) []byte {
	return tuple.AppendInt(tuple.AppendInt(nil, nsKVUsageFormat), allotted)
}

func decodeNamespaceKVUsage(b []byte) (int64, error) {
	f, rest, err := tuple.ReadInt(b)
	if err != nil {
		return 0, err
	}
	n, rest, err := tuple.ReadInt(rest)
	switch {
	case err != nil:
		return 0, err
	case f != nsKVUsageFormat || n < 0 || len(rest) != 0:
		return 0, errors.New("bad fields")
	}
	return n, nil
}

// KVUsage is the key of an actor's KV usage record.
func (k Keyspace) KVUsage(ns, id string) []byte { return k.strings(0, "kvq", ns, id) }

// NamespaceKVUsage is the key of a namespace's KV allotment record.
func (k Keyspace) NamespaceKVUsage(ns string) []byte { return k.strings(0, "kvqn", ns) }

// ReadKVUsage returns actor (ns, id)'s KV usage. An actor without a usage
// record (its KV predates counting, or it has none) gets it computed from
// its entries; the first counted commit stores it.
//
// The usage record is per actor, not per generation: a delete removes it in
// its own commit, so the next life counts from zero.
func (r *Registry) ReadKVUsage(ctx context.Context, ns, id string, gen int64) (KVUsage, error) {
	e, found, err := r.store.Get(ctx, r.keys.KVUsage(ns, id), 0)
	if err != nil {
		return KVUsage{}, fmt.Errorf("registry: read KV usage of %s/%s: %w", ns, id, err)
	}
	if found {
		n, granted, err := decodeKVUsage(e.Value)
		if err != nil {
			return KVUsage{}, fmt.Errorf("registry: malformed KV usage record of %s/%s: %w", ns, id, err)
		}
		return KVUsage{Bytes: n, Granted: granted, record: e.Value}, nil
	}
	n, err := r.CountKV(ctx, ns, id, gen)
	return KVUsage{Bytes: n}, err
}

// countPage bounds the entries one read of CountKV returns.
const countPage = 256

// CountKV sums EntrySize over the stored entries of generation gen of
// actor (ns, id), reading them a page at a time.
func (r *Registry) CountKV(ctx context.Context, ns, id string, gen int64) (int64, error) {
	begin, end := r.keys.KVRange(ns, id, gen, nil, nil)
	prefix := r.keys.KVPrefix(ns, id, gen)
	var n int64
	for rev := int64(0); ; {
		res, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: countPage, Rev: rev})
		if err != nil {
			return 0, fmt.Errorf("registry: count KV of %s/%s: %w", ns, id, err)
		}
		rev = res.Rev // every page at one revision
		for _, e := range res.KVs {
			k, err := UserKey(prefix, e.Key)
			if err != nil {
				return 0, err
			}
			n += EntrySize(k, e.Value)
		}
		if !res.More || len(res.KVs) == 0 {
			return n, nil
		}
		begin = append(bytes.Clone(res.KVs[len(res.KVs)-1].Key), 0)
	}
}

// CommitKVCounted is CommitKV for an actor whose KV is counted: in the same
// fenced commit it moves the actor's usage record from use (what
// ReadKVUsage or the previous counted commit returned) to bytes, and
// requires the record to still hold use. It returns the new usage.
// ErrFenced means nothing was written: the incarnation or its ownership is
// gone, or the record is not use any more (then ReadKVUsage again).
func (r *Registry) CommitKVCounted(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, use KVUsage, bytes int64) (KVUsage, error) {
	return r.CommitKVCountedWith(ctx, inc, ns, id, ownerRecord, writes, use, bytes, CommitOptions{})
}

// CommitKVCountedWith is CommitKVCounted with options (the creation hook's
// commit). The actor's grant of its namespace's quota is left as it is.
func (r *Registry) CommitKVCountedWith(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, use KVUsage, bytes int64, o CommitOptions) (KVUsage, error) {
	return r.commitCounted(ctx, inc, ns, id, ownerRecord, writes, use, bytes, use.Granted, nil, o)
}

// commitCounted commits writes and moves the actor's usage record from use
// to (bytes, granted); with nsMove set, the namespace record moves as it
// says in the same commit.
func (r *Registry) commitCounted(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, use KVUsage, bytes, granted int64, nsMove *nsMove, o CommitOptions) (KVUsage, error) {
	if bytes < 0 || granted < 0 {
		return KVUsage{}, fmt.Errorf("registry: commit KV of %s/%s: negative usage %d or grant %d: %w", ns, id, bytes, granted, kv.ErrInvalid)
	}
	key := r.keys.KVUsage(ns, id)
	guards := []kv.Compare{kv.Absent(key)}
	if use.record != nil {
		guards[0] = kv.ValueEquals(key, use.record)
	}
	next := encodeKVUsage(bytes, granted)
	extras := []kv.Op{kv.Put(key, next, kv.NoLease)}
	if nsMove != nil {
		guards = append(guards, nsMove.guard(r.keys.NamespaceKVUsage(ns)))
		extras = append(extras, kv.Put(r.keys.NamespaceKVUsage(ns), encodeNamespaceKVUsage(nsMove.to), kv.NoLease))
	}
	if err := r.commitKV(ctx, inc, ns, id, ownerRecord, writes, guards, extras, o); err != nil {
		return KVUsage{}, err
	}
	return KVUsage{Bytes: bytes, Granted: granted, record: next}, nil
}

// KVQuota holds the KV byte bounds of CommitKVQuota (zero: no bound).
type KVQuota struct {
	// Actor bounds the actor's bytes (Limits.MaxActorKVBytes).
	Actor int64
	// Namespace bounds the sum of the grants of the namespace's actors
	// (Limits.MaxNamespaceKVBytes), and so its bytes.
	Namespace int64
}

// NamespaceKVUsage is a namespace's KV allotment as read from the store.
type NamespaceKVUsage struct {
	// Allotted is the sum of the grants its actors hold.
	Allotted int64
	record   []byte
}

// nsMove is a change of the namespace record inside a KV commit: from the
// record read (nil: none) to allotted = to.
type nsMove struct {
	from NamespaceKVUsage
	to   int64
}

func (m *nsMove) guard(key []byte) kv.Compare {
	if m.from.record == nil {
		return kv.Absent(key)
	}
	return kv.ValueEquals(key, m.from.record)
}

// ReadNamespaceKVUsage returns namespace ns's KV allotment (zero when no
// actor of it holds a grant).
func (r *Registry) ReadNamespaceKVUsage(ctx context.Context, ns string) (NamespaceKVUsage, error) {
	e, found, err := r.store.Get(ctx, r.keys.NamespaceKVUsage(ns), 0)
	if err != nil {
		return NamespaceKVUsage{}, fmt.Errorf("registry: read KV usage of namespace %s: %w", ns, err)
	}
	if !found {
		return NamespaceKVUsage{}, nil
	}
	n, err := decodeNamespaceKVUsage(e.Value)
	if err != nil {
		return NamespaceKVUsage{}, fmt.Errorf("registry: malformed KV usage record of namespace %s: %w", ns, err)
	}
	return NamespaceKVUsage{Allotted: n, record: e.Value}, nil
}

// grantSlack is what a grant adds beyond what the commit needs, so that a
// growing actor takes a grant every few commits: 64 KiB, at most 1/32 of
// the namespace quota. An actor holds at most about twice this beyond its
// bytes (see CommitKVQuota), which is all the quota loses to allotment.
func grantSlack(limit int64) int64 { return min(64<<10, limit/32) }

// quotaAttempts bounds the commits CommitKVQuota tries when other servers'
// grants keep changing the namespace record under it.
const quotaAttempts = 16

// grantStripes is the number of locks a registry's grants are serialized
// by (namespaces hash onto them).
const grantStripes = 64

// grantLock returns the lock of namespace ns's grants in this registry.
// Without it, the actors of one server growing at once contend for the
// namespace record among themselves: group commit never batches two
// commits that write one key, so each grant lands in a batch of its own,
// after which every other one read a stale record and must retry
// (measured: 16 actors each taking a grant every eighth call exhausted 16
// attempts). With it, only servers contend, one grant each at a time.
func (r *Registry) grantLock(ns string) rt.Sema {
	h := fnv.New32a()
	h.Write([]byte(ns))
	i := h.Sum32() % grantStripes
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.grants[i] == nil {
		r.grants[i] = r.rt.NewSema(1)
	}
	return r.grants[i]
}

// CommitKVQuota is CommitKVCounted under quotas: the writes change the
// actor's bytes by delta (what the engine computed from the sizes they
// replace). Growth past q.Actor is KVQuotaError. With q.Namespace set,
// growth past the actor's grant takes a new grant in the same commit,
// compared against the namespace record; none left is
// NamespaceKVQuotaError. Nothing is written on any error. A commit that
// shrinks the actor always passes (it may give grant back). ErrFenced: as
// CommitKVCounted; ErrContention: the namespace record changed under every
// attempt (nothing written).
func (r *Registry) CommitKVQuota(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, use KVUsage, delta int64, q KVQuota, o CommitOptions) (KVUsage, error) {
	bytes := max(0, use.Bytes+delta)
	if q.Actor > 0 && delta > 0 && bytes > q.Actor {
		return KVUsage{}, &KVQuotaError{Namespace: ns, ID: id, Used: use.Bytes, Adding: delta, Limit: q.Actor}
	}
	if q.Namespace <= 0 {
		return r.commitCounted(ctx, inc, ns, id, ownerRecord, writes, use, bytes, use.Granted, nil, o)
	}
	slack := grantSlack(q.Namespace)
	var give int64 // grant to give back
	switch {
	case bytes > use.Granted && delta > 0:
		// Outgrown: take a grant below.
	case use.Granted-bytes > 2*slack && delta < 0:
		give = use.Granted - bytes - slack
	default:
		// Fits, or shrinks KV that predates the grant: the namespace
		// record is not touched (no contention).
		return r.commitCounted(ctx, inc, ns, id, ownerRecord, writes, use, bytes, use.Granted, nil, o)
	}
	lock := r.grantLock(ns)
	if err := lock.Acquire(ctx); err != nil {
		return KVUsage{}, fmt.Errorf("registry: commit KV of %s/%s: waiting for the namespace's grants (%v): %w", ns, id, err, kv.ErrUnavailable)
	}
	defer lock.Release()
	for range quotaAttempts {
		cur, err := r.ReadNamespaceKVUsage(ctx, ns)
		if err != nil {
			return KVUsage{}, err
		}
		m := &nsMove{from: cur}
		granted := use.Granted - give
		if give > 0 {
			m.to = max(0, cur.Allotted-give)
		} else {
			need := bytes - use.Granted
			room := q.Namespace - cur.Allotted
			if need > room {
				return KVUsage{}, &NamespaceKVQuotaError{Namespace: ns, ID: id, Used: cur.Allotted, Adding: need, Limit: q.Namespace}
			}
			grant := min(need+slack, room)
			granted, m.to = use.Granted+grant, cur.Allotted+grant
		}
		next, err := r.commitCounted(ctx, inc, ns, id, ownerRecord, writes, use, bytes, granted, m, o)
		if !errors.Is(err, ErrFenced) {
			return next, err
		}
		// Refused: by the fence, the actor's record, or another actor's
		// grant changing the namespace record. Only the last is worth
		// another attempt.
		again, rerr := r.ReadNamespaceKVUsage(ctx, ns)
		if rerr != nil || sameRecord(again.record, cur.record) {
			return KVUsage{}, err
		}
	}
	return KVUsage{}, fmt.Errorf("registry: commit KV of %s/%s: namespace KV usage keeps changing: %w", ns, id, ErrContention)
}

// sameRecord reports whether two stored records are the same (both absent
// included).
func sameRecord(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// countedOverhead is what counting adds to a KV commit: the usage compare
// and write (at their largest) and those of the namespace record, which a
// commit that takes or gives back a grant carries.
func (r *Registry) countedOverhead(ns, id string) kv.Txn {
	key, nsKey := r.keys.KVUsage(ns, id), r.keys.NamespaceKVUsage(ns)
	most, nsMost := encodeKVUsage(math.MaxInt64, math.MaxInt64), encodeNamespaceKVUsage(math.MaxInt64)
	return kv.Txn{
		Compares: []kv.Compare{kv.ValueEquals(key, most), kv.ValueEquals(nsKey, nsMost)},
		Ops:      []kv.Op{kv.Put(key, most, kv.NoLease), kv.Put(nsKey, nsMost, kv.NoLease)},
	}
}
