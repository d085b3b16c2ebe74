/*
 * collector/sql.c - attribution and storage of queries and outbound calls (sql.h).
 *
 * Workload: up to tens of thousands of queries per second over a few
 * hundred requests in flight. Per process: an array of pending records in
 * arrival order (each a private copy of its ring record) and a ring of the
 * most recent requests for the thread fallback; which request a scope token
 * stands for is the process's scope table (scopes.h). Settling runs every collector
 * tick; searches are linear over the pending set, which stays small
 * because requests complete within seconds.
 *
 * Findings, per request: a query is 'housekeeping' when its fingerprint
 * says the driver or a library ran it by itself (tg_sql_housekeeping):
 * such queries are stored and shown but are never an N+1 or a duplicate.
 * A duplicate repeats an earlier query of its request with the same text
 * and the same parameter values (their hash, from the tap); when a tap
 * could not see the values, the query is never called a duplicate. An N+1
 * is one fingerprint run n_plus_one times or more from one call site of
 * the app; a batch (executemany) is one call, however many executions it
 * stands for. Records that continue a batch (TG_QF_BATCH_CONT) are added
 * to the batch's first record while it is pending.
 */
#include "collector/sql.h"

#include <stdlib.h>
#include <string.h>

#include "common/event_sql.h"
#include "common/grow.h"
#include "collector/fingerprint.h"
#include "collector/scopes.h"

#define SETTLE_NO_TOKEN_NS (3LL * 1000000000)  /* tokenless records wait this long for their request */
#define SETTLE_TOKEN_NS (120LL * 1000000000)   /* records of a scope whose request never came */
#define PENDING_MAX 200000                     /* pending records per process; the oldest go first */
#define RECENT 4096                            /* recent requests kept for the thread fallback */
#define GROUP_MAX 4096                         /* records of one request fingerprinted together */
#define FP_MAX 4096                            /* bytes of fingerprint kept */
#define BATCH_LOOKBACK 4096                    /* pending records searched for a batch's first record */
#define STMT_SLOTS 1024                        /* statement texts remembered per process (a power of two) */
#define STMT_MAX 8192                          /* longer texts are not remembered */
#define REC_BLOCK 1024                         /* records up to this size are copied into blocks */
#if defined(__SANITIZE_ADDRESS__)
#define FREE_BLOCKS 0 /* every copy its own allocation: AddressSanitizer sees a use after free */
#else
#define FREE_BLOCKS 4096                       /* blocks kept for reuse per process (4 MiB) */
#endif

struct pending {
	void *rec;       /* private copy of the record, NULL once written */
	uint32_t size;
	uint16_t type;   /* TG_EV_QUERY or TG_EV_HTTP_CALL */
	uint32_t tid;
	uint64_t token;
	uint64_t start_ns, end_ns;
	int64_t seen_ns; /* collector time of arrival */
};

struct recent {
	uint32_t tid;
	uint64_t start_ns, end_ns;
	int64_t id;
};

/* What a statement's text gives, worked out once per text: an app runs the
 * same few statements over and over. */
struct stmt {
	int64_t hash;       /* tg_hash_mem() of the text */
	size_t len;         /* of the text */
	char *text;         /* the text, then its redacted form, then its fingerprint (one allocation) */
	const char *red, *fp;
	size_t red_len, fp_len;
	int64_t fp_hash;
	int housekeeping;
};

struct tg_sql_proc {
	struct pending *pend;
	size_t npend, pend_cap, pend_live;
	struct stmt stmts[STMT_SLOTS]; /* by hash, the last text of each slot */
	struct recent recent[RECENT];
	size_t nrecent, recent_next;
	/* Blocks of REC_BLOCK bytes given back by written records, each
	 * holding the next: a query's copy costs no malloc() and free(). */
	void *free_blocks;
	size_t nfree;
};

struct tg_sql_proc *tg_sql_proc_new(void)
{
	return calloc(1, sizeof(struct tg_sql_proc));
}

