package nola

import (
	"slices"
	"testing"
	"time"

	"github.com/nolaproject/nola/rt"
)

// The pending forwards are a list linked through the calls: ending one in
// the middle, at either end, and then finding an owner gone must cancel
// exactly the calls still pending to that incarnation, oldest first, and
// leave the others (another server, another incarnation of it) running.
func TestOwnerWatchCancelsOnlyTheGoneOwnersPendingCalls(t *testing.T) {
	w := &ownerWatch{c: &Client{rt: rt.NewReal()}, interval: time.Hour}
	w.running = true // no monitor task: the test finds the owner gone itself

	a, b := target{"a", 1}, target{"b", 1}
	aNext := target{"a", 2} // a later incarnation of a: not gone
	var cancelled []string
	call := func(name string, owner target) *pendingCall {
		return w.begin(owner, func() { cancelled = append(cancelled, name) })
	}
	first := call("first", a)
	onB := call("onB", b)
	mid := call("mid", a)
	onANext := call("onANext", aNext)
	last := call("last", a)
	late := call("late", a)

	if w.end(mid) {
		t.Fatal("a call that ended before its owner was found gone reports it gone")
	}
	if w.end(late) {
		t.Fatal("the newest call reports its owner gone")
	}
	w.markGone([]target{a})

	if want := []string{"first", "last"}; !slices.Equal(cancelled, want) {
		t.Fatalf("cancelled %v, want %v (the calls still pending to the gone incarnation, oldest first)", cancelled, want)
	}
	if !w.isDead(a) || w.isDead(aNext) || w.isDead(b) {
		t.Fatalf("dead: a %v, a's next incarnation %v, b %v; want only a", w.isDead(a), w.isDead(aNext), w.isDead(b))
	}
	for _, c := range []struct {
		name string
		p    *pendingCall
		gone bool
	}{{"first", first, true}, {"onB", onB, false}, {"onANext", onANext, false}, {"last", last, true}} {
		if got := w.end(c.p); got != c.gone {
			t.Fatalf("end(%s) = %v, want %v", c.name, got, c.gone)
		}
	}
	if w.head != nil || w.tail != nil {
		t.Fatal("calls remain pending after every call ended")
	}
	// Found gone again: nothing is pending, nothing is cancelled twice.
	w.markGone([]target{a})
	if len(cancelled) != 2 {
		t.Fatalf("cancelled %v after nothing was pending", cancelled)
	}
}
