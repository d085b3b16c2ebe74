/*
 * lib/store.h - the SQLite store: opening, schema migrations, retention, and the
 * collector's batched inserts.
 *
 * One store file holds many runs. Its schema is versioned with PRAGMA
 * user_version; a writer migrates an older store forward, step by step, each
 * step in its own transaction; anybody refuses a store written by a newer
 * TimeGlass. Connections use WAL (readers never block the collector),
 * busy_timeout 5000 ms and foreign keys.
 *
 * The collector writes through prepared statements in batch transactions:
 * tg_store_*_add() opens a transaction when none is open, tg_store_flush()
 * commits it. Commands that only read (requests, runs, the dashboard) open
 * the store read-only and run their own queries on tg_store_db().
 *
 * Every function that can fail returns -1 (or NULL) with one line in
 * tg_error() (util.h) that names the store path.
 */
#ifndef TG_STORE_H
#define TG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define TG_STORE_SCHEMA 12 /* newest schema version this build reads and writes */

struct tg_store;

/* What a store's schema version says about it, for every reader. */
enum tg_schema_class {
	TG_SCHEMA_CURRENT, /* TG_STORE_SCHEMA */
	TG_SCHEMA_OLDER,   /* below TG_STORE_SCHEMA, not 0: `timeglass run` upgrades it;
			    * it lacks only later tables and columns */
	TG_SCHEMA_NEWER,   /* written by a newer TimeGlass */
	TG_SCHEMA_EMPTY,   /* version 0 and no tables: nothing recorded yet */
	TG_SCHEMA_FOREIGN, /* version 0 with other tables: not a TimeGlass store */
	TG_SCHEMA_ERROR,   /* unreadable (not a database, I/O): see sqlite3_errmsg(db) */
};

/* Classifies the store open on db and sets *version to its PRAGMA
 * user_version (-1 when it could not be read). Reads only; never fails
 * otherwise. The commands refuse all but TG_SCHEMA_CURRENT to read; the
 * dashboard shows TG_SCHEMA_OLDER stores as far as their tables go. */
enum tg_schema_class tg_store_classify(sqlite3 *db, int64_t *version);

enum tg_store_mode {
	TG_STORE_READ,  /* existing store only; never creates or migrates */
	TG_STORE_WRITE, /* creates (dir 0700, file 0600) and migrates as needed */
};

/* Opens the store at path. NULL on failure, with tg_error() set: no store
 * (read mode), cannot create, not a SQLite file, not a TimeGlass store,
 * written by a newer TimeGlass, or SQLite errors. */
struct tg_store *tg_store_open(const char *path, enum tg_store_mode mode);

/* Commits any open batch (errors ignored) and closes. NULL is fine. */
void tg_store_close(struct tg_store *s);

/* The connection, for read queries; owned by the store. */
sqlite3 *tg_store_db(struct tg_store *s);
const char *tg_store_path(const struct tg_store *s);

/* For read commands: prepares sql or dies with one line naming the store. */
sqlite3_stmt *tg_store_prepare_or_die(struct tg_store *s, const char *sql);

/* The id of the newest run, 0 when the store has none. Dies on errors. */
int64_t tg_store_latest_run(struct tg_store *s);

/* Deletes all but the newest `keep` runs and everything that belongs to
 * them; keep 0 keeps everything. Returns the number of runs deleted or -1. */
int tg_store_prune(struct tg_store *s, unsigned keep);

struct tg_run_info {
	int64_t started_unix_ns;
	const char *command; /* command line as typed, joined by spaces */
	const char *cwd;     /* may be NULL */
	const char *hostname;
	const char *tg_version;
	const char *source;  /* "run" */
};

/* Inserts a run row at once (own transaction). Returns its id or -1. */
int64_t tg_store_run_begin(struct tg_store *s, const struct tg_run_info *ri);

/* Sets ended_unix_ns and exit_status (exit_status < 0: leave NULL). */
int tg_store_run_end(struct tg_store *s, int64_t run_id, int64_t ended_unix_ns, int exit_status);

struct tg_process_info {
	int64_t run_id;
	int32_t pid, ppid;
	const char *exe, *cmdline; /* may be NULL */
	int64_t started_unix_ns;
	int after_fork;            /* registered from a fork child */
};

/* Commits the open batch, then inserts a process row at once. Returns its id or -1. */
int64_t tg_store_process_add(struct tg_store *s, const struct tg_process_info *pi);

