package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/faultinject/nemesis"
)

// TestClusterStopRemovesNamespaces: whatever state a run ends in — here a
// server paused by a fault, a link cut, a proxy open — stop kills every
// process and leaves none of the run's namespaces behind.
func TestClusterStopRemovesNamespaces(t *testing.T) {
	if err := nemesis.NetnsAvailable(); err != nil {
		t.Skipf("no network namespaces here (%v)", err)
	}
	ctx := context.Background()
	n, err := nemesis.NewNetns(ctx, "stoptest")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{netns: n}
	defer c.stop()
	nd, err := n.AddNode(ctx, "s0")
	if err != nil {
		t.Fatal(err)
	}
	path, args := nd.Command("sleep", "600")
	p := &nemesis.Process{Name: "s0", Path: path, Args: args, Log: t.TempDir() + "/s0.log"}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	px, err := nemesis.NewProxy(n.HostIP()+":0", nd.IP+":9", 1)
	if err != nil {
		t.Fatal(err)
	}
	c.proxies = append(c.proxies, px)
	c.servers = append(c.servers, &server{id: "s0", node: nd, proc: p})
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := nd.Cut(ctx, true, n.HostIP()); err != nil {
		t.Fatal(err)
	}
	exited := p.Exited()
	c.stop()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the paused process survived stop")
	}
	names, err := nemesis.ListNetns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, n.Prefix()) {
			t.Errorf("namespace %s left behind", name)
		}
	}
}
