/*
 * cmd_ci.c - `timeglass ci`: runs a test suite under `timeglass run` with the
 * pytest plugin, then turns the recorded run into a report and a gate.
 *
 * Flow: the suite runs as a child (`timeglass run --db DB --quiet -- CMD`,
 * the same binary; cli/ci_suite.c) with TIMEGLASS_TEST_EVENTS naming a temporary file and
 * the plugin on PYTEST_PLUGINS; the run it recorded is loaded with report.h
 * and its requests and queries attributed to tests; budgets (budget.h) and
 * a saved baseline are checked; the result goes to the terminal, Markdown
 * (also $GITHUB_STEP_SUMMARY), JUnit XML and JSON. Without CMD, an existing run
 * (--run, default the latest) is checked instead, with --events naming its
 * test events.
 *
 * Exit status: CMD's own when it failed; else 1 for any budget breach or
 * regression that is not a warning; else 0. Bad usage: 2.
 *
 * Timing regressions: a route is slower when its new p50 exceeds the
 * baseline p50 by more than the tolerance (default 25 %) and by at least
 * the noise floor (default 1 ms), and a one-sided Mann-Whitney U test over
 * the durations gives p < 0.01. With fewer than 5 samples on either side
 * the test is skipped and the report says so. When both runs measured
 * their processes' wait for a CPU (report.h, cpu_wait), the durations
 * compared are load-adjusted, so that a busy machine is not a slowdown;
 * the reports name the basis used and why.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/ci.h"
#include "cli/args.h"
#include "cli/cmds.h"
#include "cli/coverage_run.h"
#include "common/grow.h"
#include "lib/budget.h"
#include "lib/jsonw.h"
#include "lib/readers.h"
#include "lib/report.h"
#include "lib/store.h"
#include "tg_config.h"
#include "lib/util.h"

#define MW_MIN_SAMPLES 5
#define MW_ALPHA 0.01
#define BASELINE_MAX_SAMPLES 2000
#define TABLE_MAX_TESTS 200 /* tests listed in the tables; JSON has all */

enum cls { CLS_TIMING, CLS_QUERIES, CLS_ERRORS, CLS_NPLUS1, CLS_COUNT };
static const char *const cls_names[CLS_COUNT] = {"timing", "queries", "errors", "n+1"};

void cmd_ci_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass ci [OPTIONS] -- CMD [ARGS...]\n"
		   "       timeglass ci [OPTIONS] [--run ID] [--events FILE]\n"
		   "\n"
		   "Runs a test suite (CMD, e.g. /usr/bin/python3 -m pytest) under `timeglass run`\n"
		   "with the TimeGlass pytest plugin, reports requests, SQL queries, N+1 findings\n"
		   "and time per test and per route, and fails on budget breaches and on\n"
		   "regressions against a saved baseline. Without CMD it checks a recorded run.\n"
		   "A test counts the queries of its requests and those its own process ran\n"
		   "outside any request while it ran (fixtures, repository calls).\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH             store (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --budget FILE         budgets: a pyproject.toml ([tool.timeglass]) or a file of\n"
		   "                        the same keys at top level (default: ./pyproject.toml)\n"
		   "  --baseline FILE       compare with a baseline saved by --save-baseline\n"
		   "  --save-baseline FILE  write this run's figures as a baseline\n"
		   "  --time-tolerance X    timing tolerance over the baseline p50 (default 0.25)\n"
		   "  --time-floor-ms X     smaller p50 differences are noise (default 1)\n"
		   "  --warn-only CLASS     report a class of regressions as warnings: timing,\n"
		   "                        queries, errors or n+1 (repeatable, or comma-separated)\n"
		   "  --junit FILE          JUnit XML: one testcase per check\n"
		   "  --markdown FILE       Markdown report (also appended to $GITHUB_STEP_SUMMARY)\n"
		   "  --json FILE           JSON report ('-' for stdout)\n"
		   "  --coverage FILE       coverage.py data file for the scorecard (default ./.coverage)\n"
		   "  --coverage-run        run the suite under coverage.py (python3-coverage) for the\n"
		   "                        code under the current directory, tests left out; its\n"
		   "                        percentage goes on the scorecard\n"
		   "  --events FILE         keep the test events here (without CMD: read them)\n"
		   "  --run ID              without CMD: the run to check (default: the latest)\n"
		   "  -q, --quiet           no terminal report, only findings and the result line\n"
		   "  -h, --help            show this help\n"
		   "\n"
		   "Budget keys ([tool.timeglass], or [tool.timeglass.routes.\"GET /path/{id}\"]):\n"
		   "  p95_ms, max_queries_per_request, allow_n_plus_one, max_5xx, time_tolerance\n"
		   "\n"
		   "Regressions against the baseline: more queries per request on a route or in a\n"
		   "test (exact), a new N+1 pattern, more 5xx responses, and slower routes: new p50\n"
		   "> baseline p50 x (1 + tolerance), at least the floor slower, and a one-sided\n"
		   "Mann-Whitney U test at p < 0.01 (only the tolerance with < 5 samples a side).\n"
		   "When both runs recorded their wait for a CPU (run-queue delay), the durations\n"
		   "compared are less that wait (never below the route's CPU per request), so a\n"
		   "machine busy with other work is not a slowdown; the report names the basis.\n"
		   "\n"
		   "Exit status: CMD's when it failed, 1 for breaches or regressions, 2 for bad usage.\n");
}

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

/* ---- checks ------------------------------------------------------------ */

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
static void *grow(void *v, size_t n, size_t *cap, size_t size)
{
	if (tg_grow(&v, cap, n, size, 32) < 0)
		tg_die("out of memory");
	return v;
}

static struct check *add_check(struct checks *c, const char *suite, enum cls cls, const char *route, const char *test,
			       const char *name_fmt, ...) __attribute__((format(printf, 6, 7)));
static struct check *add_check(struct checks *c, const char *suite, enum cls cls, const char *route, const char *test,
			       const char *name_fmt, ...)
{
	c->v = grow(c->v, c->n, &c->cap, sizeof *c->v);
	struct check *k = &c->v[c->n++];
	memset(k, 0, sizeof *k);
	k->suite = suite;
	k->cls = cls;
	tg_strlcpy(k->route, route ? route : "", sizeof k->route);
	tg_strlcpy(k->test, test ? test : "", sizeof k->test);
	va_list ap;
	va_start(ap, name_fmt);
	vsnprintf(k->name, sizeof k->name, name_fmt, ap);
	va_end(ap);
	return k;
}

static void fail_check(struct checks *c, struct check *k, int warn, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail_check(struct checks *c, struct check *k, int warn, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(k->msg, sizeof k->msg, fmt, ap);
	va_end(ap);
	k->failed = 1;
	k->warn = warn;
	if (warn)
		c->warnings++;
	else if (!strcmp(k->suite, "budget"))
		c->breaches++;
	else
		c->regressions++;
}

/* What a failed check is called in every report. */
static const char *finding(const struct check *k)
{
	return !strcmp(k->suite, "budget") ? "budget" : "regression";
}

/* The number of checks of a suite; with gate, also those that fail the
 * gate (failed, not warnings). */
static size_t suite_checks(const struct checks *c, const char *suite, size_t *gate)
{
	size_t n = 0, nf = 0;
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].suite, suite)) {
			n++;
			nf += c->v[i].failed && !c->v[i].warn;
		}
	if (gate)
		*gate = nf;
	return n;
}

static const char *test_of(const struct rp_report *r, long t)
{
	return t >= 0 ? r->tests[t].nodeid : "";
}

/* The test of the first request of route k that matches want. */
static const char *route_test(const struct rp_report *r, size_t k, int (*want)(const struct rp_request *))
{
	for (size_t i = 0; i < r->nreqs; i++)
		if (r->reqs[i].route == k && r->reqs[i].test >= 0 && (!want || want(&r->reqs[i])))
			return r->tests[r->reqs[i].test].nodeid;
	return "";
}

static int is_5xx(const struct rp_request *q) { return q->status >= 500; }
static int is_np1(const struct rp_request *q) { return q->n_plus_one > 0; }

