// Package storeless is nola's store-less mode (`nola serve --registry
// hash`, node.Options.Hash): servers find each other from a static list or
// DNS records, probe each other's health, and place actors by rendezvous
// hashing over the members they see alive. There is no store.
//
// It is NOT linearizable and has NO durable KV. Views of the membership
// are not agreed on: two servers that cannot see each other both host an
// actor both think they own, and both answer (TestPartitionTwoActivations
// shows it). Actor KV calls fail with nola.ErrUnsupported.
//
// Each server runs the normal engine on a private in-process registry, in
// which it is the only server, so the engine always places locally. The
// Router around it does the rest: it is the engine's nola.Transport (every
// call goes to the actor's owner on the ring), the handler of the internal
// endpoint (a call forwarded here is placed and run here), and a filter in
// front of the HTTP API (public calls proxied to the owner, KV reads,
// actor lists and deletes answered 501, module uploads copied to every
// member). Members is the membership view; Router.Round runs one probe
// round and releases the activations whose owner moved, and asks the
// background pusher (push.go) to reconcile the modules of members that
// joined: never inside the round, so a hung member cannot stall failure
// detection. Router.Close stops the pushes.
//
// docs/storeless.md describes the mode for operators.
package storeless
