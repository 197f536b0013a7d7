package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/storeless"
)

// waitLog waits until p's log holds want n times (the log is the only
// window into a separate process; membership changes are logged).
func waitLog(t *testing.T, p *proc, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(p.log.Name())
		if strings.Count(string(b), want) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not logged %d times in 20s:\n%s", p.id, want, n, tail(string(b), 20))
		}
		time.Sleep(20 * time.Millisecond) // polling a file for an event, not a timed assertion
	}
}

// ownerOf computes an actor's owner among urls as every server with all of
// them live does.
func ownerOf(t *testing.T, urls []string, ns, id string) string {
	m, err := storeless.NewMembers(storeless.MembersConfig{Self: urls[0], Peers: urls,
		Probe: func(context.Context, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	m.Round(context.Background())
	return m.Owner(ns, id)
}

// Three `nola serve --registry hash` processes: calls through any of them
// reach one activation per actor; KV calls answer 501 unsupported; after
// one is killed, its actors come back on the others with their memory
// reset, and the others' actors keep theirs.
func TestHashRegistryProcesses(t *testing.T) {
	var urls []string
	var lns []net.Listener
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		urls = append(urls, "http://"+ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	var procs []*proc
	// A generous probe timeout: two slow probes in a row on a loaded
	// machine would take a live member out and reset counters the test
	// checks; the killed process refuses connections at once anyway.
	for i, u := range urls {
		procs = append(procs, startServeArgs(t, fmt.Sprintf("h%d", i), "--listen", strings.TrimPrefix(u, "http://"),
			"--registry", "hash", "--peers", strings.Join(urls, ","), "--probe-interval", "50ms", "--probe-timeout", "5s"))
	}
	for _, p := range procs {
		waitLog(t, p, "store-less member up", 2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var clients []*httpapi.Client
	for _, u := range urls {
		c := httpapi.NewClient(u, "")
		t.Cleanup(c.Close)
		clients = append(clients, c)
	}
	inc := func(via int, id string) int {
		t.Helper()
		b, err := clients[via].Invoke(ctx, "demo", id, "counter", "inc", nil)
		if err != nil {
			t.Fatalf("inc %s via %d: %v", id, via, err)
		}
		n, _ := strconv.Atoi(string(b))
		return n
	}
	const actorsN = 9
	for r := range 3 {
		for a := range actorsN {
			if got := inc((a+r)%3, fmt.Sprintf("c%d", a)); got != r {
				t.Fatalf("c%d round %d: got %d, want %d (two activations?)", a, r, got, r)
			}
		}
	}
	_, err := clients[1].Invoke(ctx, "demo", "k", "kvcounter", "inc", nil)
	if !errors.Is(err, nola.ErrUnsupported) {
		t.Fatalf("KV call: %v, want unsupported", err)
	}

	if err := procs[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-procs[2].done
	waitLog(t, procs[0], "store-less member down", 1)
	waitLog(t, procs[1], "store-less member down", 1)
	for a := range actorsN {
		id := fmt.Sprintf("c%d", a)
		want := 3
		if ownerOf(t, urls, "demo", id) == urls[2] {
			want = 0 // moved: its memory died with the process
		}
		if got := inc(a%2, id); got != want {
			t.Fatalf("%s after the kill: got %d, want %d", id, got, want)
		}
	}
}

// --registry hash flags are validated before anything starts; --help
// says at the top of the flag's text that the mode is not linearizable.
func TestHashFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--registry", "dns"}, "--registry"},
		{[]string{"--registry", "hash"}, "--peers"},
		{[]string{"--peers", "http://a:1"}, "--registry hash"},
		{[]string{"--registry", "hash", "--peers", "a:1"}, "--peers"},
		{[]string{"--registry", "hash", "--peers", "http://a:1/x"}, "--peers"},
		{[]string{"--registry", "hash", "--peers", strings.Repeat("http://a:1,", 300) + "http://a:1"}, "--peers"},
		{[]string{"--registry", "hash", "--peers-dns", "nola"}, "--peers-dns"},
		{[]string{"--registry", "hash", "--peers", "http://a:1", "--probe-interval", "1ms"}, "--probe-interval"},
	} {
		err := runServe(context.Background(), append([]string{"--listen", "127.0.0.1:1"}, c.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, errUsage) {
			t.Errorf("serve %v: err = %v, want a usage error naming %s", c.args, err, c.want)
		}
	}
	var help strings.Builder
	_ = runServe(context.Background(), []string{"--help"}, &help, &help)
	if !strings.Contains(help.String(), "NOT LINEARIZABLE, NO KV") {
		t.Fatalf("--help does not say hash mode is not linearizable:\n%s", help.String())
	}
}
