/*
 * sql_sqlite.c - the sqlite3 taps: every statement the app runs on its own
 * SQLite databases (Python's sqlite3 module, SQLAlchemy over it) becomes a
 * TG_EV_QUERY record with its text, duration (first step to done, error or
 * reset), rows and error.
 *
 * Workload: Python's sqlite3 module prepares each statement once (it keeps
 * a statement cache), then steps it and resets it; per query we keep one
 * entry in a small per-thread table (SQLite connections are used by one
 * thread at a time) and write one record when the statement finishes.
 * Statements SQLite runs inside prepare or step (schema loading) are not
 * the app's and pass through. TimeGlass's own store is never captured:
 * connections to a file named timeglass.db, under a .timeglass directory or
 * at $TIMEGLASS_DB are skipped.
 *
 * Bound values are hashed as they are bound (sqlite3_bind_*), so that a
 * duplicate (same text, same values) can be told from the same statement
 * run on other values; the values themselves are only read with
 * --capture-params (sqlite3_expanded_sql).
 *
 * executemany: CPython's sqlite3 module (3.11 to 3.15 alike) runs each
 * parameter set of executemany() as reset, bind, step on one statement,
 * while execute() reads sqlite3_last_insert_rowid() after every statement
 * it runs, and both begin a DML call with sqlite3_get_autocommit() (to
 * open the implicit transaction; not in autocommit mode). So a DML
 * statement stepped again with neither call since its previous execution
 * finished is the next row of one executemany(): its record is flagged
 * TG_QF_BATCH_CONT and the collector adds it to the batch's first
 * execution.
 *
 * libsqlite3 usually arrives with dlopen (Python's _sqlite3 module), so the
 * real functions are looked up in it on first use (tg_lib_sym).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taps.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

#define SQLITE_OK 0
#define SQLITE_ROW 100
#define SQLITE_DONE 101
#define SQLITE_RANGE 25

typedef long long sqlite3_int64;
typedef unsigned long long sqlite3_uint64;

TG_EXPORT int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st, const char **tail);
TG_EXPORT int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags, sqlite3_stmt **st,
				 const char **tail);
TG_EXPORT int sqlite3_step(sqlite3_stmt *st);
TG_EXPORT int sqlite3_reset(sqlite3_stmt *st);
TG_EXPORT int sqlite3_finalize(sqlite3_stmt *st);
TG_EXPORT sqlite3_int64 sqlite3_last_insert_rowid(sqlite3 *db);
TG_EXPORT int sqlite3_get_autocommit(sqlite3 *db);
TG_EXPORT int sqlite3_bind_null(sqlite3_stmt *st, int i);
TG_EXPORT int sqlite3_bind_int(sqlite3_stmt *st, int i, int v);
TG_EXPORT int sqlite3_bind_int64(sqlite3_stmt *st, int i, sqlite3_int64 v);
TG_EXPORT int sqlite3_bind_double(sqlite3_stmt *st, int i, double v);
TG_EXPORT int sqlite3_bind_text(sqlite3_stmt *st, int i, const char *v, int n, void (*d)(void *));
TG_EXPORT int sqlite3_bind_text64(sqlite3_stmt *st, int i, const char *v, sqlite3_uint64 n, void (*d)(void *),
				  unsigned char enc);
TG_EXPORT int sqlite3_bind_blob(sqlite3_stmt *st, int i, const void *v, int n, void (*d)(void *));
TG_EXPORT int sqlite3_bind_blob64(sqlite3_stmt *st, int i, const void *v, sqlite3_uint64 n, void (*d)(void *));
TG_EXPORT int sqlite3_bind_zeroblob(sqlite3_stmt *st, int i, int n);
TG_EXPORT int sqlite3_clear_bindings(sqlite3_stmt *st);

static struct {
	int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
	int (*prepare_v3)(sqlite3 *, const char *, int, unsigned, sqlite3_stmt **, const char **);
	int (*step)(sqlite3_stmt *);
	int (*reset)(sqlite3_stmt *);
	int (*finalize)(sqlite3_stmt *);
	const char *(*sql)(sqlite3_stmt *);
	sqlite3 *(*db_handle)(sqlite3_stmt *);
	const char *(*db_filename)(sqlite3 *, const char *);
	const char *(*errmsg)(sqlite3 *);
	int (*changes)(sqlite3 *);
	int (*stmt_readonly)(sqlite3_stmt *);
	char *(*expanded_sql)(sqlite3_stmt *);
	void (*free_)(void *);
	int (*bind_parameter_count)(sqlite3_stmt *);
	sqlite3_int64 (*last_insert_rowid)(sqlite3 *);
	int (*get_autocommit)(sqlite3 *);
	int (*bind_null)(sqlite3_stmt *, int);
	int (*bind_int)(sqlite3_stmt *, int, int);
	int (*bind_int64)(sqlite3_stmt *, int, sqlite3_int64);
	int (*bind_double)(sqlite3_stmt *, int, double);
	int (*bind_text)(sqlite3_stmt *, int, const char *, int, void (*)(void *));
	int (*bind_text64)(sqlite3_stmt *, int, const char *, sqlite3_uint64, void (*)(void *), unsigned char);
	int (*bind_blob)(sqlite3_stmt *, int, const void *, int, void (*)(void *));
	int (*bind_blob64)(sqlite3_stmt *, int, const void *, sqlite3_uint64, void (*)(void *));
	int (*bind_zeroblob)(sqlite3_stmt *, int, int);
	int (*clear_bindings)(sqlite3_stmt *);
} real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

#define LIB "libsqlite3.so"

static void resolve(void)
{
	real.prepare_v2 = tg_lib_sym(LIB, "sqlite3_prepare_v2", (void *)sqlite3_prepare_v2);
	real.prepare_v3 = tg_lib_sym(LIB, "sqlite3_prepare_v3", (void *)sqlite3_prepare_v3);
	real.step = tg_lib_sym(LIB, "sqlite3_step", (void *)sqlite3_step);
	real.reset = tg_lib_sym(LIB, "sqlite3_reset", (void *)sqlite3_reset);
	real.finalize = tg_lib_sym(LIB, "sqlite3_finalize", (void *)sqlite3_finalize);
	real.sql = tg_lib_sym(LIB, "sqlite3_sql", NULL);
	real.db_handle = tg_lib_sym(LIB, "sqlite3_db_handle", NULL);
	real.db_filename = tg_lib_sym(LIB, "sqlite3_db_filename", NULL);
	real.errmsg = tg_lib_sym(LIB, "sqlite3_errmsg", NULL);
	real.changes = tg_lib_sym(LIB, "sqlite3_changes", NULL);
	real.stmt_readonly = tg_lib_sym(LIB, "sqlite3_stmt_readonly", NULL);
	real.expanded_sql = tg_lib_sym(LIB, "sqlite3_expanded_sql", NULL);
	real.free_ = tg_lib_sym(LIB, "sqlite3_free", NULL);
	real.bind_parameter_count = tg_lib_sym(LIB, "sqlite3_bind_parameter_count", NULL);
	real.last_insert_rowid = tg_lib_sym(LIB, "sqlite3_last_insert_rowid", (void *)sqlite3_last_insert_rowid);
	real.get_autocommit = tg_lib_sym(LIB, "sqlite3_get_autocommit", (void *)sqlite3_get_autocommit);
	real.bind_null = tg_lib_sym(LIB, "sqlite3_bind_null", (void *)sqlite3_bind_null);
	real.bind_int = tg_lib_sym(LIB, "sqlite3_bind_int", (void *)sqlite3_bind_int);
	real.bind_int64 = tg_lib_sym(LIB, "sqlite3_bind_int64", (void *)sqlite3_bind_int64);
	real.bind_double = tg_lib_sym(LIB, "sqlite3_bind_double", (void *)sqlite3_bind_double);
	real.bind_text = tg_lib_sym(LIB, "sqlite3_bind_text", (void *)sqlite3_bind_text);
	real.bind_text64 = tg_lib_sym(LIB, "sqlite3_bind_text64", (void *)sqlite3_bind_text64);
	real.bind_blob = tg_lib_sym(LIB, "sqlite3_bind_blob", (void *)sqlite3_bind_blob);
	real.bind_blob64 = tg_lib_sym(LIB, "sqlite3_bind_blob64", (void *)sqlite3_bind_blob64);
	real.bind_zeroblob = tg_lib_sym(LIB, "sqlite3_bind_zeroblob", (void *)sqlite3_bind_zeroblob);
	real.clear_bindings = tg_lib_sym(LIB, "sqlite3_clear_bindings", (void *)sqlite3_clear_bindings);
}

static inline void need_real(void)
{
	pthread_once(&real_once, resolve);
}

/* 1 when every helper we use to describe a statement is there. */
static int can_describe(void)
{
	return real.sql && real.db_handle && real.db_filename && real.errmsg && real.changes &&
	       real.stmt_readonly;
}

