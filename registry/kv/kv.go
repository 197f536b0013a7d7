// Package kv defines the store nola's registry runs on: the intersection of
// what etcd and FoundationDB both do natively.
//
//   - ordered byte keys (built with package tuple);
//   - consistent point and range reads, at the latest or a given revision;
//   - a single, monotonically increasing revision per store;
//   - conditional commits: compares (value, version, create/mod revision —
//     on a key or on every key of a range) and a list of puts and deletes,
//     applied atomically or not at all;
//   - leases with a TTL, kept alive explicitly, to which keys are attached
//     and which delete those keys when they expire.
//
// General interactive transactions are deliberately absent: the registry
// only needs compare-and-swap, and each actor's KV has one writer.
package kv

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store is a strongly consistent, revisioned key-value store.
//
// Byte slices passed in are not retained (implementations copy them). Byte
// slices returned belong to the caller but may be shared with the store's
// own state in some implementations: treat them as read-only.
type Store interface {
	// Get reads one key at rev (0: the latest). A missing key is not an
	// error: found is false.
	Get(ctx context.Context, key []byte, rev int64) (kv KeyValue, found bool, err error)
	// Range reads the keys in [Begin, End) in key order.
	Range(ctx context.Context, r RangeRequest) (RangeResult, error)
	// Commit evaluates every compare at the latest revision; if all hold
	// it applies every op atomically at one new revision.
	Commit(ctx context.Context, t Txn) (CommitResult, error)
	// Grant creates a lease that expires ttl after its last keep-alive.
	Grant(ctx context.Context, ttl time.Duration) (LeaseID, error)
	// KeepAlive renews a lease once and returns its TTL. It fails with
	// ErrLeaseNotFound if the lease has expired or was revoked.
	KeepAlive(ctx context.Context, id LeaseID) (time.Duration, error)
	// Revoke ends a lease now, deleting its keys.
	Revoke(ctx context.Context, id LeaseID) error
	// Limits reports the store's request limits.
	Limits() Limits
	// Close releases the store's resources. It is safe to call more than
	// once.
	Close() error
}

// LeaseID identifies a lease. Zero means no lease.
type LeaseID int64

// NoLease is the zero LeaseID.
const NoLease LeaseID = 0

// KeyValue is one key at one revision.
type KeyValue struct {
	Key   []byte
	Value []byte
	// CreateRev is the revision that created the key (since its last
	// deletion); ModRev the revision of its latest change.
	CreateRev int64
	ModRev    int64
	// Version counts changes since creation: 1 after the first put.
	Version int64
	Lease   LeaseID
}

// RangeRequest selects keys in [Begin, End). A nil End reads just Begin.
type RangeRequest struct {
	Begin, End []byte
	// Limit caps the number of keys returned; 0 means no limit.
	Limit int
	// Rev reads at that revision; 0 means the latest.
	Rev int64
	// KeysOnly leaves Value empty, and Lease zero (as etcd does).
	KeysOnly bool
}

// RangeResult holds the keys read and the revision they were read at.
type RangeResult struct {
	KVs []KeyValue
	// More is true if Limit cut the result short.
	More bool
	// Rev is the revision the read observed.
	Rev int64
}

// Target says what a Compare looks at.
type Target uint8

const (
	// TargetValue compares the value bytes. On an absent key a value
	// compare is false, whatever the operator (as in etcd).
	TargetValue Target = iota + 1
	// TargetVersion compares the version; an absent key has version 0, so
	// Version == 0 tests for absence.
	TargetVersion
	// TargetCreateRev compares the creation revision (0 when absent).
	TargetCreateRev
	// TargetModRev compares the last modification revision (0 when absent).
	TargetModRev
)

// CmpOp is a Compare's operator.
type CmpOp uint8

const (
	Equal CmpOp = iota + 1
	NotEqual
	Less
	Greater
)

// Compare is one condition of a Txn. With End set it must hold for every key
// in [Key, End); for an empty range, it is evaluated against an absent key.
type Compare struct {
	Key    []byte
	End    []byte
	Target Target
	Op     CmpOp
	Value  []byte // for TargetValue
	Num    int64  // for the other targets
}

// ValueEquals holds when key exists with exactly value.
func ValueEquals(key, value []byte) Compare {
	return Compare{Key: key, Target: TargetValue, Op: Equal, Value: value}
}

// Absent holds when key does not exist.
func Absent(key []byte) Compare {
	return Compare{Key: key, Target: TargetVersion, Op: Equal, Num: 0}
}

