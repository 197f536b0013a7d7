// Package etcdkv implements kv.Store on etcd v3 (go.etcd.io/etcd/client/v3).
//
// Two ways to get one:
//
//   - StartEmbedded runs a single etcd member inside the process, with its
//     data in a directory (default ./nola-data/etcd) and loopback listeners:
//     the default for one machine.
//   - Open connects to an external cluster: endpoints, optional TLS files
//     and an optional user and password.
//
// Mapping onto etcd:
//
//   - Get and Range are linearizable etcd ranges, at the latest or a given
//     revision; Commit is one etcd Txn (compares, then puts and deletes) —
//     or, by default when commits arrive concurrently, a nested Txn of one
//     etcd Txn shared with them, with its own compares and outcome (group
//     commit, see group.go and docs/etcd.md);
//   - leases are etcd leases; Grant rounds the TTL up to whole seconds (and
//     etcd itself raises it to its minimum, 1.5 × the election timeout,
//     2s with the default settings); KeepAlive is exactly one keep-alive
//     round trip; Revoke deletes the attached keys at one revision.
//
// Errors wrap the kv sentinels, so that callers can branch on them:
//
//   - kv.ErrUnavailable only when etcd guarantees the request was not
//     applied: no leader (every request carries etcd's "require leader"
//     flag, so a member without a leader refuses before doing anything),
//     too many requests, database full, a raft proposal dropped, or a
//     transport failure before the request was handed to the connection
//     (tracked per request with a gRPC stats handler);
//   - kv.ErrIndeterminate when a write was sent and its outcome is unknown
//     (etcd's request timeouts, a connection cut after sending, the
//     caller's or the store's deadline passing mid-flight). Reads never
//     return it: a read that fails applied nothing;
//   - kv.ErrLeaseNotFound, kv.ErrCompacted, kv.ErrFutureRev, kv.ErrTooLarge
//     (checked locally with kv.CheckLimits before sending, and etcd's own
//     "request too large"/"too many operations" mapped too), kv.ErrInvalid,
//     kv.ErrClosed.
//
// Every request is bounded by Options.RequestTimeout unless the caller's
// context ends sooner: a store whose members are all unreachable fails
// requests after that long rather than hanging.
package etcdkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/nolaproject/nola/registry/kv"
)

// Options configure a Store, however it was started.
type Options struct {
	// Limits enforced before a commit is sent. Zero means etcd's defaults
	// (128 operations, 1.5 MiB) less LimitMargin bytes, so that a commit
	// that passes the local check also passes etcd's (which counts the
	// encoded request, slightly larger than kv.RequestSize).
	Limits kv.Limits
	// RequestTimeout bounds every request whose context has no earlier
	// deadline. Default 5s.
	RequestTimeout time.Duration
	// Prefix is prepended to every key, so that several stores (or other
	// applications) can share one etcd cluster. Keys returned have it
	// removed.
	Prefix string
	// Logger receives the etcd client's logs. Default: none.
	Logger *zap.Logger
	// NoGroupCommit turns group commit off. By default concurrent commits
	// are sent together, as nested transactions of one etcd transaction
	// (see group.go): fewer, larger requests when many actors commit at
	// once. Each commit keeps its own compares and outcome.
	NoGroupCommit bool
	// Maintenance, when set, keeps the database below its quota: it
	// compacts by bytes as well as revisions, defragments, and recovers
	// from etcd's NOSPACE alarm (see Maintenance). StartEmbedded sets it
	// unless told otherwise; for an external cluster it is opt-in, with
	// that cluster's quota.
	Maintenance *Maintenance
	// NoMaintenance turns the embedded store's maintenance off (tests that
	// need a full database).
	NoMaintenance bool
}

// LimitMargin is subtracted from etcd's request limit to account for the
// protobuf encoding of a transaction, which kv.RequestSize estimates.
const LimitMargin = 4096

// Default etcd request limits (etcd's own defaults).
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1536 * 1024
)

