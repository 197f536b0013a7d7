package race_test

import (
	"runtime/debug"
	"testing"

	"github.com/nolaproject/nola/internal/race"
)

// Enabled matches the -race build setting the toolchain recorded in the
// binary: a build-tag mix-up (both files, or neither, or the tags swapped)
// fails here (make test runs this package with and without -race).
func TestEnabledMatchesBuildSettings(t *testing.T) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info in the test binary")
	}
	built := false
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			built = s.Value == "true"
		}
	}
	if race.Enabled != built {
		t.Fatalf("race.Enabled = %v, but the binary was built with -race=%v", race.Enabled, built)
	}
}
