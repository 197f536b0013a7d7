package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// Module deletion (issue 14; docs/deletion.md).
//
//	(root, "mod", ns, id, "d") → deleted marker: the ID is never used again
//
// A module is deleted only while no actor of its type exists in its
// namespace, checked atomically with the delete: the commit that removes
// the manifest and every chunk under the ID (orphans of crashed uploads
// included) compares the namespace's whole actor range with the revision
// the check read, so an actor created meanwhile fails the commit, which is
// then retried. A deleted ID is never reused: servers cache compiled
// modules by ID, so a new upload under it could run old code.

var (
	// ErrInUse: actors of the module's type exist; delete them first.
	ErrInUse = errors.New("modules: actors of the module's type exist")
	// ErrDeletedID: the ID belonged to a deleted module; IDs are not
	// reused.
	ErrDeletedID = errors.New("modules: the module ID was deleted and cannot be reused")
)

// InUseError reports a refused module deletion. It matches ErrInUse.
type InUseError struct {
	Namespace, ID string
	// Actor is one actor of the module's type.
	Actor string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("modules: module %s/%s is the type of actor %q (and maybe others): delete its actors first", e.Namespace, e.ID, e.Actor)
}

// Is makes errors.Is(err, ErrInUse) hold.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

func (s *Store) deletedKey(ns, id string) []byte { return s.keys.Sub("mod", ns, id, "d") }

// deletedError is the error of a Put under a deleted ID.
func deletedError(ns, id string) error {
	return fmt.Errorf("%w: %s/%s: upload the module under a new ID", ErrDeletedID, ns, id)
}

// Delete deletes module id of namespace ns, its chunks and its share of the
// namespace's quota, provided that no actor of type id exists in ns. It
// returns the deleted module's manifest; ErrNotFound if there is none, an
// *InUseError while actors use it.
func (s *Store) Delete(ctx context.Context, ns, id string) (Info, error) {
	if err := CheckName("namespace", ns); err != nil {
		return Info{}, err
	}
	if err := CheckName("module ID", id); err != nil {
		return Info{}, err
	}
	mkey := s.manifestKey(ns, id)
	for range 16 {
		m, found, err := s.kv.Get(ctx, mkey, 0)
		if err != nil {
			return Info{}, fmt.Errorf("modules: delete %s/%s: %w", ns, id, err)
		}
		if !found {
			return Info{}, fmt.Errorf("%w: %s/%s", ErrNotFound, ns, id)
		}
		info, err := decodeManifest(m.Value)
		if err != nil {
			return Info{}, fmt.Errorf("%w: manifest of %s/%s: %v", ErrCorrupt, ns, id, err)
		}
		info.Namespace, info.ID, info.Rev = ns, id, m.ModRev
		rev, err := s.checkUnused(ctx, ns, id)
		if err != nil {
			return Info{}, err
		}
		ab, ae := s.keys.Actors(ns)
		cmps := []kv.Compare{
			kv.ValueEquals(mkey, m.Value),
			// No actor record of the namespace changed since the check.
			{Key: ab, End: ae, Target: kv.TargetModRev, Op: kv.Less, Num: rev + 1},
		}
		cb, ce := tuple.ChildRange(s.keys.Sub("mod", ns, id, "c"))
		ops := []kv.Op{
			kv.Delete(mkey),
			kv.DeleteRange(cb, ce),
			kv.Put(s.deletedKey(ns, id), tuple.AppendInt(nil, int64(info.Size)), kv.NoLease),
		}
		if s.quota.MaxBytes >= 0 || s.quota.MaxModules >= 0 {
			use, useRev, err := s.usage(ctx, ns)
			if err != nil {
				return Info{}, err
			}
			if useRev != 0 {
				next := Usage{Bytes: max(0, use.Bytes-int64(info.Size)), Modules: max(0, use.Modules-1)}
				cmps = append(cmps, kv.ModRevEquals(s.usageKey(ns), useRev))
				ops = append(ops, kv.Put(s.usageKey(ns), encodeUsage(next), kv.NoLease))
			}
		}
		res, err := s.kv.Commit(ctx, kv.Txn{Compares: cmps, Ops: ops})
		if err != nil {
			return Info{}, fmt.Errorf("modules: delete %s/%s: %w", ns, id, err)
		}
		if res.Succeeded {
			return info, nil
		}
		// An actor record, the usage or the manifest changed: look again.
	}
	return Info{}, fmt.Errorf("modules: delete %s/%s: 16 attempts lost to concurrent changes in the namespace: %w", ns, id, kv.ErrUnavailable)
}

// checkPage bounds the actor records one read of checkUnused returns.
const checkPage = 1000

// checkUnused reads every actor record of ns, at one revision, and fails
// with an *InUseError if one of them is a live actor of type id. It returns
// the revision read.
func (s *Store) checkUnused(ctx context.Context, ns, id string) (int64, error) {
	begin, end := s.keys.Actors(ns)
	for rev := int64(0); ; {
		res, err := s.kv.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: checkPage, Rev: rev})
		if err != nil {
			return 0, fmt.Errorf("modules: delete %s/%s: list actors: %w", ns, id, err)
		}
		rev = res.Rev
		for _, e := range res.KVs {
			rec, err := registry.DecodeActorRecord(e.Value)
			if err != nil {
				return 0, fmt.Errorf("modules: delete %s/%s: %w", ns, id, err)
			}
			if rec.Type == id {
				var actor string
				if t, err := tuple.Unpack(e.Key); err == nil && len(t) > 0 {
					actor, _ = t[len(t)-1].(string)
				}
				return 0, &InUseError{Namespace: ns, ID: id, Actor: actor}
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return rev, nil
		}
		begin = append(bytes.Clone(res.KVs[len(res.KVs)-1].Key), 0)
	}
}
