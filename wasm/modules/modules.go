// Package modules stores WASM modules in the registry's store: put (after
// validation), get, stat and list, per namespace.
//
// Modules are immutable. Putting the same bytes under an existing ID again
// succeeds (idempotent); putting different bytes fails with an
// *ExistsError (errors.Is(err, ErrExists)). A new version is a new ID.
// Delete removes a module no actor uses; its ID is not reused.
//
// # Layout
//
// Under the registry keyspace (registry.Keyspace.Sub), tuple-encoded:
//
//	(root, "mod", ns, id, "c", sha256, i) → chunk i of the module's bytes
//	(root, "mod", ns, id, "m")            → manifest: (format 1, size, sha256,
//	                                         chunks, chunk size, max pages)
//	(root, "mod", ns, id, "d")            → the ID's module was deleted (delete.go)
//
// A module is split into chunks no larger than the store's request limit
// allows (kv.Store.Limits; etcd's 1.5 MiB per request), at most 1 MiB each.
// Chunks are keyed by the module's hash, so writers of different bytes
// under one ID never touch each other's chunks, and writers of the same
// bytes write identical values. The manifest is written last, by a commit
// that requires it to be absent (and, when the store's per-commit limit
// allows, every chunk to be present); when everything fits in one request,
// chunks and manifest go in that one commit. A reader therefore never finds
// a manifest whose chunks are missing, and it verifies size and hash after
// reassembly anyway. A writer that loses the race to a different module
// deletes its own chunks; a writer that crashes mid-way leaves chunks
// without a manifest, which a retry of the same bytes reuses.
//
// # Quotas
//
//	(root, "modq", ns) → usage: (format 1, bytes, modules)
//
// Each namespace may hold at most Quota.MaxBytes of modules and
// Quota.MaxModules of them, so that one tenant cannot fill the store
// (etcd refuses every write, of every namespace, once its database is
// full). Put checks the usage record before writing any chunk, and the
// commit that writes the manifest also compares the usage record's
// revision and writes the new usage: the quota holds atomically with the
// write, whatever the concurrency. A Put that loses that race re-reads the
// usage and tries again. A namespace whose modules predate quotas has no
// usage record; the first Put computes it from the manifests.
package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt"
)

// Errors; test with errors.Is.
var (
	// ErrNotFound: no module with that ID in the namespace.
	ErrNotFound = errors.New("modules: module not found")
	// ErrExists: a module with different bytes has that ID.
	ErrExists = errors.New("modules: a different module exists under this ID")
	// ErrInvalid: the module failed validation (see Validate).
	ErrInvalid = errors.New("modules: invalid module")
	// ErrTooLarge: the module exceeds the size limit.
	ErrTooLarge = errors.New("modules: module too large")
	// ErrCorrupt: the stored chunks do not match the manifest.
	ErrCorrupt = errors.New("modules: stored module is corrupt")
	// ErrQuota: the namespace's module quota is used up. A *QuotaError
	// also matches ErrTooLarge.
	ErrQuota = errors.New("modules: namespace module quota exceeded")
)

// QuotaError reports which quota of a namespace a Put would exceed.
type QuotaError struct {
	Namespace string
	// What is "bytes" or "modules"; Used, Adding and Limit are in its unit.
	What                string
	Used, Adding, Limit int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("modules: namespace %q quota: %d %s stored + %d would exceed the limit of %d; ask the operator to raise the namespace quota (nola serve --ns-module-bytes, --ns-modules)",
		e.Namespace, e.Used, e.What, e.Adding, e.Limit)
}

// Is makes errors.Is(err, ErrQuota) and errors.Is(err, ErrTooLarge) hold.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota || target == ErrTooLarge }

// Quota bounds what one namespace may store. Zero fields take defaults;
// a negative field means no limit.
type Quota struct {
	// MaxBytes bounds the sum of the namespace's module sizes; default
	// 256 MiB.
	MaxBytes int64
	// MaxModules bounds how many modules it holds; default 256.
	MaxModules int64
}

// Default quotas.
const (
	DefaultQuotaBytes   = 256 << 20
	DefaultQuotaModules = 256
)

func (q Quota) withDefaults() Quota {
	if q.MaxBytes == 0 {
		q.MaxBytes = DefaultQuotaBytes
	}
	if q.MaxModules == 0 {
		q.MaxModules = DefaultQuotaModules
	}
	return q
}

