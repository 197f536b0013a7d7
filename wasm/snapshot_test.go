package wasm_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// snapScript runs the same calls on every committed guest and returns
// their transcript: answers, errors, and the memory the Host charges.
func snapScript(t *testing.T, noSnapshot bool) (transcript []string, status map[string]string) {
	t.Helper()
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.NoSnapshot = noSnapshot }})
	e.putGuests("counter", "kvcounter", "echo", "caller", "creator")
	say := func(typ, id, op, payload string) {
		id = typ + "-" + id // an actor ID has one type
		v, err := e.invoke(id, typ, op, []byte(payload))
		if err != nil {
			// The message names the mode-independent failure; drop
			// what differs per run (nothing here should).
			transcript = append(transcript, fmt.Sprintf("%s %s.%s(%q) error %v", typ, id, op, payload, err))
			return
		}
		transcript = append(transcript, fmt.Sprintf("%s %s.%s(%q) = %q", typ, id, op, payload, v))
	}
	for _, lang := range []string{"c", "go"} {
		counter, kv, echo, caller := "counter-"+lang, "kvcounter-"+lang, "echo-"+lang, "caller-"+lang
		// Several actors of one module: the first is the snapshot's
		// source, the others start from it; each counts on its own.
		for _, id := range []string{"a", "b", "c"} {
			say(counter, id, "inc", "")
			say(counter, id, "inc", "")
		}
		say(counter, "a", "get", "")
		say(counter, "d", "get", "")
		say(kv, "k", "inc", "")
		say(kv, "k", "add", "40")
		say(kv, "k2", "get", "")
		say(echo, "e", "echo", "hi")
		say(echo, "e", "put", "v")
		say(echo, "e", "get", "")
		if lang == "go" {
			// A trap discards the instance; the next starts afresh.
			say(echo, "e", "panic", "")
			say(echo, "e", "get", "")
			say(echo, "e2", "self", "")
			say(echo, "e2", "print", "x")
		}
		say(caller, "c1", "call", counter+"/"+counter+"-w/inc")
		say(caller, "c2", "call", counter+"/"+counter+"-w/inc")
		say(counter, "w", "get", "")
	}
	if _, err := e.c.Client().Create(e.ctx, ns, "creator-go-cr", "creator-go", []byte("xyz")); err != nil {
		t.Fatal(err)
	}
	say("creator-go", "cr", "args", "")
	say("creator-go", "cr", "creates", "")
	say("creator-go", "cr", "given", "")
	transcript = append(transcript, fmt.Sprintf("memory charged: %d", e.hosts[0].Stats().MemoryBytes))
	status = map[string]string{}
	for _, n := range wasmtest.CGuests {
		// Compiled, if the script did not use it.
		if _, err := e.hosts[0].Resolve(e.ctx, ns, n+"-c"); err != nil {
			t.Fatal(err)
		}
		status[n+"-c"] = e.hosts[0].SnapshotStatus(ns, n+"-c")
	}
	for _, n := range []string{"counter-go", "kvcounter-go", "echo-go", "caller-go", "creator-go"} {
		status[n] = e.hosts[0].SnapshotStatus(ns, n)
	}
	return transcript, status
}

// Instances started from a snapshot answer exactly like instances that
// initialized themselves, for every committed guest, and are charged the
// same memory; the Go guests are snapshotted, none of the C guests
// (nothing to initialize) is.
func TestSnapshotAnswersLikeInitializing(t *testing.T) {
	with, st := snapScript(t, false)
	without, stOff := snapScript(t, true)
	if len(with) != len(without) {
		t.Fatalf("transcripts of %d and %d lines", len(with), len(without))
	}
	for i := range with {
		if with[i] != without[i] {
			t.Errorf("line %d: with snapshots %s; without %s", i, with[i], without[i])
		}
	}
	for n, s := range st {
		want := "ready"
		if strings.HasSuffix(n, "-c") {
			want = "refused: nothing to initialize"
		}
		if s != want {
			t.Errorf("%s: snapshot %q, want %q", n, s, want)
		}
		if stOff[n] != "refused: Config.NoSnapshot" {
			t.Errorf("%s with NoSnapshot: snapshot %q", n, stOff[n])
		}
	}
	errs := 0
	for _, l := range with {
		if strings.Contains(l, ") error ") {
			errs++
		}
	}
	if errs != 1 { // echo-go's panic
		t.Errorf("%d calls failed, want 1 (the panic):\n%s", errs, strings.Join(with, "\n"))
	}
	if testing.Verbose() {
		t.Log(strings.Join(with, "\n"))
	}
}

