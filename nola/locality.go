package nola

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/registry"
)

// Communication locality: a server samples its actors' outgoing calls
// (one in SampleEvery), keeps per actor a bounded, decaying count of the
// calls that went to each server (itself included), and every Interval
// moves an actor whose calls go mostly to one other server there: a
// release (the same path and compare as shedding, shed.go) that leaves a
// placement hint in the released record, which the next placement follows
// while that server is live and within bounded load (registry.ReleaseTo).
// Safety is the registry's as for every release; the hint is advice.
//
// No oscillation, by four rules (docs/placement.md):
//   - hysteresis: an actor moves only if its sampled calls to the peer
//     server are at least MinCalls and at least Factor × its calls to its
//     own server;
//   - cooldown: an actor moves only once it has been observed on this
//     server for Cooldown (a newcomer, moved or placed, stays a while);
//   - one side leads: of the two servers an edge joins, the more loaded
//     one (by activations, beyond a band) moves its side, and within the
//     band the one with the higher server ID (the lower ID wins). The
//     other side moves only after the edge stayed hot for trailRounds more
//     rounds — for calls the leading side cannot see (they go one way) —
//     by which time a move by the leader has cooled the edge;
//   - rate: at most MaxPerRound moves per round, in a deterministic order.

// LocalityConfig paces locality moves. Zero fields take defaults.
type LocalityConfig struct {
	// Enabled turns sampling and moves on (library default off; nola
	// serve turns it on, --locality).
	Enabled bool
	// Interval is the time between two rounds (default LeaseTTL/2).
	Interval time.Duration
	// SampleEvery samples one outgoing actor-to-actor call in this many
	// (default 16): the hot path pays an atomic add per call.
	SampleEvery int
	// MinCalls is the decayed sampled-call count (weights halve every
	// round) an edge needs to be hot (default 8: about 4·SampleEvery calls
	// per round in a steady state).
	MinCalls int64
	// Factor is the hysteresis: the calls to the peer server must be at
	// least Factor × those to the actor's own server (default 2, ≥ 1).
	Factor float64
	// MaxPerRound bounds the moves of one round (default 2).
	MaxPerRound int
	// Cooldown is how long an actor must have been observed on a server
	// before it may move from it (default 4 × Interval).
	Cooldown time.Duration
	// MaxBytes: an actor holding more stays, and its partners come to it
	// (default 1 MiB): moving it costs more, and shedding places big ones.
	MaxBytes int64
	// MaxActors bounds the edge table: samples of further actors are
	// dropped (counted in Stats.LocalityDropped) until entries decay
	// (default 4096; each actor keeps at most maxPeers servers).
	MaxActors int
}

// maxPeers bounds the servers one actor's entry counts calls to.
const maxPeers = 16

// trailRounds is how many more hot rounds the trailing side of an edge
// waits before it moves its actor itself.
const trailRounds = 3

func (c LocalityConfig) check() error {
	switch {
	case c.Interval < 0 || c.SampleEvery < 0 || c.MinCalls < 0 || c.MaxPerRound < 0 || c.Cooldown < 0 || c.MaxBytes < 0 || c.MaxActors < 0:
		return fmt.Errorf("nola: server config: negative locality setting in %+v", c)
	case c.Factor != 0 && !(c.Factor >= 1 && !math.IsInf(c.Factor, 0)):
		return fmt.Errorf("nola: server config: Locality.Factor %v: at least 1 (0: the default)", c.Factor)
	case c.SampleEvery > 1<<20 || c.MaxActors > 1<<20:
		return fmt.Errorf("nola: server config: Locality.SampleEvery and MaxActors at most %d", 1<<20)
	}
	return nil
}

func (c LocalityConfig) withDefaults(ttl time.Duration) LocalityConfig {
	if c.Interval <= 0 {
		c.Interval = ttl / 2
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 16
	}
	if c.MinCalls <= 0 {
		c.MinCalls = 8
	}
	if c.Factor <= 0 {
		c.Factor = 2
	}
	if c.MaxPerRound <= 0 {
		c.MaxPerRound = 2
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 4 * c.Interval
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 20
	}
	if c.MaxActors <= 0 {
		c.MaxActors = 4096
	}
	return c
}