// Usage is what a namespace's modules use of its quota.
type Usage struct {
	Bytes, Modules int64
}

// ExistsError reports that a different module holds the ID.
type ExistsError struct {
	Namespace, ID string
	// Existing is the stored module's manifest.
	Existing Info
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("modules: %s/%s already holds a different module (sha256 %x, %d bytes); modules are immutable, use a new ID",
		e.Namespace, e.ID, e.Existing.Hash[:8], e.Existing.Size)
}

// Is makes errors.Is(err, ErrExists) hold.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// Options are stored with a module and apply to every actor of it.
type Options struct {
	// MaxMemoryPages caps each instance's linear memory, in 64 KiB pages.
	// Zero means the host's cap; a value can only lower it.
	MaxMemoryPages uint32
}

// Info describes a stored module: its manifest.
type Info struct {
	Namespace, ID string
	Size          int
	Hash          [32]byte // SHA-256 of the bytes
	Chunks        int
	ChunkBytes    int
	Options       Options
	// Rev is the store revision at which the manifest was written.
	Rev int64
}

// Module is a stored module with its bytes.
type Module struct {
	Info
	Bytes []byte
}

// Config configures a Store. Zero fields take defaults.
type Config struct {
	// Root is the registry keyspace root; default "nola" (the registry's).
	Root string
	// Limits bound what Put accepts (see Validate).
	Limits Limits
	// ChunkBytes overrides the chunk size (tests). Default: 1 MiB, or less
	// if the store's request limit needs it.
	ChunkBytes int
	// MaxConcurrentCompiles bounds the validations (Put) and
	// compilations (Store.Compile) that run at once; default 2. One
	// compilation allocates up to ~70 bytes per byte of module, plus
	// ~200 MiB for its worst function (see Validate).
	MaxConcurrentCompiles int
	// Runtime provides the semaphore behind MaxConcurrentCompiles
	// (default rt.NewReal(); compilation never yields to the runtime, so
	// a simulator's tasks never contend for it).
	Runtime rt.Runtime
	// Quota bounds each namespace's modules.
	Quota Quota
}

// Store is the module store. It is safe for concurrent use.
type Store struct {
	kv       kv.Store
	keys     registry.Keyspace
	limits   Limits
	quota    Quota
	chunk    int
	compiles rt.Sema
}

// New returns a module store over store.
func New(store kv.Store, cfg Config) *Store {
	if cfg.Root == "" {
		cfg.Root = "nola"
	}
	if cfg.Runtime == nil {
		cfg.Runtime = rt.NewReal()
	}
	if cfg.MaxConcurrentCompiles <= 0 {
		cfg.MaxConcurrentCompiles = 2
	}
	s := &Store{kv: store, keys: registry.NewKeyspace(cfg.Root), limits: cfg.Limits.withDefaults(), quota: cfg.Quota.withDefaults(),
		compiles: cfg.Runtime.NewSema(cfg.MaxConcurrentCompiles)}
	s.chunk = 1 << 20
	if l := store.Limits(); l.MaxRequestBytes > 0 {
		s.chunk = min(s.chunk, l.MaxRequestBytes-min(requestOverhead, l.MaxRequestBytes/4))
	}
	if cfg.ChunkBytes > 0 {
		s.chunk = min(s.chunk, cfg.ChunkBytes)
	}
	if s.chunk < 1024 {
		s.chunk = 1024
	}
	return s
}

// requestOverhead is left free in every commit for keys and compares.
const requestOverhead = 8 << 10

// Limits returns the limits Put enforces.
func (s *Store) Limits() Limits { return s.limits }

// Quota returns the per-namespace quota Put enforces.
func (s *Store) Quota() Quota { return s.quota }

func (s *Store) usageKey(ns string) []byte { return s.keys.Sub("modq", ns) }

func (s *Store) manifestKey(ns, id string) []byte { return s.keys.Sub("mod", ns, id, "m") }

func (s *Store) chunkPrefix(ns, id string, hash []byte) []byte {
	return s.keys.Sub("mod", ns, id, "c", hash)
}

func chunkKey(prefix []byte, i int) []byte { return tuple.AppendInt(bytes.Clone(prefix), int64(i)) }

// CheckName validates a namespace or module ID.
func CheckName(what, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(v) > 512:
		return fmt.Errorf("%w: %s of %d bytes exceeds 512", ErrInvalid, what, len(v))
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	return nil
}

