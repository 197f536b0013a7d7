package wasm

import (
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
)

// Recycling: the instance of a deactivated actor of a snapshotted module
// is reset to the module's snapshot instead of being closed, and the next
// activation of the module takes it: wazero's instantiation — the ~2 700
// function references of a standard-Go guest's table among it (what is
// left of a Go create's cost once it starts from a snapshot) — is skipped.
//
// The reset is the snapshot's restore done again on a live instance, and
// what makes it equivalent is what makes the snapshot equivalent (see
// snapshot.go): a snapshotted module's instance state is wholly its linear
// memory, its size and its mutable globals — its tables stay what the
// element segments made them and no segment is dropped (instrument.Snapshot
// refuses modules that could change either). So the reset
//
//   - keeps only instances whose memory is still the snapshot's size
//     (memory cannot shrink; one that grew is closed),
//   - sets the memory back to the snapshot's bytes (mmapMemory.reset:
//     copying them back into the pages the actor wrote, if the memory is
//     the snapshot file's mapping already, else mapping the file again,
//     MAP_FIXED over the same range, or copying),
//   - sets every mutable global to its snapshot value,
//   - and starts the host-side state afresh: the reused wazero module gets
//     a new instance struct, whose per-invocation fields are all zero; the
//     old struct is closed, so that a stale reference to it (the actor's)
//     can never reach the module again.
//
// Only an instance that ended cleanly is recycled: not one whose last
// execution was aborted (those are closed on release), nor one the Host is
// closing. Idle recycled instances wait in a per-module pool of at most
// Config.RecyclePool, charged to the memory budget like live ones (their
// linear memory and overhead) but reported to the server as idle,
// like pooled workers (Host.MemoryBytes); a reservation that does not fit
// closes them all first (memBudget.shed), the sweep closes those idle for
// Config.SweepInterval, and Close closes every one. Nothing runs in the
// background: under the simulator recycling is as deterministic as the
// rest.

// recyclePool holds a Host's idle recycled instances, per module.
type recyclePool struct {
	mu     sync.Mutex
	closed bool
	idle   map[*compiled][]pooledInstance
	n      int   // instances in idle
	bytes  int64 // their charge (linear memory and overhead), in Host.MemoryBytes's terms
	reused int64 // activations that took one
}

type pooledInstance struct {
	in    *instance
	bytes int64
	since time.Duration // monotonic, when it was pooled
}

// recycleSkip breaks a step of the reset ("memory" or "globals") while
// set: the tests that prove the equivalence check can fail set it.
var recycleSkip string

// noPoolShed disables shedPool: the test that proves it matters sets it.
var noPoolShed bool

// retire ends a deactivated actor's instance: recycled into its module's
// pool if it can be, else closed.
func (h *Host) retire(in *instance) {
	c := in.mod
	snap := c.snap.ready()
	if snap == nil || h.cfg.RecyclePool < 0 || !h.pool.room(c, h.cfg.RecyclePool) {
		in.close()
		return
	}
	// Owned like an invocation owns it (busy, counted in h.busy), so that
	// neither the sweep nor Close closes the module under the reset, and
	// Close's release of wazero's runtime waits for it.
	if !in.acquire() {
		return // closed meanwhile
	}
	defer h.doneBusy()
	if in.aborted || in.lin == nil || int64(in.mem.Size()) != snap.size || h.isClosed.Load() {
		in.close()
		return
	}
	if err := snap.reset(c, in.m, in.lin); err != nil {
		h.log.Warn("wasm instance not recycled", "module", c.name, "err", err)
		in.close()
		return
	}
	fresh := &instance{h: h, mod: c, m: in.m, mem: in.mem, guestCall: in.guestCall, fuel: in.fuel, lin: in.lin, overhead: in.overhead}
	fresh.lin.in = fresh
	// The old struct lets go of everything: a stale reference to it
	// finds it closed, and closing it again touches nothing.
	in.m, in.mem, in.guestCall, in.fuel, in.lin, in.overhead = nil, nil, nil, nil, nil, 0
	in.state.Store(instClosed)
	h.forget(in)
	fresh.state.Store(instIdle)
	h.pool.put(c, pooledInstance{in: fresh, bytes: fresh.overhead + snap.size, since: h.rt.Mono()}, h.cfg.RecyclePool)
}

// reset sets a live instance of c, whose memory is s.size bytes, back to
// s's state: its memory (lin) remapped or rewritten from s's image and its
// globals set.
func (s *snapshot) reset(c *compiled, m api.Module, lin *budgetMemory) error {
	if recycleSkip != "memory" {
		if err := lin.reset(s.img, s.size); err != nil {
			return fmt.Errorf("wasm %s: resetting a recycled instance's memory: %w", c.name, err)
		}
	}
	if recycleSkip == "globals" {
		return nil
	}
	return s.setGlobals(c, m)
}

// maxPremade bounds Config.Premade: each premade instance holds a whole
// initialized memory of the budget.
const maxPremade = 64

