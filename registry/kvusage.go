package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// KV usage (issue 10, finding 3).
//
//	(root, "kvq", ns, id) → (format 1, bytes)
//
// bytes is the sum of EntrySize over the actor's KV entries. The record is
// written by the same fenced commit that changes the entries, and that
// commit also compares the record with the value it started from: the
// actor's owner is its only writer (the fence), and a count that does not
// match the store fails the commit instead of drifting. The engine checks
// its KV quota against the count before committing, so the quota holds
// atomically with the write.
//
// Counting is per actor, not per namespace: a namespace-wide record written
// by every commit of every actor of the namespace would turn independent
// actors into contenders for one key (every commit a compare-and-swap that
// fails under concurrency).

// EntrySize is what one KV entry counts against its actor's quota: the
// user key and the value.
func EntrySize(key, value []byte) int64 { return int64(len(key) + len(value)) }

// KVUsage is an actor's KV usage as read from the store.
type KVUsage struct {
	// Bytes is the sum of EntrySize over the actor's entries.
	Bytes int64
	// record is the stored record (nil: none is stored yet).
	record []byte
}

// KVQuotaError reports an actor KV commit refused because it would take
// the actor past its KV byte quota. Nothing was written. It matches
// kv.ErrTooLarge.
type KVQuotaError struct {
	Namespace, ID       string
	Used, Adding, Limit int64
}

func (e *KVQuotaError) Error() string {
	return fmt.Sprintf("KV quota of actor %s/%s: %d bytes stored + %d would exceed the limit of %d; delete keys, or ask the operator to raise the actor KV quota (nola serve --actor-kv-bytes)",
		e.Namespace, e.ID, e.Used, e.Adding, e.Limit)
}

// Is makes errors.Is(err, kv.ErrTooLarge) hold.
func (e *KVQuotaError) Is(target error) bool { return target == kv.ErrTooLarge }

const kvUsageFormat = 1

func encodeKVUsage(n int64) []byte {
	return tuple.AppendInt(tuple.AppendInt(nil, kvUsageFormat), n)
}

func decodeKVUsage(b []byte) (int64, error) {
	f, rest, err := tuple.ReadInt(b)
	if err != nil {
		return 0, err
	}
	n, rest, err := tuple.ReadInt(rest)
	switch {
	case err != nil:
		return 0, err
	case f != kvUsageFormat || n < 0 || len(rest) != 0:
		return 0, errors.New("bad fields")
	}
	return n, nil
}

// KVUsage is the key of an actor's KV usage record.
func (k Keyspace) KVUsage(ns, id string) []byte { return k.strings(0, "kvq", ns, id) }

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
		n, err := decodeKVUsage(e.Value)
		if err != nil {
			return KVUsage{}, fmt.Errorf("registry: malformed KV usage record of %s/%s: %w", ns, id, err)
		}
		return KVUsage{Bytes: n, record: e.Value}, nil
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
// commit).
func (r *Registry) CommitKVCountedWith(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, use KVUsage, bytes int64, o CommitOptions) (KVUsage, error) {
	if bytes < 0 {
		return KVUsage{}, fmt.Errorf("registry: commit KV of %s/%s: negative usage %d: %w", ns, id, bytes, kv.ErrInvalid)
	}
	key := r.keys.KVUsage(ns, id)
	guard := kv.Absent(key)
	if use.record != nil {
		guard = kv.ValueEquals(key, use.record)
	}
	next := encodeKVUsage(bytes)
	if err := r.commitKV(ctx, inc, ns, id, ownerRecord, writes, &guard, kv.Put(key, next, kv.NoLease), o); err != nil {
		return KVUsage{}, err
	}
	return KVUsage{Bytes: bytes, record: next}, nil
}

// countedOverhead is what counting adds to a KV commit: the usage compare
// (at its largest) and the usage write.
func (r *Registry) countedOverhead(ns, id string) kv.Txn {
	key := r.keys.KVUsage(ns, id)
	most := encodeKVUsage(math.MaxInt64)
	return kv.Txn{Compares: []kv.Compare{kv.ValueEquals(key, most)}, Ops: []kv.Op{kv.Put(key, most, kv.NoLease)}}
}
