package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
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
		{[]string{"invoke", "ns", "", "op"}, 2, "empty actor ID"},
		{[]string{"actors", "create", "ns", "g"}, 2, "--type is required"},
		{[]string{"actors", "create", "--type", "t", "ns"}, 2, "want NAMESPACE ACTOR"},
		{[]string{"actors", "create", "--help"}, 0, "usage: nola actors create"},
		{[]string{"invoke", "--creation-args", "x", "ns", "a", "op"}, 2, "--creation-args needs --type"},
		{[]string{"invoke", "--type", "t", "--creation-args", "-", "ns", "a", "op", "-"}, 2, "cannot both be read from standard input"},
		{[]string{"invoke", "ns", "a", "op", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"invoke", "ns", "a", "op", "payload", "--timeout"}, 2, "flag needs an argument"},
		{[]string{"actors", "delete", "ns"}, 2, "want NAMESPACE ACTOR"},
		{[]string{"actors", "delete", "", "a"}, 2, "empty namespace"},
		{[]string{"actors", "remove"}, 2, "want list or create or delete"},
		{[]string{"module", "delete", "ns"}, 2, "want NAMESPACE MODULE-ID"},
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

// startCLIServer runs one nola server with the example actors behind the
// HTTP API on memkv and returns its URL.
func startCLIServer(t *testing.T, opts httpapi.Options) string {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	hs := httptest.NewUnstartedServer(nil)
	url := "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{Token: opts.AdminToken})
	srv, err := nola.NewServer(nola.ServerConfig{ID: "cli", Addr: url, Runtime: r, Store: store, Transport: tr, Types: actors.Types(), Workers: actors.Workers()})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(url, srv)
	hs.Config.Handler = httpapi.NewHandler(srv, opts)
	hs.Start()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		tr.Close()
	})
	return url
}

