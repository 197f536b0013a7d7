package nola

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

type actorKey struct{ ns, id string }

// owned returns k with its own copy of its bytes, in one allocation. Keys
// kept for as long as an actor is live (table and route-cache entries)
// must not alias the caller's strings: an ID sliced out of an HTTP request
// line would keep the whole line alive (about 60 bytes per actor measured
// through nola serve).
func (k actorKey) owned() actorKey {
	if k.ns == "" || k.id == "" {
		// Concatenation with "" may return the other operand itself.
		return actorKey{strings.Clone(k.ns), strings.Clone(k.id)}
	}
	b := k.ns + k.id
	return actorKey{b[:len(k.ns)], b[len(k.ns):]}
}

func (k actorKey) compare(o actorKey) int {
	if c := cmp.Compare(k.ns, o.ns); c != 0 {
		return c
	}
	return cmp.Compare(k.id, o.id)
}

// hash is FNV-1a over the key: deterministic (shard choice must not
// depend on a per-process seed under simulation) and allocation-free.
func (k actorKey) hash() uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(k.ns); i++ {
		h = (h ^ uint32(k.ns[i])) * 16777619
	}
	h = (h ^ 0xff) * 16777619
	for i := 0; i < len(k.id); i++ {
		h = (h ^ uint32(k.id[i])) * 16777619
	}
	return h
}

const (
	nShards    = 64
	shardShift = 64 - 6 // a key's shard is the top 6 bits of its hash
)

// table maps actors to activations, sharded to keep parallel invocations of
// different actors off one lock.
//
// A key's shard and slot come from maphash with a seed of the table's own,
// random per table: whoever picks actor IDs must not be able to pick IDs
// that share a shard and a probe run, or each lookup in it would walk a
// run as long as their number (hash flooding; an unseeded FNV hash let
// 2 000 crafted IDs make a shard's operations 7.5× slower, growing with
// their square). It is the one randomness engine code takes outside the
// runtime, and it cannot reach a simulated run's behavior: it decides only
// where an entry sits, every lookup compares the whole key, and every
// iteration is sorted by key (collect). The simulator's own seed is no
// secret, so drawing this one from it would give the protection up.
type table struct {
	seed   maphash.Seed
	shards [nShards]shard
}

// shard is one part of a table: an open-addressing hash table with linear
// probing, in which a slot is a key's 64-bit hash and its activation, the
// key itself being the activation's (activation.key). A lookup at a million
// live actors touches memory outside the cache at every step, so a step
// saved is a cache miss saved: a lookup reads one slot line (hash and
// pointer side by side, no control word), then the activation's two hot
// lines — which the call reads anyway — where the key's bytes are inline
// (up to inlineKeyBytes); a Go map of actorKey read a control word, a
// 40-byte slot and the key's own allocation first. A slot holds an actor
// in 16 bytes at a load of 3/8 to 3/4, against ~41 bytes per map slot at
// up to 7/8: about 30 bytes less per live actor.
type shard struct {
	mu sync.RWMutex
	// slots has a power-of-two length, or is nil when the shard is empty;
	// a slot with a nil activation is free. Deletion shifts later slots of
	// a probe run back (no tombstones), so a run ends at the first free
	// slot. Guarded by mu.
	slots []slot
	n     int // occupied slots
}

type slot struct {
	h uint64
	a *activation
}

const minSlots = 8

func newTable() *table { return &table{seed: maphash.MakeSeed()} }

// shard returns the shard of k, and k's hash for that shard's methods.
func (t *table) shard(k actorKey) (*shard, uint64) {
	h := maphash.Comparable(t.seed, k)
	return &t.shards[h>>shardShift], h
}

// get returns the activation of k (whose hash is h), or nil. Guarded by
// sh.mu, read or write.
func (sh *shard) get(h uint64, k actorKey) *activation {
	if sh.n == 0 {
		return nil
	}
	mask := uint64(len(sh.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &sh.slots[i]
		if s.a == nil {
			return nil
		}
		if s.h == h && s.a.actorID() == k.id && s.a.ns() == k.ns {
			return s.a
		}
	}
}

// put makes a the entry of its key (whose hash is h), replacing the
// key's entry if it has one. Guarded by sh.mu, write.
func (sh *shard) put(h uint64, a *activation) {
	if (sh.n+1)*4 > len(sh.slots)*3 {
		sh.resize(max(minSlots, 2*len(sh.slots)))
	}
	mask := uint64(len(sh.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &sh.slots[i]
		switch {
		case s.a == nil:
			*s = slot{h, a}
			sh.n++
			return
		case s.h == h && s.a.actorID() == a.actorID() && s.a.ns() == a.ns():
			s.a = a
			return
		}
	}
}

// remove deletes the entry of a's key (whose hash is h) if that entry is
// a, and reports whether it was. Guarded by sh.mu, write.
func (sh *shard) remove(h uint64, a *activation) bool {
	if sh.n == 0 {
		return false
	}
	mask := uint64(len(sh.slots) - 1)
	i := h & mask
	for ; ; i = (i + 1) & mask {
		s := &sh.slots[i]
		if s.a == nil {
			return false
		}
		if s.a == a {
			break
		}
	}
	// Backward-shift deletion: move each later slot of the run whose home
	// is not strictly after the hole into it, so that every key stays
	// reachable from its home without passing a free slot.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := sh.slots[j]
		if s.a == nil {
			break
		}
		// s moves into the hole at i when the hole lies on its probe
		// path: its home is not cyclically within (i, j].
		if home := s.h & mask; (j-home)&mask >= (j-i)&mask {
			sh.slots[i] = s
			i = j
		}
	}
	sh.slots[i] = slot{}
	sh.n--
	if sh.n == 0 {
		sh.slots = nil // a shard emptied by eviction gives its memory back
	} else if len(sh.slots) > minSlots && sh.n*8 < len(sh.slots) {
		sh.resize(len(sh.slots) / 2)
	}
	return true
}

// resize rehashes the shard into n slots (a power of two, more than its
// entries). It reads only the slots' hashes, never an activation.
func (sh *shard) resize(n int) {
	old := sh.slots
	sh.slots = make([]slot, n)
	mask := uint64(n - 1)
	for _, s := range old {
		if s.a == nil {
			continue
		}
		i := s.h & mask
		for sh.slots[i].a != nil {
			i = (i + 1) & mask
		}
		sh.slots[i] = s
	}
}

// lookup returns t's entry for k, if any.
func (t *table) lookup(k actorKey) *activation {
	sh, h := t.shard(k)
	sh.mu.RLock()
	a := sh.get(h, k)
	sh.mu.RUnlock()
	return a
}

// sorted returns every activation in key order (iteration order must not
// depend on map order: determinism).
func (t *table) sorted() []*activation {
	return t.collect(func(*activation) bool { return true })
}

func (t *table) collect(keep func(*activation) bool) []*activation {
	var out []*activation
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for _, s := range sh.slots {
			if s.a != nil && keep(s.a) {
				out = append(out, s.a)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(x, y *activation) int { return x.key().compare(y.key()) })
	return out
}
