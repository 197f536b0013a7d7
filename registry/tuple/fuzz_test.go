package tuple

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnpack checks that decoding is total and canonical: every input
// either fails with ErrInvalid or decodes to a tuple that packs back to
// exactly the same bytes. Canonical decoding is what keeps two distinct
// store keys from meaning one registry key.
func FuzzUnpack(f *testing.F) {
	for _, t := range []Tuple{
		{},
		{nil},
		{"ns", []byte{0, 1, 0xff}, int64(-7), int64(0), int64(1 << 62)},
		{true, false, Tuple{nil, "a\x00b", Tuple{}}},
		{int64(-1 << 63), int64(1<<63 - 1), int64(255), int64(-256)},
	} {
		f.Add(t.Pack())
	}
	// Non-canonical integers (a leading zero magnitude byte), truncations,
	// unknown codes.
	for _, b := range [][]byte{{0x15, 0x00}, {0x13, 0xff}, {0x16, 0x00, 0x01}, {0x1c}, {0x05, 0x00, 0xff}, {0x02, 'a'}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tup, err := Unpack(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Unpack(%x): error %v does not wrap ErrInvalid", b, err)
			}
			return
		}
		if again := tup.Pack(); !bytes.Equal(again, b) {
			t.Fatalf("Unpack(%x) = %#v packs to %x: decoding is not canonical", b, tup, again)
		}
		// The allocation-free readers agree with Unpack on a leading element.
		if len(tup) > 0 {
			switch v := tup[0].(type) {
			case string:
				s, _, err := ReadString(b)
				if err != nil || s != v {
					t.Fatalf("ReadString(%x) = %q, %v; Unpack says %q", b, s, err, v)
				}
			case int64:
				n, _, err := ReadInt(b)
				if err != nil || n != v {
					t.Fatalf("ReadInt(%x) = %d, %v; Unpack says %d", b, n, err, v)
				}
			}
		}
	})
}
