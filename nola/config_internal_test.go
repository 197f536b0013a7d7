package nola

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// A server, a client and a cluster configured without runtimes run on the
// real one, and serve.
func TestUnsetRuntimeIsTheRealOne(t *testing.T) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	net := NewLocalNetwork(false)
	s, err := NewServer(ServerConfig{ID: "s1", Addr: "local://s1", Store: store, Transport: net.Transport(rt.NewReal()), Types: invariantTypes()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.rt.(*rt.Real); !ok {
		t.Fatalf("server runtime %T, want *rt.Real", s.rt)
	}
	c, err := NewClient(ClientConfig{Store: store, Transport: net.Transport(rt.NewReal())})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.rt.(*rt.Real); !ok {
		t.Fatalf("client runtime %T, want *rt.Real", c.rt)
	}

	cl, err := NewCluster(context.Background(), ClusterConfig{Servers: 2, Store: store, Types: invariantTypes()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Halt()
	out, err := cl.Client().Invoke(context.Background(), "ns", "a", "echo", "op", []byte("hi"))
	if err != nil {
		t.Fatalf("invoke on a cluster with default runtimes: %v", err)
	}
	if string(out) != "hi" {
		t.Fatalf("echo answered %q", out)
	}
}
