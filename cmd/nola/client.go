package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// clientFlags are shared by the commands that talk to a server.
type clientFlags struct {
	server  string
	token   string
	timeout time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", envOr("NOLA_SERVER", "http://127.0.0.1:9090"), "server URL (env NOLA_SERVER)")
	fs.StringVar(&c.token, "token", "", "API token (default: env NOLA_API_TOKEN, the variable nola serve reads; NOLA_TOKEN, deprecated, if that is unset)")
	c.timeout = 30 * time.Second
	fs.Var((*positiveDuration)(&c.timeout), "timeout", "request timeout (a `duration`)")
}

// positiveDuration is a duration flag that refuses zero and negative
// values (a request with no time at all fails at once, confusingly).
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("must be positive, got %v", v)
	}
	*d = positiveDuration(v)
	return nil
}

func (c *clientFlags) client() *httpapi.Client {
	tok := c.token
	if tok == "" {
		tok = os.Getenv("NOLA_API_TOKEN")
	}
	if tok == "" {
		tok = os.Getenv("NOLA_TOKEN") // the name earlier versions read
	}
	return httpapi.NewClient(c.server, tok)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// readPayload interprets a payload argument: "@file" reads a file, "-"
// reads standard input, anything else is the payload itself.
func readPayload(arg string) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(os.Stdin)
	case len(arg) > 1 && arg[0] == '@':
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("reading payload file: %w", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// subcommand checks that args start with one of subs and returns it; on
// anything else it prints usage (and --help is not an error).
func subcommand(args []string, stderr io.Writer, usage string, subs ...string) (string, error) {
	if len(args) > 0 && slices.Contains(subs, args[0]) {
		return args[0], nil
	}
	fmt.Fprintln(stderr, "usage: nola "+usage)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return "", flag.ErrHelp
	}
	return "", usageErr("want %s", strings.Join(subs, " or "))
}

// connect bounds ctx by the --timeout flag and returns a client of --server.
func (c *clientFlags) connect(ctx context.Context) (context.Context, context.CancelFunc, *httpapi.Client) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	cl := c.client()
	return ctx, func() { cancel(); cl.Close() }, cl
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runInvoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("invoke", "invoke [flags] NAMESPACE ACTOR OPERATION [PAYLOAD|@FILE|-]", stderr)
	var cf clientFlags
	cf.register(fs)
	typ := fs.String("type", "", "actor type (a Go type or a WASM module ID); required to create the actor")
	argsFlag := fs.String("creation-args", "", "creation arguments (ARGS, @FILE or -) stored if this call creates the actor; ignored if it exists")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fs.Usage()
		return usageErr("want NAMESPACE ACTOR OPERATION [PAYLOAD]")
	}
	for i, what := range []string{"namespace", "actor ID", "operation"} {
		if fs.Arg(i) == "" {
			return usageErr("empty %s", what)
		}
	}
	var payload, cargs []byte
	if fs.NArg() == 4 {
		var err error
		if payload, err = readPayload(fs.Arg(3)); err != nil {
			return err
		}
	}
	if flagSet(fs, "creation-args") {
		if *typ == "" {
			return usageErr("--creation-args needs --type: only a call that names the type can create the actor")
		}
		if fs.NArg() == 4 && fs.Arg(3) == "-" && *argsFlag == "-" {
			return usageErr("the payload and --creation-args cannot both be read from standard input")
		}
		var err error
		if cargs, err = readPayload(*argsFlag); err != nil {
			return err
		}
		if cargs == nil {
			cargs = []byte{}
		}
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	out, err := c.InvokeCreating(ctx, fs.Arg(0), fs.Arg(1), *typ, fs.Arg(2), payload, cargs)
	if err != nil {
		if *typ == "" && nola.CodeOf(err) == nola.CodeBadRequest && strings.Contains(err.Error(), "not found") {
			// The server's hint names the HTTP parameter; this is the flag.
			return fmt.Errorf("actor %s/%s does not exist yet: pass --type TYPE to create it", fs.Arg(0), fs.Arg(1))
		}
		return err
	}
	return writeResult(stdout, out)
}

