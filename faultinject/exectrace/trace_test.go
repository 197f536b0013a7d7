package exectrace

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nolaproject/nola/nola"
)

func ev(server string, act uint64) nola.ActivationEvent {
	return nola.ActivationEvent{Server: server, Incarnation: 1, Activation: act, Namespace: "ns", ActorID: "a", Operation: "inc"}
}

func TestWriterRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Activated(ev("s0", 1))
	w.ExecStart(ev("s0", 1))
	w.ExecEnd(ev("s0", 1), true)
	w.Dropped(ev("s0", 1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 || recs[2].Kind != KindEnd || !recs[2].Released || recs[0].T == 0 || recs[3].T < recs[0].T {
		t.Fatalf("records: %+v", recs)
	}
	res := Check(recs, []string{"ns/a"})
	if !res.Ok() || res.Actors["ns/a"].Released != 1 {
		t.Fatalf("check: %+v", res)
	}
}

func rec(kind, server string, pid int, act uint64, tm int64, released bool) Record {
	return Record{Kind: kind, Server: server, PID: pid, Activation: act, Namespace: "ns", Actor: "a", Op: "inc", T: tm, Released: released}
}

func TestCheckRules(t *testing.T) {
	good := []Record{
		rec(KindActivated, "s0", 1, 1, 10, false),
		rec(KindStart, "s0", 1, 1, 11, false),
		rec(KindEnd, "s0", 1, 1, 12, true),
		// A zombie: started before the move, withheld after it.
		rec(KindStart, "s0", 1, 1, 13, false),
		rec(KindActivated, "s1", 2, 1, 20, false),
		rec(KindStart, "s1", 2, 1, 21, false),
		rec(KindEnd, "s0", 1, 1, 25, false),
		rec(KindEnd, "s1", 2, 1, 22, true),
	}
	if res := Check(good, []string{"ns/a"}); !res.Ok() {
		t.Fatalf("legal history rejected: %+v", res)
	}
	cases := map[string][]Record{
		"G1.stale-start": append(slices2(good), rec(KindStart, "s0", 1, 1, 30, false)),
		"G1.release-overlap": {
			rec(KindActivated, "s0", 1, 1, 10, false),
			rec(KindStart, "s0", 1, 1, 11, false),
			rec(KindActivated, "s1", 2, 1, 20, false),
			rec(KindStart, "s1", 2, 1, 21, false),
			rec(KindEnd, "s0", 1, 1, 25, true),
		},
		"G1.unknown": {rec(KindStart, "s0", 1, 9, 11, false)},
	}
	// Logged out of order (the engine reports an activation after waking
	// its first invocation): the clock decides.
	late := []Record{rec(KindStart, "s0", 1, 1, 11, false), rec(KindActivated, "s0", 1, 1, 10, false), rec(KindEnd, "s0", 1, 1, 12, true)}
	if res := Check(late, []string{"ns/a"}); !res.Ok() {
		t.Errorf("start logged before its activation: %+v", res)
	}
	// Stamped before its report (the engine wakes waiting invocations
	// before it reports the activation; see TestEngineStartLoggedBeforeActivation).
	early := []Record{rec(KindStart, "s0", 1, 1, 9, false), rec(KindEnd, "s0", 1, 1, 12, true), rec(KindActivated, "s0", 1, 1, 10, false)}
	if res := Check(early, []string{"ns/a"}); !res.Ok() || res.LateReports != 1 {
		t.Errorf("start stamped before its activation's report: %+v", res)
	}
	// The activation time is the earlier of report and first start, so a
	// stale start between the two is still caught.
	cases["G1.stale-start (early start)"] = []Record{
		rec(KindActivated, "s0", 1, 1, 10, false),
		rec(KindStart, "s1", 2, 1, 20, false),
		rec(KindStart, "s0", 1, 1, 25, false),
		rec(KindActivated, "s1", 2, 1, 30, false),
	}
	// The seed-1 shape: other activations of the actor and its server are
	// known, but not the one the start names.
	cases["G1.unknown (missing activation)"] = []Record{
		rec(KindActivated, "s1", 2, 14, 10, false),
		rec(KindStart, "s1", 2, 14, 11, false),
		rec(KindEnd, "s1", 2, 14, 12, true),
		rec(KindActivated, "s1", 3, 15, 13, false), // same number, another process
		rec(KindStart, "s1", 2, 15, 20, false),
	}
	for name, recs := range cases {
		rule, _, _ := strings.Cut(name, " ")
		res := Check(recs, nil)
		if len(res.Violations) == 0 || res.Violations[0].Rule != rule {
			t.Errorf("%s: got %+v", name, res.Violations)
		}
	}
	if res := Check(nil, []string{"ns/a"}); res.Ok() || len(res.Unchecked) != 1 {
		t.Errorf("no history passed: %+v", res)
	}
}

func slices2(r []Record) []Record { return append([]Record(nil), r...) }

func TestReadTornLine(t *testing.T) {
	in := `{"k":"act","s":"s0","a":1,"ns":"ns","id":"a","p":1,"t":1}` + "\n" + `{"k":"sta`
	recs, err := Read(strings.NewReader(in))
	if err != nil || len(recs) != 1 {
		t.Fatalf("torn last line: %v %v", recs, err)
	}
	if _, err := Read(strings.NewReader("garbage\n" + in)); err == nil {
		t.Fatal("malformed middle line accepted")
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"k":"act","s":"s0","a":1,"ns":"ns","id":"a","p":1,"t":1}` + "\n"))
	f.Add([]byte("{}\n{\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := Read(bytes.NewReader(b))
		if err == nil {
			_ = Check(recs, []string{"ns/a"})
		}
	})
}
