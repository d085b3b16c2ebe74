/*
 * stats.h - per-run request aggregates for the overview and endpoints
 * views, kept in memory and brought up to date incrementally.
 *
 * Why: the figures these views show (exact latency percentiles per endpoint,
 * RPS over time) need every request of a run; scanning a million rows takes
 * far longer than an interactive page may. Requests are only ever appended
 * (ids grow), so the first use of a run loads it once (about 0.7 s per
 * million requests) and every later use reads only the rows added since.
 * The run's SQL queries are summed the same way, per run and per endpoint
 * (tg_stats_queries()): the overview and the endpoints table no longer
 * scan every query of the run on each call (seconds at millions).
 *
 * Memory: about 44 bytes per request and each distinct path once (up to
 * TG_STATS_MAX_PATHS); the newest few runs used are kept
 * (STATS_MAX_RUNS), the least recently used is dropped. Distinct endpoints
 * per run are capped (TG_STATS_MAX_ENDPOINTS): requests beyond the cap are
 * counted under one "(other)" endpoint, so unrouted paths full of ids cannot
 * exhaust memory.
 *
 * Percentiles are exact, by nearest rank: pN is the value at rank
 * ceil(N/100 * count) of the sorted durations.
 */
#ifndef TG_SERVER_STATS_H
#define TG_SERVER_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define TG_STATS_MAX_ENDPOINTS 5000 /* < 65535: an endpoint index is a uint16_t */
/* Distinct paths kept per run (and their bytes): paths full of ids make
 * many; beyond, the list's path filters read the store. */
#define TG_STATS_MAX_PATHS 1000000
#define TG_STATS_MAX_PATH_BYTES (64u << 20)

/* A growing set of durations (ns) that is sorted lazily. */
struct tg_durs {
	int64_t *v;
	size_t n, cap;
	size_t sorted; /* v[0..sorted) is in order */
};

struct tg_endpoint_stats {
	char *method;   /* "" when unknown */
	char *name;     /* route template, else the path */
	int is_route;   /* name is a route template */
	int is_other;   /* the "(other)" overflow bucket */
	uint64_t count, n4xx, n5xx;
	int64_t sum_ns, max_ns;
	int64_t first_ns, last_ns; /* first start and last end, unix ns */
	struct tg_durs durs;
	/* SQL of its requests, kept by tg_stats_queries(): queries, their
	 * time, requests with an N+1 query. Not kept for "(other)". */
	int64_t queries, db_ns;
	uint64_t n_plus_one;
};

/* The overview's timeline: request counts in buckets of width w from t0.
 * Kept between calls and filled only with the requests loaded since, while
 * the width and origin stay the same (api.c). */
struct tg_timeline_bucket {
	uint64_t n, n4, n5;
	int64_t sum, max;
};

struct tg_timeline {
	int64_t w, t0;    /* bucket width and the first bucket's start, ns; w 0 = none */
	size_t nb, cap;   /* buckets in use, allocated */
	size_t upto;      /* requests [0, upto) of the run are counted */
	struct tg_timeline_bucket *b;
};

/* One CPU and memory sample of a process (process_metrics). */
struct tg_metric {
	int64_t ts, cpu, rss; /* unix ns, user + system CPU ns, resident bytes */
};

/* A process's samples in time order: read once, then only the newer ones. */
struct tg_proc_metrics {
	int64_t process_id;
	size_t n, cap;
	struct tg_metric *v;
};

/* The run's SQL queries, summed: read once, then only the rows added
 * since (queries are appended and never changed). */
struct tg_query_totals {
	int64_t last_id;           /* highest query set id summed */
	int64_t count, sum_ns;     /* every query of the run */
	int64_t in_requests, in_requests_ns; /* those of a request */
	struct tg_durs n_plus_one; /* ids of the requests with an N+1 query, each once, sorted */
};

/* The bounds of a zone of TG_STATS_ZONE requests (in load order) of the
 * aggregates: a list skips a zone whose bounds rule every row out. */
#define TG_STATS_ZONE 4096
struct tg_stats_zone {
	int64_t min_start, max_start, min_dur, max_dur;
};