/* ---- bound values, hashed per statement on the binding thread ---- */

#define BOUND_STMTS 8   /* statements whose values are followed, per thread (the last bound) */
#define BOUND_MAX 32    /* parameters followed per statement; more: values unknown */

struct bound {
	sqlite3_stmt *st;          /* NULL = free */
	uint32_t seen;             /* parameter i bound (bit i - 1) */
	int cleared;               /* sqlite3_clear_bindings: the others are NULL */
	int overflow;              /* a parameter past BOUND_MAX */
	uint64_t age;
	uint64_t h[BOUND_MAX];     /* hash of each parameter's value */
};

static TG_TLS struct bound bound[BOUND_STMTS];
static TG_TLS uint64_t bound_clock;

static struct bound *bound_find(sqlite3_stmt *st, int create)
{
	struct bound *old = &bound[0];
	for (int i = 0; i < BOUND_STMTS; i++) {
		if (bound[i].st == st)
			return &bound[i];
		if ((bound[i].st ? bound[i].age : 0) < (old->st ? old->age : 0))
			old = &bound[i];
	}
	if (!create)
		return NULL;
	memset(old, 0, sizeof *old - sizeof old->h);
	old->st = st;
	old->age = ++bound_clock;
	return old;
}

/* A value was bound to parameter i of st (code: its kind; len -1: NULL). */
static void on_bind(sqlite3_stmt *st, int i, uint32_t code, const void *p, int64_t len)
{
	if (!tg_proc.enabled || tg_tap_depth || !st)
		return;
	struct bound *b = bound_find(st, 1);
	if (i < 1 || i > BOUND_MAX) {
		b->overflow = 1;
		return;
	}
	b->h[i - 1] = tg_params_hash(TG_PARAMS_HASH_INIT, (uint32_t)i, code, p, len);
	b->seen |= 1u << (i - 1);
	b->age = ++bound_clock;
}

