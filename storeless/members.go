package storeless

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MembersConfig configures a Members.
type MembersConfig struct {
	// Self is this server's URL (as other servers reach it): always a
	// live member of its own view.
	Self string
	// Peers is the static member list (ParsePeers); it may include Self.
	Peers []string
	// DNS, if set, adds the A/AAAA records of a name, looked up again
	// every round (ParseDNS).
	DNS *DNSName
	// LookupIP resolves DNS.Host (default: the system resolver, A and
	// AAAA records).
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// Probe checks that the server at url is up (default: GET
	// url/healthz answering 200, within ProbeTimeout, with HTTPClient).
	Probe func(ctx context.Context, url string) error
	// HTTPClient makes the default probes (default: a client of its own).
	HTTPClient *http.Client
	// ProbeTimeout bounds one probe and one DNS lookup (default 1s).
	ProbeTimeout time.Duration
	// FailAfter is how many probes in a row must fail before a live
	// member counts as gone (default 2). A new member is live from its
	// first successful probe.
	FailAfter int
	Logger    *slog.Logger
}

// Members is one server's view of the cluster: the candidates (static
// list and DNS records) and which of them answered their health probes.
// Views are not agreed on: two servers may see different members (during
// a partition they do), and then they place the same actor on different
// servers. That is why store-less mode is not linearizable.
type Members struct {
	cfg    MembersConfig
	ring   atomic.Pointer[ring]
	status atomic.Pointer[[]MemberStatus] // after the last round

	mu    sync.Mutex // serializes rounds
	peers map[string]*peer
	dns   []string // last successful lookup's members
	// selfWarned: the DNS records were found not to name Self (warned
	// once, until they do).
	selfWarned bool
}

type peer struct {
	live  bool
	fails int
	err   string // the last failed probe's error, "" after a good one
}

// MemberStatus is one candidate's probe state in this server's view
// (GET /v1/cluster shows them).
type MemberStatus struct {
	URL  string `json:"url"`
	Self bool   `json:"self,omitempty"`
	Live bool   `json:"live"`
	// Failures is how many probes in a row failed; LastError is the last
	// failure's error (both zero after a good probe).
	Failures  int    `json:"probe_failures"`
	LastError string `json:"last_probe_error,omitempty"`
}

// Status lists the candidates and their probe state, Self first, then
// sorted by URL.
// It is the state after the last round: it does not wait for one in
// progress.
func (m *Members) Status() []MemberStatus {
	if st := m.status.Load(); st != nil {
		return slices.Clone(*st)
	}
	return []MemberStatus{{URL: m.cfg.Self, Self: true, Live: true}}
}

// snapshotStatus stores Status's answer; Round calls it with mu held.
func (m *Members) snapshotStatus() {
	out := []MemberStatus{{URL: m.cfg.Self, Self: true, Live: true}}
	for u, p := range m.peers {
		out = append(out, MemberStatus{URL: u, Live: p.live, Failures: p.fails, LastError: p.err})
	}
	slices.SortFunc(out[1:], func(a, b MemberStatus) int { return strings.Compare(a.URL, b.URL) })
	m.status.Store(&out)
}

// NewMembers returns a view in which only Self is live; Round probes the
// others.
func NewMembers(cfg MembersConfig) (*Members, error) {
	self, err := NormalizeURL(cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("storeless: this server's URL: %w", err)
	}
	cfg.Self = self
	if len(cfg.Peers) > MaxPeers {
		return nil, badPeers("%d peers, more than %d", len(cfg.Peers), MaxPeers)
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = time.Second
	}
	if cfg.FailAfter <= 0 {
		cfg.FailAfter = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy: nil, DialContext: (&net.Dialer{Timeout: cfg.ProbeTimeout}).DialContext,
			MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
		}}
	}
	if cfg.Probe == nil {
		cfg.Probe = httpProbe(cfg.HTTPClient)
	}
	if cfg.LookupIP == nil {
		cfg.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	m := &Members{cfg: cfg, peers: map[string]*peer{}}
	m.ring.Store(newRing([]string{self}))
	return m, nil
}

// httpProbe is the default probe: GET /healthz answers 200.
func httpProbe(c *http.Client) func(ctx context.Context, url string) error {
	return func(ctx context.Context, url string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health probe: HTTP %d", resp.StatusCode)
		}
		return nil
	}
}

// Self is this server's URL, normalized.
func (m *Members) Self() string { return m.cfg.Self }

// Live returns the live members, Self included, sorted.
func (m *Members) Live() []string { return slices.Clone(m.ring.Load().urls) }

// Owner returns the live member that owns actor (ns, id) in this view.
func (m *Members) Owner(ns, id string) string { return m.ring.Load().owner(ns, id) }

