// Package node runs a networked nola server in one call, for apps that
// embed nola with actor types of their own.
//
// A node is what `nola serve` runs: a TCP listener serving nola's HTTP API
// (package httpapi), the engine (package nola) with the app's Go actor
// types, the server-to-server transport that forwards a call to the server
// hosting its actor, a registry store (an embedded etcd by default, an
// external etcd cluster, or memory), optionally a WASM host for uploaded
// modules, Prometheus metrics, bearer tokens and a graceful shutdown.
//
// # Starting a node
//
//	n, err := node.Start(ctx, node.Options{
//		Listen: "127.0.0.1:9090",
//		Types: map[string]nola.Factory{
//			"account": func(nola.Ref) (nola.Actor, error) { return &Account{}, nil },
//		},
//	})
//	if err != nil { … }
//	defer n.Shutdown(context.Background())
//
// Start checks every option before it binds or opens anything: an option
// that cannot work is an *Error naming the field, and a failed start
// releases what it had opened. It returns once the server has registered
// in the store and serves; ctx bounds only that start-up.
//
// # A cluster
//
// Nodes that share a store form a cluster: each registers itself, an actor
// is placed on one live node when first called, and a call that enters
// through any node is forwarded to that one activation (guarantee G1: at
// most one activation of an actor runs at any instant; G2: an actor's KV
// commits are fenced, so an acknowledged write is never lost; G3: when a
// node dies, its actors answer again from the others within its lease TTL
// plus a placement round trip — see docs/proofs/ in the repository). To
// run three processes on one etcd, embed it in the first and point the
// others at it:
//
//	first:  node.Options{Store: node.Store{DataDir: "data", EtcdListen: "127.0.0.1:2379"}}
//	others: node.Options{Store: node.Store{Endpoints: []string{"127.0.0.1:2379"}}}
//
// (Node.EtcdEndpoints says where an embedded etcd listens.) An embedded
// etcd is a single member: for a cluster that survives losing any one
// machine, run an external etcd cluster and give every node its
// endpoints. Store{Kind: "memory"} keeps everything in the process: one
// node only, state lost at exit, for development and tests; several nodes
// in one process can share one registry/memkv store through Store.KV.
//
// Options.Hash runs a node with no store at all (store-less mode, package
// storeless, docs/storeless.md): NOT linearizable and no durable KV; nodes
// find each other from Hash.Peers or DNS and place actors by consistent
// hashing over the live ones. Node.Router drives its membership rounds.
//
// Every node of a cluster must give the same Types (a call may be placed
// on any of them), the same AdminToken (nodes forward calls to each other
// with it) and an ID that stays the same across restarts.
//
// # Calling actors
//
// In the process, Node.Client calls actors through the registry and the
// transport, with no HTTP hop for the actors the node hosts. From another
// process, httpapi.NewClient(url, token) calls a node's HTTP API; errors
// are *nola.Error with the same codes in both cases (nola.CodeOf,
// nola.IsRetryable). docs/embedding.md walks through both.
//
// # Stopping
//
// Shutdown releases every activation so that its actors move to the other
// nodes at once (in-flight calls finish first), ends the node's lease,
// drains the HTTP connections and closes the store. Close stops at once,
// as a crash would: the node's actors move when its lease expires. Done
// is closed when the node has stopped, including when its listener fails
// on its own (Err says why).
//
// # Limits and file descriptors
//
// Start raises the process's soft RLIMIT_NOFILE to the hard limit where
// it may, logs both, and bounds the HTTP connections it serves at once
// below the limit (MaxConns): every connection takes a descriptor, and an
// embedded etcd that cannot open a file stops the process. Connections
// past the bound wait in the kernel's accept queue. The embedded etcd's
// warnings and errors go to Options.Logger, so a fatal one is logged
// before the process exits.
package node
