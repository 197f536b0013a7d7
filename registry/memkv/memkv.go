// Package memkv is an in-process implementation of kv.Store: MVCC with a
// bounded history, etcd's compare semantics, and leases whose clock is the
// injected runtime's, so that it is deterministic under simulation.
//
// memkv is trusted as a stand-in for etcd only because it passes the same
// conformance suite and a differential property test against real etcd.
package memkv

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// Options configure a Store.
type Options struct {
	// Limits enforced on commits; zero means kv.DefaultLimits().
	Limits kv.Limits
	// History is how many revisions of history reads at a revision can
	// reach; older revisions are compacted. Zero means 10000.
	History int64
}

// Store is an in-memory kv.Store. It is safe for concurrent use.
type Store struct {
	rt     rt.Runtime
	limits kv.Limits
	window int64

	mu         sync.Mutex
	rev        int64
	compactRev int64
	keys       map[string]*entry
	tree       *btree.BTreeG[*entry]
	tombstones []tombstone
	leases     map[kv.LeaseID]*lease
	nextLease  kv.LeaseID
	closed     bool
}

type entry struct {
	key      []byte
	versions []version // ascending by modRev
}

type version struct {
	value     []byte
	createRev int64
	modRev    int64
	ver       int64
	lease     kv.LeaseID
	deleted   bool
}

type tombstone struct {
	key string
	rev int64
}

type lease struct {
	id     kv.LeaseID
	ttl    time.Duration
	expiry time.Duration // on the runtime's monotonic clock
	keys   map[string]struct{}
	timer  rt.Timer
}

var _ kv.Store = (*Store)(nil)

// New returns an empty store whose leases run on r's clock.
func New(r rt.Runtime, opts Options) *Store {
	if opts.Limits == (kv.Limits{}) {
		opts.Limits = kv.DefaultLimits()
	}
	if opts.History <= 0 {
		opts.History = 10000
	}
	return &Store{
		rt:        r,
		limits:    opts.Limits,
		window:    opts.History,
		keys:      map[string]*entry{},
		tree:      btree.NewG(32, func(a, b *entry) bool { return bytes.Compare(a.key, b.key) < 0 }),
		leases:    map[kv.LeaseID]*lease{},
		nextLease: 0x1000,
	}
}

// Limits reports the store's limits.
func (s *Store) Limits() kv.Limits { return s.limits }

// Rev returns the current revision.
func (s *Store) Rev() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Close stops lease timers; later calls fail with kv.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, id := range s.leaseIDs() {
		s.leases[id].timer.Stop()
	}
	return nil
}

func (s *Store) leaseIDs() []kv.LeaseID {
	ids := make([]kv.LeaseID, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *Store) check(ctx context.Context) error {
	if s.closed {
		return kv.ErrClosed
	}
	return ctx.Err()
}

// visible returns the version of e that a read at rev sees.
func (e *entry) visible(rev int64) (version, bool) {
	for i := len(e.versions) - 1; i >= 0; i-- {
		v := e.versions[i]
		if v.modRev <= rev {
			if v.deleted {
				return version{}, false
			}
			return v, true
		}
	}
	return version{}, false
}

func (s *Store) readRev(rev int64) (int64, error) {
	switch {
	case rev == 0:
		return s.rev, nil
	case rev > s.rev:
		return 0, fmt.Errorf("memkv: read at revision %d, store is at %d: %w", rev, s.rev, kv.ErrFutureRev)
	case rev < s.compactRev:
		return 0, fmt.Errorf("memkv: read at revision %d, compacted up to %d: %w", rev, s.compactRev, kv.ErrCompacted)
	}
	return rev, nil
}

func toKV(key []byte, v version, keysOnly bool) kv.KeyValue {
	out := kv.KeyValue{Key: key, CreateRev: v.createRev, ModRev: v.modRev, Version: v.ver}
	// As etcd's keys-only ranges (served from its index), leave out the
	// value and the lease.
	if !keysOnly {
		out.Value = v.value
		out.Lease = v.lease
	}
	return out
}

// Get reads one key.
func (s *Store) Get(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return kv.KeyValue{}, false, err
	}
	if len(key) == 0 {
		return kv.KeyValue{}, false, fmt.Errorf("memkv: get: empty key: %w", kv.ErrInvalid)
	}
	if rev < 0 {
		return kv.KeyValue{}, false, fmt.Errorf("memkv: get at negative revision %d: %w", rev, kv.ErrInvalid)
	}
	at, err := s.readRev(rev)
	if err != nil {
		return kv.KeyValue{}, false, err
	}
	e := s.keys[string(key)]
	if e == nil {
		return kv.KeyValue{}, false, nil
	}
	v, ok := e.visible(at)
	if !ok {
		return kv.KeyValue{}, false, nil
	}
	return toKV(e.key, v, false), true, nil
}

