package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
)

// Options configure a node. The zero value is a usable development node:
// an embedded etcd in ./nola-data, listening on a free loopback port, with
// no actor types, no WASM and no authentication. Every field is checked by
// Start before anything is bound or opened.
type Options struct {
	// ID names the server in the registry and must stay the same across
	// restarts (default: the host name and the listen port).
	ID string
	// Listen is the TCP address of the HTTP API (default "127.0.0.1:0":
	// a free loopback port; Node.Addr says which).
	Listen string
	// Advertise is the URL other servers and clients use to reach this
	// one, like "http://10.0.0.5:9090" (default: "http://" + the
	// listener's address). Set it when Listen is 0.0.0.0 or behind NAT.
	Advertise string
	// Store is where the registry, actor KV and modules live.
	Store Store
	// Hash, if set, makes the node store-less (see Hash): NOT
	// linearizable, no durable KV, no store; Store must be left empty.
	Hash *Hash

	// Types maps actor type names to Go factories: the app's actors.
	// Each namespace may call every type listed here.
	Types map[string]nola.Factory
	// Workers maps stateless worker type names to Go functions (see
	// nola.WorkerFunc): callable from HTTP (POST
	// /v1/ns/{ns}/workers/{type}/{op}), clients and actors of every
	// namespace, run by whichever server receives the call.
	Workers map[string]nola.WorkerFunc
	// MaxWorkerInFlight bounds the invocations of one worker type this
	// server runs at once (default nola.DefaultMaxWorkerInFlight); more
	// are refused as overloaded (HTTP 429, retryable).
	MaxWorkerInFlight int
	// WASM, if set, runs a WASM host: modules uploaded through the API
	// become actor types of their namespace. Nil: no WASM and no
	// /modules endpoints.
	WASM *WASMOptions

	// AdminToken, if set, is required as "Authorization: Bearer …" on
	// every call; it grants every namespace and the cluster view, and the
	// servers of a cluster send it to each other, so they must share it.
	AdminToken string
	// NamespaceTokens maps a token to the one namespace it grants. It
	// needs AdminToken: servers forward calls to each other with it.
	NamespaceTokens map[string]string

	// LeaseTTL is the server's lease in the store (default 6s, at least
	// 1s): a crashed server's actors move after at most this long.
	LeaseTTL time.Duration
	// IdleTimeout evicts activations unused this long (default 5m).
	IdleTimeout time.Duration
	// MaxActivations caps this server's activations (default 1e6).
	MaxActivations int
	// MemoryBudget, Shed and Placement are nola.ServerConfig's: the
	// memory this server sheds activations above (0: none), how shedding
	// is paced and whether it also sheds relative to the cluster mean,
	// and the weights of placement's score (docs/placement.md).
	MemoryBudget int64
	Shed         nola.ShedConfig
	// Locality is nola.ServerConfig's: communication-locality moves.
	Locality  nola.LocalityConfig
	Placement registry.PlacementPolicy
	// Limits bound names, payloads, results and KV entries (zero fields
	// take nola's defaults).
	Limits nola.Limits
	// MinTimerPeriod and MaxTimersPerActor bound actor timers (defaults
	// 50ms and 64).
	MinTimerPeriod    time.Duration
	MaxTimersPerActor int
	// KeepAliveWarn logs a warning when a lease keep-alive takes longer
	// (default LeaseTTL/4; negative: never).
	KeepAliveWarn time.Duration

	// MaxConns bounds the HTTP connections served at once; more wait in
	// the kernel's accept queue. Default: derived from the process's
	// file-descriptor limit, leaving room for etcd, the store client and
	// calls to other servers, so that a flood of connections cannot make
	// the process run out of descriptors. Negative: no bound.
	MaxConns int
	// Metrics is the registry served at /metrics (admin token); nola's
	// and the Go runtime's collectors are added to it, so two nodes in one
	// process cannot share one. Nil: a new registry.
	Metrics *prometheus.Registry
	// Pprof serves /debug/pprof/.
	Pprof bool
	// Logger receives the node's logs, etcd's warnings and errors among
	// them (default: discard).
	Logger *slog.Logger
}

