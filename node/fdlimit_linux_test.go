package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
)

// helperEnv makes the test binary run one node (TestFDHelperProcess)
// instead of the tests: the parent test starts it under a low descriptor
// limit.
const helperEnv = "NOLA_NODE_FD_HELPER"

// TestFDHelperProcess is not a test: run by TestConnectionFloodUnderLowFDLimit
// in a child process, it starts a node on an embedded etcd, writes its
// address to the ready file and shuts it down when stdin closes.
func TestFDHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process only")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	maxConns, _ := strconv.Atoi(os.Getenv(helperEnv + "_MAXCONNS"))
	n, err := Start(context.Background(), Options{
		Store: Store{DataDir: dir}, Types: actors.Types(), LeaseTTL: 2 * time.Second,
		MaxConns: maxConns, Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(3)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready.tmp"), []byte(n.Addr()), 0o644); err != nil {
		os.Exit(3)
	}
	if err := os.Rename(filepath.Join(dir, "ready.tmp"), filepath.Join(dir, "ready")); err != nil {
		os.Exit(3)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "shutdown:", err)
		os.Exit(4)
	}
	os.Exit(0)
}

// A flood of connections to a node whose process may hold 256 file
// descriptors never makes it run out of them (the embedded etcd needs
// them to live): the node serves its connection bound, the rest wait in
// the accept queue, and once the flood ends a KV call succeeds. Without
// the bound (MaxConns -1) the same flood makes accept fail with EMFILE.
func TestConnectionFloodUnderLowFDLimit(t *testing.T) {
	const fdLimit, flood = 256, 400
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 2*flood {
		t.Skipf("this process may open too few files for the flood: %+v, %v", lim, err)
	}
	dir := t.TempDir()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" -test.run='^TestFDHelperProcess$'`, fdLimit), bin)
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	var logs syncBuf
	cmd.Stderr, cmd.Stdout = &logs, &logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	var addr string
	for addr == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "ready")); err == nil {
			addr = string(b)
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the node exited before it was ready: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}

	bound := connBound(fdLimit)
	answered := make(chan struct{}, flood)
	var conns []net.Conn
	for range flood {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		go func() {
			if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				answered <- struct{}{}
			}
		}()
	}
	// The node answers as many as its bound, each connection then held
	// open (keep-alive) by this test.
	for range bound {
		select {
		case <-answered:
		case err := <-exited:
			t.Fatalf("the node exited during the flood: %v\n%s", err, logs.String())
		}
	}
	for _, c := range conns {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := httpapi.NewClient("http://"+addr, "")
	defer c.Close()
	if out, err := c.Invoke(ctx, "ns", "k", "kvcounter", "inc", nil); err != nil || string(out) != "1" {
		t.Fatalf("kvcounter inc after the flood = %q, %v; want 1\n%s", out, err, logs.String())
	}
	stdin.Close()
	if err := <-exited; err != nil {
		t.Fatalf("the node exited with %v\n%s", err, logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "soft_limit=256") || !strings.Contains(out, fmt.Sprintf("max_conns=%d", bound)) {
		t.Errorf("the log does not show the descriptor limit and the bound:\n%s", out)
	}
	if strings.Contains(out, "too many open files") {
		t.Errorf("the node ran out of file descriptors:\n%s", out)
	}
}

// syncBuf is a buffer a child process's output and the test share.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
