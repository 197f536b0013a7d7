package nemesis

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNetnsEchoHelper is not a test: run in a node's namespace by
// TestNetns with "listen=ADDR" after "--", it serves an echo on ADDR.
func TestNetnsEchoHelper(t *testing.T) {
	i := slices.Index(os.Args, "--")
	if i < 0 || i+1 >= len(os.Args) || !strings.HasPrefix(os.Args[i+1], "listen=") {
		t.Skip("helper process only")
	}
	ln, err := net.Listen("tcp", strings.TrimPrefix(os.Args[i+1], "listen="))
	if err != nil {
		t.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

func needNetns(t *testing.T) {
	t.Helper()
	if err := NetnsAvailable(); err != nil {
		t.Skipf("no network namespaces here (%v): the loopback mode covers this machine", err)
	}
}

// dialEcho reports whether an echo round trip to addr works within a
// second (a blackholed link hangs: it cannot answer sooner).
func dialEcho(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echo answered %q", line)
	}
	return nil
}

// waitEcho waits for the helper to listen (it starts asynchronously).
func waitEcho(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	for range 100 {
		if dialEcho(addr) == nil {
			return
		}
		select {
		case <-exited:
			t.Fatal("echo helper exited")
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("echo helper on %s never answered", addr)
}

// TestNetns builds a two-node network, checks that a node is reachable,
// that each kind of cut blocks exactly its link and heals, and that Close
// leaves no namespace, veth or table behind.
func TestNetns(t *testing.T) {
	needNetns(t)
	ctx := context.Background()
	n, err := NewNetns(ctx, fmt.Sprintf("t%d", time.Now().UnixNano()%1e6))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = n.Close()
		}
	}()
	a, err := n.AddNode(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddNode(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(a.IP, "7000")
	path, args := a.Command(os.Args[0], "-test.run=^TestNetnsEchoHelper$", "--", "listen="+addr)
	p := &Process{Name: "echo", Path: path, Args: args, Log: t.TempDir() + "/echo.log"}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	waitEcho(t, addr, p.Exited())

	host := n.HostIP()
	cuts := []struct {
		name string
		set  func(on bool) error
		cuts bool
	}{
		{"Cut host", func(on bool) error { return a.Cut(ctx, on, host) }, true},
		{"CutLocal host:7000", func(on bool) error { return a.CutLocal(ctx, on, Service{host, 7000}) }, true},
		{"CutLocal host:7001 (another port)", func(on bool) error { return a.CutLocal(ctx, on, Service{host, 7001}) }, false},
		{"Cut the other node", func(on bool) error { return a.Cut(ctx, on, n.addr(11)) }, false},
	}
	for _, c := range cuts {
		if err := c.set(true); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		err := dialEcho(addr)
		if c.cuts && err == nil {
			t.Errorf("%s: the link still answers", c.name)
		}
		if !c.cuts && err != nil {
			t.Errorf("%s cut an unrelated link: %v", c.name, err)
		}
		if err := c.set(false); err != nil {
			t.Fatalf("%s heal: %v", c.name, err)
		}
		if err := dialEcho(addr); err != nil {
			t.Errorf("%s: not healed: %v", c.name, err)
		}
	}
	// Heal lifts whatever a fault left behind (a Stop that failed).
	if err := a.Cut(ctx, true, host); err != nil {
		t.Fatal(err)
	}
	if err := a.CutLocal(ctx, true, Service{host, 7000}); err != nil {
		t.Fatal(err)
	}
	if err := dialEcho(addr); err == nil {
		t.Error("cut link answers")
	}
	if err := a.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dialEcho(addr); err != nil {
		t.Errorf("not healed by Heal: %v", err)
	}
	// Loss: the rule exists and accepts elements (its effect is random).
	if err := a.SetLoss(ctx, true, Service{host, 7000}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetLoss(ctx, false, Service{host, 7000}); err != nil {
		t.Fatal(err)
	}

	// Cleanup: the process first (it would keep its namespace alive),
	// then everything else.
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := ListNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, n.Prefix()) {
			t.Errorf("namespace %s left behind", name)
		}
	}
	if _, err := net.InterfaceByName(n.hostIf); err == nil {
		t.Errorf("veth %s left behind", n.hostIf)
	}
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil || strings.Contains(string(out), "jepsenlite") {
		t.Errorf("nft tables in the caller's namespace: %s %v", out, err)
	}
}

// TestSweepNetns: a namespace of a process that is gone is deleted; one
// of a live process (this one) is not.
func TestSweepNetns(t *testing.T) {
	needNetns(t)
	ctx := context.Background()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	gone := fmt.Sprintf("%s%d-sweep-x", NetnsPrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d-sweep-x", NetnsPrefix, os.Getpid())
	for _, name := range []string{gone, live} {
		if err := run1(ctx, "ip", "netns", "add", name); err != nil {
			t.Fatal(err)
		}
		defer run1(ctx, "ip", "netns", "del", name)
	}
	swept, err := SweepNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(swept, gone) || slices.Contains(swept, live) {
		t.Fatalf("swept %v; want %s and not %s", swept, gone, live)
	}
	names, _ := ListNetns(ctx)
	if slices.Contains(names, gone) || !slices.Contains(names, live) {
		t.Fatalf("after the sweep: %v", names)
	}
}

// TestNetnsUnavailableWithoutTools: without ip and nft on PATH the
// namespace mode says why and makes nothing (jepsen-lite then falls back
// to loopback).
func TestNetnsUnavailableWithoutTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if err := NetnsAvailable(); err == nil {
		t.Fatal("available without ip and nft")
	}
	if n, err := NewNetns(context.Background(), "none"); err == nil {
		n.Close()
		t.Fatal("NewNetns succeeded without ip and nft")
	}
}

// TestNetnsAvailableProbes: root with ip and nft on PATH is not enough —
// a container without CAP_SYS_ADMIN cannot add a namespace, and a kernel
// without nf_tables rejects the table. NetnsAvailable must say so (so
// that jepsen-lite falls back to loopback and the tests skip) instead of
// letting NewNetns or AddNode fail halfway through a run. Each case puts
// a failing stand-in for one tool first on PATH.
func TestNetnsAvailableProbes(t *testing.T) {
	needNetns(t)
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	nftPath, err := exec.LookPath("nft")
	if err != nil {
		t.Fatal(err)
	}
	for name, fail := range map[string]string{
		"no CAP_SYS_ADMIN": "ip",
		"no nf_tables":     "nft",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for tool, real := range map[string]string{"ip": ipPath, "nft": nftPath} {
				script := "#!/bin/sh\nexec " + real + " \"$@\"\n"
				switch {
				case tool == fail && tool == "ip":
					// What ip says in a default Docker container as root.
					script = "#!/bin/sh\nif [ \"$1 $2\" = \"netns add\" ]; then echo 'mount --make-shared /run/netns failed: Operation not permitted' >&2; exit 1; fi\n" + script[len("#!/bin/sh\n"):]
				case tool == fail:
					script = "#!/bin/sh\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n"
				}
				if err := os.WriteFile(dir+"/"+tool, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
			if err := NetnsAvailable(); err == nil {
				t.Fatalf("NetnsAvailable: nil with a failing %s", fail)
			}
			if n, err := NewNetns(context.Background(), "probe"); err == nil {
				n.Close()
				t.Fatalf("NewNetns succeeded with a failing %s", fail)
			}
			names, err := ListNetns(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				if strings.HasPrefix(name, fmt.Sprintf("%s%d-", NetnsPrefix, os.Getpid())) {
					t.Errorf("namespace %s left behind", name)
				}
			}
		})
	}
}