/* The hash of st's parameter values now, if every one is known. */
static int bound_hash(sqlite3_stmt *st, uint64_t *hash)
{
	int n = real.bind_parameter_count ? real.bind_parameter_count(st) : -1;
	*hash = TG_PARAMS_HASH_INIT;
	if (n == 0)
		return 1;
	struct bound *b = n > 0 && n <= BOUND_MAX ? bound_find(st, 0) : NULL;
	if (!b || b->overflow)
		return 0;
	for (int i = 0; i < n; i++) {
		uint64_t v;
		if (b->seen & (1u << i))
			v = b->h[i];
		else if (b->cleared)
			v = tg_params_hash(TG_PARAMS_HASH_INIT, (uint32_t)i + 1, 0, NULL, -1);
		else
			return 0;
		*hash = tg_hash_bytes(*hash, &v, sizeof v);
	}
	return 1;
}

/* ---- executemany (see the top) ---- */

/* The DML statement whose execution finished last on this thread, while
 * no sqlite3_last_insert_rowid() or sqlite3_get_autocommit() on its
 * connection has followed. */
static TG_TLS sqlite3_stmt *open_st;
static TG_TLS sqlite3 *open_db;

/* ---- statements being stepped on this thread ---- */

#define ACTIVE_MAX 16 /* statements stepped at once by one thread (nested cursors) */

struct active {
	sqlite3_stmt *st;  /* NULL = free */
	uint64_t start_ns; /* first step */
	int64_t rows;      /* SQLITE_ROW results so far */
	uint64_t age;      /* for eviction: the oldest goes when the table is full */
	uint64_t params_hash;
	int params_known;
	int batch_cont;    /* the next row of an executemany() (see the top) */
};