func (o Options) withDefaults() Options {
	if o.Limits == (kv.Limits{}) {
		o.Limits = kv.Limits{MaxOpsPerTxn: DefaultMaxTxnOps, MaxRequestBytes: DefaultMaxRequestBytes - LimitMargin}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// Store is a kv.Store on an etcd cluster. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	leases  etcdserverpb.LeaseClient
	kvc     etcdserverpb.KVClient // commits: see pbTxn
	opts    Options
	prefix  []byte
	closed  atomic.Bool
	once    sync.Once
	onClose func() error // runs after the client is closed (embedded member)
	err     error
	group   *batcher    // nil with Options.NoGroupCommit
	maint   *maintainer // nil without Options.Maintenance
}

var _ kv.Store = (*Store)(nil)

// sentKey marks a request's context with a flag that the stats handler sets
// once the request's message has been handed to a connection: from then on
// a failed write may have been applied.
type sentKey struct{}

type sentTracker struct{}

func (sentTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (sentTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutPayload); ok {
		if f, ok := ctx.Value(sentKey{}).(*atomic.Bool); ok {
			f.Store(true)
		}
	}
}

func (sentTracker) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (sentTracker) HandleConn(context.Context, stats.ConnStats)                       {}

// newStore wraps a client created with clientDialOptions.
func newStore(cli *clientv3.Client, opts Options, onClose func() error) *Store {
	s := &Store{
		cli:     cli,
		leases:  clientv3.RetryLeaseClient(cli),
		kvc:     clientv3.RetryKVClient(cli),
		opts:    opts,
		prefix:  []byte(opts.Prefix),
		onClose: onClose,
	}
	if !opts.NoGroupCommit {
		s.group = newBatcher(s)
	}
	if opts.Maintenance != nil && opts.Maintenance.QuotaBytes > 0 && !opts.NoMaintenance {
		s.maint = newMaintainer(s, *opts.Maintenance)
	}
	return s
}

// clientDialOptions are the gRPC options every Store's client needs.
func clientDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(sentTracker{})}
}

// Client returns the underlying etcd client (for tools and benchmarks).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Limits reports the limits commits are checked against.
func (s *Store) Limits() kv.Limits { return s.opts.Limits }

// Close closes the client (and stops the embedded member, if the store
// started one). It is safe to call more than once; later operations fail
// with kv.ErrClosed.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		if s.maint != nil {
			s.maint.close()
		}
		var errs []error
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("etcdkv: close client: %w", err))
		}
		if s.group != nil {
			s.group.close()
		}
		if s.onClose != nil {
			if err := s.onClose(); err != nil {
				errs = append(errs, err)
			}
		}
		s.err = errors.Join(errs...)
	})
	return s.err
}

// call is one request in flight.
type call struct {
	ctx    context.Context
	cancel context.CancelFunc
	sent   *atomic.Bool
	parent context.Context
}

