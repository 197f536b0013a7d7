package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/faultinject/exectrace"
	"github.com/nolaproject/nola/internal/nodehook"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/wasm"
)

type serveConfig struct {
	id, listen, advertise string
	store, dataDir        string
	etcdEndpoints         string
	etcdCA, etcdCert      string
	etcdKey, etcdUser     string
	etcdPeerListen        string
	leaseTTL, idleTimeout time.Duration
	maxActivations        int
	maxWorkerInFlight     int
	maxPayload, maxResult int
	wasmMemoryLimit       int64
	logLevel, logFormat   string
	adminToken            string
	nsTokens              multiFlag
	pprof                 bool
	shutdownTimeout       time.Duration
	readyFile             string
	exampleActors         bool
	// etcd maintenance and namespace module quotas (store.go).
	etcdQuota             int64
	etcdMaintain          bool
	nsModuleBytes, nsMods int64
	traceExecutions       string
	mutation              string
	// CPU isolation, timer limits, KV limits, lease health.
	wasmSlots         int
	wasmEngineIdle    time.Duration
	minTimerPeriod    time.Duration
	maxTimersPerActor int
	actorKVBytes      int64
	nsKVBytes         int64
	kvValueBytes      int
	keepAliveWarn     time.Duration
	maxConns          int
	// Placement and shedding (docs/placement.md).
	memoryBudget int64
	shedMean     float64
	shedInterval time.Duration
	shedPerRound int
	placeWeights string
	// Store-less mode (docs/storeless.md).
	registry             string
	peers, peersDNS      string
	probeEvery, probeMax time.Duration
	// Communication locality (docs/placement.md).
	locality         bool
	localityInterval time.Duration
	localitySample   int
	localityPerRound int
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [flags]\n\n"+
		"Runs a server. With the default --registry store, placement goes through the store (etcd) and is\n"+
		"linearizable. --registry hash is STORE-LESS: NOT linearizable and NO durable KV (actor KV calls fail);\n"+
		"two servers that cannot see each other both run the same actor. See docs/storeless.md.", stderr)
	var c serveConfig
	fs.StringVar(&c.id, "id", "", "server ID, stable across restarts (default: host name and listen port)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9090", "address to listen on")
	fs.StringVar(&c.advertise, "advertise", "", "URL other servers use to reach this one (default: http://LISTEN)")
	fs.StringVar(&c.store, "store", "etcd", "registry store: etcd (embedded unless --etcd-endpoints) or memory (one process only, for development)")
	fs.StringVar(&c.dataDir, "data-dir", "./nola-data", "data directory of the embedded etcd")
	fs.StringVar(&c.etcdEndpoints, "etcd-endpoints", "", "comma-separated endpoints of an external etcd cluster (disables the embedded one)")
	fs.StringVar(&c.etcdCA, "etcd-ca", "", "CA file for TLS to etcd")
	fs.StringVar(&c.etcdCert, "etcd-cert", "", "client certificate file for TLS to etcd")
	fs.StringVar(&c.etcdKey, "etcd-key", "", "client key file for TLS to etcd")
	fs.StringVar(&c.etcdUser, "etcd-user", "", "etcd user (password from env NOLA_ETCD_PASSWORD)")
	fs.StringVar(&c.etcdPeerListen, "etcd-listen", "", "client listen address of the embedded etcd (default: a free loopback port)")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", 6*time.Second, "server lease TTL; a crashed server's actors move after at most this long")
	c.idleTimeout = 5 * time.Minute
	fs.Var((*positiveDuration)(&c.idleTimeout), "idle-timeout", "evict activations idle this `duration`")
	fs.IntVar(&c.maxActivations, "max-activations", 1_000_000, "activation limit of this server")
	fs.IntVar(&c.maxWorkerInFlight, "max-worker-in-flight", nola.DefaultMaxWorkerInFlight, "invocations of one worker type this server runs at once; more are refused as overloaded (429)")
	fs.Int64Var(&c.memoryBudget, "memory-budget", 0, "`bytes` of activation memory (engine share, Sizer figures, WASM memory) this server sheds activations above, largest first, and placement avoids it (0: no budget)")
	fs.Float64Var(&c.shedMean, "shed-mean-factor", 2, "also shed while holding more than this many times the cluster's mean activation memory, once above 16 MiB (0: off; otherwise at least 1)")
	fs.DurationVar(&c.shedInterval, "shed-interval", 0, "time between shedding rounds (0: lease TTL / 2)")
	fs.IntVar(&c.shedPerRound, "shed-per-round", 4, "most activations released per shedding round")
	fs.BoolVar(&c.locality, "locality", true, "move actors that call each other across servers to one server (sampled calls, release plus placement hint; a moved in-memory actor restarts fresh, as when shed; docs/placement.md)")
	fs.DurationVar(&c.localityInterval, "locality-interval", 0, "time between locality rounds (0: lease TTL / 2)")
	fs.IntVar(&c.localitySample, "locality-sample", 16, "sample one actor-to-actor call in this many for locality")
	fs.IntVar(&c.localityPerRound, "locality-per-round", 2, "most actors moved per locality round")
	fs.StringVar(&c.placeWeights, "placement-weights", "", "placement score weights `activations,memory,cpu[,epsilon]` (default 1,1,0.5,0.25)")
	fs.IntVar(&c.maxPayload, "max-payload-bytes", 4<<20, "largest invocation payload")
	fs.IntVar(&c.maxResult, "max-result-bytes", 4<<20, "largest invocation result")
	fs.Int64Var(&c.wasmMemoryLimit, "wasm-memory-limit", wasm.DefaultMemoryLimit,
		"`bytes` of memory all WASM actors of this server may hold together (linear memory plus 16 KiB each, and their modules' tables); past it their memory cannot grow and new WASM activations are refused")
	fs.IntVar(&c.wasmSlots, "wasm-slots", 0, "WASM guests computing at once on this server (0: GOMAXPROCS-1, at least 1; -1: no limit); the others wait in FIFO order")
	c.wasmEngineIdle = 10 * time.Second
	fs.Var((*positiveDuration)(&c.wasmEngineIdle), "wasm-engine-idle", "drop the call engine (~10 KiB of heap) of a WASM actor idle this `duration`; its next call fetches it again (~20-30 µs). Shorter: less memory per idle actor, more CPU for actors called now and then (docs/operations.md)")
	fs.DurationVar(&c.minTimerPeriod, "min-timer-period", 50*time.Millisecond, "shortest period of a periodic actor timer; shorter ones are refused")
	fs.IntVar(&c.maxTimersPerActor, "max-timers-per-actor", 64, "pending timers one activation may hold")
	fs.Int64Var(&c.actorKVBytes, "actor-kv-bytes", 0, "bound on one actor's KV (keys + values, bytes; 0: no bound); keep it on once enabled (see docs/operations.md)")
	fs.Int64Var(&c.nsKVBytes, "namespace-kv-bytes", 0, "bound on the KV of all actors of one namespace (keys + values, bytes; 0: no bound); keep it on once enabled (see docs/operations.md)")
	fs.IntVar(&c.kvValueBytes, "kv-value-bytes", 512<<10, "largest KV value")
	fs.DurationVar(&c.keepAliveWarn, "keepalive-warn", 0, "log a warning when a lease keep-alive takes longer (0: TTL/4; negative: never)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.adminToken, "api-token", "", "require this bearer token on every call (default: env NOLA_API_TOKEN); servers of a cluster must share it")
	fs.Var(&c.nsTokens, "ns-token", "NAMESPACE=TOKEN: a token that grants one namespace (repeatable)")
	fs.IntVar(&c.maxConns, "max-conns", 0, "HTTP connections served at once; more wait in the accept queue (0: from the file-descriptor limit, leaving room for etcd; -1: no bound)")
	fs.BoolVar(&c.pprof, "pprof", false, "serve /debug/pprof/")
	c.shutdownTimeout = 30 * time.Second
	fs.Var((*positiveDuration)(&c.shutdownTimeout), "shutdown-timeout", "bound on a graceful shutdown (a `duration`)")
	addStoreFlags(fs, &c)
	fs.StringVar(&c.registry, "registry", "store", "store: placement through the store, linearizable (the default); "+
		"hash: STORE-LESS, NOT LINEARIZABLE, NO KV — servers find each other by --peers or --peers-dns and place actors by consistent hashing over the live ones; "+
		"servers that cannot see each other both run the same actor, and actor KV calls fail (docs/storeless.md)")
	fs.StringVar(&c.peers, "peers", "", "--registry hash: comma-separated `URLs` of the cluster's servers (this one may be among them)")
	fs.StringVar(&c.peersDNS, "peers-dns", "", "--registry hash: `NAME:PORT` whose A/AAAA records are the servers, looked up every probe round")
	fs.DurationVar(&c.probeEvery, "probe-interval", time.Second, "--registry hash: time between health probes of the other servers")
	fs.DurationVar(&c.probeMax, "probe-timeout", time.Second, "--registry hash: bound on one health probe or DNS lookup")
	fs.StringVar(&c.readyFile, "ready-file", "", "write the listen address to this file once serving (for scripts)")
	fs.BoolVar(&c.exampleActors, "example-actors", false, "register the example Go actor types (counter, kvcounter, caller, echo, ticker, kvmap, greeter) and workers (echo, sha256, count) in every namespace; for demos and tests, not production")
	fs.StringVar(&c.traceExecutions, "trace-executions", "", "append every activation and execution, stamped with CLOCK_MONOTONIC, to this `file` as JSON lines (for cmd/jepsen-lite's activation oracle; costs one write per event)")
	addMutationFlag(fs, &c.mutation)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return usageErr("unexpected arguments %q", fs.Args())
	}
	if c.adminToken == "" {
		c.adminToken = os.Getenv("NOLA_API_TOKEN")
	}
	if err := c.validate(); err != nil {
		return err
	}
	log, err := newLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		return usageErr("%v", err)
	}
	return serve(ctx, c, log)
}