// Put validates bin and stores it as module id of namespace ns. It returns
// the manifest. Putting identical bytes again returns the existing
// manifest; different bytes fail with *ExistsError.
func (s *Store) Put(ctx context.Context, ns, id string, bin []byte, opts Options) (Info, error) {
	if err := CheckName("namespace", ns); err != nil {
		return Info{}, err
	}
	if err := CheckName("module ID", id); err != nil {
		return Info{}, err
	}
	hash := sha256.Sum256(bin)
	if _, deleted, err := s.kv.Get(ctx, s.deletedKey(ns, id), 0); err != nil {
		return Info{}, fmt.Errorf("modules: put %s/%s: %w", ns, id, err)
	} else if deleted {
		return Info{}, deletedError(ns, id)
	}
	// A module that is already there needs no validation.
	if info, err := s.Stat(ctx, ns, id); err == nil {
		return s.same(ns, id, info, hash, opts)
	} else if !errors.Is(err, ErrNotFound) {
		return Info{}, err
	}
	if err := s.compiles.Acquire(ctx); err != nil {
		return Info{}, fmt.Errorf("modules: put %s/%s: waiting to validate: %w", ns, id, err)
	}
	err := Validate(ctx, bin, opts, s.limits)
	s.compiles.Release()
	if err != nil {
		return Info{}, err
	}

	info := Info{Namespace: ns, ID: id, Size: len(bin), Hash: hash, ChunkBytes: s.chunk, Options: opts}
	info.Chunks = (len(bin) + s.chunk - 1) / s.chunk
	prefix := s.chunkPrefix(ns, id, hash[:])
	var chunkOps []kv.Op
	for i := 0; i < info.Chunks; i++ {
		end := min(len(bin), (i+1)*s.chunk)
		chunkOps = append(chunkOps, kv.Put(chunkKey(prefix, i), bin[i*s.chunk:end], kv.NoLease))
	}
	// Each attempt re-reads the usage; an attempt fails only when another
	// Put of this namespace committed meanwhile, so a few suffice unless
	// uploads are relentless.
	const attempts = 16
	wrote := false // chunks of this Put may be in the store
	for range attempts {
		done, out, err := s.tryPut(ctx, info, chunkOps, &wrote)
		if wrote && errors.Is(err, ErrQuota) {
			// An earlier attempt wrote chunks, then lost the usage race
			// and now finds the quota used up: remove them (uncounted
			// chunks would be a way around the quota) — unless a
			// manifest of this ID appeared, which may need them.
			s.deleteOrphanChunks(ctx, s.manifestKey(ns, id), prefix)
		}
		if done || err != nil {
			return out, err
		}
	}
	return Info{}, fmt.Errorf("modules: put %s/%s: %d attempts lost to concurrent uploads in the namespace: %w",
		ns, id, attempts, kv.ErrUnavailable)
}

