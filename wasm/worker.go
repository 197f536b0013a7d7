package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nolaproject/nola/nola"
)

// hostContext is what the host calls of one invocation go through: an
// actor's *nola.Context, or a stateless worker's *nola.WorkerContext (whose
// KV and timer calls fail with nola.ErrNoState, which the guest sees as a
// bad_request host error).
type hostContext interface {
	context.Context
	Limit(d time.Duration) (restore func())
	Now() time.Time
	Invoke(actorID, actorType, op string, payload []byte) ([]byte, error)
	CallWorker(workerType, op string, payload []byte) ([]byte, error)
	Get(key []byte) ([]byte, bool, error)
	Put(key, value []byte) error
	Delete(key []byte) error
	Scan(start, end []byte, limit int) ([]nola.KV, error)
	ScanPrefix(prefix []byte, limit int) ([]nola.KV, error)
	SetTimer(name string, delay, period time.Duration, op string, payload []byte) error
	CancelTimer(name string) bool
}

var (
	_ hostContext         = (*nola.Context)(nil)
	_ hostContext         = (*nola.WorkerContext)(nil)
	_ nola.WorkerResolver = (*Host)(nil)
)

// ResolveWorker makes module typ of namespace ns callable as a stateless
// worker (nola.ServerConfig.WorkerResolver). Each invocation runs on an
// instance of its own, taken from the module's pool of idle worker
// instances or instantiated afresh, so invocations run concurrently (each
// still within the Host's GuestSlots, MemoryLimit and InvokeTimeout); an
// instance goes back to the pool after its call, so a guest's memory
// carries over between some of its invocations and not others: a worker
// module must not rely on it. Idle pooled instances are closed by the
// sweep like those of evicted actors (Attach).
func (h *Host) ResolveWorker(ctx context.Context, ns, typ string) (nola.WorkerFunc, error) {
	c, err := h.load(ctx, ns, typ)
	var mm *missingModule
	if errors.As(err, &mm) {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf(
			"unknown worker type %q: no Go worker and no WASM module %q in namespace %q", typ, typ, ns)}
	}
	if err != nil {
		return nil, err
	}
	p := &workerPool{h: h, mod: c, ref: nola.Ref{Namespace: ns, Type: typ}, max: max(1, h.cfg.GuestSlots)}
	return p.invoke, nil
}

// missingModule is the error of a module that does not exist: a bad
// request naming an actor type, which a worker resolution words as its own.
type missingModule struct{ err *nola.Error }

func (m *missingModule) Error() string { return m.err.Error() }
func (m *missingModule) Unwrap() error { return m.err }

// workerPool holds the idle instances of one worker module, at most max.
type workerPool struct {
	h    *Host
	mod  *compiled
	ref  nola.Ref // no ID: a worker has none
	max  int
	mu   sync.Mutex
	idle []*instance
}

// take returns an acquired instance: an idle pooled one, else a new one.
func (p *workerPool) take(wx *nola.WorkerContext) (*instance, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		in := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if in.acquire() {
			in.unpool()
			return in, nil
		}
		// Swept or closed while idle: try the next.
	}
	in, err := p.h.instantiate(wx, p.mod, p.ref)
	if err != nil {
		return nil, err
	}
	if !in.acquire() {
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "wasm " + p.mod.name + ": fresh instance was closed", Retryable: true}
	}
	return in, nil
}

// put returns an instance after its call: to the pool, or closed if the
// pool is full.
func (p *workerPool) put(in *instance) {
	p.mu.Lock()
	if len(p.idle) < p.max {
		p.idle = append(p.idle, in)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	in.reclaim()
}

func (p *workerPool) invoke(wx *nola.WorkerContext, op string, payload []byte) (_ []byte, err error) {
	// The server keeps resolved worker types: the module's deletion is
	// noticed here (within Config.ModuleRecheck).
	if err := p.h.stillThere(wx, modKey{p.ref.Namespace, p.ref.Type}, p.mod); err != nil {
		var mm *missingModule
		if errors.As(err, &mm) {
			return nil, nola.InvocationError(nola.CodeBadRequest, fmt.Sprintf(
				"unknown worker type %q: its WASM module in namespace %q was deleted", p.ref.Type, p.ref.Namespace))
		}
		return nil, err
	}
	in, err := p.take(wx)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Deferred: a simulated crash unwinds the task with Goexit.
		// Counted as idle before it can be seen idle (by the sweep,
		// which closes it, or a take): while it is busy its size is
		// ours to read.
		in.pool()
		if !in.release() {
			p.put(in)
		}
	}()
	return in.invoke(wx, op, payload)
}

// pool counts the busy instance in (its overhead and linear memory) as an
// idle pooled worker, for Host.MemoryBytes; take or close undoes it.
func (in *instance) pool() {
	n := in.overhead
	if in.mem != nil {
		n += int64(in.mem.Size())
	}
	in.h.idleWorker.Add(n - in.pooled.Swap(n))
}
