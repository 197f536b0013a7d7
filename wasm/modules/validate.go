package modules

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
)

// Limits bound the modules Put accepts. Zero fields take defaults.
type Limits struct {
	// MaxModuleBytes bounds a module's size; default 16 MiB.
	MaxModuleBytes int
	// MaxMemoryPages bounds a module's initial memory and its
	// Options.MaxMemoryPages; default 256 (16 MiB).
	MaxMemoryPages uint32
}

func (l Limits) withDefaults() Limits {
	if l.MaxModuleBytes <= 0 {
		l.MaxModuleBytes = 16 << 20
	}
	if l.MaxMemoryPages == 0 {
		l.MaxMemoryPages = 256
	}
	return l
}

// Validate checks that bin is a module nola can run: within the size
// limit; a valid WASM binary (it compiles with wazero); exporting memory
// and __guest_call(i32, i32) -> i32; importing wapc.__guest_request and
// nothing but the waPC and WASI functions the host provides (package abi),
// with their exact signatures; its initial memory within the page limit;
// and accepted by the host's fuel instrumentation. Errors wrap ErrInvalid
// or ErrTooLarge (also for a module beyond instrument.DefaultLimits).
//
// Memory: instrument.Check runs first and allocates nothing in
// proportion to what the module declares, so that wazero's decoder never
// meets a count the bytes do not back. After it, compiling costs memory
// roughly proportional to the module's size; BenchmarkCompileMemory
// measures the worst cases wazero v1.12 allows within the default limits
// (bytes allocated, twice-compiling Validate and the host's optimizing
// compiler alike): ~70 B per byte of module for module-wide structures
// (element entries 72, globals 47, data segments 28; a Go guest 56),
// except functions: validating an empty one costs ~3.3 KB, as its
// instrumented form (a checkpoint and the call-depth bound in every
// function) is compiled too, so the 2^16 allowed cost up to ~215 MiB
// (858 B per byte of a 256 KiB module); plus the worst function's
// validator stack, up to ~170
// MiB for a 1 MiB body of calls to a function with 4 results, plus ~130 B
// per declared local (≤ 35 MiB for the 2^18 allowed). One compilation of
// a 16 MiB module can thus allocate ~1.3 GiB at worst; Store bounds how
// many run at once (Config.MaxConcurrentCompiles).
func Validate(ctx context.Context, bin []byte, opts Options, l Limits) error {
	l = l.withDefaults()
	if len(bin) > l.MaxModuleBytes {
		return fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrTooLarge, len(bin), l.MaxModuleBytes)
	}
	if opts.MaxMemoryPages > l.MaxMemoryPages {
		return fmt.Errorf("%w: MaxMemoryPages %d exceeds the limit of %d", ErrInvalid, opts.MaxMemoryPages, l.MaxMemoryPages)
	}
	pages := l.MaxMemoryPages
	if opts.MaxMemoryPages > 0 {
		pages = opts.MaxMemoryPages
	}
	// Before wazero sees the module: its decoder allocates in proportion
	// to the counts the module declares (0xFFFFFFFF globals in 23 bytes
	// asked for ~171 GB and killed the process).
	if err := instrument.Check(bin, instrument.Limits{}); err != nil {
		if errors.Is(err, instrument.ErrLimit) {
			return fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// The interpreter validates the whole module without generating
	// machine code: cheap enough for every upload.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(pages))
	defer r.Close(ctx)
	cm, err := Compile(ctx, r, bin)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, brief(err))
	}
	if err := CheckABI(cm); err != nil {
		return err
	}
	inst, err := instrument.Fuel(bin, instrument.Options{MaxMemoryPages: pages})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := Compile(ctx, r, inst); err != nil {
		if errors.Is(err, instrument.ErrLimit) {
			// The instrumentation's code took a function past
			// MaxFunctionBytes (a body of little else but returns
			// or loops).
			return fmt.Errorf("%w: instrumented, %v", ErrTooLarge, err)
		}
		return fmt.Errorf("%w: instrumented module does not validate: %s", ErrInvalid, brief(err))
	}
	return nil
}

// brief shortens an error for the uploader: wazero's can list every
// value on the validator's stack (megabytes).
func brief(err error) string {
	const max = 1 << 10
	if msg := err.Error(); len(msg) > max {
		return msg[:max] + "…"
	}
	return err.Error()
}