// tryPut makes one attempt at storing a module: check the quota, write the
// chunks, then the manifest and the new usage in one commit that requires
// the manifest absent and the usage unchanged. done is false when the
// usage changed meanwhile (try again).
func (s *Store) tryPut(ctx context.Context, info Info, chunkOps []kv.Op, wrote *bool) (done bool, _ Info, _ error) {
	ns, id := info.Namespace, info.ID
	mkey := s.manifestKey(ns, id)
	absent := kv.Absent(mkey)
	// A delete of the ID meanwhile leaves its marker: never reuse the ID.
	guards := []kv.Compare{absent, kv.Absent(s.deletedKey(ns, id))}
	final := []kv.Op{kv.Put(mkey, encodeManifest(info), kv.NoLease)}
	// With no limit at all (both quota fields negative) no usage is kept:
	// uploads in different namespaces' orders then write the same
	// transactions, which the simulator replays.
	if s.quota.MaxBytes >= 0 || s.quota.MaxModules >= 0 {
		use, useRev, err := s.usage(ctx, ns)
		if err != nil {
			return false, Info{}, err
		}
		if err := s.checkQuota(ns, use, int64(info.Size)); err != nil {
			return false, Info{}, err
		}
		next := Usage{Bytes: use.Bytes + int64(info.Size), Modules: use.Modules + 1}
		guards = append(guards, kv.ModRevEquals(s.usageKey(ns), useRev))
		final = append(final, kv.Put(s.usageKey(ns), encodeUsage(next), kv.NoLease))
	}
	limits := s.kv.Limits()

	all := kv.Txn{Compares: guards, Ops: append(append([]kv.Op(nil), chunkOps...), final...)}
	var (
		res kv.CommitResult
		err error
	)
	if kv.CheckLimits(all, limits) == nil {
		res, err = s.kv.Commit(ctx, all)
	} else {
		*wrote = true
		res, err = s.putChunked(ctx, chunkOps, absent, guards, final, limits)
	}
	if err != nil {
		return false, Info{}, fmt.Errorf("modules: put %s/%s: %w", ns, id, err)
	}
	if res.Succeeded {
		info.Rev = res.Rev
		return true, info, nil
	}
	existing, err := s.Stat(ctx, ns, id)
	if errors.Is(err, ErrNotFound) {
		if _, deleted, derr := s.kv.Get(ctx, s.deletedKey(ns, id), 0); derr == nil && deleted {
			if *wrote {
				s.deleteChunks(ctx, s.chunkPrefix(ns, id, info.Hash[:]))
			}
			return false, Info{}, deletedError(ns, id)
		}
		return false, Info{}, nil // the usage changed: try again
	}
	if err != nil {
		return false, Info{}, err
	}
	// Someone else stored a module under this ID first.
	if existing.Hash != info.Hash && *wrote {
		s.deleteChunks(ctx, s.chunkPrefix(ns, id, info.Hash[:]))
	}
	out, err := s.same(ns, id, existing, info.Hash, info.Options)
	return true, out, err
}

// checkQuota says whether adding a module of size bytes to a namespace
// using use stays within the quota.
func (s *Store) checkQuota(ns string, use Usage, size int64) error {
	q := s.quota
	if q.MaxModules >= 0 && use.Modules+1 > q.MaxModules {
		return &QuotaError{Namespace: ns, What: "modules", Used: use.Modules, Adding: 1, Limit: q.MaxModules}
	}
	if q.MaxBytes >= 0 && use.Bytes+size > q.MaxBytes {
		return &QuotaError{Namespace: ns, What: "bytes", Used: use.Bytes, Adding: size, Limit: q.MaxBytes}
	}
	return nil
}

// Usage returns what a namespace's modules use of its quota.
func (s *Store) Usage(ctx context.Context, ns string) (Usage, error) {
	u, _, err := s.usage(ctx, ns)
	return u, err
}

// usage reads a namespace's usage record and its revision (0: absent, in
// which case the usage is computed from the manifests).
func (s *Store) usage(ctx context.Context, ns string) (Usage, int64, error) {
	e, found, err := s.kv.Get(ctx, s.usageKey(ns), 0)
	if err != nil {
		return Usage{}, 0, fmt.Errorf("modules: read the usage of namespace %s: %w", ns, err)
	}
	if found {
		u, err := decodeUsage(e.Value)
		if err != nil {
			return Usage{}, 0, fmt.Errorf("%w: usage record of namespace %s: %v", ErrCorrupt, ns, err)
		}
		return u, e.ModRev, nil
	}
	list, err := s.List(ctx, ns)
	if err != nil {
		return Usage{}, 0, err
	}
	var u Usage
	for _, i := range list {
		u.Bytes += int64(i.Size)
		u.Modules++
	}
	return u, 0, nil
}

const usageFormat = 1

func encodeUsage(u Usage) []byte {
	return tuple.Tuple{int64(usageFormat), u.Bytes, u.Modules}.Pack()
}

func decodeUsage(b []byte) (Usage, error) {
	t, err := tuple.Unpack(b)
	if err != nil {
		return Usage{}, err
	}
	if len(t) != 3 {
		return Usage{}, fmt.Errorf("%d elements", len(t))
	}
	var n [3]int64
	for i := range n {
		v, ok := t[i].(int64)
		if !ok {
			return Usage{}, fmt.Errorf("element %d is %T", i, t[i])
		}
		n[i] = v
	}
	if n[0] != usageFormat || n[1] < 0 || n[2] < 0 {
		return Usage{}, errors.New("bad fields")
	}
	return Usage{Bytes: n[1], Modules: n[2]}, nil
}

