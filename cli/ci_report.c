/*
 * cli/ci_report.c - the reports of `timeglass ci` (ci.h), all from one
 * struct ci_result: the summary on the terminal, Markdown (also
 * $GITHUB_STEP_SUMMARY), JUnit XML and JSON. The route and test tables of
 * the terminal and of Markdown print from one list of columns.
 */
#include "cli/ci.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/budget.h"
#include "lib/jsonw.h"
#include "lib/readers.h"
#include "lib/report.h"
#include "lib/util.h"

#define TABLE_MAX_TESTS 200 /* tests listed in the tables; JSON has all */

/* The JSON report has every figure. */
static const unsigned char json_route_figs[] = {R_KEY, R_COUNT, R_MEAN, R_STDEV, R_P50, R_P90, R_P95, R_P99, R_MAX,
						R_QUERIES, R_PER_REQ, R_MAX_Q, R_NP1, R_4XX, R_5XX, R_ADJ_P50,
						R_CPU_WAIT, R_CPU};
static const unsigned char json_test_figs[] = {T_NODEID, T_OUTCOME, T_REQUESTS, T_QUERIES, T_OUTSIDE, T_DB_MS, T_NP1,
					       T_5XX, T_MS};

/* ---- text helpers ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
 * Laxer than tg_utf8_len (jsonw.h): surrogates and overlong or too high
 * code points pass, and SQLite's JSON functions make surrogates of a
 * nodeid's "\ud800"; the reports have always printed them as they are. */
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
	if (ci_figures[c->fig].kind == F_I64)
		fprintf(f, "%*" PRId64, w, ci_fig_i64(row, c->fig));
	else if (ci_is_text(c->fig))
		fprintf(f, "%*s", w, ci_fig_str(row, c->fig));
	else
		fprintf(f, "%*.*f", w, c->prec, ci_fig_num(row, c->fig));
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
			fputs(ci_is_text(t->cols[j].fig) ? "|---" : "|---:", f);
		fputs("|\n", f);
	} else {
		if (!n)
			return;
		for (size_t i = 0; i < n; i++) {
			size_t c = cols(ci_fig_str((const char *)rows + i * t->size, t->name));
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
			put_esc(f, ci_fig_str(row, t->name), ESC_MD);
		} else {
			put_cell(f, ci_fig_str(row, t->name), w);
		}
		for (size_t j = 0; j < t->ncols; j++)
			put_value(f, row, &t->cols[j], md);
		fputs(md ? " |\n" : "\n", f);
	}
	if (!md && n > t->limit)
		fprintf(f, "... and %zu more %s (see --json)\n", n - t->limit, t->rows);
}

/* ---- outputs ----------------------------------------------------------- */

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

void ci_print_terminal(FILE *f, const struct ci_result *x, int color)
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
			ci_suite_checks(x->c, "budget", NULL), x->c->breaches);
	if (x->baseline)
		fprintf(f, "%sBaseline%s (%s): %zu checks, %zu regressions, %zu warnings; timing rule: p50 > baseline "
			   "x %.2f, >= %g ms slower, Mann-Whitney p < %g\n",
			bold, off, x->baseline, ci_suite_checks(x->c, "baseline", NULL), x->c->regressions, x->c->warnings,
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
		fprintf(f, "  %s%s%s %s ", k->warn ? yellow : red, k->warn ? "WARN" : "FAIL", off, ci_finding(k));
		put_esc(f, k->msg, ESC_TERM);
		fputc('\n', f);
	}
	if (x->cmd_status > 0)
		fprintf(f, "  %sFAIL%s the command exited with status %d\n", red, off, x->cmd_status);
	fprintf(f, "\n%s%s%s%s: %zu budget breaches, %zu regressions, %zu warnings\n", bold,
		x->exit_status ? red : green, x->exit_status ? "TimeGlass CI failed" : "TimeGlass CI passed", off,
		x->c->breaches, x->c->regressions, x->c->warnings);
}

void ci_write_markdown(FILE *f, const struct ci_result *x)
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
			fprintf(f, "| %s | %s %s | ", k->warn ? "⚠️ warning" : "❌ fail", ci_finding(k), ci_cls_names[k->cls]);
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

