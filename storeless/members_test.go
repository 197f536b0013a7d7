package storeless

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestRingMovesOnlyTheLeaversActors(t *testing.T) {
	all := []string{"http://a:1", "http://b:1", "http://c:1", "http://d:1"}
	full, less := newRing(all), newRing([]string{"http://a:1", "http://b:1", "http://d:1"})
	count := map[string]int{}
	const n = 4000
	for i := range n {
		id := fmt.Sprintf("actor-%d", i)
		before, after := full.owner("ns", id), less.owner("ns", id)
		count[before]++
		if before != "http://c:1" && after != before {
			t.Fatalf("%s moved from %s to %s though its owner stayed", id, before, after)
		}
		if after == "http://c:1" {
			t.Fatalf("%s placed on the member that left", id)
		}
	}
	for _, u := range all {
		// Rendezvous hashing spreads evenly: each of 4 members within
		// ±20% of n/4.
		if c := count[u]; c < n/4*8/10 || c > n/4*12/10 {
			t.Fatalf("member %s owns %d of %d actors: uneven %v", u, c, n, count)
		}
	}
	if newRing(all).owner("ns", "x") != full.owner("ns", "x") {
		t.Fatal("the owner is not a function of the members and the name")
	}
}

func TestParsePeers(t *testing.T) {
	good, err := ParsePeers(" http://10.0.0.1:9090, HTTPS://Host.Example:443/ ,http://10.0.0.1:9090")
	if err != nil || strings.Join(good, " ") != "http://10.0.0.1:9090 https://host.example:443" {
		t.Fatalf("got %v, %v", good, err)
	}
	for _, bad := range []string{
		"10.0.0.1:9090", "ftp://h:1", "http://h", "http://h:0", "http://h:70000", "http://:80",
		"http://u:p@h:1", "http://h:1/path", "http://h:1?q", "http://h:1#f", "http://h:1,,http://g:1",
		"http://" + strings.Repeat("a", 600) + ":1",
		strings.Repeat("http://h:1,", MaxPeers) + "http://h:2",
		strings.Repeat("x", MaxPeersFlagBytes+1),
	} {
		if _, err := ParsePeers(bad); !errors.Is(err, ErrBadPeers) {
			t.Errorf("ParsePeers(%.40q) = %v, want ErrBadPeers", bad, err)
		}
	}
}

func TestParseDNS(t *testing.T) {
	d, err := ParseDNS("nola.svc.cluster.local:9090")
	if err != nil || d != (DNSName{Host: "nola.svc.cluster.local", Port: 9090, Scheme: "http"}) {
		t.Fatalf("got %+v, %v", d, err)
	}
	if d, err := ParseDNS("https://nola:443"); err != nil || d.Scheme != "https" {
		t.Fatalf("got %+v, %v", d, err)
	}
	for _, bad := range []string{"nola", "nola:", ":90", "nola:0", "ftp://nola:1", "no la:1", "a..b:1", "http://x/y:1",
		strings.Repeat("a", 64) + ":1", strings.Repeat("a.", 200) + "b:1"} {
		if _, err := ParseDNS(bad); !errors.Is(err, ErrBadPeers) {
			t.Errorf("ParseDNS(%q) = %v, want ErrBadPeers", bad, err)
		}
	}
}

// FuzzParsePeers: any input is refused with ErrBadPeers or gives a bounded
// list of normalized URLs that parse back to themselves.
func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{"", "http://a:1", "http://a:1,https://[::1]:2", "http://%zz:1", "http://a:1/x", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePeers(s)
		if err != nil {
			if !errors.Is(err, ErrBadPeers) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(got) > MaxPeers {
			t.Fatalf("%d peers", len(got))
		}
		for _, u := range got {
			if again, err := NormalizeURL(u); err != nil || again != u {
				t.Fatalf("%q normalizes to %q, %v", u, again, err)
			}
		}
	})
}

