package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/storeless"
	"github.com/nolaproject/nola/wasm/modules"
)

// Hash configures a store-less node (docs/storeless.md). It is NOT
// linearizable and has NO durable KV: servers find each other from Peers
// or DNS, probe each other's /healthz, and place each actor on the live
// member that rendezvous hashing picks. Two servers that cannot see each
// other both host an actor both think they own, and actor KV calls fail
// with nola.ErrUnsupported. Use it where losing single activation is
// acceptable; use the default store (etcd) otherwise.
type Hash struct {
	// Peers are the members' URLs (storeless.ParsePeers); this node's own
	// may be among them.
	Peers []string
	// DNS, if set, adds the A/AAAA records of a name (storeless.ParseDNS),
	// looked up again every round.
	DNS *storeless.DNSName
	// Interval is the time between membership rounds (default 1s);
	// negative: no background rounds (tests drive Node.Router().Round).
	Interval time.Duration
	// ProbeTimeout bounds one health probe and one DNS lookup (default
	// 1s); FailAfter probes in a row must fail before a member counts as
	// gone (default 2).
	ProbeTimeout time.Duration
	FailAfter    int
	// Probe replaces the HTTP health probe (tests: partitions).
	Probe func(ctx context.Context, url string) error
}

func (p *prepared) checkHash() error {
	h := p.Hash
	if h == nil {
		return nil
	}
	switch {
	case p.Store.KV != nil || (p.Store.Kind != "" && p.Store.Kind != "memory") || len(p.Store.Endpoints) > 0:
		return badOption("Store", "a store-less node (Hash) has no store: leave Store empty")
	case len(h.Peers) > storeless.MaxPeers:
		return badOption("Hash.Peers", "%d peers, more than %d", len(h.Peers), storeless.MaxPeers)
	case h.ProbeTimeout < 0 || h.FailAfter < 0:
		return badOption("Hash", "ProbeTimeout and FailAfter must not be negative")
	}
	for _, u := range h.Peers {
		if _, err := storeless.NormalizeURL(u); err != nil {
			return badOption("Hash.Peers", "%v", err)
		}
	}
	if host, _, err := net.SplitHostPort(p.Listen); err == nil && p.Advertise == "" && p.Listen != "" {
		if ip, perr := netip.ParseAddr(host); host == "" || (perr == nil && ip.IsUnspecified()) {
			// Its own name would be http://0.0.0.0:…, which no peer uses:
			// it would count itself twice and disagree with every view.
			return badOption("Advertise", "a store-less node listening on %s needs Advertise: the URL the others know it by", p.Listen)
		}
	}
	p.Store.Kind = "memory"
	return nil
}

// newRouter builds the store-less router of a node whose server will use
// transport for calls to other members.
func (n *Node) newRouter(p *prepared, transport nola.Transport, mods *modules.Store) (*storeless.Router, error) {
	h := p.Hash
	peers := make([]string, 0, len(h.Peers))
	for _, u := range h.Peers {
		nu, _ := storeless.NormalizeURL(u) // checked by prepare
		peers = append(peers, nu)
	}
	m, err := storeless.NewMembers(storeless.MembersConfig{
		Self: n.url, Peers: peers, DNS: h.DNS, Probe: h.Probe,
		ProbeTimeout: h.ProbeTimeout, FailAfter: h.FailAfter, Logger: n.log,
	})
	if err != nil {
		return nil, err
	}
	if len(peers) > 0 && !slices.Contains(peers, m.Self()) {
		n.log.Warn("store-less: this server's URL is not in the peer list; the others will not route to it unless DNS names it",
			"self", m.Self(), "hint", "set --advertise to the URL the others are given")
	}
	maxModule := 0
	if mods != nil {
		maxModule = mods.Limits().MaxModuleBytes
	}
	return storeless.NewRouter(storeless.RouterConfig{
		Members: m, Transport: transport, AdminToken: p.AdminToken,
		MaxModuleBytes: maxModule, Interval: h.Interval, Logger: n.log,
	}), nil
}

// registerHashMetrics exposes the router's membership view and moves.
func registerHashMetrics(m *prometheus.Registry, r *storeless.Router) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nola_storeless_live_members", Help: "Store-less mode: live members in this server's view, itself included.",
		}, func() float64 { return float64(len(r.Members().Live())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nola_storeless_moved_total", Help: "Store-less mode: activations released because their owner on the ring changed.",
		}, func() float64 { return float64(r.Moved()) }),
	} {
		if err := m.Register(c); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	return nil
}

// Router is a store-less node's router (nil for a node with a store):
// its membership view, and Round to drive membership in tests.
func (n *Node) Router() *storeless.Router { return n.router }

// startRouter runs a first membership round (so that the node serves with
// a view of its peers, not of itself alone), then, unless interval is
// negative, rounds in the background until the node closes.
func (n *Node) startRouter(ctx context.Context, interval time.Duration) {
	n.router.Round(ctx)
	n.log.Warn("store-less mode (--registry hash): NOT linearizable and no durable KV; "+
		"servers that cannot see each other host the same actor twice", "members", n.router.Members().Live())
	if interval < 0 {
		return
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.router.Run(rctx) }()
	n.closers = append(n.closers, func() error { cancel(); <-done; return nil })
}
