package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Maintenance keeps an etcd cluster's database below its quota.
//
// etcd refuses every write once its database file reaches the backend
// quota (the NOSPACE alarm), and the alarm stays until someone compacts,
// defragments and disarms it. Compaction by revision alone does not bound
// bytes: 10,000 revisions of 500 KB values are 5 GB. So the maintainer
// also compacts by bytes, defragments when the file is mostly free pages,
// and recovers from the alarm:
//
//   - compaction: every pass (every Interval, and as soon as the bytes
//     this store committed since the last compaction reach QuotaBytes/8)
//     compacts the history older than the previous pass, or than the last
//     KeepRevisions revisions if that keeps less. Commits of this store that would take the uncompacted
//     bytes past QuotaBytes/4 wait for that compaction (backpressure), so
//     one store's writes cannot outrun it. A periodic pass skips the
//     compaction while less than PaceFactor times the last compaction's
//     duration has passed since it ended (see PaceFactor);
//   - defragmentation: when the file exceeds DefragFraction of the quota
//     and at least a quarter of it is free pages, each member in turn is
//     defragmented (which blocks that member's requests meanwhile: seconds
//     for a database of a few hundred MiB);
//   - the NOSPACE alarm, at start-up (Recover) and in every pass: compact,
//     defragment, and disarm it when the file is back below
//     (1 − DefragFraction/2) of the quota. If the live data itself fills the
//     quota, nothing can be freed and Recover says so.
type Maintenance struct {
	// QuotaBytes is the cluster's backend quota (etcd's
	// --quota-backend-bytes; 2 GiB by default). Required: etcd does not
	// report it.
	QuotaBytes int64
	// Interval between periodic passes; default 10s.
	Interval time.Duration
	// DefragFraction of the quota in file size (with a quarter of it free)
	// triggers a defragmentation; default 0.5.
	DefragFraction float64
	// KeepRevisions bounds the history a compaction keeps, in revisions
	// (it also keeps no more than was written since the previous
	// compaction); default 1000.
	KeepRevisions int64
}

// PaceFactor spaces periodic compactions by their cost: after a
// compaction that took d, the next periodic pass compacts only once
// PaceFactor × d has passed since it ended, so compaction runs at most
// 1/(1+PaceFactor) of the time. etcd's compaction costs what the whole
// database holds, not what changed: it walks every key of its index
// (building a map of the revisions to keep, one entry per key) and then
// every revision in the backend from the first, in batches of 1,000 with
// a commit and a 10 ms pause after each. With a
// million actors (two million keys) one compaction took longer than the
// 10 s interval, so compaction ran back to back and took about a quarter
// of the process's CPU (issue 16, item 5). The byte trigger and the
// backpressure are not paced: the quota stays protected.
const PaceFactor = 4

func (m Maintenance) withDefaults() Maintenance {
	if m.Interval <= 0 {
		m.Interval = 10 * time.Second
	}
	if m.DefragFraction <= 0 || m.DefragFraction >= 1 {
		m.DefragFraction = 0.5
	}
	if m.KeepRevisions <= 0 {
		m.KeepRevisions = 100
	}
	return m
}

// MaintenanceStats counts the maintainer's work.
type MaintenanceStats struct {
	Passes, Compactions, Defrags, AlarmsDisarmed int64
	// Paced counts periodic passes that skipped the compaction (see
	// PaceFactor); LastCompaction is how long the last compaction took.
	Paced          int64
	LastCompaction time.Duration
	// LastDBSize and LastDBInUse are the largest member's figures at the
	// last pass.
	LastDBSize, LastDBInUse int64
	// Waits counts commits that waited for a compaction (backpressure).
	Waits int64
}

// ErrNoSpace wraps the error of a store whose database is full even after
// compaction and defragmentation: its live data needs a larger quota.
var ErrNoSpace = errors.New("etcdkv: etcd database is full")

// maintainer runs Maintenance for a Store: one goroutine, owned by the
// Store and stopped by its Close.
type maintainer struct {
	s   *Store
	cfg Maintenance
	log *zap.Logger

	trigger int64 // bytes since the last compaction that ask for one
	limit   int64 // bytes since the last compaction that make commits wait

	written atomic.Int64 // committed bytes since the last compaction
	prevRev int64        // revision at the previous compaction (passes only)

	// The last compaction's duration and end (passes only; a pass holds
	// passing), for PaceFactor. now is time.Now except in tests.
	lastTook time.Duration
	lastEnd  time.Time
	now      func() time.Time

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a compaction or a pass ends
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  bool
	started bool
	passing bool

	passes, compactions, defrags, disarmed, waits, paced atomic.Int64
	lastSize, lastInUse, lastTookNs                      atomic.Int64
}

