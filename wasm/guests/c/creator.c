/* creator: a creation hook in C. wapc_create counts in KV ("creates") how
 * often it committed and stores the arguments it got ("given"); "creates"
 * and "given" return them, "args" returns wapc_creation_args. nola's tests
 * check that the hook commits exactly once. */
#define WAPC_CREATE
#include "wapc.h"

int wapc_create(wapc_buf args) {
	wapc_buf key = wapc_str("creates"), cur, err;
	wapc_i64 n = 0;
	int found = wapc_kv_get(key, &cur);
	if (found < 0) return wapc_fail_buf(cur);
	if (found && !wapc_parse_i64(cur, &n)) return wapc_fail("creator: stored count is not a number");
	if (!wapc_kv_put(key, wapc_format_i64(n + 1), &err)) return wapc_fail_buf(err);
	if (!wapc_kv_put(wapc_str("given"), args, &err)) return wapc_fail_buf(err);
	return wapc_ok(0, 0);
}

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf v;
	(void)payload;
	if (wapc_eq(op, "creates") || wapc_eq(op, "given")) {
		int found = wapc_kv_get(op, &v);
		if (found < 0) return wapc_fail_buf(v);
		if (!found) return wapc_ok(0, 0);
		return wapc_ok_buf(v);
	}
	if (wapc_eq(op, "args")) {
		if (!wapc_creation_args(&v)) return wapc_fail_buf(v);
		return wapc_ok_buf(v);
	}
	return wapc_fail_unknown(op);
}
