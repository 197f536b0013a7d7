package tuple

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// Vectors from FoundationDB's tuple layer specification (design/tuple.md)
// and its published examples.
func TestSpecVectors(t *testing.T) {
	cases := []struct {
		in   Tuple
		want string
	}{
		{Tuple{"hi", "there"}, "0268690002746865726500"},
		{Tuple{[]byte("foo\x00bar")}, "01666f6f00ff62617200"},
		{Tuple{"F\u00d4O\x00bar"}, "0246c3944f00ff62617200"},
		{Tuple{Tuple{[]byte("foo\x00bar"), nil, Tuple{}}}, "0501666f6f00ff6261720000ff050000"},
		{Tuple{int64(-5551212)}, "11ab4b93"},
		{Tuple{int64(0)}, "14"},
		{Tuple{int64(1)}, "1501"},
		{Tuple{int64(-1)}, "13fe"},
		{Tuple{int64(255)}, "15ff"},
		{Tuple{int64(256)}, "160100"},
		{Tuple{int64(math.MaxInt64)}, "1c7fffffffffffffff"},
		{Tuple{int64(math.MinInt64)}, "0c7fffffffffffffff"},
		{Tuple{nil}, "00"},
		{Tuple{true, false}, "2726"},
	}
	for _, c := range cases {
		got := hex.EncodeToString(c.in.Pack())
		if got != c.want {
			t.Errorf("Pack(%v) = %s, want %s", c.in, got, c.want)
		}
		back, err := Unpack(c.in.Pack())
		if err != nil {
			t.Errorf("Unpack(%s): %v", c.want, err)
			continue
		}
		if !reflect.DeepEqual(normalize(back), normalize(c.in)) {
			t.Errorf("round trip of %v gave %v", c.in, back)
		}
	}
}

func normalize(t Tuple) Tuple {
	out := make(Tuple, len(t))
	for i, e := range t {
		switch v := e.(type) {
		case Tuple:
			out[i] = normalize(v)
		case []byte:
			out[i] = string(v) + "\x00bytes" // keep bytes and strings apart
		default:
			out[i] = v
		}
	}
	return out
}

func TestUnpackRejectsGarbage(t *testing.T) {
	for _, b := range []string{"02616263", "01", "1601", "05", "99", "0502"} {
		raw, _ := hex.DecodeString(b)
		if _, err := Unpack(raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unpack(%s) err = %v, want ErrInvalid", b, err)
		}
	}
}

func TestAppendHelpersMatchPack(t *testing.T) {
	k := AppendString(nil, "ns")
	k = AppendBytes(k, []byte{0, 1, 0})
	k = AppendInt(k, -7)
	if want := (Tuple{"ns", []byte{0, 1, 0}, int64(-7)}).Pack(); !bytes.Equal(k, want) {
		t.Fatalf("append helpers = %x, Pack = %x", k, want)
	}
}

// ReadString and ReadInt decode what Pack wrote, element by element, and
// refuse an element of another type.
func TestReadersMatchUnpack(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "s")
		n := rapid.Int64().Draw(t, "n")
		b := Tuple{s, n}.Pack()
		gotS, rest, err := ReadString(b)
		if err != nil || gotS != s {
			t.Fatalf("ReadString(%x) = %q, %v; want %q", b, gotS, err, s)
		}
		if _, _, err := ReadString(rest); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ReadString of an integer element: err = %v, want ErrInvalid", err)
		}
		gotN, rest, err := ReadInt(rest)
		if err != nil || gotN != n || len(rest) != 0 {
			t.Fatalf("ReadInt = %d, %x, %v; want %d", gotN, rest, err, n)
		}
		if _, _, err := ReadInt(b); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ReadInt of a string element: err = %v, want ErrInvalid", err)
		}
	})
	for _, b := range [][]byte{nil, {codeString, 'a'}, {codeString, 'a', 0, escape}} {
		if _, _, err := ReadString(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReadString(%x) err = %v, want ErrInvalid", b, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	if got := PrefixEnd([]byte{1, 2, 0xff}); !bytes.Equal(got, []byte{1, 3}) {
		t.Fatalf("PrefixEnd = %x", got)
	}
	if PrefixEnd([]byte{0xff, 0xff}) != nil {
		t.Fatal("PrefixEnd of all-0xff must be nil")
	}
}

