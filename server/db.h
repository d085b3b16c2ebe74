/*
 * db.h - read-only access to the store for the dashboard.
 *
 * Each server thread keeps its own read-only SQLite connection (WAL readers
 * never block the collector, and the collector never blocks them for long:
 * busy_timeout 2000 ms). Before each use the file is checked again, so the
 * dashboard notices a store that appears after it started, one that is
 * replaced or deleted, and a schema written by a newer TimeGlass.
 */
#ifndef TG_SERVER_DB_H
#define TG_SERVER_DB_H

#include <stddef.h>
#include <sqlite3.h>

#include "lib/store.h" /* TG_STORE_SCHEMA, the newest schema read; tg_store_classify() */

enum tg_db_state {
	TG_DB_OK,      /* a store this build reads */
	TG_DB_MISSING, /* no file at the path (yet) */
	TG_DB_EMPTY,   /* the file exists but holds no schema yet */
	TG_DB_OLDER,   /* an older schema: `timeglass run` upgrades it */
	TG_DB_NEWER,   /* written by a newer TimeGlass */
	TG_DB_BAD,     /* not a SQLite file, not a TimeGlass store, or unreadable */
};

struct tg_db {
	sqlite3 *db;          /* the thread's connection; NULL unless state is TG_DB_OK */
	enum tg_db_state state;
	int schema;           /* PRAGMA user_version, -1 when unknown */
	char message[384];    /* one line for the user when state is not TG_DB_OK */
};

/* Fills *out with the calling thread's read-only connection to path,
 * opening it, or reopening it when the file appeared, was replaced or went
 * away. The connection belongs to the thread (closed when it exits); never
 * close it. Always succeeds: problems are described by out->state. */
void tg_db_acquire(const char *path, struct tg_db *out);

/* Closes the calling thread's connection, if any (threads that live on
 * after using the store, like the command's main thread). */
void tg_db_close_thread(void);

/* A stable code for the state ("ok", "missing", "empty", "older", "newer",
 * "bad"), used in the API. */
const char *tg_db_state_name(enum tg_db_state state);


/* 1 if table has column (older schemas lack later columns). */
int tg_db_has_column(sqlite3 *db, const char *table, const char *column);

/* Runs sql (one statement, no parameters) and returns its first column of
 * its first row as an integer; dflt when there is no row or on error. */
long long tg_db_int(sqlite3 *db, const char *sql, long long dflt);

#endif
