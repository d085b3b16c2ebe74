/*
 * scope.c - request scopes and the records of the SQL and HTTP taps.
 *
 * The marker (bootstrap or TimeGlassMiddleware) calls timeglass_scope_enter()
 * inside each request's task: we hand out a token, remember the calling
 * thread's innermost Python frame (the request task's coroutine frame, which
 * lives as long as the request) as that request's root, and write a
 * TG_SCOPE_BEGIN record. A query then belongs to the request whose root
 * frame is the innermost registered root on the querying thread's stack -
 * right for any number of requests interleaved on one asyncio loop. Worker
 * threads (sync endpoints in the threadpool) are told their token directly
 * with timeglass_thread_enter().
 *
 * Workload: one enter/exit pair per request, one lookup per query or
 * outbound call. The root table is a fixed open-addressing table updated
 * with atomics: no locks, no allocation.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/lines.h"
#include "common/event_sql.h"
#include "pyframes.h"
#include "taps.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))
#define ROOTS 16384u       /* root table slots (power of two) */
#define PROBE_MAX 32u      /* slots probed from a frame's home slot: bounds a miss */
#define FRAMES_MAX 256     /* Python frames searched for a root, innermost first */

TG_TLS int tg_tap_depth;
TG_TLS int tg_in_libpq;

static TG_TLS uint64_t thread_token; /* set by timeglass_thread_enter, 0 if none */
static uint64_t next_token; /* tokens and adoption handles, one counter */

/* frame address -> token: the request's root frame (timeglass_scope_begin)
 * and the root frames of the child tasks it started (timeglass_scope_adopt).
 * A slot is free while its key is 0; key is what removes the entry: the
 * token itself for a request's own root, a handle for an adopted one. Both
 * carry the slot in their low bits, so that removal goes straight to it:
 * key = counter << 15 | has_slot << 14 | slot. Probing is bounded
 * (PROBE_MAX), so a lookup that misses - most frames of a walk are not
 * roots - costs a few loads however long the process has run. */
static struct root {
	uintptr_t frame;
	uint64_t token;
	uint64_t key;
} roots[ROOTS];
static unsigned nroots; /* live entries: lookups are skipped while 0 */
/* Live entries per home slot (slot_of(frame)), at most PROBE_MAX each: a
 * lookup whose home counts none is a miss after one load. Most frames of a
 * walk are not roots, and the table holds only the requests in flight, so
 * this is what a walk mostly pays per frame (a probe of the whole window,
 * PROBE_MAX slots, cost ~3,000 instructions per SQL query's context). */
static uint8_t homes[ROOTS];
#define SLOT_BITS 14
#define KEY_HAS_SLOT (1ull << SLOT_BITS)
#define KEY_SHIFT (SLOT_BITS + 1)
_Static_assert(ROOTS == 1u << SLOT_BITS, "a key holds a slot number");

static unsigned sql_max_bytes;
static int capture_params = -1;

unsigned tg_sql_max(void)
{
	unsigned v = __atomic_load_n(&sql_max_bytes, __ATOMIC_RELAXED);
	if (TG_LIKELY(v))
		return v;
	unsigned long n = tg_getenv_uint("TIMEGLASS_SQL_MAX", TG_SQL_MAX_DEFAULT, 16, TG_SQL_MAX_LIMIT);
	__atomic_store_n(&sql_max_bytes, (unsigned)n, __ATOMIC_RELAXED);
	return (unsigned)n;
}

int tg_sql_on(void)
{
	static int on = -1;
	int v = __atomic_load_n(&on, __ATOMIC_RELAXED);
	if (TG_LIKELY(v >= 0))
		return v;
	v = !tg_getenv_flag("TIMEGLASS_NO_SQL", 0);
	__atomic_store_n(&on, v, __ATOMIC_RELAXED);
	return v;
}

