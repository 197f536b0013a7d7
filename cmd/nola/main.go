// Command nola runs a nola server and talks to one.
//
//	nola serve                 run a server (embedded etcd by default)
//	nola invoke NS ID OP       call an actor
//	nola workers call NS T OP  call a stateless worker
//	nola module put|get|list|delete   manage WASM modules
//	nola kv get|scan           read an actor's KV (read-only admin view)
//	nola actors list NS        list a namespace's actors
//	nola actors create NS ID   create an actor with creation arguments
//	nola actors delete NS ID   delete an actor (its KV too)
//	nola cluster status        servers, incarnations, leases, load
//	nola bench                 drive load over HTTP and report latency
//	nola version               print the version
//
// Every subcommand takes --help. Flags may come before or after the
// positional arguments; "--" ends them (for a payload that starts with "-").
//
// The client commands reach --server (env NOLA_SERVER) with --token, or
// else the token in NOLA_API_TOKEN, the variable nola serve reads its own
// from; NOLA_TOKEN, which earlier versions read, is a deprecated fallback
// used only when NOLA_API_TOKEN is unset.
//
// nola invoke, nola workers call and nola kv get write a result exactly as the actor returned
// it, so `nola invoke … > file` round-trips binary results; only when
// stdout is a terminal do they add a newline, for the prompt's sake.
// nola kv scan prints one page as JSON; when there are more entries it says
// on stderr how to get the next page (--cursor).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run a nola server", runServe},
		{"invoke", "invoke an actor: nola invoke NS ID OP [PAYLOAD]", runInvoke},
		{"workers", "call a stateless worker: nola workers call NS TYPE OP [PAYLOAD]", runWorkers},
		{"module", "manage WASM modules: nola module put|get|list", runModule},
		{"kv", "read an actor's KV: nola kv get|scan", runKV},
		{"actors", "list, create or delete actors: nola actors list NS | create --type T NS ID [ARGS] | delete NS ID", runActors},
		{"cluster", "cluster status: nola cluster status", runCluster},
		{"bench", "drive load against a cluster and report throughput and latency", runBench},
		{"version", "print nola's version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: nola <command> [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'nola <command> --help' for a command's flags.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintln(stderr, "nola "+c.name+":", err)
			return 2
		default:
			fmt.Fprintln(stderr, "nola "+c.name+":", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "nola: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// parseFlags parses args; a bad flag is a usage error (exit 2), like a bad
// argument. The flag package has printed the usage already.
//
// Flags may come before, between or after the positional arguments (the
// flag package alone stops at the first positional one, so `nola invoke ns
// a inc --type t` would have sent "--type" as the payload); "--" ends the
// flags, for a positional argument that starts with "-".
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(interleaved(fs, args))
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

// interleaved moves every flag of args (with its value) before the
// positional arguments, which keep their order after a "--".
func interleaved(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) < 2 || a[0] != '-':
			pos = append(pos, a) // "-" alone is a positional (stdin)
		default:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			// A flag that takes a value consumes the next argument; one
			// that has none left is the last thing parsed, so the flag
			// package reports it.
			if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
				if i+1 == len(args) {
					return flags
				}
				i++
				flags = append(flags, args[i])
			}
		}
	}
	return append(append(flags, "--"), pos...)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// newFlagSet returns a flag set that prints its usage to stderr and
// returns errors instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: nola %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// runVersion prints the module version and, for a build from a checkout,
// the commit it was built from.
func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	version, rev, dirty := "(unknown)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version = bi.Main.Version; version == "" {
			version = "(devel)" // a test binary
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	line := "nola " + version
	if rev != "" {
		line += " (commit " + rev
		if dirty {
			line += ", modified"
		}
		line += ")"
	}
	_, err := fmt.Fprintln(stdout, line+" "+runtime.Version())
	return err
}
