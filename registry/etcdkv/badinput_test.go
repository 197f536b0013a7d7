package etcdkv_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
)

func containsPath(msg, path string) bool {
	if strings.Contains(msg, path) {
		return true
	}
	abs, err := filepath.Abs(path)
	return err == nil && strings.Contains(msg, abs)
}

// Limits are checked before sending, and etcd's own refusals map to the
// same typed error when a store is configured with looser limits than its
// server (or the client's own message size limit is hit).
func TestLimitsMapEtcdsOwnErrors(t *testing.T) {
	e := startEmbedded(t, etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{MaxTxnOps: 8, MaxRequestBytes: 64 << 10}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The embedded store's limits follow its member's.
	if l := e.Limits(); l.MaxOpsPerTxn != 8 || l.MaxRequestBytes != 64<<10-etcdkv.LimitMargin {
		t.Fatalf("limits %+v do not follow the member's", l)
	}
	ops := func(n int) []kv.Op {
		out := make([]kv.Op, n)
		for i := range out {
			out[i] = kv.Put([]byte{'k', byte(i)}, []byte("v"), kv.NoLease)
		}
		return out
	}
	var le *kv.LimitError
	_, err := e.Commit(ctx, kv.Txn{Ops: ops(9)})
	if !errors.Is(err, kv.ErrTooLarge) || !errors.As(err, &le) {
		t.Fatalf("9 ops against a limit of 8: %v, want a *kv.LimitError", err)
	}
	_, err = e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("big"), make([]byte, 64<<10), kv.NoLease)}})
	if !errors.Is(err, kv.ErrTooLarge) || !errors.As(err, &le) {
		t.Fatalf("64 KiB value: %v, want a *kv.LimitError", err)
	}

	// A second store whose limits are looser than the member's: etcd
	// refuses, and the refusal is still kv.ErrTooLarge.
	loose, err := etcdkv.Open(ctx, etcdkv.ClientConfig{Endpoints: e.Endpoints(), Options: etcdkv.Options{
		Limits: kv.Limits{MaxOpsPerTxn: 1000, MaxRequestBytes: 64 << 20},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer loose.Close()
	rev, err := loose.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		txn  kv.Txn
	}{
		{"too many ops (etcd)", kv.Txn{Ops: ops(9)}},
		{"request too large (etcd)", kv.Txn{Ops: []kv.Op{kv.Put([]byte("big"), make([]byte, 100<<10), kv.NoLease)}}},
		{"message too large (gRPC client)", kv.Txn{Ops: []kv.Op{kv.Put([]byte("big"), make([]byte, 3<<20), kv.NoLease)}}},
	} {
		_, err := loose.Commit(ctx, c.txn)
		if !errors.Is(err, kv.ErrTooLarge) {
			t.Fatalf("%s: %v, want kv.ErrTooLarge", c.name, err)
		}
		if errors.As(err, &le) {
			t.Fatalf("%s: %v came from the local check, not from etcd", c.name, err)
		}
	}
	if got, err := loose.Rev(ctx); err != nil || got != rev {
		t.Fatalf("revision %d (%v) after refused commits, want %d", got, err, rev)
	}
}

// A cluster that is down at start-up fails Open within its start-up
// timeout, with kv.ErrUnavailable and a message that says what happened.
func TestOpenStoreDownAtStartup(t *testing.T) {
	var endpoints []string
	for range 3 {
		addr, err := etcdkv.FreeAddr() // nothing listens there
		if err != nil {
			t.Fatal(err)
		}
		endpoints = append(endpoints, "http://"+addr)
	}
	start := time.Now()
	s, err := etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: endpoints, StartupTimeout: time.Second})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded with no etcd running")
	}
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("Open: %v, want kv.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "no etcd endpoint of 3 answered within 1s") {
		t.Fatalf("unclear error: %v", err)
	}
	t.Logf("Open failed after %v: %v", elapsed.Round(time.Millisecond), err)

	// An endpoint that accepts connections but never answers (not etcd).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // ends when the listener closes
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }() // ends when the client hangs up
		}
	}()
	_, err = etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: []string{"http://" + l.Addr().String()}, StartupTimeout: time.Second})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("Open against a silent endpoint: %v, want kv.ErrUnavailable", err)
	}
	if _, err := etcdkv.Open(context.Background(), etcdkv.ClientConfig{}); !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("Open without endpoints: %v, want kv.ErrInvalid", err)
	}
}

