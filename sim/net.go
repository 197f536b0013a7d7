package sim

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

const storeName = "store"

// Network is the simulated network between clients (c0, c1, …), servers
// (s0, s1, …) and the store. Every message takes a seeded latency (so
// messages reorder), may be lost, may be delayed by a spike, and obeys the
// partitions and slow windows the nemesis sets. Messages in flight belong
// to the network's own node, which never crashes or pauses: a message sent
// by a process that crashes afterwards is still delivered.
type Network struct {
	w    *simrt.World
	node *simrt.Node
	rng  *rand.Rand
	p    NetParams

	servers map[string]*endpoint // by participant name
	cuts    []cut
	slow    []slowWindow
	// storeDownUntil: until then the store answers "unavailable".
	storeDownUntil time.Duration
	// handlerTimeout bounds the server side of one invocation.
	handlerTimeout time.Duration

	stats NetStats
	fx    *effects
}

// NetStats counts messages.
type NetStats struct {
	Sent, Lost, Cut, Refused int64
}

type endpoint struct {
	node *simrt.Node
	h    nola.Handler // nil while the process is down
}

type cut struct {
	a, b   string
	until  time.Duration
	buffer bool
}

type slowWindow struct {
	server string
	link   LinkKind
	until  time.Duration
	extra  time.Duration
}

func newNetwork(w *simrt.World, p NetParams, handlerTimeout time.Duration) *Network {
	return &Network{w: w, node: w.Node("net"), rng: w.Rand(), p: p, servers: map[string]*endpoint{}, handlerTimeout: handlerTimeout, fx: newEffects(w)}
}

func linkOf(a, b string) LinkKind {
	if a > b {
		a, b = b, a
	}
	switch {
	case a[0] == 's' && b == storeName:
		return LinkServerStore
	case a[0] == 'c' && b == storeName:
		return LinkClientStore
	case a[0] == 'c':
		return LinkClientServer
	}
	return LinkServerServer
}

// cutBetween returns the active partition between a and b, if any.
func (n *Network) cutBetween(a, b string) *cut {
	now := n.w.Now()
	for i := range n.cuts {
		c := &n.cuts[i]
		if c.until > now && ((c.a == a && c.b == b) || (c.a == b && c.b == a)) {
			return c
		}
	}
	return nil
}

// partition cuts a from b for d.
func (n *Network) partition(a, b string, d time.Duration, buffer bool) {
	now := n.w.Now()
	n.cuts = slices.DeleteFunc(n.cuts, func(c cut) bool { return c.until <= now })
	n.cuts = append(n.cuts, cut{a: a, b: b, until: now + d, buffer: buffer})
}

func (n *Network) slowDown(server string, link LinkKind, d, extra time.Duration) {
	now := n.w.Now()
	n.slow = slices.DeleteFunc(n.slow, func(s slowWindow) bool { return s.until <= now })
	n.slow = append(n.slow, slowWindow{server: server, link: link, until: now + d, extra: extra})
}

func (n *Network) storeDown(d time.Duration) {
	n.storeDownUntil = max(n.storeDownUntil, n.w.Now()+d)
}

func (n *Network) storeIsDown() bool { return n.w.Now() < n.storeDownUntil }

// healAll ends every partition, slow window and store outage.
func (n *Network) healAll() {
	n.cuts, n.slow, n.storeDownUntil = nil, nil, 0
}

func (n *Network) latency(from, to string) time.Duration {
	p := n.p
	d := p.MinLatency
	if p.MaxLatency > p.MinLatency {
		d += time.Duration(n.rng.Int64N(int64(p.MaxLatency - p.MinLatency)))
	}
	if p.SpikeProb > 0 && n.rng.Float64() < p.SpikeProb && p.SpikeMax > 0 {
		d += time.Duration(n.rng.Int64N(int64(p.SpikeMax)))
	}
	if len(n.slow) > 0 {
		now, link := n.w.Now(), linkOf(from, to)
		for _, s := range n.slow {
			if s.until > now && s.link == link && (s.server == from || s.server == to) && s.extra > 0 {
				d += time.Duration(n.rng.Int64N(int64(s.extra)))
			}
		}
	}
	return d
}

