package registry

import (
	"bytes"
	"fmt"

	"github.com/nolaproject/nola/registry/tuple"
)

// Keyspace builds every key nola stores, all under one root so that a store
// can be shared with other applications. Layout (tuple-encoded):
//
//	(root, "srv", sid)          → (incarnation, address, registered-at)   leased
//	(root, "inc", sid)          → last incarnation number of sid
//	(root, "load", sid)         → (incarnation, activations, bytes, limit, …) leased
//	(root, "act", ns, id)       → (type, owner sid, owner incarnation, epoch[, generation])
//	(root, "kv", ns, id, key)   → the actor's value for key (generation 0)
//	(root, "kvg", ns, id, g, key) → the value for key of generation g > 0
//	(root, "rcl", ns, id, g)    → reclaim marker of deleted generation g (docs/deletion.md)
//	(root, "kvq", ns, id)       → the actor's KV usage in bytes (kvusage.go)
//	(root, "crt", ns, id, …)    → its creation arguments and marker (creation.go)
//	(root, "mod", ns, module, …) → WASM modules (see the wasm package)
type Keyspace struct {
	root []byte
}

// NewKeyspace returns the keyspace under root (e.g. "nola").
func NewKeyspace(root string) Keyspace {
	return Keyspace{root: tuple.AppendString(nil, root)}
}

func (k Keyspace) key(parts ...any) []byte {
	return tuple.Tuple(parts).AppendTo(bytes.Clone(k.root))
}

// strings builds root + string elements without boxing them (the hot keys:
// every activation and commit builds some).
func (k Keyspace) strings(extra int, parts ...string) []byte {
	n := len(k.root) + extra
	for _, p := range parts {
		n += len(p) + 2
	}
	b := append(make([]byte, 0, n), k.root...)
	for _, p := range parts {
		b = tuple.AppendString(b, p)
	}
	return b
}

// Root returns the encoded root prefix.
func (k Keyspace) Root() []byte { return k.root }

// Sub returns the key root + parts; other packages (the module store) use
// it for their own records.
func (k Keyspace) Sub(parts ...any) []byte { return k.key(parts...) }

// Server is the key of a server's record.
func (k Keyspace) Server(sid string) []byte { return k.strings(0, "srv", sid) }

// Servers is the range of every server record.
func (k Keyspace) Servers() (begin, end []byte) { return prefixRange(k.key("srv")) }

// Incarnations is the key of a server's incarnation counter.
func (k Keyspace) Incarnations(sid string) []byte { return k.key("inc", sid) }

// Load is the key of a server's load report.
func (k Keyspace) Load(sid string) []byte { return k.key("load", sid) }

// Loads is the range of every load report.
func (k Keyspace) Loads() (begin, end []byte) { return prefixRange(k.key("load")) }

// Actor is the key of an actor's record (type and owner).
func (k Keyspace) Actor(ns, id string) []byte { return k.strings(0, "act", ns, id) }

// Actors is the range of every actor record of a namespace.
func (k Keyspace) Actors(ns string) (begin, end []byte) { return prefixRange(k.key("act", ns)) }

// KVPrefix is the prefix of every KV key of generation gen of an actor.
// Generation 0 keeps the layout of records written before deletion
// existed; every later generation has a prefix of its own, so that a new
// life starts empty while the old one is still being reclaimed.
func (k Keyspace) KVPrefix(ns, id string, gen int64) []byte {
	if gen == 0 {
		return k.strings(0, "kv", ns, id)
	}
	return tuple.AppendInt(k.strings(9, "kvg", ns, id), gen)
}

// KV is the key of one KV entry of generation gen of an actor.
func (k Keyspace) KV(ns, id string, gen int64, key []byte) []byte {
	return tuple.AppendBytes(k.KVPrefix(ns, id, gen), key)
}

// KVRange returns the store range holding the actor's user keys of
// generation gen in [start, end); a nil end means "to the last key".
func (k Keyspace) KVRange(ns, id string, gen int64, start, end []byte) (begin, stop []byte) {
	prefix := k.KVPrefix(ns, id, gen)
	begin = tuple.AppendBytes(bytes.Clone(prefix), start)
	if end == nil {
		_, stop = tuple.ChildRange(prefix)
		return begin, stop
	}
	return begin, tuple.AppendBytes(bytes.Clone(prefix), end)
}

// KVPrefixRange returns the store range of the actor's user keys of
// generation gen that start with userPrefix. The element is encoded without
// its terminator, which is a prefix of the encoding of every key that
// starts with userPrefix.
func (k Keyspace) KVPrefixRange(ns, id string, gen int64, userPrefix []byte) (begin, end []byte) {
	enc := tuple.AppendBytes(k.KVPrefix(ns, id, gen), userPrefix)
	enc = enc[:len(enc)-1] // drop the terminating 0x00
	return enc, tuple.PrefixEnd(enc)
}

