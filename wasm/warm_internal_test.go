package wasm

import (
	"log/slog"
	"testing"

	"github.com/nolaproject/nola/nola"
)

// A warm call writes only the invocation's hot fields and leaves its cold
// state and the fuel global alone (issue 16, item 2), yet every call
// starts as a fresh one would: the cold state is reset after an
// invocation that wrote it, and the fuel is full. Each check fails if
// begin skips a reset it needs (the cold state with touched set, the fuel
// with fuelFull unset), if end leaves the fuel unfilled, or if a writer
// of the cold state forgets to mark it.
func TestWarmCallStartsFresh(t *testing.T) {
	h, mod := counterCHost(t)
	in, err := h.instantiate(initCx{}, mod, nola.Ref{Namespace: "t", ID: "warm"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	n := 0
	call := func() {
		t.Helper()
		if !in.acquire() {
			t.Fatal("instance closed")
		}
		got, err := in.invoke(initCx{}, "inc", nil)
		in.release()
		if want := string(rune('0' + n)); err != nil || string(got) != want {
			t.Fatalf("inc: %q, %v; want %s", got, err, want)
		}
		n++
	}
	call()
	if in.touched {
		t.Error("a plain call marked the invocation's cold state as written")
	}
	if got := in.fuel.Get(); !in.fuelFull || got != h.cfg.SliceFuel {
		t.Errorf("after a call: fuel %d (full: %v), want %d: end refills it", got, in.fuelFull, h.cfg.SliceFuel)
	}

	// What an invocation's host calls, refills and logs leave behind.
	in.touch()
	in.hostCalls, in.refills, in.logBytes, in.refused, in.unsupported = 7, 3, 10, 1, "no KV here"
	in.hostErr, in.hostResp = "timeout: slow", []byte("r")
	call()
	if in.hostCalls != 0 || in.refills != 0 || in.logBytes != 0 || in.refused != 0 || in.unsupported != "" ||
		in.hostErr != "" || in.hostResp != nil || in.touched {
		t.Errorf("the cold state survived into the next call: %+v (touched: %v)", in.invCold, in.touched)
	}

	// A fuel global someone else changed (a snapshot's restore, a start
	// function) is filled by begin: the counter needs far less than a
	// slice, so a refill means the call started on the fuel left.
	in.fuel.Set(1)
	in.fuelFull = false
	call()
	if in.refills != 0 {
		t.Errorf("a call after the fuel changed ran %d refills: begin did not fill it", in.refills)
	}

	// Every writer of the cold state marks it.
	for _, w := range []struct {
		name  string
		write func()
	}{
		{"countHostCall", in.countHostCall},
		{"logMsg", func() { in.logMsg(slog.LevelDebug, []byte("m")) }},
		{"capture", func() { in.capture([]byte("out")) }},
		{"refusedGrowth", func() { in.refusedGrowth(1 << 20) }},
		{"fail", func() {
			defer func() { _ = recover() }()
			in.fail(TrapABI, "test")
		}},
	} {
		in.touched = false
		w.write()
		if !in.touched {
			t.Errorf("%s writes the invocation's cold state without marking it", w.name)
		}
	}
}

// Refills of a compute-only call do not pile up across calls: each call
// starts its fuel budget afresh. (refill marks the cold state it writes;
// without that mark the next call would not reset the count, and the sum
// over calls would reach MaxFuel.)
func TestRefillsDoNotAccumulate(t *testing.T) {
	h, mod := counterHost(t, "counter-c", Config{SliceFuel: 2, MaxFuel: 20})
	in, err := h.instantiate(initCx{}, mod, nola.Ref{Namespace: "t", ID: "refills"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	for i := range 50 {
		if !in.acquire() {
			t.Fatal("instance closed")
		}
		_, err := in.invoke(initCx{}, "inc", nil)
		in.release()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}
