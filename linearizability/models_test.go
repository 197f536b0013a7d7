package linearizability

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// sequential builds a one-client history of kind k whose operations do not
// overlap: op i runs in [10i, 10i+5].
func sequential(k Kind, obj string, steps ...[3]string) []Op {
	var ops []Op
	for i, s := range steps {
		op := Op{Client: 0, Object: obj, Kind: k, Name: s[0], Arg: s[1], Call: int64(10 * i), Return: int64(10*i + 5)}
		switch s[2] {
		case "?":
			op.Indeterminate = true
		case "∅":
		default:
			op.Value, op.Found = s[2], true
		}
		ops = append(ops, op)
	}
	return ops
}

func incs(values ...string) [][3]string {
	out := make([][3]string, len(values))
	for i, v := range values {
		out[i] = [3]string{"inc", "", v}
	}
	return out
}

func check(t *testing.T, ops []Op) Result {
	t.Helper()
	rep, err := Check(ops, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Verdicts) != 1 {
		t.Fatalf("got %d verdicts, want 1", len(rep.Verdicts))
	}
	return rep.Verdicts[0].Result
}

// The original NOLA README showed a single caller looping inc on an
// in-memory counter while two activations were live: 0,1,2,0,3,1,2,4. The
// counter-with-reset model must reject it.
func TestReadmeTwoInstanceHistoryFails(t *testing.T) {
	ops := sequential(CounterWithReset, "a", incs("0", "1", "2", "0", "3", "1", "2", "4")...)
	if got := check(t, ops); got != Illegal {
		t.Fatalf("two-instance history: got %s, want Illegal", got)
	}
	// Its prefix up to the second instance's first answer is fine (a reset).
	if got := check(t, ops[:4]); got != Ok {
		t.Fatalf("prefix 0,1,2,0: got %s, want Ok", got)
	}
}

func TestKnownGoodHistoriesPass(t *testing.T) {
	cases := map[string][]Op{
		"counter-with-reset": sequential(CounterWithReset, "a", incs("0", "1", "2", "0", "1", "0", "1", "2", "3")...),
		"counter-with-reset get": sequential(CounterWithReset, "a",
			[3]string{"inc", "", "0"}, [3]string{"get", "", "1"}, [3]string{"inc", "", "1"}, [3]string{"get", "", "0"}),
		"counter-with-reset indeterminate": sequential(CounterWithReset, "a", incs("0", "?", "2", "?", "?", "5", "0", "?", "1")...),
		"counter":                          sequential(Counter, "k", incs("1", "2", "?", "4", "5")...),
		"counter get": sequential(Counter, "k",
			[3]string{"get", "", "0"}, [3]string{"inc", "", "1"}, [3]string{"get", "", "1"}, [3]string{"inc", "", "?"}, [3]string{"get", "", "2"}),
		"register": sequential(Register, "k",
			[3]string{"get", "", "∅"}, [3]string{"put", "x", "ok"}, [3]string{"get", "", "x"},
			[3]string{"put", "y", "?"}, [3]string{"get", "", "x"}, [3]string{"get", "", "y"}),
	}
	for name, ops := range cases {
		t.Run(name, func(t *testing.T) {
			if got := check(t, ops); got != Ok {
				t.Fatalf("got %s, want Ok:\n%s", got, Format(ops))
			}
		})
	}
}