// passKind says why a pass runs.
type passKind int

const (
	periodic passKind = iota // the Interval ticker: paced
	kicked                   // the byte trigger: not paced
	forced                   // start-up or Recover: compact and defragment whatever the thresholds say
)

func newMaintainer(s *Store, cfg Maintenance) *maintainer {
	cfg = cfg.withDefaults()
	m := &maintainer{
		s: s, cfg: cfg, log: s.opts.Logger,
		trigger: max(1, cfg.QuotaBytes/8),
		limit:   max(2, cfg.QuotaBytes/4),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		now:     time.Now,
	}
	m.cond = sync.NewCond(&m.mu)
	return m
}

func (m *maintainer) start() {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	go m.loop()
}

func (m *maintainer) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	started := m.started
	close(m.stop)
	m.cond.Broadcast()
	m.mu.Unlock()
	if started {
		<-m.done
	}
}

func (m *maintainer) loop() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		kind := periodic
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-m.kick:
			kind = kicked
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := m.pass(ctx, kind); err != nil && ctx.Err() == nil {
			m.log.Warn("etcd maintenance pass failed", zap.Error(err))
		}
		cancel()
	}
}

// wrote accounts n committed bytes and, past the limit, waits until a
// compaction has caught up (or ctx ends, or the maintainer stops).
func (m *maintainer) wrote(ctx context.Context, n int) error {
	w := m.written.Add(int64(n))
	if w < m.trigger {
		return nil
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
	if w < m.limit {
		return nil
	}
	m.waits.Add(1)
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.written.Load() >= m.limit && !m.closed && ctx.Err() == nil {
		m.cond.Wait()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcdkv: commit waited for a compaction: %w", err)
	}
	return nil
}

// memberStatus is one member's database figures.
type memberStatus struct {
	endpoint    string
	id          uint64
	size, inUse int64
	rev         int64
}

func (m *maintainer) statuses(ctx context.Context) ([]memberStatus, error) {
	var out []memberStatus
	var errs []error
	for _, ep := range m.s.cli.Endpoints() {
		st, err := m.s.cli.Status(ctx, ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("status of an endpoint: %w", err))
			continue
		}
		out = append(out, memberStatus{endpoint: ep, id: st.Header.MemberId, size: st.DbSize, inUse: st.DbSizeInUse, rev: st.Header.Revision})
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// paced reports whether a periodic pass must skip its compaction: less
// than PaceFactor times the last compaction's duration has passed since it
// ended.
func paced(now, lastEnd time.Time, lastTook time.Duration) bool {
	return lastTook > 0 && now.Sub(lastEnd) < PaceFactor*lastTook
}

// pass runs one maintenance pass of the given kind.
func (m *maintainer) pass(ctx context.Context, kind passKind) error {
	force := kind == forced
	m.mu.Lock()
	for m.passing && !m.closed {
		m.cond.Wait()
	}
	if m.closed {
		m.mu.Unlock()
		return errors.New("etcdkv: maintenance stopped")
	}
	m.passing = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.passing = false
		m.cond.Broadcast()
		m.mu.Unlock()
	}()
	m.passes.Add(1)

	alarms, err := m.s.cli.AlarmList(ctx)
	if err != nil {
		return fmt.Errorf("etcdkv: list alarms: %w", err)
	}
	nospace := false
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			nospace = true
		}
	}
	sts, err := m.statuses(ctx)
	if err != nil {
		return err
	}
	biggest := largest(sts)
	m.lastSize.Store(biggest.size)
	m.lastInUse.Store(biggest.inUse)

	// Every pass compacts (a periodic one unless paced): history is kept
	// for about one interval (or one byte trigger, or PaceFactor times a
	// compaction) whatever the write rate, so the database stays near its
	// live size. etcd's own revision compaction runs only every
	// five minutes: under steady small writes its history grew the file
	// from 17 to 151 MB in a 10-minute soak.
	at := biggest.rev
	if !force && !nospace {
		// Keep what was written since the previous pass or the last
		// KeepRevisions revisions, whichever is less: a read at a
		// revision returned a moment ago still works.
		at = max(m.prevRev, biggest.rev-m.cfg.KeepRevisions)
	}
	m.prevRev = biggest.rev
	if kind == periodic && !nospace && paced(m.now(), m.lastEnd, m.lastTook) {
		m.paced.Add(1)
	} else {
		start := m.now()
		if err := m.compact(ctx, at); err != nil {
			return err
		}
		m.lastEnd = m.now()
		m.lastTook = m.lastEnd.Sub(start)
		m.lastTookNs.Store(int64(m.lastTook))
	}
	if sts, err = m.statuses(ctx); err != nil {
		return err
	}
	for _, st := range sts {
		free := st.size - st.inUse
		fragmented := free > 0 && free >= st.size/4
		big := float64(st.size) > m.cfg.DefragFraction*float64(m.cfg.QuotaBytes)
		// Under the NOSPACE alarm every member is defragmented, whatever
		// its in-use figure says: right after a compaction that figure can
		// still count the pages the compaction freed (etcd updates it when
		// its backend next commits), and a member left at its full size
		// keeps the alarm's cause. (TestStartRecoversFromNoSpaceAlarm failed
		// about one run in six under load that way.)
		if nospace || (fragmented && (big || (force && free > 0))) {
			if _, err := m.s.cli.Defragment(ctx, st.endpoint); err != nil {
				return fmt.Errorf("etcdkv: defragment a member: %w", err)
			}
			m.defrags.Add(1)
		}
	}
	if !nospace {
		return nil
	}
	if sts, err = m.statuses(ctx); err != nil {
		return err
	}
	biggest = largest(sts)
	m.lastSize.Store(biggest.size)
	m.lastInUse.Store(biggest.inUse)
	room := (1 - m.cfg.DefragFraction/2) * float64(m.cfg.QuotaBytes)
	if float64(biggest.size) > room {
		return fmt.Errorf("%w: %d bytes of live data after compaction and defragmentation, quota %d bytes: raise the quota (--etcd-quota-bytes) or delete data",
			ErrNoSpace, biggest.size, m.cfg.QuotaBytes)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm != etcdserverpb.AlarmType_NOSPACE {
			continue
		}
		if _, err := m.s.cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return fmt.Errorf("etcdkv: disarm the NOSPACE alarm: %w", err)
		}
		m.disarmed.Add(1)
		m.log.Warn("etcd NOSPACE alarm disarmed after compaction and defragmentation",
			zap.Int64("db_size", biggest.size), zap.Int64("quota", m.cfg.QuotaBytes))
	}
	return nil
}

