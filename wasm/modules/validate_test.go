package modules_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// bomb is the 23-byte module of issue 10: a global section declaring
// 0xFFFFFFFF globals in 13 bytes, for which wazero v1.12's decoder
// allocates ~171 GB.
const bomb = "\x00asm\x01\x00\x00\x00\x06\x0d\xff\xff\xff\xff\x0f\x00\x00\x00\x00\x00\x00\x00\x00"

// localsBomb is well-formed: one function declaring 0xFFFFFFFF i32 locals
// in one 6-byte group, for which wazero allocates 32 GiB (8 B a local).
const localsBomb = "\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type () -> ()
	"\x03\x02\x01\x00" + // one function
	"\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b" // its body

// memBound is how much a validation that fails may allocate: generous,
// since an error path allocates little, and orders of magnitude below
// what the bombs ask for.
const memBound = 64 << 20

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The bombs fail validation with a typed error, allocating little.
func TestValidateRejectsBombsWithBoundedMemory(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		bin  string
		want error
	}{
		"globals": {bomb, modules.ErrInvalid},
		"locals":  {localsBomb, modules.ErrTooLarge},
	} {
		var err error
		if n := allocated(func() { err = modules.Validate(ctx, []byte(c.bin), modules.Options{}, modules.Limits{}) }); n > memBound {
			t.Errorf("%s: validation allocated %d bytes", name, n)
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// A function within MaxFunctionBytes whose instrumented form is not (700
// KB of returns, each a 2-byte branch once rewritten) is too large, not
// invalid: the uploader can do something about it.
func TestValidateTooLargeOnceInstrumented(t *testing.T) {
	body := "\x00" + strings.Repeat("\x0f", 700_000) + "\x0b"
	call := "\x00\x41\x01\x0b"
	bin := wasmModule(1, "\x03\x60\x02\x7f\x7f\x00\x60\x00\x00\x60\x02\x7f\x7f\x01\x7f",
		2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x02\x02\x01", 5, "\x01\x00\x01",
		7, "\x02\x06memory\x02\x00\x0c__guest_call\x00\x01",
		10, "\x02"+uleb(uint32(len(call)))+call+uleb(uint32(len(body)))+body)
	r := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigInterpreter())
	defer r.Close(context.Background())
	if _, err := modules.Compile(context.Background(), r, bin); err != nil {
		t.Fatalf("the module itself: %v", err)
	}
	err := modules.Validate(context.Background(), bin, modules.Options{}, modules.Limits{})
	if !errors.Is(err, modules.ErrTooLarge) || !strings.Contains(err.Error(), "instrumented") {
		t.Fatalf("Validate: %v, want ErrTooLarge once instrumented", err)
	}
}

// Compile, which the host's compile path of stored modules also goes
// through, checks the module before wazero sees it: the error is Check's
// (wazero's errors wrap nothing of ours).
func TestCompileChecksBeforeWazero(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	if _, err := modules.Compile(ctx, r, []byte(bomb)); !errors.Is(err, instrument.ErrUnsupported) {
		t.Errorf("globals bomb: %v, want instrument.ErrUnsupported", err)
	}
	if _, err := modules.Compile(ctx, r, []byte(localsBomb)); !errors.Is(err, instrument.ErrLimit) {
		t.Errorf("locals bomb: %v, want instrument.ErrLimit", err)
	}
}

// The whole upload path, in a child process whose address space is
// limited (so that a regression fails this test instead of taking the
// machine's memory): Validate of the bomb returns; before Check it died
// with "fatal error: runtime: out of memory".
func TestValidateBombInBoundedProcess(t *testing.T) {
	if os.Getenv("NOLA_BOMB_CHILD") == "1" {
		limitAddressSpace(t, 4<<30)
		for _, bin := range []string{bomb, localsBomb} {
			err := modules.Validate(context.Background(), []byte(bin), modules.Options{}, modules.Limits{})
			if !errors.Is(err, modules.ErrInvalid) && !errors.Is(err, modules.ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
		}
		os.Stdout.WriteString("bombs rejected\n")
		return
	}
	if testing.Short() {
		t.Skip("starts a process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestValidateBombInBoundedProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NOLA_BOMB_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bombs rejected") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// FuzzValidate runs the whole upload validation (Check, compilation by
// wazero, the ABI check, instrumentation and its compilation) on mutated
// modules: it never panics, returns only typed errors, and never
// allocates more than a generous multiple of the module's size.
func FuzzValidate(f *testing.F) {
	for _, n := range wasmtest.CGuests {
		f.Add(wasmtest.C(f, n))
	}
	f.Add([]byte(bomb))
	f.Add([]byte(localsBomb))
	// The adversarial modules (up to 1 MiB) and a Go guest (~3 MB, 0.5 s
	// to validate) are in the seed corpus run as a test, not when
	// fuzzing: mutating them would be too slow to be useful.
	if fl := flag.Lookup("test.fuzz"); fl == nil || fl.Value.String() == "" {
		for _, bin := range adversarial() {
			f.Add(bin)
		}
		f.Add(wasmtest.Go(f, "echo"))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, bin []byte) {
		var err error
		n := allocated(func() { err = modules.Validate(ctx, bin, modules.Options{}, modules.Limits{}) })
		if err != nil && !errors.Is(err, modules.ErrInvalid) && !errors.Is(err, modules.ErrTooLarge) {
			t.Fatalf("untyped error: %v", err)
		}
		if bound := uint64(4*memBound + compileBytesPerByte*len(bin)); n > bound {
			t.Fatalf("validating %d bytes allocated %d (bound %d)", len(bin), n, bound)
		}
	})
}

// countingRuntime records how many permits of its semaphores are held.
type countingRuntime struct {
	rt.Runtime
	mu         sync.Mutex
	held, peak int
	acquired   int
}

func (c *countingRuntime) NewSema(n int) rt.Sema {
	return &countingSema{Sema: c.Runtime.NewSema(n), c: c}
}

type countingSema struct {
	rt.Sema
	c *countingRuntime
}

func (s *countingSema) Acquire(ctx context.Context) error {
	if err := s.Sema.Acquire(ctx); err != nil {
		return err
	}
	s.c.mu.Lock()
	s.c.held++
	s.c.acquired++
	s.c.peak = max(s.c.peak, s.c.held)
	s.c.mu.Unlock()
	return nil
}

func (s *countingSema) Release() {
	s.c.mu.Lock()
	s.c.held--
	s.c.mu.Unlock()
	s.Sema.Release()
}

// Validations (Put) and compilations (Store.Compile) hold one permit of
// the store's compile semaphore each, at most MaxConcurrentCompiles at
// once, and give it back whatever the outcome.
func TestCompilesAreBounded(t *testing.T) {
	ctx := context.Background()
	cr := &countingRuntime{Runtime: rt.NewReal()}
	ms := modules.New(newStore(t, kv.Limits{}), modules.Config{Runtime: cr, MaxConcurrentCompiles: 1})
	counter := wasmtest.C(t, "counter")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bin := counter
			if i%2 == 1 {
				bin = []byte(bomb)
			}
			_, _ = ms.Put(ctx, "ns", fmt.Sprint("m", i), bin, modules.Options{})
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer r.Close(ctx)
			_, _ = ms.Compile(ctx, r, bin)
		}()
	}
	wg.Wait()
	if cr.acquired != 8 || cr.peak != 1 || cr.held != 0 {
		t.Fatalf("acquired %d permits, at most %d at once, %d still held; want 8, 1, 0", cr.acquired, cr.peak, cr.held)
	}
}
