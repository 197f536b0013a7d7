package storeless

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Bounds on what an operator or a DNS server may hand us: a membership list
// is held, probed and hashed over every round, so it is bounded before
// anything is allocated for it.
const (
	// MaxPeers bounds the members of one cluster (static list plus DNS).
	MaxPeers = 256
	// MaxPeersFlagBytes bounds the --peers text itself.
	MaxPeersFlagBytes = 64 << 10
	maxURLBytes       = 512
)

// ErrBadPeers is what ParsePeers and ParseDNS return for input they refuse
// (errors.Is); the message says which entry and why.
var ErrBadPeers = errors.New("storeless: bad peer list")

func badPeers(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadPeers, fmt.Sprintf(format, args...))
}

// ParsePeers reads a comma-separated list of server URLs
// ("http://10.0.0.1:9090,http://10.0.0.2:9090"): each must be an http or
// https URL with a host and a port and nothing else (no path, query,
// fragment or user), at most MaxPeers of them. Duplicates are dropped;
// trailing slashes are removed. An empty list is allowed (DNS may supply
// the members).
func ParsePeers(v string) ([]string, error) {
	if len(v) > MaxPeersFlagBytes {
		return nil, badPeers("the list is %d bytes, more than %d", len(v), MaxPeersFlagBytes)
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if n := strings.Count(v, ",") + 1; n > MaxPeers {
		return nil, badPeers("%d entries, more than %d", n, MaxPeers)
	}
	var out []string
	seen := map[string]bool{}
	for i, p := range strings.Split(v, ",") {
		u, err := NormalizeURL(strings.TrimSpace(p))
		if err != nil {
			return nil, badPeers("entry %d: %v", i+1, err)
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, nil
}

// NormalizeURL checks one server URL and returns it in the form members
// are compared in: scheme://host:port, lower-case scheme and host.
func NormalizeURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty URL")
	}
	if len(s) > maxURLBytes {
		return "", fmt.Errorf("URL of %d bytes, more than %d", len(s), maxURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL", clip(s))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: the scheme must be http or https", clip(s))
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%q has no host", clip(s))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/"):
		return "", fmt.Errorf("%q: want scheme://host:port and nothing else", clip(s))
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return "", fmt.Errorf("%q: want host:port after the scheme", clip(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port must be 1-65535", clip(s))
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(net.JoinHostPort(host, port)), nil
}

// DNSName is a --peers-dns value: a name whose A/AAAA records are the
// members, each reached at Port with Scheme.
type DNSName struct {
	Host   string
	Port   int
	Scheme string
}

// ParseDNS reads NAME:PORT (scheme http), or http(s)://NAME:PORT.
func ParseDNS(v string) (DNSName, error) {
	scheme := "http"
	if s, rest, ok := strings.Cut(v, "://"); ok {
		if s != "http" && s != "https" {
			return DNSName{}, badPeers("--peers-dns %q: the scheme must be http or https", clip(v))
		}
		scheme, v = s, rest
	}
	if len(v) > 253+6 {
		return DNSName{}, badPeers("--peers-dns of %d bytes is too long for a DNS name and port", len(v))
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return DNSName{}, badPeers("--peers-dns %q: want NAME:PORT", clip(v))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return DNSName{}, badPeers("--peers-dns %q: port must be 1-65535", clip(v))
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || strings.ContainsFunc(label, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return DNSName{}, badPeers("--peers-dns %q: %q is not a DNS name", clip(v), clip(host))
		}
	}
	return DNSName{Host: host, Port: n, Scheme: scheme}, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