// The client commands against a live in-process server.
func TestCLIClientCommands(t *testing.T) {
	url := startCLIServer(t, httpapi.Options{})
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
		{[]string{"actors", "create", "--type", "greeter", "ns", "g", "ada"}, `"created": true`},
		{[]string{"actors", "create", "ns", "g", "bob", "--type", "greeter"}, `"created": false`},
		{[]string{"invoke", "ns", "g", "hello"}, "=hello, ada"},
		{[]string{"invoke", "--type", "greeter", "--creation-args", "eve", "ns", "g3", "hello"}, "=hello, eve"},
		{[]string{"invoke", "--type", "greeter", "--creation-args", "mallory", "ns", "g3", "args"}, "=eve"},
		{[]string{"actors", "delete", "ns", "a"}, "deleted ns/a"},
		{[]string{"actors", "delete", "ns", "a"}, "!does not exist"},
		{[]string{"invoke", "ns", "a", "get"}, "!pass --type TYPE to create it"},
		{[]string{"kv", "get", "ns", "a", "n"}, `!key "n" not found`},
		{[]string{"invoke", "--type", "kvcounter", "ns", "a", "inc"}, "=1"},
		{[]string{"cluster", "status"}, "answered by cli#1"},
		{[]string{"workers", "call", "ns", "echo", "op", "hi"}, "=hi"},
		{[]string{"workers", "call", "ns", "sha256", "op", "abc"}, "=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{[]string{"workers", "call", "ns", "count", "op", "c1"}, "=0"},
		{[]string{"workers", "call", "ns", "count", "op", "c1"}, "=1"},
		{[]string{"workers", "call", "ns", "nope", "op"}, "!unknown worker type"},
	}
	for _, s := range steps {
		var out, errb bytes.Buffer
		args := append([]string{s.args[0]}, append([]string{"--server", url}, s.args[1:]...)...)
		if sub := s.args[0]; sub == "kv" || sub == "actors" || sub == "cluster" || sub == "workers" {
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

// nola version names the module version (from the build information) and
// the Go toolchain.
func TestCLIVersion(t *testing.T) {
	code, out, errs := cli("version")
	if code != 0 || !regexp.MustCompile(`^nola \S+ (\(commit [0-9a-f]+(, modified)?\) )?`+regexp.QuoteMeta(runtime.Version())+"\n$").MatchString(out) {
		t.Fatalf("nola version: exit %d, %q %q", code, out, errs)
	}
}

// cli runs nola with args and returns its exit code, stdout and stderr.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// A binary result written to a file (stdout not a terminal) is exactly
// the actor's bytes: no newline is added, so `nola invoke … > file`
// round-trips.
func TestCLIBinaryResultRoundTrips(t *testing.T) {
	url := startCLIServer(t, httpapi.Options{})
	dir := t.TempDir()
	payload := []byte{0xff, 0xfe, 0x00, 'x', 0x80, '\n', 0xc3} // not UTF-8, ends without a newline
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(dir, "out.bin")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	code := run([]string{"invoke", "--server", url, "--type", "echo", "ns", "e", "echo", "@" + in}, out, &errb)
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !bytes.Equal(got, payload) {
		t.Fatalf("exit %d (%s), file holds %x, want %x", code, errb.String(), got, payload)
	}
}

// The CLI reads NOLA_API_TOKEN, the variable nola serve reads; NOLA_TOKEN
// (the name earlier versions read) still works when it is unset; --token
// wins over both. A token the server does not know is 401, not 403.
func TestCLIReadsNOLAAPIToken(t *testing.T) {
	url := startCLIServer(t, httpapi.Options{AdminToken: "right"})
	invoke := func(extra ...string) (int, string, string) {
		return cli(append([]string{"invoke", "--server", url, "--type", "counter"}, append(extra, "ns", "a", "inc")...)...)
	}
	t.Setenv("NOLA_TOKEN", "")
	t.Setenv("NOLA_API_TOKEN", "right")
	if code, _, errs := invoke(); code != 0 {
		t.Fatalf("with NOLA_API_TOKEN: exit %d: %s", code, errs)
	}
	if code, _, errs := invoke("--token", "wrong"); code != 1 || !strings.Contains(errs, "unauthorized: unknown token") {
		t.Fatalf("--token wrong over NOLA_API_TOKEN: exit %d: %s", code, errs)
	}
	t.Setenv("NOLA_API_TOKEN", "")
	if code, _, errs := invoke(); code != 1 || !strings.Contains(errs, "missing bearer token") {
		t.Fatalf("no token: exit %d: %s", code, errs)
	}
	t.Setenv("NOLA_TOKEN", "right")
	if code, _, errs := invoke(); code != 0 {
		t.Fatalf("with the deprecated NOLA_TOKEN: exit %d: %s", code, errs)
	}
	t.Setenv("NOLA_API_TOKEN", "wrong")
	if code, _, errs := invoke(); code != 1 || !strings.Contains(errs, "unknown token") {
		t.Fatalf("NOLA_API_TOKEN wins over NOLA_TOKEN: exit %d: %s", code, errs)
	}
}

// `nola kv scan` pages: a cut-short page says (on stderr) how to get the
// next one, and --cursor gets it, to the end.
func TestCLIKVScanPages(t *testing.T) {
	url := startCLIServer(t, httpapi.Options{})
	for _, kv := range []string{"a=1", "b=2", "c=3"} {
		if code, _, errs := cli("invoke", "--server", url, "--type", "kvmap", "ns", "m", "put", kv); code != 0 {
			t.Fatalf("put %s: exit %d: %s", kv, code, errs)
		}
	}
	var keys []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("more than 3 pages of one entry: %v", keys)
		}
		args := []string{"kv", "scan", "--server", url, "--prefix", "m/", "--limit", "1", "ns", "m"}
		if cursor != "" {
			args = append(args, "--cursor", cursor)
		}
		code, out, errs := cli(args...)
		var scan httpapi.KVScan
		if err := json.Unmarshal([]byte(out), &scan); code != 0 || err != nil || len(scan.Entries) != 1 {
			t.Fatalf("page %d: exit %d, %v, out %q, err %q", page, code, err, out, errs)
		}
		keys = append(keys, scan.Entries[0].Key)
		next, more := strings.CutPrefix(strings.TrimSpace(errs), "more entries: repeat with --cursor ")
		if more != scan.More || (more && next != scan.Next) {
			t.Fatalf("page %d: more=%v next=%q, stderr %q", page, scan.More, scan.Next, errs)
		}
		if !more {
			break
		}
		cursor = next
	}
	if strings.Join(keys, ",") != "m/a,m/b,m/c" {
		t.Fatalf("pages hold %v, want m/a, m/b, m/c", keys)
	}
}

// kv get's help lists the client flags only; scan's lists its own.
func TestCLIKVHelp(t *testing.T) {
	_, out, errs := cli("kv", "get", "--help")
	if help := out + errs; !strings.Contains(help, "-server") || strings.Contains(help, "-prefix") || strings.Contains(help, "-cursor") {
		t.Fatalf("kv get --help:\n%s", help)
	}
	_, out, errs = cli("kv", "scan", "--help")
	for _, f := range []string{"-prefix", "-start", "-end", "-limit", "-cursor"} {
		if !strings.Contains(out+errs, f) {
			t.Errorf("kv scan --help lacks %s:\n%s", f, out+errs)
		}
	}
}
