package nola

import (
	"context"

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
// own serialized history.
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

// GetKV reads one key of actor (ns, id)'s KV.
func (i Inspector) GetKV(ctx context.Context, ns, id string, key []byte) ([]byte, bool, error) {
	return i.reg.GetKV(ctx, ns, id, key)
}

// ScanKV reads at most limit keys of actor (ns, id)'s KV in [start, end)
// (a nil end: to the last key); more reports whether the range goes on.
func (i Inspector) ScanKV(ctx context.Context, ns, id string, start, end []byte, limit int) (pairs []registry.KVPair, more bool, err error) {
	return i.reg.ScanKV(ctx, ns, id, start, end, limit)
}

// KVUsage reads actor (ns, id)'s KV usage record (kept only by servers
// with an actor KV quota).
func (i Inspector) KVUsage(ctx context.Context, ns, id string) (registry.KVUsage, error) {
	return i.reg.ReadKVUsage(ctx, ns, id)
}

// CountKV counts actor (ns, id)'s KV bytes by scanning it (slow: for checks
// of KVUsage).
func (i Inspector) CountKV(ctx context.Context, ns, id string) (int64, error) {
	return i.reg.CountKV(ctx, ns, id)
}

// Servers lists the registered servers and their load.
func (i Inspector) Servers(ctx context.Context) ([]registry.Member, error) {
	return i.reg.Servers(ctx)
}