struct tg_run_stats {
	int64_t run_id;
	int64_t run_started_ns;  /* identifies the run across store replacement */
	int64_t last_id;         /* highest request id loaded */
	int small_run;           /* under an eighth of the store's requests: its
				    first loads walk its indexes */
	size_t n;                /* requests loaded */
	size_t cap;
	int64_t *start_ns;       /* per request, unix ns */
	int64_t *dur_ns;         /* per request */
	int16_t *status;         /* per request, 0 = none */
	int32_t *id_off;         /* per request, its id - first_id */
	uint16_t *ep;            /* per request, its index in eps */
	struct tg_stats_zone *zones; /* per TG_STATS_ZONE requests */
	size_t cap_zones;
	int64_t first_id;        /* id of the first request loaded (not the lowest:
				    the first load is in start order) */
	int ids_far;             /* some id is 2^31 or more away: no tg_stats_list() */
	uint32_t *path;          /* per request, its index in paths */
	char **paths;            /* the run's distinct paths; paths[0] is NULL (no path) */
	size_t n_paths, cap_paths, path_bytes;
	uint32_t *path_table;    /* hash table of paths indexes, 0 = empty */
	size_t path_table_size;  /* power of two */
	int paths_full;          /* over TG_STATS_MAX_PATHS: some requests' paths not kept */
	int other_routed;        /* some request with a route is in the "(other)" endpoint */
	int64_t min_start_ns, max_end_ns;
	struct tg_endpoint_stats all; /* every request of the run */
	struct tg_endpoint_stats *eps;
	size_t n_eps, cap_eps;
	uint32_t *table;        /* hash table of eps indexes + 1, 0 = empty */
	size_t table_size;      /* power of two */
	uint64_t last_used;
	struct tg_timeline timeline;
	struct tg_proc_metrics *pm; /* of the processes asked for, in that order */
	size_t n_pm, cap_pm;
	struct tg_query_totals queries;
};

/* Locks the stats and returns those of run_id brought up to date from db.
 * NULL (and nothing locked) when the run does not exist or on SQLite or
 * memory errors (*err then says which). On success call tg_stats_release()
 * when done; the pointer is valid until then. */
struct tg_run_stats *tg_stats_acquire(sqlite3 *db, int64_t run_id, const char **err);

/* As tg_stats_acquire(), but only when the run's stats are loaded already
 * and the lock is free: never waits for a first load or another user.
 * NULL (nothing locked) otherwise. */
struct tg_run_stats *tg_stats_peek(sqlite3 *db, int64_t run_id);

/* A page of the requests list answered from the aggregates (api.c uses it
 * when the filters, each common, are rare together: the store would have
 * to read every row one of them matches). */
struct tg_stats_filter {
	const uint8_t *ep_ok;     /* per endpoint of the run: may match; NULL = any */
	const uint8_t *path_ok;   /* per distinct path (paths): matches; NULL = any */
	int status_lo, status_hi; /* inclusive; 0, 0 = any */
	int status_none;          /* only requests without a status (status_lo, status_hi 0) */
	int64_t min_dur;          /* -1 = any */
	int64_t from, to;         /* start in [from, to) */
	int by_duration, desc;    /* the sort key (else the start) and its direction */
	int after;                /* rows after (after_key, after_id) in that order only */
	int64_t after_key, after_id;
};

/* The first cap requests of s matching f, in the list's order (key, then
 * id): their ids and keys into ids[] and keys[]; returns how many (< cap
 * when there are no more), or -1 when out of memory or s cannot say. */
long tg_stats_list(const struct tg_run_stats *s, const struct tg_stats_filter *f, int64_t *ids, int64_t *keys,
		   size_t cap);

/* Unlocks what tg_stats_acquire() or tg_stats_peek() returned. */
void tg_stats_release(void);

/* The CPU and memory samples of process_id (one of s's run), brought up
 * to date from db. Callers hold the stats lock; the result is valid until
 * they release it. NULL on SQLite or memory errors (*err says which). */
const struct tg_proc_metrics *tg_stats_metrics(sqlite3 *db, struct tg_run_stats *s, int64_t process_id,
					       const char **err);

/* The run's query totals, and each endpoint's, brought up to date from
 * db; the number of distinct requests with an N+1 query is
 * queries.n_plus_one.n. Callers
 * hold the stats lock; the result is valid until they release it. NULL on
 * SQLite or memory errors (*err says which), such as a store without the
 * queries table. */
const struct tg_query_totals *tg_stats_queries(sqlite3 *db, struct tg_run_stats *s, const char **err);

/* Percentile pct (0 < pct <= 100) of the durations; 0 when empty. Sorts
 * them first if needed (callers hold the stats lock). */
int64_t tg_durs_percentile(struct tg_durs *d, double pct);

/* How many of the durations are >= v (sorts them first if needed). */
size_t tg_durs_count_ge(struct tg_durs *d, int64_t v);

#endif
