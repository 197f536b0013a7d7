package sim

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// WASM actors in the simulation.
//
// A catalog entry with a Module is a WASM actor kind: before the workload
// starts, the simulator uploads the modules a run uses (wasm/modules,
// written straight into memkv, not over the simulated network) as module
// Type of Namespace. Every server process has its own wasm.Host on its
// node's runtime, created when the process first resolves a WASM type,
// reading modules through the server's own simulated store link (so a
// fetch after a restart meets the faults); it is the server's
// TypeResolver: WASM types are absent from ServerConfig.Types, so the
// engine resolves them through the host, as in production. A crash closes
// the crashed process's host: every instance of it is gone, as the
// process's memory would be (instances busy in a killed task close when
// the task unwinds); the instances of fenced activations are reclaimed by
// the host's sweep. After the run no instance may remain open.

// shared is what every simulation of the process shares: one wazero
// compilation cache, so that each module is compiled to machine code once
// per process rather than once per server process of every seed, and the
// guests' bytes, read (or, for Go guests, built) once. Neither affects a
// run's trace: compilation touches no simulated state.
type shared struct {
	cache   wazero.CompilationCache
	mu      sync.Mutex
	bins    map[string]guestBin
	uploads map[string]upload
}

type guestBin struct {
	b   []byte
	err error
}

// process is the process-wide shared state (the only package-level
// variable: a compilation cache is process-wide by nature).
var process = sync.OnceValue(newShared)

func newShared() *shared {
	return &shared{cache: wazero.NewCompilationCache(), bins: map[string]guestBin{}, uploads: map[string]upload{}}
}

// guest returns the bytes of a guest, loading them on first use.
func (p *shared) guest(key string, load func() ([]byte, error)) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.bins[key]
	if !ok {
		g.b, g.err = load()
		p.bins[key] = g
	}
	return g.b, g.err
}

// CGuest returns a loader of the committed C guest name
// (wasm/guests/c/name.wasm): a few KB, ~60 µs to instantiate.
func CGuest(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		return process().guest("c/"+name, func() ([]byte, error) {
			b, err := os.ReadFile(filepath.Join(wasmtest.Root(), "wasm", "guests", "c", name+".wasm"))
			if err != nil {
				return nil, fmt.Errorf("sim: C guest %s: %w (run `make guests` with clang installed)", name, err)
			}
			return b, nil
		})
	}
}

// GoGuest returns a loader of Go guest name (wasm/guests/go/name), built
// with the standard toolchain on first use and cached on disk
// (wasmtest.BuildGo): ~2 MB, ~3 ms to instantiate.
func GoGuest(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		return process().guest("go/"+name, func() ([]byte, error) { return wasmtest.BuildGo(name) })
	}
}

// wasmProc is the WASM side of one server process: its host, created by
// the first resolution of a WASM type (a process that never activates a
// WASM actor needs none), closed when the process crashes or halts.
type wasmProc struct {
	s    *sim
	sl   *slot
	srv  *nola.Server
	host *wasm.Host
	gone bool
}

// Resolve implements nola.TypeResolver: the host's factory, wrapped so
// that invocations record their effects (see effects).
func (p *wasmProc) Resolve(ctx context.Context, ns, typ string) (nola.Factory, error) {
	if p.gone {
		// A task of a crashed process, still unwinding.
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "server process is gone", Retryable: true}
	}
	if p.host == nil {
		h, err := p.s.newHost(p.sl)
		if err != nil {
			return nil, err
		}
		h.Attach(p.srv)
		p.host = h
	}
	f, err := p.host.Resolve(ctx, ns, typ)
	if err != nil {
		return nil, err
	}
	return p.s.net.fx.traced(f), nil
}

// close closes the process's host; crashed counts the instances a crash
// took.
func (p *wasmProc) close(crashed bool) {
	if p == nil || p.gone {
		return
	}
	p.gone = true
	if p.host == nil {
		return
	}
	if crashed {
		p.s.wasmCrashed += p.host.Stats().Instances
	}
	_ = p.host.Close(context.Background())
}

// WASMStats sum the WASM hosts of a run (one per server process).
type WASMStats struct {
	// Hosts counts hosts (server processes with WASM); Compiled module
	// compilations; Instantiated and Closed instances created and closed;
	// Swept those closed by a host's sweep of dropped (fenced)
	// activations; Crashed those a crash took; Traps aborted guest
	// executions (none expected: the guests are well-behaved).
	Hosts, Compiled, Instantiated, Closed, Swept, Crashed, Traps int64
	// Leaked counts instances still open after the run (must be 0).
	Leaked int64
}