static TG_TLS struct active active[ACTIVE_MAX];
static TG_TLS uint64_t active_clock;
static TG_TLS int nactive;

static struct active *active_find(sqlite3_stmt *st)
{
	if (!nactive)
		return NULL;
	for (int i = 0; i < ACTIVE_MAX; i++)
		if (active[i].st == st)
			return &active[i];
	return NULL;
}

static struct active *active_new(sqlite3_stmt *st, uint64_t now)
{
	struct active *a = NULL;
	for (int i = 0; i < ACTIVE_MAX && !a; i++)
		if (!active[i].st)
			a = &active[i];
	if (!a) { /* abandoned statements (never reset): drop the oldest */
		a = &active[0];
		for (int i = 1; i < ACTIVE_MAX; i++)
			if (active[i].age < a->age)
				a = &active[i];
		nactive--;
	}
	a->st = st;
	a->start_ns = now;
	a->rows = 0;
	a->age = ++active_clock;
	a->params_known = bound_hash(st, &a->params_hash);
	a->batch_cont = st == open_st;
	open_st = NULL;
	nactive++;
	return a;
}

static void active_del(struct active *a)
{
	a->st = NULL;
	nactive--;
}

static const char *store_env; /* $TIMEGLASS_DB, read once */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void read_env(void)
{
	const char *e = getenv("TIMEGLASS_DB");
	store_env = e && *e ? e : NULL;
}

/* Per thread: the last connection seen and its verdict (a handle is reused
 * only after sqlite3_close, and then for a database opened anew). */
static TG_TLS sqlite3 *last_db;
static TG_TLS const char *last_file;
static TG_TLS int last_own;

/* 1 if db is TimeGlass's own store: never captured. */
static int is_own_store(sqlite3 *db, const char **file)
{
	const char *fn = real.db_filename(db, "main");
	*file = fn;
	if (db == last_db && fn == last_file)
		return last_own;
	int own = 0;
	if (fn && *fn) { /* in-memory or temporary databases are the app's */
		size_t n = strlen(fn);
		pthread_once(&env_once, read_env);
		own = (n >= 12 && strcmp(fn + n - 12, "timeglass.db") == 0) || strstr(fn, "/.timeglass/") ||
		      (store_env && strcmp(store_env, fn) == 0);
	}
	last_db = db;
	last_file = fn;
	last_own = own;
	return own;
}

static const char *code_name(int rc)
{
	switch (rc & 0xff) {
	case 1: return "SQLITE_ERROR";
	case 3: return "SQLITE_PERM";
	case 4: return "SQLITE_ABORT";
	case 5: return "SQLITE_BUSY";
	case 6: return "SQLITE_LOCKED";
	case 7: return "SQLITE_NOMEM";
	case 8: return "SQLITE_READONLY";
	case 9: return "SQLITE_INTERRUPT";
	case 10: return "SQLITE_IOERR";
	case 11: return "SQLITE_CORRUPT";
	case 13: return "SQLITE_FULL";
	case 14: return "SQLITE_CANTOPEN";
	case 17: return "SQLITE_SCHEMA";
	case 18: return "SQLITE_TOOBIG";
	case 19: return "SQLITE_CONSTRAINT";
	case 20: return "SQLITE_MISMATCH";
	case 21: return "SQLITE_MISUSE";
	case 23: return "SQLITE_AUTH";
	case 25: return "SQLITE_RANGE";
	case 26: return "SQLITE_NOTADB";
	default: return "SQLITE_ERROR";
	}
}

/* ---- what a statement is, cached per sqlite3_stmt ----
 *
 * Its connection, database file, text and read-only flag are fixed from
 * prepare to finalize (and the connection outlives it), so they are looked
 * up once per statement, not per query: Python's sqlite3 module reuses its
 * cached statements. Shared by all threads (a statement may be finalized on
 * another thread than the one that stepped it); entries are dropped when
 * the statement is finalized.
 */

#define STMT_SLOTS 512 /* power of two */

struct stmt_info {
	sqlite3_stmt *st; /* NULL = free */
	sqlite3 *db;
	const char *file;
	const char *sql;
	uint32_t file_len, sql_len;
	int own, readonly;
};

