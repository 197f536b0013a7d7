package nola

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/rt"
)

// ClusterConfig describes an in-process cluster: N servers sharing one store
// and a LocalNetwork.
type ClusterConfig struct {
	Servers int
	Store   kv.Store
	// Runtime returns the runtime of server i (under simulation each
	// server is its own node); ClientRuntime is the cluster client's.
	// Both left nil are the real runtime; setting only one is an error.
	Runtime       func(i int) rt.Runtime
	ClientRuntime rt.Runtime
	// Async runs each request as a task of the target server (see
	// LocalNetwork).
	Async bool
	Types map[string]Factory
	// Workers are the stateless worker types of every server.
	Workers map[string]WorkerFunc
	// Configure adjusts server i's config before it is created.
	Configure func(i int, cfg *ServerConfig)
	// Placement is the cluster client's placement policy (zero:
	// registry.DefaultPlacement).
	Placement registry.PlacementPolicy
}

// Cluster is a set of servers in one process, for tests, examples and
// benchmarks. Servers are named s0, s1, … and listen at local://s0, ….
type Cluster struct {
	cfg    ClusterConfig
	net    *LocalNetwork
	client *Client

	mu      sync.RWMutex // guards the slots, not the servers
	servers []*Server
}

// NewCluster creates and starts the servers.
func NewCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Servers <= 0 || cfg.Store == nil {
		return nil, errors.New("nola: cluster config: Servers > 0 and Store are required")
	}
	switch {
	case cfg.Runtime == nil && cfg.ClientRuntime == nil:
		// Unset runtimes are one real runtime shared by the servers and
		// the client (its clock is the same for all; its task count is
		// the whole cluster's).
		real := rt.NewReal()
		cfg.Runtime = func(int) rt.Runtime { return real }
		cfg.ClientRuntime = real
	case cfg.Runtime == nil || cfg.ClientRuntime == nil:
		// One of them set: a simulated world with a real client (or the
		// reverse) would run real time and goroutines inside it.
		return nil, errors.New("nola: cluster config: set both Runtime and ClientRuntime, or neither (the real runtime)")
	}
	c := &Cluster{cfg: cfg, net: NewLocalNetwork(cfg.Async), servers: make([]*Server, cfg.Servers)}
	for i := range cfg.Servers {
		if err := c.Restart(ctx, i); err != nil {
			c.Halt()
			return nil, err
		}
	}
	cl, err := NewClient(ClientConfig{
		Runtime: cfg.ClientRuntime, Store: cfg.Store, Transport: c.net.Transport(cfg.ClientRuntime),
		Placement: cfg.Placement,
		CheckType: func(ctx context.Context, ns, typ string) error {
			// Every server of the cluster has the same types.
			for i := range c.Size() {
				if s := c.Server(i); s != nil {
					_, err := s.factory(ctx, ns, typ)
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	c.client = cl
	return c, nil
}

// Network returns the cluster's network.
func (c *Cluster) Network() *LocalNetwork { return c.net }

// Client returns a client of the cluster (not tied to any server).
func (c *Cluster) Client() *Client { return c.client }

// Size returns the number of server slots.
func (c *Cluster) Size() int { return len(c.servers) }

// Server returns server i (nil while crashed).
func (c *Cluster) Server(i int) *Server {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.servers[i]
}

func (c *Cluster) setServer(i int, s *Server) {
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
}

// Crash stops server i as a crash would: it stops answering at once,
// releases nothing, and its lease is left to expire.
func (c *Cluster) Crash(i int) {
	s := c.Server(i)
	if s == nil {
		return
	}
	c.net.Unlisten(s.Addr())
	s.Halt()
	c.setServer(i, nil)
}

// Restart starts a fresh server in slot i (a new process with the same ID:
// it registers as a new incarnation).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.Server(i) != nil {
		return fmt.Errorf("nola: cluster: server %d is running", i)
	}
	r := c.cfg.Runtime(i)
	cfg := ServerConfig{
		ID:        fmt.Sprintf("s%d", i),
		Addr:      fmt.Sprintf("local://s%d", i),
		Runtime:   r,
		Store:     c.cfg.Store,
		Transport: c.net.Transport(r),
		Types:     c.cfg.Types,
		Workers:   c.cfg.Workers,
	}
	if c.cfg.Configure != nil {
		c.cfg.Configure(i, &cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		return err
	}
	c.net.Listen(s.Addr(), s, r)
	if err := s.Start(ctx); err != nil {
		c.net.Unlisten(s.Addr())
		return err
	}
	c.setServer(i, s)
	return nil
}

// Shutdown stops every server gracefully.
func (c *Cluster) Shutdown(ctx context.Context) error {
	var errs []error
	for i := range c.Size() {
		s := c.Server(i)
		if s == nil {
			continue
		}
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		c.net.Unlisten(s.Addr())
		c.setServer(i, nil)
	}
	return errors.Join(errs...)
}

// Halt crashes every server.
func (c *Cluster) Halt() {
	for i := range c.servers {
		c.Crash(i)
	}
}

// Host returns the index of the server holding a ready activation of
// (ns, id), or -1.
func (c *Cluster) Host(ns, id string) int {
	for i := range c.Size() {
		if s := c.Server(i); s != nil && s.Hosts(ns, id) {
			return i
		}
	}
	return -1
}

// Hosts reports whether the server holds a ready activation of (ns, id).
func (s *Server) Hosts(ns, id string) bool {
	k := actorKey{ns, id}
	a := s.table.Load().lookup(k)
	return a != nil && a.state.Load() == stateReady
}