func (a *WASMStats) add(b WASMStats) {
	a.Hosts += b.Hosts
	a.Compiled += b.Compiled
	a.Instantiated += b.Instantiated
	a.Closed += b.Closed
	a.Swept += b.Swept
	a.Crashed += b.Crashed
	a.Traps += b.Traps
	a.Leaked += b.Leaked
}

// uploadModules uploads the modules the run uses into its store,
// directly (the simulated network plays no part: this is setup, like an
// operator uploading modules before the cluster serves them). The commits
// are wasm/modules' own: each module is uploaded once per process into
// a scratch memkv (validation — two wazero compilations — is a pure
// function of the bytes and would otherwise cost ~1 ms and 1 MB per seed),
// and the transactions modules.Put committed there are committed again,
// guards included, into the run's store. A Put of the same bytes then
// finds each module in place.
func (s *sim) uploadModules(ctx context.Context, used map[string]bool) error {
	mods := modules.New(s.store, modules.Config{Quota: noQuota()})
	for _, k := range s.cfg.catalog() {
		if k.Module == nil || !used[k.Type] {
			continue
		}
		bin, err := k.Module()
		if err != nil {
			return err
		}
		txns, err := s.shared.uploadTxns(k.Type, bin)
		if err != nil {
			return err
		}
		for _, t := range txns {
			res, err := s.store.Commit(ctx, cloneTxn(t))
			if err != nil || !res.Succeeded {
				return fmt.Errorf("sim: upload module %s: succeeded=%v, %v", k.Type, res.Succeeded, err)
			}
		}
		info, err := mods.Put(ctx, Namespace, k.Type, bin, modules.Options{})
		if err != nil {
			return fmt.Errorf("sim: upload module %s: %w", k.Type, err)
		}
		if info.Size != len(bin) {
			return fmt.Errorf("sim: module %s: stored %d bytes, want %d", k.Type, info.Size, len(bin))
		}
	}
	return nil
}

// uploadTxns returns the commits of modules.Put uploading bin as module
// id of Namespace into an empty store, recorded once per process.
func (p *shared) uploadTxns(id string, bin []byte) ([]kv.Txn, error) {
	key := fmt.Sprintf("%s %x", id, sha256.Sum256(bin))
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.uploads[key]; ok {
		return u.txns, u.err
	}
	scratch := memkv.New(rt.NewReal(), memkv.Options{})
	defer scratch.Close()
	rec := &recordingStore{Store: scratch}
	var u upload
	if _, err := modules.New(rec, modules.Config{Quota: noQuota()}).Put(context.Background(), Namespace, id, bin, modules.Options{}); err != nil {
		u.err = fmt.Errorf("sim: upload module %s: %w", id, err)
	}
	u.txns = rec.txns
	p.uploads[key] = u
	return u.txns, u.err
}

type upload struct {
	txns []kv.Txn
	err  error
}

// recordingStore records the transactions committed through it.
type recordingStore struct {
	kv.Store
	txns []kv.Txn
}

func (r *recordingStore) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	res, err := r.Store.Commit(ctx, t)
	if err == nil && res.Succeeded {
		r.txns = append(r.txns, cloneTxn(t))
	}
	return res, err
}

// newHost returns a WASM host for a fresh process of server sl.
func (s *sim) newHost(sl *slot) (*wasm.Host, error) {
	h, err := wasm.New(context.Background(), wasm.Config{
		Runtime: sl.node,
		// Modules are read over the server's store link: a fetch meets
		// the faults like any of the server's store requests.
		Modules:          modules.New(sl.link, modules.Config{Quota: noQuota()}),
		CompilationCache: s.shared.cache,
		// Look for instances of dropped activations once per lease TTL
		// (production: once a minute, longer than most runs).
		SweepInterval: s.cfg.LeaseTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("sim: wasm host for %s: %w", sl.name, err)
	}
	s.hosts = append(s.hosts, h)
	return h, nil
}

// wasmStats sums every host of the run; called after the world has ended,
// when every task has unwound.
func (s *sim) wasmStats() WASMStats {
	var out WASMStats
	for _, h := range s.hosts {
		st := h.Stats()
		out.add(WASMStats{Hosts: 1, Compiled: st.Compiled, Instantiated: st.Instantiated, Closed: st.Closed,
			Swept: st.Swept, Traps: st.Traps, Leaked: st.Instances})
	}
	out.Crashed = s.wasmCrashed
	return out
}

// noQuota keeps no module usage record: the simulator replays recorded
// upload transactions in any order, which a usage compare would refuse.
func noQuota() modules.Quota { return modules.Quota{MaxBytes: -1, MaxModules: -1} }
