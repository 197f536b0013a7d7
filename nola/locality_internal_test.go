package nola

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// Locality settings are validated: negative values, a hysteresis below 1
// and unbounded tables are refused with an error naming the setting.
func TestLocalityConfigCheck(t *testing.T) {
	for _, c := range []struct {
		cfg  LocalityConfig
		want string
	}{
		{LocalityConfig{Interval: -time.Second}, "negative"},
		{LocalityConfig{MaxActors: -1}, "negative"},
		{LocalityConfig{Factor: 0.5}, "Factor"},
		{LocalityConfig{Factor: math.Inf(1)}, "Factor"},
		{LocalityConfig{Factor: math.NaN()}, "Factor"},
		{LocalityConfig{SampleEvery: 1 << 21}, "SampleEvery"},
	} {
		if err := c.cfg.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("check(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if err := (LocalityConfig{Enabled: true}).check(); err != nil {
		t.Fatalf("the zero config with Enabled: %v", err)
	}
}

// The edge table is bounded: beyond MaxActors actors (and maxPeers
// servers per actor) samples are dropped and counted; every round halves
// the weights, so an entry no call refreshes goes.
func TestEdgeTableIsBoundedAndDecays(t *testing.T) {
	l := locality{actors: map[actorKey]*callerEdges{}}
	for i := range 10 {
		a := testActivation(uint64(i+1), actorKey{"ns", string(rune('a' + i))})
		l.record(a, "s1", 0, 4)
	}
	if n, dropped := l.size(); n != 4 || dropped != 6 {
		t.Fatalf("table of 4: %d actors, %d dropped; want 4 and 6", n, dropped)
	}
	a := testActivation(1, actorKey{"ns", "a"})
	for i := range maxPeers + 3 {
		l.record(a, string(rune('A'+i)), 0, 4)
	}
	// "s1" was there already: maxPeers-1 more fit, 4 are dropped.
	if _, dropped := l.size(); dropped != 6+4 {
		t.Fatalf("%d dropped, want 10", dropped)
	}
	for range 3 {
		l.candidates("s0", 0, LocalityConfig{}.withDefaults(time.Second))
	}
	if n, _ := l.size(); n != 0 {
		t.Fatalf("after 3 rounds without calls %d actors remain, want 0", n)
	}
}

// BenchmarkSampleCall is the hot path's locality hook alone, after an
// actor's successful outgoing call: off (one load and a branch), and on
// with the default one call in 16 recorded (an atomic add per call; a
// route lookup, a clock reading and the table's lock per sample).
func BenchmarkSampleCall(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			store := memkv.New(rt.NewReal(), memkv.Options{})
			net := NewLocalNetwork(false)
			s, err := NewServer(ServerConfig{ID: "s1", Addr: "local://s1", Store: store, Transport: net.Transport(rt.NewReal()),
				Types: invariantTypes(), Locality: LocalityConfig{Enabled: on}})
			if err != nil {
				b.Fatal(err)
			}
			s.client.routes.put(actorKey{"ns", "callee"}, route{addr: "local://s2", typ: "t", owner: target{"s2", 1}})
			a := testActivation(1, actorKey{"ns", "caller"})
			b.ReportAllocs()
			for b.Loop() {
				s.sampleCall(a, "callee")
			}
		})
	}
}

// testActivation is a bare activation with its identity set (its fields
// are promoted from embedded parts, which composite literals cannot name).
func testActivation(id uint64, k actorKey) *activation {
	a := &activation{}
	a.id = id
	a.setKey(k)
	return a
}
