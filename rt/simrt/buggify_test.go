package simrt

import (
	"slices"
	"testing"

	"github.com/nolaproject/nola/rt"
)

// Fault points stay off unless the world enables them; enabled, a point is
// on or off for the whole run, fires at about the configured rate when on,
// and the same seed makes the same decisions.
func TestBuggify(t *testing.T) {
	w := New(1)
	n := w.Node("a")
	for range 1000 {
		if rt.Buggify(n, "p") {
			t.Fatal("a point fired in a world that did not enable buggify")
		}
	}
	if rt.Buggify(rt.NewReal(), "p") {
		t.Fatal("the real runtime buggified")
	}

	decisions := func(seed uint64) (on int, fires []int) {
		w := New(seed)
		w.EnableBuggify()
		n := w.Node("a")
		for p := range 64 {
			name := string(rune('A' + p))
			k := 0
			for range 400 {
				if rt.Buggify(n, name) {
					k++
				}
			}
			if k > 0 {
				on++
			}
			fires = append(fires, k)
		}
		if got := w.Buggified(); len(got) != on {
			t.Fatalf("Buggified lists %d points, %d fired", len(got), on)
		}
		return on, fires
	}
	on, fires := decisions(7)
	// 64 points, each on with probability 1/4: far outside 4..32 means the
	// draw is broken. An enabled point fires 1 in 20 of 400 checks: ~20.
	if on < 4 || on > 32 {
		t.Fatalf("%d of 64 points on, want about 16", on)
	}
	for i, k := range fires {
		if k != 0 && (k < 3 || k > 60) {
			t.Fatalf("point %d fired %d times in 400 checks, want about 20", i, k)
		}
	}
	again, fires2 := decisions(7)
	if again != on || !slices.Equal(fires, fires2) {
		t.Fatal("the same seed made different buggify decisions")
	}
}