// runWorkers is "workers call": one invocation of a stateless worker, run
// by the server --server names.
func runWorkers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "workers call [flags] NAMESPACE WORKER-TYPE OPERATION [PAYLOAD|@FILE|-]"
	if _, err := subcommand(args, stderr, use, "call"); err != nil {
		return err
	}
	fs := newFlagSet("workers call", use, stderr)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fs.Usage()
		return usageErr("want NAMESPACE WORKER-TYPE OPERATION [PAYLOAD]")
	}
	for i, what := range []string{"namespace", "worker type", "operation"} {
		if fs.Arg(i) == "" {
			return usageErr("empty %s", what)
		}
	}
	var payload []byte
	if fs.NArg() == 4 {
		var err error
		if payload, err = readPayload(fs.Arg(3)); err != nil {
			return err
		}
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	out, err := c.CallWorker(ctx, fs.Arg(0), fs.Arg(1), fs.Arg(2), payload)
	if err != nil {
		return err
	}
	return writeResult(stdout, out)
}

// writeResult writes a result exactly as the actor returned it, so that
// `nola invoke … > file` round-trips binary results; on a terminal it adds
// a newline, for the prompt's sake.
func writeResult(w io.Writer, b []byte) error {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b = append(b, '\n')
		}
	}
	_, err := w.Write(b)
	return err
}

func runModule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, stderr, "module put NS ID FILE | get NS ID [FILE] | list NS | delete NS ID", "put", "get", "list", "delete")
	if err != nil {
		return err
	}
	fs := newFlagSet("module "+sub, map[string]string{
		"put":    "module put [flags] NAMESPACE MODULE-ID FILE.wasm",
		"get":    "module get [flags] NAMESPACE MODULE-ID [OUT-FILE]",
		"list":   "module list [flags] NAMESPACE",
		"delete": "module delete [flags] NAMESPACE MODULE-ID",
	}[sub], stderr)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	switch sub {
	case "put":
		if fs.NArg() != 3 {
			fs.Usage()
			return usageErr("want NAMESPACE MODULE-ID FILE")
		}
		b, err := os.ReadFile(fs.Arg(2))
		if err != nil {
			return fmt.Errorf("reading module: %w", err)
		}
		info, created, err := c.PutModule(ctx, fs.Arg(0), fs.Arg(1), b)
		if err != nil {
			return err
		}
		verb := "already stored (identical bytes)"
		if created {
			verb = "stored"
		}
		fmt.Fprintf(stdout, "module %s/%s %s: %d bytes, sha256 %s\n", info.Namespace, info.ID, verb, info.Size, info.SHA256)
		return nil
	case "get":
		if fs.NArg() < 2 || fs.NArg() > 3 {
			fs.Usage()
			return usageErr("want NAMESPACE MODULE-ID [OUT-FILE]")
		}
		b, err := c.GetModule(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return err
		}
		if fs.NArg() == 3 {
			return os.WriteFile(fs.Arg(2), b, 0o644)
		}
		_, err = stdout.Write(b)
		return err
	case "delete":
		if fs.NArg() != 2 {
			fs.Usage()
			return usageErr("want NAMESPACE MODULE-ID")
		}
		if err := c.DeleteModule(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "module %s/%s deleted (its ID cannot be used again)\n", fs.Arg(0), fs.Arg(1))
		return nil
	default:
		if fs.NArg() != 1 {
			fs.Usage()
			return usageErr("want NAMESPACE")
		}
		list, err := c.ListModules(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return printJSON(stdout, list)
	}
}