func genElem() *rapid.Generator[any] {
	return rapid.OneOf(
		rapid.Map(rapid.Int64(), func(v int64) any { return v }),
		rapid.Map(rapid.String(), func(v string) any { return v }),
		rapid.Map(rapid.SliceOf(rapid.Byte()), func(v []byte) any { return v }),
	)
}

// The property the registry relies on: packed order equals element order,
// and unpack inverts pack.
func TestOrderPreservingProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genElem().Draw(t, "a")
		b := genElem().Draw(t, "b")
		pa, pb := Tuple{a}.Pack(), Tuple{b}.Pack()
		if want := compareElems(a, b); sign(bytes.Compare(pa, pb)) != want {
			t.Fatalf("order of %#v vs %#v: packed %d, want %d", a, b, bytes.Compare(pa, pb), want)
		}
		back, err := Unpack(pa)
		if err != nil || len(back) != 1 {
			t.Fatalf("unpack: %v %v", back, err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(Tuple{a})) {
			t.Fatalf("round trip %#v -> %#v", a, back[0])
		}
	})
}

// compareElems orders elements as the spec does: by type code first, then
// by value.
func compareElems(a, b any) int {
	ca, cb := typeRank(a), typeRank(b)
	if ca != cb {
		return sign(ca - cb)
	}
	switch x := a.(type) {
	case int64:
		y := b.(int64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case string:
		return sign(strings.Compare(x, b.(string)))
	case []byte:
		return sign(bytes.Compare(x, b.([]byte)))
	}
	panic("unreachable")
}

func typeRank(e any) int {
	switch e.(type) {
	case []byte:
		return 1
	case string:
		return 2
	default:
		return 20
	}
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// ChildRange holds the children of a packed tuple and nothing else, even
// when a sibling's string continues the prefix with an escaped NUL.
func TestChildRange(t *testing.T) {
	prefix := Tuple{"ns", "a"}.Pack()
	begin, end := ChildRange(prefix)
	in := func(k []byte) bool { return bytes.Compare(k, begin) >= 0 && bytes.Compare(k, end) < 0 }
	for _, child := range []Tuple{{"ns", "a", int64(0)}, {"ns", "a", []byte{}}, {"ns", "a", "z", int64(-5)}, {"ns", "a", []byte{0xff, 0}}} {
		if !in(child.Pack()) {
			t.Errorf("child %#v is outside ChildRange", child)
		}
	}
	for _, other := range []Tuple{{"ns", "a"}, {"ns", "a\x00b"}, {"ns", "a\x00"}, {"ns", "b"}, {"ns", "`"}} {
		if in(other.Pack()) {
			t.Errorf("%#v is inside ChildRange of %#v", other, Tuple{"ns", "a"})
		}
	}
}

// An integer has exactly one encoding: a leading zero byte of the magnitude
// (0xff for negatives) is refused, so distinct byte strings never decode to
// the same tuple.
func TestUnpackRejectsNonCanonicalIntegers(t *testing.T) {
	for _, b := range []string{
		"1500",               // 0 in one magnitude byte (canonical: 14)
		"13ff",               // -0 in one byte
		"160001",             // 1 in two bytes
		"12ff00",             // -255 in two bytes
		"1c0000000000000001", // 1 in eight bytes
		"0cff00000000000000", // a negative in eight bytes with a leading 0xff
	} {
		raw, err := hex.DecodeString(b)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := Unpack(raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unpack(%s) = %v, %v; want ErrInvalid", b, v, err)
		}
		if _, _, err := ReadInt(raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("ReadInt(%s) err = %v, want ErrInvalid", b, err)
		}
	}
}