static const char *slowest_test(const struct rp_report *r, size_t k)
{
	long best = -1;
	int64_t d = -1;
	for (size_t i = 0; i < r->nreqs; i++)
		if (r->reqs[i].route == k && r->reqs[i].duration_ns > d) {
			d = r->reqs[i].duration_ns;
			best = r->reqs[i].test;
		}
	return test_of(r, best);
}

static const char *in_test(const char *t, char *buf, size_t cap)
{
	if (*t)
		snprintf(buf, cap, " (test %s)", t);
	else
		buf[0] = '\0';
	return buf;
}

static void check_budget(const struct rp_report *r, const struct budget *b, struct checks *c)
{
	char tb[600];
	for (size_t k = 0; k < r->nroutes; k++) {
		const struct rp_route *ro = &r->routes[k];
		struct bg_limits l = bg_for_route(b, ro->key);
		if (l.set & BG_P95) {
			struct check *x = add_check(c, "budget", CLS_TIMING, ro->key, slowest_test(r, k), "p95 %s", ro->key);
			if (ro->p95_ms > l.p95_ms)
				fail_check(c, x, 0, "%s: p95 %.2f ms > budget %g ms over %" PRId64 " requests%s", ro->key,
					   ro->p95_ms, l.p95_ms, ro->count, in_test(x->test, tb, sizeof tb));
		}
		if (l.set & BG_QUERIES) {
			const char *t = ro->count ? test_of(r, r->reqs[ro->max_q_req].test) : "";
			struct check *x = add_check(c, "budget", CLS_QUERIES, ro->key, t, "queries per request %s", ro->key);
			if (ro->max_queries > l.max_queries)
				fail_check(c, x, 0, "%s: %" PRId64 " queries in request %" PRId64 " > budget %" PRId64 "%s",
					   ro->key, ro->max_queries, r->reqs[ro->max_q_req].id, l.max_queries,
					   in_test(t, tb, sizeof tb));
		}
		if ((l.set & BG_N_PLUS_ONE) && !l.allow_n_plus_one) {
			const char *t = route_test(r, k, is_np1);
			struct check *x = add_check(c, "budget", CLS_NPLUS1, ro->key, t, "no N+1 %s", ro->key);
			if (ro->n_plus_one)
				fail_check(c, x, 0, "%s: N+1 queries in %" PRId64 " of %" PRId64 " requests (limit: none)%s",
					   ro->key, ro->n_plus_one, ro->count, in_test(t, tb, sizeof tb));
		}
		if (l.set & BG_5XX) {
			const char *t = route_test(r, k, is_5xx);
			struct check *x = add_check(c, "budget", CLS_ERRORS, ro->key, t, "5xx %s", ro->key);
			if (ro->n5xx > l.max_5xx)
				fail_check(c, x, 0, "%s: %" PRId64 " 5xx responses > budget %" PRId64 "%s", ro->key, ro->n5xx,
					   l.max_5xx, in_test(t, tb, sizeof tb));
		}
	}
	if (b->global.set & BG_5XX) {
		int64_t n5 = 0;
		long first = -1;
		char ids[200] = "";
		size_t used = 0;
		for (size_t i = 0; i < r->nreqs; i++) {
			if (r->reqs[i].status < 500)
				continue;
			if (!n5++)
				first = (long)i;
			if (n5 <= 5 && used < sizeof ids - 24)
				used += (size_t)snprintf(ids + used, sizeof ids - used, "%s%" PRId64, n5 > 1 ? ", " : "",
							 r->reqs[i].id);
		}
		const char *route = first >= 0 ? r->routes[r->reqs[first].route].key : "";
		const char *t = first >= 0 ? test_of(r, r->reqs[first].test) : "";
		struct check *x = add_check(c, "budget", CLS_ERRORS, route, t, "5xx responses");
		if (n5 > b->global.max_5xx)
			fail_check(c, x, 0, "%" PRId64 " 5xx responses > budget %" PRId64 ": first %s%s; requests %s%s", n5,
				   b->global.max_5xx, route, in_test(t, tb, sizeof tb), ids, n5 > 5 ? ", ..." : "");
	}
}

/* ---- figures of routes and tests -------------------------------------- */

/* The figures of a route (R_) or a test (T_), each defined once in figures[];
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

static const struct field {
	const char *key; /* in JSON */
	enum fkind kind;
	size_t off;
} figures[] = {
#define ROUTE_F(key, kind, member) {key, kind, offsetof(struct rp_route, member)}
#define TEST_F(key, kind, member) {key, kind, offsetof(struct rp_test, member)}
	[R_KEY] = ROUTE_F("route", F_STR, key),
	[R_COUNT] = ROUTE_F("count", F_I64, count),
	[R_MEAN] = ROUTE_F("mean_ms", F_MS, mean_ms),
	[R_STDEV] = ROUTE_F("stdev_ms", F_MS, stdev_ms),
	[R_P50] = ROUTE_F("p50_ms", F_MS, p50_ms),
	[R_P90] = ROUTE_F("p90_ms", F_MS, p90_ms),
	[R_P95] = ROUTE_F("p95_ms", F_MS, p95_ms),
	[R_P99] = ROUTE_F("p99_ms", F_MS, p99_ms),
	[R_MAX] = ROUTE_F("max_ms", F_MS, max_ms),
	[R_QUERIES] = ROUTE_F("queries", F_I64, queries),
	[R_PER_REQ] = ROUTE_F("queries_per_request", F_PER_REQ, queries),
	[R_MAX_Q] = ROUTE_F("max_queries", F_I64, max_queries),
	[R_NP1] = ROUTE_F("n_plus_one", F_I64, n_plus_one),
	[R_4XX] = ROUTE_F("n4xx", F_I64, n4xx),
	[R_5XX] = ROUTE_F("n5xx", F_I64, n5xx),
	[R_ADJ_P50] = ROUTE_F("p50_adjusted_ms", F_MS, adj_p50_ms),
	[R_CPU_WAIT] = ROUTE_F("cpu_wait_ms", F_MS, cpu_wait_ms),
	[R_CPU] = ROUTE_F("cpu_ms", F_MS, cpu_ms),
	[T_NODEID] = TEST_F("nodeid", F_STR, nodeid),
	[T_OUTCOME] = TEST_F("outcome", F_TEXT, outcome),
	[T_REQUESTS] = TEST_F("requests", F_I64, requests),
	[T_QUERIES] = TEST_F("queries", F_I64, queries),
	[T_OUTSIDE] = TEST_F("queries_outside_requests", F_I64, outside_queries),
	[T_DB_MS] = TEST_F("db_ms", F_NS_MS, query_ns),
	[T_NP1] = TEST_F("n_plus_one", F_I64, n_plus_one),
	[T_5XX] = TEST_F("n5xx", F_I64, n5xx),
	[T_MS] = TEST_F("duration_ms", F_SPAN_MS, start_unix_ns),
#undef ROUTE_F
#undef TEST_F
};

/* A baseline keeps what check_baseline() compares, plus the percentiles
 * for people reading it; the JSON report has every figure. */
static const unsigned char base_route_figs[] = {R_COUNT, R_P50, R_P95, R_P99, R_MEAN, R_STDEV, R_QUERIES, R_PER_REQ,
						R_NP1, R_5XX, R_ADJ_P50, R_CPU_WAIT};
static const unsigned char json_route_figs[] = {R_KEY, R_COUNT, R_MEAN, R_STDEV, R_P50, R_P90, R_P95, R_P99, R_MAX,
						R_QUERIES, R_PER_REQ, R_MAX_Q, R_NP1, R_4XX, R_5XX, R_ADJ_P50,
						R_CPU_WAIT, R_CPU};
static const unsigned char base_test_figs[] = {T_REQUESTS, T_QUERIES, T_OUTSIDE, T_NP1, T_5XX};
static const unsigned char json_test_figs[] = {T_NODEID, T_OUTCOME, T_REQUESTS, T_QUERIES, T_OUTSIDE, T_DB_MS, T_NP1,
					       T_5XX, T_MS};

