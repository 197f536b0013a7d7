package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/internal/nodehook"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/storeless"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
)

// Node is one running nola server: its HTTP API, its engine, its store
// connection and, if asked for, its WASM host. Start returns one; Shutdown
// or Close stop it. Its methods are safe for concurrent use.
type Node struct {
	log       *slog.Logger
	rt        *rt.Real
	ln        *limitListener
	addr, url string
	srv       *nola.Server
	router    *storeless.Router // store-less mode only
	storeless bool              // Options.Hash: the store is private
	hs        *http.Server
	storeDesc string
	// etcdEndpoints are the embedded etcd's, if it runs one.
	etcdEndpoints []string

	// closers release what Start opened, in reverse order.
	closers []func() error

	stopOnce sync.Once
	stopErr  error
	doneOnce sync.Once
	done     chan struct{}
	mu       sync.Mutex
	serveErr error
}

// Start validates o, then binds the listener, opens the store, starts the
// server and serves the HTTP API; it returns once the server is registered
// and serving. ctx bounds start-up only (the embedded etcd's start and the
// first registration); the node runs until Shutdown or Close.
//
// Options that cannot work are reported as *Error before anything is
// bound or opened. If a later step fails, Start releases what it opened
// and returns the error.
func Start(ctx context.Context, o Options) (*Node, error) {
	p, err := prepare(o)
	if err != nil {
		return nil, err
	}
	n := &Node{log: p.Logger, rt: rt.NewReal(), done: make(chan struct{})}
	if err := n.start(ctx, p); err != nil {
		n.release()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context, p *prepared) error {
	maxConns := n.connLimit(p.MaxConns)
	ln, err := net.Listen("tcp", p.Listen)
	if err != nil {
		return fmt.Errorf("node: listen on %s: %w", p.Listen, err)
	}
	n.ln = newLimitListener(ln, maxConns)
	n.closers = append(n.closers, n.ln.Close)
	n.addr = ln.Addr().String()
	n.url = p.Advertise
	if !p.advertiseSet {
		n.url = "http://" + n.addr
	}
	id := p.ID
	if id == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(n.addr)
		id = host + "-" + port
	}

	metrics := p.Metrics
	if metrics == nil {
		metrics = prometheus.NewRegistry()
	}
	if err := registerMetrics(metrics, n.ln); err != nil {
		return err
	}
	n.storeless = p.Hash != nil
	store, err := n.openStore(ctx, &p.Store)
	if err != nil {
		return err
	}
	store = httpapi.InstrumentStore(store, metrics)

	maxResult := p.Limits.MaxResultBytes
	transport := httpapi.NewTransport(httpapi.TransportOptions{Token: p.AdminToken, MaxResultBytes: maxResult})
	n.closers = append(n.closers, func() error { transport.Close(); return nil })

	var host *wasm.Host
	var mods *modules.Store
	if w := p.WASM; w != nil {
		mods = modules.New(store, modules.Config{Quota: modules.Quota{MaxBytes: w.ModuleBytes, MaxModules: w.Modules}})
		host, err = wasm.New(ctx, wasm.Config{
			Runtime: n.rt, Modules: mods, Logger: n.log, MaxResultBytes: maxResult,
			MemoryLimit: w.MemoryLimit, GuestSlots: w.GuestSlots,
			HostFunctions: w.HostFunctions, MaxHostCallBytes: w.MaxHostCallBytes,
			EngineIdle: w.EngineIdle,
		})
		if err != nil {
			return fmt.Errorf("node: WASM host: %w", err)
		}
		n.closers = append(n.closers, func() error {
			hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return host.Close(hctx)
		})
	}

	var srvTransport nola.Transport = transport
	if p.Hash != nil {
		if n.router, err = n.newRouter(p, transport, mods); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		srvTransport = n.router
		// Runs after the membership rounds stop (closers run in reverse):
		// background module pushes and idle connections to peers would hold
		// goroutines past Close.
		n.closers = append(n.closers, func() error { n.router.Close(); return nil })
		if err := registerHashMetrics(metrics, n.router); err != nil {
			return err
		}
		n.storeDesc = "none (store-less, hash placement: NOT linearizable, no KV)"
	}
	cfg := nola.ServerConfig{
		ID:                id,
		Addr:              n.url,
		Runtime:           n.rt,
		Store:             store,
		Transport:         srvTransport,
		Types:             p.Types,
		Workers:           p.Workers,
		MaxWorkerInFlight: p.MaxWorkerInFlight,
		LeaseTTL:          p.LeaseTTL,
		IdleTimeout:       p.IdleTimeout,
		MaxActivations:    p.MaxActivations,
		MemoryBudget:      p.MemoryBudget,
		Shed:              p.Shed,
		Locality:          p.Locality,
		Placement:         p.Placement,
		Limits:            p.Limits,
		MinTimerPeriod:    p.MinTimerPeriod,
		MaxTimersPerActor: p.MaxTimersPerActor,
		KeepAliveWarn:     p.KeepAliveWarn,
		Logger:            n.log,
	}
	if host != nil {
		cfg.Resolver = host
		cfg.WorkerResolver = host // a namespace's modules are its worker types too
	}
	if n.router != nil {
		cfg.NoKV = storeless.NoKVMessage
	}
	if f := nodehook.From(ctx); f != nil {
		f(&cfg)
	}
	srv, err := nola.NewServer(cfg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.srv = srv
	transport.SetLocal(n.url, srv)
	if host != nil {
		host.Attach(srv)
	}
	if n.router != nil {
		n.router.Attach(srv)
	}

	hopts := httpapi.Options{
		AdminToken: p.AdminToken, NamespaceTokens: p.NamespaceTokens,
		Metrics: metrics, Pprof: p.Pprof, Logger: n.log,
	}
	if mods != nil {
		hopts.Modules = httpapi.Modules(mods)
		hopts.MaxModuleBytes = mods.Limits().MaxModuleBytes
	}
	var api http.Handler
	if n.router != nil {
		hopts.Internal = n.router
		api = n.router.Wrap(httpapi.NewHandler(srv, hopts))
	} else {
		api = httpapi.NewHandler(srv, hopts)
	}
	n.hs = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	go n.serve()

	sctx, cancel := context.WithTimeout(ctx, 2*p.LeaseTTL+10*time.Second)
	err = srv.Start(sctx)
	cancel()
	if err != nil {
		srv.Halt()
		_ = n.hs.Close()
		n.rt.Wait()
		return fmt.Errorf("node: start: %w", err)
	}
	if n.router != nil {
		n.startRouter(ctx, p.Hash.Interval)
	}
	n.log.Info("serving", "id", id, "listen", n.addr, "advertise", n.url, "store", n.storeDesc,
		"lease_ttl", p.LeaseTTL, "max_conns", maxConns)
	if p.AdminToken == "" && len(p.NamespaceTokens) == 0 && !isLoopback(ln.Addr()) {
		n.log.Warn("THIS SERVER IS OPEN: it listens beyond loopback without an API token, so anyone who can reach " + n.addr +
			" can call every actor, read every actor's KV and upload modules; set an API token")
	}
	return nil
}

// connLimit is the connection bound for the MaxConns option: raising the
// soft descriptor limit first, and logging both limits, so that an
// operator can see the bound and why.
func (n *Node) connLimit(opt int) int {
	soft, hard, err := raiseFDLimit()
	switch {
	case err != nil && opt == 0:
		n.log.Warn("cannot read the file-descriptor limit; connections bounded at 1024", "err", err)
		return 1024
	case err == nil:
		n.log.Info("file descriptors", "soft_limit", soft, "hard_limit", hard)
	}
	switch {
	case opt > 0:
		return opt
	case opt < 0:
		return int(^uint(0) >> 1)
	}
	return connBound(soft)
}

// registerMetrics adds the Go, process and connection collectors to m; a
// collector m already has is kept.
func registerMetrics(m *prometheus.Registry, ln *limitListener) error {
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nola_http_connections", Help: "HTTP connections being served.",
		}, func() float64 { return float64(ln.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nola_http_connections_max", Help: "Bound on the HTTP connections served at once (MaxConns).",
		}, func() float64 { return float64(cap(ln.slots)) }),
	}
	for _, c := range cs {
		if err := m.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return fmt.Errorf("node: metrics: %w", err)
			}
		}
	}
	return nil
}

