/*
 * lib/readers.h - the store's read queries that more than one view runs:
 * the newest run, the stack samples of a selection (flame graphs; split by
 * request and thread for pprof), and the names of request flags. The
 * commands (cli/) and the dashboard (server/) both read through these, so
 * that they select the same rows.
 *
 * The connection may be read-only; nothing is written. Functions that can
 * fail return -1 (or NULL) with one line in tg_error() (lib/util.h).
 */
#ifndef TG_READERS_H
#define TG_READERS_H

#include <stdint.h>

#include <sqlite3.h>

/* The id of the newest run, 0 when the store has none; -1 on a SQLite
 * error ("reading runs: ..."). */
int64_t tg_latest_run(sqlite3 *db);

/* Which stack samples a flame graph shows. */
enum tg_samples_of {
	TG_SAMPLES_REQUEST, /* of request id */
	TG_SAMPLES_ROUTE,   /* of every request of method + route (template, or path when none) in run id */
	TG_SAMPLES_RUN,     /* every sample of run id */
	TG_SAMPLES_OUTSIDE, /* the samples of run id taken outside any request */
};

struct tg_samples_sel {
	enum tg_samples_of of;
	int64_t id;                /* the request, or the run */
	const char *method, *route; /* TG_SAMPLES_ROUTE */
	const char *state;         /* "running" or "waiting"; NULL: both */
};

/* Whether the store has a table or view of this name (an old store may
 * predate it; queries are a view since schema 12). */
int tg_has_table(sqlite3 *db, const char *name);

/* db's statement sql with ?1 bound to id, ready to step. Returns NULL on a
 * SQLite error (tg_error() set: "what: ..."). */
sqlite3_stmt *tg_prepare_id(sqlite3 *db, const char *sql, int64_t id, const char *what);

/* Prepares the query of sel's samples, bound and ready to step: one row per
 * stack and state, (frames TEXT, state TEXT, count INTEGER), the most
 * sampled first, ties by stack id. The strings of sel must outlive the
 * statement. Returns NULL on a SQLite error (tg_error() set). */
sqlite3_stmt *tg_samples_prepare(sqlite3 *db, const struct tg_samples_sel *sel);

/* The same samples split by request and thread: one row per stack, state,
 * request, process and thread, (frames TEXT, state TEXT, count INTEGER,
 * cpu_ns INTEGER, request_id INTEGER or NULL, route TEXT "METHOD route" (the
 * path when the request has no route template) or NULL, tid INTEGER), the
 * most sampled first. The counts of one stack and state add up to its row
 * of tg_samples_prepare(). NULL on a SQLite error (tg_error() set). */
sqlite3_stmt *tg_samples_detail_prepare(sqlite3 *db, const struct tg_samples_sel *sel);

#define TG_REQ_FLAG_BITS 8 /* TG_REQF_* of common/event.h */

/* Name of the TG_REQF_* flag with bit number bit (0..7), NULL if none:
 * "head", "upgrade", ... as in `timeglass requests --json` and the API. */
const char *tg_req_flag_name(unsigned bit);

#endif
