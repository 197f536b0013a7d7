package nola

import (
	"context"
	"errors"
)

// HostedActors lists the actors this server holds a ready activation of,
// in key order. It is a snapshot: activations come and go meanwhile.
// Routing layers above the engine (package storeless) use it to find the
// actors that should live elsewhere after a membership change.
func (s *Server) HostedActors() []Ref {
	as := s.table.Load().collect(func(a *activation) bool { return a.state.Load() == stateReady })
	refs := make([]Ref, len(as))
	for i, a := range as {
		refs[i] = a.ref()
	}
	return refs
}

// ErrBusy is what Release returns for an activation that is executing an
// invocation: it was left alone; try again later.
var ErrBusy = errors.New("nola: activation busy")

// errBusy is releaseOne's: the activation is running an invocation.
var errBusy = errors.New("busy")

// Release moves actor (ns, id) off this server through the release path
// shedding uses: it runs the Deactivate hook, drops the activation (its
// in-memory state is gone) and clears its ownership in the registry, so
// that its next call places it anew. released is false if the server held
// no ready activation of it. An activation that is running an invocation
// is not waited for: Release returns ErrBusy and the caller tries again
// later.
func (s *Server) Release(ctx context.Context, ns, id string) (released bool, err error) {
	k := actorKey{ns, id}
	a := s.table.Load().lookup(k)
	if a == nil || a.state.Load() != stateReady {
		return false, nil
	}
	switch err := s.releaseOne(ctx, a, ""); {
	case err == nil:
		return true, nil
	case err == errGone:
		return false, nil
	case err == errBusy:
		return false, ErrBusy
	default:
		return true, wrapErr(err, false, "release %s", id)
	}
}