// Range reads keys in [Begin, End).
func (s *Store) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return kv.RangeResult{}, err
	}
	// As in etcd, a range needs a begin key (even with an end).
	if len(r.Begin) == 0 {
		return kv.RangeResult{}, fmt.Errorf("memkv: range: empty begin: %w", kv.ErrInvalid)
	}
	if r.Rev < 0 {
		return kv.RangeResult{}, fmt.Errorf("memkv: range at negative revision %d: %w", r.Rev, kv.ErrInvalid)
	}
	at, err := s.readRev(r.Rev)
	if err != nil {
		return kv.RangeResult{}, err
	}
	res := kv.RangeResult{Rev: s.rev}
	if r.End == nil {
		if e := s.keys[string(r.Begin)]; e != nil {
			if v, ok := e.visible(at); ok {
				res.KVs = append(res.KVs, toKV(e.key, v, r.KeysOnly))
			}
		}
		return res, nil
	}
	s.ascend(r.Begin, r.End, func(e *entry) bool {
		v, ok := e.visible(at)
		if !ok {
			return true
		}
		if r.Limit > 0 && len(res.KVs) == r.Limit {
			res.More = true
			return false
		}
		res.KVs = append(res.KVs, toKV(e.key, v, r.KeysOnly))
		return true
	})
	return res, nil
}

// ascend visits entries in [begin, end) in key order.
func (s *Store) ascend(begin, end []byte, f func(*entry) bool) {
	if bytes.Compare(begin, end) >= 0 {
		return
	}
	s.tree.AscendRange(&entry{key: begin}, &entry{key: end}, f)
}

// Commit applies t if its compares hold.
func (s *Store) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if err := validate(t); err != nil {
		return kv.CommitResult{}, err
	}
	if err := kv.CheckLimits(t, s.limits); err != nil {
		return kv.CommitResult{}, fmt.Errorf("memkv: commit: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return kv.CommitResult{}, err
	}
	for _, c := range t.Compares {
		if !s.holds(c) {
			s.traceCommit(false, 0)
			return kv.CommitResult{Succeeded: false, Rev: s.rev}, nil
		}
	}
	// As in etcd, a missing lease fails only the branch that would use it.
	for _, o := range t.Ops {
		if o.Kind == kv.OpPut && o.Lease != kv.NoLease && s.liveLease(o.Lease) == nil {
			return kv.CommitResult{}, fmt.Errorf("memkv: put with lease %d: %w", o.Lease, kv.ErrLeaseNotFound)
		}
	}
	if len(t.Ops) == 0 {
		return kv.CommitResult{Succeeded: true, Rev: s.rev}, nil
	}
	next := s.rev + 1
	changed := false
	for _, o := range t.Ops {
		switch o.Kind {
		case kv.OpPut:
			s.put(next, o.Key, o.Value, o.Lease)
			changed = true
		case kv.OpDelete:
			if o.End == nil {
				changed = s.del(next, o.Key) || changed
				continue
			}
			var doomed [][]byte
			s.ascend(o.Key, o.End, func(e *entry) bool {
				if _, ok := e.visible(s.rev); ok {
					doomed = append(doomed, e.key)
				}
				return true
			})
			for _, k := range doomed {
				changed = s.del(next, k) || changed
			}
		}
	}
	if changed {
		s.rev = next
		s.compact()
	}
	s.traceCommit(true, len(t.Ops))
	return kv.CommitResult{Succeeded: true, Rev: s.rev}, nil
}

func (s *Store) traceCommit(ok bool, ops int) {
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("memkv commit ok=%v ops=%d rev=%d", ok, ops, s.rev))
	}
}

