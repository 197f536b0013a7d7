package registry

import (
	"bytes"
	"context"
	"fmt"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// Deletion (issue 14; docs/deletion.md). A delete is one commit whatever
// the size of the actor's KV: it replaces the record with a tombstone of
// the next epoch and generation, leaves a reclaim marker for the old
// generation's KV and drops the KV usage record. The old generation's keys
// are then unreachable — every reader goes through the record's
// generation — and Reclaim removes them in bounded batches.

// ReclaimBatch bounds the keys one reclaim commit removes.
const ReclaimBatch = 100

// Delete deletes actor (ns, id) and returns the record of the life it
// ended. With inc nil the caller is not an owner: the delete happens only if
// the actor has no live owner (else ErrOwned: ask the owner, who must stop
// its activation first). With inc set, inc must own the actor (else
// ErrNotOwner) and the commit is fenced like a KV commit (ErrFenced: the
// incarnation or its ownership went meanwhile). A missing or already
// deleted actor is ErrActorNotFound. Nothing is written on any error.
func (r *Registry) Delete(ctx context.Context, inc *Incarnation, ns, id string) (ActorRecord, error) {
	key := r.keys.Actor(ns, id)
	for attempt := 0; attempt < 16; attempt++ {
		cur, found, err := r.store.Get(ctx, key, 0)
		if err != nil {
			return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: %w", ns, id, err)
		}
		var rec ActorRecord
		if found {
			if rec, err = decodeActor(cur.Value); err != nil {
				return ActorRecord{}, err
			}
		}
		if !found || rec.Tombstone() {
			return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: %w", ns, id, ErrActorNotFound)
		}
		var cmps []kv.Compare
		if inc != nil {
			if rec.Owner != inc.ServerID || rec.OwnerIncarnation != inc.Num {
				return ActorRecord{}, fmt.Errorf("registry: delete %s/%s by %s#%d: %w", ns, id, inc.ServerID, inc.Num, ErrNotOwner)
			}
			cmps = inc.Fence(key, cur.Value)
		} else {
			cmps = []kv.Compare{kv.ValueEquals(key, cur.Value)}
			if rec.Owner != "" {
				skey := r.keys.Server(rec.Owner)
				srv, live, err := r.store.Get(ctx, skey, 0)
				if err != nil {
					return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: read owner: %w", ns, id, err)
				}
				if live {
					sr, err := decodeServer(rec.Owner, srv.Value)
					if err != nil {
						return ActorRecord{}, err
					}
					if sr.Incarnation == rec.OwnerIncarnation {
						return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: owned by %s#%d: %w", ns, id, rec.Owner, sr.Incarnation, ErrOwned)
					}
				}
				// The owner's incarnation is gone and has fenced itself:
				// delete only if that is still so (as placement steals).
				cmps = append(cmps, kv.ModRevEquals(skey, srv.ModRev))
			}
		}
		// The actor's grant of its namespace's KV quota goes back when its
		// KV is gone (reclaimBatch): the marker carries it, and the usage
		// record it is read from must not change meanwhile.
		ukey := r.keys.KVUsage(ns, id)
		use, used, err := r.store.Get(ctx, ukey, 0)
		if err != nil {
			return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: read KV usage: %w", ns, id, err)
		}
		var granted int64
		if used {
			cmps = append(cmps, kv.ValueEquals(ukey, use.Value))
			if _, granted, err = decodeKVUsage(use.Value); err != nil {
				return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: malformed KV usage record: %w", ns, id, err)
			}
		} else {
			cmps = append(cmps, kv.Absent(ukey))
		}
		next := rec.Generation + 1
		if r.opts.Mutations.Has(mutation.DeleteSkipsGeneration) {
			next = rec.Generation
		}
		tomb := ActorRecord{Epoch: rec.Epoch + 1, Generation: next}
		res, err := r.store.Commit(ctx, kv.Txn{Compares: cmps, Ops: []kv.Op{
			kv.Put(key, tomb.encode(), kv.NoLease),
			kv.Put(r.keys.Reclaim(ns, id, rec.Generation), encodeMarker(nil, granted), kv.NoLease),
			kv.Delete(ukey),
			r.deleteCreationOp(ns, id),
		}})
		if err != nil {
			return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: %w", ns, id, err)
		}
		if res.Succeeded {
			return rec, nil
		}
		if inc != nil {
			return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: %w", ns, id, ErrFenced)
		}
		// The record or the dead owner's server record changed: look again.
	}
	return ActorRecord{}, fmt.Errorf("registry: delete %s/%s: %w", ns, id, ErrContention)
}

// A reclaim marker's value is the store key from which the generation's
// remaining keys start (empty: from its first key) and, when the actor held
// a grant of its namespace's KV quota, that grant: (from) or (from,
// granted).
func encodeMarker(from []byte, granted int64) []byte {
	b := tuple.AppendBytes(nil, from)
	if granted > 0 {
		b = tuple.AppendInt(b, granted)
	}
	return b
}

func decodeMarker(b []byte) (from []byte, granted int64, err error) {
	t, err := tuple.Unpack(b)
	if err != nil || len(t) < 1 || len(t) > 2 {
		return nil, 0, fmt.Errorf("registry: malformed reclaim marker: %v", err)
	}
	c, ok := t[0].([]byte)
	if !ok {
		return nil, 0, fmt.Errorf("registry: malformed reclaim marker")
	}
	if len(t) == 2 {
		if granted, ok = t[1].(int64); !ok || granted <= 0 {
			return nil, 0, fmt.Errorf("registry: malformed reclaim marker")
		}
	}
	return c, granted, nil
}

// ReclaimStats says what a Reclaim call did.
type ReclaimStats struct {
	// Keys counts the KV entries removed, Commits the commits that did it.
	Keys, Commits int
	// Pending reports that markers remain (maxCommits stopped the call).
	Pending bool
}

// Reclaim removes the KV of deleted generations: for each reclaim marker,
// at most ReclaimBatch keys per commit, each commit conditional on the
// marker being unchanged and moving its cursor on (or removing it with the
// last keys). It stops after maxCommits commits (0: when no marker is
// left). A crash leaves the marker at the last committed cursor, and the
// next call continues from there; concurrent calls only cost retries.
func (r *Registry) Reclaim(ctx context.Context, maxCommits int) (ReclaimStats, error) {
	var st ReclaimStats
	mb, me := r.keys.Reclaims()
	for {
		if maxCommits > 0 && st.Commits >= maxCommits {
			res, err := r.store.Range(ctx, kv.RangeRequest{Begin: mb, End: me, Limit: 1, KeysOnly: true})
			if err != nil {
				return st, fmt.Errorf("registry: reclaim: %w", err)
			}
			st.Pending = len(res.KVs) > 0
			return st, nil
		}
		res, err := r.store.Range(ctx, kv.RangeRequest{Begin: mb, End: me, Limit: 1})
		if err != nil {
			return st, fmt.Errorf("registry: reclaim: %w", err)
		}
		if len(res.KVs) == 0 {
			return st, nil
		}
		n, err := r.reclaimBatch(ctx, res.KVs[0])
		if err != nil {
			return st, err
		}
		st.Keys += n
		st.Commits++
	}
}

// reclaimBatch removes the next batch of the generation marker m names.
func (r *Registry) reclaimBatch(ctx context.Context, m kv.KeyValue) (int, error) {
	t, err := tuple.Unpack(m.Key)
	if err != nil || len(t) < 3 {
		return 0, fmt.Errorf("registry: malformed reclaim marker key: %v", err)
	}
	ns, ok1 := t[len(t)-3].(string)
	id, ok2 := t[len(t)-2].(string)
	gen, ok3 := t[len(t)-1].(int64)
	if !ok1 || !ok2 || !ok3 {
		return 0, fmt.Errorf("registry: malformed reclaim marker key")
	}
	from, granted, err := decodeMarker(m.Value)
	if err != nil {
		return 0, err
	}
	begin, end := r.keys.KVRange(ns, id, gen, nil, nil)
	if len(from) > 0 {
		if bytes.Compare(from, begin) < 0 || bytes.Compare(from, end) > 0 {
			return 0, fmt.Errorf("registry: reclaim marker of %s/%s#%d: cursor outside its range", ns, id, gen)
		}
		begin = from
	}
	keys, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: ReclaimBatch, KeysOnly: true})
	if err != nil {
		return 0, fmt.Errorf("registry: reclaim %s/%s#%d: %w", ns, id, gen, err)
	}
	txn := kv.Txn{Compares: []kv.Compare{kv.ValueEquals(m.Key, m.Value)}}
	if n := len(keys.KVs); n > 0 {
		// One range delete over exactly the keys read: no life writes
		// this generation any more (its fences compare a record that is
		// gone), so nothing new can have appeared among them.
		stop := append(bytes.Clone(keys.KVs[n-1].Key), 0)
		txn.Ops = append(txn.Ops, kv.DeleteRange(begin, stop))
		if keys.More {
			txn.Ops = append(txn.Ops, kv.Put(m.Key, encodeMarker(stop, granted), kv.NoLease))
		}
	}
	if !keys.More {
		txn.Ops = append(txn.Ops, kv.Delete(m.Key))
		if granted > 0 {
			// The last keys go: so does the grant, back to the namespace.
			cur, err := r.ReadNamespaceKVUsage(ctx, ns)
			if err != nil {
				return 0, fmt.Errorf("registry: reclaim %s/%s#%d: %w", ns, id, gen, err)
			}
			nk := r.keys.NamespaceKVUsage(ns)
			m := nsMove{from: cur}
			txn.Compares = append(txn.Compares, m.guard(nk))
			txn.Ops = append(txn.Ops, kv.Put(nk, encodeNamespaceKVUsage(max(0, cur.Allotted-granted)), kv.NoLease))
		}
	}
	res, err := r.store.Commit(ctx, txn)
	if err != nil {
		return 0, fmt.Errorf("registry: reclaim %s/%s#%d: %w", ns, id, gen, err)
	}
	if !res.Succeeded {
		return 0, nil // another sweeper moved the marker: continue from it
	}
	return len(keys.KVs), nil
}

