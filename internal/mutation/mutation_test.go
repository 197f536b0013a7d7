package mutation

import (
	"strings"
	"testing"
)

func TestParseRoundTripsEveryName(t *testing.T) {
	for _, m := range All() {
		s, err := Parse(" " + m.String() + " ,")
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if !s.Has(m) || s != Of(m) {
			t.Fatalf("Parse(%q) = %v, want only %s", m.String(), s, m)
		}
	}
	all := Of(All()...)
	back, err := Parse(all.String())
	if err != nil || back != all {
		t.Fatalf("Parse(%q) = %v, %v", all.String(), back, err)
	}
	if s, err := Parse(""); err != nil || !s.Empty() {
		t.Fatalf("empty spec: %v, %v", s, err)
	}
}

func TestParseRefusesUnknownNames(t *testing.T) {
	_, err := Parse("SkipStoreFence,NoSuchBug")
	if err == nil || !strings.Contains(err.Error(), `"NoSuchBug"`) || !strings.Contains(err.Error(), "SkipStoreFence") {
		t.Fatalf("err = %v, want one naming the bad name and the known ones", err)
	}
}

func TestNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Names() {
		if seen[n] || strings.HasPrefix(n, "mutation(") {
			t.Fatalf("name %q repeated or missing", n)
		}
		seen[n] = true
	}
}