#define FIGS(a) (a), sizeof(a) / sizeof(a)[0]

static int is_text(enum fig g)
{
	return figures[g].kind == F_STR || figures[g].kind == F_TEXT;
}

static int64_t fig_i64(const void *row, enum fig g)
{
	return *(const int64_t *)((const char *)row + figures[g].off);
}

static double fig_num(const void *row, enum fig g)
{
	if (figures[g].kind == F_PER_REQ) {
		const struct rp_route *ro = row;
		return ro->count ? (double)ro->queries / (double)ro->count : 0.0;
	}
	if (figures[g].kind == F_SPAN_MS) {
		const struct rp_test *t = row;
		return (double)(t->end_unix_ns - t->start_unix_ns) / 1e6;
	}
	if (figures[g].kind == F_NS_MS)
		return (double)fig_i64(row, g) / 1e6;
	return *(const double *)((const char *)row + figures[g].off);
}

static const char *fig_str(const void *row, enum fig g)
{
	const char *p = (const char *)row + figures[g].off;
	return figures[g].kind == F_STR ? *(const char *const *)p : p;
}

static void kv_i64(struct jw *w, const char *key, int64_t v)
{
	jw_key(w, key);
	jw_i64(w, v);
}

static void kv_u64(struct jw *w, const char *key, uint64_t v)
{
	jw_key(w, key);
	jw_u64(w, v);
}

/* s == NULL writes null */
static void kv_str(struct jw *w, const char *key, const char *s)
{
	jw_key(w, key);
	jw_cstr(w, s);
}

static void put_figs(struct jw *w, const void *row, const unsigned char *figs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		enum fig g = figs[i];
		if (figures[g].kind == F_I64)
			kv_i64(w, figures[g].key, fig_i64(row, g));
		else if (is_text(g))
			kv_str(w, figures[g].key, fig_str(row, g));
		else
			rp_jw_num(w, figures[g].key, fig_num(row, g));
	}
}

/* Writes key: an array of one object per row, of the figures figs. */
static void put_array(struct jw *w, const char *key, const void *rows, size_t n, size_t size,
		      const unsigned char *figs, size_t nfigs)
{
	jw_key(w, key);
	jw_arr_open(w);
	for (size_t i = 0; i < n; i++) {
		jw_obj_open(w);
		put_figs(w, (const char *)rows + i * size, figs, nfigs);
		jw_obj_close(w);
	}
	jw_arr_close(w);
}

/* ---- baselines --------------------------------------------------------- */

struct base_route {
	char *key;
	int64_t count, queries, n_plus_one, n5xx;
	double p50_ms;
	double *samples;
	size_t nsamples;
	double adj_p50_ms;   /* load-adjusted (report.h), when nadj */
	double *adj_samples; /* ascending */
	size_t nadj;
};

struct base_test {
	char *nodeid;
	int64_t requests, queries, n_plus_one;
	int all_queries; /* queries counts those outside requests too (baselines since they have
			    queries_outside_requests); else only those of the test's requests */
};

struct baseline {
	double cpu_wait_k;   /* the baseline run's CPU stretch factor; 0 in a baseline without one */
	struct base_route *routes;
	size_t nroutes;
	struct base_test *tests;
	size_t ntests;
};

/* Writes key: at most BASELINE_MAX_SAMPLES of the n values v, evenly thinned. */
static void put_samples(struct jw *w, const char *key, const double *v, size_t n)
{
	jw_key(w, key);
	jw_arr_open(w);
	size_t step = n > BASELINE_MAX_SAMPLES ? n / BASELINE_MAX_SAMPLES + 1 : 1;
	for (size_t i = 0; i < n; i += step)
		fprintf(w->f, "%s%.4f", i ? "," : "", v[i]);
	jw_arr_close(w);
}

/* The run's CPU-wait figures (report.h), in the baseline and the JSON report. */
static void put_cpu_wait(struct jw *w, const struct rp_report *r)
{
	rp_jw_num(w, "cpu_wait_factor", r->cpu_wait_k);
	rp_jw_num(w, "sched_cpu_ms", (double)r->sched_cpu_ns / 1e6);
	rp_jw_num(w, "run_delay_ms", (double)r->run_delay_ns / 1e6);
}

static void write_baseline(const char *path, const struct rp_report *r)
{
	FILE *f = fopen(path, "w");
	if (!f)
		tg_die("cannot write baseline %s: %s", path, strerror(errno));
	struct jw w;
	jw_init(&w, f);
	jw_obj_open(&w);
	kv_i64(&w, "timeglass_baseline", 1);
	kv_str(&w, "tg_version", TG_VERSION);
	kv_i64(&w, "run_id", r->run_id);
	kv_str(&w, "command", r->command);
	if (r->cpu_wait)
		put_cpu_wait(&w, r);
	jw_key(&w, "routes");
	jw_obj_open(&w);
	for (size_t k = 0; k < r->nroutes; k++) {
		const struct rp_route *ro = &r->routes[k];
		jw_key(&w, ro->key);
		jw_obj_open(&w);
		put_figs(&w, ro, FIGS(base_route_figs));
		put_samples(&w, "samples_ms", ro->samples_ms, (size_t)ro->count);
		if (ro->adj_samples_ms)
			put_samples(&w, "adjusted_samples_ms", ro->adj_samples_ms, (size_t)ro->count);
		jw_obj_close(&w);
	}
	jw_obj_close(&w);
	jw_key(&w, "tests");
	jw_obj_open(&w);
	for (size_t i = 0; i < r->ntests; i++) {
		jw_key(&w, r->tests[i].nodeid);
		jw_obj_open(&w);
		put_figs(&w, &r->tests[i], FIGS(base_test_figs));
		jw_obj_close(&w);
	}
	jw_obj_close(&w);
	jw_obj_close(&w);
	jw_newline(&w);
	if (fclose(f) != 0)
		tg_die("cannot write baseline %s: %s", path, strerror(errno));
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	size_t got;
	while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n + 1 == cap) {
			char *p = realloc(buf, cap *= 2);
			if (!p) {
				free(buf);
				buf = NULL;
			}
			buf = p;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = '\0';
	*len = n;
	return buf;
}

/* Prepares sql on the in-memory database, with text (when not NULL) as ?1.
 * Dies on an error. */
static sqlite3_stmt *baseline_stmt(sqlite3 *mem, const char *path, const char *sql, const char *text, size_t len)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(mem, sql, -1, &st, NULL) != SQLITE_OK)
		tg_die("baseline %s: %s", path, sqlite3_errmsg(mem));
	if (text)
		sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC);
	return st;
}

/* Reads the JSON array s (NULL: none) into *v, *n with sm, a prepared
 * "SELECT value FROM json_each(?1)". Dies without memory. */