// KVSnapshot reads an actor's KV as of one store revision, for readers that
// do not own the actor (the HTTP API): the record and every read through
// the snapshot are at that revision, so a delete is seen whole or not at
// all, however many keys the actor had.
type KVSnapshot struct {
	r      *Registry
	ns, id string
	// Generation is the generation the record named; Rev the revision.
	Generation, Rev int64
}

// SnapshotKV reads actor (ns, id)'s record and pins the revision.
// ErrActorNotFound: it does not exist (or was deleted).
func (r *Registry) SnapshotKV(ctx context.Context, ns, id string) (KVSnapshot, error) {
	res, err := r.store.Range(ctx, kv.RangeRequest{Begin: r.keys.Actor(ns, id)})
	if err != nil {
		return KVSnapshot{}, fmt.Errorf("registry: read %s/%s: %w", ns, id, err)
	}
	if len(res.KVs) == 0 {
		return KVSnapshot{}, fmt.Errorf("registry: read KV of %s/%s: %w", ns, id, ErrActorNotFound)
	}
	rec, err := decodeActor(res.KVs[0].Value)
	if err != nil {
		return KVSnapshot{}, err
	}
	if rec.Tombstone() {
		return KVSnapshot{}, fmt.Errorf("registry: read KV of %s/%s: %w", ns, id, ErrActorNotFound)
	}
	return KVSnapshot{r: r, ns: ns, id: id, Generation: rec.Generation, Rev: res.Rev}, nil
}