// initModule is a minimal waPC module whose _initialize sets its memory's
// first word to 100 and its mutable global to 50, calling __console_log
// ("init") first if logs; __guest_call increments both and answers them
// (8 bytes, little-endian). tableGrow adds a table that __guest_call
// grows; start makes _initialize the start function as well; traps makes
// _initialize trap (unreachable) at its end.
func initModule(logs, tableGrow, start bool, traps ...bool) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})...)
	imp := []byte{3}
	for _, n := range []string{"__guest_request", "__guest_response", "__console_log"} {
		imp = append(imp, revName("wapc")...)
		imp = append(imp, revName(n)...)
		imp = append(imp, 0, 0)
	}
	b = append(b, revSection(2, imp)...)
	b = append(b, revSection(3, []byte{2, 1, 2})...)
	if tableGrow {
		b = append(b, revSection(4, []byte{1, 0x70, 0, 1})...)
	}
	b = append(b, revSection(5, []byte{1, 0, 1})...)
	b = append(b, revSection(6, []byte{1, 0x7f, 1, 0x41, 0, 0x0b})...)
	exp := []byte{3}
	exp = append(append(exp, revName("memory")...), 2, 0)
	exp = append(append(exp, revName("__guest_call")...), 0, 3)
	exp = append(append(exp, revName("_initialize")...), 0, 4)
	b = append(b, revSection(7, exp)...)
	if start {
		b = append(b, revSection(8, []byte{4})...)
	}
	call := []byte{0,
		0x41, 0, 0x41, 0, 0x28, 2, 0, 0x41, 1, 0x6a, 0x36, 2, 0, // mem[0]++
		0x23, 0, 0x41, 1, 0x6a, 0x24, 0, // g++
		0x41, 4, 0x23, 0, 0x36, 2, 0, // mem[4] = g
	}
	if tableGrow {
		call = append(call, 0xd0, 0x70, 0x41, 1, 0xfc, 0x0f, 0, 0x1a)
	}
	call = append(call, 0x41, 0, 0x41, 8, 0x10, 1, 0x41, 1, 0x0b)
	init := []byte{0, 0x41, 0, 0x41, 0xe4, 0, 0x36, 2, 0, 0x41, 50, 0x24, 0}
	if logs {
		init = append(init, 0x41, 16, 0x41, 4, 0x10, 2)
	}
	if len(traps) > 0 && traps[0] {
		init = append(init, 0x00)
	}
	init = append(init, 0x0b)
	code := []byte{2}
	code = append(append(code, revU32(uint32(len(call)))...), call...)
	code = append(append(code, revU32(uint32(len(init)))...), init...)
	b = append(b, revSection(10, code)...)
	return append(b, revSection(11, []byte{1, 0, 0x41, 16, 0x0b, 4, 'i', 'n', 'i', 't'})...)
}

// countingHandler counts the log records with message msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// snapEnv is an env whose one host counts the guests' "init" log lines.
func snapEnv(t *testing.T, bin []byte) (*env, *atomic.Int64) {
	t.Helper()
	logs := &atomic.Int64{}
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.Logger = slog.New(countingHandler{msg: "init", n: logs})
	}})
	e.put("m", bin, modules.Options{})
	return e, logs
}

// answer is initModule's answer after n calls on an initialized instance.
func answer(n uint32) string {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], 100+n)
	binary.LittleEndian.PutUint32(b[4:], 50+n)
	return string(b[:])
}

// An initialization without effects is snapshotted: every instance
// starts with what _initialize wrote (memory and global), and what the
// snapshot's source instance did afterwards does not leak into the others.
func TestSnapshotRestoresMemoryAndGlobals(t *testing.T) {
	e, _ := snapEnv(t, initModule(false, false, false))
	e.want("a", "m", "x", nil, answer(1))
	e.want("a", "m", "x", nil, answer(2))
	if s := e.hosts[0].SnapshotStatus(ns, "m"); s != "ready" {
		t.Fatalf("snapshot %q, want ready", s)
	}
	for _, id := range []string{"b", "c"} {
		e.want(id, "m", "x", nil, answer(1))
	}
	e.want("a", "m", "x", nil, answer(3))
}

