package main

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// takenAddr returns a loopback address that a listener of this test holds.
func takenAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestCLIUsageAndExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, "usage: nola"},
		{[]string{"--help"}, 0, "commands:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"invoke"}, 2, "want NAMESPACE ACTOR OPERATION"},
		{[]string{"invoke", "--help"}, 0, "usage: nola invoke"},
		{[]string{"serve", "--help"}, 0, "-lease-ttl"},
		{[]string{"serve", "--store", "carrier-pigeon"}, 2, "--store must be etcd or memory"},
		// Flags are checked before anything binds: a bad --store does not
		// first take the port (the one given here is taken already).
		{[]string{"serve", "--store", "carrier-pigeon", "--listen", takenAddr(t)}, 2, "--store must be etcd or memory"},
		{[]string{"serve", "--log-level", "loud"}, 2, "bad --log-level"},
		{[]string{"module"}, 2, "usage: nola module"},
		{[]string{"kv", "scan"}, 2, "want NAMESPACE ACTOR"},
		// get takes no scan flags (they were once silently ignored).
		{[]string{"kv", "get", "--prefix", "p", "ns", "a", "k"}, 2, "flag provided but not defined: -prefix"},
		{[]string{"bench", "--concurrency", "0"}, 2, "must be positive"},
		{[]string{"invoke", "--server", "http://127.0.0.1:1", "--timeout", "2s", "ns", "a", "op"}, 1, "cannot connect"},
		{[]string{"invoke", "--timeout", "0", "ns", "a", "op"}, 2, "must be positive"},
		{[]string{"invoke", "--server", "ftp://127.0.0.1:1", "ns", "a", "op"}, 1, `scheme "ftp"`},
		{[]string{"invoke", "--server", "127.0.0.1:1", "--timeout", "2s", "ns", "a", "op"}, 1, "cannot connect to http://127.0.0.1:1"},
		{[]string{"serve", "--store", "memory", "--ns-token", "demo=t1"}, 2, "--ns-token needs --api-token"},
		{[]string{"serve", "--store", "memory", "--api-token", "a", "--ns-token", "demo=t1", "--ns-token", "other=t1"}, 2, "one token given for namespaces"},
		{[]string{"serve", "--lease-ttl", "0s"}, 2, "--lease-ttl must be at least 1s"},
		{[]string{"serve", "--advertise", "foo"}, 2, "--advertise wants a URL"},
		{[]string{"version"}, 0, "nola "},
		{[]string{"invoke", "ns", "", "op"}, 2, "ACTOR is empty"},
		{[]string{"invoke", "ns", "a", "op", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"invoke", "ns", "a", "op", "payload", "--timeout"}, 2, "flag needs an argument"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		all := out.String() + errb.String()
		if code != c.code || !strings.Contains(all, c.out) {
			t.Errorf("nola %v: exit %d, output %q; want exit %d and %q", c.args, code, tail(all, 5), c.code, c.out)
		}
	}
	// A password in the server URL never reaches the output.
	var out, errb bytes.Buffer
	code := run([]string{"invoke", "--server", "http://nola:s3cret-pw@127.0.0.1:1", "--timeout", "2s", "ns", "a", "op"}, &out, &errb)
	if all := out.String() + errb.String(); code != 1 || strings.Contains(all, "s3cret-pw") || !strings.Contains(all, "cannot connect") {
		t.Errorf("invoke with a password in --server: exit %d, output %q", code, all)
	}
}

// The client commands against a live in-process server.
func TestCLIClientCommands(t *testing.T) {
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	srv, err := nola.NewServer(nola.ServerConfig{ID: "cli", Addr: url, Runtime: r, Store: store, Transport: tr, Types: actors.Types()})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(url, srv)
	hs.Config.Handler = httpapi.NewHandler(srv, httpapi.Options{})
	hs.Start()
	defer hs.Close()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	steps := []struct {
		args []string
		out  string
	}{
		{[]string{"invoke", "--type", "kvcounter", "ns", "a", "inc"}, "=1"},
		{[]string{"invoke", "ns", "a", "add", "41"}, "=42"},
		{[]string{"invoke", "ns", "never-created", "inc"}, "!pass --type TYPE to create it"},
		// Flags after the positional arguments are flags, not the payload;
		// "--" ends the flags for a payload that starts with "-".
		{[]string{"invoke", "ns", "b", "add", "5", "--type", "kvcounter"}, "=5"},
		{[]string{"invoke", "--type", "kvcounter", "ns", "b", "add", "--", "-2"}, "=3"},
		{[]string{"kv", "get", "ns", "a", "n"}, "=42"},
		{[]string{"kv", "scan", "ns", "a"}, `"text": "42"`},
		{[]string{"kv", "scan", "--prefix", "x", "ns", "a"}, `"entries": []`},
		{[]string{"actors", "list", "ns"}, `"type": "kvcounter"`},
		{[]string{"cluster", "status"}, "answered by cli#1"},
	}
	for _, s := range steps {
		var out, errb bytes.Buffer
		args := append([]string{s.args[0]}, append([]string{"--server", url}, s.args[1:]...)...)
		if sub := s.args[0]; sub == "kv" || sub == "actors" || sub == "cluster" {
			args = append([]string{s.args[0], s.args[1], "--server", url}, s.args[2:]...)
		}
		// "=x": the output is exactly x (results are written as the actor
		// returned them, with no newline, so `> file` round-trips).
		exact, isExact := strings.CutPrefix(s.out, "=")
		if failure, isFailure := strings.CutPrefix(s.out, "!"); isFailure {
			// "!x": the command fails and says x.
			if code := run(args, &out, &errb); code != 1 || !strings.Contains(errb.String(), failure) {
				t.Errorf("nola %v: exit %d, err %q; want exit 1 and %q", s.args, code, errb.String(), failure)
			}
			continue
		}
		if code := run(args, &out, &errb); code != 0 || (isExact && out.String() != exact) || (!isExact && !strings.Contains(out.String(), s.out)) {
			t.Errorf("nola %v: exit %d, out %q, err %q; want %q", s.args, code, out.String(), errb.String(), s.out)
		}
	}
}
