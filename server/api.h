/*
 * api.h - helpers shared by the JSON API handlers (api.c, events.c).
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
