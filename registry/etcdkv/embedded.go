package etcdkv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// DefaultDir is where StartEmbedded keeps its data unless told otherwise.
const DefaultDir = "nola-data/etcd"

// MemberConfig describes one etcd member run inside this process. The zero
// value (plus Dir) is a single-member cluster on free loopback ports.
type MemberConfig struct {
	// Dir is the member's data directory; created if missing. Default
	// DefaultDir.
	Dir string
	// Name names the member in its cluster; default "nola".
	Name string
	// ClientAddr and PeerAddr are host:port listen addresses; empty means
	// 127.0.0.1 on a free port.
	ClientAddr, PeerAddr string
	// InitialCluster lists every member as name=http://peer-addr,… for a
	// multi-member cluster; empty means this member alone. Existing
	// restarts a member whose cluster already exists (its data directory
	// holds the membership).
	InitialCluster string
	Existing       bool
	// ClusterToken separates clusters; default "nola".
	ClusterToken string

	// QuotaBytes is the backend size limit; default 2 GiB.
	QuotaBytes int64
	// SnapshotCount is the number of applied entries between snapshots to
	// disk (after which older WAL files may be purged); default 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many applied raft entries the member
	// keeps in memory after each in-memory snapshot (taken every 100
	// entries), for slow followers to catch up from. Each entry holds a
	// whole request (up to MaxRequestBytes), so this bounds the raft log's
	// memory: about (SnapshotCatchUpEntries + 100) × the mean request.
	// Default 100 for a single member (no followers), 1000 in a cluster
	// (etcd's default is 5000: 7.5 GiB of 1.5 MiB requests).
	SnapshotCatchUpEntries uint64
	// MaxWALFiles and MaxSnapFiles bound the write-ahead log segments
	// (64 MiB each, preallocated) and snapshot files kept; files still
	// needed since the last snapshot are never purged. Defaults 2 and 2
	// (etcd's are 5 and 5).
	MaxWALFiles, MaxSnapFiles uint
	// CompactionRetention is how many revisions of history automatic
	// compaction keeps; default 1000. The store's maintenance (see
	// Maintenance) also compacts by bytes.
	CompactionRetention int64
	// MaxTxnOps and MaxRequestBytes are etcd's request limits; defaults
	// 128 and 1.5 MiB.
	MaxTxnOps       uint
	MaxRequestBytes uint
	// TickMs and ElectionMs are raft's heartbeat and election timeouts;
	// defaults 100 and 1000 (etcd's). Lease TTLs below 1.5 × ElectionMs are
	// raised to that by etcd.
	TickMs, ElectionMs uint
	// UnsafeNoFsync turns fsync off: faster, and unsafe on power loss.
	// For tests only.
	UnsafeNoFsync bool
	// StartTimeout bounds the wait for the member to be ready (for a
	// cluster: for a quorum to form); default 30s.
	StartTimeout time.Duration
	// Logger receives etcd's logs; default: none.
	Logger *zap.Logger `json:"-"`
}

