// Package registry implements nola's activation protocol over a kv.Store:
// server registration with incarnations and leases, placement
// (EnsureActivation; CreateActor for creations, without a read first),
// ownership confirmation, voluntary release, fenced
// commits of actor KV, and deletion (Delete, Reclaim: delete.go,
// docs/deletion.md). docs/architecture.md describes the protocol and
// docs/proofs/ argues why it keeps at most one activation per actor.
//
// Every decision is a compare inside the store's own commit; nothing here
// trusts a local clock. The one clock rule — a server stops serving at its
// local deadline, before the store can let anyone else own its actors — is
// computed by LocalDeadline and enforced by the engine.
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
)

// Errors the protocol returns (wrapped); test with errors.Is.
var (
	// ErrFenced: a fenced commit's compares failed — the server's
	// incarnation or its ownership of the actor is gone. Nothing was
	// written.
	ErrFenced = errors.New("registry: fenced: incarnation or ownership lost")
	// ErrLeaseLost: the server's lease no longer exists in the store.
	ErrLeaseLost = errors.New("registry: server lease lost")
	// ErrTypeMismatch: the actor exists with another type.
	ErrTypeMismatch = errors.New("registry: actor exists with another type")
	// ErrNoServers: no live server can take the actor.
	ErrNoServers = errors.New("registry: no live server with capacity")
	// ErrActorNotFound: the actor was never created (and no type was given
	// to create it).
	ErrActorNotFound = errors.New("registry: actor not found")
	// ErrContention: placement lost too many races in a row.
	ErrContention = errors.New("registry: placement contention, try again")
	// ErrServerIDInUse: a live incarnation of the server ID is registered
	// (another process, or a crashed one whose lease has not expired yet).
	ErrServerIDInUse = errors.New("registry: server ID in use by a live incarnation")
	// ErrOwned: a delete without an incarnation found the actor owned by a
	// live incarnation; only that owner may delete it (it must stop the
	// activation first). Nothing was written.
	ErrOwned = errors.New("registry: actor has a live owner; delete it through the owner")
	// ErrNotOwner: a delete by an incarnation that does not own the actor.
	// Nothing was written.
	ErrNotOwner = errors.New("registry: incarnation does not own the actor")
)

// Options configure a Registry.
type Options struct {
	// Root prefixes every key; default "nola".
	Root string
	// ServerListTTL bounds how stale the server list used for placement
	// may be; default 1s. Staleness affects balance only: every placement
	// is a compare on the chosen server's current record.
	ServerListTTL time.Duration

	// Placement weighs the load figures placement scores servers by
	// (PlacementPolicy; docs/placement.md). Zero: DefaultPlacement.
	Placement PlacementPolicy

	// Mutations break the protocol on purpose, for the checkers'
	// non-vacuity tests only (internal: outside this module only the zero
	// value can be set). The registry acts on SkipStoreFence (commit actor
	// KV without fence compares), IgnoreIncarnation (confirm ownership by
	// server ID alone), ResetEpochs (placement and release write epoch 0,
	// so an owner record can repeat: the ABA epochs exist to prevent),
	// DeleteSkipsGeneration (a delete keeps the generation, so the next
	// life shares the old life's KV prefix) and SkipReleaseCompare
	// (release without the compare on the releasing incarnation's
	// ownership) and SkipCreateCompare (CreateActor's read-free first
	// attempt commits without the compare that the actor is absent).
	Mutations mutation.Set
}

// Registry is a handle on the protocol, used by servers and clients. It is
// safe for concurrent use.
type Registry struct {
	store kv.Store
	rt    rt.Runtime
	keys  Keyspace
	ttl   time.Duration
	opts  Options

	mu        sync.Mutex
	servers   []Member
	fetchedAt time.Duration
	fetched   bool
	// grants serialize this registry's namespace KV grants, by stripe of
	// the namespace (created on first use, under mu): see CommitKVQuota.
	grants [grantStripes]rt.Sema
}

// New returns a registry over store.
func New(store kv.Store, r rt.Runtime, opts Options) *Registry {
	if opts.Root == "" {
		opts.Root = "nola"
	}
	if opts.ServerListTTL <= 0 {
		opts.ServerListTTL = time.Second
	}
	opts.Placement = opts.Placement.withDefaults()
	return &Registry{store: store, rt: r, keys: NewKeyspace(opts.Root), ttl: opts.ServerListTTL, opts: opts}
}

// Store returns the underlying store.
func (r *Registry) Store() kv.Store { return r.store }

// Keys returns the keyspace.
func (r *Registry) Keys() Keyspace { return r.keys }

// LocalDeadline is the instant, on the server's monotonic clock, after which
// it must not serve: sent is when the last successful keep-alive (or the
// grant) was sent, ttl the lease TTL, rho the bound on the rate of the
// server's clock relative to the store's lease clock, and margin a safety
// margin for scheduling delays. The store expires the lease no earlier than
// ttl after it processed that request, which is after sent; so with drift at
// most rho the server stops before anyone else can own its actors
// (docs/proofs/single-activation.md).
func LocalDeadline(sent, ttl time.Duration, rho float64, margin time.Duration) time.Duration {
	return sent + time.Duration(float64(ttl)*(1-rho)) - margin
}

// Incarnation is one registration of a server: a lease and an immutable
// server record. Every fenced commit compares that record.
type Incarnation struct {
	ServerID string
	Num      int64
	Lease    kv.LeaseID
	Addr     string
	// Sent is when the grant that started the lease was sent (monotonic).
	Sent time.Duration

	serverKey []byte
	record    []byte
}

