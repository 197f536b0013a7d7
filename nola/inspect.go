package nola

import (
	"bytes"
	"context"
	"errors"

	"github.com/nolaproject/nola/registry"
)

// Inspector reads what the registry holds — actors, their KV, live servers —
// without taking part in the activation protocol: nothing it does places,
// confirms, releases, fences or commits, so no use of it can break single
// activation or fenced KV. It is what an admin API or a test needs; an
// embedder that wants to change state calls actors instead.
//
// Reads are linearizable store reads, but an actor's KV may change the
// moment after it is read: only the actor itself reads its KV inside its
// own serialized history. Keys and values returned are the caller's own
// copies. Get an Inspector from Server.Inspector or Client.Inspector (the
// zero value reads nothing).
type Inspector struct{ reg *registry.Registry }

// Inspector returns a read-only view of the server's registry.
func (s *Server) Inspector() Inspector { return Inspector{s.reg} }

// Inspector returns a read-only view of the client's registry.
func (c *Client) Inspector() Inspector { return Inspector{c.reg} }

// ListActors lists namespace ns's actors in ID order, at most limit of them
// after ID after; more reports whether the list goes on.
func (i Inspector) ListActors(ctx context.Context, ns, after string, limit int) (actors []registry.ActorInfo, more bool, err error) {
	return i.reg.ListActors(ctx, ns, after, limit)
}

// Actor returns actor (ns, id)'s record, if the actor exists.
func (i Inspector) Actor(ctx context.Context, ns, id string) (registry.ActorRecord, bool, error) {
	return i.reg.Actor(ctx, ns, id)
}

// Creation returns actor (ns, id)'s creation records: its creation
// arguments, and whether its creation hook has yet to commit.
func (i Inspector) Creation(ctx context.Context, ns, id string) (registry.Creation, error) {
	return i.reg.ReadCreation(ctx, ns, id)
}

// SnapshotKV pins actor (ns, id)'s current life at one store revision:
// reads through the snapshot see the record's generation at that revision,
// so a delete is seen whole or not at all. registry.ErrActorNotFound: the
// actor does not exist (or was deleted).
func (i Inspector) SnapshotKV(ctx context.Context, ns, id string) (registry.KVSnapshot, error) {
	return i.reg.SnapshotKV(ctx, ns, id)
}

// GetKV reads one key of actor (ns, id)'s KV (its current life); an actor
// that does not exist has no keys.
func (i Inspector) GetKV(ctx context.Context, ns, id string, key []byte) ([]byte, bool, error) {
	snap, err := i.reg.SnapshotKV(ctx, ns, id)
	if errors.Is(err, registry.ErrActorNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, found, err := snap.Get(ctx, key)
	return bytes.Clone(v), found, err
}

// ScanKV reads at most limit keys of actor (ns, id)'s KV in [start, end)
// (a nil end: to the last key); more reports whether the range goes on.
func (i Inspector) ScanKV(ctx context.Context, ns, id string, start, end []byte, limit int) (pairs []registry.KVPair, more bool, err error) {
	snap, err := i.reg.SnapshotKV(ctx, ns, id)
	if errors.Is(err, registry.ErrActorNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	pairs, more, err = snap.Scan(ctx, start, end, limit)
	for i := range pairs {
		pairs[i].Key, pairs[i].Value = bytes.Clone(pairs[i].Key), bytes.Clone(pairs[i].Value)
	}
	return pairs, more, err
}

// generation is the generation of actor (ns, id)'s current life (0 if
// it does not exist).
func (i Inspector) generation(ctx context.Context, ns, id string) (int64, error) {
	rec, _, err := i.reg.Actor(ctx, ns, id)
	return rec.Generation, err
}

// KVUsage reads actor (ns, id)'s KV usage record (kept only by servers
// with an actor KV quota).
func (i Inspector) KVUsage(ctx context.Context, ns, id string) (registry.KVUsage, error) {
	gen, err := i.generation(ctx, ns, id)
	if err != nil {
		return registry.KVUsage{}, err
	}
	return i.reg.ReadKVUsage(ctx, ns, id, gen)
}

// NamespaceKVUsage reads namespace ns's KV allotment record (kept only by
// servers with a namespace KV quota).
func (i Inspector) NamespaceKVUsage(ctx context.Context, ns string) (registry.NamespaceKVUsage, error) {
	return i.reg.ReadNamespaceKVUsage(ctx, ns)
}

// CountKV counts actor (ns, id)'s KV bytes by scanning it (slow: for checks
// of KVUsage).
func (i Inspector) CountKV(ctx context.Context, ns, id string) (int64, error) {
	gen, err := i.generation(ctx, ns, id)
	if err != nil {
		return 0, err
	}
	return i.reg.CountKV(ctx, ns, id, gen)
}

// Servers lists the registered servers and their load.
func (i Inspector) Servers(ctx context.Context) ([]registry.Member, error) {
	return i.reg.Servers(ctx)
}
