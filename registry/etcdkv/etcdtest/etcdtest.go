// Package etcdtest starts real multi-member etcd clusters on loopback for
// tests and tools, and injects member failures.
//
// Members run in one of two ways:
//
//   - in this process (the default): cheap, and usable from any test. Kill
//     stops a member abruptly (see etcdkv.Member.Kill): no leadership
//     hand-over, its connections cut, requests in flight fail; only its
//     local shutdown is orderly where a crash would leave recovery to the
//     write-ahead log. Pause is not available.
//   - as child processes (Options.Processes): the current executable is
//     started again as an etcd member. Kill is SIGKILL, Pause is SIGSTOP
//     and Resume SIGCONT — the real thing. The executable must call
//     MemberMain first in its TestMain (or main), which turns the child
//     into a member and never returns there.
//
// Restart brings a killed member back with its data directory and ports.
package etcdtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nolaproject/nola/registry/etcdkv"
)

// envMember carries a child member's configuration (JSON).
const envMember = "NOLA_ETCDTEST_MEMBER"

// MemberMain makes this process an etcd member if a Cluster with Processes
// started it, and returns at once otherwise. As a member it prints "ready"
// on stdout once serving, and stops gracefully when its stdin closes (the
// parent closed it, or died).
func MemberMain() {
	spec := os.Getenv(envMember)
	if spec == "" {
		return
	}
	var cfg etcdkv.MemberConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest member: bad configuration: %v\n", err)
		os.Exit(2)
	}
	m, err := etcdkv.StartMember(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest member: %v\n", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = m.Close()
	os.Exit(0)
}

// Options configure a cluster.
type Options struct {
	// Members is the cluster size; default 3.
	Members int
	// Dir holds the members' data directories (Dir/m0, Dir/m1, …).
	// Required by StartCluster; Start uses a temporary directory.
	Dir string
	// Processes runs members as child processes (see the package doc).
	Processes bool
	// TickMs and ElectionMs are raft's timeouts; defaults 50 and 500, so
	// that failover takes about a second.
	TickMs, ElectionMs uint
	// UnsafeNoFsync turns fsync off in every member.
	UnsafeNoFsync bool
	// StartTimeout bounds starting (or restarting) members; default 30s.
	StartTimeout time.Duration
	// Logger receives in-process members' logs; default none.
	Logger *zap.Logger
}

// Cluster is a running etcd cluster.
type Cluster struct {
	opts    Options
	mu      sync.Mutex
	members []*member
	closed  bool
}

type memberState int

const (
	running memberState = iota
	killed
	paused
)

type member struct {
	cfg    etcdkv.MemberConfig
	state  memberState
	inproc *etcdkv.Member
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
}

// Start starts a cluster for a test and stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, opts)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("etcdtest: close: %v", err)
		}
	})
	return c
}

// StartCluster starts a cluster of opts.Members members on free loopback
// ports and waits until it has a leader.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Members <= 0 {
		opts.Members = 3
	}
	if opts.Dir == "" {
		return nil, errors.New("etcdtest: Options.Dir is required")
	}
	if opts.TickMs == 0 {
		opts.TickMs = 50
	}
	if opts.ElectionMs == 0 {
		opts.ElectionMs = 500
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	// Free ports are picked before the members bind them: another process
	// may take one in between. Try again with new ports (and empty
	// directories) then.
	for attempt := 1; ; attempt++ {
		c, err := startCluster(ctx, opts, attempt)
		if err == nil || attempt == 3 || !errors.Is(err, syscall.EADDRINUSE) {
			return c, err
		}
	}
}

