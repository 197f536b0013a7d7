//go:build nolamutation

package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/nolaproject/nola/nola"
)

// This file exists only in builds with -tags nolamutation (cmd/jepsen-lite
// builds one to show its checkers catch protocol bugs). A normal build has
// no --unsafe-mutation flag at all.

const mutationsBuilt = true

var mutationNames = []string{"SkipDeadlineCheck", "SkipStoreFence", "IgnoreIncarnation", "TimerIgnoresFence", "ActorErrorHidesFailedCommit", "SkipCallGate", "SkipReleaseCompare"}

func addMutationFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "unsafe-mutation", "", "TEST BUILD ONLY: break one protocol rule ("+strings.Join(mutationNames, ", ")+"; comma-separated)")
}

func parseMutations(spec string) (nola.Mutations, error) {
	var m nola.Mutations
	for _, n := range strings.Split(spec, ",") {
		switch strings.TrimSpace(n) {
		case "":
		case "SkipDeadlineCheck":
			m.SkipDeadlineCheck = true
		case "SkipStoreFence":
			m.SkipStoreFence = true
		case "IgnoreIncarnation":
			m.IgnoreIncarnation = true
		case "TimerIgnoresFence":
			m.TimerIgnoresFence = true
		case "ActorErrorHidesFailedCommit":
			m.ActorErrorHidesFailedCommit = true
		case "SkipCallGate":
			m.SkipCallGate = true
		case "SkipReleaseCompare":
			m.SkipReleaseCompare = true
		default:
			return m, usageErr("--unsafe-mutation: unknown mutation %q (known: %s)", n, strings.Join(mutationNames, ", "))
		}
	}
	if spec != "" {
		fmt.Println("WARNING: nola serve runs with the unsafe protocol mutation", spec, "— its guarantees do not hold")
	}
	return m, nil
}
