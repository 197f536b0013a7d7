package nola

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Codec turns the typed requests, results and KV values of typed actors
// (Router, Handle, Call, Key) into the bytes nola carries, and back. The
// wire stays raw []byte: a codec is a convention between an actor and its
// callers, so a raw caller (the CLI, the HTTP API, a WASM actor) can talk to
// a typed actor by sending what the codec would have produced.
//
// A Codec must be safe for concurrent use and must not keep data after
// Unmarshal returns. Unmarshal receives bytes from the network: it must
// return an error, not panic, on any input (the router turns a panic into a
// bad-request error anyway, but a codec that allocates in proportion to a
// length read from its input must bound it first).
type Codec interface {
	// Name names the encoding in error messages ("json").
	Name() string
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default codec: encoding/json, so that payloads stay
// readable in the CLI and the HTTP API. Unknown fields are ignored (a newer
// caller may send more than an older actor knows); trailing data is an
// error.
type JSONCodec struct{}

// Name returns "json".
func (JSONCodec) Name() string { return "json" }

// Marshal encodes v with encoding/json.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data into v with encoding/json.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// codecOr returns c, or JSONCodec when c is nil.
func codecOr(c Codec) Codec {
	if c == nil {
		return JSONCodec{}
	}
	return c
}

// maxCodecDetail bounds the codec's own words quoted in an error: they may
// echo the (hostile, up to MaxPayloadBytes) input.
const maxCodecDetail = 200

// decodeInto runs c.Unmarshal, turning a panic of the codec into an error:
// the input came from the network, and a codec bug must not take the
// activation down with it.
func decodeInto(c Codec, data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec panicked: %v", r)
		}
	}()
	return c.Unmarshal(data, v)
}

// encodeFrom runs c.Marshal, turning a panic of the codec into an error.
func encodeFrom(c Codec, v any) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("codec panicked: %v", r)
		}
	}()
	return c.Marshal(v)
}

// typeName names T for error messages ("main.Deposit", "[]string").
func typeName[T any]() string { return reflect.TypeFor[T]().String() }

// clip shortens s to maxCodecDetail bytes, marking the cut.
func clip(s string) string {
	if len(s) <= maxCodecDetail {
		return s
	}
	return strings.ToValidUTF8(s[:maxCodecDetail], "") + "…"
}