func TestKnownBadHistoriesFail(t *testing.T) {
	cases := map[string][]Op{
		"counter-with-reset skips":   sequential(CounterWithReset, "a", incs("0", "1", "3")...),
		"counter-with-reset repeats": sequential(CounterWithReset, "a", incs("0", "1", "1")...),
		"counter resets":             sequential(Counter, "k", incs("1", "2", "1")...),
		"counter skips":              sequential(Counter, "k", incs("1", "3")...),
		"counter lost write": sequential(Counter, "k",
			[3]string{"inc", "", "1"}, [3]string{"inc", "", "2"}, [3]string{"get", "", "1"}),
		// An indeterminate write that was observed has happened: it cannot
		// be undone later.
		"register flips back": sequential(Register, "k",
			[3]string{"put", "x", "ok"}, [3]string{"put", "y", "?"}, [3]string{"get", "", "y"}, [3]string{"get", "", "x"}),
		"register lost": sequential(Register, "k", [3]string{"put", "x", "ok"}, [3]string{"get", "", "∅"}),
	}
	for name, ops := range cases {
		t.Run(name, func(t *testing.T) {
			if got := check(t, ops); got != Illegal {
				t.Fatalf("got %s, want Illegal:\n%s", got, Format(ops))
			}
		})
	}
}

// An indeterminate operation may take effect long after its call — even
// after operations that were called later returned.
func TestIndeterminateTakesEffectLate(t *testing.T) {
	ops := []Op{
		{Client: 0, Object: "k", Kind: Counter, Name: "inc", Call: 0, Indeterminate: true},
		{Client: 1, Object: "k", Kind: Counter, Name: "get", Call: 10, Return: 20, Value: "0", Found: true},
		{Client: 1, Object: "k", Kind: Counter, Name: "get", Call: 30, Return: 40, Value: "1", Found: true},
	}
	if got := check(t, ops); got != Ok {
		t.Fatalf("late indeterminate effect: got %s, want Ok", got)
	}
	// But not before its call.
	ops[0].Call = 25
	ops[1].Value = "1"
	if got := check(t, ops); got != Illegal {
		t.Fatalf("effect before the call: got %s, want Illegal", got)
	}
}

// An indeterminate operation with a known horizon takes effect inside its
// window or not at all.
func TestIndeterminateHorizon(t *testing.T) {
	base := func(last string) []Op {
		return []Op{
			{Client: 0, Object: "k", Kind: Counter, Name: "inc", Call: 0, Return: 1, Value: "1", Found: true},
			{Client: 1, Object: "k", Kind: Counter, Name: "inc", Call: 2, Return: 3, Indeterminate: true, Horizon: 5},
			{Client: 0, Object: "k", Kind: Counter, Name: "get", Call: 10, Return: 11, Value: last, Found: true},
		}
	}
	if got := check(t, base("1")); got != Ok {
		t.Fatalf("did not happen: got %s, want Ok", got)
	}
	if got := check(t, base("2")); got != Ok {
		t.Fatalf("happened: got %s, want Ok", got)
	}
	// Not after its horizon: a later read cannot see it appear.
	ops := append(base("1"), Op{Client: 0, Object: "k", Kind: Counter, Name: "get", Call: 20, Return: 21, Value: "2", Found: true})
	if got := check(t, ops); got != Illegal {
		t.Fatalf("effect after the horizon: got %s, want Illegal", got)
	}
	// Without a horizon the same history is fine.
	ops[1].Horizon = 0
	if got := check(t, ops); got != Ok {
		t.Fatalf("open window: got %s, want Ok", got)
	}
	// Nor before its onset: an earlier read cannot see it.
	early := base("2")
	early[1].Onset, early[1].Horizon = 15, 16
	if got := check(t, early); got != Illegal {
		t.Fatalf("effect before the onset: got %s, want Illegal", got)
	}
	reg := []Op{
		{Client: 0, Object: "r", Kind: Register, Name: "put", Arg: "a", Call: 0, Return: 1, Value: "ok", Found: true},
		{Client: 1, Object: "r", Kind: Register, Name: "put", Arg: "b", Call: 2, Indeterminate: true, Horizon: 4},
		{Client: 0, Object: "r", Kind: Register, Name: "get", Call: 10, Return: 11, Value: "a", Found: true},
	}
	if got := check(t, reg); got != Ok {
		t.Fatalf("register write that did not happen: got %s, want Ok", got)
	}
	reg = append(reg, Op{Client: 0, Object: "r", Kind: Register, Name: "get", Call: 12, Return: 13, Value: "b", Found: true})
	if got := check(t, reg); got != Illegal {
		t.Fatalf("register write appearing after its horizon: got %s, want Illegal", got)
	}
}

