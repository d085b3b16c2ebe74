/*
 * cli/ci.h - what the files of `timeglass ci` share: cmd_ci.c (the options,
 * the checks, the figures of routes and tests, the command), ci_suite.c (the
 * suite runner), ci_baseline.c (baselines) and ci_report.c (the reports).
 */
#ifndef TG_CLI_CI_H
#define TG_CLI_CI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct budget;
struct jw;
struct rp_report;
struct rp_request;
struct rp_score_item;

#define MW_MIN_SAMPLES 5
#define MW_ALPHA 0.01

enum cls { CLS_TIMING, CLS_QUERIES, CLS_ERRORS, CLS_NPLUS1, CLS_COUNT };
extern const char *const ci_cls_names[CLS_COUNT];

struct ci_opts {
	const char *db, *budget, *baseline, *save_baseline, *junit, *markdown, *json, *coverage, *events;
	int64_t run;
	double tolerance, floor_ms;
	int tolerance_set;
	int warn_only[CLS_COUNT];
	int quiet;
	int coverage_run;
	char **cmd;
};

/* ---- the suite runner (ci_suite.c) --------------------------------------- */

/* Runs `timeglass run --db DB --quiet -- CMD...` (cmd: NULL-terminated)
 * with the pytest plugin's environment and TIMEGLASS_TEST_EVENTS=events.
 * Returns CMD's status (128 + signal when killed); dies when it cannot
 * fork. */
int ci_run_suite(const char *db, char **cmd, const char *events);

/* ---- checks (cmd_ci.c) ---------------------------------------------------- */

struct check {
	const char *suite;    /* "budget" | "baseline" */
	char name[320];       /* "p95 GET /items/{item_id}" */
	enum cls cls;
	int failed, warn;     /* warn: failed but reported as a warning */
	char route[256];
	char test[512];
	char msg[640];
};

struct checks {
	struct check *v;
	size_t n, cap;
	size_t breaches, regressions, warnings;
};

/* Returns the array v of *cap elements of size bytes with room for element
 * n, doubled when full. Dies without memory. */
void *ci_grow(void *v, size_t n, size_t *cap, size_t size);
/* Adds a check of suite (a string literal) that passes until failed. */
struct check *ci_add_check(struct checks *c, const char *suite, enum cls cls, const char *route, const char *test,
			   const char *name_fmt, ...) __attribute__((format(printf, 6, 7)));
