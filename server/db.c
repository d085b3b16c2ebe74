/*
 * db.c - per-thread read-only store connections for the dashboard (db.h).
 *
 * Workload: every API request and every SSE tick (2 per second per open
 * page) calls tg_db_acquire(); the common case is one stat() and one
 * PRAGMA user_version on an open connection.
 */
#include "db.h"
#include "api.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct thread_conn {
	sqlite3 *db;
	char *path;
	dev_t dev;
	ino_t ino;
};

static pthread_key_t conn_key;
static pthread_once_t conn_once = PTHREAD_ONCE_INIT;

static void conn_close(struct thread_conn *c)
{
	if (c->db)
		sqlite3_close(c->db);
	c->db = NULL;
	free(c->path);
	c->path = NULL;
}

static void conn_destroy(void *p)
{
	conn_close(p);
	free(p);
}

static void conn_key_init(void)
{
	pthread_key_create(&conn_key, conn_destroy);
}

void tg_db_close_thread(void)
{
	pthread_once(&conn_once, conn_key_init);
	struct thread_conn *c = pthread_getspecific(conn_key);
	if (c) {
		conn_destroy(c);
		pthread_setspecific(conn_key, NULL);
	}
}

const char *tg_db_state_name(enum tg_db_state state)
{
	switch (state) {
	case TG_DB_OK: return "ok";
	case TG_DB_MISSING: return "missing";
	case TG_DB_EMPTY: return "empty";
	case TG_DB_OLDER: return "older";
	case TG_DB_NEWER: return "newer";
	case TG_DB_BAD: break;
	}
	return "bad";
}

long long tg_db_int(sqlite3 *db, const char *sql, long long dflt)
{
	sqlite3_stmt *st;
	long long v = dflt;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return dflt;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int tg_db_has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *st;
	int found = 0;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

static void set_bad(struct tg_db *out, const char *path, const char *why)
{
	out->state = TG_DB_BAD;
	snprintf(out->message, sizeof out->message, "%s is not a readable TimeGlass store (%s)", path, why);
}

/* Reads the schema version of an open connection and sets the state. */
static void classify(struct tg_db *out, sqlite3 *db, const char *path)
{
	int64_t version;
	enum tg_schema_class cls = tg_store_classify(db, &version);
	out->schema = (int)version;
	switch (cls) {
	case TG_SCHEMA_ERROR:
		set_bad(out, path, sqlite3_errmsg(db));
		break;
	case TG_SCHEMA_FOREIGN:
		set_bad(out, path, "it holds other tables");
		break;
	case TG_SCHEMA_EMPTY:
		out->state = TG_DB_EMPTY;
		snprintf(out->message, sizeof out->message,
			 "No recordings yet: run `timeglass run -- uvicorn main:app`");
		break;
	case TG_SCHEMA_NEWER:
		out->state = TG_DB_NEWER;
		snprintf(out->message, sizeof out->message,
			 "%s was written by a newer TimeGlass (schema %d; this dashboard reads up to %d): "
			 "upgrade timeglass to view it",
			 path, out->schema, TG_STORE_SCHEMA);
		break;
	case TG_SCHEMA_OLDER:
	case TG_SCHEMA_CURRENT:
		/* Older schemas lack only later tables (queries, samples), which
		 * every view checks for: show what there is. */
		out->state = TG_DB_OK;
		out->db = db;
		break;
	}
}

void tg_db_acquire(const char *path, struct tg_db *out)
{
	memset(out, 0, sizeof *out);
	out->schema = -1;
	pthread_once(&conn_once, conn_key_init);
	struct thread_conn *c = pthread_getspecific(conn_key);
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c) {
			set_bad(out, path, "out of memory");
			return;
		}
		pthread_setspecific(conn_key, c);
	}

	struct stat st;
	if (stat(path, &st) < 0) {
		conn_close(c);
		if (errno == ENOENT || errno == ENOTDIR) {
			out->state = TG_DB_MISSING;
			snprintf(out->message, sizeof out->message,
				 "No recordings yet: run `timeglass run -- uvicorn main:app`");
		} else {
			set_bad(out, path, strerror(errno));
		}
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		conn_close(c);
		set_bad(out, path, "not a regular file");
		return;
	}
	if (c->db && (strcmp(c->path, path) != 0 || c->dev != st.st_dev || c->ino != st.st_ino))
		conn_close(c);
	if (!c->db) {
		if (!(c->path = strdup(path))) {
			set_bad(out, path, "out of memory");
			return;
		}
		int rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
		if (rc != SQLITE_OK) {
			set_bad(out, path, c->db ? sqlite3_errmsg(c->db) : "out of memory");
			conn_close(c);
			return;
		}
		sqlite3_busy_timeout(c->db, 2000);
		/* Read the store through a memory map: scans that fetch many
		 * rows (a rare combination of the requests list's filters)
		 * then take about half the time they take through read()
		 * calls into a small page cache. The map shares the kernel's
		 * page cache, so it costs no memory of its own; SQLite caps it
		 * at its build's limit (2 GiB on Debian). */
		sqlite3_exec(c->db, "PRAGMA mmap_size = 2147418112", NULL, NULL, NULL);
		tg_api_functions(c->db);
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	classify(out, c->db, path);
	if (out->state == TG_DB_BAD)
		conn_close(c); /* try afresh next time */
}
