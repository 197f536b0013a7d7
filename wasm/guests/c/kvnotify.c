/* kvnotify: a durable counter (KV key "n", like kvcounter) that, after each
 * "inc", notifies another actor (payload "TYPE/ID", default
 * "counter/notify-sink") before it answers. The write is committed before
 * the call leaves (the flush before an outgoing call); a failed call or
 * commit comes back to the guest as a string, which it reports as its own
 * error, as every WASM guest must. "get" returns the counter. */
#include "wapc.h"

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf key = wapc_str("n"), cur, err;
	wapc_i64 n = 0;
	int found = wapc_kv_get(key, &cur);
	if (found < 0) return wapc_fail_buf(cur);
	if (found && !wapc_parse_i64(cur, &n)) return wapc_fail("kvnotify: stored value is not a number");
	if (wapc_eq(op, "get")) return wapc_ok_i64(n);
	if (!wapc_eq(op, "inc")) return wapc_fail_unknown(op);
	wapc_buf out = wapc_format_i64(n + 1);
	if (!wapc_kv_put(key, out, &err)) return wapc_fail_buf(err);
	wapc_buf type = wapc_str("counter"), id = wapc_str("notify-sink");
	for (wapc_u32 i = 0; i < payload.len; i++) {
		if (payload.ptr[i] == '/') {
			type.ptr = payload.ptr;
			type.len = i;
			id.ptr = payload.ptr + i + 1;
			id.len = payload.len - i - 1;
			break;
		}
	}
	wapc_buf empty = {0, 0}, resp;
	if (!wapc_invoke(id, type, wapc_str("inc"), empty, &resp))
		return wapc_fail_buf(wapc_concat(wapc_str("kvnotify: notify failed: "), resp, empty));
	return wapc_ok_buf(out);
}
