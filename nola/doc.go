// Package nola is a linearizable virtual-actor engine: the servers that
// host actors, the client that calls them by name, and the API a Go actor
// is written against.
//
// # Actors
//
// An actor is state plus behaviour, named by a Ref (namespace, ID, type). It
// exists once created, is activated on demand on some server, evicted when
// idle and reactivated on the next call; callers never choose the server. A
// Go actor implements Actor:
//
//	type Counter struct{ n int64 }
//
//	func (c *Counter) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
//		c.n++
//		return strconv.AppendInt(nil, c.n, 10), nil
//	}
//
// and is registered as a Factory under a type name in ServerConfig.Types (or
// resolved at run time by a TypeResolver, which is how WASM modules become
// types). nola calls Invoke one call at a time per activation, so an actor
// needs no locks for its own state. Optional interfaces add lifecycle hooks:
// Activator (run on activation, e.g. to load state), Creator (run once in
// the actor's life, at its first activation, with the creation arguments
// the creating call carried: Client.Create, Request.CreationArgs),
// Deactivator (run before a voluntary deactivation) and Sizer (the memory
// the actor holds, which placement and shedding count: docs/placement.md).
//
// # Typed actors
//
// The []byte interface is the wire format (and WASM's); a Go actor need not
// see it. Embed a Router in the actor struct, register typed handlers with
// Handle, and call them with Call, which encodes the request and decodes the
// result with a Codec (JSONCodec unless WithCodec says otherwise):
//
//	nola.Handle(&a.Router, "add", a.Add) // func(*nola.Context, Add) (Count, error)
//	got, err := nola.Call[Add, Count](ctx, client, ref, "add", Add{By: 2})
//
// An unknown operation or a payload that does not decode is a bad_request
// wrapping *UnknownOpError or *DecodeError; Key gives typed KV values.
// Client and an actor's *Context are both Callers, so the same Call works
// from outside and from actor to actor.
//
// # Stateless workers
//
// A worker type is a function without single activation, registered in
// ServerConfig.Workers as a WorkerFunc: any server runs any number of its
// invocations concurrently — the one that received the call, with no
// placement, no lease and no registry round trip. It has no KV and no
// timers (its WorkerContext's KV and timer methods fail with ErrNoState);
// it may call actors and other workers. Call it with Client.CallWorker,
// Context.CallWorker (from an actor, which flushes the actor's writes and
// lends the worker its call chain and lease gate), WorkerContext.CallWorker
// or the typed CallWorker; WorkerRouter and HandleWorker give a worker typed
// handlers. A WorkerResolver supplies types at run time (the
// WASM host: a namespace's modules). MaxWorkerInFlight bounds the invocations of a
// type running on one server: one more fails with CodeOverloaded
// (retryable). Server.WorkerStats counts calls, errors, rejections and
// in-flight invocations per type. docs/workers.md states the guarantees
// and what is not guaranteed.
//
// # Guarantees
//
// G1, single activation: at any instant at most one activation of an actor
// executes invocations, under crashes, partitions, message loss, process
// pauses longer than the lease and clock-rate drift up to a stated bound. An
// in-memory counter's callers see 0, 1, 2, … with resets to 0 when it is
// reactivated, never two interleaved counters.
//
// G2, fenced durable KV: each actor has a transactional KV. An invocation's
// reads see its own writes; its writes commit atomically when it returns,
// in one store transaction that compares the server's incarnation and the
// actor's ownership epoch, so a server whose lease lapsed can never commit.
// The answer is released only after the commit (an output gate): an
// acknowledged write is never lost, and a failed invocation commits nothing.
//
// G3, liveness: after a server dies its actors answer again within the
// lease TTL plus detection plus one placement round trip.
//
// docs/proofs/single-activation.md in the repository argues each guarantee
// and names the test that checks each step.
//
// # Calling actors
//
// A Client (ClientConfig) calls an actor by reference —
// client.Call(ctx, nola.Ref{Namespace: "demo", ID: "c1", Type: "counter"},
// "inc", nil), or Invoke with the reference spelled out. It resolves the
// actor's owner through the registry, places the actor if it has no live
// owner, caches the route and retries after re-resolving when a server
// answers that it is not the owner. Errors
// are *Error values with a stable Code; Retryable is set only when the
// operation certainly did not run, so a caller may retry those blindly and
// must treat any other failure as "may have happened". Branch with
// errors.Is(err, ErrFenced) and friends or CodeOf.
//
// Client.Delete deletes an actor through its owner, which stops the
// activation before it commits a tombstone: once Delete returns, no
// invocation observes the old activation or its KV, untyped calls answer
// that the actor does not exist and a typed call creates a new, empty one.
// The actor record's generation moves on with every delete, so a late
// commit of the old life cannot land and the next life's KV starts empty
// however large the old one was (docs/deletion.md).
//
// Inside an invocation, *Context gives the actor its KV (Get, Put, Delete,
// Scan, ScanPrefix), calls to other actors (Call or Invoke; a cycle of
// calls fails instead of deadlocking), timers (SetTimer, CancelTimer), the
// runtime's clock and a logger. Every effect that leaves the activation is checked
// against the server's lease deadline.
//
// # Servers and the runtime
//
// A Server (ServerConfig) joins the cluster through a kv.Store (etcd in
// production: package registry/etcdkv; memkv in tests and the simulator)
// and reaches the other servers through a Transport (HTTP in production:
// package httpapi). Everything that involves time, randomness or goroutines
// goes through the injected rt.Runtime, so the same engine runs on real
// time (rt.NewReal) and, unchanged, in the deterministic simulator (package
// sim, on rt/simrt). Cluster runs several servers in one process over a
// LocalNetwork, for tests, examples and benchmarks.
//
// Store-less mode (package storeless) is built on three hooks, and none of
// the guarantees above hold there: ServerConfig.NoKV takes actor KV away
// (ErrUnsupported), and Server.HostedActors and Server.Release let a
// routing layer move activations off a server when its hash ring changes.
//
// # Reading the engine
//
// One invocation, from the HTTP API to the store, reads in five files:
//
//	httpapi/handler.go   invoke: the public endpoint hands the call to the Client
//	client.go            Client.invokeGated: route cache, placement, send, retry
//	                     (a server's own client first tries its server's table:
//	                     invokeResident)
//	invoke.go            Server.HandleInvoke → lookup (activating on first use)
//	                     → invokeOn: lease check, the actor, output gate, failure
//	kvtxn.go             the invocation's KV transaction: Context.Get/Put,
//	                     flush and the fenced commit
//	registry/registry.go CommitKV, Confirm, EnsureActivation: the protocol
//
// Beside the path, each concern has a file of its own: activation.go (the
// activation — hot fields first, in two cache lines —, its states and their
// transition table, activation and drop), actlock.go (the activation's
// embedded lock, upgraded to an rt.Sema on first contention), table.go (the sharded activation table), lease.go (registration,
// keep-alive, self-fence, and the mayServe/effectAllowed checks every effect
// passes), timers.go, evict.go (idle sweep, eviction, release on shutdown),
// accounting.go (what activations hold and cost: Sizer, busy time, the
// load report's figures), shed.go (releasing activations of a server over
// its memory budget or far above the cluster mean), locality.go
// (sampling actor-to-actor calls and moving actors towards the server
// their calls go to, with a placement hint),
// ownerwatch.go (cancelling calls whose owner lost its lease), worker.go
// (stateless workers: no activation, run where called), server.go
// (the Server type and its lifecycle: NewServer, Start, Shutdown, Halt),
// config.go (configuration and request validation) and errors.go (the
// Error type and how failures are classified).
package nola