func (c MemberConfig) withDefaults() MemberConfig {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.Name == "" {
		c.Name = "nola"
	}
	if c.ClusterToken == "" {
		c.ClusterToken = "nola"
	}
	if c.QuotaBytes <= 0 {
		c.QuotaBytes = 2 << 30
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = 10000
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = 100
		if c.InitialCluster != "" {
			c.SnapshotCatchUpEntries = 1000
		}
	}
	if c.MaxWALFiles == 0 {
		c.MaxWALFiles = 2
	}
	if c.MaxSnapFiles == 0 {
		c.MaxSnapFiles = 2
	}
	if c.CompactionRetention <= 0 {
		c.CompactionRetention = 1000
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.TickMs == 0 {
		c.TickMs = 100
	}
	if c.ElectionMs == 0 {
		c.ElectionMs = 1000
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Member is an etcd member running in this process.
type Member struct {
	cfg       MemberConfig
	e         *embed.Etcd
	clientURL string
	peerURL   string

	mu      sync.Mutex
	stopped bool
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago (the kernel may hand it out again: callers retry on "address in
// use").
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("etcdkv: find a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("etcdkv: find a free loopback port: %w", err)
	}
	return addr, nil
}

// FreeAddrs returns n distinct loopback addresses whose ports were free a
// moment ago (all are held open until all are picked, so none repeats).
func FreeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdkv: find a free loopback port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// sanitize hides the data directory's path in etcd's error messages (errors
// may travel to places that must not learn host paths) while keeping the
// error chain for errors.Is.
type sanitized struct {
	msg   string
	cause error
}

func (e *sanitized) Error() string { return e.msg }
func (e *sanitized) Unwrap() error { return e.cause }

func sanitize(err error, dir string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, d := range []string{dir, filepath.Clean(dir)} {
		if abs, aerr := filepath.Abs(d); aerr == nil {
			msg = strings.ReplaceAll(msg, abs, "<data-dir>")
		}
		if d != "" && d != "." {
			msg = strings.ReplaceAll(msg, d, "<data-dir>")
		}
	}
	return &sanitized{msg: msg, cause: err}
}

// pathErr strips the path from a filesystem error, keeping its cause.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}

// checkDir creates dir if needed and proves that files can be written in it.
func checkDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("etcdkv: data directory is not a directory: %w", syscall.ENOTDIR)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("etcdkv: data directory cannot be created: %w", pathErr(err))
	}
	f, err := os.CreateTemp(dir, ".nola-probe-*")
	if err != nil {
		return fmt.Errorf("etcdkv: data directory is not writable: %w", pathErr(err))
	}
	name := f.Name()
	_, werr := f.Write([]byte("probe"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("etcdkv: data directory is not writable: %w", pathErr(err))
	}
	return nil
}

func checkAddr(what, addr string) (url.URL, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return url.URL{}, fmt.Errorf("etcdkv: %s address %q: %w", what, addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || port == "0" {
		return url.URL{}, fmt.Errorf("etcdkv: %s address %q: needs a port number", what, addr)
	}
	return url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}

// StartMember starts an etcd member in this process and waits until it is
// ready to serve (for a multi-member cluster: until a quorum has formed, so
// start the members concurrently).
func StartMember(ctx context.Context, cfg MemberConfig) (*Member, error) {
	cfg = cfg.withDefaults()
	if err := checkDir(cfg.Dir); err != nil {
		return nil, err
	}
	pick := cfg.ClientAddr == "" || cfg.PeerAddr == ""
	for attempt := 0; ; attempt++ {
		c := cfg
		addrs, err := FreeAddrs(2)
		if err != nil {
			return nil, err
		}
		if c.ClientAddr == "" {
			c.ClientAddr = addrs[0]
		}
		if c.PeerAddr == "" {
			c.PeerAddr = addrs[1]
		}
		m, err := startMember(ctx, c)
		if err != nil && pick && attempt < 5 && errors.Is(err, syscall.EADDRINUSE) {
			continue // lost the race for a free port
		}
		return m, err
	}
}

func startMember(ctx context.Context, cfg MemberConfig) (*Member, error) {
	curl, err := checkAddr("client", cfg.ClientAddr)
	if err != nil {
		return nil, err
	}
	purl, err := checkAddr("peer", cfg.PeerAddr)
	if err != nil {
		return nil, err
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{curl}
	ec.AdvertiseClientUrls = []url.URL{curl}
	ec.ListenPeerUrls = []url.URL{purl}
	ec.AdvertisePeerUrls = []url.URL{purl}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + purl.String()
	}
	ec.InitialClusterToken = cfg.ClusterToken
	if cfg.Existing {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	ec.QuotaBackendBytes = cfg.QuotaBytes
	ec.SnapshotCount = cfg.SnapshotCount
	ec.SnapshotCatchUpEntries = cfg.SnapshotCatchUpEntries
	ec.MaxWalFiles = cfg.MaxWALFiles
	ec.MaxSnapFiles = cfg.MaxSnapFiles
	ec.AutoCompactionMode = embed.CompactorModeRevision
	ec.AutoCompactionRetention = strconv.FormatInt(cfg.CompactionRetention, 10)
	ec.MaxTxnOps = cfg.MaxTxnOps
	ec.MaxRequestBytes = cfg.MaxRequestBytes
	ec.TickMs = cfg.TickMs
	ec.ElectionMs = cfg.ElectionMs
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.GRPCKeepAliveMinTime = time.Second
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	ec.LogOutputs = nil
	ec.Metrics = "basic"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdkv: start etcd member %s: %w", cfg.Name, sanitize(err, cfg.Dir))
	}
	m := &Member{cfg: cfg, e: e, clientURL: curl.String(), peerURL: purl.String()}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return m, nil
	case err := <-e.Err():
		m.stop(false)
		return nil, fmt.Errorf("etcdkv: etcd member %s failed while starting: %w", cfg.Name, sanitize(err, cfg.Dir))
	case <-timer.C:
		m.stop(false)
		return nil, fmt.Errorf("etcdkv: etcd member %s not ready within %v (for a cluster: no quorum of members started): %w",
			cfg.Name, cfg.StartTimeout, context.DeadlineExceeded)
	case <-ctx.Done():
		m.stop(false)
		return nil, fmt.Errorf("etcdkv: start etcd member %s: %w", cfg.Name, ctx.Err())
	}
}

// ClientURL is the member's client URL (http://127.0.0.1:port).
func (m *Member) ClientURL() string { return m.clientURL }

// PeerURL is the member's peer URL.
func (m *Member) PeerURL() string { return m.peerURL }

// Name is the member's name.
func (m *Member) Name() string { return m.cfg.Name }

// Config returns the configuration the member runs with (defaults and
// chosen ports filled in); restart a member by starting that config with
// Existing set.
func (m *Member) Config() MemberConfig { return m.cfg }

// IsLeader reports whether the member is its cluster's raft leader.
func (m *Member) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.stopped && m.e.Server.Leader() == m.e.Server.MemberID()
}

// Close stops the member gracefully (a leader hands leadership over
// first). It is safe to call more than once, and after Kill.
func (m *Member) Close() error { return m.stop(false) }

// Kill stops the member abruptly, as close to a crash as one process
// allows: the raft node stops at once without handing leadership over or
// telling its peers, its peer and client connections are closed (peers see
// the same connection resets a killed process causes), and every request in
// flight on it fails. What differs from kill -9 is local: etcd closes its
// database in order instead of recovering it from its write-ahead log on
// the next start. For a real kill -9 or SIGSTOP, run members as processes
// (package etcdtest).
func (m *Member) Kill() error { return m.stop(true) }

func (m *Member) stop(hard bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	if hard {
		// Stop raft first (no leadership transfer, peer streams cut),
		// then close the listeners.
		m.e.Server.HardStop()
		for _, l := range m.e.Clients {
			_ = l.Close()
		}
		for _, p := range m.e.Peers {
			_ = p.Close()
		}
	}
	// embed.Etcd.Close panics when called twice: the stopped flag
	// guarantees once. After HardStop it only releases what is left.
	m.e.Close()
	return nil
}

// Embedded is a single etcd member in this process with a Store on it.
type Embedded struct {
	*Store
	member *Member
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	MemberConfig
	Options
}

// StartEmbedded starts a single-member etcd in this process (data in
// cfg.Dir, default ./nola-data/etcd; loopback listeners on free ports) and
// returns a store connected to it. Close stops the store, then the member,
// exactly once. A data directory that exists is reused: the member restarts
// with its data. Unless Options.NoMaintenance, the store maintains the
// database (see Maintenance): a member left in etcd's NOSPACE alarm is
// compacted, defragmented and disarmed before StartEmbedded returns.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	mc := cfg.MemberConfig
	if mc.InitialCluster != "" {
		return nil, errors.New("etcdkv: StartEmbedded runs a single member; use StartMember for clusters")
	}
	if mc.MaxTxnOps != 0 || mc.MaxRequestBytes != 0 {
		mc = mc.withDefaults()
		if cfg.Limits.MaxOpsPerTxn == 0 && cfg.Limits.MaxRequestBytes == 0 {
			cfg.Limits.MaxOpsPerTxn = int(mc.MaxTxnOps)
			cfg.Limits.MaxRequestBytes = int(mc.MaxRequestBytes) - LimitMargin
		}
	}
	if cfg.Maintenance == nil && !cfg.NoMaintenance {
		cfg.Maintenance = &Maintenance{QuotaBytes: mc.withDefaults().QuotaBytes}
	}
	m, err := StartMember(ctx, mc)
	if err != nil {
		return nil, err
	}
	s, err := connect(ctx, clientv3.Config{Endpoints: []string{m.ClientURL()}}, cfg.Options, 0, m.Close)
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	return &Embedded{Store: s, member: m}, nil
}

// Member returns the embedded member.
func (e *Embedded) Member() *Member { return e.member }

// Endpoints returns the member's client URL, for other clients.
func (e *Embedded) Endpoints() []string { return []string{e.member.ClientURL()} }