func runKV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, stderr, "kv get NS ACTOR KEY | scan [--prefix P | --start S --end E] [--limit N] [--cursor C] NS ACTOR", "get", "scan")
	if err != nil {
		return err
	}
	fs := newFlagSet("kv "+sub, map[string]string{
		"get":  "kv get [flags] NAMESPACE ACTOR KEY",
		"scan": "kv scan [flags] NAMESPACE ACTOR",
	}[sub], stderr)
	var cf clientFlags
	cf.register(fs)
	// The scan flags exist only for scan: `kv get --prefix` is refused as
	// an unknown flag instead of being silently ignored.
	var prefix, start, end, cursor *string
	var limit *int
	if sub == "scan" {
		prefix = fs.String("prefix", "", "scan keys with this prefix")
		start = fs.String("start", "", "scan keys >= start")
		end = fs.String("end", "", "scan keys < end (empty: to the last key)")
		limit = fs.Int("limit", 100, "at most this many entries")
		cursor = fs.String("cursor", "", "continue a scan: the \"next\" of the previous page (the other scan flags as they were)")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	if sub == "get" {
		if fs.NArg() != 3 {
			fs.Usage()
			return usageErr("want NAMESPACE ACTOR KEY")
		}
		v, found, err := c.GetKV(ctx, fs.Arg(0), fs.Arg(1), fs.Arg(2))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("key %q not found", fs.Arg(2))
		}
		return writeResult(stdout, v)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageErr("want NAMESPACE ACTOR")
	}
	var p *string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "prefix" {
			p = prefix
		}
	})
	scan, err := c.ScanKVPage(ctx, fs.Arg(0), fs.Arg(1), httpapi.KVScanQuery{
		Prefix: p, Start: *start, End: *end, Limit: *limit, Cursor: *cursor})
	if err != nil {
		return err
	}
	if err := printJSON(stdout, scan); err != nil {
		return err
	}
	if scan.More {
		// On stderr, so that stdout stays one JSON document.
		fmt.Fprintf(stderr, "more entries: repeat with --cursor %s\n", scan.Next)
	}
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runActors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, stderr, "actors list|create|delete [flags] NAMESPACE [ACTOR]", "list", "create", "delete")
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return runActorsCreate(ctx, args[1:], stdout, stderr)
	case "delete":
		return runActorsDelete(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("actors list", "actors list [flags] NAMESPACE", stderr)
	var cf clientFlags
	cf.register(fs)
	after := fs.String("after", "", "list actors after this ID (paging)")
	limit := fs.Int("limit", 100, "at most this many actors")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageErr("want NAMESPACE")
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	list, err := c.ListActors(ctx, fs.Arg(0), *after, *limit)
	if err != nil {
		return err
	}
	return printJSON(stdout, list)
}

// runActorsCreate creates an actor with creation arguments, without
// invoking it, and prints whether it was created (it existed otherwise:
// nothing changed, exit 0).
func runActorsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("actors create", "actors create --type TYPE [flags] NAMESPACE ACTOR [ARGS|@FILE|-]", stderr)
	var cf clientFlags
	cf.register(fs)
	typ := fs.String("type", "", "actor type (a Go type or a WASM module ID); required")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fs.Usage()
		return usageErr("want NAMESPACE ACTOR [ARGS]")
	}
	if *typ == "" {
		return usageErr("--type is required: it is the type the actor is created with")
	}
	for i, what := range []string{"namespace", "actor ID"} {
		if fs.Arg(i) == "" {
			return usageErr("empty %s", what)
		}
	}
	var cargs []byte
	if fs.NArg() == 3 {
		var err error
		if cargs, err = readPayload(fs.Arg(2)); err != nil {
			return err
		}
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	created, err := c.Create(ctx, fs.Arg(0), fs.Arg(1), *typ, cargs)
	if err != nil {
		return err
	}
	return printJSON(stdout, httpapi.CreateResult{Created: created})
}

// runActorsDelete deletes one actor: once it returns, no invocation sees
// the old actor or its KV, and a typed call creates a new, empty one
// (docs/deletion.md).
func runActorsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("actors delete", "actors delete [flags] NAMESPACE ACTOR", stderr)
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageErr("want NAMESPACE ACTOR")
	}
	for i, what := range []string{"namespace", "actor ID"} {
		if fs.Arg(i) == "" {
			return usageErr("empty %s", what)
		}
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	if err := c.DeleteActor(ctx, fs.Arg(0), fs.Arg(1)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s/%s\n", fs.Arg(0), fs.Arg(1))
	return nil
}

func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if _, err := subcommand(args, stderr, "cluster status [flags]", "status"); err != nil {
		return err
	}
	fs := newFlagSet("cluster status", "cluster status [flags]", stderr)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	ctx, done, c := cf.connect(ctx)
	defer done()
	st, err := c.Cluster(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "%-16s %-5s %-28s %-12s %-10s %s\n", "SERVER", "INC", "ADDRESS", "ACTIVATIONS", "MEMORY", "REGISTERED")
	for _, s := range st.Servers {
		fmt.Fprintf(stdout, "%-16s %-5d %-28s %-12d %-10s %s\n", s.ID, s.Incarnation, s.Addr, s.Activations,
			humanBytes(s.MemoryBytes), s.RegisteredAt.Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "\nanswered by %s#%d: lease age %dms, ready=%v, %d executions, %d fences\n",
		st.Self.ID, st.Self.Incarnation, st.Self.LeaseAgeMs, st.Self.Ready, st.Self.Stats.Invocations, st.Self.Stats.Fences)
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