static struct stmt_info stmt_cache[STMT_SLOTS];
static int stmt_lock;

static inline struct stmt_info *stmt_slot(sqlite3_stmt *st)
{
	return &stmt_cache[((uintptr_t)st >> 4) * 0x9e3779b1u >> 7 & (STMT_SLOTS - 1)];
}

static inline void stmt_acquire(void)
{
	while (__atomic_exchange_n(&stmt_lock, 1, __ATOMIC_ACQUIRE))
		;
}

static inline void stmt_release(void)
{
	__atomic_store_n(&stmt_lock, 0, __ATOMIC_RELEASE);
}

/* Fills *si for st. Returns 0 when it has no connection. */
static int stmt_describe(sqlite3_stmt *st, struct stmt_info *si)
{
	struct stmt_info *e = stmt_slot(st);
	stmt_acquire();
	int hit = e->st == st;
	if (hit)
		*si = *e;
	stmt_release();
	if (hit)
		return 1;
	sqlite3 *db = real.db_handle(st);
	if (!db)
		return 0;
	si->st = st;
	si->db = db;
	si->own = is_own_store(db, &si->file);
	size_t fl = si->file ? strlen(si->file) : 0;
	si->file_len = (uint32_t)(fl < UINT32_MAX ? fl : 0);
	si->sql = real.sql(st);
	size_t sl = si->sql ? strlen(si->sql) : 0;
	si->sql_len = (uint32_t)(sl < UINT32_MAX ? sl : UINT32_MAX);
	si->readonly = real.stmt_readonly(st);
	stmt_acquire();
	*e = *si;
	stmt_release();
	return 1;
}

static void stmt_forget(sqlite3_stmt *st)
{
	struct stmt_info *e = stmt_slot(st);
	stmt_acquire();
	if (e->st == st)
		e->st = NULL;
	stmt_release();
}

/* Writes the record of a statement that finished with rc at now; a is its
 * execution (NULL for a failed prepare). */
static void finish(sqlite3_stmt *st, sqlite3 *db, const char *file, size_t fl, const char *sql, size_t sql_len,
		   uint64_t start, uint64_t now, int64_t rows, int rc, const struct active *a)
{
	char err[TG_SQL_ERR_MAX];
	int el = 0;
	struct tg_query_info q = {
		.tap = TG_TAP_SQLITE3,
		.db_system = TG_DB_SQLITE,
		.conn_key = (uint64_t)(uintptr_t)db,
		.start_ns = start,
		.end_ns = now,
		.rows = rows,
		.sql = sql,
		.sql_len = sql_len,
	};
	if (a && a->params_known) {
		q.flags |= TG_QF_PARAMS_KNOWN;
		q.params_hash = a->params_hash;
	}
	if (a && a->batch_cont)
		q.flags |= TG_QF_BATCH_CONT;
	if (file && fl) {
		q.db = fl > TG_SQL_DB_MAX ? file + fl - TG_SQL_DB_MAX : file;
		q.db_len = fl > TG_SQL_DB_MAX ? TG_SQL_DB_MAX : fl;
	} else {
		q.db = ":memory:";
		q.db_len = 8;
	}
	if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
		const char *msg = real.errmsg(db);
		el = snprintf(err, sizeof err, "%s %s", code_name(rc), msg ? msg : "");
		if (el < 0)
			el = 0;
		if ((size_t)el >= sizeof err)
			el = (int)sizeof err - 1;
		q.flags |= TG_QF_ERROR;
		q.err = err;
		q.err_len = (size_t)el;
	}
	char *expanded = NULL;
	if (st && tg_capture_params() && real.expanded_sql && real.free_) {
		expanded = real.expanded_sql(st);
		if (expanded) {
			q.params = expanded;
			q.params_len = strlen(expanded);
		}
	}
	tg_emit_query(&q);
	if (expanded)
		real.free_(expanded);
}