/* Sets processes.ended_unix_ns (in the batch). Returns 0 or -1. */
int tg_store_process_end(struct tg_store *s, int64_t process_id, int64_t ended_unix_ns);

/* One request row. Strings are byte strings of the given lengths (not
 * NUL-terminated; NULL pointer = SQL NULL). Optional integers use has_*. */
struct tg_request_row {
	int64_t run_id;
	int64_t process_id; /* 0 = NULL */
	int32_t pid;
	int64_t tid, conn_id;
	int64_t start_unix_ns, duration_ns;
	int64_t req_end_ns, resp_start_ns; /* offsets from start, ns */
	int has_req_end, has_resp_start;
	const char *method; size_t method_len;
	const char *path; size_t path_len;
	const char *query; size_t query_len; /* NULL: no '?' in the target */
	const char *http_version;            /* "HTTP/1.1" */
	int status;                          /* 0 = NULL */
	int64_t request_bytes, response_bytes;
	const char *client_addr;             /* NUL-terminated or NULL */
	const char *error;                   /* NUL-terminated or NULL */
	int64_t flags;                       /* TG_REQF_* */
	const char *headers; size_t headers_len;
	const char *route; size_t route_len;         /* template from the marker, or NULL */
	const char *exception; size_t exception_len; /* from the marker, or NULL */
	const char *transport;                       /* "http" (NULL) or "asgi" */
	const char *forwarded_for; size_t forwarded_for_len; /* client named by a proxy header, or NULL */
	char trace_id[33];       /* W3C traceparent's trace id, 32 lowercase hex digits; "" = none */
	char parent_span_id[17]; /* ... and its parent span id, 16 lowercase hex digits */
};

/* Corrects a stored request (in the batch): its response was cut short.
 * The request is found by run, pid, connection and start time. */
int tg_store_request_fixup(struct tg_store *s, int64_t run_id, int32_t pid, int64_t conn_id,
			   int64_t start_unix_ns, const char *error, int64_t unsent_bytes);

/* Adds a request to the batch. Returns 0 or -1. */
int tg_store_request_add(struct tg_store *s, const struct tg_request_row *r);

/* id of the row the last *_add() inserted. */
int64_t tg_store_last_id(struct tg_store *s);

/* ---- stack samples (written by stacks.c) ---- */

/* id of the frame (kind "python" or "native", qualified name, file or
 * module, line; file may be NULL = ""), inserted if new. 0 on error. */
int64_t tg_store_frame_id(struct tg_store *s, const char *kind, const char *name, const char *file, int line);

/* id of the stack whose frame ids (root first, comma-separated) are frames
 * and whose hash is hash, inserted if new. 0 on error, -1 when another stack
 * has this hash (the caller rehashes). */
int64_t tg_store_stack_id(struct tg_store *s, int64_t hash, const char *frames);

/* One aggregated samples row. */
struct tg_sample_row {
	int64_t run_id;
	int64_t request_id; /* 0 = NULL: outside any request */
	int64_t process_id; /* 0 = NULL */
	int64_t tid;        /* 0 = NULL: several threads */
	int64_t stack_id;
	const char *state;  /* "running" | "waiting" */
	int64_t count;      /* samples */
	int64_t cpu_ns;     /* thread CPU time they stand for */
};
int tg_store_sample_add(struct tg_store *s, const struct tg_sample_row *r);

/* Gives a stored request the route (exception 0; only if it has none) or
 * the exception text (exception 1) a late mark brought. */
int tg_store_request_mark(struct tg_store *s, int64_t request_id, int exception, const char *text, size_t len);

/* Adds cpu_ns to requests.cpu_ns of request_id. */
int tg_store_request_cpu_add(struct tg_store *s, int64_t request_id, int64_t cpu_ns);

/* One queries row (see the schema). Strings as in tg_request_row; NULL
 * pointer = SQL NULL. */
struct tg_query_row {
	int64_t run_id, process_id, request_id; /* process_id, request_id 0 = NULL */
	int32_t pid;
	int64_t tid;
	int64_t start_unix_ns, duration_ns;
	/* db_system, tap, attribution and kind are TimeGlass's own names
	 * (NUL-terminated ASCII letters, digits, '_'), stored unescaped. */
	const char *db_system, *tap;
	const char *database; size_t database_len;
	const char *sql; size_t sql_len;
	int sql_truncated;
	const char *fingerprint; size_t fingerprint_len;
	int64_t fingerprint_hash;
	const char *params; size_t params_len;
	int64_t rows; int has_rows;
	const char *error; size_t error_len;
	const char *call_site; size_t call_site_len;
	const char *attribution;                 /* 'scope' | 'thread' | 'none' */
	int duplicate, n_plus_one;
	const char *kind;                        /* 'app' | 'housekeeping' (NULL: 'app') */
	int64_t executions;                      /* >= 1: a batch's executions */
};

