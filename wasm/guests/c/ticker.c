/* ticker: counts timer ticks in memory and mirrors the count into its KV
 * under "ticks" on every tick, the WASM twin of sim.Ticker: "arm" sets a
 * periodic timer (payload: a period in milliseconds, "250ms"), "disarm"
 * cancels it, "ticks" returns the in-memory count. */
#include "wapc.h"

static wapc_i64 ticks;

/* parse_ms reads "<digits>ms" as nanoseconds; 0 if malformed. */
static wapc_u64 parse_ms(wapc_buf b) {
	if (b.len < 3 || b.ptr[b.len - 2] != 'm' || b.ptr[b.len - 1] != 's') return 0;
	wapc_buf digits = {b.ptr, b.len - 2};
	wapc_i64 ms;
	if (!wapc_parse_i64(digits, &ms) || ms <= 0 || ms > 86400000) return 0;
	return (wapc_u64)ms * 1000000;
}

int wapc_handle(wapc_buf op, wapc_buf payload) {
	wapc_buf err;
	if (wapc_eq(op, "arm")) {
		wapc_u64 period = parse_ms(payload);
		if (!period) return wapc_fail("ticker: arm wants a period like 250ms");
		wapc_buf empty = {0, 0};
		if (!wapc_timer_set(wapc_str("tick"), period, period, wapc_str("tick"), empty, &err))
			return wapc_fail_buf(err);
		return wapc_ok_i64(ticks);
	}
	if (wapc_eq(op, "disarm")) {
		if (wapc_timer_cancel(wapc_str("tick")) < 0) return wapc_fail("ticker: cancel failed");
		return wapc_ok_i64(ticks);
	}
	if (wapc_eq(op, "tick")) {
		ticks++;
		if (!wapc_kv_put(wapc_str("ticks"), wapc_format_i64(ticks), &err)) return wapc_fail_buf(err);
		return wapc_ok(0, 0);
	}
	if (wapc_eq(op, "ticks")) return wapc_ok_i64(ticks);
	return wapc_fail_unknown(op);
}