// Register starts a new incarnation of server sid at addr: it grants a lease
// of ttl, bumps sid's incarnation counter and writes the server record
// attached to the lease, in one commit — only if no record of sid exists.
//
// Refusing to overwrite a live record is what keeps a server's record
// stable for its whole incarnation: only the expiry or revocation of its own
// lease removes it. A process restarting under the ID of a crashed one
// therefore waits (ErrServerIDInUse) until the old lease expires; a server
// that fenced itself revokes its old lease first (see Deregister); two live
// processes configured with the same ID cannot both register.
func (r *Registry) Register(ctx context.Context, sid, addr string, ttl time.Duration) (_ *Incarnation, err error) {
	if sid == "" {
		return nil, fmt.Errorf("registry: register: empty server id")
	}
	sent := r.rt.Mono()
	lease, err := r.store.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("registry: register %s: grant lease: %w", sid, err)
	}
	defer func() {
		if err != nil {
			// Do not leak the lease of a registration that did not happen.
			_ = r.store.Revoke(ctx, lease)
		}
	}()
	incKey, srvKey := r.keys.Incarnations(sid), r.keys.Server(sid)
	for attempt := 0; attempt < 16; attempt++ {
		cur, found, err := r.store.Get(ctx, incKey, 0)
		if err != nil {
			return nil, fmt.Errorf("registry: register %s: read incarnation: %w", sid, err)
		}
		var n int64
		if found {
			if n, err = decodeInt(cur.Value); err != nil {
				return nil, err
			}
		}
		rec := ServerRecord{ID: sid, Incarnation: n + 1, Addr: addr, RegisteredAt: r.rt.Now().UnixNano()}
		inc := &Incarnation{
			ServerID: sid, Num: n + 1, Lease: lease, Addr: addr, Sent: sent,
			serverKey: srvKey, record: rec.encode(),
		}
		res, err := r.store.Commit(ctx, kv.Txn{
			Compares: []kv.Compare{kv.ModRevEquals(incKey, cur.ModRev), kv.Absent(srvKey)},
			Ops: []kv.Op{
				kv.Put(incKey, encodeInt(n+1), kv.NoLease),
				kv.Put(srvKey, inc.record, lease),
			},
		})
		if err != nil {
			return nil, fmt.Errorf("registry: register %s: %w", sid, err)
		}
		if res.Succeeded {
			r.invalidateServers()
			return inc, nil
		}
		if _, live, err := r.store.Get(ctx, srvKey, 0); err == nil && live {
			return nil, fmt.Errorf("registry: register %s: %w", sid, ErrServerIDInUse)
		}
	}
	return nil, fmt.Errorf("registry: register %s: %w", sid, ErrContention)
}

// KeepAlive renews the incarnation's lease once. ErrLeaseLost means the
// incarnation is over: the server must fence itself and register anew.
func (r *Registry) KeepAlive(ctx context.Context, inc *Incarnation) error {
	if _, err := r.store.KeepAlive(ctx, inc.Lease); err != nil {
		if errors.Is(err, kv.ErrLeaseNotFound) {
			return fmt.Errorf("registry: keep-alive %s#%d: %w: %w", inc.ServerID, inc.Num, ErrLeaseLost, err)
		}
		return fmt.Errorf("registry: keep-alive %s#%d: %w", inc.ServerID, inc.Num, err)
	}
	return nil
}

// ReportLoad publishes the server's load for placement.
func (r *Registry) ReportLoad(ctx context.Context, inc *Incarnation, l Load) error {
	l.Incarnation = inc.Num
	res, err := r.store.Commit(ctx, kv.Txn{
		Compares: []kv.Compare{kv.ValueEquals(inc.serverKey, inc.record)},
		Ops:      []kv.Op{kv.Put(r.keys.Load(inc.ServerID), l.encode(), inc.Lease)},
	})
	if err != nil {
		return fmt.Errorf("registry: report load %s#%d: %w", inc.ServerID, inc.Num, err)
	}
	if !res.Succeeded {
		return fmt.Errorf("registry: report load %s#%d: %w", inc.ServerID, inc.Num, ErrFenced)
	}
	return nil
}

// Deregister ends the incarnation now (revoking its lease removes the
// server record), so its actors can be placed elsewhere at once.
func (r *Registry) Deregister(ctx context.Context, inc *Incarnation) error {
	if err := r.store.Revoke(ctx, inc.Lease); err != nil && !errors.Is(err, kv.ErrLeaseNotFound) {
		return fmt.Errorf("registry: deregister %s#%d: %w", inc.ServerID, inc.Num, err)
	}
	r.invalidateServers()
	return nil
}

// OwnerRecord returns the exact bytes of the record of an actor of type typ
// and generation gen owned by this incarnation at epoch: what fences
// compare.
func (inc *Incarnation) OwnerRecord(typ string, epoch, gen int64) []byte {
	return ActorRecord{Type: typ, Owner: inc.ServerID, OwnerIncarnation: inc.Num, Epoch: epoch, Generation: gen}.encode()
}

// Fence returns the compares that make a commit conditional on this
// incarnation being current and owning the actor whose record is actorKey
// with owner record ownerRecord.
func (inc *Incarnation) Fence(actorKey, ownerRecord []byte) []kv.Compare {
	return []kv.Compare{
		kv.ValueEquals(inc.serverKey, inc.record),
		kv.ValueEquals(actorKey, ownerRecord),
	}
}