// same compares a stored manifest with a put's bytes and options.
func (s *Store) same(ns, id string, existing Info, hash [32]byte, opts Options) (Info, error) {
	if existing.Hash != hash || existing.Options != opts {
		return Info{}, &ExistsError{Namespace: ns, ID: id, Existing: existing}
	}
	return existing, nil
}

// putChunked writes the chunks in as many commits as the store's limits
// need (each requiring the manifest absent), then the final ops under
// guards (and, when the store's per-commit limit allows, every chunk
// present).
func (s *Store) putChunked(ctx context.Context, chunkOps []kv.Op, absent kv.Compare, guards []kv.Compare, finalOps []kv.Op, limits kv.Limits) (kv.CommitResult, error) {
	var batch []kv.Op
	flush := func() (bool, error) {
		if len(batch) == 0 {
			return true, nil
		}
		res, err := s.kv.Commit(ctx, kv.Txn{Compares: []kv.Compare{absent}, Ops: batch})
		batch = nil
		return err == nil && res.Succeeded, err
	}
	for _, op := range chunkOps {
		next := kv.Txn{Compares: []kv.Compare{absent}, Ops: append(batch, op)}
		if len(batch) > 0 && kv.CheckLimits(next, limits) != nil {
			if ok, err := flush(); !ok || err != nil {
				return kv.CommitResult{}, err
			}
		}
		batch = append(batch, op)
	}
	if ok, err := flush(); !ok || err != nil {
		return kv.CommitResult{}, err
	}
	final := kv.Txn{Compares: append([]kv.Compare(nil), guards...), Ops: finalOps}
	if limits.MaxOpsPerTxn == 0 || len(chunkOps)+len(guards) <= limits.MaxOpsPerTxn {
		for _, op := range chunkOps {
			final.Compares = append(final.Compares, kv.Compare{Key: op.Key, Target: kv.TargetVersion, Op: kv.Greater, Num: 0})
		}
	}
	return s.kv.Commit(ctx, final)
}

// deleteOrphanChunks removes chunks under prefix if no manifest holds the
// ID (atomically: a concurrent Put of the same bytes whose manifest lands
// first keeps them; one whose manifest lands later fails its compare on the
// chunks and writes them again). Best effort.
func (s *Store) deleteOrphanChunks(ctx context.Context, mkey, prefix []byte) {
	_, _ = s.kv.Commit(ctx, kv.Txn{Compares: []kv.Compare{kv.Absent(mkey)}, Ops: []kv.Op{kv.DeleteRange(tuple.ChildRange(prefix))}})
}

// deleteChunks removes the chunks of a module that lost the race for its
// ID. Best effort: leftovers are harmless.
func (s *Store) deleteChunks(ctx context.Context, prefix []byte) {
	_, _ = s.kv.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.DeleteRange(tuple.ChildRange(prefix))}})
}

// Stat returns a module's manifest.
func (s *Store) Stat(ctx context.Context, ns, id string) (Info, error) {
	kvp, found, err := s.kv.Get(ctx, s.manifestKey(ns, id), 0)
	if err != nil {
		return Info{}, fmt.Errorf("modules: stat %s/%s: %w", ns, id, err)
	}
	if !found {
		return Info{}, fmt.Errorf("%w: %s/%s", ErrNotFound, ns, id)
	}
	info, err := decodeManifest(kvp.Value)
	if err != nil {
		return Info{}, fmt.Errorf("%w: manifest of %s/%s: %v", ErrCorrupt, ns, id, err)
	}
	info.Namespace, info.ID, info.Rev = ns, id, kvp.ModRev
	return info, nil
}

// Get returns a module and its bytes, verified against the manifest.
func (s *Store) Get(ctx context.Context, ns, id string) (*Module, error) {
	info, err := s.Stat(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, info.Size))
	// A few chunks per request, so that no response is huge.
	if err := s.copyChunks(ctx, info, buf, 4<<20); err != nil {
		return nil, err
	}
	return &Module{Info: info, Bytes: buf.Bytes()}, nil
}

// Stream writes a module's bytes to w as it reads them, a chunk at a time:
// a download holds about one chunk, not the module. start, if non-nil, is
// called with the manifest before the first byte (for a response's
// headers). The bytes are verified against the manifest as they pass, so
// an ErrCorrupt may come after some were written: the caller must then
// discard what w received (a response: cut it short).
func (s *Store) Stream(ctx context.Context, ns, id string, start func(Info), w io.Writer) error {
	info, err := s.Stat(ctx, ns, id)
	if err != nil {
		return err
	}
	if start != nil {
		start(info)
	}
	return s.copyChunks(ctx, info, w, info.ChunkBytes)
}

