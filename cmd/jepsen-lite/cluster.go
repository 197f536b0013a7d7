package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

// cluster is the topology of one run: etcd members, nola servers and the
// proxies on every link the nemeses can cut.
//
//	client ──K[i]──▶ server i          (clients reach servers through K)
//	server ──A[i]──▶ server i          (servers advertise A: forwarding)
//	server i ──E[i][j]──▶ etcd member j (server i's etcd endpoints)
//
// etcd members talk to each other directly (peer links are not proxied).
//
// In the network-namespace mode (netns set) every etcd member and server
// runs in a namespace of its own, joined by a bridge: clients and servers
// reach servers directly, etcd members reach each other directly, and
// partitions and packet loss are nft rules in the namespaces. Only the
// server→etcd links keep their proxy (E), which listens on the tool's
// bridge address: latency and stalls need it (tc netem is not there).
type cluster struct {
	work, logs string
	netns      *nemesis.Netns
	etcd       []*etcdMember
	servers    []*server
	proxies    []*nemesis.Proxy
	ttl        time.Duration
}

type etcdMember struct {
	name       string
	clientAddr string
	node       *nemesis.Node // netns mode
	proc       *nemesis.Process
}

type server struct {
	id       string
	addr     string // direct listen address
	clientPx *nemesis.Proxy
	peerPx   *nemesis.Proxy
	etcdPx   []*nemesis.Proxy
	trace    string
	ready    string
	node     *nemesis.Node // netns mode: no client or peer proxy
	proc     *nemesis.Process
}

// clientURL is where clients call server s.
func (s *server) clientURL() string {
	if s.clientPx == nil {
		return "http://" + s.addr
	}
	return "http://" + s.clientPx.Addr()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// buildBinaries builds nola (into work) and etcd's server (into a cache
// dir, once per etcd version).
func buildBinaries(ctx context.Context, work string, tags string) (nolaBin, etcdBin string, err error) {
	nolaBin = filepath.Join(work, "nola")
	args := []string{"build", "-o", nolaBin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "github.com/nolaproject/nola/cmd/nola")
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building nola: %v\n%s", err, out)
	}
	etcdBin, err = etcdBinary(ctx)
	return nolaBin, etcdBin, err
}