void ci_write_junit(FILE *f, const struct ci_result *x)
{
	static const char *const suites[] = {"run", "budget", "baseline"};
	size_t total = 1 + x->c->n, fails = (x->cmd_status > 0) + x->c->breaches + x->c->regressions;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"timeglass\" tests=\"%zu\" "
		   "failures=\"%zu\">\n",
		total, fails);
	for (size_t s = 0; s < 3; s++) {
		/* the run suite holds the command's own testcase */
		size_t nf, n = (s == 0) + ci_suite_checks(x->c, suites[s], &nf);
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
			fprintf(f, "    <testcase classname=\"timeglass.%s.%s\" name=\"", suites[s], ci_cls_names[k->cls]);
			put_esc(f, k->name, ESC_XML);
			fputs("\">", f);
			if (k->failed && !k->warn) {
				fputs("<failure message=\"", f);
				put_esc(f, k->msg, ESC_XML);
				fputs("\" type=\"", f);
				fputs(ci_finding(k), f);
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

void ci_write_json(FILE *f, const struct ci_result *x)
{
	const struct rp_report *r = x->r;
	struct jw w;
	jw_init(&w, f);
	jw_obj_open(&w);
	ci_kv_str(&w, "result", verdict(x));
	ci_kv_i64(&w, "exit_status", x->exit_status);
	jw_key(&w, "command_status");
	if (x->cmd_status < 0)
		jw_null(&w);
	else
		jw_i64(&w, x->cmd_status);
	ci_kv_i64(&w, "run_id", r->run_id);
	ci_kv_str(&w, "command", r->command);
	ci_kv_u64(&w, "requests", r->nreqs);
	ci_kv_i64(&w, "queries", r->total_queries + r->outside_queries);
	ci_kv_i64(&w, "queries_in_requests", r->total_queries);
	ci_kv_i64(&w, "queries_outside_requests", r->outside_queries);
	ci_kv_i64(&w, "queries_outside_tests", r->untested_queries);
	jw_key(&w, "sql_captured");
	jw_bool(&w, r->has_queries && r->total_queries + r->outside_queries > 0);
	ci_kv_str(&w, "budget", x->budget->found ? x->budget->source : NULL);
	ci_kv_str(&w, "baseline", x->baseline);
	jw_key(&w, "timing_rule");
	jw_obj_open(&w);
	rp_jw_num(&w, "tolerance", x->o->tolerance);
	rp_jw_num(&w, "floor_ms", x->o->floor_ms);
	rp_jw_num(&w, "alpha", MW_ALPHA);
	ci_kv_i64(&w, "min_samples", MW_MIN_SAMPLES);
	ci_kv_str(&w, "test", "mann-whitney-u-one-sided");
	ci_kv_str(&w, "basis", x->baseline ? ci_basis_name(x->basis) : NULL);
	jw_obj_close(&w);
	ci_kv_str(&w, "timing_basis", x->baseline ? ci_basis_name(x->basis) : NULL);
	ci_kv_str(&w, "timing_basis_reason", x->baseline ? x->basis->why : NULL);
	jw_key(&w, "cpu_wait");
	if (r->cpu_wait) {
		jw_obj_open(&w);
		ci_put_cpu_wait(&w, r);
		rp_jw_num(&w, "baseline_cpu_wait_factor", x->basis->base_k > 0 ? x->basis->base_k : NAN);
		jw_obj_close(&w);
	} else {
		jw_null(&w);
	}
	jw_key(&w, "summary");
	jw_obj_open(&w);
	ci_kv_u64(&w, "breaches", x->c->breaches);
	ci_kv_u64(&w, "regressions", x->c->regressions);
	ci_kv_u64(&w, "warnings", x->c->warnings);
	jw_obj_close(&w);
	jw_key(&w, "checks");
	jw_arr_open(&w);
	for (size_t i = 0; i < x->c->n; i++) {
		const struct check *k = &x->c->v[i];
		jw_obj_open(&w);
		ci_kv_str(&w, "suite", k->suite);
		ci_kv_str(&w, "class", ci_cls_names[k->cls]);
		ci_kv_str(&w, "name", k->name);
		ci_kv_str(&w, "status", !k->failed ? "ok" : k->warn ? "warning" : "fail");
		ci_kv_str(&w, "route", k->route);
		ci_kv_str(&w, "test", k->test);
		ci_kv_str(&w, "message", k->failed ? k->msg : NULL);
		jw_obj_close(&w);
	}
	jw_arr_close(&w);
	ci_put_array(&w, "routes", r->routes, r->nroutes, sizeof *r->routes, FIGS(json_route_figs));
	ci_put_array(&w, "tests", r->tests, r->ntests, sizeof *r->tests, FIGS(json_test_figs));
	jw_key(&w, "scorecard");
	rp_score_json(&w, x->score);
	jw_key(&w, "losses");
	rp_losses_json(&w, &r->losses);
	jw_obj_close(&w);
	jw_newline(&w);
}

void ci_write_file(const char *path, const char *mode, ci_writer_fn fn, const struct ci_result *x)
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