// send carries one message from one participant to another and runs
// deliver (as a task of the network node) when it arrives, or dropped (if
// not nil) when it is lost. It reports false if the message was lost at
// once (loss, or a dropping partition). A buffering partition holds the
// message until it heals.
func (n *Network) send(from, to string, deliver, dropped func()) bool {
	c := n.cutBetween(from, to)
	lost := c != nil && !c.buffer
	if lost {
		n.stats.Cut++
	} else if n.p.Loss > 0 && n.rng.Float64() < n.p.Loss {
		n.stats.Lost++
		lost = true
	}
	if lost {
		if dropped != nil {
			dropped()
		}
		return false
	}
	n.stats.Sent++
	d := n.latency(from, to)
	if c != nil {
		d = max(d, c.until-n.w.Now()+n.latency(from, to))
	}
	n.node.AfterFunc(d, "msg", func() { n.arrive(from, to, deliver, dropped) })
	return true
}

// arrive delivers a message unless a partition began while it was in
// flight: a dropping one loses it, a buffering one holds it until it heals.
func (n *Network) arrive(from, to string, deliver, dropped func()) {
	if c := n.cutBetween(from, to); c != nil {
		if !c.buffer {
			n.stats.Cut++
			if dropped != nil {
				dropped()
			}
			return
		}
		n.node.AfterFunc(c.until-n.w.Now()+n.latency(from, to), "msg", func() { n.arrive(from, to, deliver, dropped) })
		return
	}
	deliver()
}

// listen attaches a server process to participant name; nil detaches it
// (the process is down).
func (n *Network) listen(name string, node *simrt.Node, h nola.Handler) {
	n.servers[name] = &endpoint{node: node, h: h}
}

// Addr is the address of server participant name.
func Addr(name string) string { return "sim://" + name }

// Transport returns the nola.Transport of participant from, whose tasks run
// on node.
func (n *Network) Transport(from string, node *simrt.Node) nola.Transport {
	return &transport{n: n, from: from, node: node}
}

type transport struct {
	n    *Network
	from string
	node *simrt.Node
}

type reply struct {
	b   []byte
	err error
}

// Invoke sends req to the server at addr and waits for its answer until
// ctx is done. A request that never arrives, or whose answer is lost,
// surfaces as a timeout (outcome unknown); a request that reaches a host
// whose server process is down is sometimes refused (certainly not run:
// retryable) and sometimes silently ignored.
func (t *transport) Invoke(ctx context.Context, addr string, req nola.Request) ([]byte, error) {
	n := t.n
	to, ok := strings.CutPrefix(addr, "sim://")
	if _, known := n.servers[to]; !ok || !known {
		return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "no such host " + addr, Retryable: true}
	}
	req = cloneRequest(req)
	fut := rt.NewFuture[reply](t.node)
	from := t.from
	respond := func(b []byte, err error) {
		b = bytes.Clone(b)
		n.send(to, from, func() { fut.Resolve(reply{b: b, err: err}, nil) }, nil)
	}
	// The client operation the request serves (if any) travels with it to
	// the handler (see effects).
	tok := tokenOf(ctx)
	n.send(from, to, func() {
		ep := n.servers[to]
		if ep.h == nil {
			if n.rng.IntN(2) == 0 {
				n.stats.Refused++
				respond(nil, &nola.Error{Code: nola.CodeUnavailable, Message: "connection refused by " + addr, Retryable: true})
			}
			return
		}
		h, node := ep.h, ep.node
		node.Go("handle", func() {
			hctx, cancel := node.WithTimeout(withToken(context.Background(), tok), n.handlerTimeout)
			b, err := h.HandleInvoke(hctx, req)
			cancel()
			respond(b, asNolaError(err))
		})
	}, nil)
	r, err := fut.Wait(ctx)
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeTimeout, Message: "no answer from " + addr + ": " + err.Error()}
	}
	return r.b, r.err
}

func cloneRequest(r nola.Request) nola.Request {
	r.Payload = bytes.Clone(r.Payload)
	r.Chain = slices.Clone(r.Chain)
	return r
}

// asNolaError keeps *nola.Error answers as they are (codes and the
// retryable flag cross the wire) and turns anything else into an internal
// error, as a real transport would.
func asNolaError(err error) error {
	if err == nil {
		return nil
	}
	var ne *nola.Error
	if errors.As(err, &ne) {
		return ne
	}
	return &nola.Error{Code: nola.CodeInternal, Message: err.Error()}
}
