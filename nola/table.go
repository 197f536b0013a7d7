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

type shard struct {
	mu sync.RWMutex
	m  map[actorKey]*activation
}

func newTable() *table {
	t := &table{}
	for i := range t.shards {
		t.shards[i].m = map[actorKey]*activation{}
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
		for _, a := range sh.m {
			if keep(a) {
				out = append(out, a)
			}
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(x, y *activation) int { return x.key.compare(y.key) })
	return out
}
