/*
 * sql_pq.c - the libpq taps: queries of drivers that call the system libpq
 * through its exported functions (psycopg2, and anything linked against
 * libpq) become TG_EV_QUERY records with their text, duration from send to
 * the final result, rows, SQLSTATE and message, and database name.
 *
 * Covered: PQexec, PQexecParams, PQexecPrepared and PQprepare (sync); the
 * async path PQsendQuery, PQsendQueryParams, PQsendQueryPrepared and
 * PQsendPrepare followed by PQgetResult until it returns NULL, pipeline
 * mode included (a FIFO of sent queries per connection, results consumed in
 * order, PGRES_PIPELINE_SYNC results skipped); PQdescribePrepared/Portal
 * pass through (no statement runs). Prepared statement names are mapped to
 * their text per connection. libpq runs inside a tap with tg_in_libpq set,
 * and every tap marks PQsocket() as owned by libpq, so the wire parser and
 * the TLS taps leave such a connection alone from its first query on: no
 * query is counted twice. The connection functions are not interposed:
 * libpq calls PQconnectPoll internally, also for drivers that reach libpq
 * through ctypes (psycopg 3), whose connections belong to the wire parser.
 * Passwords never leave libpq: only PQdb() is recorded.
 *
 * A statement prepared (PQprepare, PQsendPrepare) and then executed by the
 * same request scope starts at its preparation: the server's parse time
 * belongs to that first execution, as on the wire (pgwire.h).
 *
 * Batches: psycopg2's executemany() runs its statement once per parameter
 * set, each a PQexec of its own, which nothing at the libpq level tells
 * from a loop of the app's. The bootstrap wraps executemany() in
 * timeglass_batch(1) ... timeglass_batch(0): meanwhile the queries after
 * the first one on a connection are flagged TG_QF_BATCH_CONT, and the
 * collector counts them as executions of the first.
 *
 * libpq usually arrives with dlopen (psycopg2's _psycopg module): real
 * functions are looked up in it on first use and never called when
 * missing. Inside a tap, nested libpq calls (PQexec calls PQsendQuery and
 * PQgetResult) pass straight through.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taps.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef unsigned int Oid;

enum { /* ExecStatusType */
	PGRES_EMPTY_QUERY = 0, PGRES_COMMAND_OK = 1, PGRES_TUPLES_OK = 2, PGRES_BAD_RESPONSE = 5,
	PGRES_NONFATAL_ERROR = 6, PGRES_FATAL_ERROR = 7, PGRES_SINGLE_TUPLE = 9, PGRES_PIPELINE_SYNC = 10,
	PGRES_PIPELINE_ABORTED = 11,
};
#define PG_DIAG_SQLSTATE 'C'
#define PG_DIAG_MESSAGE_PRIMARY 'M'

#define PARAMS_LIST \
	int n, const Oid *types, const char *const *values, const int *lengths, const int *formats, int rfmt
#define PREP_LIST int n, const char *const *values, const int *lengths, const int *formats, int rfmt

TG_EXPORT PGresult *PQexec(PGconn *c, const char *sql);
TG_EXPORT PGresult *PQexecParams(PGconn *c, const char *sql, PARAMS_LIST);
TG_EXPORT PGresult *PQprepare(PGconn *c, const char *name, const char *sql, int n, const Oid *types);
TG_EXPORT PGresult *PQexecPrepared(PGconn *c, const char *name, PREP_LIST);
TG_EXPORT int PQsendQuery(PGconn *c, const char *sql);
TG_EXPORT int PQsendQueryParams(PGconn *c, const char *sql, PARAMS_LIST);
TG_EXPORT int PQsendPrepare(PGconn *c, const char *name, const char *sql, int n, const Oid *types);
TG_EXPORT int PQsendQueryPrepared(PGconn *c, const char *name, PREP_LIST);
TG_EXPORT PGresult *PQgetResult(PGconn *c);
TG_EXPORT void PQfinish(PGconn *c);
TG_EXPORT void timeglass_batch(int on);