func (s *Store) begin(ctx context.Context) (*call, error) {
	if s.closed.Load() {
		return nil, kv.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &call{parent: ctx, sent: new(atomic.Bool)}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > s.opts.RequestTimeout {
		ctx, c.cancel = context.WithTimeout(ctx, s.opts.RequestTimeout)
	} else {
		ctx, c.cancel = context.WithCancel(ctx)
	}
	ctx = clientv3.WithRequireLeader(ctx)
	c.ctx = context.WithValue(ctx, sentKey{}, c.sent)
	return c, nil
}

// fail maps an etcd or gRPC error onto the kv sentinels. write says whether
// the request could change the store (so that an unknown outcome matters).
func (s *Store) fail(c *call, what string, err error, write bool) error {
	if err == nil {
		return nil
	}
	eerr := rpctypes.Error(err)
	desc := rpctypes.ErrorDesc(err)
	sent := c.sent.Load()
	ambiguous := func(cause error) error {
		if write && sent {
			return fmt.Errorf("etcdkv: %s: %w (%w)", what, kv.ErrIndeterminate, cause)
		}
		return fmt.Errorf("etcdkv: %s: %w (%w)", what, kv.ErrUnavailable, cause)
	}
	switch {
	case s.closed.Load():
		if write && sent {
			return fmt.Errorf("etcdkv: %s: %w: %w", what, kv.ErrClosed, kv.ErrIndeterminate)
		}
		return fmt.Errorf("etcdkv: %s: %w", what, kv.ErrClosed)
	case errors.Is(eerr, rpctypes.ErrCompacted):
		return fmt.Errorf("etcdkv: %s: %w", what, kv.ErrCompacted)
	case errors.Is(eerr, rpctypes.ErrFutureRev):
		return fmt.Errorf("etcdkv: %s: %w", what, kv.ErrFutureRev)
	case errors.Is(eerr, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("etcdkv: %s: %w", what, kv.ErrLeaseNotFound)
	case errors.Is(eerr, rpctypes.ErrRequestTooLarge), errors.Is(eerr, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcdkv: %s: %w (etcd: %s)", what, kv.ErrTooLarge, desc)
	case errors.Is(eerr, rpctypes.ErrNoLeader), errors.Is(eerr, rpctypes.ErrTooManyRequests),
		errors.Is(eerr, rpctypes.ErrNoSpace), errors.Is(eerr, rpctypes.ErrNotCapable),
		strings.Contains(desc, "raft proposal dropped"):
		// Refused before anything was proposed.
		return fmt.Errorf("etcdkv: %s: %w (etcd: %s)", what, kv.ErrUnavailable, desc)
	case errors.Is(eerr, rpctypes.ErrEmptyKey), errors.Is(eerr, rpctypes.ErrDuplicateKey),
		errors.Is(eerr, rpctypes.ErrLeaseTTLTooLarge):
		return fmt.Errorf("etcdkv: %s: %w (etcd: %s)", what, kv.ErrInvalid, desc)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ambiguous(err)
	}
	var (
		code codes.Code
		msg  string
		ee   rpctypes.EtcdError
	)
	if errors.As(eerr, &ee) {
		code, msg = ee.Code(), ee.Error()
	} else if st, ok := status.FromError(err); ok {
		code, msg = st.Code(), st.Message()
	} else {
		return ambiguous(err)
	}
	switch code {
	case codes.ResourceExhausted:
		// The client's own send limit (etcd's quota and rate errors were
		// matched above).
		return fmt.Errorf("etcdkv: %s: %w (%s)", what, kv.ErrTooLarge, msg)
	case codes.InvalidArgument:
		return fmt.Errorf("etcdkv: %s: %w (etcd: %s)", what, kv.ErrInvalid, msg)
	case codes.DeadlineExceeded, codes.Canceled:
		cause := error(context.DeadlineExceeded)
		if code == codes.Canceled {
			cause = context.Canceled
		}
		if perr := c.parent.Err(); perr != nil {
			cause = perr
		}
		return ambiguous(cause)
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.Aborted:
		// Transport failures, etcd's request timeouts, a stopped member.
		return ambiguous(errors.New(msg))
	}
	return fmt.Errorf("etcdkv: %s: etcd: %s", what, msg)
}

func (s *Store) key(k []byte) string {
	if len(s.prefix) == 0 {
		return string(k)
	}
	b := make([]byte, 0, len(s.prefix)+len(k))
	return string(append(append(b, s.prefix...), k...))
}

// end returns the etcd range end for [begin, end): nil for a single key;
// for an empty range (end <= begin, which etcd would read as "single key"
// or "to the end of the keyspace"), begin itself, which etcd reads as empty.
func (s *Store) end(begin, end []byte) (string, bool) {
	if end == nil {
		return "", false
	}
	if bytes.Compare(begin, end) >= 0 {
		return s.key(begin), true
	}
	return s.key(end), true
}

func (s *Store) fromKV(e *mvccpb.KeyValue, keysOnly bool) kv.KeyValue {
	out := kv.KeyValue{
		Key:       e.Key[len(s.prefix):],
		CreateRev: e.CreateRevision,
		ModRev:    e.ModRevision,
		Version:   e.Version,
		Lease:     kv.LeaseID(e.Lease),
	}
	if !keysOnly {
		out.Value = e.Value
		if out.Value == nil {
			out.Value = []byte{}
		}
	}
	return out
}

func checkRev(what string, rev int64) error {
	if rev < 0 {
		return fmt.Errorf("etcdkv: %s at negative revision %d: %w", what, rev, kv.ErrInvalid)
	}
	return nil
}

// Get reads one key.
func (s *Store) Get(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	if len(key) == 0 {
		return kv.KeyValue{}, false, fmt.Errorf("etcdkv: get: empty key: %w", kv.ErrInvalid)
	}
	if err := checkRev("get", rev); err != nil {
		return kv.KeyValue{}, false, err
	}
	c, err := s.begin(ctx)
	if err != nil {
		return kv.KeyValue{}, false, fmt.Errorf("etcdkv: get: %w", err)
	}
	defer c.cancel()
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.cli.Get(c.ctx, s.key(key), opts...)
	if err != nil {
		return kv.KeyValue{}, false, s.fail(c, "get", err, false)
	}
	if len(resp.Kvs) == 0 {
		return kv.KeyValue{}, false, nil
	}
	return s.fromKV(resp.Kvs[0], false), true, nil
}

// Range reads keys in [Begin, End).
func (s *Store) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	if len(r.Begin) == 0 {
		return kv.RangeResult{}, fmt.Errorf("etcdkv: range: empty begin: %w", kv.ErrInvalid)
	}
	if err := checkRev("range", r.Rev); err != nil {
		return kv.RangeResult{}, err
	}
	c, err := s.begin(ctx)
	if err != nil {
		return kv.RangeResult{}, fmt.Errorf("etcdkv: range: %w", err)
	}
	defer c.cancel()
	var opts []clientv3.OpOption
	if end, ok := s.end(r.Begin, r.End); ok {
		opts = append(opts, clientv3.WithRange(end))
	}
	if r.Limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(r.Limit)))
	}
	if r.Rev > 0 {
		opts = append(opts, clientv3.WithRev(r.Rev))
	}
	if r.KeysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := s.cli.Get(c.ctx, s.key(r.Begin), opts...)
	if err != nil {
		return kv.RangeResult{}, s.fail(c, "range", err, false)
	}
	out := kv.RangeResult{KVs: make([]kv.KeyValue, len(resp.Kvs)), More: resp.More, Rev: resp.Header.Revision}
	for i, e := range resp.Kvs {
		out.KVs[i] = s.fromKV(e, r.KeysOnly)
	}
	return out, nil
}