func etcdBinary(ctx context.Context) (string, error) {
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/server/v3" {
				version = d.Version
			}
		}
	}
	if version == "unknown" {
		// jepsen-lite does not link etcd's server, so its build info may
		// not name it: ask the module (run from the repository).
		if out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/server/v3").Output(); err == nil {
			if v := strings.TrimSpace(string(out)); v != "" {
				version = v
			}
		}
	}
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			d = os.TempDir()
		}
		dir = d
	}
	dir = filepath.Join(dir, "nola")
	bin := filepath.Join(dir, "etcd-"+version)
	if _, err := os.Stat(bin); err == nil && version != "unknown" {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("etcd cache dir: %w", err)
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", tmp, "go.etcd.io/etcd/server/v3").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building etcd: %v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

type clusterOptions struct {
	members, servers int
	ttl              time.Duration
	seed             uint64
	mutation         string
	// embedded: one server on its own embedded etcd (members is 0).
	embedded bool
}

// startCluster starts everything (in c.netns's namespaces if set); on
// error the caller still calls stop.
func startCluster(ctx context.Context, c *cluster, o clusterOptions, nolaBin, etcdBin string) error {
	c.ttl = o.ttl
	var peers []string
	type addrs struct{ client, peer string }
	as := make([]addrs, o.members)
	nodes := make([]*nemesis.Node, o.members)
	for j := range o.members {
		if c.netns != nil {
			nd, err := c.netns.AddNode(ctx, fmt.Sprintf("etcd%d", j))
			if err != nil {
				return err
			}
			nodes[j] = nd
			as[j] = addrs{nd.IP + ":2379", nd.IP + ":2380"}
		} else {
			ca, err := freeAddr()
			if err != nil {
				return err
			}
			pa, err := freeAddr()
			if err != nil {
				return err
			}
			as[j] = addrs{ca, pa}
		}
		peers = append(peers, fmt.Sprintf("m%d=http://%s", j, as[j].peer))
	}
	for j := range o.members {
		name := fmt.Sprintf("m%d", j)
		m := &etcdMember{name: "etcd" + strconv.Itoa(j), clientAddr: as[j].client, node: nodes[j]}
		m.proc = &nemesis.Process{
			Name: m.name, Path: etcdBin, Log: filepath.Join(c.logs, m.name+".log"),
			Args: []string{
				"--name", name, "--data-dir", filepath.Join(c.work, m.name),
				"--listen-client-urls", "http://" + as[j].client, "--advertise-client-urls", "http://" + as[j].client,
				"--listen-peer-urls", "http://" + as[j].peer, "--initial-advertise-peer-urls", "http://" + as[j].peer,
				"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new",
				"--initial-cluster-token", fmt.Sprintf("jepsen-lite-%d", o.seed),
				"--heartbeat-interval", "100", "--election-timeout", "1000",
				"--log-level", "warn", "--quota-backend-bytes", strconv.Itoa(1 << 30),
			},
			Ready: func(ctx context.Context, p *nemesis.Process) error {
				return waitHTTP(ctx, p, "http://"+m.clientAddr+"/health", false)
			},
		}
		if m.node != nil {
			m.proc.Path, m.proc.Args = m.node.Command(m.proc.Path, m.proc.Args...)
		}
		c.etcd = append(c.etcd, m)
	}
	// Members start together (none is healthy before a quorum runs).
	for _, m := range c.etcd {
		ready := m.proc.Ready
		m.proc.Ready = nil
		err := m.proc.Start(ctx)
		m.proc.Ready = ready
		if err != nil {
			return err
		}
	}
	for _, m := range c.etcd {
		if err := waitHTTP(ctx, m.proc, "http://"+m.clientAddr+"/health", true); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	for i := range o.servers {
		s := &server{id: "s" + strconv.Itoa(i)}
		var err error
		listen := "127.0.0.1:0"
		if c.netns != nil {
			if s.node, err = c.netns.AddNode(ctx, s.id); err != nil {
				return err
			}
			s.addr = s.node.IP + ":9090"
			listen = c.netns.HostIP() + ":0"
		} else if s.addr, err = freeAddr(); err != nil {
			return err
		}
		px := func(target string) (*nemesis.Proxy, error) {
			p, err := nemesis.NewProxy(listen, target, o.seed*1000+uint64(len(c.proxies)))
			if err == nil {
				c.proxies = append(c.proxies, p)
			}
			return p, err
		}
		advertise := "http://" + s.addr
		if c.netns == nil {
			if s.clientPx, err = px(s.addr); err != nil {
				return err
			}
			if s.peerPx, err = px(s.addr); err != nil {
				return err
			}
			advertise = "http://" + s.peerPx.Addr()
		}
		var eps []string
		for _, m := range c.etcd {
			p, err := px(m.clientAddr)
			if err != nil {
				return err
			}
			s.etcdPx = append(s.etcdPx, p)
			eps = append(eps, "http://"+p.Addr())
		}
		s.trace = filepath.Join(c.logs, s.id+".trace.jsonl")
		s.ready = filepath.Join(c.work, s.id+".ready")
		store := []string{"--etcd-endpoints", strings.Join(eps, ",")}
		if o.embedded {
			// Same data directory on every restart: what was acknowledged
			// must be there after a kill -9.
			store = []string{"--data-dir", filepath.Join(c.work, s.id+"-data")}
		}
		args := []string{"serve", "--id", s.id, "--listen", s.addr, "--advertise", advertise}
		args = append(args, store...)
		args = append(args, "--lease-ttl", o.ttl.String(),
			"--ready-file", s.ready, "--trace-executions", s.trace, "--log-level", "info",
			"--shutdown-timeout", "5s", "--example-actors")
		if o.mutation != "" {
			args = append(args, "--unsafe-mutation", o.mutation)
		}
		s.proc = &nemesis.Process{Name: s.id, Path: nolaBin, Log: filepath.Join(c.logs, s.id+".log"), Args: args,
			Ready: func(ctx context.Context, p *nemesis.Process) error {
				return waitReadyFile(ctx, p, s.ready, 2*o.ttl+20*time.Second)
			}}
		if s.node != nil {
			s.proc.Path, s.proc.Args = s.node.Command(s.proc.Path, s.proc.Args...)
		}
		c.servers = append(c.servers, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.servers))
	for i, s := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.proc.Start(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitHTTP polls url until it answers (healthy: with 200) or the process
// exits or 60 s pass.
func waitHTTP(ctx context.Context, p *nemesis.Process, url string, healthy bool) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if !healthy || resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no answer from %s: %w", p.Name, url, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("%s exited (see its log)", p.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitReadyFile(ctx context.Context, p *nemesis.Process, path string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	exited := p.Exited()
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return os.Remove(path)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", p.Name, ctx.Err())
		case <-exited:
			return fmt.Errorf("%s exited (see its log)", p.Name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// healLinks lifts every link fault: proxies back to normal and, in the
// netns mode, every node's nft sets emptied (an nft heal can fail where a
// proxy's cannot: a timeout on a loaded machine).
func (c *cluster) healLinks(ctx context.Context) {
	c.resetProxies()
	var nodes []*nemesis.Node
	for _, m := range c.etcd {
		nodes = append(nodes, m.node)
	}
	for _, s := range c.servers {
		nodes = append(nodes, s.node)
	}
	for _, nd := range nodes {
		if nd == nil {
			continue
		}
		if err := nd.Heal(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "jepsen-lite: healing", nd.Name+":", err)
		}
	}
}

// resetProxies puts every proxy back to forwarding at full speed.
func (c *cluster) resetProxies() {
	for _, p := range c.proxies {
		p.SetCut(false)
		p.SetDelay(0)
		p.SetLoss(0)
	}
}

// stop heals every link and kills every process (resuming paused ones
// first, so that they die now).
func (c *cluster) stop() {
	c.resetProxies()
	var procs []*nemesis.Process
	for _, s := range c.servers {
		procs = append(procs, s.proc)
	}
	for _, m := range c.etcd {
		procs = append(procs, m.proc)
	}
	for _, p := range procs {
		if p.Running() {
			_ = p.Signal(syscall.SIGCONT)
			_ = p.Kill()
		}
	}
	for _, p := range c.proxies {
		_ = p.Close()
	}
	if c.netns != nil {
		// After the processes: a process in a namespace keeps it alive.
		if err := c.netns.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "jepsen-lite: cleaning up network namespaces:", err)
		}
		c.netns = nil
	}
}

// leader returns the index of the etcd leader, asking live members.
func (c *cluster) leader(ctx context.Context) (int, error) {
	hc := &http.Client{Timeout: time.Second}
	for i, m := range c.etcd {
		if !m.proc.Running() {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+m.clientAddr+"/v3/maintenance/status", strings.NewReader("{}"))
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		var st struct {
			Header struct {
				MemberID string `json:"member_id"`
			} `json:"header"`
			Leader string `json:"leader"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Leader != "" && st.Leader == st.Header.MemberID {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no etcd leader found")
}