// locality is a server's edge table.
type locality struct {
	every uint64        // SampleEvery, or 0 when locality is off
	calls atomic.Uint64 // outgoing calls counted by sampleCall

	mu      sync.Mutex
	actors  map[actorKey]*callerEdges
	dropped int64
}

// callerEdges are one local actor's sampled calls, by the server that
// served them.
type callerEdges struct {
	act   uint64        // the activation sampled; another one restarts the entry
	since time.Duration // when it was first sampled (the cooldown's start)
	peers []peerEdge
}

type peerEdge struct {
	sid string
	w   int64 // sampled calls, halved every round
	hot int   // consecutive rounds this edge was a move candidate
}

// sampleCall is the hot path's hook, after a successful outgoing call of a
// to actor id (in a's namespace): one call in SampleEvery is counted
// against the server that served it, as the route cache names it.
func (s *Server) sampleCall(a *activation, id string) {
	l := &s.loc
	if l.every == 0 || l.calls.Add(1)%l.every != 0 {
		return
	}
	k := actorKey{a.ns(), id}
	// A call to an actor this server hosts went straight to its table
	// entry (invokeResident) and left the route cache as it was, maybe
	// naming the server the callee lived on before it moved here: ask the
	// table first, or a pair that met would be pulled apart again.
	b := s.table.Load().lookup(k)
	if b != nil && b.state.Load() == stateReady {
		l.record(a, s.cfg.ID, s.rt.Mono(), s.cfg.Locality.MaxActors)
		return
	}
	r, ok := s.client.routes.get(k)
	if !ok || r.owner.sid == "" {
		return
	}
	l.record(a, r.owner.sid, s.rt.Mono(), s.cfg.Locality.MaxActors)
}

func (l *locality) record(a *activation, sid string, now time.Duration, maxActors int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.actors[a.key()]
	switch {
	case e == nil && len(l.actors) >= maxActors:
		l.dropped++
		return
	case e == nil:
		e = &callerEdges{act: a.id, since: now}
		// A copy of the key: a's bytes are inline (activation.keyBuf),
		// and the entry outlives a.
		l.actors[a.key().owned()] = e
	case e.act != a.id:
		*e = callerEdges{act: a.id, since: now, peers: e.peers[:0]}
	}
	for i := range e.peers {
		if e.peers[i].sid == sid {
			e.peers[i].w++
			return
		}
	}
	if len(e.peers) >= maxPeers {
		l.dropped++
		return
	}
	e.peers = append(e.peers, peerEdge{sid: sid, w: 1})
}

// moveCand is an actor whose calls go mostly to server sid.
type moveCand struct {
	key  actorKey
	act  uint64
	sid  string
	w    int64
	hot  int
	self int64 // its calls to this server
}

// candidates returns the round's move candidates, heaviest edge first
// (then by key: deterministic), and decays the table: every weight
// halves, and entries that reach zero go.
func (l *locality) candidates(self string, now time.Duration, c LocalityConfig) []moveCand {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []moveCand
	for k, e := range l.actors {
		var local int64
		best := -1
		for i, p := range e.peers {
			switch {
			case p.sid == self:
				local = p.w
			case best < 0 || p.w > e.peers[best].w || (p.w == e.peers[best].w && p.sid < e.peers[best].sid):
				best = i
			}
		}
		for i := range e.peers {
			p := &e.peers[i]
			if i == best && p.w >= c.MinCalls && float64(p.w) >= c.Factor*float64(local) {
				p.hot++
				if now-e.since >= c.Cooldown {
					out = append(out, moveCand{key: k, act: e.act, sid: p.sid, w: p.w, hot: p.hot, self: local})
				}
			} else {
				p.hot = 0
			}
			p.w /= 2
		}
		e.peers = slices.DeleteFunc(e.peers, func(p peerEdge) bool { return p.w == 0 })
		if len(e.peers) == 0 {
			delete(l.actors, k)
		}
	}
	slices.SortFunc(out, func(x, y moveCand) int {
		if c := cmp.Compare(y.w, x.w); c != 0 {
			return c
		}
		return x.key.compare(y.key)
	})
	return out
}