// DNS membership: the records are looked up every round; a record that
// goes away takes its member with it; a failed lookup keeps the last
// members.
func TestDNSMembership(t *testing.T) {
	var mu sync.Mutex
	records := []string{"10.0.0.1", "10.0.0.2"}
	var lookupErr error
	m, err := NewMembers(MembersConfig{
		Self: "http://10.0.0.1:9090",
		DNS:  &DNSName{Host: "nola.local", Port: 9090, Scheme: "http"},
		LookupIP: func(_ context.Context, host string) ([]netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			if lookupErr != nil {
				return nil, lookupErr
			}
			var out []netip.Addr
			for _, r := range records {
				out = append(out, netip.MustParseAddr(r))
			}
			return out, nil
		},
		Probe:     func(context.Context, string) error { return nil },
		FailAfter: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	live := func() string { return strings.Join(m.Live(), " ") }
	if got := live(); got != "http://10.0.0.1:9090" {
		t.Fatalf("before a round: %s, want only self", got)
	}
	m.Round(context.Background())
	if got := live(); got != "http://10.0.0.1:9090 http://10.0.0.2:9090" {
		t.Fatalf("after a round: %s", got)
	}
	mu.Lock()
	records = []string{"10.0.0.1", "10.0.0.3", "::ffff:10.0.0.4"}
	mu.Unlock()
	joined, changed := m.Round(context.Background())
	if got := live(); !changed || got != "http://10.0.0.1:9090 http://10.0.0.3:9090 http://10.0.0.4:9090" ||
		strings.Join(joined, " ") != "http://10.0.0.3:9090 http://10.0.0.4:9090" {
		t.Fatalf("after the records changed: %s (joined %v, changed %v)", got, joined, changed)
	}
	mu.Lock()
	lookupErr = errors.New("SERVFAIL")
	mu.Unlock()
	if _, changed := m.Round(context.Background()); changed || live() != "http://10.0.0.1:9090 http://10.0.0.3:9090 http://10.0.0.4:9090" {
		t.Fatalf("a failed lookup changed the members: %s", live())
	}
}

// A member is gone only after FailAfter failed probes in a row, and back
// at its first good one.
func TestProbeHysteresis(t *testing.T) {
	var mu sync.Mutex
	down := false
	m, err := NewMembers(MembersConfig{Self: "http://a:1", Peers: []string{"http://b:1"}, FailAfter: 2,
		Probe: func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return errors.New("down")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Round(ctx)
	mu.Lock()
	down = true
	mu.Unlock()
	if m.Round(ctx); len(m.Live()) != 2 {
		t.Fatal("one failed probe took the member out")
	}
	if m.Round(ctx); len(m.Live()) != 1 {
		t.Fatal("two failed probes left the member in")
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if m.Round(ctx); len(m.Live()) != 2 {
		t.Fatal("a good probe did not bring the member back")
	}
}

// A server whose URL the DNS records do not give (it advertises a host
// name, the records are IPs) would hold itself twice in its ring: it
// warns, once, and not when the records name it.
func TestDNSWithoutSelfWarns(t *testing.T) {
	for _, tc := range []struct {
		self string
		warn bool
	}{{"http://nola-0.local:9090", true}, {"http://10.0.0.1:9090", false}} {
		var logs strings.Builder
		m, err := NewMembers(MembersConfig{
			Self: tc.self,
			DNS:  &DNSName{Host: "nola.local", Port: 9090, Scheme: "http"},
			LookupIP: func(context.Context, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}, nil
			},
			Probe:  func(context.Context, string) error { return nil },
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Round(context.Background())
		m.Round(context.Background())
		if n := strings.Count(logs.String(), "not among the DNS records"); (n == 1) != tc.warn || n > 1 {
			t.Errorf("self %s: %d warnings, want warn=%v (once):\n%s", tc.self, n, tc.warn, logs.String())
		}
	}
}
