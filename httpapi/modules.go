package httpapi

import (
	"context"
	"encoding/hex"
	"errors"
	"io"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/modules"
)

// Modules adapts the registry's module store to the API.
func Modules(s *modules.Store) ModuleStore { return moduleStore{s} }

type moduleStore struct{ s *modules.Store }

func info(i modules.Info) ModuleInfo {
	return ModuleInfo{Namespace: i.Namespace, ID: i.ID, Size: i.Size, SHA256: hex.EncodeToString(i.Hash[:])}
}

// moduleErr gives module store errors their API codes.
func moduleErr(err error) error {
	var ne *nola.Error
	switch {
	case err == nil || errors.As(err, &ne):
		return err
	case errors.Is(err, modules.ErrNotFound):
		return &nola.Error{Code: codeNotFound, Message: err.Error()}
	case errors.Is(err, modules.ErrTooLarge):
		return &nola.Error{Code: nola.CodeTooLarge, Message: err.Error()}
	case errors.Is(err, modules.ErrExists), errors.Is(err, modules.ErrInvalid), errors.Is(err, modules.ErrDeletedID):
		return &nola.Error{Code: nola.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, modules.ErrInUse):
		return &nola.Error{Code: codeConflict, Message: err.Error()}
	}
	return err
}

func (m moduleStore) Put(ctx context.Context, ns, id string, wasm []byte) (ModuleInfo, bool, error) {
	// A module that is already stored with these bytes is not created
	// again; Put says so by answering its existing revision.
	before, statErr := m.s.Stat(ctx, ns, id)
	i, err := m.s.Put(ctx, ns, id, wasm, modules.Options{})
	if err != nil {
		return ModuleInfo{}, false, moduleErr(err)
	}
	created := statErr != nil || before.Rev != i.Rev
	return info(i), created, nil
}

func (m moduleStore) Get(ctx context.Context, ns, id string) ([]byte, ModuleInfo, error) {
	mod, err := m.s.Get(ctx, ns, id)
	if err != nil {
		return nil, ModuleInfo{}, moduleErr(err)
	}
	return mod.Bytes, info(mod.Info), nil
}

// Stream implements ModuleStreamer.
func (m moduleStore) Stream(ctx context.Context, ns, id string, start func(ModuleInfo), w io.Writer) error {
	return moduleErr(m.s.Stream(ctx, ns, id, func(i modules.Info) { start(info(i)) }, w))
}

// Delete implements ModuleDeleter.
func (m moduleStore) Delete(ctx context.Context, ns, id string) (ModuleInfo, error) {
	i, err := m.s.Delete(ctx, ns, id)
	if err != nil {
		return ModuleInfo{}, moduleErr(err)
	}
	return info(i), nil
}

func (m moduleStore) List(ctx context.Context, ns string) ([]ModuleInfo, error) {
	list, err := m.s.List(ctx, ns)
	if err != nil {
		return nil, moduleErr(err)
	}
	out := make([]ModuleInfo, 0, len(list))
	for _, i := range list {
		out = append(out, info(i))
	}
	return out, nil
}
