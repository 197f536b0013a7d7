package nemesis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// NetnsPrefix begins the name of every network namespace a Netns creates:
// NetnsPrefix + "<pid>-<run>-<node>". The pid lets SweepNetns tell a
// crashed run's namespaces from a live one's.
const NetnsPrefix = "jepsen-lite-"

// LossPercent is the chance, per packet and direction, that a lossy link
// (Node.SetLoss) drops it.
const LossPercent = 5

// Netns is a private network made of Linux network namespaces: one per
// node, each with a veth pair to a bridge in a namespace of its own, plus
// one veth from the caller's namespace to that bridge, so the caller (the
// clients and the proxies) reaches every node. Faults are nft rules in a
// node's namespace (Node.Cut and friends): real packets are dropped, on
// established connections too, and TCP sees what it would see on a real
// network (retransmissions, timeouts).
//
// It needs root, ip(8) with netns support and nft(8). Close removes every
// namespace, veth and nft table it made (nft tables and veths die with
// their namespace); SweepNetns removes those of runs that died without
// closing (kill -9 of the tool).
type Netns struct {
	prefix string
	bridge string // the bridge namespace
	hostIf string // the caller's veth
	net    [3]byte
	hostIP string

	mu     sync.Mutex
	nodes  []*Node
	spaces []string // every namespace created, for Close
}

// Node is one namespace of a Netns, with one address.
type Node struct {
	Name, NS, IP string
}

// NetnsAvailable reports why a Netns cannot be made here (nil: it can).
func NetnsAvailable() error { return netnsProbe(context.Background()) }

var probes atomic.Int64

// netnsProbe checks root and the tools, then makes a namespace with a
// veth pair and the nft table and deletes it: root with ip and nft is
// not enough (a default Docker container has no CAP_SYS_ADMIN for ip
// netns add; a kernel may lack nf_tables), and a mode picked on the tools
// alone would fail halfway through setting up a run instead of falling
// back to loopback.
func netnsProbe(ctx context.Context) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed", tool)
		}
	}
	// A name SweepNetns recognises, should this process die mid-probe.
	nd := &Node{Name: "probe", NS: fmt.Sprintf("%s%d-probe%d", NetnsPrefix, os.Getpid(), probes.Add(1))}
	if err := run1(ctx, "ip", "netns", "add", nd.NS); err != nil {
		return err
	}
	defer func() {
		if derr := run1(context.Background(), "ip", "netns", "del", nd.NS); err == nil {
			err = derr
		}
	}()
	if err := run1(ctx, "ip", "-n", nd.NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1"); err != nil {
		return err
	}
	return nd.nft(ctx, fmt.Sprintf(nftTable, LossPercent, LossPercent))
}