// Confirm reads, linearizably, whether this incarnation owns actor (ns, id)
// of type typ, and at which epoch and generation. Only then may the server activate it,
// and only while its own lease is still valid when the answer arrives: the
// server record of a live lease is the one this incarnation wrote (records
// are stable for an incarnation), so at the read's instant the incarnation
// was current and owned the actor (docs/proofs/single-activation.md).
func (r *Registry) Confirm(ctx context.Context, inc *Incarnation, ns, id, typ string) (epoch, gen int64, ok bool, err error) {
	rec, found, err := r.Actor(ctx, ns, id)
	if err != nil {
		return 0, 0, false, fmt.Errorf("registry: confirm ownership of %s/%s: %w", ns, id, err)
	}
	if !found || rec.Type != typ || rec.Owner != inc.ServerID {
		return 0, 0, false, nil
	}
	if rec.OwnerIncarnation != inc.Num && !r.opts.Mutations.Has(mutation.IgnoreIncarnation) {
		return 0, 0, false, nil
	}
	return rec.Epoch, rec.Generation, true, nil
}

// Bump confirms that this incarnation owns actor (ns, id) of type typ and
// moves its record to the next epoch, in one fenced compare-and-swap. It
// returns the new epoch (and the generation), or ok=false if the incarnation does not own the
// actor. Once Bump has succeeded no commit fenced on an earlier epoch can
// apply: an owner calls it before reactivating an actor whose last commit
// had an unknown outcome (that commit may still be on its way to the store).
func (r *Registry) Bump(ctx context.Context, inc *Incarnation, ns, id, typ string) (epoch, gen int64, ok bool, err error) {
	key := r.keys.Actor(ns, id)
	cur, found, err := r.store.Get(ctx, key, 0)
	if err != nil {
		return 0, 0, false, fmt.Errorf("registry: bump %s/%s: %w", ns, id, err)
	}
	if !found {
		return 0, 0, false, nil
	}
	rec, err := decodeActor(cur.Value)
	if err != nil {
		return 0, 0, false, err
	}
	if rec.Owner != inc.ServerID || rec.OwnerIncarnation != inc.Num || rec.Type != typ {
		return 0, 0, false, nil
	}
	rec.Epoch++
	res, err := r.store.Commit(ctx, kv.Txn{
		Compares: inc.Fence(key, cur.Value),
		Ops:      []kv.Op{kv.Put(key, rec.encode(), kv.NoLease)},
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("registry: bump %s/%s: %w", ns, id, err)
	}
	return rec.Epoch, rec.Generation, res.Succeeded, nil
}

func (r *Registry) nextEpoch(e int64) int64 {
	if r.opts.Mutations.Has(mutation.ResetEpochs) {
		return 0
	}
	return e + 1
}

// Release gives up ownership of an actor this incarnation owns at epoch
// (after deactivating it), so that it can be placed anywhere at once. The
// released record moves to the next epoch, like every change of owner:
// epochs never repeat, so no fence of an earlier ownership can ever hold
// again.
func (r *Registry) Release(ctx context.Context, inc *Incarnation, ns, id, typ string, epoch, gen int64) error {
	return r.ReleaseTo(ctx, inc, ns, id, typ, epoch, gen, "")
}

// ReleaseTo is Release leaving a placement hint in the released record:
// the next placement of the actor prefers server hint if it is live, has
// room and is within bounded load (choose). The hint is advice, never a
// reservation: that placement writes its owner with the same compares as
// any other, so a stale hint can cost balance, never correctness.
func (r *Registry) ReleaseTo(ctx context.Context, inc *Incarnation, ns, id, typ string, epoch, gen int64, hint string) error {
	if len(hint) > maxHintLen {
		return fmt.Errorf("registry: release %s/%s: placement hint of %d bytes (at most %d)", ns, id, len(hint), maxHintLen)
	}
	key := r.keys.Actor(ns, id)
	cmps := []kv.Compare{kv.ValueEquals(key, inc.OwnerRecord(typ, epoch, gen))}
	if r.opts.Mutations.Has(mutation.SkipReleaseCompare) {
		cmps = nil
	}
	res, err := r.store.Commit(ctx, kv.Txn{
		Compares: cmps,
		Ops:      []kv.Op{kv.Put(key, ActorRecord{Type: typ, Epoch: r.nextEpoch(epoch), Generation: gen, Hint: hint}.encode(), kv.NoLease)},
	})
	if err != nil {
		return fmt.Errorf("registry: release %s/%s: %w", ns, id, err)
	}
	if !res.Succeeded {
		return fmt.Errorf("registry: release %s/%s: %w", ns, id, ErrFenced)
	}
	return nil
}

// KVWrite is one write of an actor's KV transaction.
type KVWrite struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// CommitKV applies an actor's writes in one commit fenced on the
// incarnation and its ownership of the actor. ownerRecord is what
// inc.OwnerRecord returned for the actor's type and epoch. ErrFenced means nothing was
// written and the incarnation (or its ownership) is gone.
func (r *Registry) CommitKV(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite) error {
	return r.commitKV(ctx, inc, ns, id, ownerRecord, writes, nil, nil, CommitOptions{})
}

// CommitKVWith is CommitKV with options (the creation hook's commit).
func (r *Registry) CommitKVWith(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, o CommitOptions) error {
	return r.commitKV(ctx, inc, ns, id, ownerRecord, writes, nil, nil, o)
}

// commitKV is CommitKV with more compares and writes (the KV usage
// records: CommitKVCounted), and what o adds.
func (r *Registry) commitKV(ctx context.Context, inc *Incarnation, ns, id string, ownerRecord []byte, writes []KVWrite, guards []kv.Compare, extras []kv.Op, o CommitOptions) error {
	// The writes go to the generation the fence names: a commit can never
	// write one life's keys under another life's fence.
	owned, err := decodeActor(ownerRecord)
	if err != nil {
		return fmt.Errorf("registry: commit KV of %s/%s: owner record: %w", ns, id, err)
	}
	txn := kv.Txn{Compares: inc.Fence(r.keys.Actor(ns, id), ownerRecord), Ops: make([]kv.Op, len(writes), len(writes)+len(extras))}
	if r.opts.Mutations.Has(mutation.SkipStoreFence) {
		txn.Compares = nil
	}
	for i, w := range writes {
		k := r.keys.KV(ns, id, owned.Generation, w.Key)
		if w.Delete {
			txn.Ops[i] = kv.Delete(k)
		} else {
			txn.Ops[i] = kv.Put(k, w.Value, kv.NoLease)
		}
	}
	txn.Compares = append(txn.Compares, guards...)
	txn.Ops = append(txn.Ops, extras...)
	if o != (CommitOptions{}) {
		cmps, ops := o.extras(r, ns, id)
		txn.Compares = append(txn.Compares, cmps...)
		txn.Ops = append(txn.Ops, ops...)
	}
	if err := kv.CheckLimits(txn, r.store.Limits()); err != nil {
		return fmt.Errorf("registry: commit KV of %s/%s: %w", ns, id, err)
	}
	res, err := r.store.Commit(ctx, txn)
	if err != nil {
		return fmt.Errorf("registry: commit KV of %s/%s: %w", ns, id, err)
	}
	if !res.Succeeded {
		return fmt.Errorf("registry: commit KV of %s/%s: %w", ns, id, ErrFenced)
	}
	return nil
}

// KVBudget is what one fenced KV commit of an actor may carry, counted as
// kv.CheckLimits counts it.
type KVBudget struct {
	// MaxWrites bounds the writes; MaxBytes bounds the sum of WriteSize
	// over them (0: unbounded).
	MaxWrites, MaxBytes int
	prefixLen           int
}

// WriteSize is what writing value at key costs against MaxBytes: the
// encoded store key, the value and the per-op overhead of kv.RequestSize.
func (b KVBudget) WriteSize(key, value []byte) int {
	// The tuple encoding adds a type byte, a terminator and one escape
	// byte per zero byte.
	return b.prefixLen + 2 + len(key) + bytes.Count(key, []byte{0}) + len(value) + 16
}

// KVBudget returns the budget of one fenced KV commit of actor (ns, id)
// owned by inc with ownerRecord: the store's limits less the fence.
func (r *Registry) KVBudget(inc *Incarnation, ns, id string, ownerRecord []byte) KVBudget {
	return r.KVBudgetWith(inc, ns, id, ownerRecord, false, CommitOptions{})
}

// CountedKVBudget is KVBudget for CommitKVCounted: it leaves room for the
// usage record's compare and write.
func (r *Registry) CountedKVBudget(inc *Incarnation, ns, id string, ownerRecord []byte) KVBudget {
	return r.KVBudgetWith(inc, ns, id, ownerRecord, true, CommitOptions{})
}

// KVBudgetWith is KVBudget (counted: CountedKVBudget) for a commit with
// options o: it leaves room for what they add.
func (r *Registry) KVBudgetWith(inc *Incarnation, ns, id string, ownerRecord []byte, counted bool, o CommitOptions) KVBudget {
	l := r.store.Limits()
	var gen int64
	if owned, err := decodeActor(ownerRecord); err == nil {
		gen = owned.Generation // else commitKV refuses the record anyway
	}
	b := KVBudget{MaxWrites: l.MaxOpsPerTxn, prefixLen: len(r.keys.KVPrefix(ns, id, gen))}
	fixed := kv.Txn{Compares: inc.Fence(r.keys.Actor(ns, id), ownerRecord)}
	if counted {
		co := r.countedOverhead(ns, id)
		fixed.Compares = append(fixed.Compares, co.Compares...)
		fixed.Ops = co.Ops
	}
	cmps, ops := o.extras(r, ns, id)
	fixed.Compares = append(fixed.Compares, cmps...)
	fixed.Ops = append(fixed.Ops, ops...)
	if b.MaxWrites > 0 {
		b.MaxWrites = max(1, b.MaxWrites-len(fixed.Ops))
	}
	if l.MaxRequestBytes > 0 {
		b.MaxBytes = max(1, l.MaxRequestBytes-kv.RequestSize(fixed))
	}
	return b
}

// GetKV reads one key of generation gen of an actor's KV. The caller
// knows the generation (it owns the actor); ReadKV is the read for anyone
// else.
func (r *Registry) GetKV(ctx context.Context, ns, id string, gen int64, key []byte) ([]byte, bool, error) {
	v, found, err := r.store.Get(ctx, r.keys.KV(ns, id, gen, key), 0)
	if err != nil {
		return nil, false, fmt.Errorf("registry: read KV of %s/%s: %w", ns, id, err)
	}
	return v.Value, found, nil
}

// KVPair is one entry of an actor's KV.
type KVPair struct {
	Key, Value []byte
}

// ScanKV reads an actor's keys in [start, end) (end nil: to the last key),
// at most limit of them (0: no limit). more reports a cut-off.
func (r *Registry) ScanKV(ctx context.Context, ns, id string, gen int64, start, end []byte, limit int) (pairs []KVPair, more bool, err error) {
	begin, stop := r.keys.KVRange(ns, id, gen, start, end)
	return r.scan(ctx, ns, id, gen, begin, stop, limit, 0)
}

// ScanKVPrefix reads an actor's keys that start with prefix.
func (r *Registry) ScanKVPrefix(ctx context.Context, ns, id string, gen int64, prefix []byte, limit int) ([]KVPair, bool, error) {
	begin, stop := r.keys.KVPrefixRange(ns, id, gen, prefix)
	return r.scan(ctx, ns, id, gen, begin, stop, limit, 0)
}

func (r *Registry) scan(ctx context.Context, ns, id string, gen int64, begin, end []byte, limit int, rev int64) ([]KVPair, bool, error) {
	res, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: limit, Rev: rev})
	if err != nil {
		return nil, false, fmt.Errorf("registry: scan KV of %s/%s: %w", ns, id, err)
	}
	prefix := r.keys.KVPrefix(ns, id, gen)
	out := make([]KVPair, 0, len(res.KVs))
	for _, e := range res.KVs {
		k, err := UserKey(prefix, e.Key)
		if err != nil {
			return nil, false, err
		}
		out = append(out, KVPair{Key: k, Value: e.Value})
	}
	return out, res.More, nil
}

