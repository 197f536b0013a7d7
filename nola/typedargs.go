package nola

import (
	"context"
	"fmt"
)

// Args is the typed form of an actor type's creation arguments: a T
// encoded by Codec (JSONCodec if nil). Declare one per actor type, once,
// and use it on both sides:
//
//	var accountArgs = nola.Args[Opening]{}
//
//	created, err := accountArgs.Create(ctx, client, ref, Opening{Owner: "ada"}) // caller
//
//	func (a *Account) Create(cx *nola.Context, args []byte) error {            // nola.Creator
//		o, err := accountArgs.Decode(args)
//		…
//	}
//	o, err := accountArgs.Get(cx)                                              // any invocation
//
// No arguments decode as the zero T.
type Args[T any] struct {
	Codec Codec
}

// Create encodes v and creates the actor ref with it (Client.Create):
// created is false if the actor existed, and nothing changed.
func (a Args[T]) Create(ctx context.Context, c *Client, ref Ref, v T) (created bool, _ error) {
	codec := codecOr(a.Codec)
	b, err := encodeFrom(codec, v)
	if err != nil {
		return false, &Error{Code: CodeBadRequest, cause: err, Message: fmt.Sprintf(
			"create %s/%s: encode the %s creation arguments as %s: %s; nothing was sent",
			ref.Namespace, ref.ID, typeName[T](), codec.Name(), clip(err.Error()))}
	}
	return c.Create(ctx, ref.Namespace, ref.ID, ref.Type, b)
}

// Decode decodes creation arguments (what Creator.Create receives).
func (a Args[T]) Decode(b []byte) (v T, err error) {
	if len(b) == 0 {
		return v, nil
	}
	codec := codecOr(a.Codec)
	if err := decodeInto(codec, b, &v); err != nil {
		return v, fmt.Errorf("nola: creation arguments are not a valid %s %s: %w", codec.Name(), typeName[T](), err)
	}
	return v, nil
}

// Get reads and decodes the actor's creation arguments
// (Context.CreationArgs).
func (a Args[T]) Get(cx *Context) (T, error) {
	b, err := cx.CreationArgs()
	if err != nil {
		var zero T
		return zero, err
	}
	return a.Decode(b)
}