// A module whose initialization makes a host call with an effect (a log
// line) is never snapshotted: every activation initializes and logs.
// Breaking the detector (UncountedEffects) snapshots it and loses the
// log lines of all activations but the first: the detector is what
// keeps them.
func TestSnapshotRefusedForEffectingInit(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("detector broken=%v", broken), func(t *testing.T) {
			*wasm.UncountedEffects = broken
			defer func() { *wasm.UncountedEffects = false }()
			e, logs := snapEnv(t, initModule(true, false, false))
			for _, id := range []string{"a", "b", "c"} {
				e.want(id, "m", "x", nil, answer(1))
			}
			s := e.hosts[0].SnapshotStatus(ns, "m")
			if broken {
				if s != "ready" || logs.Load() != 1 {
					t.Fatalf("with the detector broken: snapshot %q and %d init log lines, want ready and 1", s, logs.Load())
				}
				return
			}
			if s != "refused: its initialization made 1 host calls with effects" {
				t.Fatalf("snapshot %q, want it refused for the log call", s)
			}
			if logs.Load() != 3 {
				t.Fatalf("%d init log lines for 3 activations, want 3", logs.Load())
			}
		})
	}
}

// A module whose state is more than its memory and globals is never
// snapshotted (instrument.Snapshot): one that changes its table, one
// with a start function. Both still answer as before.
func TestSnapshotRefusedForOtherState(t *testing.T) {
	for name, tc := range map[string]struct {
		bin  []byte
		want string
	}{
		"table.grow": {initModule(false, true, false), "refused: its code uses table.grow"},
		"start":      {initModule(false, false, true), "refused: the module has a start function"},
	} {
		t.Run(name, func(t *testing.T) {
			e, _ := snapEnv(t, tc.bin)
			e.want("a", "m", "x", nil, answer(1))
			e.want("b", "m", "x", nil, answer(1))
			if s := e.hosts[0].SnapshotStatus(ns, "m"); s != tc.want {
				t.Fatalf("snapshot %q, want %q", s, tc.want)
			}
		})
	}
}

// An activation that does not fit under the Host's MemoryLimit fails
// with the same code whether it would start from the snapshot (refused
// before instantiation: it reserves the snapshot's whole memory) or
// initialize itself (refused when initialization grows the memory), and
// the actor already there keeps counting.
func TestSnapshotMemoryLimitSameCode(t *testing.T) {
	for _, noSnap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSnapshot=%v", noSnap), func(t *testing.T) {
			// Room for one Go counter (~3 MB after initialization),
			// not two.
			e := newEnv(t, envOpts{host: func(c *wasm.Config) {
				c.NoSnapshot, c.MemoryLimit = noSnap, 9<<19
			}})
			e.putGuests("counter")
			e.want("one", "counter-go", "inc", nil, "0")
			_, err := e.invoke("two", "counter-go", "inc", nil)
			ne := wantCode(t, err, nola.CodeUnavailable)
			if !strings.Contains(ne.Message, "WASM memory") {
				t.Fatalf("refusal %q does not name the WASM memory", ne.Message)
			}
			e.want("one", "counter-go", "inc", nil, "1")
			want := "ready"
			if noSnap {
				want = "refused: Config.NoSnapshot"
			}
			if s := e.hosts[0].SnapshotStatus(ns, "counter-go"); s != want {
				t.Fatalf("snapshot %q, want %q", s, want)
			}
		})
	}
}

// What the Go runtime read at start-up is shared by the instances started
// from one snapshot: math/rand/v2's top-level generator (seeded from
// random_get once, at start-up) draws the same number in each, while
// crypto/rand reads random_get on every call and differs. Without
// snapshots both differ. This is the documented price of the snapshot
// (docs/wasm.md).
func TestSnapshotSharesStartupRandomness(t *testing.T) {
	for _, noSnap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSnapshot=%v", noSnap), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.NoSnapshot = noSnap }})
			e.putGuests("echo")
			var maths, cryptos []string
			for _, id := range []string{"r1", "r2", "r3"} {
				var m, c string
				if _, err := fmt.Sscanf(e.must(id, "echo-go", "rand", nil), "math=%s crypto=%s", &m, &c); err != nil {
					t.Fatal(err)
				}
				maths, cryptos = append(maths, m), append(cryptos, c)
			}
			if cryptos[0] == cryptos[1] || cryptos[1] == cryptos[2] {
				t.Fatalf("crypto/rand repeated across actors: %v", cryptos)
			}
			// r1 initialized itself (the snapshot's source); r2 and r3
			// started from its snapshot.
			same := maths[1] == maths[2] && maths[0] == maths[1]
			if same != !noSnap {
				t.Fatalf("math/rand draws %v: same in every instance = %v, want %v", maths, same, !noSnap)
			}
		})
	}
}

