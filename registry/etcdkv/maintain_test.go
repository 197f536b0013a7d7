package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
)

// A small quota, so that a few hundred large writes fill it.
const smallQuota = 64 << 20

// slowWrites bounds each 500 KB write of these tests: far above the 5 s
// default, which a write waiting behind a defragmentation can take under
// -race on a loaded 2-core machine (it failed there as "outcome unknown
// (context deadline exceeded)"). What is tested is NOSPACE, not speed.
const slowWrites = 2 * time.Minute

func smallMember(dir string) etcdkv.MemberConfig {
	return etcdkv.MemberConfig{Dir: dir, QuotaBytes: smallQuota, UnsafeNoFsync: true}
}

// overwrite writes n values of 500 KB over 8 keys (live data: 4 MB) and
// returns the first error.
func overwrite(ctx context.Context, s kv.Store, n int) (int, error) {
	val := []byte(strings.Repeat("v", 500<<10))
	for i := range n {
		key := []byte(fmt.Sprintf("big/%d", i%8))
		if _, err := s.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(key, val, kv.NoLease)}}); err != nil {
			return i, err
		}
	}
	return n, nil
}

func isNoSpace(err error) bool {
	return err != nil && strings.Contains(err.Error(), "database space exceeded")
}

// Issue 10, finding 3: 500 KB values written without pause reached etcd's
// NOSPACE alarm, because compaction kept a number of revisions, not of
// bytes. With maintenance, 300 MB of writes (4.5 × the quota) all land;
// without it (the control), the same writes hit NOSPACE — the test's
// workload does fill the quota.
func TestSustainedLargeWritesNeverReachNoSpace(t *testing.T) {
	ctx := context.Background()
	const writes = 600
	t.Run("control: no maintenance", func(t *testing.T) {
		e := startEmbedded(t, etcdkv.EmbeddedConfig{MemberConfig: smallMember(t.TempDir()), Options: etcdkv.Options{NoMaintenance: true, RequestTimeout: slowWrites}})
		n, err := overwrite(ctx, e, writes)
		if !isNoSpace(err) || !errors.Is(err, kv.ErrUnavailable) {
			t.Fatalf("after %d writes: %v, want etcd's NOSPACE as kv.ErrUnavailable", n, err)
		}
	})
	t.Run("maintained", func(t *testing.T) {
		e := startEmbedded(t, etcdkv.EmbeddedConfig{MemberConfig: smallMember(t.TempDir()), Options: etcdkv.Options{RequestTimeout: slowWrites}})
		if n, err := overwrite(ctx, e, writes); err != nil {
			t.Fatalf("write %d of %d failed: %v (maintenance %+v)", n, writes, err, e.MaintenanceStats())
		}
		st := e.MaintenanceStats()
		if st.Compactions == 0 {
			t.Fatalf("no compaction ran: %+v", st)
		}
		t.Logf("maintenance: %+v", st)
	})
}

// Issue 10, finding 3: a database in the NOSPACE alarm stays there across
// restarts (every write refused, registration included: the server could
// not start). StartEmbedded now compacts, defragments and disarms.
func TestStartRecoversFromNoSpaceAlarm(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	noMaint := etcdkv.Options{NoMaintenance: true, RequestTimeout: slowWrites}

	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: smallMember(dir), Options: noMaint})
	if err != nil {
		t.Fatal(err)
	}
	n, err := overwrite(ctx, e, 1000)
	if closeErr := e.Close(); closeErr != nil {
		t.Fatal(closeErr)
	}
	if !isNoSpace(err) {
		t.Fatalf("filling the database: %d writes, then %v; want NOSPACE", n, err)
	}

	// Without recovery the alarm survives a restart: the bug.
	e, err = etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: smallMember(dir), Options: noMaint})
	if err != nil {
		t.Fatal(err)
	}
	_, err = overwrite(ctx, e, 1)
	if closeErr := e.Close(); closeErr != nil {
		t.Fatal(closeErr)
	}
	if !isNoSpace(err) {
		t.Fatalf("restart without recovery: a write answered %v; the alarm should persist", err)
	}

	// With recovery (the default) it starts writable.
	e = startEmbedded(t, etcdkv.EmbeddedConfig{MemberConfig: smallMember(dir), Options: etcdkv.Options{RequestTimeout: slowWrites}})
	if st := e.MaintenanceStats(); st.AlarmsDisarmed != 1 {
		t.Fatalf("start-up maintenance: %+v, want one alarm disarmed", st)
	}
	if n, err := overwrite(ctx, e, 200); err != nil {
		t.Fatalf("write %d after recovery: %v", n, err)
	}
}

// A database whose live data fills the quota cannot be recovered by
// compaction: start-up fails with ErrNoSpace and says what to do.
func TestStartWithLiveDataOverQuotaSaysSo(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: smallMember(dir), Options: etcdkv.Options{NoMaintenance: true, RequestTimeout: slowWrites}})
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 500<<10))
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ { // distinct keys: all live
		_, werr = e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte(fmt.Sprintf("live/%d", i)), val, kv.NoLease)}})
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !isNoSpace(werr) {
		t.Fatalf("filling with live data: %v", werr)
	}
	e, err = etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: smallMember(dir), Options: etcdkv.Options{RequestTimeout: slowWrites}})
	if err == nil {
		_ = e.Close()
		t.Fatal("start-up succeeded with a full database")
	}
	if !errors.Is(err, etcdkv.ErrNoSpace) || !strings.Contains(err.Error(), "raise the quota") {
		t.Fatalf("start-up: %v, want ErrNoSpace saying to raise the quota", err)
	}
}