static struct {
	PGresult *(*exec)(PGconn *, const char *);
	PGresult *(*exec_params)(PGconn *, const char *, PARAMS_LIST);
	PGresult *(*prepare)(PGconn *, const char *, const char *, int, const Oid *);
	PGresult *(*exec_prepared)(PGconn *, const char *, PREP_LIST);
	int (*send_query)(PGconn *, const char *);
	int (*send_query_params)(PGconn *, const char *, PARAMS_LIST);
	int (*send_prepare)(PGconn *, const char *, const char *, int, const Oid *);
	int (*send_query_prepared)(PGconn *, const char *, PREP_LIST);
	PGresult *(*get_result)(PGconn *);
	void (*finish)(PGconn *);
	/* helpers, not interposed */
	int (*result_status)(const PGresult *);
	int (*ntuples)(const PGresult *);
	char *(*cmd_tuples)(PGresult *);
	char *(*error_field)(const PGresult *, int);
	char *(*error_message)(const PGconn *);
	char *(*db)(const PGconn *);
	int (*socket)(const PGconn *);
} real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

#define LIB "libpq.so"
#define RES(field, name) real.field = tg_lib_sym(LIB, #name, (void *)name)
#define HELP(field, name) real.field = tg_lib_sym(LIB, #name, NULL)

static void resolve(void)
{
	RES(exec, PQexec);
	RES(exec_params, PQexecParams);
	RES(prepare, PQprepare);
	RES(exec_prepared, PQexecPrepared);
	RES(send_query, PQsendQuery);
	RES(send_query_params, PQsendQueryParams);
	RES(send_prepare, PQsendPrepare);
	RES(send_query_prepared, PQsendQueryPrepared);
	RES(get_result, PQgetResult);
	RES(finish, PQfinish);
	HELP(result_status, PQresultStatus);
	HELP(ntuples, PQntuples);
	HELP(cmd_tuples, PQcmdTuples);
	HELP(error_field, PQresultErrorField);
	HELP(error_message, PQerrorMessage);
	HELP(db, PQdb);
	HELP(socket, PQsocket);
}

static inline void need_real(void)
{
	pthread_once(&real_once, resolve);
}

static int can_describe(void)
{
	return real.result_status && real.ntuples && real.cmd_tuples && real.error_field && real.error_message &&
	       real.db && real.socket;
}

/* 1 when a tap should record around this call. */
static inline int tapping(void)
{
	return tg_proc.enabled && !tg_tap_depth && can_describe() && tg_sql_on();
}

/* ---- per-connection state: prepared names and queries in flight ---- */

#define CONNS 1024        /* connections followed at once (slots) */
#define PREPARED_MAX 64   /* prepared statement names remembered per connection */
#define INFLIGHT_MAX 32   /* async/pipelined queries awaiting results per connection */

struct prepared {
	char *name;
	char *sql;
	uint64_t prep_ns;   /* when it was prepared, until its first execution */
	uint64_t prep_scope;
	int fresh;          /* not executed since it was prepared */
};

struct inflight {
	char *sql;          /* malloc'd copy, capped; NULL when unknown */
	size_t sql_len;
	uint64_t params_hash; /* of its parameter values (none: the empty hash) */
	uint64_t start_ns;
	uint64_t scope;     /* scope of the sender */
	int64_t rows;
	int failed;
	char err[TG_SQL_ERR_MAX];
	size_t err_len;
};

struct pqconn {
	PGconn *conn;       /* NULL = free slot */
	struct prepared prep[PREPARED_MAX];
	unsigned nprep, next_evict;
	struct inflight q[INFLIGHT_MAX];
	unsigned head, count;
};

static struct pqconn *conns[CONNS];
static int conns_lock;

