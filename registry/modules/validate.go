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
// or ErrTooLarge.
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
	// The interpreter validates the whole module without generating
	// machine code: cheap enough for every upload.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(pages))
	defer r.Close(ctx)
	cm, err := Compile(ctx, r, bin)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := CheckABI(cm); err != nil {
		return err
	}
	inst, err := instrument.Fuel(bin, instrument.Options{MaxMemoryPages: pages})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := Compile(ctx, r, inst); err != nil {
		return fmt.Errorf("%w: instrumented module does not validate: %v", ErrInvalid, err)
	}
	return nil
}

// Compile compiles bin with r, turning a panic inside wazero into an
// error: wazero v1.12's validator panics on some malformed binaries
// (found by FuzzFuel), and uploads are untrusted input.
func Compile(ctx context.Context, r wazero.Runtime, bin []byte) (cm wazero.CompiledModule, err error) {
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