var cmpOps = map[kv.CmpOp]string{kv.Equal: "=", kv.NotEqual: "!=", kv.Less: "<", kv.Greater: ">"}

func (s *Store) toCmp(c kv.Compare) (clientv3.Cmp, error) {
	if len(c.Key) == 0 {
		return clientv3.Cmp{}, fmt.Errorf("etcdkv: compare on an empty key: %w", kv.ErrInvalid)
	}
	op, ok := cmpOps[c.Op]
	if !ok {
		return clientv3.Cmp{}, fmt.Errorf("etcdkv: compare with unknown operator %d: %w", c.Op, kv.ErrInvalid)
	}
	k := s.key(c.Key)
	var cmp clientv3.Cmp
	switch c.Target {
	case kv.TargetValue:
		cmp = clientv3.Compare(clientv3.Value(k), op, string(c.Value))
	case kv.TargetVersion:
		cmp = clientv3.Compare(clientv3.Version(k), op, c.Num)
	case kv.TargetCreateRev:
		cmp = clientv3.Compare(clientv3.CreateRevision(k), op, c.Num)
	case kv.TargetModRev:
		cmp = clientv3.Compare(clientv3.ModRevision(k), op, c.Num)
	default:
		return clientv3.Cmp{}, fmt.Errorf("etcdkv: compare with unknown target %d: %w", c.Target, kv.ErrInvalid)
	}
	if end, ok := s.end(c.Key, c.End); ok {
		cmp = cmp.WithRange(end)
	}
	return cmp, nil
}

