package etcdtest

import (
	"net"
	"strconv"
	"testing"
)

// Member ports lie below the ephemeral range (where no outgoing
// connection can take one while its member is down), are distinct, and
// are free when returned.
func TestMemberAddrsAvoidTheEphemeralRange(t *testing.T) {
	lo, ok := ephemeralLow()
	if !ok {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range here")
	}
	addrs, err := memberAddrs(6)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port >= lo || port < 1024 {
			t.Errorf("port %d is not below the ephemeral range (starting at %d)", port, lo)
		}
		if seen[a] {
			t.Errorf("%s returned twice", a)
		}
		seen[a] = true
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s is not free: %v", a, err)
			continue
		}
		_ = l.Close()
	}
}