// Reclaim is the key of the reclaim marker of generation gen of a deleted
// actor.
func (k Keyspace) Reclaim(ns, id string, gen int64) []byte {
	return tuple.AppendInt(k.strings(9, "rcl", ns, id), gen)
}

// Reclaims is the range of every reclaim marker.
func (k Keyspace) Reclaims() (begin, end []byte) { return prefixRange(k.key("rcl")) }

// UserKey extracts an actor's user key from a store key under prefix.
func UserKey(prefix, storeKey []byte) ([]byte, error) {
	if !bytes.HasPrefix(storeKey, prefix) {
		return nil, fmt.Errorf("registry: key outside the actor's range")
	}
	t, err := tuple.Unpack(storeKey[len(prefix):])
	if err != nil || len(t) != 1 {
		return nil, fmt.Errorf("registry: malformed KV key: %v", err)
	}
	b, ok := t[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("registry: malformed KV key element %T", t[0])
	}
	return b, nil
}

// prefixRange is the range of the children of the packed tuple p.
func prefixRange(p []byte) (begin, end []byte) { return tuple.ChildRange(p) }

// Record encodings. Each is a packed tuple: deterministic bytes, so that a
// fence can compare a whole record for equality inside the store.

// ServerRecord is a server's registration, immutable for its incarnation.
type ServerRecord struct {
	ID           string
	Incarnation  int64
	Addr         string
	RegisteredAt int64 // unix nanoseconds, informational
}

func (r ServerRecord) encode() []byte {
	return tuple.Tuple{r.Incarnation, r.Addr, r.RegisteredAt}.Pack()
}

func decodeServer(sid string, b []byte) (ServerRecord, error) {
	t, err := tuple.Unpack(b)
	if err != nil || len(t) != 3 {
		return ServerRecord{}, fmt.Errorf("registry: malformed server record of %q: %v", sid, err)
	}
	inc, ok1 := t[0].(int64)
	addr, ok2 := t[1].(string)
	at, ok3 := t[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return ServerRecord{}, fmt.Errorf("registry: malformed server record of %q", sid)
	}
	return ServerRecord{ID: sid, Incarnation: inc, Addr: addr, RegisteredAt: at}, nil
}

// ActorRecord is an actor's type and current owner (empty when none).
type ActorRecord struct {
	Type             string
	Owner            string
	OwnerIncarnation int64
	// Epoch grows with every write of the record — placement, release,
	// Bump — so a record's bytes never repeat and a fence on an earlier
	// ownership never holds again. An owner bumps it before reactivating an
	// actor whose last commit has an unknown outcome, so that the late
	// commit's fence fails.
	Epoch int64
	// Generation counts the actor's lives: a delete moves it on, so the
	// next life's KV lives under a prefix of its own (docs/deletion.md).
	// Stored as an optional trailing element: a record without it is
	// generation 0, and generation 0 is encoded without it, so records
	// written before deletion existed keep their exact bytes.
	Generation int64
	// Hint names the server a released actor should preferably be placed
	// on next (communication locality: docs/placement.md). Only a record
	// without an owner carries one, and only as advice: placement takes it
	// if that server is live, has room and is within bounded load, and
	// writes the new owner with the same compares as any placement. Stored
	// after the generation (then always present, even 0), so records
	// without a hint keep their exact bytes.
	Hint string
}

// maxHintLen bounds a hint: it is a server ID, which registration bounds
// far below this; a longer one in a record is malformed.
const maxHintLen = 1 << 10

// Tombstone reports whether r is a deleted actor's record: no type, no
// owner. Every lookup treats a tombstone as absent.
func (r ActorRecord) Tombstone() bool { return r.Type == "" }

func (r ActorRecord) encode() []byte {
	// Packed by hand (the same bytes as tuple.Tuple{…}.Pack()): placement
	// and confirmation build one per call, and boxing four elements costs
	// five allocations.
	b := make([]byte, 0, len(r.Type)+len(r.Owner)+len(r.Hint)+4+27)
	b = tuple.AppendString(b, r.Type)
	b = tuple.AppendString(b, r.Owner)
	b = tuple.AppendInt(b, r.OwnerIncarnation)
	b = tuple.AppendInt(b, r.Epoch)
	if r.Generation != 0 || r.Hint != "" {
		b = tuple.AppendInt(b, r.Generation)
	}
	if r.Hint != "" {
		b = tuple.AppendString(b, r.Hint)
	}
	return b
}

