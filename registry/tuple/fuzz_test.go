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

// FuzzPack checks the encoding from the other side: tuples built from
// arbitrary strings, bytes and integers (nested too) pack to bytes that
// unpack to the same tuple, that the allocation-free appenders reproduce,
// and that compare bytewise exactly as the tuples compare element by
// element (the order-preserving property range scans rely on).
func FuzzPack(f *testing.F) {
	f.Add(uint16(0), uint16(0), "", []byte{}, int64(0), "", int64(0))
	f.Add(uint16(0x1b), uint16(0x2e4), "a\x00b", []byte{0, 0xff}, int64(-256), "a", int64(255))
	f.Add(uint16(0xffff), uint16(0x0123), "\xff\x00", []byte{0xff}, int64(-1<<63), "\x00", int64(1<<63-1))
	f.Fuzz(func(t *testing.T, shapeA, shapeB uint16, s string, b []byte, n int64, s2 string, n2 int64) {
		a := buildTuple(shapeA, s, b, n, s2, n2)
		c := buildTuple(shapeB, s2, []byte(s), n2, s, n)
		pa, pc := a.Pack(), c.Pack()
		for _, x := range []struct {
			tup    Tuple
			packed []byte
		}{{a, pa}, {c, pc}} {
			got, err := Unpack(x.packed)
			if err != nil {
				t.Fatalf("Unpack(Pack(%#v)) = %v", x.tup, err)
			}
			if !equalTuple(got, x.tup) {
				t.Fatalf("Unpack(Pack(%#v)) = %#v", x.tup, got)
			}
		}
		if want, got := compareTuple(a, c), bytes.Compare(pa, pc); want != got {
			t.Fatalf("%#v vs %#v compare %d, their packings %d (%x vs %x)", a, c, want, got, pa, pc)
		}
		if got := AppendInt(AppendBytes(AppendString(nil, s), b), n); !bytes.Equal(got, (Tuple{s, b, n}).Pack()) {
			t.Fatalf("appenders: %x, Pack: %x", got, (Tuple{s, b, n}).Pack())
		}
	})
}

// buildTuple makes a tuple of up to five elements from the values, each
// element's kind chosen by three bits of shape: a tree of different shapes
// over the same values, so that comparisons meet every pair of kinds.
func buildTuple(shape uint16, s string, b []byte, n int64, s2 string, n2 int64) Tuple {
	var t Tuple
	for i := range int(shape>>15) + 4 {
		switch (shape >> (3 * i)) & 7 {
		case 0:
			t = append(t, s)
		case 1:
			t = append(t, bytes.Clone(b))
		case 2:
			t = append(t, n)
		case 3:
			t = append(t, n2)
		case 4:
			t = append(t, s2)
		case 5:
			t = append(t, Tuple{nil, s, n})
		case 6:
			t = append(t, n%2 == 0)
		case 7:
			if i > 0 {
				return t // a shorter tuple: prefixes compare first
			}
			t = append(t, nil)
		}
	}
	return t
}

// kindRank orders element kinds as the tuple layer's type codes do.
func kindRank(e any) int {
	switch v := e.(type) {
	case nil:
		return 0
	case []byte:
		return 1
	case string:
		return 2
	case Tuple:
		return 5
	case int64:
		return 20
	case bool:
		if v {
			return 39
		}
		return 38
	}
	panic("unexpected element")
}

// compareTuple is the reference order: element by element, kinds by type
// code, then by value; a prefix sorts first.
func compareTuple(a, b Tuple) int {
	for i := range min(len(a), len(b)) {
		if c := compareElem(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmpInt(len(a), len(b))
}

func compareElem(x, y any) int {
	if c := cmpInt(kindRank(x), kindRank(y)); c != 0 {
		return c
	}
	switch v := x.(type) {
	case []byte:
		return bytes.Compare(v, y.([]byte))
	case string:
		return bytes.Compare([]byte(v), []byte(y.(string)))
	case Tuple:
		return compareTuple(v, y.(Tuple))
	case int64:
		w := y.(int64)
		switch {
		case v < w:
			return -1
		case v > w:
			return 1
		}
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func equalTuple(a, b Tuple) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if compareElem(a[i], b[i]) != 0 {
			return false
		}
	}
	return true
}
