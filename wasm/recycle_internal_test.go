package wasm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
)

// instState is what a guest can observe of its instance: its memory, byte
// for byte, and its mutable globals.
type instState struct {
	mem     []byte
	globals []uint64
}

func stateOf(t *testing.T, in *instance) instState {
	t.Helper()
	b, ok := in.mem.Read(0, in.mem.Size())
	if !ok {
		t.Fatal("memory unreadable")
	}
	s := instState{mem: bytes.Clone(b)}
	for _, g := range in.mod.snap.globals {
		s.globals = append(s.globals, in.m.ExportedGlobal(g.Name).Get())
	}
	return s
}

// carried are the instance fields a recycled instance takes over from the
// instance it was (the wazero module and the Host's accounting of it) or
// that its activation sets; every other field is per-invocation host
// state and must start zero.
var carried = map[string]bool{
	"h": true, "mod": true, "ref": true, "seq": true, "m": true, "mem": true, "guestCall": true,
	"fuel": true, "lin": true, "overhead": true, "state": true, "lastUsed": true, "lastSeen": true,
}

// A recycled instance of the Go counter is indistinguishable from one
// started from the snapshot: the same memory byte for byte, the same
// globals, and no host-side state of the instance it was (every
// per-invocation field zero, though its last invocation left output, a
// refused growth and a result buffer behind). The released struct is
// closed and lets go of the module. Skipping the memory's remap makes the
// memories differ: the comparison can fail.
func TestRecycledInstanceEqualsFresh(t *testing.T) {
	for _, skip := range []string{"", "memory"} {
		t.Run("skip="+skip, func(t *testing.T) {
			h, c := counterHost(t, "counter-go", Config{})
			ref := nola.Ref{Namespace: "t", ID: "a"}
			first, err := h.instantiate(initCx{}, c, ref) // takes the snapshot
			if err != nil {
				t.Fatal(err)
			}
			first.close()
			fresh, err := h.instantiate(initCx{}, c, ref)
			if err != nil {
				t.Fatal(err)
			}
			want := stateOf(t, fresh)
			used, err := h.instantiate(initCx{}, c, ref)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if !used.acquire() {
					t.Fatal("instance closed")
				}
				v, err := used.invoke(initCx{}, "inc", nil)
				if used.release() || err != nil || string(v) != fmt.Sprint(i) {
					t.Fatalf("inc %d: %q, %v", i, v, err)
				}
			}
			if bytes.Equal(stateOf(t, used).mem, want.mem) {
				t.Fatal("the invocations changed nothing in memory: the test shows nothing")
			}
			used.output, used.refused, used.respBuf, used.effects = []byte("left"), 1<<20, make([]byte, 8), 3
			m := used.m
			recycleSkip = skip
			h.retire(used)
			recycleSkip = ""
			if used.state.Load() != instClosed || used.m != nil || used.lin != nil {
				t.Fatal("the retired struct still holds the module")
			}
			if used.acquire() {
				t.Fatal("the retired struct can be acquired")
			}
			got, err := h.instantiate(initCx{}, c, ref)
			if err != nil {
				t.Fatal(err)
			}
			if got.m != m || h.Stats().Recycled != 1 {
				t.Fatalf("the activation did not take the recycled instance (stats %+v)", h.Stats())
			}
			v := reflect.ValueOf(got).Elem()
			for i := range v.NumField() {
				if f := v.Type().Field(i); !carried[f.Name] && !v.Field(i).IsZero() {
					t.Errorf("recycled instance's %s is %v, want zero", f.Name, v.Field(i))
				}
			}
			gs := stateOf(t, got)
			memSame := bytes.Equal(gs.mem, want.mem)
			if memSame != (skip == "") || !reflect.DeepEqual(gs.globals, want.globals) {
				t.Fatalf("skip %q: memory equal to a fresh instance's = %v (%d vs %d bytes), globals %v vs %v",
					skip, memSame, len(gs.mem), len(want.mem), gs.globals, want.globals)
			}
			if skip != "" {
				return
			}
			if !got.acquire() {
				t.Fatal("recycled instance closed")
			}
			v2, err := got.invoke(initCx{}, "inc", nil)
			if got.release() || err != nil || string(v2) != "0" {
				t.Fatalf("recycled instance's first inc: %q, %v", v2, err)
			}
			fresh.close()
			got.close()
		})
	}
}

// goWatch is a runtime whose tasks report their return on done.
type goWatch struct {
	rt.Runtime
	done chan string
}

func (r goWatch) Go(name string, f func()) {
	r.Runtime.Go(name, func() {
		defer func() { r.done <- name }()
		f()
	})
}

// The premake task stops when it cannot make an instance (the memory
// budget full): it does not spin, retrying without end, until memory
// frees. It returns, and the next take starts it again.
func TestPremakeStopsWhenBudgetFull(t *testing.T) {
	r := goWatch{Runtime: rt.NewReal(), done: make(chan string, 16)}
	h, c := counterHost(t, "counter-go", Config{Runtime: r, Premade: 1})
	// Fill the budget before the snapshot's premake task starts: it
	// can make nothing.
	full := h.mem.limit
	h.mem.used.Add(full)
	first, err := h.instantiate(initCx{}, c, nola.Ref{Namespace: "t", ID: "a"})
	if err == nil {
		first.close()
		t.Fatal("instantiated over a full budget")
	}
	h.mem.used.Add(-full)
	first, err = h.instantiate(initCx{}, c, nola.Ref{Namespace: "t", ID: "a"}) // takes the snapshot, starts the task
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	<-r.done // the task filled the pool
	if s := h.Stats(); s.Pooled != 1 {
		t.Fatalf("stats %+v, want 1 premade", s)
	}
	h.mem.used.Add(full)
	second, err := h.instantiate(initCx{}, c, nola.Ref{Namespace: "t", ID: "b"}) // takes it, starts the task
	if err != nil {
		t.Fatal(err)
	}
	defer second.close()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Error("the premake task still runs 30 s after the budget refused it an instance")
	}
	h.mem.used.Add(-full) // lets a spinning task end
}