// Exists holds when key exists.
func Exists(key []byte) Compare {
	return Compare{Key: key, Target: TargetVersion, Op: Greater, Num: 0}
}

// ModRevEquals holds when key was last changed at rev (0: absent).
func ModRevEquals(key []byte, rev int64) Compare {
	return Compare{Key: key, Target: TargetModRev, Op: Equal, Num: rev}
}

// OpKind is the kind of a write.
type OpKind uint8

const (
	OpPut OpKind = iota + 1
	OpDelete
)

// Op is one write of a Txn. A delete with End set deletes [Key, End).
type Op struct {
	Kind  OpKind
	Key   []byte
	End   []byte
	Value []byte
	Lease LeaseID
}

// Put writes value at key, attached to lease (NoLease for none).
func Put(key, value []byte, lease LeaseID) Op {
	return Op{Kind: OpPut, Key: key, Value: value, Lease: lease}
}

// Delete deletes key.
func Delete(key []byte) Op { return Op{Kind: OpDelete, Key: key} }

// DeleteRange deletes every key in [begin, end).
func DeleteRange(begin, end []byte) Op { return Op{Kind: OpDelete, Key: begin, End: end} }

// Txn is a conditional commit.
type Txn struct {
	Compares []Compare
	Ops      []Op
}

// CommitResult tells whether the compares held (and so the ops applied) and
// the store's revision after the commit.
type CommitResult struct {
	Succeeded bool
	Rev       int64
}

// Limits are the store's request limits. Callers check them before sending,
// so that an oversized request fails with a clear error and never reaches
// the store half-built.
type Limits struct {
	// MaxOpsPerTxn bounds the compares and the ops of one Txn, each.
	MaxOpsPerTxn int
	// MaxRequestBytes bounds the encoded size of one request.
	MaxRequestBytes int
}

// Errors. Implementations wrap them with context; test with errors.Is.
var (
	// ErrLeaseNotFound: the lease expired or was revoked.
	ErrLeaseNotFound = errors.New("kv: lease not found")
	// ErrCompacted: the requested revision is older than the history kept.
	ErrCompacted = errors.New("kv: revision compacted")
	// ErrFutureRev: the requested revision is newer than the store's.
	ErrFutureRev = errors.New("kv: revision in the future")
	// ErrTooLarge: the request exceeds Limits; nothing was applied.
	ErrTooLarge = errors.New("kv: request exceeds the store's limits")
	// ErrInvalid: a malformed request (empty key, bad range); nothing was
	// applied.
	ErrInvalid = errors.New("kv: invalid request")
	// ErrUnavailable: the store could not be reached or has no quorum;
	// a commit that fails with it was not applied.
	ErrUnavailable = errors.New("kv: store unavailable")
	// ErrIndeterminate: the request was sent but its outcome is unknown
	// (a commit may or may not have been applied).
	ErrIndeterminate = errors.New("kv: outcome unknown")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("kv: store closed")
)

// RequestSize estimates the encoded size of a Txn, the way the limits count
// it: every key, range end and value byte plus a small per-item overhead.
func RequestSize(t Txn) int {
	n := 0
	for _, c := range t.Compares {
		n += len(c.Key) + len(c.End) + len(c.Value) + 16
	}
	for _, o := range t.Ops {
		n += len(o.Key) + len(o.End) + len(o.Value) + 16
	}
	return n
}

// CheckLimits returns an ErrTooLarge-wrapping error if t exceeds l.
func CheckLimits(t Txn, l Limits) error {
	if l.MaxOpsPerTxn > 0 && (len(t.Ops) > l.MaxOpsPerTxn || len(t.Compares) > l.MaxOpsPerTxn) {
		return &LimitError{What: "operations in one commit", Got: max(len(t.Ops), len(t.Compares)), Limit: l.MaxOpsPerTxn}
	}
	if l.MaxRequestBytes > 0 {
		if n := RequestSize(t); n > l.MaxRequestBytes {
			return &LimitError{What: "bytes in one commit", Got: n, Limit: l.MaxRequestBytes}
		}
	}
	return nil
}

// LimitError says which limit a request exceeded. It matches ErrTooLarge.
type LimitError struct {
	What       string
	Got, Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("kv: %s: %d exceeds the limit of %d", e.What, e.Got, e.Limit)
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// DefaultLimits mirror etcd's defaults: 128 operations per transaction and
// 1.5 MiB per request.
func DefaultLimits() Limits { return Limits{MaxOpsPerTxn: 128, MaxRequestBytes: 1536 * 1024} }
