//go:build nolamutation

package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/nolaproject/nola/internal/mutation"
)

// This file exists only in builds with -tags nolamutation (cmd/jepsen-lite
// builds one to show its checkers catch protocol bugs). A normal build has
// no --unsafe-mutation flag at all.

const mutationsBuilt = true

func addMutationFlag(fs *flag.FlagSet, dst *string) {
	fs.StringVar(dst, "unsafe-mutation", "", "TEST BUILD ONLY: break one protocol rule ("+strings.Join(mutation.Names(), ", ")+"; comma-separated)")
}

func parseMutations(spec string) (mutation.Set, error) {
	m, err := mutation.Parse(spec)
	if err != nil {
		return m, usageErr("--unsafe-mutation: %v", err)
	}
	for _, x := range mutation.All() {
		if m.Has(x) && !x.Server() {
			return mutation.Set{}, usageErr("--unsafe-mutation: %s acts on registry schedules only, not on a server", x)
		}
	}
	if !m.Empty() {
		fmt.Println("WARNING: nola serve runs with the unsafe protocol mutation", m, "— its guarantees do not hold")
	}
	return m, nil
}