// NewNetns makes the bridge namespace and the caller's veth for run
// (unique within the calling process: the pid makes it unique on the
// machine). The subnet is a free /24 of 198.18.0.0/15, the range RFC
// 2544 reserves for tests.
func NewNetns(ctx context.Context, run string) (_ *Netns, err error) {
	if err := netnsProbe(ctx); err != nil {
		return nil, err
	}
	pid := os.Getpid()
	n := &Netns{prefix: fmt.Sprintf("%s%d-%s-", NetnsPrefix, pid, run), hostIf: fmt.Sprintf("jl%d", pid%10_000_000)}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if err := n.pickSubnet(pid); err != nil {
		return nil, err
	}
	n.bridge = n.prefix + "br"
	if err := n.addNS(ctx, n.bridge); err != nil {
		return nil, err
	}
	if err := run1(ctx, "ip", "-n", n.bridge, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := run1(ctx, "ip", "-n", n.bridge, "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	n.hostIP = n.addr(1)
	if err := run1(ctx, "ip", "link", "add", "name", n.hostIf, "type", "veth", "peer", "name", "host", "netns", n.bridge); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"ip", "-n", n.bridge, "link", "set", "host", "master", "br0", "up"},
		{"ip", "addr", "add", n.hostIP + "/24", "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
	} {
		if err := run1(ctx, c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// pickSubnet takes the first /24 from pid on that no interface of the
// caller's namespace uses (parallel runs must not share one).
func (n *Netns) pickSubnet(pid int) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	for i := range 512 {
		idx := (pid + i) % 512
		cand := [3]byte{198, byte(18 + idx/256), byte(idx % 256)}
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip4 := ipn.IP.To4(); ip4 != nil && ip4[0] == cand[0] && ip4[1] == cand[1] && ip4[2] == cand[2] {
					used = true
				}
			}
		}
		if !used {
			n.net = cand
			return nil
		}
	}
	return errors.New("no free /24 in 198.18.0.0/15")
}

func (n *Netns) addr(host int) string {
	return fmt.Sprintf("%d.%d.%d.%d", n.net[0], n.net[1], n.net[2], host)
}

// HostIP is the caller's address on the bridge (where proxies listen).
func (n *Netns) HostIP() string { return n.hostIP }

// Prefix begins the name of every namespace of this Netns.
func (n *Netns) Prefix() string { return n.prefix }

func (n *Netns) addNS(ctx context.Context, name string) error {
	if err := run1(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.spaces = append(n.spaces, name)
	n.mu.Unlock()
	return nil
}

// nftTable is every node's filter: four sets the faults fill.
//   - cut: addresses whose every packet is dropped (a partition);
//   - rsvc: remote services (address . port) this node talks to, cut;
//   - lsvc: remote addresses cut from one local port (address . port);
//   - loss: remote services whose packets are dropped with LossPercent.
const nftTable = `table inet jepsenlite {
  set cut { type ipv4_addr; }
  set rsvc { type ipv4_addr . inet_service; }
  set lsvc { type ipv4_addr . inet_service; }
  set loss { type ipv4_addr . inet_service; }
  chain in {
    type filter hook input priority 0; policy accept;
    ip saddr @cut drop
    ip saddr . tcp sport @rsvc drop
    ip saddr . tcp dport @lsvc drop
    ip saddr . tcp sport @loss numgen random mod 100 < %d drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr @cut drop
    ip daddr . tcp dport @rsvc drop
    ip daddr . tcp sport @lsvc drop
    ip daddr . tcp dport @loss numgen random mod 100 < %d drop
  }
}
`

// AddNode makes a namespace for name with the next address, a veth to
// the bridge and the nft table.
func (n *Netns) AddNode(ctx context.Context, name string) (*Node, error) {
	n.mu.Lock()
	idx := len(n.nodes)
	n.mu.Unlock()
	if idx > 200 {
		return nil, errors.New("netns: too many nodes")
	}
	nd := &Node{Name: name, NS: n.prefix + name, IP: n.addr(10 + idx)}
	if err := n.addNS(ctx, nd.NS); err != nil {
		return nil, err
	}
	peer := "p" + strconv.Itoa(idx)
	for _, c := range [][]string{
		{"ip", "-n", nd.NS, "link", "add", "name", "eth0", "type", "veth", "peer", "name", peer, "netns", n.bridge},
		{"ip", "-n", n.bridge, "link", "set", peer, "master", "br0", "up"},
		{"ip", "-n", nd.NS, "addr", "add", nd.IP + "/24", "dev", "eth0"},
		{"ip", "-n", nd.NS, "link", "set", "eth0", "up"},
		{"ip", "-n", nd.NS, "link", "set", "lo", "up"},
	} {
		if err := run1(ctx, c[0], c[1:]...); err != nil {
			return nil, err
		}
	}
	if err := nd.nft(ctx, fmt.Sprintf(nftTable, LossPercent, LossPercent)); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.nodes = append(n.nodes, nd)
	n.mu.Unlock()
	return nd, nil
}

// Command wraps path and args to run in the node's namespace (ip netns
// exec execs them: the process keeps its PID and process group).
func (nd *Node) Command(path string, args ...string) (string, []string) {
	return "ip", append([]string{"netns", "exec", nd.NS, path}, args...)
}

func (nd *Node) nft(ctx context.Context, script string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nd.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", nd.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Service is an address and a TCP port.
type Service struct {
	IP   string
	Port int
}

// ServiceOf splits "ip:port".
func ServiceOf(addr string) (Service, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return Service{}, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || net.ParseIP(h).To4() == nil {
		return Service{}, fmt.Errorf("not an IPv4 address and port: %q", addr)
	}
	return Service{h, port}, nil
}

func (nd *Node) elements(ctx context.Context, add bool, set string, elems []string) error {
	if len(elems) == 0 {
		return nil
	}
	verb := "delete"
	if add {
		verb = "add"
	}
	return nd.nft(ctx, fmt.Sprintf("%s element inet jepsenlite %s { %s }\n", verb, set, strings.Join(elems, ", ")))
}

func services(svcs []Service) []string {
	var out []string
	for _, s := range svcs {
		out = append(out, fmt.Sprintf("%s . %d", s.IP, s.Port))
	}
	return out
}

// Cut drops (on) or lets through (off) every packet between the node and
// the addresses ips.
func (nd *Node) Cut(ctx context.Context, on bool, ips ...string) error {
	return nd.elements(ctx, on, "cut", ips)
}

// CutRemote drops every packet between the node and the remote services.
func (nd *Node) CutRemote(ctx context.Context, on bool, svcs ...Service) error {
	return nd.elements(ctx, on, "rsvc", services(svcs))
}

// CutLocal drops every packet between svc.IP (a remote address) and the
// node's local port svc.Port.
func (nd *Node) CutLocal(ctx context.Context, on bool, svcs ...Service) error {
	return nd.elements(ctx, on, "lsvc", services(svcs))
}

// SetLoss drops LossPercent of the packets between the node and the
// remote services (on), or none (off).
func (nd *Node) SetLoss(ctx context.Context, on bool, svcs ...Service) error {
	return nd.elements(ctx, on, "loss", services(svcs))
}

// Heal empties every fault set of the node: whatever a fault whose Stop
// failed (an nft that timed out on a loaded machine) left in place is
// lifted.
func (nd *Node) Heal(ctx context.Context) error {
	var b strings.Builder
	for _, set := range []string{"cut", "rsvc", "lsvc", "loss"} {
		fmt.Fprintf(&b, "flush set inet jepsenlite %s\n", set)
	}
	return nd.nft(ctx, b.String())
}

// Close deletes every namespace (their veths and nft tables go with
// them) and the caller's veth. Processes still running in a namespace
// keep it alive unnamed: stop them first.
func (n *Netns) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.mu.Lock()
	spaces := n.spaces
	n.spaces = nil
	n.mu.Unlock()
	var errs []error
	for i := len(spaces) - 1; i >= 0; i-- {
		if err := run1(ctx, "ip", "netns", "del", spaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// The veth goes with its peer in the bridge namespace; delete it in
	// case the bridge namespace was never made.
	if n.hostIf != "" {
		if _, err := net.InterfaceByName(n.hostIf); err == nil {
			// It may vanish in between (its peer's namespace is being
			// torn down): only one still there is an error.
			if err := run1(ctx, "ip", "link", "del", n.hostIf); err != nil {
				if _, still := net.InterfaceByName(n.hostIf); still == nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// SweepNetns deletes the namespaces of runs whose process is gone (a
// kill -9 of the tool skips Close). It returns their names.
func SweepNetns(ctx context.Context) ([]string, error) {
	names, err := ListNetns(ctx)
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	for _, name := range names {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, NetnsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		if err := run1(ctx, "ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, name)
	}
	return gone, errors.Join(errs...)
}

// ListNetns lists the namespaces whose name begins with NetnsPrefix.
func ListNetns(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], NetnsPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func run1(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
