package abi_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/nolaproject/nola/wasm/abi"
)

func TestFieldsRoundTrip(t *testing.T) {
	b := abi.AppendField(nil, []byte("key"))
	b = abi.AppendStringField(b, "")
	b = abi.AppendU32Field(b, 7)
	b = abi.AppendU64Field(b, 1<<40)
	f, err := abi.Fields(b, 4)
	if err != nil {
		t.Fatal(err)
	}
	u32, err1 := abi.U32(f[2])
	u64, err2 := abi.U64(f[3])
	if string(f[0]) != "key" || len(f[1]) != 0 || u32 != 7 || u64 != 1<<40 || err1 != nil || err2 != nil {
		t.Fatalf("decoded %q %q %d %d (%v %v)", f[0], f[1], u32, u64, err1, err2)
	}
	// The exact bytes are the documented format: LE u32 length + bytes.
	if want := []byte{3, 0, 0, 0, 'k', 'e', 'y'}; !bytes.Equal(b[:7], want) {
		t.Fatalf("encoding %v, want %v", b[:7], want)
	}
}

func TestMalformedFields(t *testing.T) {
	good := abi.AppendField(abi.AppendField(nil, []byte("a")), []byte("b"))
	for name, c := range map[string]struct {
		b []byte
		n int
	}{
		"truncated length": {[]byte{1, 0}, 1},
		"length past end":  {[]byte{9, 0, 0, 0, 'x'}, 1},
		"too few fields":   {good, 3},
		"trailing bytes":   {good, 1},
	} {
		if _, err := abi.Fields(c.b, c.n); !errors.Is(err, abi.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := abi.U32([]byte{1, 2}); !errors.Is(err, abi.ErrMalformed) {
		t.Error("short u32 accepted")
	}
	if _, err := abi.U64([]byte{1, 2, 3, 4}); !errors.Is(err, abi.ErrMalformed) {
		t.Error("short u64 accepted")
	}
}

func TestSignatures(t *testing.T) {
	p, r := abi.WAPCImports[abi.HostCall].Split()
	if len(p) != 8 || string(r) != "i" {
		t.Fatalf("__host_call: %q -> %q", p, r)
	}
	p, r = abi.WASIImports["proc_exit"].Split()
	if string(p) != "i" || len(r) != 0 {
		t.Fatalf("proc_exit: %q -> %q", p, r)
	}
	if p, _ := abi.WASIImports["clock_time_get"].Split(); string(p) != "iIi" {
		t.Fatalf("clock_time_get params %q", p)
	}
}