// validate rejects flag values the server would misread or that could
// not work, before anything starts.
func (c *serveConfig) validate() error {
	if err := c.validateHash(); err != nil {
		return err
	}
	switch {
	case c.store != "etcd" && c.store != "memory":
		return usageErr("--store must be etcd or memory, not %q", c.store)
	case c.leaseTTL < time.Second:
		return usageErr("--lease-ttl must be at least 1s, got %v", c.leaseTTL)
	case c.maxActivations <= 0 || c.maxPayload <= 0 || c.maxResult <= 0 || c.maxWorkerInFlight <= 0:
		return usageErr("--max-activations, --max-worker-in-flight, --max-payload-bytes and --max-result-bytes must be positive")
	case c.etcdQuota <= 0:
		return usageErr("--etcd-quota-bytes must be positive, got %d", c.etcdQuota)
	case c.memoryBudget < 0 || c.shedInterval < 0 || c.shedPerRound <= 0:
		return usageErr("--memory-budget and --shed-interval must not be negative, --shed-per-round must be positive")
	case c.localityInterval < 0 || c.localitySample <= 0 || c.localitySample > 1<<20 || c.localityPerRound <= 0:
		return usageErr("--locality-interval must not be negative, --locality-sample must be between 1 and %d, --locality-per-round positive", 1<<20)
	case c.shedMean != 0 && !(c.shedMean >= 1 && c.shedMean <= 1e6):
		return usageErr("--shed-mean-factor must be 0 (off) or between 1 and 1e6, got %v", c.shedMean)
	case c.wasmMemoryLimit < wasm.InstanceOverhead:
		return usageErr("--wasm-memory-limit must be at least %d bytes (one WASM instance), got %d", wasm.InstanceOverhead, c.wasmMemoryLimit)
	}
	if c.advertise != "" {
		u, err := url.Parse(c.advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return usageErr("--advertise wants a URL like http://host:port, got %q", c.advertise)
		}
		c.advertise = strings.TrimSuffix(c.advertise, "/")
	}
	return nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q (text or json)", format)
}

