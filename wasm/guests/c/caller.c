/* caller: "call" with payload "<type>/<id>/<op>" invokes op on that actor
 * (Go or WASM) and returns its result, like examples/actors.Caller;
 * "worker" with payload "<worker-type>/<op>/<payload>" calls that
 * stateless worker. */
#include "wapc.h"

static int next(wapc_buf *rest, wapc_buf *part, int last) {
	wapc_u32 i = 0;
	if (!last)
		while (i < rest->len && rest->ptr[i] != '/') i++;
	else
		i = rest->len;
	if (i == 0 || (!last && i == rest->len)) return 0;
	part->ptr = rest->ptr;
	part->len = i;
	if (!last) i++;
	rest->ptr += i;
	rest->len -= i;
	return 1;
}

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf typ, id, target, out, empty = {0, 0};
	if (wapc_eq(op, "worker")) {
		wapc_buf wop, arg;
		if (!next(&payload, &typ, 0) || !next(&payload, &wop, 0) || !next(&payload, &arg, 1))
			return wapc_fail("caller: payload must be <worker-type>/<op>/<payload>");
		if (!wapc_call_worker(typ, wop, arg, &out)) return wapc_fail_buf(out);
		return wapc_ok_buf(out);
	}
	if (!wapc_eq(op, "call")) return wapc_fail_unknown(op);
	if (!next(&payload, &typ, 0) || !next(&payload, &id, 0) || !next(&payload, &target, 1))
		return wapc_fail("caller: payload must be <type>/<id>/<op>");
	if (!wapc_invoke(id, typ, target, empty, &out)) return wapc_fail_buf(out);
	return wapc_ok_buf(out);
}