static void finish_active(struct active *a, int rc, uint64_t now)
{
	sqlite3_stmt *st = a->st;
	struct active done = *a;
	active_del(a);
	struct stmt_info si;
	if (!stmt_describe(st, &si) || si.own)
		return;
	if (!done.rows && !si.readonly)
		done.rows = real.changes(si.db);
	finish(st, si.db, si.file, si.file_len, si.sql, si.sql_len, done.start_ns, now, done.rows, rc, &done);
	if (rc == SQLITE_DONE && !si.readonly) {
		open_st = st;
		open_db = si.db;
	}
}

static int prepare_done(sqlite3 *db, const char *sql, int n, int rc, uint64_t start)
{
	/* Only a failed prepare is a query of its own (a syntax error, an
	 * unknown table): a statement that compiles is recorded when stepped. */
	if (rc == SQLITE_OK || !db || !sql || !can_describe())
		return rc;
	const char *file;
	if (is_own_store(db, &file))
		return rc;
	int saved = errno;
	size_t len = n < 0 ? strlen(sql) : strnlen(sql, (size_t)n);
	finish(NULL, db, file, file ? strlen(file) : 0, sql, len, start, tg_now_ns(), 0, rc, NULL);
	errno = saved;
	return rc;
}

int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st, const char **tail)
{
	need_real();
	if (!real.prepare_v2)
		return 21; /* SQLITE_MISUSE: nothing to call (never happens with a loaded libsqlite3) */
	if (!tg_proc.enabled || tg_tap_depth || !tg_sql_on())
		return real.prepare_v2(db, sql, n, st, tail);
	uint64_t start = tg_now_ns();
	tg_tap_depth++;
	int rc = real.prepare_v2(db, sql, n, st, tail);
	tg_tap_depth--;
	return prepare_done(db, sql, n, rc, start);
}

int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned flags, sqlite3_stmt **st,
		       const char **tail)
{
	need_real();
	if (!real.prepare_v3)
		return 21;
	if (!tg_proc.enabled || tg_tap_depth || !tg_sql_on())
		return real.prepare_v3(db, sql, n, flags, st, tail);
	uint64_t start = tg_now_ns();
	tg_tap_depth++;
	int rc = real.prepare_v3(db, sql, n, flags, st, tail);
	tg_tap_depth--;
	return prepare_done(db, sql, n, rc, start);
}

int sqlite3_step(sqlite3_stmt *st)
{
	need_real();
	if (!real.step)
		return 21;
	if (!tg_proc.enabled || tg_tap_depth || !st || !can_describe() || !tg_sql_on())
		return real.step(st);
	struct active *a = active_find(st);
	if (!a)
		a = active_new(st, tg_now_ns());
	tg_tap_depth++;
	int rc = real.step(st);
	tg_tap_depth--;
	if (rc == SQLITE_ROW) {
		a->rows++;
		return rc;
	}
	int saved = errno;
	tg_tap_depth++;
	finish_active(a, rc, tg_now_ns());
	tg_tap_depth--;
	errno = saved;
	return rc;
}

/* A statement reset or finalized before SQLITE_DONE (fetchone, break out of
 * a loop) finishes here. */
static void stop_early(sqlite3_stmt *st)
{
	if (!nactive || !st || tg_tap_depth)
		return;
	struct active *a = active_find(st);
	if (!a)
		return;
	int saved = errno;
	tg_tap_depth++;
	finish_active(a, SQLITE_DONE, tg_now_ns());
	tg_tap_depth--;
	errno = saved;
}

int sqlite3_reset(sqlite3_stmt *st)
{
	need_real();
	if (!real.reset)
		return 21;
	stop_early(st);
	return real.reset(st);
}

int sqlite3_finalize(sqlite3_stmt *st)
{
	need_real();
	if (!real.finalize)
		return 21;
	stop_early(st);
	if (st) {
		stmt_forget(st);
		struct bound *b = bound_find(st, 0);
		if (b)
			b->st = NULL;
		if (open_st == st)
			open_st = NULL;
	}
	return real.finalize(st);
}

sqlite3_int64 sqlite3_last_insert_rowid(sqlite3 *db)
{
	need_real();
	if (!real.last_insert_rowid)
		return 0;
	if (open_st && db == open_db)
		open_st = NULL; /* execute() is over: not an executemany() */
	return real.last_insert_rowid(db);
}