// serve runs a node with the flags' options until ctx ends, then shuts it
// down gracefully (a second signal exits at once).
func serve(ctx context.Context, c serveConfig, log *slog.Logger) error {
	opts, err := c.nodeOptions(log)
	if err != nil {
		return err
	}
	mutations, err := parseMutations(c.mutation)
	if err != nil {
		return err
	}
	var observer nola.Observer
	if c.traceExecutions != "" {
		tw, err := exectrace.Open(c.traceExecutions)
		if err != nil {
			return err
		}
		defer tw.Close()
		observer = tw
	}
	hctx := nodehook.Configure(ctx, func(cfg *nola.ServerConfig) {
		cfg.Mutations = mutations
		cfg.Observer = observer
	})
	n, err := node.Start(hctx, opts)
	if err != nil {
		if _, bad := errors.AsType[*node.Error](err); bad {
			return usageErr("%v", err)
		}
		return err
	}
	if c.exampleActors {
		log.Warn("--example-actors: the example Go actor types and workers are callable in every namespace")
	}
	if c.readyFile != "" {
		if err := os.WriteFile(c.readyFile, []byte(n.Addr()+"\n"), 0o644); err != nil {
			log.Warn("writing the ready file", "err", err)
		}
	}

	select {
	case <-n.Done():
		_ = n.Close()
		return n.Err()
	case <-ctx.Done():
	}
	// Graceful: a second signal exits at once.
	log.Info("shutting down: releasing every activation (send the signal again to exit now)")
	go func() {
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	sctx, scancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer scancel()
	if err := n.Shutdown(sctx); err != nil {
		log.Error("graceful shutdown incomplete", "err", err)
	}
	log.Info("stopped")
	return nil
}

// nodeOptions turns the flags into node options.
func (c *serveConfig) nodeOptions(log *slog.Logger) (node.Options, error) {
	placement, err := parsePlacementWeights(c.placeWeights)
	if err != nil {
		return node.Options{}, err
	}
	nsTokens := map[string]string{}
	for _, t := range c.nsTokens {
		ns, tok, ok := strings.Cut(t, "=")
		if !ok || ns == "" || tok == "" {
			return node.Options{}, usageErr("--ns-token wants NAMESPACE=TOKEN, got %q", t)
		}
		if prev, dup := nsTokens[tok]; dup {
			return node.Options{}, usageErr("--ns-token: one token given for namespaces %q and %q (a token grants one namespace)", prev, ns)
		}
		nsTokens[tok] = ns
	}
	if len(nsTokens) > 0 && c.adminToken == "" {
		return node.Options{}, usageErr("--ns-token needs --api-token: servers forward calls to each other with it")
	}
	var (
		types   map[string]nola.Factory
		workers map[string]nola.WorkerFunc
	)
	if c.exampleActors {
		types, workers = actors.Types(), actors.Workers()
	}
	store, hash, err := c.hashOptions()
	if err != nil {
		return node.Options{}, err
	}
	return node.Options{
		ID:        c.id,
		Listen:    c.listen,
		Advertise: c.advertise,
		Store:     store,
		Hash:      hash,
		Types:     types,
		Workers:   workers,
		WASM: &node.WASMOptions{
			MemoryLimit: c.wasmMemoryLimit, GuestSlots: c.wasmSlots, EngineIdle: c.wasmEngineIdle,
			ModuleBytes: c.nsModuleBytes, Modules: c.nsMods,
		},
		AdminToken:        c.adminToken,
		NamespaceTokens:   nsTokens,
		LeaseTTL:          c.leaseTTL,
		IdleTimeout:       c.idleTimeout,
		MaxActivations:    c.maxActivations,
		MaxWorkerInFlight: c.maxWorkerInFlight,
		MemoryBudget:      c.memoryBudget,
		Shed:              nola.ShedConfig{MeanFactor: c.shedMean, Interval: c.shedInterval, MaxPerRound: c.shedPerRound},
		Locality: nola.LocalityConfig{Enabled: c.locality, Interval: c.localityInterval,
			SampleEvery: c.localitySample, MaxPerRound: c.localityPerRound},
		Placement: placement,
		Limits: nola.Limits{MaxPayloadBytes: c.maxPayload, MaxResultBytes: c.maxResult,
			MaxActorKVBytes: c.actorKVBytes, MaxNamespaceKVBytes: c.nsKVBytes, MaxKVValueBytes: c.kvValueBytes},
		MinTimerPeriod:    c.minTimerPeriod,
		MaxTimersPerActor: c.maxTimersPerActor,
		KeepAliveWarn:     c.keepAliveWarn,
		MaxConns:          c.maxConns,
		Pprof:             c.pprof,
		Logger:            log,
	}, nil
}

// parsePlacementWeights reads --placement-weights: "a,m,c" or "a,m,c,ε";
// empty means the defaults.
func parsePlacementWeights(v string) (registry.PlacementPolicy, error) {
	if v == "" {
		return registry.PlacementPolicy{}, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) < 3 || len(parts) > 4 {
		return registry.PlacementPolicy{}, usageErr("--placement-weights wants activations,memory,cpu[,epsilon], got %q", v)
	}
	vals := make([]float64, 4)
	vals[3] = registry.DefaultPlacement.Epsilon
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return registry.PlacementPolicy{}, usageErr("--placement-weights: %q is not a number", p)
		}
		vals[i] = f
	}
	pol := registry.PlacementPolicy{Activations: vals[0], Memory: vals[1], CPU: vals[2], Epsilon: vals[3]}
	if err := pol.Validate(); err != nil || pol.Activations+pol.Memory+pol.CPU == 0 {
		return registry.PlacementPolicy{}, usageErr("--placement-weights %q: weights and epsilon must be finite and non-negative, not all zero", v)
	}
	return pol, nil
}