// A module whose initialization traps behaves as without snapshots: every
// activation fails with the trap (none is skipped by a snapshot of a
// failed initialization), and the module stays without one.
func TestSnapshotTrappingInit(t *testing.T) {
	for _, noSnap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSnapshot=%v", noSnap), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.NoSnapshot = noSnap }})
			e.put("m", initModule(false, false, false, true), modules.Options{})
			for _, id := range []string{"a", "b"} {
				_, err := e.invoke(id, "m", "x", nil)
				wantTrap(t, err, wasm.TrapRuntime, "unreachable")
			}
			want := "pending"
			if noSnap {
				want = "refused: Config.NoSnapshot"
			}
			if s := e.hosts[0].SnapshotStatus(ns, "m"); s != want {
				t.Fatalf("snapshot %q, want %q", s, want)
			}
		})
	}
}

// wapcModuleHead is the start of a minimal hand-built waPC module, up to
// its memory: the types (the two waPC imports', __guest_call's,
// _initialize's), the imports __guest_request and __guest_response, two
// functions (__guest_call, _initialize) and one memory of one page. The
// caller adds globals, exports and code.
func wapcModuleHead() []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})...)
	imp := []byte{2}
	for _, n := range []string{"__guest_request", "__guest_response"} {
		imp = append(imp, revName("wapc")...)
		imp = append(imp, revName(n)...)
		imp = append(imp, 0, 0)
	}
	b = append(b, revSection(2, imp)...)
	b = append(b, revSection(3, []byte{2, 1, 2})...)
	b = append(b, revSection(5, []byte{1, 0, 1})...)
	return b
}

// growModule is a minimal waPC module whose _initialize grows its memory
// by 16 pages and keeps memory.grow's answer (-1 if refused) in a global;
// __guest_call answers that global (4 bytes, little-endian), or traps if
// given a payload.
func growModule() []byte {
	b := wapcModuleHead()
	b = append(b, revSection(6, []byte{1, 0x7f, 1, 0x41, 0, 0x0b})...)
	exp := []byte{3}
	exp = append(append(exp, revName("memory")...), 2, 0)
	exp = append(append(exp, revName("__guest_call")...), 0, 2)
	exp = append(append(exp, revName("_initialize")...), 0, 3)
	b = append(b, revSection(7, exp)...)
	call := []byte{0,
		0x20, 1, 0x04, 0x40, 0x00, 0x0b, // if payload length: unreachable
		0x41, 0, 0x23, 0, 0x36, 2, 0, // mem[0] = g
		0x41, 0, 0x41, 4, 0x10, 1, 0x41, 1, 0x0b,
	}
	init := []byte{0, 0x41, 16, 0x40, 0, 0x24, 0, 0x0b} // g = memory.grow(16)
	code := []byte{2}
	code = append(append(code, revU32(uint32(len(call)))...), call...)
	code = append(append(code, revU32(uint32(len(init)))...), init...)
	b = append(b, revSection(10, code)...)
	return append(b, revSection(11, []byte{1, 0, 0x41, 0xe4, 0, 0x0b, 1, 'x'})...)
}

// An initialization whose memory growth the Host's MemoryLimit refused —
// a moment's shortage, not the module's nature — is not snapshotted: a
// guest that carries on without the memory (memory.grow answered -1)
// would otherwise pass that answer on to every later instance, however
// much memory is free by then. With or without snapshots, the activation
// made once the memory is back grows.
func TestSnapshotNotOfRefusedGrowth(t *testing.T) {
	grown := "\x01\x00\x00\x00" // memory.grow's answer: the old size, 1 page
	refused := "\xff\xff\xff\xff"
	for _, noSnap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSnapshot=%v", noSnap), func(t *testing.T) {
			// Room for one grown instance and one that is not.
			e := newEnv(t, envOpts{host: func(c *wasm.Config) {
				c.NoSnapshot = noSnap
				c.MemoryLimit = 2*(wasm.InstanceOverhead+64<<10) + 16*64<<10 + 512<<10
			}})
			e.put("hog", growModule(), modules.Options{})
			e.put("m", growModule(), modules.Options{})
			e.want("h", "hog", "x", nil, grown)
			e.want("a", "m", "x", nil, refused)
			// The hog traps: its instance and memory are gone.
			if _, err := e.invoke("h", "hog", "x", []byte("boom")); err == nil {
				t.Fatal("the hog did not trap")
			}
			e.want("b", "m", "x", nil, grown)
		})
	}
}

