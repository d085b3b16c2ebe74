/*
 * taps.h - internals shared by the SQL and outbound-HTTP taps of
 * libtimeglass.so: request scopes (scope.c), the record emitters, the
 * outbound-connection state (outbound.c) and the TLS taps (tls.c).
 */
#ifndef TG_TAPS_H
#define TG_TAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/event_sql.h"

/* Per-thread guard: set while a tap runs (or while libpq runs inside a
 * libpq tap), so that nested calls pass straight through. */
extern __thread int tg_tap_depth __attribute__((tls_model("initial-exec")));

/* Per-thread: set while libpq runs inside a libpq query tap: the socket
 * and TLS session it talks on belong to the libpq tap from then on. */
extern __thread int tg_in_libpq __attribute__((tls_model("initial-exec")));

/* Settings read once from the environment (TIMEGLASS_SQL_MAX,
 * TIMEGLASS_CAPTURE_PARAMS). */
unsigned tg_sql_max(void);
/* 0 when TIMEGLASS_NO_SQL is set: the SQL taps pass everything through. */
int tg_sql_on(void);
int tg_capture_params(void);

/* The real `name` from the loaded library whose file name starts with
 * `prefix` ("libpq.so", "libssl.so", "libsqlite3.so"): dlsym(RTLD_NEXT)
 * first, then the library itself (dlopen RTLD_NOLOAD), then any loaded
 * object of that name (dl_iterate_phdr). Never returns `ours`; NULL when
 * not found (the caller must then not call it). */
void *tg_lib_sym(const char *prefix, const char *name, void *ours);

/* The request scope token of the calling thread: the one set by
 * timeglass_thread_enter(), else that of the innermost registered root
 * frame on this thread's Python stack, else 0. */
uint64_t tg_scope_current(void);

/* The scope token (as tg_scope_current) and the call site ("file:line
 * function" of the innermost frame of the app's own code, written to site,
 * cap bytes, not NUL-terminated) of the calling thread, in one walk of its
 * frames. Returns the site's length, 0 if none. */
size_t tg_taps_context(uint64_t *scope, char *site, size_t cap);

/* A finished query, as the taps describe it. Strings need not be
 * NUL-terminated; NULL or length 0 = absent. They are capped here. */
struct tg_query_info {
	uint8_t tap, db_system;
	uint16_t flags;            /* TG_QF_* */
	uint64_t conn_key;
	uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC */
	int64_t rows;
	const char *sql; size_t sql_len;
	const char *db; size_t db_len;
	const char *err; size_t err_len;
	const char *params; size_t params_len;
	uint64_t params_hash;      /* of the bound values (TG_QF_PARAMS_KNOWN in flags) */
	uint32_t executions;       /* executions it stands for (0 is taken as 1) */
	uint64_t scope;            /* token; taken from the thread when 0 and scope_set is 0 */
	int scope_set;             /* scope is already decided (possibly 0) */
	const char *site; size_t site_len; /* call site, when site_set */
	int site_set;              /* else it is taken from the calling thread */
};

/* Hash of bound parameter values, built value by value from
 * TG_PARAMS_HASH_INIT: tg_params_hash() folds in one value (its index, a
 * format or type code, and its bytes; len -1 for NULL). Only equality
 * matters: the same values in the same places give the same hash. */
#define TG_PARAMS_HASH_INIT 0xcbf29ce484222325ull

static inline uint64_t tg_hash_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static inline uint64_t tg_params_hash(uint64_t h, uint32_t index, uint32_t code, const void *p, int64_t len)
{
	int64_t head[2] = {(int64_t)index << 32 | code, len};
	h = tg_hash_bytes(h, head, sizeof head);
	return len > 0 && p ? tg_hash_bytes(h, p, (size_t)len) : h;
}

/* Writes a TG_EV_QUERY record (with the call site of the calling thread).
 * Does nothing when the process is not recorded. Preserves errno. */
void tg_emit_query(const struct tg_query_info *q);

/* A finished outbound HTTP exchange. */
struct tg_http_call_info {
	uint16_t status, flags;
	uint64_t scope;
	uint64_t start_ns, end_ns;
	uint64_t request_bytes, response_bytes;
	const char *method; size_t method_len;
	const char *host; size_t host_len;
	const char *target; size_t target_len;
	const char *err; size_t err_len;
	const char *site; size_t site_len; /* call site captured when the request was written */
};

/* Writes a TG_EV_HTTP_CALL record. Preserves errno. */
void tg_emit_http_call(const struct tg_http_call_info *h);

/* ---- outbound connections (outbound.c) ---- */

struct tg_out;

/* The app connected (or started connecting) the stream socket fd to addr. */
void tg_out_connected(int fd, const struct sockaddr *addr, socklen_t len);

/* Bytes the app wrote to (dir 0) or read from (dir 1) an outbound socket. */
void tg_out_io(struct tg_out *o, int dir, const uint8_t *buf, size_t n, uint64_t now);

/* The socket is closing or failed: flush and free the state. */
void tg_out_free(struct tg_out *o, uint64_t now);

/* Called by conn.c under the connection's lock: the libpq tap claims it. */
void tg_out_set_libpq(struct tg_out *o);

/* Binds (bind 1) or unbinds the scope token and call site of the
 * operation a driver runs on its connection (see timeglass_fd_scope). */
void tg_out_bind(struct tg_out *o, int bind, uint64_t token, const char *site, size_t len);

/* conn.c: tg_out_bind() on fd's outbound state, under its lock. */
void tg_conn_bind(int fd, int bind, uint64_t token, const char *site, size_t len);

/* conn.c: registers an outbound connection on fd (takes o). Returns 0, or
 * -1 when fd cannot be tracked (the caller frees o). */
int tg_conn_outbound(int fd, struct tg_out *o);

/* conn.c: the outbound state of fd, NULL if fd is not an outbound socket. */
struct tg_out *tg_conn_get_out(int fd);

/* conn.c: marks fd's outbound state as libpq's (tg_out_set_libpq under lock). */
void tg_conn_claim_libpq(int fd);

/* The connection number (tg_ev_request.conn_id) of the accepted socket fd
 * while it is tracked, else 0. */
uint64_t tg_conn_inbound_id(int fd);

/* fd belongs to a libpq connection seen by the libpq taps: the wire parser
 * leaves it alone from now on. */
void tg_out_owned_by_libpq(int fd);

/* 1 if fd is an outbound socket whose bytes the taps should leave alone
 * (owned by libpq), for the TLS taps. */
int tg_out_is_libpq(int fd);

/* A plaintext stream parser (PostgreSQL wire or HTTP/1.x), as used on
 * sockets and under TLS. */
struct tg_stream;
struct tg_stream *tg_stream_new(int tls, const char *peer, uint64_t conn_key);
/* Feeds bytes written (dir 0) or read (dir 1). Returns 0, or 1 when the
 * stream is not one we follow (the caller may free it and stop). */
int tg_stream_feed(struct tg_stream *s, int dir, const uint8_t *buf, size_t n, uint64_t now);
/* Frees s, emitting what is in flight (as failed). */
void tg_stream_free(struct tg_stream *s, uint64_t now);
/* Frees s without emitting anything (another tap owns the connection). */
void tg_stream_forget(struct tg_stream *s);

#endif
