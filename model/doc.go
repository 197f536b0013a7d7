// Package model checks nola's activation protocol exhaustively for small
// scopes: an explicit-state breadth-first search over every state the
// protocol can reach with a few servers and actors and a budget of faults,
// checking the single-activation (G1) and fencing (G2) properties in every
// state and on every transition, that a set of interesting situations is
// reached at all (non-vacuity), and a bounded liveness property.
// README.md has the commands, the scopes and their figures;
// docs/proofs/model.md says what this covers and what it does not.
//
// # The checker
//
// Explore is generic over a System: an initial state, a deterministic
// successor function, a canonicaliser and an invariant. States are plain
// values; the visited set stores a 128-bit hash per canonical state (two
// independent maphash seeds) and, per state, its BFS parent and the index of
// the transition that reached it. A counterexample is rebuilt by replaying
// those indices from the initial state, so no state is stored besides the
// BFS frontier. BFS makes every counterexample a shortest one.
//
// Symmetry: servers are interchangeable, and so are actors. Canon maps a
// state to the least encoding over all permutations of server and actor
// identities (2–12 permutations in our scopes), relabelling every field
// that refers to an identity (owners, message senders, in-doubt sets), and
// sorts the multiset of messages in flight. The encoding holds every field,
// so the representative depends on the symmetry class alone; and since it
// starts with the server blocks, which name no server, only the server
// orders that sort those blocks are encoded in full (TestCanonPruningIsExact
// compares this with the brute-force minimum).
//
// # The protocol model
//
// The state is every server process (up or down, stopping, its local
// lease: incarnation and remaining local time, the incarnation it fenced
// last, its in-doubt set, its activation slots and executions cut off by a
// fence), the store (per server: the incarnation counter inc/s, the server
// record srv/s — present while its lease lives — and the lease's age; per
// actor: the record act/A with owner, owner incarnation and epoch, and the
// actor's KV), and the store requests in flight (fenced commits and
// releases, and their answers). Each transition names the engine function
// it abstracts (see ActionKind): Registry.Register, the heartbeat's
// keep-alive and its fences, EnsureActivation, lookup/activate with Confirm
// or Bump and the second lease check, the release at capacity, invokeOn's
// start check, kvTxn.flush, Context.Invoke's call gate, Context.SetTimer,
// the output gate, idle eviction, timers, Shutdown, crashes and restarts.
//
// KV is a counter: every commit writes base+1 where base is what its
// activation read or last committed, so a lost write, a reset or a late
// overwrite shows up as a commit whose base is not the store's value.
//
// # Time
//
// Time is discrete. One tick is one unit of the store's lease clock; a
// server's monotonic clock counts D = 4 units per tick at nominal rate. The
// lease TTL is L = 2 ticks, the drift bound ρ = 1/4 and the margin δ = 1
// unit. A grant or keep-alive gives the server B = LocalDeadline(0, L·D, ρ,
// δ) = 5 units of local time — computed by registry.LocalDeadline, the
// engine's own formula — and a server is live while its remaining time is
// positive (now < deadline).
//
// Why this discretisation does not hide a violation of G1:
//
//   - Every clock the protocol compares is an integer in the model, and
//     every comparison is against an integer threshold, so nothing happens
//     between two ticks that a tick boundary could miss: the only events
//     whose relative timing matters are "the server's local deadline
//     passes" and "the store expires the lease", and both are placed at the
//     latest and earliest instants the assumptions allow.
//   - The store processes a keep-alive (or grant) at the very instant it is
//     sent (A4 allows any later instant; later only moves the store's
//     expiry later), and expires a lease exactly L ticks after the last one
//     it processed (A2 allows any later instant). Both are the adversarial
//     choices for G1: they make the store free the actor as early as
//     possible.
//   - Every running server's clock advances at the slowest rate within ρ:
//     3 units per tick. A slower clock only moves the server's deadline
//     later in store time, so this is the adversarial choice too; a faster
//     clock makes a server fence earlier, which is the same as fencing on
//     a lost lease. With this rate the deadline passes after 2 ticks (5 −
//     2·3 < 0), not before the lease can expire: the model's Lemma 2 holds
//     with no slack, so the check is not pessimistic. Under the BeyondRho
//     mutation clocks run at 2 units per tick and the server is still live
//     (5 − 2·2 > 0) when its lease expires; the checker finds that.
//   - Pauses need no transition of their own: any server may take no step
//     for any number of ticks (the search interleaves every server's steps
//     with ticks in every order), which is a process pause — including
//     between an execution's start check and its end check, between a
//     Confirm read and the lease check after it, and between sending a
//     commit and its answer.
//   - Message delay is unbounded in the same way; a lost keep-alive answer
//     is a fault (the store renewed the lease, the server does not know); a
//     store request whose caller gives up is the in-doubt fault: the
//     caller treats the outcome as unknown, and the request may still land
//     at any later time, or be lost.
//
// The scope bounds the number of crashes, lost answers, in-doubt requests,
// releases at capacity, graceful shutdowns, registrations and commits per
// actor; the state space is finite under these budgets and each scope is
// explored to the end (no depth or state bound).
package model