// Member is a live server as placement sees it.
type Member struct {
	Record ServerRecord
	Load   Load
	// ModRev is the server record's revision, for compares.
	ModRev int64
	record []byte
	// placed counts placements this registry made on the member since the
	// list was fetched, so a burst spreads before load reports catch up.
	placed int64
}

// Servers lists the live servers (records present in the store) with their
// latest load reports, ordered by server ID.
func (r *Registry) Servers(ctx context.Context) ([]Member, error) {
	begin, end := r.keys.Servers()
	srv, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end})
	if err != nil {
		return nil, fmt.Errorf("registry: list servers: %w", err)
	}
	lb, le := r.keys.Loads()
	loads, err := r.store.Range(ctx, kv.RangeRequest{Begin: lb, End: le, Rev: srv.Rev})
	if err != nil {
		return nil, fmt.Errorf("registry: list server loads: %w", err)
	}
	byID := map[string]Load{}
	for _, e := range loads.KVs {
		sid, err := lastString(e.Key)
		if err != nil {
			return nil, err
		}
		l, err := decodeLoad(e.Value)
		if err != nil {
			return nil, err
		}
		byID[sid] = l
	}
	out := make([]Member, 0, len(srv.KVs))
	for _, e := range srv.KVs {
		sid, err := lastString(e.Key)
		if err != nil {
			return nil, err
		}
		rec, err := decodeServer(sid, e.Value)
		if err != nil {
			return nil, err
		}
		m := Member{Record: rec, ModRev: e.ModRev, record: e.Value}
		if l, ok := byID[sid]; ok && l.Incarnation == rec.Incarnation {
			m.Load = l
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Record.ID, b.Record.ID) })
	return out, nil
}