// serve runs the HTTP server until it is shut down or its listener fails;
// a failure halts the engine (it can no longer be reached, and its actors
// must be able to move) and closes Done.
func (n *Node) serve() {
	err := n.hs.Serve(n.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return
	}
	n.log.Error("HTTP server stopped", "err", err)
	n.mu.Lock()
	n.serveErr = fmt.Errorf("node: HTTP server stopped: %w", err)
	n.mu.Unlock()
	n.srv.Halt()
	n.doneOnce.Do(func() { close(n.done) })
}

// Addr is the listener's address, host:port (the port chosen when Listen
// asked for port 0).
func (n *Node) Addr() string { return n.addr }

// URL is the address the node advertises to other servers and clients,
// like "http://127.0.0.1:9090": give it to httpapi.NewClient.
func (n *Node) URL() string { return n.url }

// EtcdEndpoints are the client endpoints of the node's embedded etcd (nil
// if it runs none): other nodes join the cluster with them as
// Store.Endpoints.
func (n *Node) EtcdEndpoints() []string { return append([]string(nil), n.etcdEndpoints...) }

// Server is the node's engine: its ID, lease, statistics.
func (n *Node) Server() *nola.Server { return n.srv }

// Client calls actors from inside this process, through this node's
// registry and transport (no HTTP hop for actors it hosts).
func (n *Node) Client() *nola.Client { return n.srv.Client() }

// Done is closed when the node has stopped: once Shutdown or Close has
// finished, or when its listener failed (Err says why; call Close to
// release the rest).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is why the node stopped serving on its own, or nil.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.serveErr
}

// Shutdown stops the node gracefully: it releases every activation, so
// that the actors move to other servers at once (in-flight invocations
// finish first), ends its lease, stops accepting connections and drains
// those open, then closes the WASM host and the store. ctx bounds it; past
// ctx, what is left is closed abruptly and ctx's error is returned. Only
// the first call of Shutdown or Close acts; later ones return its result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		var errs []error
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: releasing activations: %w", err))
		}
		if err := n.hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("node: HTTP shutdown: %w", err))
			_ = n.hs.Close()
		}
		n.rt.Wait()
		errs = append(errs, n.release())
		n.stopErr = errors.Join(errs...)
		n.doneOnce.Do(func() { close(n.done) })
	})
	return n.stopErr
}

// Close stops the node at once, as a crash would for its actors: nothing
// is released, so they move only when its lease expires (use Shutdown to
// hand them over). It then closes connections, the WASM host and the
// store.
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.srv.Halt()
		_ = n.hs.Close()
		// The store first: an in-memory store's lease timers run on the
		// node's runtime until it closes.
		n.stopErr = n.release()
		n.rt.Wait()
		n.doneOnce.Do(func() { close(n.done) })
	})
	return n.stopErr
}

// release runs the closers in reverse order, once.
func (n *Node) release() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	return errors.Join(errs...)
}

// isLoopback reports whether a listener's address accepts loopback
// connections only (an unspecified address such as 0.0.0.0 or [::] accepts
// every interface's).
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
