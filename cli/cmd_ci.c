/*
 * cmd_ci.c - `timeglass ci`: runs a test suite under `timeglass run` with the
 * pytest plugin, then turns the recorded run into a report and a gate.
 *
 * Flow: the suite runs as a child (`timeglass run --db DB --quiet -- CMD`,
 * the same binary; cli/ci_suite.c) with TIMEGLASS_TEST_EVENTS naming a temporary file and
 * the plugin on PYTEST_PLUGINS; the run it recorded is loaded with report.h
 * and its requests and queries attributed to tests; budgets (budget.h) and
 * a saved baseline (cli/ci_baseline.c) are checked; the result goes to the
 * terminal, Markdown (also $GITHUB_STEP_SUMMARY), JUnit XML and JSON
 * (cli/ci_report.c). Without CMD, an existing run
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
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

const char *const ci_cls_names[CLS_COUNT] = {"timing", "queries", "errors", "n+1"};

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

/* ---- checks ------------------------------------------------------------ */

/* Returns the array v of *cap elements of size bytes with room for element
 * n, doubled when full. Dies without memory. */
void *ci_grow(void *v, size_t n, size_t *cap, size_t size)
{
	if (tg_grow(&v, cap, n, size, 32) < 0)
		tg_die("out of memory");
	return v;
}

struct check *ci_add_check(struct checks *c, const char *suite, enum cls cls, const char *route, const char *test,
			   const char *name_fmt, ...)
{
	c->v = ci_grow(c->v, c->n, &c->cap, sizeof *c->v);
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

void ci_fail_check(struct checks *c, struct check *k, int warn, const char *fmt, ...)
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
const char *ci_finding(const struct check *k)
{
	return !strcmp(k->suite, "budget") ? "budget" : "regression";
}

/* The number of checks of a suite; with gate, also those that fail the
 * gate (failed, not warnings). */
size_t ci_suite_checks(const struct checks *c, const char *suite, size_t *gate)
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

const char *ci_test_of(const struct rp_report *r, long t)
{
	return t >= 0 ? r->tests[t].nodeid : "";
}

/* The test of the first request of route k that matches want. */
const char *ci_route_test(const struct rp_report *r, size_t k, int (*want)(const struct rp_request *))
{
	for (size_t i = 0; i < r->nreqs; i++)
		if (r->reqs[i].route == k && r->reqs[i].test >= 0 && (!want || want(&r->reqs[i])))
			return r->tests[r->reqs[i].test].nodeid;
	return "";
}

int ci_is_5xx(const struct rp_request *q) { return q->status >= 500; }
int ci_is_np1(const struct rp_request *q) { return q->n_plus_one > 0; }

const char *ci_slowest_test(const struct rp_report *r, size_t k)
{
	long best = -1;
	int64_t d = -1;
	for (size_t i = 0; i < r->nreqs; i++)
		if (r->reqs[i].route == k && r->reqs[i].duration_ns > d) {
			d = r->reqs[i].duration_ns;
			best = r->reqs[i].test;
		}
	return ci_test_of(r, best);
}

const char *ci_in_test(const char *t, char *buf, size_t cap)
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
			struct check *x = ci_add_check(c, "budget", CLS_TIMING, ro->key, ci_slowest_test(r, k), "p95 %s", ro->key);
			if (ro->p95_ms > l.p95_ms)
				ci_fail_check(c, x, 0, "%s: p95 %.2f ms > budget %g ms over %" PRId64 " requests%s", ro->key,
					   ro->p95_ms, l.p95_ms, ro->count, ci_in_test(x->test, tb, sizeof tb));
		}
		if (l.set & BG_QUERIES) {
			const char *t = ro->count ? ci_test_of(r, r->reqs[ro->max_q_req].test) : "";
			struct check *x = ci_add_check(c, "budget", CLS_QUERIES, ro->key, t, "queries per request %s", ro->key);
			if (ro->max_queries > l.max_queries)
				ci_fail_check(c, x, 0, "%s: %" PRId64 " queries in request %" PRId64 " > budget %" PRId64 "%s",
					   ro->key, ro->max_queries, r->reqs[ro->max_q_req].id, l.max_queries,
					   ci_in_test(t, tb, sizeof tb));
		}
		if ((l.set & BG_N_PLUS_ONE) && !l.allow_n_plus_one) {
			const char *t = ci_route_test(r, k, ci_is_np1);
			struct check *x = ci_add_check(c, "budget", CLS_NPLUS1, ro->key, t, "no N+1 %s", ro->key);
			if (ro->n_plus_one)
				ci_fail_check(c, x, 0, "%s: N+1 queries in %" PRId64 " of %" PRId64 " requests (limit: none)%s",
					   ro->key, ro->n_plus_one, ro->count, ci_in_test(t, tb, sizeof tb));
		}
		if (l.set & BG_5XX) {
			const char *t = ci_route_test(r, k, ci_is_5xx);
			struct check *x = ci_add_check(c, "budget", CLS_ERRORS, ro->key, t, "5xx %s", ro->key);
			if (ro->n5xx > l.max_5xx)
				ci_fail_check(c, x, 0, "%s: %" PRId64 " 5xx responses > budget %" PRId64 "%s", ro->key, ro->n5xx,
					   l.max_5xx, ci_in_test(t, tb, sizeof tb));
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
		const char *t = first >= 0 ? ci_test_of(r, r->reqs[first].test) : "";
		struct check *x = ci_add_check(c, "budget", CLS_ERRORS, route, t, "5xx responses");
		if (n5 > b->global.max_5xx)
			ci_fail_check(c, x, 0, "%" PRId64 " 5xx responses > budget %" PRId64 ": first %s%s; requests %s%s", n5,
				   b->global.max_5xx, route, ci_in_test(t, tb, sizeof tb), ids, n5 > 5 ? ", ..." : "");
	}
}

