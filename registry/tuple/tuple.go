// Package tuple encodes keys in FoundationDB's tuple layer format.
//
// The format (FoundationDB's design/tuple.md) is order preserving: packed
// tuples compare bytewise in the same order as the tuples element by element,
// so prefix and range scans over structured keys work on any ordered KV
// store. nola packs every registry key with it, so an FDB backend stores the
// same bytes that etcd and memkv do.
//
// Why not FoundationDB's own Go package: it imports the cgo binding (fdb_c.h
// and libfdb_c), which cannot be built where FoundationDB is not installed.
// This package implements the subset of the format nola needs — null, byte
// strings, unicode strings, 64-bit integers, booleans and nested tuples —
// byte for byte as specified.
package tuple

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Type codes, from the tuple layer specification.
const (
	codeNull    = 0x00
	codeBytes   = 0x01
	codeString  = 0x02
	codeNested  = 0x05
	codeIntZero = 0x14
	codeFalse   = 0x26
	codeTrue    = 0x27
	escape      = 0xff
)

// Tuple is an ordered list of elements: nil, []byte, string, int64 (and the
// other Go integer types that fit in one), bool, or a nested Tuple.
type Tuple []any

// ErrInvalid is returned (wrapped) for bytes that are not a packed tuple.
var ErrInvalid = errors.New("tuple: invalid encoding")

// Pack encodes t. It panics on an element of an unsupported type, which is
// a programming error in the caller (keys are built from code, not input).
func (t Tuple) Pack() []byte { return t.AppendTo(nil) }

// AppendTo appends the encoding of t to dst.
func (t Tuple) AppendTo(dst []byte) []byte {
	for _, e := range t {
		dst = appendElem(dst, e, false)
	}
	return dst
}

func appendElem(dst []byte, e any, nested bool) []byte {
	switch v := e.(type) {
	case nil:
		if nested {
			return append(dst, codeNull, escape)
		}
		return append(dst, codeNull)
	case []byte:
		return appendEscaped(append(dst, codeBytes), v)
	case string:
		return appendEscapedString(append(dst, codeString), v)
	case int64:
		return AppendInt(dst, v)
	case int:
		return AppendInt(dst, int64(v))
	case int32:
		return AppendInt(dst, int64(v))
	case uint32:
		return AppendInt(dst, int64(v))
	case bool:
		if v {
			return append(dst, codeTrue)
		}
		return append(dst, codeFalse)
	case Tuple:
		dst = append(dst, codeNested)
		for _, x := range v {
			dst = appendElem(dst, x, true)
		}
		return append(dst, codeNull)
	default:
		panic(fmt.Sprintf("tuple: unsupported element type %T", e))
	}
}

// AppendBytes appends a byte-string element without building a Tuple (the
// hot path of key construction).
func AppendBytes(dst, b []byte) []byte { return appendEscaped(append(dst, codeBytes), b) }

// AppendString appends a string element.
func AppendString(dst []byte, s string) []byte {
	return appendEscapedString(append(dst, codeString), s)
}

func appendEscaped(dst, b []byte) []byte {
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			dst = append(dst, b...)
			return append(dst, 0)
		}
		dst = append(dst, b[:i+1]...)
		dst = append(dst, escape)
		b = b[i+1:]
	}
}

func appendEscapedString(dst []byte, s string) []byte {
	for {
		i := indexZero(s)
		if i < 0 {
			dst = append(dst, s...)
			return append(dst, 0)
		}
		dst = append(dst, s[:i+1]...)
		dst = append(dst, escape)
		s = s[i+1:]
	}
}

func indexZero(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return i
		}
	}
	return -1
}

// AppendInt appends an integer element: 0x14 for zero, 0x14±n followed by n
// big-endian bytes of the magnitude (one's complement for negatives), so
// that shorter encodings of smaller magnitudes sort correctly.
func AppendInt(dst []byte, v int64) []byte {
	if v == 0 {
		return append(dst, codeIntZero)
	}
	var buf [8]byte
	if v > 0 {
		u := uint64(v)
		n := (bits.Len64(u) + 7) / 8
		binary.BigEndian.PutUint64(buf[:], u)
		dst = append(dst, byte(codeIntZero+n))
		return append(dst, buf[8-n:]...)
	}
	// Magnitude of a negative int64; math.MinInt64 negates to itself but its
	// uint64 conversion is still the right magnitude.
	u := uint64(-v)
	if v == math.MinInt64 {
		u = 1 << 63
	}
	n := (bits.Len64(u) + 7) / 8
	binary.BigEndian.PutUint64(buf[:], ^u)
	dst = append(dst, byte(codeIntZero-n))
	return append(dst, buf[8-n:]...)
}

// Unpack decodes a packed tuple. Integers decode as int64, byte strings as
// []byte, strings as string.
func Unpack(b []byte) (Tuple, error) {
	t, rest, err := decode(b, false)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalid, len(rest))
	}
	return t, nil
}