static void read_samples(sqlite3_stmt *sm, const char *s, double **v, size_t *n)
{
	if (!s)
		return;
	sqlite3_bind_text(sm, 1, s, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	while (sqlite3_step(sm) == SQLITE_ROW) {
		*v = grow(*v, *n, &cap, sizeof **v);
		(*v)[(*n)++] = sqlite3_column_double(sm, 0);
	}
	sqlite3_reset(sm);
}

/* Reads a baseline with SQLite's JSON functions. Dies on a bad file. */
static void read_baseline(const char *path, struct baseline *b)
{
	memset(b, 0, sizeof *b);
	size_t len;
	char *text = slurp(path, &len);
	if (!text)
		tg_die("cannot read baseline %s: %s", path, strerror(errno));
	sqlite3 *mem;
	if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		tg_die("cannot open an in-memory database");
	sqlite3_stmt *st = baseline_stmt(mem, path, "SELECT json_valid(?1) AND json_extract(?1, '$.timeglass_baseline') = 1",
					 text, len);
	if (sqlite3_step(st) != SQLITE_ROW || !sqlite3_column_int(st, 0))
		tg_die("%s is not a TimeGlass baseline (write one with --save-baseline)", path);
	sqlite3_finalize(st);
	st = baseline_stmt(mem, path, "SELECT coalesce(json_extract(?1, '$.cpu_wait_factor'), 0)", text, len);
	if (sqlite3_step(st) == SQLITE_ROW)
		b->cpu_wait_k = sqlite3_column_double(st, 0);
	sqlite3_finalize(st);

	st = baseline_stmt(mem, path,
			   "SELECT key, json_extract(value, '$.count'), json_extract(value, '$.queries'),"
			   " json_extract(value, '$.n_plus_one'), json_extract(value, '$.n5xx'),"
			   " json_extract(value, '$.p50_ms'), json_extract(value, '$.samples_ms'),"
			   " json_extract(value, '$.p50_adjusted_ms'), json_extract(value, '$.adjusted_samples_ms')"
			   " FROM json_each(?1, '$.routes')",
			   text, len);
	sqlite3_stmt *sm = baseline_stmt(mem, path, "SELECT value FROM json_each(?1)", NULL, 0);
	size_t cap = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		b->routes = grow(b->routes, b->nroutes, &cap, sizeof *b->routes);
		struct base_route *br = &b->routes[b->nroutes++];
		memset(br, 0, sizeof *br);
		br->key = strdup((const char *)sqlite3_column_text(st, 0));
		br->count = sqlite3_column_int64(st, 1);
		br->queries = sqlite3_column_int64(st, 2);
		br->n_plus_one = sqlite3_column_int64(st, 3);
		br->n5xx = sqlite3_column_int64(st, 4);
		br->p50_ms = sqlite3_column_double(st, 5);
		read_samples(sm, (const char *)sqlite3_column_text(st, 6), &br->samples, &br->nsamples);
		br->adj_p50_ms = sqlite3_column_double(st, 7);
		read_samples(sm, (const char *)sqlite3_column_text(st, 8), &br->adj_samples, &br->nadj);
	}
	sqlite3_finalize(st);
	sqlite3_finalize(sm);
	st = baseline_stmt(mem, path,
			   "SELECT key, json_extract(value, '$.requests'), json_extract(value, '$.queries'),"
			   " json_extract(value, '$.n_plus_one'),"
			   " json_type(value, '$.queries_outside_requests') IS NOT NULL FROM json_each(?1, '$.tests')",
			   text, len);
	cap = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		b->tests = grow(b->tests, b->ntests, &cap, sizeof *b->tests);
		struct base_test *bt = &b->tests[b->ntests++];
		bt->nodeid = strdup((const char *)sqlite3_column_text(st, 0));
		bt->requests = sqlite3_column_int64(st, 1);
		bt->queries = sqlite3_column_int64(st, 2);
		bt->n_plus_one = sqlite3_column_int64(st, 3);
		bt->all_queries = sqlite3_column_int(st, 4);
	}
	sqlite3_finalize(st);
	sqlite3_close(mem);
	free(text);
}

static void free_baseline(struct baseline *b)
{
	for (struct base_route *br = b->routes; br < b->routes + b->nroutes; br++) {
		free(br->key);
		free(br->samples);
		free(br->adj_samples);
	}
	for (struct base_test *bt = b->tests; bt < b->tests + b->ntests; bt++)
		free(bt->nodeid);
	free(b->routes);
	free(b->tests);
}

/* What the timing rule compares: wall durations, or wall durations less the
 * expected wait for a CPU on both sides (report.h, cpu_wait) when both runs
 * measured it; why, for the reports. */
struct timing_basis {
	int adjusted;
	double k, base_k; /* the stretch factors, 0 when not measured */
	char why[240];
};

static void timing_basis(const struct rp_report *r, const struct baseline *b, struct timing_basis *tb)
{
	tb->k = r->cpu_wait ? r->cpu_wait_k : 0;
	tb->base_k = b->cpu_wait_k;
	tb->adjusted = r->cpu_wait && b->cpu_wait_k > 0;
	if (tb->adjusted)
		snprintf(tb->why, sizeof tb->why, "run-queue delay measured on both sides: CPU work stretched x%.2f "
			 "in this run, x%.2f in the baseline's", tb->k, tb->base_k);
	else if (!r->cpu_wait)
		snprintf(tb->why, sizeof tb->why, "this run has no run-queue delay (a store or kernel without schedstat)");
	else
		snprintf(tb->why, sizeof tb->why, "the baseline has no run-queue delay (saved by an older TimeGlass, "
			 "or its run had none)");
}

static const char *basis_name(const struct timing_basis *tb)
{
	return tb->adjusted ? "wall-adjusted-for-cpu-wait" : "wall";
}

static void check_baseline(const struct rp_report *r, const struct baseline *b, const struct timing_basis *basis,
			   const struct ci_opts *o, struct checks *c)
{
	char tb[600];
	for (size_t k = 0; k < r->nroutes; k++) {
		const struct rp_route *ro = &r->routes[k];
		const struct base_route *br = NULL;
		for (size_t i = 0; i < b->nroutes && !br; i++)
			if (!strcmp(b->routes[i].key, ro->key))
				br = &b->routes[i];
		if (!br) {
			/* a new route: only new N+1 patterns and 5xx responses are regressions */
			if (ro->n_plus_one) {
				const char *t = route_test(r, k, is_np1);
				struct check *x = add_check(c, "baseline", CLS_NPLUS1, ro->key, t, "N+1 %s", ro->key);
				fail_check(c, x, o->warn_only[CLS_NPLUS1], "%s (new route): N+1 queries in %" PRId64 " requests%s",
					   ro->key, ro->n_plus_one, in_test(t, tb, sizeof tb));
			}
			if (ro->n5xx) {
				const char *t = route_test(r, k, is_5xx);
				struct check *x = add_check(c, "baseline", CLS_ERRORS, ro->key, t, "5xx %s", ro->key);
				fail_check(c, x, o->warn_only[CLS_ERRORS], "%s (new route): %" PRId64 " 5xx responses%s",
					   ro->key, ro->n5xx, in_test(t, tb, sizeof tb));
			}
			continue;
		}
		/* queries per request, exactly: new/new_n > base/base_n */
		const char *tq = ro->count ? test_of(r, r->reqs[ro->max_q_req].test) : "";
		struct check *x = add_check(c, "baseline", CLS_QUERIES, ro->key, tq, "queries per request %s", ro->key);
		if (br->count && ro->count && (__int128)ro->queries * br->count > (__int128)br->queries * ro->count)
			fail_check(c, x, o->warn_only[CLS_QUERIES], "%s: %.2f queries per request, baseline %.2f%s", ro->key,
				   (double)ro->queries / (double)ro->count, (double)br->queries / (double)br->count,
				   in_test(tq, tb, sizeof tb));
		const char *tn = route_test(r, k, is_np1);
		x = add_check(c, "baseline", CLS_NPLUS1, ro->key, tn, "N+1 %s", ro->key);
		if (ro->n_plus_one && !br->n_plus_one)
			fail_check(c, x, o->warn_only[CLS_NPLUS1], "%s: new N+1 queries in %" PRId64 " of %" PRId64 " requests%s",
				   ro->key, ro->n_plus_one, ro->count, in_test(tn, tb, sizeof tb));
		const char *te = route_test(r, k, is_5xx);
		x = add_check(c, "baseline", CLS_ERRORS, ro->key, te, "5xx %s", ro->key);
		if (ro->n5xx > br->n5xx)
			fail_check(c, x, o->warn_only[CLS_ERRORS], "%s: %" PRId64 " 5xx responses, baseline %" PRId64 "%s",
				   ro->key, ro->n5xx, br->n5xx, in_test(te, tb, sizeof tb));
		/* timing */
		const char *tt = slowest_test(r, k);
		x = add_check(c, "baseline", CLS_TIMING, ro->key, tt, "timing %s", ro->key);
		double p50 = ro->p50_ms, bp50 = br->p50_ms;
		const double *v = ro->samples_ms, *bv = br->samples;
		size_t bn = br->nsamples;
		char how[200] = "";
		if (basis->adjusted && ro->adj_samples_ms && br->nadj) {
			p50 = ro->adj_p50_ms;
			bp50 = br->adj_p50_ms;
			v = ro->adj_samples_ms;
			bv = br->adj_samples;
			bn = br->nadj;
			snprintf(how, sizeof how, "; adjusted for CPU wait: wall p50 %.2f ms at x%.2f, baseline %.2f ms at x%.2f",
				 ro->p50_ms, basis->k, br->p50_ms, basis->base_k);
		}
		if (p50 > bp50 * (1 + o->tolerance) && p50 - bp50 >= o->floor_ms) {
			size_t n = (size_t)ro->count;
			if (n < MW_MIN_SAMPLES || bn < MW_MIN_SAMPLES) {
				fail_check(c, x, o->warn_only[CLS_TIMING],
					   "%s: p50 %.2f ms, baseline %.2f ms (+%.0f%% > %.0f%% tolerance; %zu/%zu samples, "
					   "too few for a significance test%s)%s",
					   ro->key, p50, bp50, 100 * (p50 / bp50 - 1), 100 * o->tolerance, bn, n, how,
					   in_test(tt, tb, sizeof tb));
			} else {
				double p = rp_mann_whitney_greater(bv, bn, v, n);
				if (p < MW_ALPHA)
					fail_check(c, x, o->warn_only[CLS_TIMING],
						   "%s: p50 %.2f ms, baseline %.2f ms (+%.0f%% > %.0f%% tolerance, "
						   "Mann-Whitney p = %.2g%s)%s",
						   ro->key, p50, bp50, 100 * (p50 / bp50 - 1), 100 * o->tolerance, p, how,
						   in_test(tt, tb, sizeof tb));
			}
		}
	}
	for (size_t i = 0; i < r->ntests; i++) {
		const struct rp_test *t = &r->tests[i];
		for (size_t j = 0; j < b->ntests; j++) {
			const struct base_test *bt = &b->tests[j];
			if (strcmp(bt->nodeid, t->nodeid))
				continue;
			struct check *x = add_check(c, "baseline", CLS_QUERIES, "", t->nodeid, "queries in %s", t->nodeid);
			/* an older baseline counted only the queries of the test's requests */
			int64_t nq = bt->all_queries ? t->queries : t->queries - t->outside_queries;
			if (nq > bt->queries)
				fail_check(c, x, o->warn_only[CLS_QUERIES], "test %s: %" PRId64 " queries%s, baseline %" PRId64,
					   t->nodeid, nq, bt->all_queries ? "" : " in requests", bt->queries);
			break;
		}
	}
}