/* ---- figures of routes and tests -------------------------------------- */

const struct ci_field ci_figures[] = {
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

int ci_is_text(enum fig g)
{
	return ci_figures[g].kind == F_STR || ci_figures[g].kind == F_TEXT;
}

int64_t ci_fig_i64(const void *row, enum fig g)
{
	return *(const int64_t *)((const char *)row + ci_figures[g].off);
}

double ci_fig_num(const void *row, enum fig g)
{
	if (ci_figures[g].kind == F_PER_REQ) {
		const struct rp_route *ro = row;
		return ro->count ? (double)ro->queries / (double)ro->count : 0.0;
	}
	if (ci_figures[g].kind == F_SPAN_MS) {
		const struct rp_test *t = row;
		return (double)(t->end_unix_ns - t->start_unix_ns) / 1e6;
	}
	if (ci_figures[g].kind == F_NS_MS)
		return (double)ci_fig_i64(row, g) / 1e6;
	return *(const double *)((const char *)row + ci_figures[g].off);
}

const char *ci_fig_str(const void *row, enum fig g)
{
	const char *p = (const char *)row + ci_figures[g].off;
	return ci_figures[g].kind == F_STR ? *(const char *const *)p : p;
}

void ci_kv_i64(struct jw *w, const char *key, int64_t v)
{
	jw_key(w, key);
	jw_i64(w, v);
}

void ci_kv_u64(struct jw *w, const char *key, uint64_t v)
{
	jw_key(w, key);
	jw_u64(w, v);
}

/* s == NULL writes null */
void ci_kv_str(struct jw *w, const char *key, const char *s)
{
	jw_key(w, key);
	jw_cstr(w, s);
}

void ci_put_figs(struct jw *w, const void *row, const unsigned char *figs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		enum fig g = figs[i];
		if (ci_figures[g].kind == F_I64)
			ci_kv_i64(w, ci_figures[g].key, ci_fig_i64(row, g));
		else if (ci_is_text(g))
			ci_kv_str(w, ci_figures[g].key, ci_fig_str(row, g));
		else
			rp_jw_num(w, ci_figures[g].key, ci_fig_num(row, g));
	}
}

/* Writes key: an array of one object per row, of the figures figs. */
void ci_put_array(struct jw *w, const char *key, const void *rows, size_t n, size_t size,
		  const unsigned char *figs, size_t nfigs)
{
	jw_key(w, key);
	jw_arr_open(w);
	for (size_t i = 0; i < n; i++) {
		jw_obj_open(w);
		ci_put_figs(w, (const char *)rows + i * size, figs, nfigs);
		jw_obj_close(w);
	}
	jw_arr_close(w);
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
			if (!strcmp(t, ci_cls_names[c]) || (c == CLS_NPLUS1 && !strcmp(t, "n_plus_one"))) {
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
		ci_read_baseline(o.baseline, &base);

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
	ci_timing_basis(&r, &base, &basis);
	if (o.baseline)
		ci_check_baseline(&r, &base, &basis, &o, &checks);
	if (o.save_baseline)
		ci_write_baseline(o.save_baseline, &r);

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
	ci_print_terminal(term, &x, isatty(fileno(term)) && !(nc && *nc));
	fflush(term);
	if (o.markdown)
		ci_write_file(o.markdown, "w", ci_write_markdown, &x);
	const char *summary = getenv("GITHUB_STEP_SUMMARY");
	if (summary && *summary)
		ci_write_file(summary, "a", ci_write_markdown, &x);
	if (o.junit)
		ci_write_file(o.junit, "w", ci_write_junit, &x);
	if (o.json)
		ci_write_file(o.json, "w", ci_write_json, &x);
	if (o.save_baseline && !o.quiet)
		fprintf(term, "Baseline written to %s\n", o.save_baseline);

	free(checks.v);
	ci_free_baseline(&base);
	bg_free(&budget);
	rp_free(&r);
	return x.exit_status;
}
