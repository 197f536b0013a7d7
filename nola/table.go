package nola

import (
	"cmp"
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

const nShards = 64

// table maps actors to activations, sharded to keep parallel invocations of
// different actors off one lock.
type table struct {
	shards [nShards]shard
}

// shard holds its activations in two maps: short keys (namespace and ID
// together at most maxShortKey bytes, the usual case) are stored inline, as
// shortKey arrays, so a lookup compares them in the map slot it reads
// anyway; only longer ones use actorKey, whose comparison reads the key's
// bytes from their own allocation. With a million live actors that read is
// a cache miss of its own: a quarter of a warm invocation's time measured
// (memeqbody in the profile of BenchmarkInvokeRandomLive/go-server at 1M).
// Use get, put and del; never both maps for one key.
type shard struct {
	mu    sync.RWMutex
	short map[shortKey]*activation
	long  map[actorKey]*activation
}

// maxShortKey is the most bytes of namespace plus ID a shortKey holds: 46,
// room for a UUID ID in a namespace of up to ten bytes, in 48-byte keys.
const maxShortKey = len(shortKey{}) - 2

// shortKey encodes an actorKey as len(ns), len(id), ns, id, zero padded:
// distinct keys encode distinctly.
type shortKey [48]byte

// short returns k's shortKey, and false if k is too long for one.
func (k actorKey) short() (sk shortKey, ok bool) {
	if len(k.ns)+len(k.id) > maxShortKey {
		return sk, false
	}
	sk[0], sk[1] = byte(len(k.ns)), byte(len(k.id))
	copy(sk[2+copy(sk[2:], k.ns):], k.id)
	return sk, true
}

// get returns the entry for k, or nil. The caller holds mu (either mode).
func (sh *shard) get(k actorKey) *activation {
	if sk, ok := k.short(); ok {
		return sh.short[sk]
	}
	return sh.long[k]
}

// put sets the entry for k (a key the activation owns: see owned). The
// caller holds mu.
func (sh *shard) put(k actorKey, a *activation) {
	if sk, ok := k.short(); ok {
		sh.short[sk] = a
		return
	}
	sh.long[k] = a
}

// del removes the entry for k. The caller holds mu.
func (sh *shard) del(k actorKey) {
	if sk, ok := k.short(); ok {
		delete(sh.short, sk)
		return
	}
	delete(sh.long, k)
}

func newTable() *table {
	t := &table{}
	for i := range t.shards {
		t.shards[i].short = map[shortKey]*activation{}
		t.shards[i].long = map[actorKey]*activation{}
	}
	return t
}

func (t *table) shard(k actorKey) *shard { return &t.shards[k.hash()%nShards] }

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
		for _, a := range sh.short {
			if keep(a) {
				out = append(out, a)
			}
		}
		for _, a := range sh.long {
			if keep(a) {
				out = append(out, a)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(x, y *activation) int { return x.key.compare(y.key) })
	return out
}