/* ---- text helpers ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (!len || len > n || (len == 2 && s[0] < 0xc2))
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

enum esc { ESC_TERM, ESC_XML, ESC_MD };

/* Writes s with control characters and invalid UTF-8 as '?', and the
 * characters special to the format escaped. */
static void put_esc(FILE *f, const char *str, enum esc how)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);
	for (size_t i = 0; i < n;) {
		size_t len = utf8_seq(s + i, n - i);
		if (!len || s[i] < 0x20 || s[i] == 0x7f) {
			fputc(s[i] == '\n' || s[i] == '\t' ? ' ' : '?', f);
			i++;
			continue;
		}
		char ch = (char)s[i];
		if (how != ESC_TERM && ch == '&')
			fputs("&amp;", f);
		else if (how != ESC_TERM && ch == '<')
			fputs("&lt;", f);
		else if (how != ESC_TERM && ch == '>')
			fputs("&gt;", f);
		else if (how == ESC_XML && ch == '"')
			fputs("&quot;", f);
		else if (how == ESC_MD && (ch == '|' || ch == '`' || ch == '*' || ch == '_' || ch == '[' || ch == ']'))
			fprintf(f, "\\%c", ch);
		else
			fwrite(s + i, 1, len, f);
		i += len;
	}
}

/* Columns that s takes on a terminal (one per UTF-8 sequence). */
static size_t cols(const char *s)
{
	size_t c = 0;
	for (; *s; s++)
		c += ((unsigned char)*s & 0xc0) != 0x80;
	return c;
}

static void put_cell(FILE *f, const char *s, size_t width)
{
	char buf[1024];
	size_t c = cols(s);
	if (c > width && width > 3) {
		/* keep the end (the most specific part of a route or nodeid) */
		size_t skip = c - (width - 3), seen = 0;
		const char *p = s;
		while (*p && seen < skip) {
			p++;
			if (((unsigned char)*p & 0xc0) != 0x80)
				seen++;
		}
		snprintf(buf, sizeof buf, "...%s", p);
		s = buf;
		c = cols(s);
	}
	put_esc(f, s, ESC_TERM);
	for (; c < width; c++)
		fputc(' ', f);
}

/* ---- tables ----------------------------------------------------------- */

/* The route and test tables show the same columns on the terminal and in
 * Markdown, so both print from one list of columns with one loop. */
struct column {
	const char *term, *md; /* headers */
	int width, prec;       /* on the terminal; digits after the point */
	enum fig fig;
};

struct table {
	const char *title, *rows;  /* Markdown section; what a row is, plural */
	const char *term, *md;     /* headers of the name column */
	size_t max_width;          /* of the name column on the terminal */
	size_t limit;              /* rows listed; the JSON report has all */
	size_t size;               /* of a row */
	enum fig name;
	const struct column *cols;
	size_t ncols;
};

static const struct column route_cols[] = {
	{"REQS", "Requests", 6, 0, R_COUNT},
	{"P50 ms", "p50 ms", 9, 2, R_P50},
	{"P95 ms", "p95 ms", 9, 2, R_P95},
	{"P99 ms", "p99 ms", 9, 2, R_P99},
	{"Q/REQ", "Queries/request", 6, 2, R_PER_REQ},
	{"N+1", "N+1", 4, 0, R_NP1},
	{"5XX", "5xx", 4, 0, R_5XX},
};

static const struct column test_cols[] = {
	{"REQS", "Requests", 6, 0, T_REQUESTS},
	{"QUERIES", "Queries", 7, 0, T_QUERIES},
	{"DB ms", "DB ms", 8, 2, T_DB_MS},
	{"N+1", "N+1", 4, 0, T_NP1},
	{"TIME ms", "Time ms", 9, 1, T_MS},
	{"OUTCOME", "Outcome", 0, 0, T_OUTCOME},
};

static const struct table route_table = {
	.title = "Routes", .rows = "routes", .term = "ROUTE", .md = "Route", .max_width = 48, .limit = SIZE_MAX,
	.size = sizeof(struct rp_route), .name = R_KEY,
	.cols = route_cols, .ncols = sizeof route_cols / sizeof route_cols[0],
};

static const struct table test_table = {
	.title = "Tests", .rows = "tests", .term = "TEST", .md = "Test", .max_width = 56, .limit = TABLE_MAX_TESTS,
	.size = sizeof(struct rp_test), .name = T_NODEID,
	.cols = test_cols, .ncols = sizeof test_cols / sizeof test_cols[0],
};

static void put_value(FILE *f, const void *row, const struct column *c, int md)
{
	int w = md ? 0 : c->width; /* Markdown pads nothing */
	fputs(md ? " | " : " ", f);
	if (figures[c->fig].kind == F_I64)
		fprintf(f, "%*" PRId64, w, fig_i64(row, c->fig));
	else if (is_text(c->fig))
		fprintf(f, "%*s", w, fig_str(row, c->fig));
	else
		fprintf(f, "%*.*f", w, c->prec, fig_num(row, c->fig));
}

/* Prints n rows as a Markdown table (md) or a terminal one: the latter is
 * left out when empty, the names are cut to fit and the header is bold. */