// Compile is the package function Compile, run under the store's bound
// on concurrent compilations (Config.MaxConcurrentCompiles). It waits for
// its turn whatever ctx says, as compiling itself does (wazero does not
// stop a compilation for its context), so that a caller never mistakes
// a busy server for a bad module.
func (s *Store) Compile(ctx context.Context, r wazero.Runtime, bin []byte) (wazero.CompiledModule, error) {
	if err := s.compiles.Acquire(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("modules: waiting to compile: %w", err)
	}
	defer s.compiles.Release()
	return Compile(ctx, r, bin)
}

// Compile compiles bin with r, after instrument.Check (with the limits of
// an instrumented module): wazero's decoder allocates in proportion to
// the counts a module declares, before it reads the bytes behind them.
// It turns a panic inside wazero into an error: wazero v1.12's validator
// panics on some malformed binaries (found by FuzzFuel), and uploads are
// untrusted input. Every compilation of a module from the network goes
// through here, including that of modules stored before Check existed.
func Compile(ctx context.Context, r wazero.Runtime, bin []byte) (cm wazero.CompiledModule, err error) {
	if err := instrument.Check(bin, instrument.DefaultLimits().Instrumented()); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			cm, err = nil, fmt.Errorf("wazero panicked compiling the module: %v", p)
		}
	}()
	return r.CompileModule(ctx, bin)
}

// CheckABI checks a compiled module's exports and imports against the waPC
// ABI nola's host offers.
func CheckABI(cm wazero.CompiledModule) error {
	var errs []error
	if call, ok := cm.ExportedFunctions()[abi.GuestCall]; !ok {
		errs = append(errs, fmt.Errorf("does not export %s", abi.GuestCall))
	} else if got := signature(call); got != "ii->i" {
		errs = append(errs, fmt.Errorf("%s has signature %s, want ii->i", abi.GuestCall, got))
	}
	if f, ok := cm.ExportedFunctions()[abi.CreateExport]; ok && signature(f) != "ii->i" {
		errs = append(errs, fmt.Errorf("%s has signature %s, want ii->i (as %s)", abi.CreateExport, signature(f), abi.GuestCall))
	}
	if _, ok := cm.ExportedMemories()[abi.Memory]; !ok {
		errs = append(errs, fmt.Errorf("does not export its memory as %q", abi.Memory))
	}
	if len(cm.ImportedMemories()) > 0 {
		errs = append(errs, errors.New("imports a memory; a guest must define its own"))
	}
	for _, name := range []string{abi.WAPCInit, abi.Initialize} {
		if f, ok := cm.ExportedFunctions()[name]; ok && signature(f) != "->" {
			errs = append(errs, fmt.Errorf("%s has signature %s, want ->", name, signature(f)))
		}
	}
	hasRequest := false
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		var want abi.Signature
		var known bool
		switch mod {
		case abi.ModuleWAPC:
			want, known = abi.WAPCImports[name]
		case abi.ModuleWASI:
			want, known = abi.WASIImports[name]
		}
		if !known {
			errs = append(errs, fmt.Errorf("imports %s.%s, which the host does not provide", mod, name))
			continue
		}
		if got := signature(f); got != string(want) {
			errs = append(errs, fmt.Errorf("imports %s.%s with signature %s, want %s", mod, name, got, want))
		}
		if mod == abi.ModuleWAPC && name == abi.GuestRequest {
			hasRequest = true
		}
	}
	if !hasRequest {
		errs = append(errs, fmt.Errorf("does not import %s.%s", abi.ModuleWAPC, abi.GuestRequest))
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
	}
	return nil
}

func signature(f api.FunctionDefinition) string {
	enc := func(ts []api.ValueType) string {
		b := make([]byte, len(ts))
		for i, t := range ts {
			switch t {
			case api.ValueTypeI32:
				b[i] = 'i'
			case api.ValueTypeI64:
				b[i] = 'I'
			case api.ValueTypeF32:
				b[i] = 'f'
			case api.ValueTypeF64:
				b[i] = 'F'
			default:
				b[i] = '?'
			}
		}
		return string(b)
	}
	return enc(f.ParamTypes()) + "->" + enc(f.ResultTypes())
}
