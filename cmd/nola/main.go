// Command nola runs a nola server and talks to one.
//
//	nola serve                 run a server (embedded etcd by default)
//	nola invoke NS ID OP       call an actor
//	nola module put|get|list   manage WASM modules
//	nola kv get|scan           read an actor's KV (read-only admin view)
//	nola actors list NS        list a namespace's actors
//	nola cluster status        servers, incarnations, leases, load
//	nola bench                 drive load over HTTP and report latency
//
// Every subcommand takes --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
		{"module", "manage WASM modules: nola module put|get|list", runModule},
		{"kv", "read an actor's KV: nola kv get|scan", runKV},
		{"actors", "list actors: nola actors list NS", runActors},
		{"cluster", "cluster status: nola cluster status", runCluster},
		{"bench", "drive load against a cluster and report throughput and latency", runBench},
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
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
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