static void put_table(FILE *f, const struct table *t, const void *rows, size_t n, int md, const char *bold,
		      const char *off)
{
	size_t w = cols(t->term);
	if (md) {
		fprintf(f, "### %s\n\n| %s", t->title, t->md);
		for (size_t j = 0; j < t->ncols; j++)
			fprintf(f, " | %s", t->cols[j].md);
		fputs(" |\n|---", f);
		for (size_t j = 0; j < t->ncols; j++)
			fputs(is_text(t->cols[j].fig) ? "|---" : "|---:", f);
		fputs("|\n", f);
	} else {
		if (!n)
			return;
		for (size_t i = 0; i < n; i++) {
			size_t c = cols(fig_str((const char *)rows + i * t->size, t->name));
			if (c > w)
				w = c;
		}
		if (w > t->max_width)
			w = t->max_width;
		fprintf(f, "\n%s", bold);
		put_cell(f, t->term, w);
		for (size_t j = 0; j < t->ncols; j++)
			fprintf(f, " %*s", t->cols[j].width, t->cols[j].term);
		fprintf(f, "%s\n", off);
	}
	for (size_t i = 0; i < n && i < t->limit; i++) {
		const void *row = (const char *)rows + i * t->size;
		if (md) {
			fputs("| ", f);
			put_esc(f, fig_str(row, t->name), ESC_MD);
		} else {
			put_cell(f, fig_str(row, t->name), w);
		}
		for (size_t j = 0; j < t->ncols; j++)
			put_value(f, row, &t->cols[j], md);
		fputs(md ? " |\n" : "\n", f);
	}
	if (!md && n > t->limit)
		fprintf(f, "... and %zu more %s (see --json)\n", n - t->limit, t->rows);
}

/* ---- outputs ----------------------------------------------------------- */

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

/* "71 SQL queries (39 outside requests, 28 outside any test)" for the report's
 * first line: every query of the run, in requests or not. */
static const char *queries_text(const struct rp_report *r, char *buf, size_t cap)
{
	int64_t all = r->total_queries + r->outside_queries;
	int n = snprintf(buf, cap, "%" PRId64 " SQL queries", all);
	if (!r->has_queries || !all)
		snprintf(buf + n, cap - (size_t)n, " (no SQL captured)");
	else if (r->outside_queries || r->untested_queries)
		snprintf(buf + n, cap - (size_t)n, " (%" PRId64 " outside requests, %" PRId64 " outside any test)",
			 r->outside_queries, r->untested_queries);
	return buf;
}

static const char *verdict(const struct ci_result *x)
{
	return x->exit_status ? "failed" : "passed";
}

/* "wall durations less the expected wait for a CPU (why)" */
static const char *basis_text(const struct timing_basis *tb, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s (%s)", tb->adjusted ? "wall durations less each route's expected wait for a CPU"
						   : "wall durations", tb->why);
	return buf;
}

static void print_terminal(FILE *f, const struct ci_result *x, int color)
{
	const struct rp_report *r = x->r;
	char tb[400];
	const char *red = color ? "\033[31m" : "", *yellow = color ? "\033[33m" : "", *green = color ? "\033[32m" : "",
		   *bold = color ? "\033[1m" : "", *off = color ? "\033[0m" : "";
	char qt[160];
	if (!x->o->quiet) {
		fprintf(f, "\n%sTimeGlass CI%s: run %" PRId64 ", %zu requests, %zu tests, %s\n", bold, off, r->run_id,
			r->nreqs, r->ntests, queries_text(r, qt, sizeof qt));
		put_table(f, &route_table, r->routes, r->nroutes, 0, bold, off);
		put_table(f, &test_table, r->tests, r->ntests, 0, bold, off);
		fprintf(f, "\n%sScorecard%s\n", bold, off);
		for (int i = 0; i < RP_BENCH_COUNT; i++) {
			const struct rp_score_item *it = &x->score[i];
			put_cell(f, it->name, 26);
			fprintf(f, " %c  ", it->grade);
			put_esc(f, it->figure, ESC_TERM);
			fputc('\n', f);
		}
		char buf[512];
		fprintf(f, "\n%sRecording%s: %s\n", bold, off, tg_losses_text(&r->losses, buf, sizeof buf));
		if (*tg_losses_sampling_text(&r->losses, buf, sizeof buf))
			fprintf(f, "%sSampling%s: %s\n", bold, off, buf);
	} else if (r->losses.total[TG_TOTAL_LOST] > 0) {
		char buf[512];
		fprintf(f, "%sRecording%s: %s\n", yellow, off, tg_losses_text(&r->losses, buf, sizeof buf));
	}
	if (x->budget->found)
		fprintf(f, "\n%sBudget%s (%s): %zu checks, %zu breaches\n", bold, off, x->budget->source,
			suite_checks(x->c, "budget", NULL), x->c->breaches);
	if (x->baseline)
		fprintf(f, "%sBaseline%s (%s): %zu checks, %zu regressions, %zu warnings; timing rule: p50 > baseline "
			   "x %.2f, >= %g ms slower, Mann-Whitney p < %g\n",
			bold, off, x->baseline, suite_checks(x->c, "baseline", NULL), x->c->regressions, x->c->warnings,
			1 + x->o->tolerance, x->o->floor_ms, MW_ALPHA);
	if (x->baseline) {
		fprintf(f, "%sTiming basis%s: ", bold, off);
		put_esc(f, basis_text(x->basis, tb, sizeof tb), ESC_TERM);
		fputc('\n', f);
	}
	for (size_t i = 0; i < x->c->n; i++) {
		const struct check *k = &x->c->v[i];
		if (!k->failed)
			continue;
		fprintf(f, "  %s%s%s %s ", k->warn ? yellow : red, k->warn ? "WARN" : "FAIL", off, finding(k));
		put_esc(f, k->msg, ESC_TERM);
		fputc('\n', f);
	}
	if (x->cmd_status > 0)
		fprintf(f, "  %sFAIL%s the command exited with status %d\n", red, off, x->cmd_status);
	fprintf(f, "\n%s%s%s%s: %zu budget breaches, %zu regressions, %zu warnings\n", bold,
		x->exit_status ? red : green, x->exit_status ? "TimeGlass CI failed" : "TimeGlass CI passed", off,
		x->c->breaches, x->c->regressions, x->c->warnings);
}

static void write_markdown(FILE *f, const struct ci_result *x)
{
	const struct rp_report *r = x->r;
	fprintf(f, "## TimeGlass CI: %s\n\n", x->exit_status ? "❌ failed" : "✅ passed");
	char qt[160];
	fprintf(f, "Run %" PRId64 ": %zu requests in %zu tests, %s. "
		   "%zu budget breaches, %zu regressions, %zu warnings.\n\n",
		r->run_id, r->nreqs, r->ntests, queries_text(r, qt, sizeof qt), x->c->breaches, x->c->regressions,
		x->c->warnings);
	if (x->cmd_status > 0)
		fprintf(f, "The test command exited with status %d.\n\n", x->cmd_status);
	if (x->c->breaches || x->c->regressions || x->c->warnings) {
		fprintf(f, "### Findings\n\n| Result | Kind | Route | Test | Finding |\n|---|---|---|---|---|\n");
		for (size_t i = 0; i < x->c->n; i++) {
			const struct check *k = &x->c->v[i];
			if (!k->failed)
				continue;
			fprintf(f, "| %s | %s %s | ", k->warn ? "⚠️ warning" : "❌ fail", finding(k), cls_names[k->cls]);
			put_esc(f, k->route, ESC_MD);
			fputs(" | ", f);
			put_esc(f, k->test, ESC_MD);
			fputs(" | ", f);
			put_esc(f, k->msg, ESC_MD);
			fputs(" |\n", f);
		}
		fputc('\n', f);
	}
	if (x->baseline)
		fprintf(f, "Timing rule: a route regresses when its p50 exceeds the baseline's by more than %.0f %% "
			   "and %g ms, and a one-sided Mann-Whitney U test gives p < %g (with fewer than %d samples a "
			   "side, the tolerance alone).\n\n",
			100 * x->o->tolerance, x->o->floor_ms, MW_ALPHA, MW_MIN_SAMPLES);
	if (x->baseline) {
		char tb[400];
		fputs("Timing basis: ", f);
		put_esc(f, basis_text(x->basis, tb, sizeof tb), ESC_MD);
		fputs(".\n\n", f);
	}
	put_table(f, &route_table, r->routes, r->nroutes, 1, "", "");
	if (r->ntests) {
		fputc('\n', f);
		put_table(f, &test_table, r->tests, r->ntests, 1, "", "");
	}
	fprintf(f, "\n### Scorecard\n\n| Benchmark | Figure | Grade | Evidence |\n|---|---|---|---|\n");
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		const struct rp_score_item *it = &x->score[i];
		fprintf(f, "| %s | ", it->name);
		put_esc(f, it->figure, ESC_MD);
		fprintf(f, " | %c | ", it->grade);
		for (size_t e = 0; e < it->nevidence; e++) {
			if (e)
				fputs("<br>", f);
			put_esc(f, it->evidence[e], ESC_MD);
		}
		if (!it->nevidence || !it->measured)
			put_esc(f, it->note, ESC_MD);
		fputs(" |\n", f);
	}
	char buf[512];
	fputs("\n- Recording: ", f);
	put_esc(f, tg_losses_text(&r->losses, buf, sizeof buf), ESC_MD);
	fputs(".\n", f);
	if (*tg_losses_sampling_text(&r->losses, buf, sizeof buf)) {
		fputs("- Sampling: ", f);
		put_esc(f, buf, ESC_MD);
		fputs(".\n", f);
	}
}