func validate(t kv.Txn) error {
	for _, c := range t.Compares {
		if len(c.Key) == 0 {
			return fmt.Errorf("memkv: compare on an empty key: %w", kv.ErrInvalid)
		}
		if c.Target < kv.TargetValue || c.Target > kv.TargetModRev || c.Op < kv.Equal || c.Op > kv.Greater {
			return fmt.Errorf("memkv: compare with unknown target or operator: %w", kv.ErrInvalid)
		}
	}
	for _, o := range t.Ops {
		if len(o.Key) == 0 {
			return fmt.Errorf("memkv: write to an empty key: %w", kv.ErrInvalid)
		}
		if o.Kind != kv.OpPut && o.Kind != kv.OpDelete {
			return fmt.Errorf("memkv: unknown op kind %d: %w", o.Kind, kv.ErrInvalid)
		}
		if o.Kind == kv.OpPut && o.End != nil {
			return fmt.Errorf("memkv: put with a range end: %w", kv.ErrInvalid)
		}
	}
	// As in etcd, a key may be put only once per commit and not also be
	// deleted by it.
	for i, o := range t.Ops {
		if o.Kind != kv.OpPut {
			continue
		}
		for j, p := range t.Ops {
			if i == j {
				continue
			}
			// A range delete conflicts with the keys it covers (none when
			// empty), any other write with its own key.
			ranged := p.Kind == kv.OpDelete && p.End != nil
			if (!ranged && bytes.Equal(o.Key, p.Key)) || (ranged &&
				bytes.Compare(o.Key, p.Key) >= 0 && bytes.Compare(o.Key, p.End) < 0) {
				return fmt.Errorf("memkv: key %q written twice in one commit: %w", o.Key, kv.ErrInvalid)
			}
		}
	}
	return nil
}

// holds evaluates one compare at the latest revision, with etcd's rules:
// over a range every key must satisfy it; an empty range or absent key
// compares as a zero key, except that value compares on it are false.
func (s *Store) holds(c kv.Compare) bool {
	if c.End == nil {
		var v version
		found := false
		if e := s.keys[string(c.Key)]; e != nil {
			v, found = e.visible(s.rev)
		}
		return compareOne(c, v, found)
	}
	all, any := true, false
	s.ascend(c.Key, c.End, func(e *entry) bool {
		v, ok := e.visible(s.rev)
		if !ok {
			return true
		}
		any = true
		if !compareOne(c, v, true) {
			all = false
			return false
		}
		return true
	})
	if !any {
		return compareOne(c, version{}, false)
	}
	return all
}

func compareOne(c kv.Compare, v version, found bool) bool {
	var r int
	switch c.Target {
	case kv.TargetValue:
		if !found {
			return false
		}
		r = bytes.Compare(v.value, c.Value)
	case kv.TargetVersion:
		r = cmpInt(v.ver, c.Num)
	case kv.TargetCreateRev:
		r = cmpInt(v.createRev, c.Num)
	case kv.TargetModRev:
		r = cmpInt(v.modRev, c.Num)
	}
	switch c.Op {
	case kv.Equal:
		return r == 0
	case kv.NotEqual:
		return r != 0
	case kv.Less:
		return r < 0
	case kv.Greater:
		return r > 0
	}
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Store) put(rev int64, key, value []byte, id kv.LeaseID) {
	e := s.keys[string(key)]
	if e == nil {
		e = &entry{key: bytes.Clone(key)}
		s.keys[string(e.key)] = e
		s.tree.ReplaceOrInsert(e)
	}
	nv := version{value: bytes.Clone(value), createRev: rev, modRev: rev, ver: 1, lease: id}
	if n := len(e.versions); n > 0 {
		last := &e.versions[n-1]
		if !last.deleted {
			nv.createRev, nv.ver = last.createRev, last.ver+1
			if last.lease != id {
				s.detach(last.lease, e.key)
			}
		}
		if last.modRev == rev {
			// Two writes to one key in one commit: the later one wins.
			*last = nv
			s.attach(id, e.key)
			return
		}
	}
	e.versions = append(e.versions, nv)
	s.attach(id, e.key)
	if e.versions[0].modRev < s.compactRev {
		s.trim(e)
	}
}

func (s *Store) del(rev int64, key []byte) bool {
	e := s.keys[string(key)]
	if e == nil {
		return false
	}
	n := len(e.versions)
	if n == 0 || e.versions[n-1].deleted {
		return false
	}
	last := e.versions[n-1]
	s.detach(last.lease, e.key)
	tomb := version{modRev: rev, deleted: true}
	if last.modRev == rev {
		e.versions[n-1] = tomb
	} else {
		e.versions = append(e.versions, tomb)
	}
	s.tombstones = append(s.tombstones, tombstone{key: string(e.key), rev: rev})
	return true
}

func (s *Store) attach(id kv.LeaseID, key []byte) {
	if l := s.leases[id]; l != nil {
		l.keys[string(key)] = struct{}{}
	}
}

func (s *Store) detach(id kv.LeaseID, key []byte) {
	if l := s.leases[id]; l != nil {
		delete(l.keys, string(key))
	}
}