// TLS files that cannot be loaded give an error that names the problem but
// not the files' paths.
func TestOpenBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "secret-ca.pem")
	_, err := etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CAFile: missing})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "the CA file") {
		t.Fatalf("missing CA file: %v, want os.ErrNotExist naming the CA file", err)
	}
	if containsPath(err.Error(), dir) {
		t.Fatalf("the error reveals a host path: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: garbage, KeyFile: missing})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "the key file") || containsPath(err.Error(), dir) {
		t.Fatalf("missing key file: %v, want os.ErrNotExist naming the key file", err)
	}
	_, err = etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: garbage, KeyFile: garbage})
	if err == nil || !strings.Contains(err.Error(), "not valid") || containsPath(err.Error(), dir) {
		t.Fatalf("unparsable certificate: %v, want an error saying the files are not valid", err)
	}
	_, err = etcdkv.Open(context.Background(), etcdkv.ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: missing})
	if !errors.Is(err, kv.ErrInvalid) {
		t.Fatalf("certificate without key: %v, want kv.ErrInvalid", err)
	}
}

// A data directory that cannot be created or written fails StartEmbedded
// with a clear error, without the host path in its message.
func TestDataDirNotWritable(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dir, want string
	}{
		{"under a regular file", filepath.Join(file, "etcd"), "data directory cannot be created"},
		{"is a regular file", file, "data directory is not a directory"},
	} {
		_, err := etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: c.dir}})
		if err == nil || !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v, want %q wrapping ENOTDIR", c.name, err, c.want)
		}
		if containsPath(err.Error(), base) {
			t.Fatalf("%s: the error reveals a host path: %v", c.name, err)
		}
	}

	// Permission denied: a directory its user may not write. Root may
	// write anything, so as root the check runs in a child copy of this
	// binary as the unprivileged user nobody.
	ro := filepath.Join(base, "read-only")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	// One that cannot be created, one that exists but cannot be written.
	dirs := filepath.Join(ro, "etcd") + string(filepath.ListSeparator) + ro
	if os.Geteuid() != 0 {
		if code := permCheck(dirs); code != 0 {
			t.Fatalf("permission check failed (code %d)", code)
		}
		return
	}
	// The child needs to reach and run its executable: a directory every
	// user may enter (t.TempDir's parent is private).
	pub, err := os.MkdirTemp("", "etcdkv-permcheck-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	ro = filepath.Join(pub, "read-only")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	dirs = filepath.Join(ro, "etcd") + string(filepath.ListSeparator) + ro
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "etcdkv.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = pub
	cmd.Env = append(os.Environ(), envPermCheck+"="+dirs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody, starting etcd in a read-only directory: %v; the child said: %s", err, out)
	}
	t.Logf("as nobody:\n%s", strings.TrimSpace(string(out)))
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// A client port already in use fails StartEmbedded with EADDRINUSE.
func TestEmbeddedPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{
		Dir: t.TempDir(), ClientAddr: l.Addr().String(),
	}})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("client port in use: %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("the error does not name the address: %v", err)
	}
	_, err = etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{
		Dir: t.TempDir(), ClientAddr: "127.0.0.1",
	}})
	if err == nil || !strings.Contains(err.Error(), "client address") {
		t.Fatalf("client address without a port: %v", err)
	}
}

// A member's data directory is reused: data survives a restart; Close is
// safe twice and after Kill.
func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put([]byte("k"), []byte("kept"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{
		MemberConfig: etcdkv.MemberConfig{Dir: dir},
		Options:      etcdkv.Options{RequestTimeout: time.Second},
	})
	if err != nil {
		t.Fatalf("restart on the same directory: %v", err)
	}
	defer e.Close()
	if v, found, err := e.Get(ctx, []byte("k"), 0); err != nil || !found || string(v.Value) != "kept" {
		t.Fatalf("after restart: %q %v %v", v.Value, found, err)
	}
	if err := e.Member().Kill(); err != nil {
		t.Fatal(err)
	}
	if err := e.Member().Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Get(ctx, []byte("k"), 0); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("get from a killed member: %v, want kv.ErrUnavailable", err)
	}
}

// Open waits for a cluster that comes up during the startup time, even
// when that is longer than one request's timeout (a member still starting
// or electing a leader).
func TestOpenWaitsForAStartingCluster(t *testing.T) {
	addr, err := etcdkv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   *etcdkv.Store
		err error
	}
	opened := make(chan result, 1)
	go func() {
		s, err := etcdkv.Open(context.Background(), etcdkv.ClientConfig{
			Endpoints: []string{"http://" + addr}, StartupTimeout: 30 * time.Second,
			Options: etcdkv.Options{RequestTimeout: 300 * time.Millisecond},
		})
		opened <- result{s, err}
	}()
	time.Sleep(time.Second) // several request timeouts
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdkv.StartEmbedded(ctx, etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: t.TempDir(), ClientAddr: addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := <-opened
	if r.err != nil {
		t.Fatalf("Open gave up on a cluster that came up within its startup time: %v", r.err)
	}
	_ = r.s.Close()
}