static void write_junit(FILE *f, const struct ci_result *x)
{
	static const char *const suites[] = {"run", "budget", "baseline"};
	size_t total = 1 + x->c->n, fails = (x->cmd_status > 0) + x->c->breaches + x->c->regressions;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"timeglass\" tests=\"%zu\" "
		   "failures=\"%zu\">\n",
		total, fails);
	for (size_t s = 0; s < 3; s++) {
		/* the run suite holds the command's own testcase */
		size_t nf, n = (s == 0) + suite_checks(x->c, suites[s], &nf);
		nf += s == 0 && x->cmd_status > 0;
		if (!n)
			continue;
		fprintf(f, "  <testsuite name=\"timeglass.%s\" tests=\"%zu\" failures=\"%zu\">\n", suites[s], n, nf);
		if (s == 0) {
			fputs("    <testcase classname=\"timeglass.run\" name=\"command\">", f);
			if (x->cmd_status > 0)
				fprintf(f, "<failure message=\"the command exited with status %d\"/>", x->cmd_status);
			fputs("</testcase>\n", f);
		}
		for (size_t i = 0; i < x->c->n; i++) {
			const struct check *k = &x->c->v[i];
			if (strcmp(k->suite, suites[s]))
				continue;
			fprintf(f, "    <testcase classname=\"timeglass.%s.%s\" name=\"", suites[s], cls_names[k->cls]);
			put_esc(f, k->name, ESC_XML);
			fputs("\">", f);
			if (k->failed && !k->warn) {
				fputs("<failure message=\"", f);
				put_esc(f, k->msg, ESC_XML);
				fputs("\" type=\"", f);
				fputs(finding(k), f);
				fputs("\">", f);
				put_esc(f, k->msg, ESC_XML);
				fputs("</failure>", f);
			} else if (k->failed) {
				fputs("<system-out>warning: ", f);
				put_esc(f, k->msg, ESC_XML);
				fputs("</system-out>", f);
			}
			fputs("</testcase>\n", f);
		}
		fputs("  </testsuite>\n", f);
	}
	fputs("</testsuites>\n", f);
}

static void write_json(FILE *f, const struct ci_result *x)
{
	const struct rp_report *r = x->r;
	struct jw w;
	jw_init(&w, f);
	jw_obj_open(&w);
	kv_str(&w, "result", verdict(x));
	kv_i64(&w, "exit_status", x->exit_status);
	jw_key(&w, "command_status");
	if (x->cmd_status < 0)
		jw_null(&w);
	else
		jw_i64(&w, x->cmd_status);
	kv_i64(&w, "run_id", r->run_id);
	kv_str(&w, "command", r->command);
	kv_u64(&w, "requests", r->nreqs);
	kv_i64(&w, "queries", r->total_queries + r->outside_queries);
	kv_i64(&w, "queries_in_requests", r->total_queries);
	kv_i64(&w, "queries_outside_requests", r->outside_queries);
	kv_i64(&w, "queries_outside_tests", r->untested_queries);
	jw_key(&w, "sql_captured");
	jw_bool(&w, r->has_queries && r->total_queries + r->outside_queries > 0);
	kv_str(&w, "budget", x->budget->found ? x->budget->source : NULL);
	kv_str(&w, "baseline", x->baseline);
	jw_key(&w, "timing_rule");
	jw_obj_open(&w);
	rp_jw_num(&w, "tolerance", x->o->tolerance);
	rp_jw_num(&w, "floor_ms", x->o->floor_ms);
	rp_jw_num(&w, "alpha", MW_ALPHA);
	kv_i64(&w, "min_samples", MW_MIN_SAMPLES);
	kv_str(&w, "test", "mann-whitney-u-one-sided");
	kv_str(&w, "basis", x->baseline ? basis_name(x->basis) : NULL);
	jw_obj_close(&w);
	kv_str(&w, "timing_basis", x->baseline ? basis_name(x->basis) : NULL);
	kv_str(&w, "timing_basis_reason", x->baseline ? x->basis->why : NULL);
	jw_key(&w, "cpu_wait");
	if (r->cpu_wait) {
		jw_obj_open(&w);
		put_cpu_wait(&w, r);
		rp_jw_num(&w, "baseline_cpu_wait_factor", x->basis->base_k > 0 ? x->basis->base_k : NAN);
		jw_obj_close(&w);
	} else {
		jw_null(&w);
	}
	jw_key(&w, "summary");
	jw_obj_open(&w);
	kv_u64(&w, "breaches", x->c->breaches);
	kv_u64(&w, "regressions", x->c->regressions);
	kv_u64(&w, "warnings", x->c->warnings);
	jw_obj_close(&w);
	jw_key(&w, "checks");
	jw_arr_open(&w);
	for (size_t i = 0; i < x->c->n; i++) {
		const struct check *k = &x->c->v[i];
		jw_obj_open(&w);
		kv_str(&w, "suite", k->suite);
		kv_str(&w, "class", cls_names[k->cls]);
		kv_str(&w, "name", k->name);
		kv_str(&w, "status", !k->failed ? "ok" : k->warn ? "warning" : "fail");
		kv_str(&w, "route", k->route);
		kv_str(&w, "test", k->test);
		kv_str(&w, "message", k->failed ? k->msg : NULL);
		jw_obj_close(&w);
	}
	jw_arr_close(&w);
	put_array(&w, "routes", r->routes, r->nroutes, sizeof *r->routes, FIGS(json_route_figs));
	put_array(&w, "tests", r->tests, r->ntests, sizeof *r->tests, FIGS(json_test_figs));
	jw_key(&w, "scorecard");
	rp_score_json(&w, x->score);
	jw_key(&w, "losses");
	rp_losses_json(&w, &r->losses);
	jw_obj_close(&w);
	jw_newline(&w);
}

typedef void (*writer_fn)(FILE *f, const struct ci_result *x);

static void write_file(const char *path, const char *mode, writer_fn fn, const struct ci_result *x)
{
	if (!strcmp(path, "-")) {
		fn(stdout, x);
		fflush(stdout);
		return;
	}
	FILE *f = fopen(path, mode);
	if (!f) {
		tg_warn("cannot write %s: %s", path, strerror(errno));
		return;
	}
	fn(f, x);
	if (fclose(f) != 0)
		tg_warn("cannot write %s: %s", path, strerror(errno));
}

static int64_t latest_run_or_zero(const char *db)
{
	if (access(db, F_OK) != 0)
		return 0;
	struct tg_store *s = tg_store_open(db, TG_STORE_READ);
	if (!s)
		return 0;
	int64_t id = tg_latest_run(tg_store_db(s));
	tg_store_close(s);
	return id < 0 ? 0 : id;
}

/* ---- options ----------------------------------------------------------- */

