// Command nolamodel explores the activation protocol model (package model)
// exhaustively for its scopes and prints the final table; see model/README.md.
//
//	go run ./model/cmd/nolamodel                  # every scope of model.Scopes, with liveness
//	go run ./model/cmd/nolamodel -scope 2x1       # one scope
//	go run ./model/cmd/nolamodel -mutations       # each mutation's shortest counterexample
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nolaproject/nola/model"
)

func main() {
	scope := flag.String("scope", "", "explore only the scope with this name (default: all of model.Scopes)")
	mutations := flag.Bool("mutations", false, "explore each mutation's scope and print its shortest counterexample")
	liveness := flag.Bool("liveness", true, "run the recovery schedule from every reachable state")
	progress := flag.Duration("progress", 2*time.Second, "interval of progress lines (0: none)")
	flag.Parse()

	opts := model.Options[model.State, model.Action]{ProgressEvery: *progress}
	if *progress > 0 {
		opts.Progress = os.Stderr
	}
	failed := false
	if *mutations {
		for _, mc := range model.MutationCases() {
			o := opts
			o.StopAtViolation = true
			rep := model.Check(mc.Scope, o, false)
			m := model.New(mc.Scope)
			if rep.Violation == "" {
				fmt.Printf("%s: NO COUNTEREXAMPLE (%d states)\n", mc.Name, rep.States)
				failed = true
				continue
			}
			fmt.Printf("== %s: %s, %d steps (%d states, %s)\n%s\n", mc.Name, rep.Violation, len(rep.Trace), rep.States, rep.Wall.Round(time.Millisecond), m.FormatTrace(rep.Violation, rep.Trace))
		}
		if failed {
			os.Exit(1)
		}
		return
	}
	var reps []model.Report
	for _, sc := range model.Scopes() {
		if *scope != "" && sc.Name != *scope {
			continue
		}
		fmt.Fprintf(os.Stderr, "== scope %s: %d servers x %d actors\n", sc.Name, sc.Servers, sc.Actors)
		rep := model.Check(sc, opts, *liveness)
		reps = append(reps, rep)
		fmt.Print(rep.FormatReached())
		if *liveness {
			fmt.Printf("  liveness: %d states checked, each reaches a callable (or already verified) state within %d recovery steps\n", rep.LiveChecked, rep.LiveMaxSteps)
		}
		if rep.Violation != "" {
			fmt.Print(model.New(sc).FormatTrace(rep.Violation, rep.Trace))
		}
		if rep.LiveFailed != nil {
			fmt.Printf("  liveness FAILED from: %s\n", model.New(sc).Summary(rep.LiveFailed))
		}
		if rep.Violation != "" || rep.Truncated || rep.LiveFailed != nil || len(rep.Unreached()) > 0 {
			failed = true
		}
	}
	fmt.Print(model.FormatScopeTable(reps))
	if failed {
		os.Exit(1)
	}
}
