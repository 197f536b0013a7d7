//go:build !nolamutation

package main

import (
	"flag"

	"github.com/nolaproject/nola/internal/mutation"
)

const mutationsBuilt = false

// addMutationFlag adds nothing: --unsafe-mutation exists only in builds
// with -tags nolamutation (see mutation_on.go).
func addMutationFlag(*flag.FlagSet, *string) {}

func parseMutations(string) (mutation.Set, error) { return mutation.Set{}, nil }