func (l *locality) forget(k actorKey) {
	l.mu.Lock()
	delete(l.actors, k)
	l.mu.Unlock()
}

func (l *locality) size() (actors int, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.actors), l.dropped
}

// localityMover runs a locality round every Locality.Interval.
func (s *Server) localityMover() {
	for {
		if err := s.rt.Sleep(s.ctx, s.cfg.Locality.Interval); err != nil {
			return
		}
		s.localityRound(s.ctx)
	}
}

// localityRound moves up to MaxPerRound actors to the server most of their
// calls go to, and returns how many it released.
func (s *Server) localityRound(ctx context.Context) int {
	l := s.lease.Load()
	if l == nil || !s.mayServe(l.inc) {
		return 0
	}
	s.stats.localityRounds.Add(1)
	cfg := s.cfg.Locality
	cands := s.loc.candidates(s.cfg.ID, s.rt.Mono(), cfg)
	if len(cands) == 0 {
		return 0
	}
	lctx, cancel := s.rt.WithTimeout(ctx, s.cfg.LeaseTTL/4)
	list, err := s.reg.Servers(lctx)
	cancel()
	if err != nil {
		s.log.Debug("locality: list servers", "err", err)
		return 0
	}
	me := slices.IndexFunc(list, func(m registry.Member) bool { return m.Record.ID == s.cfg.ID })
	if me < 0 {
		return 0
	}
	moved := 0
	for _, c := range cands {
		if moved >= cfg.MaxPerRound {
			break
		}
		peer := slices.IndexFunc(list, func(m registry.Member) bool { return m.Record.ID == c.sid })
		if peer < 0 || !(leads(list[me], list[peer]) || c.hot > trailRounds) {
			continue // not live, or the peer's side moves first
		}
		a := lookupKey(s.table.Load(), c.key)
		if a == nil || a.id != c.act || a.state.Load() != stateReady {
			continue
		}
		n := a.bytes()
		if n > cfg.MaxBytes || !s.cfg.Placement.WithinBound(list, c.sid, n) {
			continue
		}
		if err := s.releaseOne(ctx, a, c.sid); err != nil {
			s.log.Debug("locality move failed", "actor", a.actorID(), "err", err)
			if !s.mayServe(l.inc) {
				break
			}
			continue
		}
		s.loc.forget(c.key)
		list[me].Load.Activations--
		list[me].Load.Bytes -= n
		list[peer].Load.Activations++
		list[peer].Load.Bytes += n
		moved++
		s.stats.localityMoves.Add(1)
		s.log.Info("locality move", "ns", a.ns(), "actor", a.actorID(), "to", c.sid, "calls", c.w, "local", c.self, "bytes", n)
		if s.rt.Tracing() {
			s.rt.Trace(fmt.Sprintf("locality %s/%s from %s#%d to %s calls=%d local=%d", a.ns(), a.actorID(), s.cfg.ID, l.inc.Num, c.sid, c.w, c.self))
		}
	}
	if moved > 0 {
		s.reportLoad(ctx, l)
	}
	return moved
}

// leads reports whether self's side of an edge to peer moves first: self
// holds more activations than peer beyond a band (a tenth of their mean,
// at least 2), or, within it, self's ID is the higher (the lower wins).
// Both servers compute it from the same load records.
func leads(self, peer registry.Member) bool {
	a, b := self.Load.Activations, peer.Load.Activations
	band := max(2, (a+b)/20)
	switch {
	case a-b > band:
		return true
	case b-a > band:
		return false
	}
	return self.Record.ID > peer.Record.ID
}

// lookupKey returns t's entry for k, if any.
func lookupKey(t *table, k actorKey) *activation {
	return t.lookup(k)
}
