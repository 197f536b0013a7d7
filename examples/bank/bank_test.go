package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// process is one running bank process.
type process struct {
	cmd    *exec.Cmd
	exited chan error
	logs   *bytes.Buffer
}

// startBank starts the bank binary with args and waits for its ready file;
// it returns the process and the file's lines (URL, etcd endpoints).
func startBank(t *testing.T, bin string, args ...string) (*process, []string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	p := &process{exited: make(chan error, 1), logs: &bytes.Buffer{}}
	p.cmd = exec.Command(bin, append(args, "-ready-file", ready)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	for {
		if b, err := os.ReadFile(ready); err == nil {
			return p, strings.Fields(string(b))
		}
		select {
		case err := <-p.exited:
			t.Fatalf("bank exited before it was ready: %v\n%s", err, p.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.exited; err != nil {
		t.Errorf("bank exited with %v\n%s", err, p.logs)
	}
}

// Three bank processes on loopback form one cluster on the first one's
// embedded etcd: a deposit through each process reaches the account's one
// activation, its balance is durable, and a refused withdrawal changes
// nothing.
func TestThreeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	bin := filepath.Join(t.TempDir(), "bank")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	first, info := startBank(t, bin, "-data-dir", filepath.Join(t.TempDir(), "data"))
	if len(info) != 2 || info[1] == "" {
		t.Fatalf("ready file of the first process = %q, want its URL and etcd endpoints", info)
	}
	urls := []string{info[0]}
	var others []*process
	for range 2 {
		p, pinfo := startBank(t, bin, "-join", info[1])
		others = append(others, p)
		urls = append(urls, pinfo[0])
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, u := range urls {
		c := httpapi.NewClient(u, "")
		defer c.Close()
		out, err := c.Invoke(ctx, "bank", "alice", "account", "deposit", []byte("10"))
		if want := fmt.Sprint(10 * (i + 1)); err != nil || string(out) != want {
			t.Fatalf("deposit through process %d = %q, %v; want %s", i, out, err, want)
		}
	}
	c := httpapi.NewClient(urls[1], "")
	defer c.Close()
	_, err := c.Invoke(ctx, "bank", "alice", "account", "withdraw", []byte("100"))
	if nola.CodeOf(err) != nola.CodeActorError || !strings.Contains(err.Error(), "balance is 30") {
		t.Fatalf("overdraft: err = %v (code %s), want the actor's refusal", err, nola.CodeOf(err))
	}
	out, err := c.Invoke(ctx, "bank", "alice", "account", "balance", nil)
	if err != nil || string(out) != "30" {
		t.Fatalf("balance = %q, %v; want 30", out, err)
	}
	// The joiners leave first: the first process holds the etcd.
	for _, p := range others {
		p.stop(t)
	}
	first.stop(t)
}