void tg_sql_proc_free(struct tg_sql_proc *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->npend; i++)
		free(p->pend[i].rec);
	free(p->pend);
	for (size_t i = 0; i < STMT_SLOTS; i++)
		free(p->stmts[i].text);
	while (p->free_blocks) {
		void *next = *(void **)p->free_blocks;
		free(p->free_blocks);
		p->free_blocks = next;
	}
	free(p);
}

/* Room for a private copy of a record of size bytes: a block when it fits
 * one (a kept one if any), else its own allocation. NULL out of memory. */
static void *rec_alloc(struct tg_sql_proc *p, uint32_t size)
{
	if (size > REC_BLOCK)
		return malloc(size);
	void *b = p->free_blocks;
	if (!b)
		return malloc(REC_BLOCK);
	p->free_blocks = *(void **)b;
	p->nfree--;
	return b;
}

/* Gives back rec_alloc(p, size)'s memory. */
static void rec_free(struct tg_sql_proc *p, void *rec, uint32_t size)
{
	if (size > REC_BLOCK || p->nfree + 1 > FREE_BLOCKS) { /* FREE_BLOCKS may be 0 */
		free(rec);
		return;
	}
	*(void **)rec = p->free_blocks;
	p->free_blocks = rec;
	p->nfree++;
}

/* ---- decoding ---------------------------------------------------------- */

/* Checks a query record's lengths. */
static int check_query(const void *rec, uint32_t size)
{
	if (size < sizeof(struct tg_ev_query))
		return -1;
	const struct tg_ev_query *q = rec;
	uint64_t need = sizeof *q + (uint64_t)q->sql_len + q->db_len + q->err_len + q->params_len + q->site_len;
	if (need > size || q->tap < TG_TAP_LIBPQ || q->tap > TG_TAP_SQLITE3 || q->db_system < TG_DB_POSTGRESQL ||
	    q->db_system > TG_DB_SQLITE || q->end_ns < q->start_ns || q->executions == 0)
		return -1;
	return 0;
}

static int check_call(const void *rec, uint32_t size)
{
	if (size < sizeof(struct tg_ev_http_call))
		return -1;
	const struct tg_ev_http_call *h = rec;
	uint64_t need = sizeof *h + (uint64_t)h->method_len + h->host_len + h->target_len + h->err_len + h->site_len;
	if (need > size || h->end_ns < h->start_ns)
		return -1;
	return 0;
}

/* ---- writing ----------------------------------------------------------- */

static const char *tap_name(unsigned tap)
{
	return tap == TG_TAP_LIBPQ ? "libpq" : tap == TG_TAP_WIRE ? "wire" : "sqlite3";
}

/* The redacted text, fingerprint and kind of statement sql[0..n), whose
 * hash is h (tg_hash_mem): the slot remembered for it, else worked out into
 * *tmp (valid until the next call). */
static const struct stmt *stmt_of(struct tg_sql_proc *p, const char *sql, size_t n, int64_t h, struct stmt *tmp)
{
	static char red[TG_SQL_MAX_LIMIT + 64], fp[FP_MAX];
	struct stmt *st = &p->stmts[(uint64_t)h & (STMT_SLOTS - 1)];
	if (st->text && st->hash == h && st->len == n && memcmp(st->text, sql, n) == 0)
		return st;
	size_t red_len = tg_sql_redact(sql, n, red, sizeof red);
	size_t fp_len = tg_sql_fingerprint(sql, n, fp, sizeof fp);
	char *text = n <= STMT_MAX ? malloc(n + red_len + fp_len + 1) : NULL;
	if (text) {
		free(st->text);
		memcpy(text, sql, n);
		memcpy(text + n, red, red_len);
		memcpy(text + n + red_len, fp, fp_len);
	} else {
		st = tmp;
	}
	*st = (struct stmt){.hash = h, .len = n, .text = text, .red = text ? text + n : red, .red_len = red_len,
			    .fp = text ? text + n + red_len : fp, .fp_len = fp_len, .fp_hash = tg_hash64(fp, fp_len, 0),
			    .housekeeping = tg_sql_housekeeping(fp, fp_len)};
	return st;
}