static void lock(void)
{
	while (__atomic_exchange_n(&conns_lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void unlock(void)
{
	__atomic_store_n(&conns_lock, 0, __ATOMIC_RELEASE);
}

/* The state of c, created when `create`. Caller holds the lock. */
static struct pqconn *conn_state(PGconn *c, int create)
{
	unsigned h = (unsigned)(((uintptr_t)c >> 4) * 2654435761u) & (CONNS - 1);
	int free_slot = -1;
	for (unsigned n = 0; n < CONNS; n++, h = (h + 1) & (CONNS - 1)) {
		if (conns[h] && conns[h]->conn == c)
			return conns[h];
		if (free_slot < 0 && (!conns[h] || !conns[h]->conn))
			free_slot = (int)h;
		if (!conns[h])
			break;
	}
	if (!create || free_slot < 0)
		return NULL;
	struct pqconn *s = conns[free_slot];
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return NULL;
		conns[free_slot] = s;
	}
	s->conn = c;
	return s;
}

static void inflight_clear(struct inflight *f)
{
	free(f->sql);
	memset(f, 0, sizeof *f);
}

/* Forgets c (PQfinish). Slots are kept allocated for reuse. */
static void conn_forget(PGconn *c)
{
	lock();
	struct pqconn *s = conn_state(c, 0);
	if (s) {
		for (unsigned i = 0; i < s->nprep; i++) {
			free(s->prep[i].name);
			free(s->prep[i].sql);
		}
		for (unsigned i = 0; i < INFLIGHT_MAX; i++)
			inflight_clear(&s->q[i]);
		memset(s, 0, sizeof *s);
		/* conn stays NULL: a free slot; probe chains go through it */
	}
	unlock();
}

static char *dup_capped(const char *s, size_t *len)
{
	size_t n = strnlen(s, tg_sql_max() + 1);
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	*len = d ? n : 0;
	return d;
}

static void remember_prepared(PGconn *c, const char *name, const char *sql, uint64_t t0, uint64_t scope)
{
	if (!name || !sql)
		return;
	lock();
	struct pqconn *s = conn_state(c, 1);
	if (s) {
		unsigned slot = s->nprep;
		for (unsigned i = 0; i < s->nprep; i++)
			if (strcmp(s->prep[i].name, name) == 0)
				slot = i;
		if (slot == PREPARED_MAX)
			slot = s->next_evict++ % PREPARED_MAX;
		if (slot < s->nprep) {
			free(s->prep[slot].name);
			free(s->prep[slot].sql);
		} else {
			s->nprep++;
		}
		size_t dummy;
		s->prep[slot].name = strdup(name);
		s->prep[slot].sql = dup_capped(sql, &dummy);
		s->prep[slot].prep_ns = t0;
		s->prep[slot].prep_scope = scope;
		s->prep[slot].fresh = 1;
		if (!s->prep[slot].name || !s->prep[slot].sql) { /* keep the table consistent */
			free(s->prep[slot].name);
			free(s->prep[slot].sql);
			s->prep[slot] = s->prep[--s->nprep];
		}
	}
	unlock();
}

/* Copies the text prepared under name into buf; returns its length (0 if
 * unknown). An execution of it: *start moves back to its preparation when
 * this is the first one since and scope prepared it. */
static size_t prepared_sql(PGconn *c, const char *name, char *buf, size_t cap, uint64_t *start, uint64_t scope)
{
	size_t n = 0;
	if (!name)
		return 0;
	lock();
	struct pqconn *s = conn_state(c, 0);
	for (unsigned i = 0; s && i < s->nprep; i++) {
		if (strcmp(s->prep[i].name, name) == 0) {
			n = strnlen(s->prep[i].sql, cap);
			memcpy(buf, s->prep[i].sql, n);
			if (start && s->prep[i].fresh && s->prep[i].prep_scope == scope && s->prep[i].prep_ns <= *start)
				*start = s->prep[i].prep_ns;
			if (start)
				s->prep[i].fresh = 0;
			break;
		}
	}
	unlock();
	return n;
}

/* ---- batches (timeglass_batch) ---- */

static TG_TLS int batch_depth;    /* timeglass_batch(1) calls not yet closed */
static TG_TLS PGconn *batch_conn; /* connection of the batch's first query */

/* The calling thread runs one batch call of the app (on 1) until it ends
 * (on 0); calls nest. */
void timeglass_batch(int on)
{
	if (on) {
		if (batch_depth++ == 0)
			batch_conn = NULL;
	} else if (batch_depth > 0 && --batch_depth == 0) {
		batch_conn = NULL;
	}
}

/* 1 if a query on c now continues the calling thread's batch. */
static int batch_continues(PGconn *c)
{
	if (!batch_depth)
		return 0;
	if (batch_conn == c)
		return 1;
	batch_conn = c;
	return 0;
}

/* ---- describing results ---- */

static void mark_owned(PGconn *c)
{
	int fd = real.socket(c);
	if (fd >= 0)
		tg_out_owned_by_libpq(fd);
}

/* Adds what res says to rows / error. */
static void take_result(PGconn *c, PGresult *res, int64_t *rows, int *failed, char *err, size_t *err_len)
{
	if (!res) {
		const char *m = real.error_message(c);
		*failed = 1;
		int n = snprintf(err, TG_SQL_ERR_MAX, "%s", m ? m : "");
		*err_len = n < 0 ? 0 : (size_t)n >= TG_SQL_ERR_MAX ? TG_SQL_ERR_MAX - 1 : (size_t)n;
		return;
	}
	int st = real.result_status(res);
	if (st == PGRES_TUPLES_OK) {
		*rows += real.ntuples(res);
	} else if (st == PGRES_SINGLE_TUPLE) {
		*rows += 1;
	} else if (st == PGRES_COMMAND_OK) {
		const char *t = real.cmd_tuples(res);
		if (t && *t)
			*rows += strtoll(t, NULL, 10);
	} else if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_PIPELINE_ABORTED) {
		const char *code = real.error_field(res, PG_DIAG_SQLSTATE);
		const char *msg = real.error_field(res, PG_DIAG_MESSAGE_PRIMARY);
		if (st == PGRES_PIPELINE_ABORTED && !code) {
			code = "";
			msg = "pipeline aborted";
		}
		if (!*failed) {
			int n = snprintf(err, TG_SQL_ERR_MAX, "%s %s", code ? code : "", msg ? msg : "");
			*err_len = n < 0 ? 0 : (size_t)n >= TG_SQL_ERR_MAX ? TG_SQL_ERR_MAX - 1 : (size_t)n;
		}
		*failed = 1;
	}
}

/* Hash of the parameter values of a call (see tg_params_hash): text
 * values up to their NUL, binary ones by their length. */
static uint64_t hash_values(int n, const char *const *values, const int *lengths, const int *formats)
{
	uint64_t h = TG_PARAMS_HASH_INIT;
	for (int i = 0; i < n && values; i++) {
		int bin = formats && formats[i];
		int64_t len = !values[i] ? -1 : bin ? (lengths ? lengths[i] : 0) : (int64_t)strlen(values[i]);
		h = tg_params_hash(h, (uint32_t)i, (uint32_t)bin, values[i], len);
	}
	return h;
}

/* Parameters as "$1='text', $2=NULL, $3=<binary 4 bytes>" (only with
 * --capture-params). Returns the length written to out. */
static size_t fmt_params(int n, const char *const *values, const int *lengths, const int *formats, char *out,
			 size_t cap)
{
	size_t len = 0;
	for (int i = 0; i < n && values && len + 32 < cap; i++) {
		int w;
		if (!values[i])
			w = snprintf(out + len, cap - len, "%s$%d=NULL", i ? ", " : "", i + 1);
		else if (formats && formats[i])
			w = snprintf(out + len, cap - len, "%s$%d=<binary %d bytes>", i ? ", " : "", i + 1,
				     lengths ? lengths[i] : 0);
		else
			w = snprintf(out + len, cap - len, "%s$%d='%.200s'", i ? ", " : "", i + 1, values[i]);
		if (w < 0)
			break;
		len += (size_t)w < cap - len ? (size_t)w : cap - len - 1;
	}
	return len;
}

static void emit(PGconn *c, const char *sql, size_t sql_len, uint64_t start, int64_t rows, int failed,
		 const char *err, size_t err_len, uint64_t scope, int scope_set, const char *params,
		 size_t params_len, uint64_t params_hash)
{
	const char *db = real.db(c);
	struct tg_query_info q = {
		.tap = TG_TAP_LIBPQ,
		.db_system = TG_DB_POSTGRESQL,
		.flags = (uint16_t)((failed ? TG_QF_ERROR : 0) | TG_QF_PARAMS_KNOWN |
				    (batch_continues(c) ? TG_QF_BATCH_CONT : 0)),
		.params_hash = params_hash,
		.conn_key = (uint64_t)(uintptr_t)c,
		.start_ns = start,
		.end_ns = tg_now_ns(),
		.rows = rows,
		.sql = sql,
		.sql_len = sql_len,
		.db = db,
		.db_len = db ? strlen(db) : 0,
		.err = failed ? err : NULL,
		.err_len = failed ? err_len : 0,
		.scope = scope,
		.scope_set = scope_set,
		.params = params,
		.params_len = params_len,
	};
	if (!sql_len)
		q.flags |= TG_QF_SQL_TRUNCATED;
	tg_emit_query(&q);
}

/* Records a synchronous call that returned res; params (rendered, may be
 * NULL) and hash describe its parameter values. */
static void sync_done_p(PGconn *c, const char *sql, size_t sql_len, uint64_t start, PGresult *res,
			const char *params, size_t params_len, uint64_t hash);

static void sync_done(PGconn *c, const char *sql, size_t sql_len, uint64_t start, PGresult *res)
{
	sync_done_p(c, sql, sql_len, start, res, NULL, 0, TG_PARAMS_HASH_INIT);
}

static void sync_done_p(PGconn *c, const char *sql, size_t sql_len, uint64_t start, PGresult *res,
			const char *params, size_t params_len, uint64_t hash)
{
	int saved = errno;
	int64_t rows = 0;
	int failed = 0;
	char err[TG_SQL_ERR_MAX];
	size_t err_len = 0;
	mark_owned(c);
	take_result(c, res, &rows, &failed, err, &err_len);
	emit(c, sql, sql_len, start, rows, failed, err, err_len, 0, 0, params, params_len, hash);
	errno = saved;
}

#define ENTER() (tg_tap_depth++, tg_in_libpq++)
#define LEAVE() (tg_tap_depth--, tg_in_libpq--)

PGresult *PQexec(PGconn *c, const char *sql)
{
	need_real();
	if (!real.exec)
		return NULL;
	if (!tapping() || !sql)
		return real.exec(c, sql);
	uint64_t t0 = tg_now_ns();
	ENTER();
	PGresult *r = real.exec(c, sql);
	LEAVE();
	sync_done(c, sql, strlen(sql), t0, r);
	return r;
}

PGresult *PQexecParams(PGconn *c, const char *sql, PARAMS_LIST)
{
	need_real();
	if (!real.exec_params)
		return NULL;
	if (!tapping() || !sql)
		return real.exec_params(c, sql, n, types, values, lengths, formats, rfmt);
	uint64_t t0 = tg_now_ns();
	ENTER();
	PGresult *r = real.exec_params(c, sql, n, types, values, lengths, formats, rfmt);
	LEAVE();
	int saved = errno;
	char params[TG_SQL_PARAMS_MAX];
	size_t pl = tg_capture_params() ? fmt_params(n, values, lengths, formats, params, sizeof params) : 0;
	sync_done_p(c, sql, strlen(sql), t0, r, params, pl, hash_values(n, values, lengths, formats));
	errno = saved;
	return r;
}

PGresult *PQprepare(PGconn *c, const char *name, const char *sql, int n, const Oid *types)
{
	need_real();
	if (!real.prepare)
		return NULL;
	if (!tapping())
		return real.prepare(c, name, sql, n, types);
	uint64_t t0 = tg_now_ns();
	ENTER();
	PGresult *r = real.prepare(c, name, sql, n, types);
	LEAVE();
	int saved = errno;
	mark_owned(c);
	int ok = r && real.result_status(r) == PGRES_COMMAND_OK;
	if (ok)
		remember_prepared(c, name, sql, t0, tg_scope_current());
	else if (sql) /* a statement that does not compile is a failed query */
		sync_done(c, sql, strlen(sql), t0, r);
	errno = saved;
	return r;
}

PGresult *PQexecPrepared(PGconn *c, const char *name, PREP_LIST)
{
	need_real();
	if (!real.exec_prepared)
		return NULL;
	if (!tapping())
		return real.exec_prepared(c, name, n, values, lengths, formats, rfmt);
	uint64_t t0 = tg_now_ns();
	ENTER();
	PGresult *r = real.exec_prepared(c, name, n, values, lengths, formats, rfmt);
	LEAVE();
	int saved = errno;
	char sql[TG_SQL_MAX_LIMIT];
	size_t len = prepared_sql(c, name, sql, tg_sql_max(), &t0, tg_scope_current());
	char params[TG_SQL_PARAMS_MAX];
	size_t pl = tg_capture_params() ? fmt_params(n, values, lengths, formats, params, sizeof params) : 0;
	sync_done_p(c, sql, len, t0, r, params, pl, hash_values(n, values, lengths, formats));
	errno = saved;
	return r;
}

/* ---- async and pipeline ---- */

/* A query was sent (rc 1): queue it for PQgetResult. sql may be NULL with
 * name set (prepared); hash is that of its parameter values. */
static void sent(PGconn *c, int rc, const char *sql, const char *name, uint64_t t0, uint64_t hash)
{
	if (rc != 1)
		return;
	int saved = errno;
	mark_owned(c);
	uint64_t scope = tg_scope_current();
	char buf[TG_SQL_MAX_LIMIT];
	size_t len = 0;
	if (!sql && name) {
		len = prepared_sql(c, name, buf, tg_sql_max(), &t0, scope);
		sql = buf;
	} else if (sql) {
		len = strnlen(sql, tg_sql_max() + 1);
	}
	char *copy = malloc(len + 1);
	if (copy && len)
		memcpy(copy, sql, len);
	lock();
	struct pqconn *s = conn_state(c, 1);
	if (s && s->count < INFLIGHT_MAX) {
		struct inflight *f = &s->q[(s->head + s->count) % INFLIGHT_MAX];
		inflight_clear(f);
		f->sql = copy;
		f->sql_len = copy ? len : 0;
		f->params_hash = hash;
		f->start_ns = t0;
		f->scope = scope;
		s->count++;
		copy = NULL;
	}
	unlock();
	free(copy);
	errno = saved;
}

int PQsendQuery(PGconn *c, const char *sql)
{
	need_real();
	if (!real.send_query)
		return 0;
	if (!tapping())
		return real.send_query(c, sql);
	uint64_t t0 = tg_now_ns();
	ENTER();
	int rc = real.send_query(c, sql);
	LEAVE();
	sent(c, rc, sql, NULL, t0, TG_PARAMS_HASH_INIT);
	return rc;
}

int PQsendQueryParams(PGconn *c, const char *sql, PARAMS_LIST)
{
	need_real();
	if (!real.send_query_params)
		return 0;
	if (!tapping())
		return real.send_query_params(c, sql, n, types, values, lengths, formats, rfmt);
	uint64_t t0 = tg_now_ns();
	ENTER();
	int rc = real.send_query_params(c, sql, n, types, values, lengths, formats, rfmt);
	LEAVE();
	sent(c, rc, sql, NULL, t0, rc == 1 ? hash_values(n, values, lengths, formats) : 0);
	return rc;
}

int PQsendPrepare(PGconn *c, const char *name, const char *sql, int n, const Oid *types)
{
	need_real();
	if (!real.send_prepare)
		return 0;
	if (!tapping())
		return real.send_prepare(c, name, sql, n, types);
	uint64_t t0 = tg_now_ns();
	ENTER();
	int rc = real.send_prepare(c, name, sql, n, types);
	LEAVE();
	if (rc == 1) {
		int saved = errno;
		remember_prepared(c, name, sql, t0, tg_scope_current());
		mark_owned(c);
		errno = saved;
	}
	return rc;
}

int PQsendQueryPrepared(PGconn *c, const char *name, PREP_LIST)
{
	need_real();
	if (!real.send_query_prepared)
		return 0;
	if (!tapping())
		return real.send_query_prepared(c, name, n, values, lengths, formats, rfmt);
	uint64_t t0 = tg_now_ns();
	ENTER();
	int rc = real.send_query_prepared(c, name, n, values, lengths, formats, rfmt);
	LEAVE();
	sent(c, rc, NULL, name, t0, rc == 1 ? hash_values(n, values, lengths, formats) : 0);
	return rc;
}

PGresult *PQgetResult(PGconn *c)
{
	need_real();
	if (!real.get_result)
		return NULL;
	if (!tapping())
		return real.get_result(c);
	ENTER();
	PGresult *r = real.get_result(c);
	LEAVE();
	int saved = errno;
	lock();
	struct pqconn *s = conn_state(c, 0);
	if (s && s->count) {
		struct inflight *f = &s->q[s->head];
		if (r && real.result_status(r) == PGRES_PIPELINE_SYNC) {
			/* not a query's result */
		} else if (r) {
			take_result(c, r, &f->rows, &f->failed, f->err, &f->err_len);
		} else {
			/* NULL: the head query is complete. */
			struct inflight done = *f;
			memset(f, 0, sizeof *f);
			s->head = (s->head + 1) % INFLIGHT_MAX;
			s->count--;
			unlock();
			emit(c, done.sql, done.sql_len, done.start_ns, done.rows, done.failed, done.err,
			     done.err_len, done.scope, 1, NULL, 0, done.params_hash);
			free(done.sql);
			errno = saved;
			return r;
		}
	}
	unlock();
	errno = saved;
	return r;
}

/* ---- connections ---- */

void PQfinish(PGconn *c)
{
	need_real();
	if (!real.finish)
		return;
	if (c && tg_proc.enabled)
		conn_forget(c);
	ENTER();
	real.finish(c);
	LEAVE();
}
