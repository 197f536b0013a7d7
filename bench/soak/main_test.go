package main

import "testing"

// The verdict: growth after warm-up fails, a plateau (however high the
// warm-up climb) and noise below the floor pass.
func TestGrows(t *testing.T) {
	cases := []struct {
		name string
		vals []float64
		want bool
	}{
		{"plateau after warm-up", []float64{10, 40, 80, 100, 100, 101, 99, 100, 102, 100, 101, 100}, false},
		{"steady climb", []float64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120}, true},
		{"small growth under the floor", []float64{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2}, false},
		{"too few samples", []float64{1, 100}, false},
	}
	for _, c := range cases {
		if _, got := grows(c.vals, 0.25, 5); got != c.want {
			t.Errorf("%s: grows = %v, want %v", c.name, got, c.want)
		}
	}
}