// compact drops history older than the window: per key on write (bounded
// work per commit), and whole keys once their tombstone has aged out.
func (s *Store) compact() {
	s.compactRev = max(s.compactRev, s.rev-s.window)
	for len(s.tombstones) > 0 && s.tombstones[0].rev < s.compactRev {
		ts := s.tombstones[0]
		s.tombstones = s.tombstones[1:]
		if e := s.keys[ts.key]; e != nil {
			s.trim(e)
		}
	}
}

// trim removes versions no read at or after compactRev can see.
func (s *Store) trim(e *entry) {
	// Keep the newest version at or below compactRev (reads at compactRev
	// see it) and everything after it.
	keepFrom := 0
	for i := len(e.versions) - 1; i >= 0; i-- {
		if e.versions[i].modRev <= s.compactRev {
			keepFrom = i
			break
		}
	}
	if keepFrom > 0 {
		e.versions = slices.Delete(e.versions, 0, keepFrom)
	}
	if len(e.versions) == 1 && e.versions[0].deleted && e.versions[0].modRev < s.compactRev {
		delete(s.keys, string(e.key))
		s.tree.Delete(e)
	}
}

// Grant creates a lease.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (kv.LeaseID, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("memkv: grant: TTL %v must be positive: %w", ttl, kv.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.nextLease++
	l := &lease{id: s.nextLease, ttl: ttl, expiry: s.rt.Mono() + ttl, keys: map[string]struct{}{}}
	s.leases[l.id] = l
	s.armLease(l, ttl)
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("memkv grant lease=%d ttl=%v", l.id, ttl))
	}
	return l.id, nil
}

func (s *Store) armLease(l *lease, d time.Duration) {
	l.timer = s.rt.AfterFunc(d, "memkv-lease-expiry", func() { s.expire(l.id) })
}

// expire revokes a lease whose expiry has passed, or re-arms its timer if a
// keep-alive moved the expiry since the timer was set.
func (s *Store) expire(id kv.LeaseID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[id]
	if l == nil || s.closed {
		return
	}
	if now := s.rt.Mono(); now < l.expiry {
		s.armLease(l, l.expiry-now)
		return
	}
	s.revokeLocked(l)
	if s.rt.Tracing() {
		s.rt.Trace(fmt.Sprintf("memkv lease expired lease=%d rev=%d", id, s.rev))
	}
}

// liveLease returns lease id unless it is gone. A lease whose expiry has
// passed is revoked here and now, even if its timer has not fired yet: as in
// etcd, an expired lease can never be renewed or used again.
func (s *Store) liveLease(id kv.LeaseID) *lease {
	l := s.leases[id]
	if l == nil {
		return nil
	}
	if s.rt.Mono() >= l.expiry {
		l.timer.Stop()
		s.revokeLocked(l)
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("memkv lease expired lease=%d rev=%d", id, s.rev))
		}
		return nil
	}
	return l
}

// Compact discards the history before rev, as etcd's compaction does:
// reads below rev then fail with kv.ErrCompacted. Compacting at or below an
// earlier compaction fails with kv.ErrCompacted, beyond the current revision
// with kv.ErrFutureRev.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	switch {
	case rev > s.rev:
		return fmt.Errorf("memkv: compact at %d, store is at %d: %w", rev, s.rev, kv.ErrFutureRev)
	case rev <= s.compactRev:
		return fmt.Errorf("memkv: compact at %d, already compacted up to %d: %w", rev, s.compactRev, kv.ErrCompacted)
	}
	s.compactRev = rev
	var all []*entry
	s.tree.Ascend(func(e *entry) bool {
		all = append(all, e)
		return true
	})
	for _, e := range all {
		s.trim(e)
	}
	return nil
}

// KeepAlive renews a lease.
func (s *Store) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	l := s.liveLease(id)
	if l == nil {
		return 0, fmt.Errorf("memkv: keep-alive lease %d: %w", id, kv.ErrLeaseNotFound)
	}
	l.expiry = s.rt.Mono() + l.ttl
	return l.ttl, nil
}

// Revoke ends a lease and deletes its keys.
func (s *Store) Revoke(ctx context.Context, id kv.LeaseID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	l := s.liveLease(id)
	if l == nil {
		return fmt.Errorf("memkv: revoke lease %d: %w", id, kv.ErrLeaseNotFound)
	}
	l.timer.Stop()
	s.revokeLocked(l)
	return nil
}

// revokeLocked deletes the lease's keys at one new revision.
func (s *Store) revokeLocked(l *lease) {
	delete(s.leases, l.id)
	if len(l.keys) == 0 {
		return
	}
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	next := s.rev + 1
	for _, k := range keys {
		s.del(next, []byte(k))
	}
	s.rev = next
	s.compact()
}