// Store says which registry store a node uses. The zero value is an
// embedded single-member etcd in ./nola-data/etcd.
type Store struct {
	// Kind is "etcd" (the default: embedded, or external when Endpoints
	// is set) or "memory" (in this process only, lost at exit; no other
	// process can join — for development and tests).
	Kind string
	// DataDir holds the embedded etcd's data, in DataDir/etcd (default
	// "./nola-data"). A directory that exists is reused: the node
	// restarts with its actors' KV.
	DataDir string
	// EtcdListen is the embedded etcd's client address (default: a free
	// loopback port). Other nodes can use it as their Endpoints.
	EtcdListen string
	// Endpoints of an external etcd cluster; set, the embedded etcd is
	// not started.
	Endpoints []string
	// CAFile, CertFile and KeyFile configure TLS to the external etcd.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to the external etcd.
	Username, Password string
	// QuotaBytes is etcd's backend quota: the embedded member's, or the
	// external cluster's own for Maintain (default 2 GiB).
	QuotaBytes int64
	// Maintain makes the node compact and defragment an external etcd
	// and recover it from the NOSPACE alarm at start-up (always on for
	// the embedded etcd).
	Maintain bool
	// KV, if set, is an open store the app owns (for example one
	// registry/memkv store shared by several nodes in one process); the
	// node uses it as is and does not close it. Kind must then be empty.
	KV kv.Store
}

// WASMOptions configure a node's WASM host.
type WASMOptions struct {
	// MemoryLimit bounds the memory all WASM actors of the node hold
	// together, in bytes (default 4 GiB; at least one instance's
	// overhead).
	MemoryLimit int64
	// GuestSlots bounds the guests computing at once (0: GOMAXPROCS-1,
	// at least 1; negative: no bound).
	GuestSlots int
	// ModuleBytes and Modules are each namespace's module quota (zero:
	// the defaults of wasm/modules; negative: no limit).
	ModuleBytes, Modules int64
	// HostFunctions are the app's own host functions for its WASM
	// guests (see wasm.HostFunction): every guest of the node may call
	// them with waPC's __host_call by namespace and operation. Start
	// refuses entries in nola's own namespaces, duplicates and empty
	// names.
	HostFunctions []wasm.HostFunction
	// MaxHostCallBytes bounds the payload and the result of one call of
	// a host function (0: wasm.DefaultMaxHostCallBytes, 1 MiB).
	MaxHostCallBytes int
	// EngineIdle is how long a WASM instance stays idle before the host
	// drops its call engine, ~10 KiB of Go heap per idle C actor that
	// its next call fetches again for some 20-30 µs (0: the default of
	// wasm.Config.EngineIdle, 10s).
	EngineIdle time.Duration
}

// Error is the error Start returns for options that cannot work. Start
// returns it before binding the listener or opening the store.
type Error struct {
	// Field is the offending Options field, like "Store.Kind".
	Field string
	// Problem says what is wrong with it.
	Problem string
}

func (e *Error) Error() string { return "node: " + e.Field + ": " + e.Problem }

