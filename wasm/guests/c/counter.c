/* counter: an in-memory counter, the WASM twin of examples/actors.Counter.
 * "inc" returns the value before incrementing (fetch-and-add: a fresh
 * activation answers 0); "get" returns the value. */
#include "wapc.h"

static wapc_i64 n;

int wapc_handle(wapc_buf op, wapc_buf payload) {
	(void)payload;
	if (wapc_eq(op, "inc")) return wapc_ok_i64(n++);
	if (wapc_eq(op, "get")) return wapc_ok_i64(n);
	return wapc_fail_unknown(op);
}