struct fp {
	int64_t sql;      /* the statement's text (stmt_of()) */
	int64_t hash;     /* fingerprint */
	int64_t exact;    /* text and parameter values: duplicates */
	int64_t site;     /* call site */
	int known;        /* the values are known (else never a duplicate) */
	int housekeeping;
};

static void query_fp(struct tg_sql_proc *p, const struct tg_ev_query *q, struct fp *f)
{
	const char *sql = (const char *)(q + 1);
	struct stmt tmp;
	f->sql = tg_hash_mem(sql, q->sql_len, 0);
	const struct stmt *st = stmt_of(p, sql, q->sql_len, f->sql, &tmp);
	f->hash = st->fp_hash;
	const char *params = sql + q->sql_len + q->db_len + q->err_len;
	f->known = (q->flags & TG_QF_PARAMS_KNOWN) != 0;
	f->exact = tg_hash_mem(&q->params_hash, sizeof q->params_hash, (uint64_t)st->hash);
	f->site = tg_hash_mem(params + q->params_len, q->site_len, 0);
	f->housekeeping = st->housekeeping;
}

/* Writes query pe; sql_hash is its text's tg_hash_mem(), or 0 for not
 * worked out yet. */
static void write_query(const struct tg_sql_ctx *c, struct tg_sql_proc *p, const struct pending *pe,
			int64_t sql_hash, int64_t request_id, const char *attribution, int duplicate,
			int n_plus_one)
{
	const struct tg_ev_query *q = pe->rec;
	const char *sql = (const char *)(q + 1);
	const char *db = sql + q->sql_len, *err = db + q->db_len, *params = err + q->err_len,
		   *site = params + q->params_len;
	static char pred[TG_SQL_PARAMS_MAX + 64];
	struct stmt tmp;
	const struct stmt *st =
		stmt_of(p, sql, q->sql_len, sql_hash ? sql_hash : tg_hash_mem(sql, q->sql_len, 0), &tmp);
	size_t pred_len = q->params_len ? tg_sql_redact(params, q->params_len, pred, sizeof pred) : 0;
	struct tg_query_row row = {
		.run_id = c->run_id,
		.process_id = c->process_id,
		.request_id = request_id,
		.pid = c->pid,
		.tid = q->tid,
		.start_unix_ns = (int64_t)q->start_ns + c->mono_to_unix,
		.duration_ns = (int64_t)(q->end_ns - q->start_ns),
		.db_system = q->db_system == TG_DB_SQLITE ? "sqlite" : "postgresql",
		.tap = tap_name(q->tap),
		.database = q->db_len ? db : NULL,
		.database_len = q->db_len,
		.sql = st->red,
		.sql_len = st->red_len,
		.sql_truncated = (q->flags & TG_QF_SQL_TRUNCATED) != 0,
		.fingerprint = st->fp,
		.fingerprint_len = st->fp_len,
		.fingerprint_hash = st->fp_hash,
		.params = q->params_len ? pred : NULL,
		.params_len = pred_len,
		.rows = q->rows,
		.has_rows = !(q->flags & TG_QF_ROWS_UNKNOWN),
		.error = (q->flags & TG_QF_ERROR) ? err : NULL,
		.error_len = q->err_len,
		.call_site = q->site_len ? site : NULL,
		.call_site_len = q->site_len,
		.attribution = attribution,
		.duplicate = duplicate,
		.n_plus_one = n_plus_one,
		.kind = st->housekeeping ? "housekeeping" : "app",
		.executions = q->executions,
	};
	tg_store_query_add(c->store, &row);
}

/* "/path?query" -> "/path" for the spans table (queries may carry secrets). */
static size_t path_len(const char *t, size_t n)
{
	const char *q = memchr(t, '?', n);
	return q ? (size_t)(q - t) : n;
}