func (s *Store) toOp(o kv.Op) (clientv3.Op, bool, error) {
	if len(o.Key) == 0 {
		return clientv3.Op{}, false, fmt.Errorf("etcdkv: write to an empty key: %w", kv.ErrInvalid)
	}
	switch o.Kind {
	case kv.OpPut:
		if o.End != nil {
			return clientv3.Op{}, false, fmt.Errorf("etcdkv: put with a range end: %w", kv.ErrInvalid)
		}
		var opts []clientv3.OpOption
		if o.Lease != kv.NoLease {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(o.Lease)))
		}
		return clientv3.OpPut(s.key(o.Key), string(o.Value), opts...), true, nil
	case kv.OpDelete:
		if o.End == nil {
			return clientv3.OpDelete(s.key(o.Key)), true, nil
		}
		if bytes.Compare(o.Key, o.End) >= 0 {
			return clientv3.Op{}, false, nil // an empty range: nothing to do
		}
		return clientv3.OpDelete(s.key(o.Key), clientv3.WithRange(s.key(o.End))), true, nil
	}
	return clientv3.Op{}, false, fmt.Errorf("etcdkv: unknown op kind %d: %w", o.Kind, kv.ErrInvalid)
}

// Txn converts t into clientv3 compares and ops, for tools that build
// their own transactions with the clientv3 builder. Commits do not use it:
// they send the messages pbTxn builds, the same ones without the
// builder's copies.
func (s *Store) Txn(t kv.Txn) ([]clientv3.Cmp, []clientv3.Op, error) {
	cmps := make([]clientv3.Cmp, 0, len(t.Compares))
	for _, c := range t.Compares {
		cmp, err := s.toCmp(c)
		if err != nil {
			return nil, nil, err
		}
		cmps = append(cmps, cmp)
	}
	ops := make([]clientv3.Op, 0, len(t.Ops))
	for _, o := range t.Ops {
		op, ok, err := s.toOp(o)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			ops = append(ops, op)
		}
	}
	return cmps, ops, nil
}

var pbResults = map[kv.CmpOp]etcdserverpb.Compare_CompareResult{
	kv.Equal: etcdserverpb.Compare_EQUAL, kv.NotEqual: etcdserverpb.Compare_NOT_EQUAL,
	kv.Less: etcdserverpb.Compare_LESS, kv.Greater: etcdserverpb.Compare_GREATER,
}

// pbKey is s.key as a fresh byte slice (the request must not alias the
// caller's key: a commit whose caller gave up may still be marshalled
// by the batch it went out in).
func (s *Store) pbKey(k []byte) []byte {
	b := make([]byte, 0, len(s.prefix)+len(k))
	return append(append(b, s.prefix...), k...)
}