type regState struct {
	value string
	found bool
}

// genExecution draws a correct concurrent history of kind k: a sequential
// execution of the real object (with resets for CounterWithReset) whose
// operations are given intervals that contain their linearization points,
// spread over several clients; some outcomes are hidden (indeterminate),
// and some indeterminate operations never took effect.
func genExecution(t *rapid.T, k Kind) []Op {
	n := rapid.IntRange(1, 40).Draw(t, "ops")
	clients := rapid.IntRange(1, 4).Draw(t, "clients")
	var (
		ops      []Op
		counter  int64
		reg      regState
		point    int64
		busyTill = make([]int64, clients)
	)
	for i := range n {
		point += int64(rapid.IntRange(1, 20).Draw(t, "gap"))
		c := rapid.IntRange(0, clients-1).Draw(t, "client")
		op := Op{Client: c, Object: "x", Kind: k}
		happened := true
		if rapid.IntRange(0, 9).Draw(t, "indeterminate") == 0 {
			op.Indeterminate = true
			happened = rapid.Bool().Draw(t, "happened")
		}
		switch k {
		case CounterWithReset:
			if rapid.IntRange(0, 5).Draw(t, "reset") == 0 {
				counter = 0
			}
			if rapid.Bool().Draw(t, "inc") {
				op.Name = "inc"
				op.Value = strconv.FormatInt(counter, 10)
				if happened {
					counter++
				}
			} else {
				op.Name, op.Value = "get", strconv.FormatInt(counter, 10)
			}
			op.Found = true
		case Counter:
			if rapid.Bool().Draw(t, "inc") {
				op.Name = "inc"
				op.Value = strconv.FormatInt(counter+1, 10)
				if happened {
					counter++
				}
			} else {
				op.Name, op.Value = "get", strconv.FormatInt(counter, 10)
			}
			op.Found = true
		case Register:
			if rapid.Bool().Draw(t, "put") {
				op.Name, op.Arg, op.Value, op.Found = "put", "v"+strconv.Itoa(i), "ok", true
				if happened {
					reg = regState{value: op.Arg, found: true}
				}
			} else {
				op.Name, op.Value, op.Found = "get", reg.value, reg.found
			}
		}
		// The interval contains the point; a client runs one operation at
		// a time, so it starts after the client's previous one returned.
		before := int64(rapid.IntRange(0, 30).Draw(t, "before"))
		op.Call = max(point-before, busyTill[c]+1)
		if op.Call > point {
			// The client is still busy: give the operation to nobody
			// else, just move its linearization point.
			point = op.Call
		}
		op.Return = point + int64(rapid.IntRange(0, 30).Draw(t, "after"))
		if !happened {
			op.Value, op.Found = "", false
		}
		if op.Indeterminate && rapid.Bool().Draw(t, "bounded") {
			// A simulator knows when it took effect: a window around the
			// point if it happened; anything after the call if not.
			from := point
			if !happened {
				from = op.Call + int64(rapid.IntRange(0, 30).Draw(t, "from"))
			}
			op.Onset = max(op.Call, from-int64(rapid.IntRange(0, 30).Draw(t, "onset")))
			op.Horizon = from + int64(rapid.IntRange(0, 30).Draw(t, "horizon"))
		}
		busyTill[c] = op.Return
		ops = append(ops, op)
	}
	return ops
}

func TestRapidCorrectHistoriesPass(t *testing.T) {
	for _, k := range []Kind{CounterWithReset, Counter, Register} {
		t.Run(string(k), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				ops := genExecution(t, k)
				rep, err := Check(ops, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !rep.Ok() {
					t.Fatalf("a correct history was rejected:\n%s", Format(ops))
				}
			})
		})
	}
}