func startCluster(ctx context.Context, opts Options, attempt int) (*Cluster, error) {
	c := &Cluster{opts: opts, members: make([]*member, opts.Members)}
	addrs, err := memberAddrs(2 * opts.Members)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range c.members {
		caddr, paddr := addrs[2*i], addrs[2*i+1]
		name := fmt.Sprintf("m%d", i)
		c.members[i] = &member{cfg: etcdkv.MemberConfig{
			Dir:           filepath.Join(opts.Dir, fmt.Sprintf("try%d", attempt), name),
			Name:          name,
			ClientAddr:    caddr,
			PeerAddr:      paddr,
			ClusterToken:  "etcdtest",
			TickMs:        opts.TickMs,
			ElectionMs:    opts.ElectionMs,
			UnsafeNoFsync: opts.UnsafeNoFsync,
			StartTimeout:  opts.StartTimeout,
			Logger:        opts.Logger,
		}, state: killed}
		peers = append(peers, name+"=http://"+paddr)
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(peers, ",")
	}
	// Members wait for a quorum before they are ready: start them
	// together.
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.startMember(ctx, i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// startMember starts member i from its configuration.
func (c *Cluster) startMember(ctx context.Context, i int) error {
	c.mu.Lock()
	m := c.members[i]
	cfg := m.cfg
	c.mu.Unlock()
	if !c.opts.Processes {
		em, err := etcdkv.StartMember(ctx, cfg)
		if err != nil {
			return fmt.Errorf("etcdtest: member %d: %w", i, err)
		}
		c.mu.Lock()
		m.inproc, m.state = em, running
		c.mu.Unlock()
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("etcdtest: member %d: find the executable to run: %w", i, err)
	}
	spec, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: member %d: %w", i, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envMember+"="+string(spec))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("etcdtest: member %d: %w", i, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("etcdtest: member %d: %w", i, err)
	}
	stderr := &tailBuffer{max: 8 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: member %d: start process: %w", i, err)
	}
	ready := make(chan error, 1)
	go func() { // ends when the child prints or closes stdout
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timer := time.NewTimer(c.opts.StartTimeout + 5*time.Second)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = errors.New("not ready in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if strings.Contains(stderr.String(), "address already in use") {
			err = errors.Join(err, syscall.EADDRINUSE)
		}
		return fmt.Errorf("etcdtest: member %d did not start: %w; its output: %s", i, err, stderr.String())
	}
	c.mu.Lock()
	m.cmd, m.stdin, m.stderr, m.state = cmd, stdin, stderr, running
	c.mu.Unlock()
	return nil
}

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i := range c.members {
		out[i] = c.Endpoint(i)
	}
	return out
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "http://" + c.members[i].cfg.ClientAddr
}

// Running reports whether member i is running (not killed, not paused).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].state == running
}

// Open returns a store connected to every member.
func (c *Cluster) Open(ctx context.Context, opts etcdkv.Options) (*etcdkv.Store, error) {
	return etcdkv.Open(ctx, etcdkv.ClientConfig{
		Endpoints: c.Endpoints(),
		Options:   opts,
		// Detect a paused member within a few seconds.
		KeepAliveTime:    2 * time.Second,
		KeepAliveTimeout: 2 * time.Second,
	})
}

// Kill stops member i abruptly: SIGKILL for a process, etcdkv.Member.Kill
// in this process.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.state == killed {
		return fmt.Errorf("etcdtest: member %d is not running", i)
	}
	m.state = killed
	if m.cmd != nil {
		err := m.cmd.Process.Kill()
		_ = m.cmd.Wait() // reports the kill
		m.cmd = nil
		if err != nil {
			return fmt.Errorf("etcdtest: kill member %d: %w", i, err)
		}
		return nil
	}
	err := m.inproc.Kill()
	m.inproc = nil
	return err
}

// Pause freezes member i with SIGSTOP (process members only): its
// connections stay open but it answers nothing.
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, running, paused) }

// Resume continues a paused member with SIGCONT.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT, paused, running) }

func (c *Cluster) signal(i int, sig syscall.Signal, from, to memberState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.cmd == nil {
		return fmt.Errorf("etcdtest: member %d: pause and resume need process members (Options.Processes)", i)
	}
	if m.state != from {
		return fmt.Errorf("etcdtest: member %d: cannot send %v in its state", i, sig)
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("etcdtest: member %d: %v: %w", i, sig, err)
	}
	m.state = to
	return nil
}

// Restart starts killed member i again with its data and ports.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.mu.Lock()
	m := c.members[i]
	if m.state != killed {
		c.mu.Unlock()
		return fmt.Errorf("etcdtest: member %d is running", i)
	}
	m.cfg.Existing = true
	c.mu.Unlock()
	return c.startMember(ctx, i)
}

// Leader returns the index of the member that is the raft leader, as the
// running members report it, or an error if they report none.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		return -1, fmt.Errorf("etcdtest: leader: %w", err)
	}
	defer cli.Close()
	for i := range c.members {
		if !c.Running(i) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, c.Endpoint(i))
		cancel()
		if err != nil {
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, errors.New("etcdtest: no running member is the leader")
}

// WaitLeader polls until some running member is the leader.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		i, err := c.Leader(ctx)
		if err == nil {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("%w (waiting: %w)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops every member: in-process members gracefully, processes by
// closing their stdin (and SIGKILL if they do not exit within 10s).
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for i, m := range c.members {
		if m == nil || m.state == killed {
			continue
		}
		if m.inproc != nil {
			if err := m.inproc.Close(); err != nil {
				errs = append(errs, fmt.Errorf("etcdtest: close member %d: %w", i, err))
			}
			continue
		}
		if m.state == paused {
			_ = m.cmd.Process.Signal(syscall.SIGCONT)
		}
		_ = m.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- m.cmd.Wait() }() // ends when the child exits
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-done
		}
		m.state = killed
	}
	return errors.Join(errs...)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