// ServerIncarnations returns, in one linearizable read, the incarnation
// of every server whose record is in the store. A server absent from it,
// or present with another incarnation, has lost the lease of every
// incarnation it is not listed with: by the time the read answers, those
// incarnations have fenced themselves (their local deadlines precede the
// store's expiry; docs/proofs/single-activation.md, Lemma 2).
func (r *Registry) ServerIncarnations(ctx context.Context) (map[string]int64, error) {
	begin, end := r.keys.Servers()
	srv, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end})
	if err != nil {
		return nil, fmt.Errorf("registry: list servers: %w", err)
	}
	out := make(map[string]int64, len(srv.KVs))
	for _, e := range srv.KVs {
		sid, err := lastString(e.Key)
		if err != nil {
			return nil, err
		}
		rec, err := decodeServer(sid, e.Value)
		if err != nil {
			return nil, err
		}
		out[sid] = rec.Incarnation
	}
	return out, nil
}

func lastString(key []byte) (string, error) {
	t, err := tuple.Unpack(key)
	if err != nil || len(t) == 0 {
		return "", fmt.Errorf("registry: malformed key: %v", err)
	}
	s, ok := t[len(t)-1].(string)
	if !ok {
		return "", fmt.Errorf("registry: malformed key")
	}
	return s, nil
}

func (r *Registry) invalidateServers() {
	r.mu.Lock()
	r.fetched = false
	r.mu.Unlock()
}

// members returns the cached server list, refreshed if stale.
func (r *Registry) members(ctx context.Context) ([]Member, error) {
	r.mu.Lock()
	if r.fetched && r.rt.Mono()-r.fetchedAt < r.ttl {
		// A copy: notePlaced updates the cached entries concurrently.
		m := slices.Clone(r.servers)
		r.mu.Unlock()
		return m, nil
	}
	r.mu.Unlock()
	list, err := r.Servers(ctx)
	if err != nil {
		return nil, err
	}
	// The caller's copy is taken before the list is shared.
	mine := slices.Clone(list)
	r.mu.Lock()
	r.servers, r.fetchedAt, r.fetched = list, r.rt.Mono(), true
	r.mu.Unlock()
	return mine, nil
}

// notePlaced counts a placement on sid against the cached list.
func (r *Registry) notePlaced(sid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.servers {
		if r.servers[i].Record.ID == sid {
			r.servers[i].placed++
		}
	}
}

