/* hostfn: calls the embedder's host functions (wasm.Config.HostFunctions).
 *
 * "calls": the payload is one or more (namespace, operation, payload)
 * triples, each field in nola's wire format (4-byte little-endian length,
 * then the bytes). The guest makes the host calls in order and answers with
 * the last one's response, or fails with the first host error
 * ("<code>: <message>").
 *
 * "put_calls": the payload is a key and a value, then triples as for
 * "calls": the guest writes key=value to its KV first (pending in the
 * invocation's transaction), then makes the calls.
 *
 * "get": the payload is a key; the answer is its value (empty if absent). */
#include "wapc.h"

static int calls(wapc_buf rest) {
	wapc_buf ns, op, payload, out = {0, 0};
	int n = 0;
	while (rest.len > 0) {
		if (!wapc_next_field(&rest, &ns) || !wapc_next_field(&rest, &op) || !wapc_next_field(&rest, &payload))
			return wapc_fail("hostfn: malformed payload: want (namespace, operation, payload) fields");
		if (!wapc_host_call(ns, op, payload, &out)) return wapc_fail_buf(out);
		n++;
	}
	if (n == 0) return wapc_fail("hostfn: no host call to make");
	return wapc_ok_buf(out);
}

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf key, value, err;
	if (wapc_eq(op, "calls")) return calls(payload);
	if (wapc_eq(op, "put_calls")) {
		if (!wapc_next_field(&payload, &key) || !wapc_next_field(&payload, &value))
			return wapc_fail("hostfn: malformed payload: want key and value fields first");
		if (!wapc_kv_put(key, value, &err)) return wapc_fail_buf(err);
		return calls(payload);
	}
	if (wapc_eq(op, "get")) {
		int found = wapc_kv_get(payload, &value);
		if (found < 0) return wapc_fail_buf(value);
		return found ? wapc_ok_buf(value) : wapc_ok(0, 0);
	}
	return wapc_fail_unknown(op);
}
