/* hostile: misbehaviour on demand, for the host's limit tests. It also
 * counts in memory ("inc"/"get", like counter) so tests can see whether its
 * instance survived.
 *
 *   "spin"     loops forever
 *   "recurse"  recurses forever with frames in linear memory (C's shadow
 *              stack overflows into an out-of-bounds access)
 *   "deep"     recurses forever through an indirect call (wazero's stack
 *              overflows)
 *   "bomb"     grows memory until it cannot, then writes to all of it
 *   "trap"     executes unreachable
 *   "big"      answers with as many bytes as the decimal payload says
 *   "flood"    calls the host (clock.now) forever
 *   "logflood" logs forever
 *   "oob"      reads far out of bounds
 *   "rand"     fills 8 MiB with WASI random_get, as many times as the
 *              decimal payload says (time spent in a host function)
 *   "answers"  calls __guest_response with 4 MiB that many times
 *   "biglog"   logs 8 MiB (far over the log budget) that many times
 *   "fill"     fills 8 MiB with memory.fill, as many times as the decimal
 *              payload says (one instruction each)
 *   "copy"     copies 4 MiB with memory.copy that many times */
#include "wapc.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("random_get")))
wapc_u32 random_get(wapc_u8 *buf, wapc_u32 len);

/* repeat parses the payload as a count and allocates a buffer of size
 * bytes; 0 if either fails. */
static wapc_u8 *repeat(wapc_buf payload, wapc_u32 size, wapc_i64 *count) {
	if (!wapc_parse_i64(payload, count) || *count < 0) return 0;
	return (wapc_u8 *)wapc_alloc(size);
}

static wapc_i64 n;
static volatile wapc_u32 sink;

static wapc_u32 recurse(wapc_u32 depth) {
	volatile wapc_u8 frame[64];
	frame[depth & 63] = (wapc_u8)depth;
	return recurse(depth + 1) + frame[0];
}

static wapc_u32 deep(wapc_u32 depth);
static wapc_u32 (*volatile deep_ptr)(wapc_u32) = deep;

static wapc_u32 deep(wapc_u32 depth) { return deep_ptr(depth + 1) + 1; }

int wapc_handle(wapc_buf op, wapc_buf payload) {
	if (wapc_eq(op, "inc")) return wapc_ok_i64(n++);
	if (wapc_eq(op, "get")) return wapc_ok_i64(n);
	if (wapc_eq(op, "spin")) {
		for (;;) sink++;
	}
	if (wapc_eq(op, "recurse")) return wapc_ok_i64(recurse(0));
	if (wapc_eq(op, "deep")) return wapc_ok_i64(deep(0));
	if (wapc_eq(op, "bomb")) {
		while (__builtin_wasm_memory_grow(0, 16) != (unsigned long)-1) {
		}
		while (__builtin_wasm_memory_grow(0, 1) != (unsigned long)-1) {
		}
		wapc_u32 pages = (wapc_u32)__builtin_wasm_memory_size(0);
		volatile wapc_u8 *p = 0;
		for (wapc_u64 i = 0; i < (wapc_u64)pages * 65536u; i += 4096) p[i] = 1;
		return wapc_ok_i64(pages);
	}
	if (wapc_eq(op, "trap")) __builtin_trap();
	if (wapc_eq(op, "big")) {
		wapc_i64 size;
		if (!wapc_parse_i64(payload, &size) || size < 0) return wapc_fail("hostile: big: bad size");
		wapc_u8 *p = (wapc_u8 *)wapc_alloc((wapc_u32)size);
		if (!p) return wapc_fail("hostile: big: out of memory");
		__builtin_memset(p, 'x', (wapc_u32)size);
		return wapc_ok(p, (wapc_u32)size);
	}
	if (wapc_eq(op, "flood")) {
		for (;;) sink += (wapc_u32)wapc_now();
	}
	if (wapc_eq(op, "logflood")) {
		for (;;) wapc_log("flood");
	}
	if (wapc_eq(op, "rand") || wapc_eq(op, "answers") || wapc_eq(op, "biglog")) {
		wapc_u32 size = wapc_eq(op, "answers") ? 4u << 20 : 8u << 20;
		wapc_i64 count;
		wapc_u8 *p = repeat(payload, size, &count);
		if (!p) return wapc_fail("hostile: bad count or out of memory");
		wapc_buf b = {p, size}, out;
		for (wapc_i64 i = 0; i < count; i++) {
			if (wapc_eq(op, "rand"))
				random_get(p, size);
			else if (wapc_eq(op, "answers"))
				__guest_response(p, size);
			else
				wapc_host("log", "info", b, &out);
		}
		return wapc_ok_i64(count);
	}
	if (wapc_eq(op, "fill") || wapc_eq(op, "copy")) {
		wapc_i64 count;
		wapc_u8 *p = repeat(payload, 8u << 20, &count);
		if (!p) return wapc_fail("hostile: bad count or out of memory");
		int fill = wapc_eq(op, "fill");
		for (wapc_i64 i = 0; i < count; i++) {
			if (fill)
				__builtin_memset(p, (int)sink++, 8u << 20);
			else
				__builtin_memcpy(p, p + (4u << 20), 4u << 20);
		}
		return wapc_ok_i64(count);
	}
	if (wapc_eq(op, "oob")) {
		volatile wapc_u8 *p = (volatile wapc_u8 *)0xFFFFFFF0u;
		return wapc_ok_i64(p[0]);
	}
	return wapc_fail_unknown(op);
}