// choose picks the server for a new placement (docs/placement.md):
//
//  1. Servers at their activation limit are skipped; so are servers whose
//     memory reached their budget, unless every server's has.
//  2. Bounded load: a server is eligible only while the placements this
//     registry made on it since it fetched the list stay within
//     ceil((1+ε)·(P+1)/n), P their total over the n candidates. Load
//     reports lag placements by up to a keep-alive period; without the
//     bound every placement of that window would go to the same server —
//     the one a fresh server always is.
//  3. A hinted server (the record's Hint, left by a locality move) wins if
//     it is a candidate, within the bound of 2, and within bounded load
//     over the candidates' activations and memory (WithinBound).
//  4. Otherwise the lowest score wins (PlacementPolicy.score), ties at
//     random.
func (r *Registry) choose(list []Member, hint string) (m Member, hinted, ok bool) {
	var buf [16]int // no allocation for clusters of up to 16 servers
	cands := buf[:0]
	for _, underBudget := range []bool{true, false} {
		for i, m := range list {
			n := m.Load.Activations + m.placed
			if m.Load.Limit > 0 && n >= m.Load.Limit {
				continue
			}
			if underBudget && m.Load.Budget > 0 && m.Load.Bytes >= m.Load.Budget {
				continue
			}
			cands = append(cands, i)
		}
		if len(cands) > 0 {
			break
		}
	}
	if len(cands) == 0 {
		return Member{}, false, false
	}
	p := r.opts.Placement
	var mean loadMean
	var placed int64
	for _, i := range cands {
		mean.add(list[i])
		placed += list[i].placed
	}
	mean.div(len(cands))
	bound := int64(math.Ceil((1 + p.Epsilon) * float64(placed+1) / float64(len(cands))))
	if hint != "" {
		for _, i := range cands {
			if m := list[i]; m.Record.ID == hint && m.placed+1 <= bound && withinBound(list, cands, i, 0, p.Epsilon) {
				return m, true, true
			}
		}
	}
	best, ties := -1, 0
	var bestScore float64
	for _, i := range cands {
		m := list[i]
		if m.placed+1 > bound {
			continue
		}
		sc := p.score(m, mean)
		switch {
		case best < 0 || sc < bestScore:
			best, bestScore, ties = i, sc, 1
		case sc == bestScore:
			// Reservoir sampling keeps each tied server equally likely.
			ties++
			if r.rt.Uint64()%uint64(ties) == 0 {
				best = i
			}
		}
	}
	// The server with the fewest placements is always within the bound
	// (it is at most the mean), so best is set.
	return list[best], false, true
}

// WithinBound reports whether server sid of list (a Servers answer) could
// take one more activation of bytes bytes and stay within bounded load:
// with it, its activations at most ceil((1+ε)·(A+1)/n); without it, its
// memory at most (1+ε)·(B+bytes)/n (when any server reports memory), A and B the totals
// over the n servers not at their activation limit, ε the policy's. A
// locality move asks it before releasing an actor to sid, and placement
// again before following the hint: locality must not pile a cluster's
// actors onto one server (a hub everyone calls).
func (p PlacementPolicy) WithinBound(list []Member, sid string, bytes int64) bool {
	p = p.withDefaults()
	var buf [16]int
	cands := buf[:0]
	at := -1
	for i, m := range list {
		if m.Load.Limit > 0 && m.Load.Activations+m.placed >= m.Load.Limit {
			continue
		}
		if m.Record.ID == sid {
			at = i
		}
		cands = append(cands, i)
	}
	return at >= 0 && withinBound(list, cands, at, bytes, p.Epsilon)
}

// withinBound is WithinBound over the candidates cands of list, for
// list[at] (one of them) and an activation of bytes (0: its server's mean
// size, or 1 KiB).
func withinBound(list []Member, cands []int, at int, bytes int64, eps float64) bool {
	var acts, mem float64
	for _, i := range cands {
		acts += float64(list[i].Load.Activations + list[i].placed)
		mem += list[i].projectedBytes()
	}
	m := list[at]
	n := float64(len(cands))
	if float64(m.Load.Activations+m.placed+1) > math.Ceil((1+eps)*(acts+1)/n) {
		return false
	}
	add := float64(bytes)
	if bytes <= 0 {
		add = m.perActivation()
	}
	// Before receiving it, the server holds at most (1+ε)× the mean
	// memory after the move: like the ceiling of the count bound, a slack
	// of one activation, so that small clusters can still pair actors up.
	return mem == 0 || m.projectedBytes() <= (1+eps)*(mem+add)/n
}

// PlacementPolicy weighs what placement scores a server by. A server's
// score is
//
//	Activations·a/ā + Memory·b/b̄ + CPU·c/c̄
//
// over its activations a (with this registry's recent placements on it),
// its memory b (activation memory, with the recent placements at the
// server's mean size per activation) and its busy share c (wall time in
// invocations), each divided by the mean over the candidate servers (a
// term whose mean is zero counts zero); the lowest score wins. Dividing by
// the cluster's means makes the terms unitless, so the weights say how
// much each resource matters relative to the others whatever the scale.
type PlacementPolicy struct {
	Activations, Memory, CPU float64
	// Epsilon is the bounded-load slack ε: no server receives more than
	// ceil((1+ε)·mean) of one registry's placements within a list refresh.
	Epsilon float64
}

// DefaultPlacement weighs activations and memory equally and CPU half as
// much (a sampled figure, noisier), with ε = 0.25.
var DefaultPlacement = PlacementPolicy{Activations: 1, Memory: 1, CPU: 0.5, Epsilon: 0.25}

// Validate reports a policy placement cannot use. The zero policy is
// valid: it means DefaultPlacement.
func (p PlacementPolicy) Validate() error {
	for _, v := range []float64{p.Activations, p.Memory, p.CPU, p.Epsilon} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("registry: placement policy %+v: weights and epsilon must be finite and non-negative", p)
		}
	}
	if p != (PlacementPolicy{}) && p.Activations+p.Memory+p.CPU == 0 {
		return fmt.Errorf("registry: placement policy %+v: every weight is zero (leave the whole policy zero for the defaults)", p)
	}
	return nil
}

func (p PlacementPolicy) withDefaults() PlacementPolicy {
	if p == (PlacementPolicy{}) || p.Validate() != nil {
		return DefaultPlacement
	}
	return p
}

// loadMean accumulates the means the score divides by.
type loadMean struct{ acts, bytes, busy float64 }

