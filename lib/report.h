/*
 * lib/report.h - one run of the store, aggregated for `timeglass ci` and
 * `timeglass score` (and the dashboard's /api/score): requests attributed to
 * the tests of a pytest session, statistics per route and per test, and the
 * scorecard of the benchmarks TimeGlass grades.
 *
 * Workload: a test suite's run, thousands to a few hundred thousand
 * requests; everything is loaded into memory once and sorted there.
 *
 * Attribution of requests to tests: the pytest plugin writes each test's
 * [begin, end] as Unix nanoseconds and its pid. A request whose start lies in
 * a test's window belongs to that test; a test of the request's own pid wins
 * (in-process TestClient requests), otherwise the window alone decides
 * (requests served by a live server in another process). A request's
 * queries count for its test.
 *
 * Queries outside any request (a fixture that seeds rows, a test that calls
 * a repository function, work the app does outside a request scope) count
 * for the test whose window holds their start and whose process ran them;
 * queries of other processes outside requests (a live server starting up)
 * belong to no test. Their N+1 patterns are found per test with the
 * recorder's rule: one fingerprint run from one call site at least
 * $TIMEGLASS_N_PLUS_ONE times (default 5).
 *
 * Functions that can fail return -1 with one line in tg_error() (util.h).
 * The sqlite3 connection may be read-only; nothing is written to it.
 */
#ifndef TG_REPORT_H
#define TG_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#include "lib/losses.h"

struct jw;

struct rp_request {
	int64_t id;
	int64_t start_unix_ns, duration_ns;
	int32_t pid;
	int status;          /* 0 when the response never came */
	size_t route;        /* index into rp_report.routes */
	long test;           /* index into rp_report.tests, -1 = outside any test */
	int64_t queries;     /* SQL queries attributed to the request */
	int64_t query_ns;    /* their summed duration */
	int64_t n_plus_one;  /* distinct N+1 query fingerprints in the request */
	int64_t process_id;  /* processes.id */
	int64_t wait_ns;     /* its estimated wait for a CPU (cpu_wait), -1 when not measured */
};

struct rp_route {
	char *key;           /* "METHOD /route/{template}" (the raw path without a template) */
	int64_t count, n4xx, n5xx;
	int64_t queries, max_queries, query_ns;
	int64_t n_plus_one;  /* requests with an N+1 finding */
	size_t max_q_req;    /* index of the request with the most queries */
	double mean_ms, stdev_ms, p50_ms, p90_ms, p95_ms, p99_ms, max_ms;
	double *samples_ms;  /* count durations, ascending */
	/* Load-adjusted durations (r->cpu_wait): each duration less its
	 * request's estimated wait for a CPU. NULL and NAN when the run has no
	 * such figures. */
	double *adj_samples_ms; /* count, ascending */
	double adj_p50_ms;
	double cpu_wait_ms;     /* the mean wait taken off */
	double cpu_ms;          /* mean CPU per request (stack sampler), NAN when not measured; the
				 * floor of the adjusted durations */
};

struct rp_test {
	char *nodeid;
	char outcome[16];    /* "passed", "failed", "skipped", "" when unknown */
	int32_t pid;
	int64_t start_unix_ns, end_unix_ns;
	int64_t requests, n5xx;
	int64_t queries, query_ns;   /* all its queries: of its requests and outside any request */
	int64_t outside_queries;     /* of which outside any request */
	int64_t n_plus_one;          /* N+1 fingerprints: per request, and over its queries outside requests */
};

struct rp_report {
	int64_t run_id;
	char *command;
	int64_t run_start_ns, run_end_ns;   /* end 0 while recording */
	int has_queries;                    /* the store has a queries table */
	struct rp_request *reqs; size_t nreqs;
	struct rp_route *routes; size_t nroutes;
	struct rp_test *tests; size_t ntests;
	int64_t total_queries, total_query_ns, total_n_plus_one; /* of the requests */
	int64_t outside_queries, outside_query_ns; /* queries outside any request */
	int64_t untested_queries;            /* queries (in requests or not) of no test */
	int64_t first_start_ns, last_end_ns; /* request activity span */
	int has_metrics;
	int64_t cpu_ns;                      /* CPU time of the run's processes, summed */
	int64_t peak_rss;                    /* largest RSS of one process, bytes */
	int64_t metrics_span_ns;             /* wall time covered by the metrics */
	/* Run-queue delay of the processes that served requests, over the
	 * metrics intervals their requests overlap (schedstat in
	 * process_metrics): cpu_wait is set when it was recorded; cpu_wait_k
	 * is (sched_cpu + run_delay) / sched_cpu, 1 on an idle machine. */
	int cpu_wait;
	double cpu_wait_k;
	int64_t sched_cpu_ns, run_delay_ns;
	struct tg_losses losses;             /* losses and sampling notes (losses.h) */
};