/* Adds a query to the batch. Returns 0 or -1. */
int tg_store_query_add(struct tg_store *s, const struct tg_query_row *q);

/* One spans row (outbound HTTP call). */
struct tg_span_row {
	int64_t run_id, process_id, request_id;
	int32_t pid;
	int64_t tid;
	const char *kind;                        /* 'http_client' */
	int64_t start_unix_ns, duration_ns;
	const char *method; size_t method_len;
	const char *host; size_t host_len;
	const char *path; size_t path_len;
	int status;                              /* 0 = NULL */
	int64_t request_bytes, response_bytes;
	int tls;
	const char *error; size_t error_len;
	const char *call_site; size_t call_site_len;
	const char *attribution;
};

/* Adds a span to the batch. Returns 0 or -1. */
int tg_store_span_add(struct tg_store *s, const struct tg_span_row *r);

/* Adds a process_metrics row (times in ns, rss in bytes) to the batch;
 * sched_cpu_ns and run_delay_ns (schedstat.h) are NULL when either is < 0. */
int tg_store_metric_add(struct tg_store *s, int64_t process_id, int64_t ts_unix_ns, int64_t cpu_user_ns,
			int64_t cpu_sys_ns, int64_t rss_bytes, int64_t sched_cpu_ns, int64_t run_delay_ns);

/* Adds a losses row (process_id 0 = NULL) to the batch. kind: "ring_full",
 * "untracked_conn", "ring_corrupt" or "store_error". */
int tg_store_loss_add(struct tg_store *s, int64_t run_id, int64_t process_id, int64_t ts_unix_ns,
		      const char *kind, int64_t events, int64_t bytes);

/* Opens the batch with the write lock taken (BEGIN IMMEDIATE), waiting at
 * most wait_ms for another writer. Returns 0 (also when a batch is already
 * open), or -1 when the store stays locked: nothing was written or lost, so
 * the caller can keep its data and try again later. */
int tg_store_begin(struct tg_store *s, int wait_ms);

/* Rows added since the batch began (0 when no batch is open). */
unsigned tg_store_pending(const struct tg_store *s);

/* Commits the open batch. On failure it is rolled back: returns -1 and the
 * batch's rows are gone (counted for tg_store_take_lost()). */
int tg_store_flush(struct tg_store *s);

/* Batches rolled back so far (a full disk, an I/O error). The rows of a
 * batch rolled back are gone, and SQLite gives their ids to later rows:
 * a caller that keeps ids of requests, frames or stacks drops those it got
 * since its last look. *stacks_kept and *requests_kept (each may be NULL):
 * the highest stacks.id and requests.id known to be in the store
 * (committed, or there when it was opened). */
uint64_t tg_store_rollbacks(const struct tg_store *s, int64_t *stacks_kept, int64_t *requests_kept);

/* Counts n rows the caller drops because of a rollback as lost (for
 * tg_store_take_lost()). */
void tg_store_count_lost(struct tg_store *s, uint64_t n);

/* Rows of the batch API lost to SQLite errors (failed inserts, rolled-back
 * batches, rows met while the disk is full) since the last call, and in
 * *requests (may be NULL) the requests among them; resets the counts. Loss
 * rows that could not be written are not counted (their figures stay with
 * the caller). */
uint64_t tg_store_take_lost(struct tg_store *s, uint64_t *requests);

/* A full disk. When an insert or a commit finds the disk full, the store
 * stops trying: until tg_store_resume() finds room, batch rows are counted
 * as lost as they come, without SQLite, and tg_store_begin() opens nothing.
 * tg_store_full() says whether that is the case; tg_store_resume() (cheap:
 * one statvfs) leaves it once RESUME_FREE_BYTES are free, returning 1 when
 * the store is writable. A store opened for writing keeps a small reserve
 * file beside it (PATH-reserve); tg_store_last_resort() removes it and
 * leaves full mode, for the run's last rows (its end, its loss counts). */
int tg_store_full(const struct tg_store *s);
int tg_store_resume(struct tg_store *s);
int tg_store_last_resort(struct tg_store *s);

#endif
