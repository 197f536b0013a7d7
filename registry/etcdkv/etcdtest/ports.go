package etcdtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/nolaproject/nola/registry/etcdkv"
)

// memberAddrs returns n free loopback addresses for members' client and
// peer ports, drawn at random below the kernel's ephemeral port range.
//
// A member keeps its ports for the cluster's life: the others know it by
// its peer URL, so a restarted member binds the ports it had. Ports the
// kernel hands out for ":0" (what etcdkv.FreeAddrs uses) come from the
// ephemeral range, which the kernel also uses for the local end of every
// outgoing connection: while a member is down, any process's connection
// may take its port, and the restart fails with "address already in use"
// (seen in make test, with many packages' tests running at once). Ports
// below the range are never given out that way; only another test picking
// at random could take one.
func memberAddrs(n int) ([]string, error) {
	lo, ok := ephemeralLow()
	const floor = 10000
	if !ok || lo-floor < 64*n {
		return etcdkv.FreeAddrs(n)
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]string, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("etcdtest: no free loopback port below %d after %d tries", lo, tries)
		}
		addr := "127.0.0.1:" + strconv.Itoa(floor+rand.IntN(lo-floor))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: draw again
		}
		ls = append(ls, l)
		out = append(out, addr)
	}
	return out, nil
}

// ephemeralLow returns the low end of the kernel's ephemeral port range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	lo, err := strconv.Atoi(f[0])
	return lo, err == nil && lo > 0 && lo <= 65535
}