// Get reads one key.
func (s KVSnapshot) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	v, found, err := s.r.store.Get(ctx, s.r.keys.KV(s.ns, s.id, s.Generation, key), s.Rev)
	if err != nil {
		return nil, false, fmt.Errorf("registry: read KV of %s/%s: %w", s.ns, s.id, err)
	}
	return v.Value, found, nil
}

// Scan reads the keys in [start, end) (end nil: to the last key), at most
// limit of them (0: no limit). more reports a cut-off.
func (s KVSnapshot) Scan(ctx context.Context, start, end []byte, limit int) ([]KVPair, bool, error) {
	begin, stop := s.r.keys.KVRange(s.ns, s.id, s.Generation, start, end)
	return s.r.scan(ctx, s.ns, s.id, s.Generation, begin, stop, limit, s.Rev)
}

// ScanPrefix reads the keys that start with prefix.
func (s KVSnapshot) ScanPrefix(ctx context.Context, prefix []byte, limit int) ([]KVPair, bool, error) {
	begin, stop := s.r.keys.KVPrefixRange(s.ns, s.id, s.Generation, prefix)
	return s.r.scan(ctx, s.ns, s.id, s.Generation, begin, stop, limit, s.Rev)
}

// DecodeActorRecord decodes a stored actor record, for other packages that
// read the actor range themselves (the module store checks that no actor
// of a module's type exists before deleting it).
func DecodeActorRecord(b []byte) (ActorRecord, error) { return decodeActor(b) }