// referenceSequential decides a one-client, non-overlapping, fully
// determinate history by direct simulation: a second implementation of each
// model to compare porcupine's verdict with.
func referenceSequential(k Kind, ops []Op) bool {
	var (
		n   int64
		reg regState
	)
	for _, o := range ops {
		v, err := strconv.ParseInt(o.Value, 10, 64)
		switch k {
		case CounterWithReset:
			if err != nil || (v != n && v != 0) {
				return false
			}
			n = v
			if o.Name == "inc" {
				n++
			}
		case Counter:
			want := n
			if o.Name == "inc" {
				want++
			}
			if err != nil || v != want {
				return false
			}
			n = v
		case Register:
			if o.Name == "put" {
				reg = regState{value: o.Arg, found: true}
				continue
			}
			if o.Found != reg.found || (o.Found && o.Value != reg.value) {
				return false
			}
		}
	}
	return true
}

func TestRapidSequentialMatchesReference(t *testing.T) {
	for _, k := range []Kind{CounterWithReset, Counter, Register} {
		t.Run(string(k), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				n := rapid.IntRange(1, 12).Draw(t, "ops")
				var steps [][3]string
				for range n {
					name := rapid.SampledFrom([]string{"inc", "get"}).Draw(t, "name")
					val := strconv.Itoa(rapid.IntRange(0, 4).Draw(t, "value"))
					arg := ""
					if k == Register {
						name = rapid.SampledFrom([]string{"put", "get"}).Draw(t, "name")
						if name == "put" {
							arg, val = "v"+val, "ok"
						} else if val == "0" {
							val = "∅"
						} else {
							val = "v" + val
						}
					}
					steps = append(steps, [3]string{name, arg, val})
				}
				ops := sequential(k, "x", steps...)
				rep, err := Check(ops, 0)
				if err != nil {
					t.Fatal(err)
				}
				if want := referenceSequential(k, ops); rep.Ok() != want {
					t.Fatalf("porcupine says ok=%v, the reference says %v:\n%s", rep.Ok(), want, Format(ops))
				}
			})
		})
	}
}