func (l *loadMean) add(m Member) {
	l.acts += float64(m.Load.Activations + m.placed)
	l.bytes += m.projectedBytes()
	l.busy += float64(m.Load.BusyPPM)
}

func (l *loadMean) div(n int) {
	l.acts /= float64(n)
	l.bytes /= float64(n)
	l.busy /= float64(n)
}

// projectedBytes is the member's memory with its recent placements
// counted at its mean activation size (1 KiB if it reports none).
func (m Member) projectedBytes() float64 {
	return float64(m.Load.Bytes) + m.perActivation()*float64(m.placed)
}

// perActivation is the member's mean memory per activation (1 KiB if it
// reports none).
func (m Member) perActivation() float64 {
	if m.Load.Activations > 0 && m.Load.Bytes > 0 {
		return float64(m.Load.Bytes) / float64(m.Load.Activations)
	}
	return 1 << 10
}

func (p PlacementPolicy) score(m Member, mean loadMean) float64 {
	term := func(w, v, mean float64) float64 {
		if w == 0 || mean == 0 {
			return 0
		}
		return w * v / mean
	}
	return term(p.Activations, float64(m.Load.Activations+m.placed), mean.acts) +
		term(p.Memory, m.projectedBytes(), mean.bytes) +
		term(p.CPU, float64(m.Load.BusyPPM), mean.busy)
}

// Placement says where an actor lives.
type Placement struct {
	ServerID    string
	Incarnation int64
	Addr        string
	// Type is the actor's type as recorded in the store.
	Type string
	// Created reports that this call created the actor.
	Created bool
	// Hinted reports that this call placed the actor on the server its
	// released record hinted at (ReleaseTo).
	Hinted bool
}

// EnsureActivation returns the server that owns actor (ns, id), placing it
// on a live server first if it has no live owner. typ is the actor's type;
// it creates the actor if it does not exist, and must match its recorded
// type if it does (an empty typ accepts any existing type and creates
// nothing).
//
// A new owner is written only with compares proving that the actor record
// is unchanged since read, that the previous owner's server record is still
// the absent or other-incarnation one that was read, and that the chosen
// server's record is current.
func (r *Registry) EnsureActivation(ctx context.Context, ns, id, typ string) (Placement, error) {
	return r.EnsureActivationArgs(ctx, ns, id, typ, nil)
}

// EnsureActivationArgs is EnsureActivation that, if it creates the actor,
// stores args as its creation arguments in the commit that creates it
// (creation.go). If the actor exists, args are ignored: the first creation
// wins, and Placement.Created is false. Bounding args is the caller's job
// (nola.Limits.MaxCreationArgsBytes); the store's request limit is the
// last resort.
func (r *Registry) EnsureActivationArgs(ctx context.Context, ns, id, typ string, args []byte) (Placement, error) {
	return r.place(ctx, ns, id, typ, args, false)
}

// CreateActor is EnsureActivationArgs for an actor the caller expects not
// to exist yet (nola's Client.Create): it skips the read of the actor
// record on its first attempt and commits the placement that creating an
// absent actor takes — the very commit EnsureActivationArgs sends after
// reading the record absent. One store round trip instead of two per
// actor, and the commits of concurrent creations share etcd transactions
// through group commit (etcdkv), each with its own compares.
//
// Why skipping the read is safe: the read is not what makes placement
// safe. The commit is conditional on the actor record's mod revision
// being 0 — the key is absent at the commit's own revision — and on the
// chosen server's record, exactly as after a read that found it absent;
// the store evaluates those compares atomically with the writes, whatever
// was or was not read before (docs/proofs/single-activation.md, Lemma 3:
// placement writes only under compares). If the guess is wrong (the actor
// exists, is a tombstone, or the server record changed) the commit
// applies nothing and placement goes on as EnsureActivationArgs does,
// reading first; so does a first attempt that finds no server to choose
// (an existing actor needs none). In a batch of such commits, one whose actor exists fails
// its own compare and leaves the others' outcomes unchanged
// (TestCreateActorBatchWithConflict).
func (r *Registry) CreateActor(ctx context.Context, ns, id, typ string, args []byte) (Placement, error) {
	return r.place(ctx, ns, id, typ, args, typ != "")
}

