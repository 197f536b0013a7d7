package nola

import (
	"context"
	"strings"
	"testing"

	"github.com/nolaproject/nola/internal/mutation"
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

// A registry-only mutation is refused by servers: it would act in every
// placement of a running one.
func TestServerRefusesRegistryOnlyMutations(t *testing.T) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	_, err := NewServer(ServerConfig{ID: "s1", Addr: "local://s1", Store: store, Transport: NewLocalNetwork(false).Transport(rt.NewReal()),
		Mutations: mutation.Of(mutation.ResetEpochs)})
	if err == nil || !strings.Contains(err.Error(), "ResetEpochs") {
		t.Fatalf("NewServer with ResetEpochs: %v", err)
	}
}

// A cluster with one runtime set and the other not is refused: a simulated
// world must not get a real client, nor the reverse.
func TestClusterRefusesHalfSetRuntimes(t *testing.T) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	_, err := NewCluster(context.Background(), ClusterConfig{Servers: 1, Store: store, ClientRuntime: rt.NewReal()})
	if err == nil || !strings.Contains(err.Error(), "both Runtime and ClientRuntime") {
		t.Fatalf("half-set runtimes: %v", err)
	}
}

// Names are bounded: a server refuses a MaxNameBytes above 1 MiB (an
// activation keeps its key's lengths in 32 bits, and names are not data).
func TestServerRefusesHugeNameLimit(t *testing.T) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	cfg := ServerConfig{ID: "s1", Addr: "local://s1", Store: store, Transport: NewLocalNetwork(false).Transport(rt.NewReal())}
	cfg.Limits.MaxNameBytes = maxNameBytesLimit + 1
	if _, err := NewServer(cfg); err == nil || !strings.Contains(err.Error(), "MaxNameBytes") {
		t.Fatalf("NewServer with MaxNameBytes %d: %v", cfg.Limits.MaxNameBytes, err)
	}
	cfg.Limits.MaxNameBytes = maxNameBytesLimit
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer with MaxNameBytes %d: %v", cfg.Limits.MaxNameBytes, err)
	}
	_ = s.Shutdown(context.Background())
}