func decode(b []byte, nested bool) (Tuple, []byte, error) {
	var t Tuple
	for len(b) > 0 {
		code := b[0]
		switch {
		case code == codeNull:
			if !nested {
				t = append(t, nil)
				b = b[1:]
				continue
			}
			if len(b) > 1 && b[1] == escape {
				t = append(t, nil)
				b = b[2:]
				continue
			}
			return t, b[1:], nil // end of the nested tuple
		case code == codeBytes:
			v, rest, err := decodeEscaped(b[1:])
			if err != nil {
				return nil, nil, err
			}
			t, b = append(t, v), rest
		case code == codeString:
			v, rest, err := decodeEscaped(b[1:])
			if err != nil {
				return nil, nil, err
			}
			t, b = append(t, string(v)), rest
		case code >= codeIntZero-8 && code <= codeIntZero+8:
			v, rest, err := decodeInt(b)
			if err != nil {
				return nil, nil, err
			}
			t, b = append(t, v), rest
		case code == codeFalse:
			t, b = append(t, false), b[1:]
		case code == codeTrue:
			t, b = append(t, true), b[1:]
		case code == codeNested:
			v, rest, err := decode(b[1:], true)
			if err != nil {
				return nil, nil, err
			}
			t, b = append(t, v), rest
		default:
			return nil, nil, fmt.Errorf("%w: unsupported type code 0x%02x", ErrInvalid, code)
		}
	}
	if nested {
		return nil, nil, fmt.Errorf("%w: unterminated nested tuple", ErrInvalid)
	}
	return t, b, nil
}

func decodeEscaped(b []byte) ([]byte, []byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			out = append(out, b[i])
			continue
		}
		if i+1 < len(b) && b[i+1] == escape {
			out = append(out, 0)
			i++
			continue
		}
		return out, b[i+1:], nil
	}
	return nil, nil, fmt.Errorf("%w: unterminated string", ErrInvalid)
}

func decodeInt(b []byte) (int64, []byte, error) {
	code := int(b[0])
	n := code - codeIntZero
	neg := n < 0
	if neg {
		n = -n
	}
	if len(b) < 1+n {
		return 0, nil, fmt.Errorf("%w: truncated integer", ErrInvalid)
	}
	// Only the shortest encoding is accepted: a leading zero byte of the
	// magnitude (0xff once complemented) would give a second byte string
	// for the same integer, and with it two keys that decode alike.
	if n > 0 && ((!neg && b[1] == 0) || (neg && b[1] == 0xff)) {
		return 0, nil, fmt.Errorf("%w: non-canonical integer (leading zero byte)", ErrInvalid)
	}
	var buf [8]byte
	copy(buf[8-n:], b[1:1+n])
	u := binary.BigEndian.Uint64(buf[:])
	if !neg {
		if u > math.MaxInt64 {
			return 0, nil, fmt.Errorf("%w: integer overflows int64", ErrInvalid)
		}
		return int64(u), b[1+n:], nil
	}
	if n > 0 {
		// Undo the one's complement over the n stored bytes only.
		mask := uint64(math.MaxUint64)
		if n < 8 {
			mask = (1 << (8 * n)) - 1
		}
		u = ^u & mask
	}
	if u > 1<<63 {
		return 0, nil, fmt.Errorf("%w: integer overflows int64", ErrInvalid)
	}
	return -int64(u), b[1+n:], nil
}

// ReadString decodes a string element at the start of b without building
// a Tuple (the hot path of record decoding) and returns the rest of b.
func ReadString(b []byte) (string, []byte, error) {
	if len(b) == 0 || b[0] != codeString {
		return "", nil, fmt.Errorf("%w: want a string element", ErrInvalid)
	}
	b = b[1:]
	if i := bytes.IndexByte(b, 0); i >= 0 && (i+1 == len(b) || b[i+1] != escape) {
		return string(b[:i]), b[i+1:], nil // no escaped zero: one allocation
	}
	v, rest, err := decodeEscaped(b)
	if err != nil {
		return "", nil, err
	}
	return string(v), rest, nil
}

// ReadInt decodes an integer element at the start of b and returns the rest
// of b.
func ReadInt(b []byte) (int64, []byte, error) {
	if len(b) == 0 || b[0] < codeIntZero-8 || b[0] > codeIntZero+8 {
		return 0, nil, fmt.Errorf("%w: want an integer element", ErrInvalid)
	}
	return decodeInt(b)
}

// ChildRange returns the range of the keys that extend the packed tuple
// prefix by one or more elements: [prefix+0x00, prefix+0xff). Unlike
// [prefix, PrefixEnd(prefix)) it leaves out keys whose last element of
// prefix merely continues (a string "a\x00b" packs as "a", 0x00, 0xff, "b":
// a byte prefix of "a"'s children, but not one of them).
func ChildRange(prefix []byte) (begin, end []byte) {
	begin = append(append(make([]byte, 0, len(prefix)+1), prefix...), 0x00)
	end = append(append(make([]byte, 0, len(prefix)+1), prefix...), escape)
	return begin, end
}

// PrefixEnd returns the first key after every key that starts with prefix:
// the end of a range scan over prefix. It returns nil (no end) if prefix is
// all 0xff bytes.
func PrefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