static void write_call(const struct tg_sql_ctx *c, const struct pending *pe, int64_t request_id,
		       const char *attribution)
{
	const struct tg_ev_http_call *h = pe->rec;
	const char *method = (const char *)(h + 1);
	const char *host = method + h->method_len, *target = host + h->host_len, *err = target + h->target_len,
		   *site = err + h->err_len;
	struct tg_span_row row = {
		.run_id = c->run_id,
		.process_id = c->process_id,
		.request_id = request_id,
		.pid = c->pid,
		.tid = h->tid,
		.kind = "http_client",
		.start_unix_ns = (int64_t)h->start_ns + c->mono_to_unix,
		.duration_ns = (int64_t)(h->end_ns - h->start_ns),
		.method = h->method_len ? method : NULL,
		.method_len = h->method_len,
		.host = h->host_len ? host : NULL,
		.host_len = h->host_len,
		.path = h->target_len ? target : NULL,
		.path_len = path_len(target, h->target_len),
		.status = h->status,
		.request_bytes = (int64_t)h->request_bytes,
		.response_bytes = (int64_t)h->response_bytes,
		.tls = (h->flags & TG_HF_TLS) != 0,
		.error = h->err_len ? err : NULL,
		.error_len = h->err_len,
		.call_site = h->site_len ? site : NULL,
		.call_site_len = h->site_len,
		.attribution = attribution,
	};
	tg_store_span_add(c->store, &row);
}

static void drop(struct tg_sql_proc *p, struct pending *pe)
{
	rec_free(p, pe->rec, pe->size);
	pe->rec = NULL;
	p->pend_live--;
}

/* Writes one record alone (no N+1 context). */
static void write_one(const struct tg_sql_ctx *c, struct tg_sql_proc *p, struct pending *pe, int64_t request_id,
		      const char *attribution)
{
	if (pe->type == TG_EV_QUERY)
		write_query(c, p, pe, 0, request_id, attribution, 0, 0);
	else
		write_call(c, pe, request_id, attribution);
	drop(p, pe);
}

/* Writes the records of one request together: duplicates (same text and
 * parameter values, after the first) and N+1 (a fingerprint run n_plus_one
 * times or more from one call site) are flagged, never on housekeeping. */
static void write_group(const struct tg_sql_ctx *c, struct tg_sql_proc *p, struct pending **g, size_t n,
			int64_t request_id, const char *attribution)
{
	static struct fp fps[GROUP_MAX];
	for (size_t i = 0; i < n; i++)
		if (g[i]->type == TG_EV_QUERY)
			query_fp(p, g[i]->rec, &fps[i]);
	unsigned limit = c->n_plus_one ? c->n_plus_one : 5;
	for (size_t i = 0; i < n; i++) {
		if (g[i]->type != TG_EV_QUERY) {
			write_call(c, g[i], request_id, attribution);
			continue;
		}
		if (fps[i].housekeeping) {
			write_query(c, p, g[i], fps[i].sql, request_id, attribution, 0, 0);
			continue;
		}
		int dup = 0;
		unsigned same = 0;
		for (size_t j = 0; j < n; j++) {
			if (g[j]->type != TG_EV_QUERY)
				continue;
			if (j < i && fps[i].known && fps[j].known && fps[j].exact == fps[i].exact)
				dup = 1;
			if (fps[j].hash == fps[i].hash && fps[j].site == fps[i].site)
				same++;
		}
		write_query(c, p, g[i], fps[i].sql, request_id, attribution, dup, same >= limit);
	}
	for (size_t i = 0; i < n; i++)
		drop(p, g[i]);
}

/* 1 once the request of scope token is known, its row in *id (0: the row
 * was lost, as on a full disk); 0 while unknown. */
static int scope_request(const struct tg_sql_ctx *c, uint64_t token, int64_t *id)
{
	const struct tg_scope *s = token && c->scopes ? tg_scopes_find(c->scopes, token) : NULL;
	*id = s && s->joined ? s->request_id : 0;
	return s && s->joined;
}

static void compact(struct tg_sql_proc *p)
{
	size_t j = 0;
	for (size_t i = 0; i < p->npend; i++)
		if (p->pend[i].rec)
			p->pend[j++] = p->pend[i];
	p->npend = j;
}

/* The thread fallback: the one request in flight on tid when [start, end]
 * ran, or 0 if none or several. */