// copyChunks writes the chunks of info's module to w in order, reading
// about batchBytes per store request, and checks size and hash at the end.
func (s *Store) copyChunks(ctx context.Context, info Info, w io.Writer, batchBytes int) error {
	ns, id := info.Namespace, info.ID
	prefix := s.chunkPrefix(ns, id, info.Hash[:])
	per := max(1, batchBytes/max(1, info.ChunkBytes))
	_, end := tuple.ChildRange(prefix)
	h := sha256.New()
	size := 0
	for next := 0; next < info.Chunks; {
		res, err := s.kv.Range(ctx, kv.RangeRequest{Begin: chunkKey(prefix, next), End: end, Limit: per})
		if err != nil {
			return fmt.Errorf("modules: get %s/%s: %w", ns, id, err)
		}
		if len(res.KVs) == 0 {
			return fmt.Errorf("%w: %s/%s: chunk %d of %d missing", ErrCorrupt, ns, id, next, info.Chunks)
		}
		for _, c := range res.KVs {
			if !bytes.Equal(c.Key, chunkKey(prefix, next)) {
				return fmt.Errorf("%w: %s/%s: chunk %d of %d missing", ErrCorrupt, ns, id, next, info.Chunks)
			}
			if size += len(c.Value); size > info.Size {
				return fmt.Errorf("%w: %s/%s: chunks exceed the manifest's %d bytes", ErrCorrupt, ns, id, info.Size)
			}
			h.Write(c.Value)
			if _, err := w.Write(c.Value); err != nil {
				return fmt.Errorf("modules: get %s/%s: writing: %w", ns, id, err)
			}
			next++
			if next == info.Chunks {
				break
			}
		}
	}
	if size != info.Size || !bytes.Equal(h.Sum(nil), info.Hash[:]) {
		return fmt.Errorf("%w: %s/%s: reassembled %d bytes do not match the manifest (%d bytes)", ErrCorrupt, ns, id, size, info.Size)
	}
	return nil
}

// List returns the manifests of every module of a namespace, by ID.
func (s *Store) List(ctx context.Context, ns string) ([]Info, error) {
	prefix := s.keys.Sub("mod", ns)
	begin, end := tuple.ChildRange(prefix)
	res, err := s.kv.Range(ctx, kv.RangeRequest{Begin: begin, End: end, KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("modules: list %s: %w", ns, err)
	}
	var out []Info
	for _, k := range res.KVs {
		t, err := tuple.Unpack(k.Key[len(prefix):])
		if err != nil || len(t) != 2 || t[1] != "m" {
			continue // a chunk, or a foreign key
		}
		id, ok := t[0].(string)
		if !ok {
			continue
		}
		info, err := s.Stat(ctx, ns, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

const manifestFormat = 1

func encodeManifest(i Info) []byte {
	return tuple.Tuple{int64(manifestFormat), int64(i.Size), i.Hash[:], int64(i.Chunks), int64(i.ChunkBytes), int64(i.Options.MaxMemoryPages)}.Pack()
}

func decodeManifest(b []byte) (Info, error) {
	t, err := tuple.Unpack(b)
	if err != nil {
		return Info{}, err
	}
	if len(t) != 6 {
		return Info{}, fmt.Errorf("%d elements", len(t))
	}
	var n [6]int64
	for _, i := range []int{0, 1, 3, 4, 5} {
		v, ok := t[i].(int64)
		if !ok {
			return Info{}, fmt.Errorf("element %d is %T", i, t[i])
		}
		n[i] = v
	}
	hash, ok := t[2].([]byte)
	if n[0] != manifestFormat || !ok || len(hash) != 32 || n[1] < 0 || n[3] < 0 || n[4] <= 0 || n[5] < 0 || n[5] > 65536 {
		return Info{}, errors.New("bad fields")
	}
	if (n[1]+n[4]-1)/n[4] != n[3] {
		return Info{}, errors.New("chunk count does not match the size")
	}
	info := Info{Size: int(n[1]), Chunks: int(n[3]), ChunkBytes: int(n[4]), Options: Options{MaxMemoryPages: uint32(n[5])}}
	copy(info.Hash[:], hash)
	return info, nil
}