/* Loads run_id (0 = the latest) into r and, when events_path is not NULL,
 * the test boundaries of that JSON-lines file (a missing file means no
 * tests). Returns 0 or -1; free with rp_free() either way. */
int rp_load(sqlite3 *db, int64_t run_id, const char *events_path, struct rp_report *r);

/* rp_load() over the store at path, opened read-only for the call. */
int rp_load_path(const char *path, int64_t run_id, const char *events_path, struct rp_report *r);

void rp_free(struct rp_report *r);

/* Index of route key in r->routes, or -1. */
long rp_find_route(const struct rp_report *r, const char *key);

/* Nearest-rank percentile (0 < p <= 100) of n ascending values; 0 when n is 0. */
double rp_percentile(const double *sorted, size_t n, double p);

/* One-sided Mann-Whitney U test (normal approximation with tie correction):
 * the p-value for "b tends to be larger than a". Returns 1.0 when either
 * side is empty. */
double rp_mann_whitney_greater(const double *a, size_t na, const double *b, size_t nb);

/* ---- the scorecard ----------------------------------------------------- */

#define RP_EVIDENCE_MAX 5

enum rp_bench {
	RP_AVG, RP_P90, RP_P99, RP_RPS, RP_CPU, RP_MEM, RP_DB, RP_5XX, RP_4XX, RP_COVERAGE,
	RP_BENCH_COUNT,
};

struct rp_score_item {
	const char *key;       /* "latency_avg", ... */
	const char *name;      /* "Average latency", ... */
	int measured;          /* 0: figure says why not */
	double value;          /* in the unit below, when measured */
	const char *unit;      /* "ms", "req/s", "%", "MiB", ... */
	char figure[96];       /* the value for people */
	char grade;            /* 'A'..'F', or '-' when not graded */
	char note[200];        /* what the figure means or why it is missing */
	char evidence[RP_EVIDENCE_MAX][200];
	size_t nevidence;
};

struct rp_coverage {
	int found;             /* a coverage data file was read */
	char path[512];
	int64_t files, lines;  /* measured (executed) lines */
	double percent;        /* < 0: not known (no coverage.json total) */
};

/* Reads coverage.py's data file (SQLite; tables file and line_bits or arc)
 * and, for the percentage, coverage.json beside it when coverage's JSON
 * report is there. path NULL: ./.coverage. A missing file gives found = 0;
 * a file that cannot be read is reported as not found too. */
void rp_coverage_read(const char *path, struct rp_coverage *c);

/* Computes the scorecard of r; cov may be NULL (not measured). */
void rp_score(const struct rp_report *r, const struct rp_coverage *cov, struct rp_score_item out[RP_BENCH_COUNT]);

/* Sets item it of benchmark b to v (its figure with `decimals` decimals,
 * its grade) and clears its evidence; note replaces the note when not NULL.
 * For figures measured elsewhere than in the store (`timeglass bench`). */
void rp_score_set(struct rp_score_item *it, enum rp_bench b, double v, int decimals, const char *note);

/* The grade thresholds as help text lines (for --help and the docs). */
void rp_score_thresholds(FILE *f);

/* Writes `"key": v` (a double, null when not finite) into an open object. */
void rp_jw_num(struct jw *w, const char *key, double v);

/* Writes the run's losses as a JSON object: lost_events, samples_dropped,
 * sample_ticks_skipped, text, sampling_text (may be ""), and kinds: [{kind,
 * class ("loss" | "sampling"), label, description, records, events, bytes}]
 * (the same fields as the dashboard's API). */
void rp_losses_json(struct jw *w, const struct tg_losses *l);

/* Writes the scorecard as a JSON array of objects. */
void rp_score_json(struct jw *w, const struct rp_score_item items[RP_BENCH_COUNT]);

#endif