// premake starts, unless one runs, the task that fills c's pool up to
// Config.Premade with instances made from c's snapshot.
func (h *Host) premake(c *compiled) {
	if h.cfg.Premade == 0 || c.snap.ready() == nil || !c.premaking.CompareAndSwap(false, true) {
		return
	}
	h.rt.Go("wasm-premake", func() {
		for {
			for !h.isClosed.Load() && h.pool.count(c) < h.cfg.Premade {
				if !h.premakeOne(c) {
					// Not round again: trying at once would fail
					// again (the budget full, the snapshot
					// unusable), and the task would spin until
					// memory frees. The next take starts it again.
					c.premaking.Store(false)
					return
				}
			}
			c.premaking.Store(false)
			// A take between the last count and the store found the
			// task running: look again.
			if h.isClosed.Load() || h.pool.count(c) >= h.cfg.Premade || !c.premaking.CompareAndSwap(false, true) {
				return
			}
		}
	})
}

// premakeOne instantiates one instance of c from its snapshot into the
// pool; false if it could not (the Host closed, the memory budget full,
// the pool full): the task stops until the next take. Its reservation
// does not shed the pool (that would only trade one idle instance for
// another), and it holds no execution slot: nothing of the guest runs.
func (h *Host) premakeOne(c *compiled) bool {
	h.busy.Add(1)
	defer h.doneBusy()
	snap := c.snap.ready()
	if h.isClosed.Load() || snap == nil {
		return false
	}
	if !h.mem.reserveNoShed(c.overhead + snap.size) {
		return false
	}
	in := &instance{h: h, mod: c, overhead: c.overhead}
	in.state.Store(instBusy)
	m, err := h.newModule(in, c, snap)
	if err != nil {
		in.releaseOverhead()
		h.log.Warn("wasm instance not made ahead", "module", c.name, "err", err)
		return false
	}
	in.m, in.mem = m, m.Memory()
	in.guestCall = m.ExportedFunction(abi.GuestCall)
	g, ok := m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
	if !ok || in.guestCall == nil || in.mem == nil || snap.restore(c, m) != nil {
		in.close()
		return false
	}
	in.fuel = g
	h.mu.Lock()
	h.stats.Instantiated++
	h.mu.Unlock()
	in.state.Store(instIdle)
	return h.pool.put(c, pooledInstance{in: in, bytes: in.overhead + snap.size, since: h.rt.Mono()}, h.cfg.Premade)
}

// count is how many instances of c are pooled.
func (p *recyclePool) count(c *compiled) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[c])
}

// room reports whether c's pool has room for one more instance.
func (p *recyclePool) room(c *compiled, max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && len(p.idle[c]) < max
}

// put pools in, or closes it if the pool is full or closed; it reports
// whether it pooled it.
func (p *recyclePool) put(c *compiled, e pooledInstance, max int) bool {
	p.mu.Lock()
	if p.closed || len(p.idle[c]) >= max {
		p.mu.Unlock()
		e.in.close()
		return false
	}
	if p.idle == nil {
		p.idle = map[*compiled][]pooledInstance{}
	}
	p.idle[c] = append(p.idle[c], e)
	p.n++
	p.bytes += e.bytes
	p.mu.Unlock()
	return true
}

// take returns one of c's pooled instances (the last pooled), or nil.
func (p *recyclePool) take(c *compiled) *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	es := p.idle[c]
	if len(es) == 0 {
		return nil
	}
	e := es[len(es)-1]
	es[len(es)-1] = pooledInstance{}
	if es = es[:len(es)-1]; len(es) == 0 {
		delete(p.idle, c)
	} else {
		p.idle[c] = es
	}
	p.n--
	p.bytes -= e.bytes
	p.reused++
	return e.in
}

// drain removes and returns the pooled instances that keep reports false
// for; with closing, the pool takes no more.
func (p *recyclePool) drain(closing bool, keep func(pooledInstance) bool) []*instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = p.closed || closing
	var out []*instance
	for c, es := range p.idle {
		kept := es[:0]
		for _, e := range es {
			if keep != nil && keep(e) {
				kept = append(kept, e)
				continue
			}
			out = append(out, e.in)
			p.n--
			p.bytes -= e.bytes
		}
		clear(es[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, c)
		} else {
			p.idle[c] = kept
		}
	}
	return out
}

// idleBytes is what the pooled instances hold of the memory budget.
func (p *recyclePool) idleBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

func (p *recyclePool) counts() (pooled, reused int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(p.n), p.reused
}

// shedPool closes every pooled instance, for a reservation of the memory
// budget that did not fit; it reports whether it closed any.
func (h *Host) shedPool() bool {
	if noPoolShed {
		return false
	}
	out := h.pool.drain(false, nil)
	for _, in := range out {
		in.close()
	}
	return len(out) > 0
}

// expirePool closes the instances pooled before cutoff (the sweep).
func (h *Host) expirePool(cutoff time.Duration) {
	for _, in := range h.pool.drain(false, func(e pooledInstance) bool { return e.since >= cutoff }) {
		in.close()
	}
}

// takeRecycled returns a pooled instance of c, reset to c's snapshot, as
// the actor ref's new idle instance, or nil if there is none.
func (h *Host) takeRecycled(c *compiled, ref nola.Ref) (*instance, error) {
	in := h.pool.take(c)
	if in == nil {
		return nil, nil
	}
	in.ref = ref
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		in.close()
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "wasm host is closed", Retryable: true}
	}
	h.seq++
	in.seq = h.seq
	in.lastUsed = h.rt.Mono()
	in.lastSeen.Store(int64(in.lastUsed))
	h.live[in] = struct{}{}
	h.mu.Unlock()
	return in, nil
}