static void parse_warn_only(struct ci_opts *o, const char *arg)
{
	char buf[256];
	tg_strlcpy(buf, arg, sizeof buf);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int found = 0;
		for (int c = 0; c < CLS_COUNT; c++)
			if (!strcmp(t, cls_names[c]) || (c == CLS_NPLUS1 && !strcmp(t, "n_plus_one"))) {
				o->warn_only[c] = 1;
				found = 1;
			}
		if (!found)
			tg_die_usage("ci", "--warn-only takes timing, queries, errors or n+1, not '%.40s'", t);
	}
}

static double parse_double(const char *what, const char *s, double max)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !(v >= 0) || v > max)
		tg_die_usage("ci", "bad number for %s: '%.40s'", what, s);
	return v;
}

static void parse_opts(int argc, char **argv, struct ci_opts *o)
{
	enum {
		OPT_BUDGET = CLI_OWN, OPT_BASELINE, OPT_SAVE, OPT_JUNIT, OPT_TOL, OPT_FLOOR, OPT_WARN, OPT_EVENTS,
	};
	const struct option opts[] = {
		CLI_OPT_DB,
		{"budget", required_argument, NULL, OPT_BUDGET},
		{"baseline", required_argument, NULL, OPT_BASELINE},
		{"save-baseline", required_argument, NULL, OPT_SAVE},
		{"junit", required_argument, NULL, OPT_JUNIT},
		CLI_OPT_MARKDOWN,
		CLI_OPT_JSON_FILE,
		{"time-tolerance", required_argument, NULL, OPT_TOL},
		{"time-floor-ms", required_argument, NULL, OPT_FLOOR},
		{"warn-only", required_argument, NULL, OPT_WARN},
		CLI_OPT_COVERAGE,
		{"coverage-run", no_argument, &o->coverage_run, 1},
		{"events", required_argument, NULL, OPT_EVENTS},
		CLI_OPT_RUN,
		{"quiet", no_argument, NULL, 'q'},
		CLI_OPT_HELP_END,
	};
	memset(o, 0, sizeof *o);
	o->tolerance = 0.25;
	o->floor_ms = 1.0;
	struct cli_args a = {"ci", cmd_ci_usage, "+:qh", opts, argc, argv, .db = &o->db, .run = &o->run,
			     .json_file = &o->json, .markdown = &o->markdown, .coverage = &o->coverage};
	int c;
	while ((c = cli_next(&a)) != -1) {
		switch (c) {
		case OPT_BUDGET: o->budget = optarg; break;
		case OPT_BASELINE: o->baseline = optarg; break;
		case OPT_SAVE: o->save_baseline = optarg; break;
		case OPT_JUNIT: o->junit = optarg; break;
		case OPT_TOL:
			o->tolerance = parse_double("--time-tolerance", optarg, 100);
			o->tolerance_set = 1;
			break;
		case OPT_FLOOR: o->floor_ms = parse_double("--time-floor-ms", optarg, 1e6); break;
		case OPT_WARN: parse_warn_only(o, optarg); break;
		case OPT_EVENTS: o->events = optarg; break;
		case 'q': o->quiet = 1; break;
		}
	}
	if (optind < argc)
		o->cmd = argv + optind;
	if (o->cmd && o->run)
		tg_die_usage("ci", "--run checks a recorded run: give it without a command");
	if (o->coverage_run && !o->cmd)
		tg_die_usage("ci", "--coverage-run runs a test command: give it after --");
	if (o->coverage_run && o->coverage)
		tg_die_usage("ci", "--coverage-run measures coverage itself: leave out --coverage");
	if (o->baseline && o->save_baseline && !strcmp(o->baseline, o->save_baseline))
		tg_die_usage("ci", "--baseline and --save-baseline name the same file");
	o->db = tg_default_db(o->db);
}

/* ---- the command ------------------------------------------------------- */

int cmd_ci(int argc, char **argv)
{
	struct ci_opts o;
	parse_opts(argc, argv, &o);

	struct budget budget;
	if (bg_read(o.budget ? o.budget : "pyproject.toml",
		    !o.budget || strstr(o.budget, "pyproject.toml") != NULL, o.budget != NULL, &budget) < 0)
		tg_die("%s", tg_error());
	if (o.budget && !budget.found)
		tg_warn("%s holds no budget keys", o.budget);
	if (!o.tolerance_set && (budget.global.set & BG_TOLERANCE))
		o.tolerance = budget.global.time_tolerance;
	struct baseline base = {0};
	if (o.baseline)
		read_baseline(o.baseline, &base);

	int cmd_status = -1;
	char tmp_events[PATH_MAX] = "";
	const char *events = o.events;
	int64_t run_id = o.run;
	if (o.cmd) {
		if (!events) {
			const char *dir = getenv("TMPDIR");
			snprintf(tmp_events, sizeof tmp_events, "%s/timeglass-ci-XXXXXX", dir && *dir ? dir : "/tmp");
			int fd = mkstemp(tmp_events);
			if (fd < 0)
				tg_die("cannot create a temporary file in %s: %s", dir && *dir ? dir : "/tmp", strerror(errno));
			close(fd);
			events = tmp_events;
		} else {
			int fd = open(events, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0)
				tg_die("cannot write %s: %s", events, strerror(errno));
			close(fd);
		}
		int64_t before = latest_run_or_zero(o.db);
		static struct cov_run cr;   /* its data path outlives this block */
		if (o.coverage_run) {
			if (cov_prepare(o.cmd, o.db, &cr) < 0)
				tg_die_usage("ci", "%s", tg_error());
			o.cmd = cr.argv;
		}
		cmd_status = ci_run_suite(o.db, o.cmd, events);
		if (o.coverage_run) {
			if (cov_finish(&cr) < 0)
				tg_warn("%s", tg_error());
			else
				o.coverage = cr.data;
		}
		run_id = latest_run_or_zero(o.db);
		if (run_id <= before) {
			if (*tmp_events)
				unlink(tmp_events);
			tg_die("the command recorded no run in %s (status %d)", o.db, cmd_status);
		}
	}

	struct rp_report r;
	if (rp_load_path(o.db, run_id, events, &r) < 0)
		tg_die("%s", tg_error());
	if (*tmp_events)
		unlink(tmp_events);
	if (o.cmd && !r.ntests)
		tg_warn("no test events: the pytest plugin did not load (is CMD a pytest run?); requests are not "
			"attributed to tests");

	struct checks checks = {0};
	if (budget.found)
		check_budget(&r, &budget, &checks);
	struct timing_basis basis;
	timing_basis(&r, &base, &basis);
	if (o.baseline)
		check_baseline(&r, &base, &basis, &o, &checks);
	if (o.save_baseline)
		write_baseline(o.save_baseline, &r);

	struct rp_coverage cov;
	rp_coverage_read(o.coverage, &cov);
	struct rp_score_item score[RP_BENCH_COUNT];
	rp_score(&r, &cov, score);

	struct ci_result x = {
		.r = &r, .c = &checks, .score = score, .budget = &budget, .baseline = o.baseline, .basis = &basis, .o = &o,
		.cmd_status = cmd_status,
	};
	x.exit_status = cmd_status > 0 ? cmd_status : (checks.breaches || checks.regressions) ? 1 : 0;

	const char *nc = getenv("NO_COLOR");
	int json_stdout = o.json && !strcmp(o.json, "-");
	FILE *term = json_stdout ? stderr : stdout;
	print_terminal(term, &x, isatty(fileno(term)) && !(nc && *nc));
	fflush(term);
	if (o.markdown)
		write_file(o.markdown, "w", write_markdown, &x);
	const char *summary = getenv("GITHUB_STEP_SUMMARY");
	if (summary && *summary)
		write_file(summary, "a", write_markdown, &x);
	if (o.junit)
		write_file(o.junit, "w", write_junit, &x);
	if (o.json)
		write_file(o.json, "w", write_json, &x);
	if (o.save_baseline && !o.quiet)
		fprintf(term, "Baseline written to %s\n", o.save_baseline);

	free(checks.v);
	free_baseline(&base);
	bg_free(&budget);
	rp_free(&r);
	return x.exit_status;
}
