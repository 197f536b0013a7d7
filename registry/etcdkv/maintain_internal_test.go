package etcdkv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/kv"
)

func TestPaced(t *testing.T) {
	end := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		since, took time.Duration
		want        bool
	}{
		{since: time.Second, took: 0, want: false},                         // no compaction yet
		{since: time.Second, took: time.Second, want: true},                // 1 s < 4 × 1 s
		{since: PaceFactor*time.Second - 1, took: time.Second, want: true}, // just inside
		{since: PaceFactor * time.Second, took: time.Second, want: false},  // just past
		{since: time.Hour, took: 20 * time.Second, want: false},
	} {
		if got := paced(end.Add(c.since), end, c.took); got != c.want {
			t.Errorf("paced(%v after a compaction of %v) = %v, want %v", c.since, c.took, got, c.want)
		}
	}
}

// A periodic pass soon after a long compaction skips its compaction; the
// byte trigger's pass does not, nor does a periodic pass once PaceFactor ×
// the compaction's duration has passed. The maintainer's own loop is kept
// out of the way (an hour's interval, no byte trigger reached): the test
// drives every pass and the clock.
func TestPeriodicCompactionIsPaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{
		MemberConfig: MemberConfig{Dir: t.TempDir(), UnsafeNoFsync: true},
		Options:      Options{Maintenance: &Maintenance{QuotaBytes: 2 << 30, Interval: time.Hour}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m := e.maint
	write := func() {
		t.Helper()
		for i := range 10 { // overwrites: history to compact
			if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("k"), []byte(fmt.Sprint(i)), kv.NoLease)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := m.lastEnd // the start-up pass compacted
	if base.IsZero() {
		t.Fatal("the start-up pass recorded no compaction")
	}
	m.lastTook = time.Hour // as if the last compaction had taken an hour
	clock := base.Add(time.Minute)
	m.now = func() time.Time { return clock }

	pass := func(kind passKind) (compacted bool) {
		t.Helper()
		write()
		before := m.stats().Compactions
		if err := m.pass(ctx, kind); err != nil {
			t.Fatal(err)
		}
		return m.stats().Compactions > before
	}
	if pass(periodic) {
		t.Fatal("a periodic pass a minute after an hour-long compaction compacted")
	}
	if st := m.stats(); st.Paced != 1 {
		t.Fatalf("stats %+v: want one paced pass", st)
	}
	if !pass(kicked) {
		t.Fatal("the byte trigger's pass was paced")
	}
	// That compaction (on the fake clock: zero time) resets the pace.
	m.lastEnd, m.lastTook = base, time.Hour
	clock = base.Add(PaceFactor * time.Hour)
	if !pass(periodic) {
		t.Fatalf("a periodic pass %v after an hour-long compaction did not compact", PaceFactor*time.Hour)
	}
	if st := m.stats(); st.Paced != 1 {
		t.Fatalf("stats %+v: want still one paced pass", st)
	}
}
