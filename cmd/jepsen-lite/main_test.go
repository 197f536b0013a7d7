package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseEmbedded(t *testing.T) {
	c, err := parse([]string{"--embedded"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.members != 0 || c.servers != 1 || c.nemeses != strings.Join(embeddedNemeses, ",") {
		t.Fatalf("embedded config: %+v", c)
	}
	// A fault with no target in the single-node scenario is refused, not
	// silently injected as a no-op.
	if _, err := parse([]string{"--embedded", "--nemeses", "kill,partition-etcd"}, io.Discard); err == nil {
		t.Fatal("--embedded accepted partition-etcd")
	}
	if _, err := parse([]string{"--servers", "1"}, io.Discard); err == nil {
		t.Fatal("one server accepted outside --embedded")
	}
}

func TestSelectNemeses(t *testing.T) {
	all, err := selectNemeses("all")
	if err != nil || len(all) != len(allNemeses) || !all["stall-etcd"] {
		t.Fatalf("all: %v %v", all, err)
	}
	if _, err := selectNemeses("kill,nope"); err == nil {
		t.Fatal("unknown nemesis accepted")
	}
}

func TestParseNet(t *testing.T) {
	for _, ok := range []string{"auto", "netns", "loopback"} {
		if c, err := parse([]string{"--net", ok}, io.Discard); err != nil || c.net != ok {
			t.Errorf("--net %s: %v %+v", ok, err, c)
		}
	}
	if _, err := parse([]string{"--net", "tc"}, io.Discard); err == nil {
		t.Error("--net tc accepted")
	}
	if _, err := parse([]string{"--embedded", "--net", "netns"}, io.Discard); err == nil {
		t.Error("--embedded --net netns accepted (the embedded scenario runs on loopback)")
	}
	if _, err := parse([]string{"--embedded", "--net", "loopback"}, io.Discard); err != nil {
		t.Error(err)
	}
}
