/* echo: "echo" returns its payload; "put" stores it in KV under "last" and
 * "get" reads it back; "fail" writes to KV and then fails (the write must
 * be discarded); "log" logs the payload. */
#include "wapc.h"

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf key = wapc_str("last"), v, err;
	if (wapc_eq(op, "echo")) return wapc_ok_buf(payload);
	if (wapc_eq(op, "put")) {
		if (!wapc_kv_put(key, payload, &err)) return wapc_fail_buf(err);
		return wapc_ok(0, 0);
	}
	if (wapc_eq(op, "get")) {
		int found = wapc_kv_get(key, &v);
		if (found < 0) return wapc_fail_buf(v);
		return found ? wapc_ok_buf(v) : wapc_ok(0, 0);
	}
	if (wapc_eq(op, "fail")) {
		if (!wapc_kv_put(key, wapc_str("from a failed call"), &err)) return wapc_fail_buf(err);
		return wapc_fail("echo: asked to fail");
	}
	if (wapc_eq(op, "log")) {
		__console_log(payload.ptr, payload.len);
		return wapc_ok(0, 0);
	}
	return wapc_fail_unknown(op);
}
