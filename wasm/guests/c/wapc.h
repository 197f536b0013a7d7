/*
 * wapc.h — a tiny, header-only waPC guest SDK for nola actors in C.
 *
 * Build (see the Makefile's "guests" target):
 *
 *   clang --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry \
 *         -Wl,--stack-first -Wl,-z,stack-size=16384 -o actor.wasm actor.c
 *
 * An actor is one C file that includes this header once and defines
 *
 *   int wapc_handle(wapc_buf op, wapc_buf payload);
 *
 * which answers with wapc_ok(...) or wapc_fail(...); an actor may also have a
 * creation hook, wapc_create (see "the creation hook" below). State that outlives an
 * invocation lives in static variables (the instance's memory is the actor's
 * in-memory state); durable state goes through wapc_kv_*.
 *
 * Memory: every invocation starts with an empty bump arena above
 * __heap_base (wapc_alloc); it grows linear memory as needed and is reset
 * at the start of the next invocation, so pointers into it must not be kept.
 *
 * Host calls follow nola's wire format (see wasm/abi): fields are a 4-byte
 * little-endian length followed by the bytes.
 */
#ifndef NOLA_WAPC_H
#define NOLA_WAPC_H

typedef __UINT8_TYPE__ wapc_u8;
typedef __UINT32_TYPE__ wapc_u32;
typedef __UINT64_TYPE__ wapc_u64;
typedef __INT64_TYPE__ wapc_i64;

/* A byte string: a pointer and a length. */
typedef struct {
	const wapc_u8 *ptr;
	wapc_u32 len;
} wapc_buf;

#define WAPC_IMPORT(name) __attribute__((import_module("wapc"), import_name(name)))

WAPC_IMPORT("__guest_request") void __guest_request(wapc_u8 *op, wapc_u8 *payload);
WAPC_IMPORT("__guest_response") void __guest_response(const wapc_u8 *ptr, wapc_u32 len);
WAPC_IMPORT("__guest_error") void __guest_error(const wapc_u8 *ptr, wapc_u32 len);
WAPC_IMPORT("__host_call") wapc_u32 __host_call(const wapc_u8 *binding, wapc_u32 binding_len,
                                                const wapc_u8 *ns, wapc_u32 ns_len,
                                                const wapc_u8 *op, wapc_u32 op_len,
                                                const wapc_u8 *payload, wapc_u32 payload_len);
WAPC_IMPORT("__host_response_len") wapc_u32 __host_response_len(void);
WAPC_IMPORT("__host_response") void __host_response(wapc_u8 *ptr);
WAPC_IMPORT("__host_error_len") wapc_u32 __host_error_len(void);
WAPC_IMPORT("__host_error") void __host_error(wapc_u8 *ptr);
WAPC_IMPORT("__console_log") void __console_log(const wapc_u8 *ptr, wapc_u32 len);

/* ---- strings and bytes ---- */

static wapc_u32 wapc_strlen(const char *s) {
	wapc_u32 n = 0;
	while (s[n]) n++;
	return n;
}

static wapc_buf wapc_str(const char *s) {
	wapc_buf b = {(const wapc_u8 *)s, wapc_strlen(s)};
	return b;
}

static int wapc_eq(wapc_buf b, const char *s) {
	wapc_u32 n = wapc_strlen(s);
	if (b.len != n) return 0;
	for (wapc_u32 i = 0; i < n; i++)
		if (b.ptr[i] != (wapc_u8)s[i]) return 0;
	return 1;
}

/* ---- the per-invocation arena ---- */

extern wapc_u8 __heap_base;
static wapc_u32 wapc__top;

/* wapc_alloc returns n bytes (8-aligned) valid until the invocation ends,
 * or 0 if linear memory cannot grow that far. */
static void *wapc_alloc(wapc_u32 n) {
	wapc_u32 p = (wapc__top + 7u) & ~7u;
	wapc_u64 end = (wapc_u64)p + n;
	wapc_u64 have = (wapc_u64)__builtin_wasm_memory_size(0) * 65536u;
	if (end > 0xFFFFFFFFu) return 0;
	if (end > have) {
		wapc_u64 pages = (end - have + 65535u) / 65536u;
		if (__builtin_wasm_memory_grow(0, (unsigned long)pages) == (unsigned long)-1) return 0;
	}
	wapc__top = (wapc_u32)end;
	return (void *)p;
}

/* ---- answering ---- */

/* wapc_ok sets the invocation's result and returns 1 (success). */
static int wapc_ok(const void *ptr, wapc_u32 len) {
	__guest_response((const wapc_u8 *)ptr, len);
	return 1;
}

static int wapc_ok_buf(wapc_buf b) { return wapc_ok(b.ptr, b.len); }