func badOption(field, format string, args ...any) error {
	return &Error{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// prepared is Options checked and with defaults filled in.
type prepared struct {
	Options
	advertiseSet bool
}

// prepare checks o and fills its defaults; it touches nothing outside.
func prepare(o Options) (*prepared, error) {
	p := &prepared{Options: o}
	if err := p.checkHash(); err != nil {
		return nil, err
	}
	if err := p.checkStore(); err != nil {
		return nil, err
	}
	if err := p.checkServer(); err != nil {
		return nil, err
	}
	if err := p.checkHTTP(); err != nil {
		return nil, err
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

func (p *prepared) checkStore() error {
	s := &p.Store
	switch {
	case s.KV != nil && s.Kind != "":
		return badOption("Store.Kind", "must be empty when Store.KV is set, not %q", s.Kind)
	case s.KV != nil:
		return nil
	case s.Kind == "":
		s.Kind = "etcd"
	case s.Kind != "etcd" && s.Kind != "memory":
		return badOption("Store.Kind", `must be "etcd" or "memory", not %q`, s.Kind)
	}
	if s.QuotaBytes < 0 {
		return badOption("Store.QuotaBytes", "must not be negative, got %d", s.QuotaBytes)
	}
	if s.QuotaBytes == 0 {
		s.QuotaBytes = 2 << 30
	}
	if s.Kind == "memory" {
		if len(s.Endpoints) > 0 {
			return badOption("Store.Endpoints", `an external etcd needs Kind "etcd", not "memory"`)
		}
		return nil
	}
	var eps []string
	for _, e := range s.Endpoints {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	s.Endpoints = eps
	if len(eps) == 0 && (s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.Username != "") {
		return badOption("Store.Endpoints", "TLS files and a user are for an external etcd: give its endpoints")
	}
	if len(eps) > 0 && s.EtcdListen != "" {
		return badOption("Store.EtcdListen", "is the embedded etcd's address; an external etcd (Endpoints) has none")
	}
	if s.DataDir == "" {
		s.DataDir = "./nola-data"
	}
	return nil
}

func (p *prepared) checkServer() error {
	switch {
	case p.LeaseTTL == 0:
		p.LeaseTTL = 6 * time.Second
	case p.LeaseTTL < time.Second:
		return badOption("LeaseTTL", "must be at least 1s, got %v", p.LeaseTTL)
	}
	if p.IdleTimeout < 0 || p.MaxActivations < 0 || p.MinTimerPeriod < 0 || p.MaxTimersPerActor < 0 || p.MaxWorkerInFlight < 0 || p.MemoryBudget < 0 {
		return badOption("IdleTimeout, MaxActivations, MinTimerPeriod, MaxTimersPerActor, MaxWorkerInFlight, MemoryBudget", "must not be negative")
	}
	if err := p.Placement.Validate(); err != nil {
		return badOption("Placement", "%v", err)
	}
	l := p.Limits
	if l.MaxNameBytes < 0 || l.MaxPayloadBytes < 0 || l.MaxResultBytes < 0 || l.MaxKVKeyBytes < 0 ||
		l.MaxKVValueBytes < 0 || l.MaxActorKVBytes < 0 || l.MaxNamespaceKVBytes < 0 {
		return badOption("Limits", "must not be negative")
	}
	for name, f := range p.Types {
		if name == "" || f == nil {
			return badOption("Types", "an entry has an empty name or a nil factory")
		}
	}
	for name, f := range p.Workers {
		if name == "" || f == nil {
			return badOption("Workers", "an entry has an empty name or a nil function")
		}
	}
	if w := p.WASM; w != nil {
		c := *w
		if c.MemoryLimit == 0 {
			c.MemoryLimit = wasm.DefaultMemoryLimit
		}
		if c.MemoryLimit < wasm.InstanceOverhead {
			return badOption("WASM.MemoryLimit", "must be at least %d bytes (one WASM instance), got %d", wasm.InstanceOverhead, c.MemoryLimit)
		}
		if c.EngineIdle < 0 {
			return badOption("WASM.EngineIdle", "must not be negative, got %v", c.EngineIdle)
		}
		if c.MaxHostCallBytes < 0 {
			return badOption("WASM.MaxHostCallBytes", "must not be negative, got %d", c.MaxHostCallBytes)
		}
		if err := wasm.CheckHostFunctions(c.HostFunctions); err != nil {
			var he *wasm.HostFunctionError
			if errors.As(err, &he) {
				return badOption("WASM.HostFunctions", "host function %q/%q: %s", he.Namespace, he.Operation, he.Problem)
			}
			return badOption("WASM.HostFunctions", "%v", err)
		}
		if c.ModuleBytes == 0 {
			c.ModuleBytes = modules.DefaultQuotaBytes
		}
		if c.Modules == 0 {
			c.Modules = modules.DefaultQuotaModules
		}
		p.WASM = &c
	}
	return nil
}

func (p *prepared) checkHTTP() error {
	if p.Listen == "" {
		p.Listen = "127.0.0.1:0"
	}
	if _, _, err := net.SplitHostPort(p.Listen); err != nil {
		return badOption("Listen", "wants host:port, got %q", p.Listen)
	}
	if p.Advertise != "" {
		u, err := url.Parse(p.Advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return badOption("Advertise", "wants a URL like http://host:port, got %q", p.Advertise)
		}
		p.Advertise = strings.TrimSuffix(p.Advertise, "/")
		p.advertiseSet = true
	}
	for tok, ns := range p.NamespaceTokens {
		if tok == "" || ns == "" {
			return badOption("NamespaceTokens", "an entry has an empty token or namespace")
		}
		if tok == p.AdminToken {
			return badOption("NamespaceTokens", "a namespace token equals AdminToken")
		}
	}
	if len(p.NamespaceTokens) > 0 && p.AdminToken == "" {
		return badOption("NamespaceTokens", "need AdminToken: servers forward calls to each other with it")
	}
	return nil
}