// pbTxn converts t into etcd's request messages: what Txn and the
// clientv3 transaction builder produce, built directly. The builder
// clones every compare with proto.Clone (reflection) when it is made,
// again when it is nested (OpTxn) and again when the request is built,
// and copies keys and values through strings; a creation commits once
// per actor, and that was about 20 of the ~70 allocations this process
// made for each (issue 16, item 5). The messages are the same on the
// wire (TestPBTxnMatchesClientBuilder).
func (s *Store) pbTxn(t kv.Txn) ([]*etcdserverpb.Compare, []*etcdserverpb.RequestOp, error) {
	cmps := make([]*etcdserverpb.Compare, len(t.Compares))
	for i, c := range t.Compares {
		if len(c.Key) == 0 {
			return nil, nil, fmt.Errorf("etcdkv: compare on an empty key: %w", kv.ErrInvalid)
		}
		res, ok := pbResults[c.Op]
		if !ok {
			return nil, nil, fmt.Errorf("etcdkv: compare with unknown operator %d: %w", c.Op, kv.ErrInvalid)
		}
		pc := &etcdserverpb.Compare{Key: s.pbKey(c.Key), Result: res}
		switch c.Target {
		case kv.TargetValue:
			pc.Target = etcdserverpb.Compare_VALUE
			pc.TargetUnion = &etcdserverpb.Compare_Value{Value: bytes.Clone(c.Value)}
		case kv.TargetVersion:
			pc.Target = etcdserverpb.Compare_VERSION
			pc.TargetUnion = &etcdserverpb.Compare_Version{Version: c.Num}
		case kv.TargetCreateRev:
			pc.Target = etcdserverpb.Compare_CREATE
			pc.TargetUnion = &etcdserverpb.Compare_CreateRevision{CreateRevision: c.Num}
		case kv.TargetModRev:
			pc.Target = etcdserverpb.Compare_MOD
			pc.TargetUnion = &etcdserverpb.Compare_ModRevision{ModRevision: c.Num}
		default:
			return nil, nil, fmt.Errorf("etcdkv: compare with unknown target %d: %w", c.Target, kv.ErrInvalid)
		}
		if end, ok := s.end(c.Key, c.End); ok {
			pc.RangeEnd = []byte(end)
		}
		cmps[i] = pc
	}
	ops := make([]*etcdserverpb.RequestOp, 0, len(t.Ops))
	for _, o := range t.Ops {
		if len(o.Key) == 0 {
			return nil, nil, fmt.Errorf("etcdkv: write to an empty key: %w", kv.ErrInvalid)
		}
		switch o.Kind {
		case kv.OpPut:
			if o.End != nil {
				return nil, nil, fmt.Errorf("etcdkv: put with a range end: %w", kv.ErrInvalid)
			}
			// Key and value in one allocation.
			kb := make([]byte, 0, len(s.prefix)+len(o.Key)+len(o.Value))
			kb = append(append(kb, s.prefix...), o.Key...)
			r := &etcdserverpb.PutRequest{Key: kb[:len(kb):len(kb)], Value: append(kb[len(kb):], o.Value...), Lease: int64(o.Lease)}
			ops = append(ops, &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: r}})
		case kv.OpDelete:
			r := &etcdserverpb.DeleteRangeRequest{Key: s.pbKey(o.Key)}
			if o.End != nil {
				if bytes.Compare(o.Key, o.End) >= 0 {
					continue // an empty range: nothing to do
				}
				r.RangeEnd = s.pbKey(o.End)
			}
			ops = append(ops, &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}})
		default:
			return nil, nil, fmt.Errorf("etcdkv: unknown op kind %d: %w", o.Kind, kv.ErrInvalid)
		}
	}
	return cmps, ops, nil
}

// txnCallOpts are the gRPC call options the clientv3 KV API sends a Txn
// with (its defaults: this package never sets the size options): wait for
// a ready connection, etcd's send limit, no receive limit. The retry
// interceptor's default policy (retry only what surely was not applied)
// is the one clientv3 uses for a transaction too.
var txnCallOpts = []grpc.CallOption{
	grpc.WaitForReady(true), grpc.MaxCallSendMsgSize(2 * 1024 * 1024), grpc.MaxCallRecvMsgSize(math.MaxInt32),
}

// sendTxn sends one etcd transaction under call c.
func (s *Store) sendTxn(c *call, r *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	resp, err := s.kvc.Txn(c.ctx, r, txnCallOpts...)
	if err != nil {
		return nil, clientv3.ContextError(c.ctx, err)
	}
	return resp, nil
}

