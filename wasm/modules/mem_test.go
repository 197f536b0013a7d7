package modules_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// compileBytesPerByte bounds what Validate allocates per byte of module
// beyond memBound (see BenchmarkCompileMemory), for FuzzValidate's
// memory check.
const compileBytesPerByte = 400

// wasmModule assembles a module from (id, body) sections.
func wasmModule(sections ...any) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for i := 0; i < len(sections); i += 2 {
		body := sections[i+1].(string)
		b = append(b, byte(sections[i].(int)))
		b = append(b, uleb(uint32(len(body)))...)
		b = append(b, body...)
	}
	return b
}

func uleb(v uint32) string {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return string(append(b, c))
		}
		b = append(b, c|0x80)
	}
}

// vec is a vector of n copies of elem.
func vec(n int, elem string) string { return uleb(uint32(n)) + strings.Repeat(elem, n) }

// adversarial returns modules at nola's default limits (instrument.
// DefaultLimits) that make wazero work hardest per byte: the worst cases
// of compile memory relative to module size.
func adversarial() map[string][]byte {
	const void = "\x01\x60\x00\x00"
	body := func(code string) string { b := "\x00" + code + "\x0b"; return uleb(uint32(len(b))) + b }
	return map[string][]byte{
		// 2^16 - 2 empty functions, and the import and the export that
		// let it pass CheckABI: validating it compiles the instrumented
		// form too, which adds code to every function.
		"functions": wasmModule(1, "\x03\x60\x02\x7f\x7f\x00\x60\x00\x00\x60\x02\x7f\x7f\x01\x7f",
			2, "\x01\x04wapc\x0f__guest_request\x00\x00",
			3, uleb(1<<16-1)+"\x02"+strings.Repeat("\x01", 1<<16-2), 5, "\x01\x00\x01",
			7, "\x02\x06memory\x02\x00\x0c__guest_call\x00\x01",
			10, uleb(1<<16-1)+"\x04\x00\x41\x01\x0b"+strings.Repeat("\x02\x00\x0b", 1<<16-2)),
		// 250,000 locals (of 2^18) in 5 functions of 50,000, the
		// per-function limit.
		"locals": wasmModule(1, void, 3, vec(5, "\x00"), 10, vec(5, "\x06\x01\xd0\x86\x03\x7f\x0b")),
		// A function of 1 MiB calling one with 4 results: every 2 bytes
		// push 4 values on the validator's stack.
		"results": wasmModule(1, "\x02\x60\x00\x00\x60\x00\x04"+strings.Repeat("\x7f", 4), 3, "\x02\x00\x01",
			10, "\x02"+body(strings.Repeat("\x10\x01", 1<<19-8))+body(strings.Repeat("\x41\x00", 4))),
		// 2^18 passive data segments, 2^16 globals, 2^18 element entries.
		"data":     wasmModule(12, uleb(1<<18), 11, vec(1<<18, "\x01\x00")),
		"globals":  wasmModule(6, vec(1<<16-1, "\x7f\x00\x41\x00\x0b")),
		"elements": wasmModule(1, void, 3, "\x01\x00", 9, "\x01\x01\x00"+vec(1<<18, "\x00"), 10, "\x01"+body("")),
	}
}

// BenchmarkCompileMemory reports what validating (interpreter, twice: the
// module and its instrumented form) and compiling (the host's optimizing
// compiler) allocate per byte of module, for the example guests and the
// adversarial modules.
func BenchmarkCompileMemory(b *testing.B) {
	ctx := context.Background()
	bins := adversarial()
	bins["counter.c"] = wasmtest.C(b, "counter")
	bins["echo.go"] = wasmtest.Go(b, "echo")
	for name, bin := range bins {
		b.Run("validate/"+name, func(b *testing.B) {
			var total uint64
			for range b.N {
				total += allocated(func() { _ = modules.Validate(ctx, bin, modules.Options{}, modules.Limits{}) })
			}
			b.ReportMetric(float64(len(bin)), "module-B")
			b.ReportMetric(float64(total)/float64(b.N)/float64(len(bin)), "alloc-B/module-B")
			b.ReportMetric(float64(total)/float64(b.N)/(1<<20), "alloc-MiB")
		})
		b.Run("compile/"+name, func(b *testing.B) {
			var total uint64
			for range b.N {
				total += allocated(func() {
					r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig())
					_, _ = modules.Compile(ctx, r, bin)
					_ = r.Close(ctx)
				})
			}
			b.ReportMetric(float64(len(bin)), "module-B")
			b.ReportMetric(float64(total)/float64(b.N)/float64(len(bin)), "alloc-B/module-B")
			b.ReportMetric(float64(total)/float64(b.N)/(1<<20), "alloc-MiB")
		})
	}
}