// place is EnsureActivationArgs; guessAbsent skips the first read and
// assumes the actor record absent (CreateActor).
func (r *Registry) place(ctx context.Context, ns, id, typ string, args []byte, guessAbsent bool) (Placement, error) {
	key := r.keys.Actor(ns, id)
	for attempt := 0; attempt < 16; attempt++ {
		var (
			cur   kv.KeyValue // absent: mod revision 0
			found bool
			err   error
		)
		guess := guessAbsent && attempt == 0
		if !guess {
			if cur, found, err = r.store.Get(ctx, key, 0); err != nil {
				return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, err)
			}
		}
		var rec ActorRecord
		if found {
			if rec, err = decodeActor(cur.Value); err != nil {
				return Placement{}, err
			}
		}
		// A tombstone is a deleted actor: absent, except that a new life
		// continues its epochs and takes its generation (docs/deletion.md).
		created := !found || rec.Tombstone()
		if !created {
			if typ != "" && rec.Type != typ {
				return Placement{}, fmt.Errorf("registry: place %s/%s as %q: it is a %q: %w", ns, id, typ, rec.Type, ErrTypeMismatch)
			}
		} else {
			if typ == "" {
				return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, ErrActorNotFound)
			}
			rec.Type = typ
		}
		cmps := []kv.Compare{kv.ModRevEquals(key, cur.ModRev)}
		if guess && r.opts.Mutations.Has(mutation.SkipCreateCompare) {
			cmps = nil
		}
		if rec.Owner != "" {
			skey := r.keys.Server(rec.Owner)
			srv, ok, err := r.store.Get(ctx, skey, 0)
			if err != nil {
				return Placement{}, fmt.Errorf("registry: place %s/%s: read owner: %w", ns, id, err)
			}
			if ok {
				sr, err := decodeServer(rec.Owner, srv.Value)
				if err != nil {
					return Placement{}, err
				}
				if sr.Incarnation == rec.OwnerIncarnation {
					return Placement{ServerID: rec.Owner, Incarnation: sr.Incarnation, Addr: sr.Addr, Type: rec.Type}, nil
				}
			}
			// The owner is gone (or is a later incarnation, which owns
			// nothing it did not confirm): steal only if that is still so.
			cmps = append(cmps, kv.ModRevEquals(skey, srv.ModRev))
		}
		list, err := r.members(ctx)
		if err != nil {
			return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, err)
		}
		m, hinted, ok := r.choose(list, rec.Hint)
		if !ok {
			r.invalidateServers()
			if guess {
				// No server to create it on, but it may exist: an
				// existing actor needs no server (read it first).
				continue
			}
			return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, ErrNoServers)
		}
		cmps = append(cmps, kv.ValueEquals(r.keys.Server(m.Record.ID), m.record))
		// A new owner means a new epoch: epochs never repeat.
		next := ActorRecord{Type: rec.Type, Owner: m.Record.ID, OwnerIncarnation: m.Record.Incarnation, Epoch: r.nextEpoch(rec.Epoch), Generation: rec.Generation}
		ops := []kv.Op{kv.Put(key, next.encode(), kv.NoLease)}
		if created {
			// The creation records go with the record that creates the
			// actor (or its new life, over a tombstone): the compare on the
			// record's mod revision above makes this commit the only one
			// that creates it.
			ops = append(ops, r.creationOps(ns, id, args)...)
		}
		res, err := r.store.Commit(ctx, kv.Txn{Compares: cmps, Ops: ops})
		if err != nil {
			return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, err)
		}
		if res.Succeeded {
			r.notePlaced(m.Record.ID)
			return Placement{ServerID: m.Record.ID, Incarnation: m.Record.Incarnation, Addr: m.Record.Addr, Type: rec.Type, Created: created, Hinted: hinted}, nil
		}
		// Someone raced us, or the chosen server's record changed: look
		// again with a fresh server list. After a refused guess the
		// likely cause is that the actor exists: read it first, and
		// refresh the list only if the next attempt fails too.
		if !guess {
			r.invalidateServers()
		}
	}
	return Placement{}, fmt.Errorf("registry: place %s/%s: %w", ns, id, ErrContention)
}

// ActorInfo describes an actor as the registry records it.
type ActorInfo struct {
	Namespace, ID string
	Record        ActorRecord
	CreateRev     int64
}

// ListActors returns up to limit actors of namespace ns whose IDs are >=
// after (exclusive when after is non-empty), in ID order. Deleted actors
// (tombstones) are left out.
func (r *Registry) ListActors(ctx context.Context, ns, after string, limit int) ([]ActorInfo, bool, error) {
	begin, end := r.keys.Actors(ns)
	if after != "" {
		begin = append(r.keys.Actor(ns, after), 0)
	}
	var out []ActorInfo
	for rev := int64(0); ; {
		want := 0
		if limit > 0 {
			want = limit - len(out)
		}
		res, err := r.store.Range(ctx, kv.RangeRequest{Begin: begin, End: end, Limit: want, Rev: rev})
		if err != nil {
			return nil, false, fmt.Errorf("registry: list actors of %s: %w", ns, err)
		}
		rev = res.Rev // later pages at the same revision: one snapshot
		for _, e := range res.KVs {
			id, err := lastString(e.Key)
			if err != nil {
				return nil, false, err
			}
			rec, err := decodeActor(e.Value)
			if err != nil {
				return nil, false, err
			}
			if rec.Tombstone() {
				continue
			}
			out = append(out, ActorInfo{Namespace: ns, ID: id, Record: rec, CreateRev: e.CreateRev})
		}
		// Tombstones skipped leave room: read on until the page is full
		// or the range is done, so a page is never empty while More is.
		if !res.More || len(res.KVs) == 0 || (limit > 0 && len(out) >= limit) {
			if out == nil {
				out = []ActorInfo{}
			}
			return out, res.More, nil
		}
		begin = append(bytes.Clone(res.KVs[len(res.KVs)-1].Key), 0)
	}
}

// Actor returns the record of one actor; a deleted actor (a tombstone) is
// not found.
func (r *Registry) Actor(ctx context.Context, ns, id string) (ActorRecord, bool, error) {
	rec, found, err := r.actorRecord(ctx, ns, id)
	if err != nil || !found || rec.Tombstone() {
		return ActorRecord{}, false, err
	}
	return rec, true, nil
}

// actorRecord returns the stored record of an actor, tombstone or not.
func (r *Registry) actorRecord(ctx context.Context, ns, id string) (ActorRecord, bool, error) {
	e, found, err := r.store.Get(ctx, r.keys.Actor(ns, id), 0)
	if err != nil || !found {
		return ActorRecord{}, false, err
	}
	rec, err := decodeActor(e.Value)
	return rec, err == nil, err
}

// CachedServers is Servers through a short-lived cache (the one placement
// uses): for callers that only need some live server, such as stateless
// worker calls. The list may be a moment stale; ForgetServers drops it.
func (r *Registry) CachedServers(ctx context.Context) ([]Member, error) { return r.members(ctx) }

// ForgetServers drops the cached server list, so the next CachedServers
// reads the store (after a server answered that it is gone).
func (r *Registry) ForgetServers() { r.invalidateServers() }