/* Fails check k with a message; warn: reported as a warning. */
void ci_fail_check(struct checks *c, struct check *k, int warn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* What a failed check is called in every report. */
const char *ci_finding(const struct check *k);
/* The number of checks of a suite; with gate, also those that fail the
 * gate (failed, not warnings). */
size_t ci_suite_checks(const struct checks *c, const char *suite, size_t *gate);
/* The nodeid of test t, "" for none (-1). */
const char *ci_test_of(const struct rp_report *r, long t);
/* The test of the first request of route k that matches want. */
const char *ci_route_test(const struct rp_report *r, size_t k, int (*want)(const struct rp_request *));
int ci_is_5xx(const struct rp_request *q);
int ci_is_np1(const struct rp_request *q);
/* The test of route k's slowest request. */
const char *ci_slowest_test(const struct rp_report *r, size_t k);
/* " (test T)" in buf, or "" when t is "". */
const char *ci_in_test(const char *t, char *buf, size_t cap);

/* ---- figures of routes and tests (cmd_ci.c) ------------------------------ */

/* The figures of a route (R_) or a test (T_), each defined once in ci_figures[];
 * the baseline, the JSON report and the tables list the ones they show. */
enum fig {
	R_KEY, R_COUNT, R_MEAN, R_STDEV, R_P50, R_P90, R_P95, R_P99, R_MAX, R_QUERIES, R_PER_REQ, R_MAX_Q, R_NP1,
	R_4XX, R_5XX, R_ADJ_P50, R_CPU_WAIT, R_CPU,
	T_NODEID, T_OUTCOME, T_REQUESTS, T_QUERIES, T_OUTSIDE, T_DB_MS, T_NP1, T_5XX, T_MS,
};

enum fkind {
	F_I64,     /* an int64_t member */
	F_MS,      /* a double member */
	F_STR,     /* a char * member */
	F_TEXT,    /* a char array member */
	F_PER_REQ, /* struct rp_route: queries per request, 0 without requests */
	F_SPAN_MS, /* struct rp_test: its duration in ms */
	F_NS_MS,   /* an int64_t member in ns, shown in ms */
};

struct ci_field {
	const char *key; /* in JSON */
	enum fkind kind;
	size_t off;
};

extern const struct ci_field ci_figures[];

#define FIGS(a) (a), sizeof(a) / sizeof(a)[0]

int ci_is_text(enum fig g);
int64_t ci_fig_i64(const void *row, enum fig g);
double ci_fig_num(const void *row, enum fig g);
const char *ci_fig_str(const void *row, enum fig g);
void ci_kv_i64(struct jw *w, const char *key, int64_t v);
void ci_kv_u64(struct jw *w, const char *key, uint64_t v);
/* s == NULL writes null */
void ci_kv_str(struct jw *w, const char *key, const char *s);
/* Writes the n figures figs of row (a struct rp_route or rp_test). */
void ci_put_figs(struct jw *w, const void *row, const unsigned char *figs, size_t n);
/* Writes key: an array of one object per row, of the figures figs. */
void ci_put_array(struct jw *w, const char *key, const void *rows, size_t n, size_t size,
		  const unsigned char *figs, size_t nfigs);

/* ---- baselines (ci_baseline.c) ------------------------------------------- */

struct baseline {
	double cpu_wait_k;   /* the baseline run's CPU stretch factor; 0 in a baseline without one */
	struct base_route *routes;
	size_t nroutes;
	struct base_test *tests;
	size_t ntests;
};

/* What the timing rule compares: wall durations, or wall durations less the
 * expected wait for a CPU on both sides (report.h, cpu_wait) when both runs
 * measured it; why, for the reports. */
struct timing_basis {
	int adjusted;
	double k, base_k; /* the stretch factors, 0 when not measured */
	char why[240];
};

/* Writes run r as a baseline to path. Dies when it cannot. */
void ci_write_baseline(const char *path, const struct rp_report *r);
/* Reads a baseline with SQLite's JSON functions. Dies on a bad file. */
void ci_read_baseline(const char *path, struct baseline *b);
void ci_free_baseline(struct baseline *b);
void ci_timing_basis(const struct rp_report *r, const struct baseline *b, struct timing_basis *tb);
/* "wall" or "wall-adjusted-for-cpu-wait" */
const char *ci_basis_name(const struct timing_basis *tb);
/* Adds the checks of run r against baseline b to c. */
void ci_check_baseline(const struct rp_report *r, const struct baseline *b, const struct timing_basis *basis,
		       const struct ci_opts *o, struct checks *c);
/* The run's CPU-wait figures (report.h), in the baseline and the JSON report. */
void ci_put_cpu_wait(struct jw *w, const struct rp_report *r);

/* ---- reports (ci_report.c) ----------------------------------------------- */

struct ci_result {
	const struct rp_report *r;
	const struct checks *c;
	const struct rp_score_item *score;
	const struct budget *budget;
	const char *baseline;
	const struct timing_basis *basis; /* with a baseline */
	const struct ci_opts *o;
	int cmd_status;        /* -1 when no command ran */
	int exit_status;
};

typedef void (*ci_writer_fn)(FILE *f, const struct ci_result *x);

/* The summary on the terminal; color: with ANSI colours. */
void ci_print_terminal(FILE *f, const struct ci_result *x, int color);
void ci_write_markdown(FILE *f, const struct ci_result *x);
void ci_write_junit(FILE *f, const struct ci_result *x);
void ci_write_json(FILE *f, const struct ci_result *x);
/* Writes fn's report to path ("-": standard output), opened with mode;
 * warns when it cannot. */
void ci_write_file(const char *path, const char *mode, ci_writer_fn fn, const struct ci_result *x);

#endif