// Commit applies t as one etcd transaction if its compares hold.
func (s *Store) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if err := kv.CheckLimits(t, s.opts.Limits); err != nil {
		return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", err)
	}
	cmps, ops, err := s.pbTxn(t)
	if err != nil {
		return kv.CommitResult{}, err
	}
	if s.maint != nil && len(ops) > 0 {
		// Counted before sending: a commit that fails wrote nothing,
		// which only makes the next compaction come early.
		if err := s.maint.wrote(ctx, kv.RequestSize(t)); err != nil {
			return kv.CommitResult{}, fmt.Errorf("%w (%w)", kv.ErrUnavailable, err)
		}
	}
	if s.group != nil {
		if s.closed.Load() {
			return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", kv.ErrClosed)
		}
		if s.group.claimIdle() {
			defer s.group.idleDone()
			return s.commitAlone(ctx, cmps, ops)
		}
		if p := batchable(t, cmps, ops, s.opts.Limits); p != nil {
			return s.group.commit(ctx, p)
		}
	}
	return s.commitAlone(ctx, cmps, ops)
}

// commitAlone sends one commit as its own etcd transaction.
func (s *Store) commitAlone(ctx context.Context, cmps []*etcdserverpb.Compare, ops []*etcdserverpb.RequestOp) (kv.CommitResult, error) {
	c, err := s.begin(ctx)
	if err != nil {
		return kv.CommitResult{}, fmt.Errorf("etcdkv: commit: %w", err)
	}
	defer c.cancel()
	resp, err := s.sendTxn(c, &etcdserverpb.TxnRequest{Compare: cmps, Success: ops})
	if err != nil {
		return kv.CommitResult{}, s.fail(c, "commit", err, true)
	}
	return kv.CommitResult{Succeeded: resp.Succeeded, Rev: resp.Header.Revision}, nil
}

// Grant creates a lease of ttl rounded up to whole seconds.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (kv.LeaseID, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("etcdkv: grant: TTL %v must be positive: %w", ttl, kv.ErrInvalid)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	c, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("etcdkv: grant: %w", err)
	}
	defer c.cancel()
	resp, err := s.cli.Grant(c.ctx, secs)
	if err != nil {
		return 0, s.fail(c, "grant", err, true)
	}
	return kv.LeaseID(resp.ID), nil
}

// KeepAlive renews a lease once: one request and one response on a
// keep-alive stream. It returns the lease's TTL.
func (s *Store) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	c, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("etcdkv: keep-alive: %w", err)
	}
	defer c.cancel() // ends the stream too
	what := fmt.Sprintf("keep-alive lease %d", id)
	stream, err := s.leases.LeaseKeepAlive(c.ctx)
	if err != nil {
		return 0, s.fail(c, what, err, true)
	}
	if err := stream.Send(&etcdserverpb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
		_, err = stream.Recv() // the stream's real error
		return 0, s.fail(c, what, err, true)
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, s.fail(c, what, err, true)
	}
	if resp.TTL <= 0 {
		return 0, fmt.Errorf("etcdkv: %s: %w", what, kv.ErrLeaseNotFound)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Revoke ends a lease now, deleting its keys.
func (s *Store) Revoke(ctx context.Context, id kv.LeaseID) error {
	c, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcdkv: revoke: %w", err)
	}
	defer c.cancel()
	if _, err := s.cli.Revoke(c.ctx, clientv3.LeaseID(id)); err != nil {
		return s.fail(c, fmt.Sprintf("revoke lease %d", id), err, true)
	}
	return nil
}

// Rev returns the store's current revision.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	c, err := s.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("etcdkv: revision: %w", err)
	}
	defer c.cancel()
	// A count-only read of one key: the header carries the revision.
	resp, err := s.cli.Get(c.ctx, s.key([]byte{0}), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail(c, "revision", err, false)
	}
	return resp.Header.Revision, nil
}

// Compact discards history before rev (reads below it then fail with
// kv.ErrCompacted) and waits until the compaction is applied.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	c, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("etcdkv: compact: %w", err)
	}
	defer c.cancel()
	if _, err := s.cli.Compact(c.ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return s.fail(c, fmt.Sprintf("compact at %d", rev), err, true)
	}
	return nil
}