static int64_t by_thread(const struct tg_sql_proc *p, uint32_t tid, uint64_t start, uint64_t end)
{
	int64_t found = 0;
	for (size_t i = 0; i < p->nrecent; i++) {
		const struct recent *r = &p->recent[i];
		if (r->tid != tid || start < r->start_ns || end > r->end_ns)
			continue;
		if (found)
			return 0;
		found = r->id;
	}
	return found;
}

/* Writes a record whose time is up: its scope's request if known (none if
 * that request's row was lost: never another request by thread), else by
 * thread, else none. */
static void settle_one(const struct tg_sql_ctx *c, struct tg_sql_proc *p, struct pending *pe)
{
	int64_t id;
	if (scope_request(c, pe->token, &id)) {
		write_one(c, p, pe, id, id ? "scope" : "none");
		return;
	}
	id = by_thread(p, pe->tid, pe->start_ns, pe->end_ns);
	write_one(c, p, pe, id, id ? "thread" : "none");
}

/* ---- records ----------------------------------------------------------- */

static uint64_t mix_hash(uint64_t a, uint64_t b)
{
	uint64_t h = (a ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
	h ^= b + 0x94d049bb133111ebull + (h << 6) + (h >> 2);
	return h;
}

/* 1 if queries a and b have the same text, or (psycopg2 puts the values
 * into the text) the same fingerprint. */
static int same_statement(const struct tg_ev_query *a, const struct tg_ev_query *b)
{
	if (a->sql_len == b->sql_len && memcmp(a + 1, b + 1, a->sql_len) == 0)
		return 1;
	static char fa[FP_MAX], fb[FP_MAX];
	size_t la = tg_sql_fingerprint((const char *)(a + 1), a->sql_len, fa, sizeof fa);
	size_t lb = tg_sql_fingerprint((const char *)(b + 1), b->sql_len, fb, sizeof fb);
	return la == lb && memcmp(fa, fb, la) == 0;
}

/* 1 if queries a and b come from the same call site (one call of the app). */
static int same_site(const struct tg_ev_query *a, const struct tg_ev_query *b)
{
	const char *sa = (const char *)(a + 1) + a->sql_len + a->db_len + a->err_len + a->params_len;
	const char *sb = (const char *)(b + 1) + b->sql_len + b->db_len + b->err_len + b->params_len;
	return a->site_len == b->site_len && memcmp(sa, sb, a->site_len) == 0;
}

/* Adds q, which continues a batch, to the batch's first record: the last
 * query pending on its connection, if it is that statement from the same
 * call site for the same scope. Returns 1 when done, 0 when q must stand
 * alone. */
static int merge_batch(struct tg_sql_proc *p, const struct tg_ev_query *q)
{
	size_t stop = p->npend > BATCH_LOOKBACK ? p->npend - BATCH_LOOKBACK : 0;
	for (size_t i = p->npend; i-- > stop;) {
		struct pending *pe = &p->pend[i];
		if (!pe->rec || pe->type != TG_EV_QUERY)
			continue;
		struct tg_ev_query *f = pe->rec;
		if (f->conn_key != q->conn_key || f->tap != q->tap)
			continue;
		if (f->scope != q->scope || (f->flags & TG_QF_ERROR) || !same_site(f, q) || !same_statement(f, q))
			return 0;
		f->executions = f->executions > UINT32_MAX - q->executions ? UINT32_MAX : f->executions + q->executions;
		if ((f->flags | q->flags) & TG_QF_ROWS_UNKNOWN)
			f->flags |= TG_QF_ROWS_UNKNOWN;
		else
			f->rows += q->rows;
		if (!(q->flags & TG_QF_PARAMS_KNOWN))
			f->flags &= (uint16_t)~TG_QF_PARAMS_KNOWN;
		/* The values of every execution, with its text when it holds them. */
		f->params_hash = mix_hash(f->params_hash,
					  mix_hash(q->params_hash, (uint64_t)tg_hash_mem(q + 1, q->sql_len, 0)));
		if (q->end_ns > f->end_ns)
			f->end_ns = q->end_ns;
		pe->end_ns = f->end_ns;
		return 1;
	}
	return 0;
}

int tg_sql_record(const struct tg_sql_ctx *c, struct tg_sql_proc *p, const void *rec, uint32_t size, int64_t now)
{
	const struct tg_ev_hdr *h = rec;
	struct pending pe = {.size = size, .type = h->type, .seen_ns = now};
	if (h->type == TG_EV_QUERY) {
		if (check_query(rec, size) < 0)
			return -1;
		const struct tg_ev_query *q = rec;
		if ((q->flags & TG_QF_BATCH_CONT) && !(q->flags & TG_QF_ERROR) && merge_batch(p, q))
			return 0;
		pe.tid = q->tid;
		pe.token = q->scope;
		pe.start_ns = q->start_ns;
		pe.end_ns = q->end_ns;
	} else if (h->type == TG_EV_HTTP_CALL) {
		if (check_call(rec, size) < 0)
			return -1;
		const struct tg_ev_http_call *hc = rec;
		pe.tid = hc->tid;
		pe.token = hc->scope;
		pe.start_ns = hc->start_ns;
		pe.end_ns = hc->end_ns;
	} else {
		return -1;
	}
	pe.rec = rec_alloc(p, size);
	if (!pe.rec)
		return 0;
	memcpy(pe.rec, rec, size);
	/* Its request already stored, or lost (a late query of a finished
	 * request, say in a background task)? */
	int64_t id;
	if (scope_request(c, pe.token, &id)) {
		p->pend_live++;
		write_one(c, p, &pe, id, id ? "scope" : "none");
		return 0;
	}
	if (p->pend_live >= PENDING_MAX) {
		compact(p);
		settle_one(c, p, &p->pend[0]);
		compact(p);
	}
	if (p->npend == p->pend_cap) {
		compact(p);
		if (TG_GROW(p->pend, p->npend, p->pend_cap, 256) < 0) {
			rec_free(p, pe.rec, pe.size);
			return 0;
		}
	}
	p->pend[p->npend++] = pe;
	p->pend_live++;
	return 0;
}

void tg_sql_request(const struct tg_sql_ctx *c, struct tg_sql_proc *p, const struct tg_ev_request *r,
		    int64_t request_id, uint64_t token)
{
	struct recent *rc = &p->recent[p->recent_next];
	rc->tid = r->tid;
	rc->start_ns = r->start_ns;
	rc->end_ns = r->end_ns;
	rc->id = request_id;
	p->recent_next = (p->recent_next + 1) % RECENT;
	if (p->nrecent < RECENT)
		p->nrecent++;
	if (!token)
		return;
	/* request_id 0: the row was lost (a full disk): the scope's records go
	 * to no request, not to another one by thread. */
	const char *attribution = request_id ? "scope" : "none";
	/* Written records stay in the array until the next compaction: with
	 * as many of them as live ones, compact now, so that a request does
	 * not walk over a tick's worth of dead entries. */
	if (p->npend > 2 * p->pend_live + 256)
		compact(p);
	static struct pending *group[GROUP_MAX];
	size_t n = 0;
	for (size_t i = 0; i < p->npend; i++) {
		struct pending *pe = &p->pend[i];
		if (!pe->rec || pe->token != token)
			continue;
		group[n++] = pe;
		if (n == GROUP_MAX) {
			write_group(c, p, group, n, request_id, attribution);
			n = 0;
		}
	}
	if (n)
		write_group(c, p, group, n, request_id, attribution);
}

void tg_sql_lost_after(struct tg_sql_proc *p, int64_t kept)
{
	for (size_t i = 0; i < p->nrecent; i++)
		if (p->recent[i].id > kept)
			p->recent[i] = (struct recent){.tid = UINT32_MAX}; /* matches no thread */
}

void tg_sql_settle(const struct tg_sql_ctx *c, struct tg_sql_proc *p, int64_t now, int final)
{
	for (size_t i = 0; i < p->npend; i++) {
		struct pending *pe = &p->pend[i];
		if (!pe->rec)
			continue;
		int64_t age = now - pe->seen_ns;
		if (final || (!pe->token && age >= SETTLE_NO_TOKEN_NS) || age >= SETTLE_TOKEN_NS)
			settle_one(c, p, pe);
	}
	compact(p);
}