/* wapc_fail sets the invocation's error message and returns 0 (failure). */
static int wapc_fail(const char *msg) {
	__guest_error((const wapc_u8 *)msg, wapc_strlen(msg));
	return 0;
}

static int wapc_fail_buf(wapc_buf msg) {
	__guest_error(msg.ptr, msg.len);
	return 0;
}

/* wapc_concat returns a ++ b ++ c in the arena. */
static wapc_buf wapc_concat(wapc_buf a, wapc_buf b, wapc_buf c) {
	wapc_buf out = {0, 0};
	wapc_u8 *p = (wapc_u8 *)wapc_alloc(a.len + b.len + c.len);
	if (!p) return out;
	__builtin_memcpy(p, a.ptr, a.len);
	__builtin_memcpy(p + a.len, b.ptr, b.len);
	__builtin_memcpy(p + a.len + b.len, c.ptr, c.len);
	out.ptr = p;
	out.len = a.len + b.len + c.len;
	return out;
}

static int wapc_fail_unknown(wapc_buf op) {
	return wapc_fail_buf(wapc_concat(wapc_str("unknown operation \""), op, wapc_str("\"")));
}

/* wapc_format_i64 writes v in decimal into the arena. */
static wapc_buf wapc_format_i64(wapc_i64 v) {
	wapc_u8 tmp[24];
	int i = 24;
	wapc_u64 u = v < 0 ? (wapc_u64)0 - (wapc_u64)v : (wapc_u64)v;
	do {
		tmp[--i] = (wapc_u8)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0) tmp[--i] = '-';
	wapc_buf out = {0, 0};
	wapc_u8 *p = (wapc_u8 *)wapc_alloc((wapc_u32)(24 - i));
	if (!p) return out;
	__builtin_memcpy(p, tmp + i, (wapc_u32)(24 - i));
	out.ptr = p;
	out.len = (wapc_u32)(24 - i);
	return out;
}

static int wapc_ok_i64(wapc_i64 v) { return wapc_ok_buf(wapc_format_i64(v)); }

