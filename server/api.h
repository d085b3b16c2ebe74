/*
 * api.h - helpers shared by the JSON API handlers (api.c, profile.c,
 * events.c), defined in api.c.
 */
#ifndef TG_SERVER_API_H
#define TG_SERVER_API_H

#include <stdint.h>

#include <sqlite3.h>

#include "server.h"

/* What /api/status and the event stream report about the store. */
struct tg_store_summary {
	int64_t runs;           /* number of runs */
	int64_t latest_run;     /* newest run id, 0 when none */
	int latest_live;        /* the newest run is still recording */
	int64_t max_request_id; /* highest request id, 0 when none */
};

/* The read transaction of a handler: one consistent snapshot of the store
 * while the collector writes. tg_read_begin() returns 0 or -1. */
int tg_read_begin(sqlite3 *db);
void tg_read_end(sqlite3 *db);

/* The store connection of a handler, inside its read transaction; NULL
 * after sending the error (its status in *status). */
sqlite3 *tg_read_open(struct tg_req *r, int *status);

/* Sends the 500 store_error with SQLite's message and ends the read
 * transaction. Returns 500. */
int tg_store_error(struct tg_req *r, sqlite3 *db);

/* Parses a whole decimal integer (optional '-'). Returns 0 or -1. */
int tg_parse_i64(const char *s, int64_t *out);

/* Adds the SQL functions the handlers use to a store connection just
 * opened (the requests list's scan position, api.c). */
void tg_api_functions(sqlite3 *db);

/* Fills *out from db (a consistent snapshot). Returns 0 or -1. */
int tg_store_summary(sqlite3 *db, struct tg_store_summary *out);

/* 1 when run_id is still recording: not ended, and (when the collector
 * samples process metrics) a sample in the last 10 s. */
int tg_run_is_live(sqlite3 *db, int64_t run_id);

/* GET /api/requests/ID/queries and /api/requests/ID/spans (profile.c):
 * the request's SQL queries and outbound calls. Return the status sent. */
int tg_api_request_queries(struct tg_req *r, int64_t id);
int tg_api_request_spans(struct tg_req *r, int64_t id);

/* Current time in unix ns. */
int64_t tg_now_unix_ns(void);

#endif