int sqlite3_get_autocommit(sqlite3 *db)
{
	need_real();
	if (!real.get_autocommit)
		return 1;
	if (open_st && db == open_db)
		open_st = NULL; /* a new call of the app begins */
	return real.get_autocommit(db);
}

/* Each bind hook calls the real function, then notes the value when it
 * was taken (codes: 1 integer, 2 float, 3 text, 4 blob, 5 zeroblob; the
 * same integer bound as int or int64 hashes alike). Values are hashed,
 * never copied. */
static int bound_rc(int rc, sqlite3_stmt *st, int i, uint32_t code, const void *p, int64_t len)
{
	if (rc == SQLITE_OK && tg_proc.enabled) {
		int saved = errno;
		on_bind(st, i, code, p, len);
		errno = saved;
	}
	return rc;
}

int sqlite3_bind_null(sqlite3_stmt *st, int i)
{
	need_real();
	if (!real.bind_null)
		return SQLITE_RANGE;
	return bound_rc(real.bind_null(st, i), st, i, 0, NULL, -1);
}

int sqlite3_bind_int(sqlite3_stmt *st, int i, int v)
{
	need_real();
	if (!real.bind_int)
		return SQLITE_RANGE;
	sqlite3_int64 w = v;
	return bound_rc(real.bind_int(st, i, v), st, i, 1, &w, sizeof w);
}

int sqlite3_bind_int64(sqlite3_stmt *st, int i, sqlite3_int64 v)
{
	need_real();
	if (!real.bind_int64)
		return SQLITE_RANGE;
	return bound_rc(real.bind_int64(st, i, v), st, i, 1, &v, sizeof v);
}

int sqlite3_bind_double(sqlite3_stmt *st, int i, double v)
{
	need_real();
	if (!real.bind_double)
		return SQLITE_RANGE;
	return bound_rc(real.bind_double(st, i, v), st, i, 2, &v, sizeof v);
}

int sqlite3_bind_text(sqlite3_stmt *st, int i, const char *v, int n, void (*d)(void *))
{
	need_real();
	if (!real.bind_text)
		return SQLITE_RANGE;
	int64_t len = !v ? -1 : n < 0 ? (int64_t)strlen(v) : n;
	return bound_rc(real.bind_text(st, i, v, n, d), st, i, 3, v, len);
}

int sqlite3_bind_text64(sqlite3_stmt *st, int i, const char *v, sqlite3_uint64 n, void (*d)(void *),
			unsigned char enc)
{
	need_real();
	if (!real.bind_text64)
		return SQLITE_RANGE;
	int64_t len = !v ? -1 : (int64_t)n;
	return bound_rc(real.bind_text64(st, i, v, n, d, enc), st, i, 3u | (uint32_t)enc << 8, v, len);
}

int sqlite3_bind_blob(sqlite3_stmt *st, int i, const void *v, int n, void (*d)(void *))
{
	need_real();
	if (!real.bind_blob)
		return SQLITE_RANGE;
	return bound_rc(real.bind_blob(st, i, v, n, d), st, i, 4, v, v ? (n < 0 ? 0 : n) : -1);
}

int sqlite3_bind_blob64(sqlite3_stmt *st, int i, const void *v, sqlite3_uint64 n, void (*d)(void *))
{
	need_real();
	if (!real.bind_blob64)
		return SQLITE_RANGE;
	return bound_rc(real.bind_blob64(st, i, v, n, d), st, i, 4, v, v ? (int64_t)n : -1);
}

int sqlite3_bind_zeroblob(sqlite3_stmt *st, int i, int n)
{
	need_real();
	if (!real.bind_zeroblob)
		return SQLITE_RANGE;
	sqlite3_int64 w = n;
	return bound_rc(real.bind_zeroblob(st, i, n), st, i, 5, &w, sizeof w);
}

int sqlite3_clear_bindings(sqlite3_stmt *st)
{
	need_real();
	if (!real.clear_bindings)
		return SQLITE_RANGE;
	int rc = real.clear_bindings(st);
	if (rc == SQLITE_OK && tg_proc.enabled && !tg_tap_depth && st) {
		struct bound *b = bound_find(st, 1);
		b->seen = 0;
		b->overflow = 0;
		b->cleared = 1;
	}
	return rc;
}