func TestCheckPartitionsByObjectAndDraws(t *testing.T) {
	good := sequential(Counter, "good", incs("1", "2")...)
	bad := sequential(CounterWithReset, "bad", incs("0", "2")...)
	other := sequential(Unchecked, "tick", [3]string{"ticks", "", "7"})
	ops := slices.Concat(good, bad, other)
	rep, err := Check(ops, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Illegal != 1 || rep.Checked != 2 || len(rep.Verdicts) != 3 {
		t.Fatalf("report %+v, want 1 illegal of 2 checked, 3 verdicts", rep)
	}
	f := rep.Failures()
	if len(f) != 1 || f[0].Object != "bad" {
		t.Fatalf("failures %+v, want object bad", f)
	}
	path := filepath.Join(t.TempDir(), FileName("bad/obj")+".html")
	if err := f[0].WriteHTML(path, []Annotation{{Tag: "oracle", Start: 0, End: 15, Description: "here", Alarm: true}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<html") || !strings.Contains(string(b), "here") {
		t.Fatalf("visualization of %d bytes lacks the page or the annotation", len(b))
	}
	// Mixed kinds on one object are a recording bug.
	mixed := append(sequential(Counter, "m", incs("1")...), sequential(Register, "m", [3]string{"get", "", "∅"})...)
	if _, err := Check(mixed, 0); err == nil {
		t.Fatal("mixed kinds on one object: no error")
	}
}

func TestHistoryRecording(t *testing.T) {
	var h History
	a := h.Call(0, "x", Counter, "inc", "", 1)
	b := h.Call(1, "x", Counter, "inc", "", 2)
	c := h.Call(2, "x", Counter, "inc", "", 3)
	d := h.Call(3, "x", Counter, "get", "", 4)
	a.Ok("1", true, 5, "s0")
	b.Failed(6, "not_owner")
	c.Indeterminate(7, "timeout")
	_ = d // never returns: stays indeterminate
	ops := h.Ops()
	if len(ops) != 3 || h.Skipped() != 1 {
		t.Fatalf("got %d ops and %d skipped, want 3 and 1:\n%s", len(ops), h.Skipped(), Format(ops))
	}
	if ops[0].Indeterminate || !ops[1].Indeterminate || !ops[2].Indeterminate {
		t.Fatalf("wrong outcomes:\n%s", Format(ops))
	}
	if got := check(t, ops); got != Ok {
		t.Fatalf("got %s, want Ok", got)
	}
}

// Deletion: a delete ends the actor's life; the next one starts empty
// (issue 14).
func TestDeleteHistories(t *testing.T) {
	del := func(v string) [3]string { return [3]string{"delete", "", v} }
	get := func(v string) [3]string { return [3]string{"get", "", v} }
	put := func(x, v string) [3]string { return [3]string{"put", x, v} }
	good := map[string][]Op{
		"counter delete restarts": sequential(Counter, "k",
			[3]string{"inc", "", "1"}, [3]string{"inc", "", "2"}, del("ok"), get("0"), [3]string{"inc", "", "1"}),
		"counter delete twice": sequential(Counter, "k", [3]string{"inc", "", "1"}, del("ok"), del("∅")),
		// A typed call that failed retryably (left out) may have created
		// the actor again in between.
		"counter recreated unseen":  sequential(Counter, "k", [3]string{"inc", "", "1"}, del("ok"), del("ok"), get("0")),
		"counter delete unknown":    sequential(Counter, "k", [3]string{"inc", "", "1"}, del("?"), [3]string{"inc", "", "2"}),
		"counter delete unknown 2":  sequential(Counter, "k", [3]string{"inc", "", "1"}, del("?"), [3]string{"inc", "", "1"}),
		"counter may pre-exist":     sequential(Counter, "k", del("ok"), del("∅")),
		"counter never existed":     sequential(Counter, "k", del("∅"), [3]string{"inc", "", "1"}),
		"reset counter after":       sequential(CounterWithReset, "a", incs("0", "1")[0], incs("0", "1")[1], del("ok"), incs("0")[0]),
		"register delete clears":    sequential(Register, "k", put("x", "ok"), del("ok"), get("∅"), put("y", "ok"), get("y")),
		"register delete unknown":   sequential(Register, "k", put("x", "ok"), del("?"), get("x"), del("ok")),
		"register deleted no write": sequential(Register, "k", del("∅"), get("∅")),
	}
	for name, ops := range good {
		t.Run(name, func(t *testing.T) {
			if got := check(t, ops); got != Ok {
				t.Fatalf("got %s, want Ok:\n%s", got, Format(ops))
			}
		})
	}
	bad := map[string][]Op{
		// The old life's KV seen after an acknowledged delete.
		"counter survives delete":  sequential(Counter, "k", [3]string{"inc", "", "1"}, del("ok"), get("1")),
		"counter old inc lands":    sequential(Counter, "k", [3]string{"inc", "", "1"}, del("ok"), [3]string{"inc", "", "2"}),
		"counter exists not found": sequential(Counter, "k", [3]string{"inc", "", "1"}, del("∅")),
		"reset counter old memory": sequential(CounterWithReset, "a", incs("0", "1", "2")[0], incs("0", "1", "2")[1],
			del("ok"), incs("2")[0]),
		"register survives delete": sequential(Register, "k", put("x", "ok"), del("ok"), get("x")),
	}
	for name, ops := range bad {
		t.Run(name, func(t *testing.T) {
			if got := check(t, ops); got != Illegal {
				t.Fatalf("got %s, want Illegal:\n%s", got, Format(ops))
			}
		})
	}
}