/* wapc_parse_i64 parses a decimal integer; it returns 0 on malformed input. */
static int wapc_parse_i64(wapc_buf b, wapc_i64 *out) {
	wapc_u32 i = 0;
	int neg = 0;
	wapc_u64 v = 0;
	if (b.len > 0 && b.ptr[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == b.len || b.len > 20) return 0;
	for (; i < b.len; i++) {
		if (b.ptr[i] < '0' || b.ptr[i] > '9') return 0;
		v = v * 10 + (wapc_u64)(b.ptr[i] - '0');
	}
	*out = neg ? -(wapc_i64)v : (wapc_i64)v;
	return 1;
}

/* ---- the wire format ---- */

/* wapc_field_size is the encoded size of a field of n bytes. */
static wapc_u32 wapc_field_size(wapc_u32 n) { return 4 + n; }

/* wapc_put_field writes one field at dst and returns the end. */
static wapc_u8 *wapc_put_field(wapc_u8 *dst, wapc_buf f) {
	dst[0] = (wapc_u8)f.len;
	dst[1] = (wapc_u8)(f.len >> 8);
	dst[2] = (wapc_u8)(f.len >> 16);
	dst[3] = (wapc_u8)(f.len >> 24);
	__builtin_memcpy(dst + 4, f.ptr, f.len);
	return dst + 4 + f.len;
}

static wapc_u32 wapc_get_u32(const wapc_u8 *p) {
	return (wapc_u32)p[0] | (wapc_u32)p[1] << 8 | (wapc_u32)p[2] << 16 | (wapc_u32)p[3] << 24;
}

/* wapc_next_field takes the first field off *rest; it returns 0 if *rest is
 * malformed. */
static int wapc_next_field(wapc_buf *rest, wapc_buf *field) {
	if (rest->len < 4) return 0;
	wapc_u32 n = wapc_get_u32(rest->ptr);
	if (n > rest->len - 4) return 0;
	field->ptr = rest->ptr + 4;
	field->len = n;
	rest->ptr += 4 + n;
	rest->len -= 4 + n;
	return 1;
}

/* ---- host calls ---- */

/* wapc_host calls nola's host function ns/op. On success it returns 1 and
 * *out holds the response; on failure 0 and *out holds the error message
 * ("<code>: <message>"). Both live in the arena. */
static int wapc_host(const char *ns, const char *op, wapc_buf payload, wapc_buf *out) {
	static const char binding[] = "nola";
	wapc_u32 ok = __host_call((const wapc_u8 *)binding, sizeof(binding) - 1,
	                          (const wapc_u8 *)ns, wapc_strlen(ns),
	                          (const wapc_u8 *)op, wapc_strlen(op), payload.ptr, payload.len);
	wapc_u32 n = ok ? __host_response_len() : __host_error_len();
	wapc_u8 *p = (wapc_u8 *)wapc_alloc(n ? n : 1);
	out->ptr = p;
	out->len = 0;
	if (!p) {
		*out = wapc_str("guest: out of memory for a host response");
		return 0;
	}
	if (ok)
		__host_response(p);
	else
		__host_error(p);
	out->len = n;
	return ok ? 1 : 0;
}

/* wapc_creation_args reads the actor's creation arguments (empty if it was
 * created without any): 1 with *out set, 0 on error (*out holds the
 * message). Any invocation may call it; a creation hook gets them as its
 * argument. */
static int wapc_creation_args(wapc_buf *out) {
	wapc_buf none = {0, 0};
	return wapc_host("self", "creation_args", none, out);
}

/* wapc_host_call is wapc_host with the namespace and operation as byte
 * strings: for host functions an embedder registered
 * (wasm.Config.HostFunctions) under names the guest does not know at
 * compile time. */
static int wapc_host_call(wapc_buf ns, wapc_buf op, wapc_buf payload, wapc_buf *out) {
	static const char binding[] = "nola";
	wapc_u32 ok = __host_call((const wapc_u8 *)binding, sizeof(binding) - 1, ns.ptr, ns.len, op.ptr, op.len,
	                          payload.ptr, payload.len);
	wapc_u32 n = ok ? __host_response_len() : __host_error_len();
	wapc_u8 *p = (wapc_u8 *)wapc_alloc(n ? n : 1);
	out->ptr = p;
	out->len = 0;
	if (!p) {
		*out = wapc_str("guest: out of memory for a host response");
		return 0;
	}
	if (ok)
		__host_response(p);
	else
		__host_error(p);
	out->len = n;
	return ok ? 1 : 0;
}

/* wapc_invoke calls op on another actor of the namespace. */
static int wapc_invoke(wapc_buf id, wapc_buf type, wapc_buf op, wapc_buf payload, wapc_buf *out) {
	wapc_u32 n = wapc_field_size(id.len) + wapc_field_size(type.len) + wapc_field_size(op.len) +
	             wapc_field_size(payload.len);
	wapc_u8 *req = (wapc_u8 *)wapc_alloc(n);
	if (!req) {
		*out = wapc_str("guest: out of memory");
		return 0;
	}
	wapc_u8 *p = wapc_put_field(req, id);
	p = wapc_put_field(p, type);
	p = wapc_put_field(p, op);
	wapc_put_field(p, payload);
	wapc_buf b = {req, n};
	return wapc_host("actor", "invoke", b, out);
}

/* wapc_call_worker calls op of a stateless worker type of the namespace. */
static int wapc_call_worker(wapc_buf type, wapc_buf op, wapc_buf payload, wapc_buf *out) {
	wapc_u32 n = wapc_field_size(type.len) + wapc_field_size(op.len) + wapc_field_size(payload.len);
	wapc_u8 *req = (wapc_u8 *)wapc_alloc(n);
	if (!req) {
		*out = wapc_str("guest: out of memory");
		return 0;
	}
	wapc_u8 *p = wapc_put_field(req, type);
	p = wapc_put_field(p, op);
	wapc_put_field(p, payload);
	wapc_buf b = {req, n};
	return wapc_host("worker", "call", b, out);
}

/* wapc_kv_get reads key: 1 found (*value set), 0 absent, -1 error (*value
 * holds the message). */
static int wapc_kv_get(wapc_buf key, wapc_buf *value) {
	wapc_buf resp;
	if (!wapc_host("kv", "get", key, &resp)) {
		*value = resp;
		return -1;
	}
	if (resp.len == 0 || resp.ptr[0] == 0) return 0;
	value->ptr = resp.ptr + 1;
	value->len = resp.len - 1;
	return 1;
}

/* wapc_kv_put writes key=value in the invocation's transaction. It returns
 * 1, or 0 with *err set. */
static int wapc_kv_put(wapc_buf key, wapc_buf value, wapc_buf *err) {
	wapc_u32 n = wapc_field_size(key.len) + wapc_field_size(value.len);
	wapc_u8 *req = (wapc_u8 *)wapc_alloc(n);
	if (!req) {
		*err = wapc_str("guest: out of memory");
		return 0;
	}
	wapc_put_field(wapc_put_field(req, key), value);
	wapc_buf b = {req, n};
	wapc_buf resp;
	if (!wapc_host("kv", "put", b, &resp)) {
		*err = resp;
		return 0;
	}
	return 1;
}

/* wapc_kv_delete removes key. It returns 1, or 0 with *err set. */
static int wapc_kv_delete(wapc_buf key, wapc_buf *err) {
	wapc_buf resp;
	if (!wapc_host("kv", "delete", key, &resp)) {
		*err = resp;
		return 0;
	}
	return 1;
}

/* wapc_put_u64_field writes v as an 8-byte little-endian field. */
static wapc_u8 *wapc_put_u64_field(wapc_u8 *dst, wapc_u64 v) {
	dst[0] = 8;
	dst[1] = dst[2] = dst[3] = 0;
	for (int i = 0; i < 8; i++) dst[4 + i] = (wapc_u8)(v >> (8 * i));
	return dst + 12;
}

/* wapc_timer_set invokes op(payload) on this actor after delay_ns, then
 * every period_ns if period_ns > 0, replacing a timer of the same name. The
 * timer is gone with the activation. It returns 1, or 0 with *err set. */
static int wapc_timer_set(wapc_buf name, wapc_u64 delay_ns, wapc_u64 period_ns, wapc_buf op,
                          wapc_buf payload, wapc_buf *err) {
	wapc_u32 n = wapc_field_size(name.len) + wapc_field_size(op.len) + wapc_field_size(payload.len) + 2 * 12;
	wapc_u8 *req = (wapc_u8 *)wapc_alloc(n);
	if (!req) {
		*err = wapc_str("guest: out of memory");
		return 0;
	}
	wapc_u8 *p = wapc_put_field(req, name);
	p = wapc_put_field(p, op);
	p = wapc_put_field(p, payload);
	wapc_put_u64_field(wapc_put_u64_field(p, delay_ns), period_ns);
	wapc_buf b = {req, n};
	wapc_buf resp;
	if (!wapc_host("timer", "set", b, &resp)) {
		*err = resp;
		return 0;
	}
	return 1;
}

/* wapc_timer_cancel stops the named timer: 1 if one was set, 0 if not, -1
 * on error. */
static int wapc_timer_cancel(wapc_buf name) {
	wapc_buf resp;
	if (!wapc_host("timer", "cancel", name, &resp)) return -1;
	return resp.len == 1 && resp.ptr[0] == 1;
}

/* wapc_now returns the server's clock in unix nanoseconds (the simulated
 * one under simulation), or 0 on error. */
static wapc_i64 wapc_now(void) {
	wapc_buf empty = {0, 0}, resp;
	if (!wapc_host("clock", "now", empty, &resp) || resp.len != 8) return 0;
	wapc_u64 lo = wapc_get_u32(resp.ptr), hi = wapc_get_u32(resp.ptr + 4);
	return (wapc_i64)(lo | hi << 32);
}

/* wapc_log logs msg at info level. */
static void wapc_log(const char *msg) { __console_log((const wapc_u8 *)msg, wapc_strlen(msg)); }

/* ---- the entry point ---- */

int wapc_handle(wapc_buf op, wapc_buf payload);

__attribute__((export_name("__guest_call"))) wapc_u32 __guest_call(wapc_u32 op_len, wapc_u32 payload_len) {
	wapc__top = (wapc_u32)&__heap_base;
	wapc_u8 *op = (wapc_u8 *)wapc_alloc(op_len);
	wapc_u8 *payload = (wapc_u8 *)wapc_alloc(payload_len);
	if (!op || !payload) return (wapc_u32)wapc_fail("guest: out of memory for the request");
	__guest_request(op, payload);
	wapc_buf o = {op, op_len}, p = {payload, payload_len};
	return wapc_handle(o, p) ? 1u : 0u;
}

/* ---- the creation hook (optional) ----
 *
 * An actor that defines WAPC_CREATE before including this header defines
 *
 *   int wapc_create(wapc_buf args);
 *
 * which nola calls once in the actor's life, at its first activation and
 * before any invocation, with the creation arguments the creating call
 * carried. Its KV writes commit together with the record that the actor was
 * created, so it runs to a commit exactly once; wapc_fail fails the
 * activation, and the next one calls it again. (The export nola_create is
 * what tells the host the actor has the hook.) */
#ifdef WAPC_CREATE
int wapc_create(wapc_buf args);

__attribute__((export_name("nola_create"))) wapc_u32 nola_create(wapc_u32 op_len, wapc_u32 payload_len) {
	wapc__top = (wapc_u32)&__heap_base;
	wapc_u8 *op = (wapc_u8 *)wapc_alloc(op_len);
	wapc_u8 *payload = (wapc_u8 *)wapc_alloc(payload_len);
	if (!op || !payload) return (wapc_u32)wapc_fail("guest: out of memory for the creation arguments");
	__guest_request(op, payload);
	wapc_buf p = {payload, payload_len};
	return wapc_create(p) ? 1u : 0u;
}
#endif

#endif