// manyGlobalsModule is a minimal waPC module with n mutable i32 globals
// and an _initialize that does nothing; __guest_call answers "ok".
func manyGlobalsModule(n uint32) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})...)
	imp := []byte{2}
	for _, name := range []string{"__guest_request", "__guest_response"} {
		imp = append(imp, revName("wapc")...)
		imp = append(imp, revName(name)...)
		imp = append(imp, 0, 0)
	}
	b = append(b, revSection(2, imp)...)
	b = append(b, revSection(3, []byte{2, 1, 2})...)
	b = append(b, revSection(5, []byte{1, 0, 1})...)
	globals := revU32(n)
	for range n {
		globals = append(globals, 0x7f, 1, 0x41, 0, 0x0b)
	}
	b = append(b, revSection(6, globals)...)
	exp := []byte{3}
	exp = append(append(exp, revName("memory")...), 2, 0)
	exp = append(append(exp, revName("__guest_call")...), 0, 2)
	exp = append(append(exp, revName("_initialize")...), 0, 3)
	b = append(b, revSection(7, exp)...)
	call := []byte{0, 0x41, 0, 0x41, 2, 0x10, 1, 0x41, 1, 0x0b}
	code := []byte{2}
	code = append(append(code, revU32(uint32(len(call)))...), call...)
	code = append(code, 2, 0, 0x0b)
	b = append(b, revSection(10, code)...)
	return append(b, revSection(11, []byte{1, 0, 0x41, 0, 0x0b, 2, 'o', 'k'})...)
}

// A module with more mutable globals than exports a host compiles (valid,
// and stored, without snapshots) still runs: it gets no snapshot instead
// of its rewrite exceeding the export limit ("cannot run here").
func TestSnapshotManyGlobalsStillRuns(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("m", manyGlobalsModule(20000), modules.Options{})
	e.want("a", "m", "x", nil, "ok")
	e.want("b", "m", "x", nil, "ok")
	if s := e.hosts[0].SnapshotStatus(ns, "m"); !strings.HasPrefix(s, "refused: its 20000 mutable globals") {
		t.Fatalf("snapshot %q, want it refused for its globals", s)
	}
}

// Many first activations at once: one takes the snapshot, the others
// initialize themselves or start from it, and every one answers as an
// initialized instance (run with -race).
func TestSnapshotConcurrentFirstActivations(t *testing.T) {
	e, _ := snapEnv(t, initModule(false, false, false))
	const n = 8
	got := make(chan string, n)
	for i := range n {
		go func() {
			v, err := e.invoke(fmt.Sprint("c", i), "m", "x", nil)
			if err != nil {
				v = err.Error()
			}
			got <- v
		}()
	}
	for range n {
		if v := <-got; v != answer(1) {
			t.Errorf("answer %q, want %q", v, answer(1))
		}
	}
	if s := e.hosts[0].SnapshotStatus(ns, "m"); s != "ready" {
		t.Fatalf("snapshot %q, want ready", s)
	}
	e.want("late", "m", "x", nil, answer(1))
}

// Snapshots hold memory for as long as their module stays compiled, so
// their total is bounded (Config.MaxSnapshotBytes): a module whose
// snapshot would pass the bound is not snapshotted, and its instances
// initialize themselves and answer the same.
func TestSnapshotBytesAreBounded(t *testing.T) {
	bin := initModule(false, false, false)
	for _, tc := range []struct {
		limit int64
		want  string // both modules' snapshot status, as a prefix
	}{
		{1 << 20, "ready"},
		{1, "refused: this server's snapshots would hold more than 1 bytes (Config.MaxSnapshotBytes)"},
	} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MaxSnapshotBytes = tc.limit }})
			for _, m := range []string{"m1", "m2"} {
				e.put(m, bin, modules.Options{})
				e.want(m+"a", m, "x", nil, answer(1))
				e.want(m+"b", m, "x", nil, answer(1))
				e.want(m+"a", m, "x", nil, answer(2))
				if s := e.hosts[0].SnapshotStatus(ns, m); !strings.HasPrefix(s, tc.want) {
					t.Fatalf("%s's snapshot %q, want %q", m, s, tc.want)
				}
			}
		})
	}
}