// checkTrailing vets the optional elements of a decoded record: the bytes
// must be canonical, since fences compare them, so generation 0 is encoded
// only before a hint, and a hint only on a record without an owner.
func (r ActorRecord) checkTrailing() error {
	switch {
	case r.Generation < 0 || (r.Generation == 0 && r.Hint == ""):
		return fmt.Errorf("%w: generation %d", tuple.ErrInvalid, r.Generation)
	case r.Hint != "" && r.Owner != "":
		return fmt.Errorf("%w: placement hint on an owned record", tuple.ErrInvalid)
	case len(r.Hint) > maxHintLen:
		return fmt.Errorf("%w: placement hint of %d bytes", tuple.ErrInvalid, len(r.Hint))
	}
	return nil
}

func decodeActor(b []byte) (ActorRecord, error) {
	var (
		r   ActorRecord
		err error
	)
	if r.Type, b, err = tuple.ReadString(b); err == nil {
		if r.Owner, b, err = tuple.ReadString(b); err == nil {
			if r.OwnerIncarnation, b, err = tuple.ReadInt(b); err == nil {
				if r.Epoch, b, err = tuple.ReadInt(b); err == nil && len(b) != 0 {
					r.Generation, b, err = tuple.ReadInt(b)
					if err == nil && len(b) != 0 {
						if r.Hint, b, err = tuple.ReadString(b); err == nil && r.Hint == "" {
							err = fmt.Errorf("%w: empty placement hint", tuple.ErrInvalid)
						}
					}
					if err == nil {
						err = r.checkTrailing()
					}
				}
			}
		}
	}
	if err == nil && len(b) != 0 {
		err = fmt.Errorf("%w: %d trailing bytes", tuple.ErrInvalid, len(b))
	}
	if err != nil {
		return ActorRecord{}, fmt.Errorf("registry: malformed actor record: %w", err)
	}
	return r, nil
}

// Load is a server's load report, published with every keep-alive and read
// by placement (choose) and by shedding servers (the cluster mean).
//
// The record is a packed tuple of integers whose first four elements are
// required and the rest optional and trailing: a record written by an
// older server (four elements) decodes with the later fields zero, and
// elements beyond those this version knows are ignored, so servers of two
// versions can share a cluster during a rolling upgrade.
type Load struct {
	Incarnation int64
	Activations int64
	// Bytes is the memory held by activations: the engine's share (1 KiB
	// each and their KV caches), what actors report through nola.Sizer and
	// WASM linear memory with its instance overhead.
	Bytes int64
	// Limit is the server's activation limit; placement skips full servers.
	Limit int64

	// Optional trailing fields (zero in a record of an older server).

	// HeapBytes is the server process's heap as its runtime reports it
	// (under simulation: the deterministic Bytes figure).
	HeapBytes int64
	// BusyPPM is the share of wall time spent running invocations since
	// the previous report, in parts per million of one invocation running
	// at all times (2e6: two at once on average).
	BusyPPM int64
	// RateMilli is the invocation rate since the previous report, in
	// invocations per 1000 seconds.
	RateMilli int64
	// Budget is the server's memory budget in bytes (0: none): placement
	// avoids a server whose Bytes reached it.
	Budget int64
}

// loadFields is the number of elements this version writes; loadRequired
// the number every record has.
const (
	loadFields   = 8
	loadRequired = 4
	// loadMaxFields bounds the elements a load record may carry, so that a
	// malformed record cannot make placement decode an unbounded tuple.
	loadMaxFields = 64
)

func (l *Load) fields() [loadFields]*int64 {
	return [loadFields]*int64{&l.Incarnation, &l.Activations, &l.Bytes, &l.Limit, &l.HeapBytes, &l.BusyPPM, &l.RateMilli, &l.Budget}
}

func (l Load) encode() []byte {
	t := make(tuple.Tuple, 0, loadFields)
	for _, f := range l.fields() {
		t = append(t, *f)
	}
	return t.Pack()
}

func decodeLoad(b []byte) (Load, error) {
	t, err := tuple.Unpack(b)
	if err != nil || len(t) < loadRequired || len(t) > loadMaxFields {
		return Load{}, fmt.Errorf("registry: malformed load record (%d elements): %v", len(t), err)
	}
	var l Load
	for i, f := range l.fields() {
		if i >= len(t) {
			break
		}
		v, ok := t[i].(int64)
		if !ok {
			return Load{}, fmt.Errorf("registry: malformed load record: element %d is %T", i, t[i])
		}
		*f = v
	}
	return l, nil
}

func encodeInt(v int64) []byte { return tuple.AppendInt(nil, v) }

func decodeInt(b []byte) (int64, error) {
	t, err := tuple.Unpack(b)
	if err != nil || len(t) != 1 {
		return 0, fmt.Errorf("registry: malformed counter: %v", err)
	}
	v, ok := t[0].(int64)
	if !ok {
		return 0, fmt.Errorf("registry: malformed counter")
	}
	return v, nil
}
