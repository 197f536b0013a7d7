package registry

import (
	"context"
	"fmt"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
)

// Creation records (issue 14, item 2).
//
//	(root, "crt", ns, id, "args") → the creation arguments (absent when none were given)
//	(root, "crt", ns, id, "new")  → empty: the creation hook has not run yet
//
// Both are written by the commit that creates the actor record (placement
// of an actor that does not exist), so a crash between the creation and
// the first activation loses nothing. The arguments never change after.
// The "new" marker is deleted by the fenced commit that carries the
// effects of the actor's creation hook (CommitOptions.Created): the hook's
// KV writes and the end of "this actor is new" land together or not at all,
// which is what makes the hook run exactly once.
//
// Neither lives in the actor record: the record is compared byte for byte
// by every fence, and arguments of up to Limits.MaxCreationArgsBytes would
// make every commit carry them.

// Creation is what the store holds about an actor's creation.
type Creation struct {
	// Pending reports that the actor's creation hook has not run to a
	// commit yet.
	Pending bool
	// Args are the creation arguments (nil when none were given).
	Args []byte
}

// CreationPrefix is the prefix of an actor's creation records; its
// tuple.ChildRange holds them all (what deleting an actor must remove).
func (k Keyspace) CreationPrefix(ns, id string) []byte { return k.strings(0, "crt", ns, id) }

// CreationArgs is the key of an actor's creation arguments.
func (k Keyspace) CreationArgs(ns, id string) []byte { return k.strings(0, "crt", ns, id, "args") }

// CreationPending is the key of an actor's "creation hook not run yet"
// marker.
func (k Keyspace) CreationPending(ns, id string) []byte { return k.strings(0, "crt", ns, id, "new") }

// ReadCreation returns actor (ns, id)'s creation records, in one
// linearizable read. An actor created before creation records existed (or
// never created) has neither: not pending, no arguments.
func (r *Registry) ReadCreation(ctx context.Context, ns, id string) (Creation, error) {
	begin, end := tuple.ChildRange(r.keys.CreationPrefix(ns, id))
	res, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: 2})
	if err != nil {
		return Creation{}, fmt.Errorf("registry: read creation of %s/%s: %w", ns, id, err)
	}
	argsKey, newKey := r.keys.CreationArgs(ns, id), r.keys.CreationPending(ns, id)
	var c Creation
	for _, e := range res.KVs {
		switch string(e.Key) {
		case string(argsKey):
			c.Args = e.Value
		case string(newKey):
			c.Pending = true
		default:
			return Creation{}, fmt.Errorf("registry: read creation of %s/%s: unexpected record in its range", ns, id)
		}
	}
	return c, nil
}

// creationOps are the writes that record a new actor's creation: the
// pending marker, and the arguments.
func (r *Registry) creationOps(ns, id string, args []byte) []kv.Op {
	pending := kv.Put(r.keys.CreationPending(ns, id), []byte{}, kv.NoLease)
	if len(args) == 0 {
		// Deleted, not just left unwritten: arguments of an earlier life
		// of the ID (a deleted actor) must not reach this one.
		return []kv.Op{pending, kv.Delete(r.keys.CreationArgs(ns, id))}
	}
	return []kv.Op{pending, kv.Put(r.keys.CreationArgs(ns, id), args, kv.NoLease)}
}

// deleteCreationOp removes an actor's creation records: part of the
// commit that deletes it (delete.go). A range, so that it is one op
// whatever records exist. (A new life's placement would overwrite them
// anyway: this only reclaims their space.)
func (r *Registry) deleteCreationOp(ns, id string) kv.Op {
	begin, end := tuple.ChildRange(r.keys.CreationPrefix(ns, id))
	return kv.DeleteRange(begin, end)
}

// CommitOptions add to a fenced KV commit.
type CommitOptions struct {
	// Created ends the actor's "new" state in the same commit: the commit
	// that carries the effects of its creation hook. The marker must be
	// present (a compare), so that two commits can never both believe they
	// delivered the creation.
	Created bool
}

// extras are the compares and writes opts add to a commit of actor (ns, id).
func (o CommitOptions) extras(r *Registry, ns, id string) (cmps []kv.Compare, ops []kv.Op) {
	if o.Created {
		key := r.keys.CreationPending(ns, id)
		cmps = append(cmps, kv.Exists(key))
		ops = append(ops, kv.Delete(key))
	}
	return cmps, ops
}
