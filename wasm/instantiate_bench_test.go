package wasm

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// initCx is the host context of an instantiation outside a server: the
// guest's initialization calls no nola host function (any would panic on
// the nil hostContext).
type initCx struct{ hostContext }

func (initCx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (initCx) Done() <-chan struct{}       { return nil }
func (initCx) Err() error                  { return nil }
func (initCx) Value(any) any               { return nil }

// rusage returns the process's CPU time (user and system, all threads)
// and page faults so far.
func rusage() (cpu time.Duration, faults int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Minflt + ru.Majflt
}

var benchMods = sync.OnceValue(func() *modules.Store {
	return modules.New(memkv.New(rt.NewReal(), memkv.Options{}), modules.Config{})
})

// BenchmarkInstantiate creates one instance of a guest per iteration —
// memory, the image or the data segments, tables, _initialize (or the
// module's snapshot) — and closes it: the WASM part of creating an actor,
// without the engine's placement. The snapshot is taken by the first
// instantiation, before the timed loop. Go-Recycled retires each instance
// as a deactivated actor's is (recycled, see recycle.go) instead of
// closing it: every iteration after the first takes the instance the one
// before recycled, and its figure is the reset and the take.
func BenchmarkInstantiate(b *testing.B) {
	for _, c := range []struct {
		name, guest string
		goGuest     bool
		cfg         Config
		noFile      bool
		recycle     bool // retire each instance (recycling it) instead of closing it
	}{
		{"C", "counter", false, Config{}, false, false},
		{"C-NoMemoryImage", "counter", false, Config{NoMemoryImage: true}, false, false},
		{"Go", "counter", true, Config{}, false, false},
		{"Go-Recycled", "counter", true, Config{}, false, true},
		{"Go-Recycled-SnapshotCopied", "counter", true, Config{}, true, true},
		{"Go-Recycled-HeapMemory", "counter", true, Config{HeapMemory: true}, false, true},
		{"Go-SnapshotCopied", "counter", true, Config{}, true, false},
		{"Go-HeapMemory", "counter", true, Config{HeapMemory: true}, false, false},
		{"Go-NoSnapshot", "counter", true, Config{NoSnapshot: true}, false, false},
		{"Go-NoSnapshot-HeapMemory", "counter", true, Config{NoSnapshot: true, HeapMemory: true}, false, false},
		{"Go-NoSnapshot-ImageCopied", "counter", true, Config{NoSnapshot: true}, true, false},
		{"Go-NoMemoryImage", "counter", true, Config{NoMemoryImage: true, NoSnapshot: true}, false, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			mods := benchMods()
			id := c.guest + "-c"
			bin := func() []byte { return wasmtest.C(b, c.guest) }
			if c.goGuest {
				id = c.guest + "-go"
				bin = func() []byte { return wasmtest.Go(b, c.guest) }
			}
			if _, err := mods.Stat(ctx, "t", id); err != nil {
				if _, err := mods.Put(ctx, "t", id, bin(), modules.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			noImageFile = c.noFile
			defer func() { noImageFile = false }()
			cfg := c.cfg
			cfg.Runtime, cfg.Modules, cfg.CompilationCache = rt.NewReal(), mods, testCache()
			h, err := New(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(ctx)
			mod, err := h.load(ctx, "t", id)
			if err != nil {
				b.Fatal(err)
			}
			ref := nola.Ref{Namespace: "t", ID: "a"}
			// The first instance takes the module's snapshot.
			in, err := h.instantiate(initCx{}, mod, ref)
			if err != nil {
				b.Fatal(err)
			}
			in.close()
			b.ReportAllocs()
			cpu0, flt0 := rusage()
			for b.Loop() {
				in, err := h.instantiate(initCx{}, mod, ref)
				if err != nil {
					b.Fatal(err)
				}
				if c.recycle {
					h.retire(in)
				} else {
					in.close()
				}
			}
			cpu1, flt1 := rusage()
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(flt1-flt0)/float64(b.N), "faults/op")
		})
	}
}

// testCache is one compilation cache for the package's tests and
// benchmarks (on every platform: this file has no build constraint).
var testCache = sync.OnceValue(wasmtest.CompilationCache)