func largest(sts []memberStatus) memberStatus {
	var b memberStatus
	for _, st := range sts {
		if st.size >= b.size {
			b = st
		}
	}
	return b
}

// compact discards history before at and waits until it is applied; then
// commits blocked on the byte limit go on.
func (m *maintainer) compact(ctx context.Context, at int64) error {
	written := m.written.Load()
	if at > 0 {
		_, err := m.s.cli.Compact(ctx, at, clientv3.WithCompactPhysical())
		if err != nil && !errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted) {
			return fmt.Errorf("etcdkv: compact at revision %d: %w", at, err)
		}
		m.compactions.Add(1)
	}
	// Bytes committed since the status read are not covered by this
	// compaction: keep counting them.
	m.written.Add(-written)
	m.mu.Lock()
	m.cond.Broadcast()
	m.mu.Unlock()
	return nil
}

func (m *maintainer) stats() MaintenanceStats {
	return MaintenanceStats{
		Passes: m.passes.Load(), Compactions: m.compactions.Load(), Defrags: m.defrags.Load(),
		AlarmsDisarmed: m.disarmed.Load(), Waits: m.waits.Load(),
		Paced: m.paced.Load(), LastCompaction: time.Duration(m.lastTookNs.Load()),
		LastDBSize: m.lastSize.Load(), LastDBInUse: m.lastInUse.Load(),
	}
}

// MaintenanceStats reports the maintainer's work (zero when the store has
// no maintainer).
func (s *Store) MaintenanceStats() MaintenanceStats {
	if s.maint == nil {
		return MaintenanceStats{}
	}
	return s.maint.stats()
}

// Recover runs one maintenance pass now, compacting and defragmenting
// whatever the thresholds say, and disarms a NOSPACE alarm if that made
// room. It fails with ErrNoSpace if the live data fills the quota. A
// store without maintenance (Options.Maintenance nil) returns nil.
func (s *Store) Recover(ctx context.Context) error {
	if s.maint == nil {
		return nil
	}
	return s.maint.pass(ctx, forced)
}