int tg_capture_params(void)
{
	int v = __atomic_load_n(&capture_params, __ATOMIC_RELAXED);
	if (TG_LIKELY(v >= 0))
		return v;
	v = tg_getenv_flag("TIMEGLASS_CAPTURE_PARAMS", 0); /* in doubt, no personal data */
	__atomic_store_n(&capture_params, v, __ATOMIC_RELAXED);
	return v;
}

static inline unsigned slot_of(uintptr_t frame)
{
	uint64_t h = (uint64_t)frame * 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 40) & (ROOTS - 1);
}

/* Registers frame as a root of request `token` (0: a new request, whose
 * token is the key). Returns the entry's key, with its slot, or - the
 * probe window full - a key without one (0 when token was given). */
static uint64_t root_add(uintptr_t frame, uint64_t token, uint64_t counter)
{
	unsigned home = slot_of(frame), i = home;
	for (unsigned n = 0; n < PROBE_MAX; n++, i = (i + 1) & (ROOTS - 1)) {
		uint64_t expect = 0;
		uint64_t key = counter << KEY_SHIFT | KEY_HAS_SLOT | i;
		if (__atomic_load_n(&roots[i].key, __ATOMIC_RELAXED) != 0)
			continue;
		if (!__atomic_compare_exchange_n(&roots[i].key, &expect, key, 0, __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
			continue;
		/* Counted before the frame is published: a lookup that finds
		 * the count 0 cannot see the frame either. */
		__atomic_fetch_add(&homes[home], 1, __ATOMIC_RELEASE);
		__atomic_store_n(&roots[i].token, token ? token : key, __ATOMIC_RELEASE);
		__atomic_store_n(&roots[i].frame, frame, __ATOMIC_RELEASE);
		__atomic_fetch_add(&nroots, 1, __ATOMIC_RELAXED);
		return key;
	}
	return token ? 0 : counter << KEY_SHIFT;
}

static void root_del(uint64_t key)
{
	if (!(key & KEY_HAS_SLOT))
		return;
	struct root *r = &roots[key & (ROOTS - 1)];
	if (__atomic_load_n(&r->key, __ATOMIC_ACQUIRE) != key)
		return;
	unsigned home = slot_of(__atomic_load_n(&r->frame, __ATOMIC_ACQUIRE));
	__atomic_store_n(&r->frame, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->token, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->key, 0, __ATOMIC_RELEASE);
	__atomic_fetch_sub(&homes[home], 1, __ATOMIC_RELEASE);
	__atomic_fetch_sub(&nroots, 1, __ATOMIC_RELAXED);
}

static uint64_t root_find(uintptr_t frame)
{
	unsigned i = slot_of(frame);
	if (!__atomic_load_n(&homes[i], __ATOMIC_ACQUIRE))
		return 0;
	for (unsigned n = 0; n < PROBE_MAX; n++, i = (i + 1) & (ROOTS - 1)) {
		if (__atomic_load_n(&roots[i].frame, __ATOMIC_ACQUIRE) != frame)
			continue;
		uint64_t t = __atomic_load_n(&roots[i].token, __ATOMIC_ACQUIRE);
		/* Re-check: the slot may have been recycled meanwhile. */
		if (__atomic_load_n(&roots[i].frame, __ATOMIC_ACQUIRE) == frame)
			return t;
		return 0;
	}
	return 0;
}

/* Threads working for a request (thread_enter): tid -> token, readable from
 * other threads (the sampler) without locks. Open addressing; a slot is
 * free while its tid is 0. */
#define THREADS 1024
static struct thread_scope {
	uint32_t tid;
	uint64_t token;
} thread_scopes[THREADS];

static void thread_scope_set(uint32_t tid, uint64_t token)
{
	unsigned i = (tid * 2654435761u) & (THREADS - 1);
	for (unsigned n = 0; n < THREADS; n++, i = (i + 1) & (THREADS - 1)) {
		uint32_t cur = __atomic_load_n(&thread_scopes[i].tid, __ATOMIC_ACQUIRE);
		if (cur == tid) {
			__atomic_store_n(&thread_scopes[i].token, token, __ATOMIC_RELEASE);
			return;
		}
		if (cur == 0 && token) {
			uint32_t expect = 0;
			if (__atomic_compare_exchange_n(&thread_scopes[i].tid, &expect, tid, 0, __ATOMIC_ACQ_REL,
							__ATOMIC_RELAXED)) {
				__atomic_store_n(&thread_scopes[i].token, token, __ATOMIC_RELEASE);
				return;
			}
			if (expect == tid) {
				__atomic_store_n(&thread_scopes[i].token, token, __ATOMIC_RELEASE);
				return;
			}
		}
	}
}

/* The request a thread works for, as its thread_enter said; 0 if none.
 * Lock-free: called by the sampler for other threads. */
uint64_t tg_scope_of_thread(uint32_t tid);
uint64_t tg_scope_of_thread(uint32_t tid)
{
	unsigned i = (tid * 2654435761u) & (THREADS - 1);
	for (unsigned n = 0; n < THREADS; n++, i = (i + 1) & (THREADS - 1)) {
		uint32_t cur = __atomic_load_n(&thread_scopes[i].tid, __ATOMIC_ACQUIRE);
		if (cur == tid)
			return __atomic_load_n(&thread_scopes[i].token, __ATOMIC_ACQUIRE);
		if (cur == 0)
			return 0;
	}
	return 0;
}

/* The request whose root frame is the innermost of frames[] (innermost
 * first) that is one; 0 if none. Lock-free: called by the sampler. */
uint64_t tg_scope_of_frames(const uintptr_t *frames, int n);
uint64_t tg_scope_of_frames(const uintptr_t *frames, int n)
{
	if (!__atomic_load_n(&nroots, __ATOMIC_RELAXED))
		return 0;
	for (int i = 0; i < n; i++) {
		uint64_t t = root_find(frames[i]);
		if (t)
			return t;
	}
	return 0;
}

uint64_t tg_scope_current(void)
{
	if (thread_token)
		return thread_token;
	if (!__atomic_load_n(&nroots, __ATOMIC_RELAXED))
		return 0;
	uintptr_t frames[FRAMES_MAX];
	int n = tg_py_thread_frames(frames, FRAMES_MAX);
	for (int i = 0; i < n; i++) {
		uint64_t t = root_find(frames[i]);
		if (t)
			return t;
	}
	return 0;
}

/* The token of the request the calling thread works for: its thread's
 * (timeglass_thread_enter), else the innermost root frame on its Python
 * stack; 0 if none. What a query made here would be attributed to; the
 * marker asks it rather than keep the token in a context variable. */
__attribute__((visibility("default"))) uint64_t timeglass_scope_current(void);
uint64_t timeglass_scope_current(void)
{
	if (!tg_proc.enabled)
		return 0;
	int saved = errno;
	uint64_t token = tg_scope_current();
	errno = saved;
	return token;
}

/* ---- scope and call site in one walk ----------------------------------
 *
 * A query needs both its request scope (the innermost registered root frame
 * on the stack) and its call site (the innermost frame of the app's own
 * code). One walk of the thread's frames gives both; what costs most -
 * deciding whether a code object is the app's, and turning (code, offset)
 * into "file:line function" - is cached process-wide. The app/library
 * verdict is cached per code object address; a site string per (code,
 * identity, offset), the identity guarding against a code object freed and
 * another allocated at its address.
 */

#define CTX_FRAMES 128     /* frames walked when the scope must be found */
#define APP_SLOTS 2048     /* code objects classified (power of two) */
#define SITE_SLOTS 1024    /* call sites cached (power of two) */
#define RD_SLOTS 4         /* pages cached by the reader during one walk */

static struct app_ent {
	uintptr_t code;
	int app;
} app_cache[APP_SLOTS];

static struct site_ent {
	uintptr_t code;
	uint64_t ident;
	int32_t lasti;
	uint16_t len;
	char text[TG_CALL_SITE_MAX];
} site_cache[SITE_SLOTS];

static int cache_lock;

static void cache_acquire(void)
{
	while (__atomic_exchange_n(&cache_lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void cache_release(void)
{
	__atomic_store_n(&cache_lock, 0, __ATOMIC_RELEASE);
}

/* 1 if code is the app's own; -1 if it cannot be read. */
static int is_app_code(struct tg_py_rd *rd, uintptr_t code)
{
	struct app_ent *e = &app_cache[(code >> 4) & (APP_SLOTS - 1)];
	cache_acquire();
	int app = e->code == code ? e->app : -2;
	cache_release();
	if (app != -2)
		return app;
	static TG_TLS struct tg_py_code_info ci;
	if (tg_py_code_info(rd, code, &ci, NULL, 0) < 0)
		return -1;
	app = tg_py_is_app_file(ci.filename);
	cache_acquire();
	e->code = code;
	e->app = app;
	cache_release();
	return app;
}

/* "file:line function" of frame f into site (cap bytes). Returns its length. */
static size_t site_of(struct tg_py_rd *rd, const struct tg_py_frame *f, char *site, size_t cap)
{
	uint64_t ident;
	if (tg_py_code_ident(rd, f->code, &ident) < 0)
		return 0;
	unsigned h = (unsigned)(((f->code >> 4) * 31 + (uintptr_t)f->lasti) & (SITE_SLOTS - 1));
	struct site_ent *e = &site_cache[h];
	size_t len = 0;
	int hit = 0;
	cache_acquire();
	if (e->code == f->code && e->ident == ident && e->lasti == f->lasti) {
		len = e->len < cap ? e->len : cap;
		memcpy(site, e->text, len);
		hit = 1;
	}
	cache_release();
	if (hit)
		return len;
	static TG_TLS struct tg_py_code_info ci;
	static TG_TLS uint8_t table[4096];
	if (tg_py_code_info(rd, f->code, &ci, table, sizeof table) < 0)
		return 0;
	int line = tg_py_addr2line(table, ci.table_len, ci.firstlineno, f->lasti);
	if (line < 0)
		line = ci.firstlineno;
	char text[TG_CALL_SITE_MAX];
	int w = snprintf(text, sizeof text, "%s:%d %s", ci.filename, line, ci.qualname);
	if (w <= 0)
		return 0;
	len = (size_t)w < sizeof text ? (size_t)w : sizeof text - 1;
	cache_acquire();
	e->code = f->code;
	e->ident = ident;
	e->lasti = f->lasti;
	e->len = (uint16_t)len;
	memcpy(e->text, text, len);
	cache_release();
	if (len > cap)
		len = cap;
	memcpy(site, text, len);
	return len;
}

size_t tg_taps_context(uint64_t *scope, char *site, size_t cap)
{
	*scope = thread_token;
	if (tg_py_init() < 0)
		return 0;
	uintptr_t tags[RD_SLOTS];
	uint8_t pages[RD_SLOTS * 4096];
	struct tg_py_rd rd = {.tags = tags, .pages = pages, .nslots = RD_SLOTS};
	tg_py_rd_reset(&rd);
	int need_scope = !*scope && __atomic_load_n(&nroots, __ATOMIC_RELAXED);
	uintptr_t ts = tg_py_my_thread_state(&rd);
	struct tg_py_own w;
	if (!ts || tg_py_own_begin(ts, &w) < 0)
		return 0;
	/* Our own live frames, read with plain loads (see pyframes.h), one at
	 * a time until both are found: the call site is most often the
	 * innermost frame or the next, the request's root a dozen up. */
	rd.direct = 1;
	size_t len = 0;
	int site_done = 0;
	struct tg_py_frame fr;
	int i = 0;
	for (; i < CTX_FRAMES && !site_done && tg_py_own_next(&w, &fr) > 0; i++) {
		if (need_scope) {
			uint64_t t = root_find(fr.frame);
			if (t) {
				*scope = t;
				need_scope = 0;
			}
		}
		int app = is_app_code(&rd, fr.code);
		if (app < 0)
			return 0; /* the chain moved under us: no site rather than a wrong one */
		if (app) {
			len = site_of(&rd, &fr, site, cap);
			site_done = 1;
		}
	}
	/* Only the request's root is left to find, by frame address alone:
	 * shim frames are never roots (the marker registers Python frames). */
	for (uintptr_t f; need_scope && i < 2 * CTX_FRAMES && (f = tg_py_own_next_addr(&w)) != 0; i++) {
		uint64_t t = root_find(f);
		if (t) {
			*scope = t;
			need_scope = 0;
		}
	}
	return len;
}


static void emit_scope(unsigned kind, uint64_t token, const char *host, int port, uint64_t conn_id)
{
	struct tg_ev_scope *ev = tg_reserve(sizeof *ev);
	if (!ev)
		return;
	memset((char *)ev + sizeof ev->h, 0, sizeof *ev - sizeof ev->h);
	ev->tid = tg_tid();
	ev->kind = (uint16_t)kind;
	ev->token = token;
	ev->ts_ns = tg_now_ns();
	/* The collector joins a scope by its connection when it has one; the
	 * client address is for those without (collector/scopes.c, matches()). */
	if (!conn_id) {
		ev->client_family = tg_parse_host(host, ev->client_addr);
		ev->client_port = (uint16_t)port;
	}
	ev->conn_id = conn_id;
	tg_ring_commit(ev, sizeof *ev, TG_EV_REQ_SCOPE, 0);
}

TG_EXPORT uint64_t timeglass_scope_enter(const char *client_host, int client_port);
TG_EXPORT uint64_t timeglass_scope_begin(int fd, const char *client_host, int client_port);
TG_EXPORT void timeglass_scope_exit(uint64_t token);
TG_EXPORT uint64_t timeglass_scope_adopt(uintptr_t frame, uint64_t token);
TG_EXPORT void timeglass_scope_release(uint64_t handle);
TG_EXPORT void timeglass_thread_enter(uint64_t token);
TG_EXPORT void timeglass_thread_exit(void);
TG_EXPORT void timeglass_fd_scope(int fd, uint64_t token, int bind);

/* Starts the scope of the request served by the calling task, whose
 * innermost Python frame becomes the request's root. fd is the socket the
 * request came on (-1: unknown), which ties the scope to the request's
 * connection whatever client address the app was given (proxy headers
 * rewrite it); client is the address the app was given (NULL/0 for an
 * in-process request). Returns the token (0 when not recording). */
uint64_t timeglass_scope_begin(int fd, const char *client_host, int client_port)
{
	if (!tg_proc.enabled)
		return 0;
	int saved = errno;
	uint64_t counter = __atomic_add_fetch(&next_token, 1, __ATOMIC_RELAXED);
	uint64_t token = counter << KEY_SHIFT;
	uintptr_t frame;
	if (tg_py_thread_frames(&frame, 1) == 1)
		token = root_add(frame, 0, counter);
	emit_scope(TG_SCOPE_BEGIN, token, client_host, client_port, fd >= 0 ? tg_conn_inbound_id(fd) : 0);
	errno = saved;
	return token;
}

/* timeglass_scope_begin() without the socket (ABI 2). */
uint64_t timeglass_scope_enter(const char *client_host, int client_port)
{
	return timeglass_scope_begin(-1, client_host, client_port);
}

/* Ends a scope begun by timeglass_scope_begin (token 0 is ignored). */
void timeglass_scope_exit(uint64_t token)
{
	if (!token || !tg_proc.enabled)
		return;
	int saved = errno;
	if (__atomic_load_n(&nroots, __ATOMIC_RELAXED))
		root_del(token);
	emit_scope(TG_SCOPE_END, token, NULL, 0, 0);
	errno = saved;
}

/* frame - the _PyInterpreterFrame of a child task's coroutine, which lives
 * inside the coroutine object - is a root of request `token` too: what the
 * task does belongs to the request that started it. Returns the handle
 * that timeglass_scope_release() takes, 0 if not registered. The caller
 * must release it before the coroutine object can be freed. */
uint64_t timeglass_scope_adopt(uintptr_t frame, uint64_t token)
{
	if (!tg_proc.enabled || !frame || !token)
		return 0;
	uint64_t counter = __atomic_add_fetch(&next_token, 1, __ATOMIC_RELAXED);
	return root_add(frame, token, counter);
}

void timeglass_scope_release(uint64_t handle)
{
	if (handle && __atomic_load_n(&nroots, __ATOMIC_RELAXED))
		root_del(handle);
}

/* The calling thread works for the request of `token` until thread_exit. */
void timeglass_thread_enter(uint64_t token)
{
	thread_token = token;
	thread_scope_set(tg_tid(), token);
}

void timeglass_thread_exit(void)
{
	thread_token = 0;
	thread_scope_set(tg_tid(), 0);
}

/* A driver is about to run an operation on its connection socket fd for
 * the request of `token` (0: none) - bind 1 - or has finished it - bind 0.
 * Queries sent on fd meanwhile belong to that scope and the caller's call
 * site even when the bytes leave from the event loop, outside the task
 * (uvloop batches writes). */
void timeglass_fd_scope(int fd, uint64_t token, int bind)
{
	if (!tg_proc.enabled || fd < 0)
		return;
	int saved = errno;
	char site[TG_CALL_SITE_MAX];
	uint64_t walked;
	size_t len = bind ? tg_taps_context(&walked, site, sizeof site) : 0;
	tg_conn_bind(fd, bind, token, site, len);
	errno = saved;
}

static inline uint16_t cap16(size_t n, size_t cap)
{
	return (uint16_t)(n < cap ? n : cap);
}

static uint8_t *put(uint8_t *p, const char *s, size_t n)
{
	if (n)
		memcpy(p, s, n);
	return p + n;
}

void tg_emit_query(const struct tg_query_info *q)
{
	if (!tg_proc.enabled)
		return;
	int saved = errno;
	char site_buf[TG_CALL_SITE_MAX];
	const char *site = q->site;
	size_t site_len = q->site_len;
	uint64_t scope = q->scope;
	if (!q->site_set) {
		uint64_t walked;
		site = site_buf;
		site_len = tg_taps_context(&walked, site_buf, sizeof site_buf);
		if (!q->scope_set && !scope)
			scope = walked;
	} else if (!q->scope_set && !scope) {
		scope = tg_scope_current();
	}
	uint16_t flags = q->flags;
	size_t max = tg_sql_max();
	uint16_t sl = cap16(q->sql ? q->sql_len : 0, max);
	if (q->sql && q->sql_len > sl)
		flags |= TG_QF_SQL_TRUNCATED;
	uint16_t dl = cap16(q->db ? q->db_len : 0, TG_SQL_DB_MAX);
	uint16_t el = cap16(q->err ? q->err_len : 0, TG_SQL_ERR_MAX);
	uint16_t pl = tg_capture_params() ? cap16(q->params ? q->params_len : 0, TG_SQL_PARAMS_MAX) : 0;
	uint16_t tl = cap16(site_len, TG_CALL_SITE_MAX);
	uint32_t size = (uint32_t)sizeof(struct tg_ev_query) + sl + dl + el + pl + tl;
	uint8_t *rec = tg_reserve(size);
	if (!rec) {
		errno = saved;
		return;
	}
	struct tg_ev_query *ev = (struct tg_ev_query *)rec;
	ev->tid = tg_tid();
	ev->tap = q->tap;
	ev->db_system = q->db_system;
	ev->flags = flags;
	ev->scope = scope;
	ev->conn_key = q->conn_key;
	ev->start_ns = q->start_ns;
	ev->end_ns = q->end_ns >= q->start_ns ? q->end_ns : q->start_ns;
	ev->rows = q->rows;
	ev->params_hash = (flags & TG_QF_PARAMS_KNOWN) ? q->params_hash : 0;
	ev->executions = q->executions ? q->executions : 1;
	ev->sql_len = sl;
	ev->db_len = dl;
	ev->err_len = el;
	ev->params_len = pl;
	ev->site_len = tl;
	ev->pad0 = 0;
	uint8_t *p = rec + sizeof *ev;
	p = put(p, q->sql, sl);
	p = put(p, q->db, dl);
	p = put(p, q->err, el);
	p = put(p, q->params, pl);
	p = put(p, site, tl);
	uint32_t padded = (size + 7u) & ~7u;
	memset(p, 0, padded - size);
	tg_ring_commit(rec, size, TG_EV_QUERY, 0);
	errno = saved;
}

void tg_emit_http_call(const struct tg_http_call_info *h)
{
	if (!tg_proc.enabled)
		return;
	int saved = errno;
	uint16_t ml = cap16(h->method_len, 16), hl = cap16(h->host_len, 256), tl = cap16(h->target_len, 2048),
		 el = cap16(h->err_len, TG_SQL_ERR_MAX), sl = cap16(h->site_len, TG_CALL_SITE_MAX);
	uint32_t size = (uint32_t)sizeof(struct tg_ev_http_call) + ml + hl + tl + el + sl;
	uint8_t *rec = tg_reserve(size);
	if (!rec) {
		errno = saved;
		return;
	}
	struct tg_ev_http_call *ev = (struct tg_ev_http_call *)rec;
	ev->tid = tg_tid();
	ev->status = h->status;
	ev->flags = h->flags;
	ev->scope = h->scope;
	ev->start_ns = h->start_ns;
	ev->end_ns = h->end_ns >= h->start_ns ? h->end_ns : h->start_ns;
	ev->request_bytes = h->request_bytes;
	ev->response_bytes = h->response_bytes;
	ev->method_len = ml;
	ev->host_len = hl;
	ev->target_len = tl;
	ev->err_len = el;
	ev->site_len = sl;
	memset(ev->pad0, 0, sizeof ev->pad0);
	uint8_t *p = rec + sizeof *ev;
	p = put(p, h->method, ml);
	p = put(p, h->host, hl);
	p = put(p, h->target, tl);
	p = put(p, h->err, el);
	p = put(p, h->site, sl);
	uint32_t padded = (size + 7u) & ~7u;
	memset(p, 0, padded - size);
	tg_ring_commit(rec, size, TG_EV_HTTP_CALL, 0);
	errno = saved;
}

/* ---- real functions of libraries the app may load with dlopen ---- */

struct find_lib {
	const char *prefix;
	const char *name;
	void *ours;
	void *found;
};

static int find_in_object(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct find_lib *f = data;
	const char *path = info->dlpi_name;
	if (!path || !*path)
		return 0;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (strncmp(base, f->prefix, strlen(f->prefix)) != 0)
		return 0;
	void *h = dlopen(path, RTLD_NOLOAD | RTLD_LAZY);
	if (!h)
		return 0;
	void *fn = dlsym(h, f->name);
	if (fn && fn != f->ours) {
		f->found = fn;
		return 1;
	}
	return 0;
}

void *tg_lib_sym(const char *prefix, const char *name, void *ours)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn && fn != ours)
		return fn;
	struct find_lib f = {.prefix = prefix, .name = name, .ours = ours};
	dl_iterate_phdr(find_in_object, &f);
	return f.found;
}
