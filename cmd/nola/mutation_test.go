package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The protocol mutations must not be reachable from a normal build: the
// flag does not even parse.
func TestUnsafeMutationFlagOnlyInTestBuild(t *testing.T) {
	if mutationsBuilt {
		t.Skip("built with -tags nolamutation")
	}
	var out bytes.Buffer
	err := runServe(context.Background(), []string{"--unsafe-mutation", "SkipStoreFence", "--store", "memory"}, &out, &out)
	if err == nil || !strings.Contains(out.String()+err.Error(), "flag provided but not defined: -unsafe-mutation") {
		t.Fatalf("normal build accepted --unsafe-mutation: err=%v output=%s", err, out.String())
	}
}
