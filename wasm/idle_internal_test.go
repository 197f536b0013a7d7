package wasm

import (
	"testing"
	"unsafe"

	"github.com/nolaproject/nola/internal/race"
	"github.com/nolaproject/nola/nola"
)

// maxIdleInstanceHeap bounds the Go heap one idle C counter instance holds
// once trimmed (liveInstanceHeap, 1 000 instances; BenchmarkLiveInstanceHeap
// on 5 000 in brackets): 1 840 B [1 872] before the invocation state left
// the instance struct (issue 16, item 7), 1 455 B [1 487] after,
// 1 290–1 330 B [1 372] with the linear memory's bookkeeping cut too,
// 1 150–1 190 B [1 238] without the C counter's unused table, 1 260–1 285 B
// with the call-depth global (wasm.Config.MaxCallDepth: wazero's global
// instance, its slot in the instance's data, a longer slice). The bound
// fails if the invocation state (+385 B) or the table (+134 B) comes
// back; the syscall.Mmap map entry (+64 B) only just.
const maxIdleInstanceHeap = 1330

// An idle instance holds only what lives as long as it: its structs stay
// small (the invocation's state is apart; the actor keeps no Ref; the
// linear memory's wrappers keep no fallback or budget pointer they do not
// need), the engine trim drops the
// invocation state with the call engine, the next call allocates it again
// and answers from the same instance's state, and a trimmed instance's
// whole heap stays under maxIdleInstanceHeap. Each check fails with the
// per-invocation fields back in the struct, or with the trim keeping them
// (both checked).
func TestIdleInstanceIsSmall(t *testing.T) {
	for _, s := range []struct {
		name      string
		size, max uintptr
	}{
		{"instance (per-invocation state belongs in invocation)", unsafe.Sizeof(instance{}), 192},
		{"actor (its Context has the Ref)", unsafe.Sizeof(creatorActor{}), 24},
		{"budgetMemory", unsafe.Sizeof(budgetMemory{}), 32},
	} {
		if s.size > s.max {
			t.Errorf("%s is %d B, want ≤ %d (one per live WASM actor)", s.name, s.size, s.max)
		}
	}
	h, mod := counterCHost(t)
	in, err := h.instantiate(initCx{}, mod, nola.Ref{Namespace: "t", ID: "small"})
	if err != nil {
		t.Fatal(err)
	}
	defer in.close()
	call := func(want string) {
		t.Helper()
		if !in.acquire() {
			t.Fatal("instance closed")
		}
		got, err := in.invoke(initCx{}, "inc", nil)
		in.release()
		if err != nil || string(got) != want {
			t.Fatalf("inc: %q, %v; want %s", got, err, want)
		}
	}
	call("0")
	in.trimEngine(in.idleSince() - 1) // not idle long enough: kept
	if in.invocation == nil || in.guestCall == nil {
		t.Fatal("the trim dropped the state of an instance not idle for EngineIdle")
	}
	in.trimEngine(in.idleSince())
	if in.invocation != nil || in.guestCall != nil {
		t.Fatal("an idle instance keeps its invocation state or call engine after the trim")
	}
	call("1")
	if in.invocation == nil {
		t.Fatal("a call after the trim left no invocation state")
	}
	if race.Enabled {
		return // the race detector changes heap figures
	}
	n := 0
	per := liveInstanceHeap(t, h, mod, func() bool { n++; return n <= 1000 })
	t.Logf("%.0f B of Go heap per idle instance", per)
	if per > maxIdleInstanceHeap {
		t.Errorf("an idle trimmed C instance holds %.0f B of Go heap, want ≤ %d", per, maxIdleInstanceHeap)
	}
}