// Round looks the DNS name up again (if any), probes every candidate but
// Self concurrently (each bounded by ProbeTimeout), and updates the live
// set. joined lists the members that became live; changed reports
// whether the live set changed at all.
func (m *Members) Round(ctx context.Context) (joined []string, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cands := m.candidates(ctx)
	results := make([]error, len(cands))
	var wg sync.WaitGroup
	for i, u := range cands {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
			defer cancel()
			results[i] = m.cfg.Probe(pctx, u)
		})
	}
	wg.Wait()
	next := map[string]*peer{}
	live := []string{m.cfg.Self}
	for i, u := range cands {
		p := m.peers[u]
		if p == nil {
			p = &peer{}
		}
		if results[i] == nil {
			if !p.live {
				joined = append(joined, u)
				m.cfg.Logger.Info("store-less member up", "member", u)
			}
			p.live, p.fails, p.err = true, 0, ""
		} else {
			p.fails++
			p.err = clip(results[i].Error())
			if p.live && p.fails >= m.cfg.FailAfter {
				p.live = false
				m.cfg.Logger.Warn("store-less member down", "member", u, "err", results[i])
			}
		}
		next[u] = p
		if p.live {
			live = append(live, u)
		}
	}
	for u, p := range m.peers {
		if next[u] == nil && p.live {
			m.cfg.Logger.Info("store-less member no longer listed", "member", u)
		}
	}
	m.peers = next
	m.snapshotStatus()
	slices.Sort(live)
	changed = !slices.Equal(live, m.ring.Load().urls)
	if changed {
		m.ring.Store(newRing(live))
	}
	return joined, changed
}

// candidates is the static list and the DNS records, without Self,
// bounded by MaxPeers. A failed lookup keeps the last good one's members.
func (m *Members) candidates(ctx context.Context) []string {
	if d := m.cfg.DNS; d != nil {
		lctx, cancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
		addrs, err := m.cfg.LookupIP(lctx, d.Host)
		cancel()
		if err != nil {
			m.cfg.Logger.Warn("store-less DNS lookup failed; keeping the last members", "name", d.Host, "err", err)
		} else {
			m.dns = m.dns[:0]
			for _, a := range addrs {
				u := d.Scheme + "://" + net.JoinHostPort(a.Unmap().String(), strconv.Itoa(d.Port))
				m.dns = append(m.dns, u)
			}
			m.checkSelfListed()
		}
	}
	seen := map[string]bool{m.cfg.Self: true}
	var out []string
	for _, u := range slices.Concat(m.cfg.Peers, m.dns) {
		if seen[u] {
			continue
		}
		if len(out) == MaxPeers {
			m.cfg.Logger.Warn("store-less: more members than the limit; ignoring the rest", "limit", MaxPeers)
			break
		}
		seen[u] = true
		out = append(out, u)
	}
	return out
}

// checkSelfListed warns when the DNS records (and the static list) do not
// name Self: the others then know this server by another URL (its IP, if
// --advertise names a host), so its ring holds it twice and differs from
// every other view, and actors run twice while membership is stable.
func (m *Members) checkSelfListed() {
	listed := len(m.dns) == 0 || slices.Contains(m.dns, m.cfg.Self) || slices.Contains(m.cfg.Peers, m.cfg.Self)
	if !listed && !m.selfWarned {
		m.cfg.Logger.Warn("store-less: this server's URL is not among the DNS records; the others know it by another name, "+
			"so views differ and actors run twice", "self", m.cfg.Self, "records", m.dns,
			"hint", "set --advertise to http(s)://IP:PORT, the address the records give")
	}
	m.selfWarned = !listed
}

// ring places actors by rendezvous (highest random weight) hashing: an
// actor belongs to the member whose hash with the actor's name is the
// highest. When a member leaves, only its actors move (each to the member
// that scored second for it); when one joins, it takes about 1/n of the
// actors from the others.
type ring struct {
	urls  []string
	seeds []uint64 // FNV-1a state after each URL and a separator
}

func newRing(urls []string) *ring {
	r := &ring{urls: urls, seeds: make([]uint64, len(urls))}
	for i, u := range urls {
		r.seeds[i] = fnvString(fnvString(fnvOffset, u), "\x00")
	}
	return r
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix is splitmix64's finalizer: FNV's low-entropy high bits would bias
// the comparison between members otherwise.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

func (r *ring) owner(ns, id string) string {
	best, bestScore := 0, uint64(0)
	for i, seed := range r.seeds {
		h := mix(fnvString(fnvString(fnvString(seed, ns), "\x00"), id))
		if i == 0 || h > bestScore {
			best, bestScore = i, h
		}
	}
	return r.urls[best]
}
