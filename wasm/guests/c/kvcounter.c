/* kvcounter: a counter in the actor's durable KV under key "n", the WASM
 * twin of examples/actors.KVCounter. "inc" adds one and returns the new
 * value, "get" returns it, "add" adds the decimal payload. */
#include "wapc.h"

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf key = wapc_str("n"), cur, err;
	wapc_i64 n = 0, d;
	int found = wapc_kv_get(key, &cur);
	if (found < 0) return wapc_fail_buf(cur);
	if (found && !wapc_parse_i64(cur, &n)) return wapc_fail("kvcounter: stored value is not a number");
	if (wapc_eq(op, "get")) return wapc_ok_i64(n);
	if (wapc_eq(op, "inc")) {
		n++;
	} else if (wapc_eq(op, "add")) {
		if (!wapc_parse_i64(payload, &d)) return wapc_fail("kvcounter: add: payload is not a number");
		n += d;
	} else {
		return wapc_fail_unknown(op);
	}
	wapc_buf out = wapc_format_i64(n);
	if (!wapc_kv_put(key, out, &err)) return wapc_fail_buf(err);
	return wapc_ok_buf(out);
}
