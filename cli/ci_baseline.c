/*
 * cli/ci_baseline.c - the baselines of `timeglass ci` (ci.h): --save-baseline
 * writes a run's route and test figures, with the durations of each route's
 * requests, as JSON; --baseline reads one back with SQLite's JSON functions
 * and checks the run against it (the timing rule: cmd_ci.c's opening comment).
 */
#include "cli/ci.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonw.h"
#include "lib/report.h"
#include "lib/util.h"
#include "tg_config.h"

#define BASELINE_MAX_SAMPLES 2000

/* A baseline keeps what ci_check_baseline() compares, plus the percentiles
 * for people reading it; the JSON report has every figure. */
static const unsigned char base_route_figs[] = {R_COUNT, R_P50, R_P95, R_P99, R_MEAN, R_STDEV, R_QUERIES, R_PER_REQ,
						R_NP1, R_5XX, R_ADJ_P50, R_CPU_WAIT};
static const unsigned char base_test_figs[] = {T_REQUESTS, T_QUERIES, T_OUTSIDE, T_NP1, T_5XX};

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
void ci_put_cpu_wait(struct jw *w, const struct rp_report *r)
{
	rp_jw_num(w, "cpu_wait_factor", r->cpu_wait_k);
	rp_jw_num(w, "sched_cpu_ms", (double)r->sched_cpu_ns / 1e6);
	rp_jw_num(w, "run_delay_ms", (double)r->run_delay_ns / 1e6);
}

void ci_write_baseline(const char *path, const struct rp_report *r)
{
	FILE *f = fopen(path, "w");
	if (!f)
		tg_die("cannot write baseline %s: %s", path, strerror(errno));
	struct jw w;
	jw_init(&w, f);
	jw_obj_open(&w);
	ci_kv_i64(&w, "timeglass_baseline", 1);
	ci_kv_str(&w, "tg_version", TG_VERSION);
	ci_kv_i64(&w, "run_id", r->run_id);
	ci_kv_str(&w, "command", r->command);
	if (r->cpu_wait)
		ci_put_cpu_wait(&w, r);
	jw_key(&w, "routes");
	jw_obj_open(&w);
	for (size_t k = 0; k < r->nroutes; k++) {
		const struct rp_route *ro = &r->routes[k];
		jw_key(&w, ro->key);
		jw_obj_open(&w);
		ci_put_figs(&w, ro, FIGS(base_route_figs));
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
		ci_put_figs(&w, &r->tests[i], FIGS(base_test_figs));
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
		*v = ci_grow(*v, *n, &cap, sizeof **v);
		(*v)[(*n)++] = sqlite3_column_double(sm, 0);
	}
	sqlite3_reset(sm);
}

/* Reads a baseline with SQLite's JSON functions. Dies on a bad file. */
void ci_read_baseline(const char *path, struct baseline *b)
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
		b->routes = ci_grow(b->routes, b->nroutes, &cap, sizeof *b->routes);
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
		b->tests = ci_grow(b->tests, b->ntests, &cap, sizeof *b->tests);
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

void ci_free_baseline(struct baseline *b)
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

void ci_timing_basis(const struct rp_report *r, const struct baseline *b, struct timing_basis *tb)
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

const char *ci_basis_name(const struct timing_basis *tb)
{
	return tb->adjusted ? "wall-adjusted-for-cpu-wait" : "wall";
}

void ci_check_baseline(const struct rp_report *r, const struct baseline *b, const struct timing_basis *basis,
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
				const char *t = ci_route_test(r, k, ci_is_np1);
				struct check *x = ci_add_check(c, "baseline", CLS_NPLUS1, ro->key, t, "N+1 %s", ro->key);
				ci_fail_check(c, x, o->warn_only[CLS_NPLUS1], "%s (new route): N+1 queries in %" PRId64 " requests%s",
					   ro->key, ro->n_plus_one, ci_in_test(t, tb, sizeof tb));
			}
			if (ro->n5xx) {
				const char *t = ci_route_test(r, k, ci_is_5xx);
				struct check *x = ci_add_check(c, "baseline", CLS_ERRORS, ro->key, t, "5xx %s", ro->key);
				ci_fail_check(c, x, o->warn_only[CLS_ERRORS], "%s (new route): %" PRId64 " 5xx responses%s",
					   ro->key, ro->n5xx, ci_in_test(t, tb, sizeof tb));
			}
			continue;
		}
		/* queries per request, exactly: new/new_n > base/base_n */
		const char *tq = ro->count ? ci_test_of(r, r->reqs[ro->max_q_req].test) : "";
		struct check *x = ci_add_check(c, "baseline", CLS_QUERIES, ro->key, tq, "queries per request %s", ro->key);
		if (br->count && ro->count && (__int128)ro->queries * br->count > (__int128)br->queries * ro->count)
			ci_fail_check(c, x, o->warn_only[CLS_QUERIES], "%s: %.2f queries per request, baseline %.2f%s", ro->key,
				   (double)ro->queries / (double)ro->count, (double)br->queries / (double)br->count,
				   ci_in_test(tq, tb, sizeof tb));
		const char *tn = ci_route_test(r, k, ci_is_np1);
		x = ci_add_check(c, "baseline", CLS_NPLUS1, ro->key, tn, "N+1 %s", ro->key);
		if (ro->n_plus_one && !br->n_plus_one)
			ci_fail_check(c, x, o->warn_only[CLS_NPLUS1], "%s: new N+1 queries in %" PRId64 " of %" PRId64 " requests%s",
				   ro->key, ro->n_plus_one, ro->count, ci_in_test(tn, tb, sizeof tb));
		const char *te = ci_route_test(r, k, ci_is_5xx);
		x = ci_add_check(c, "baseline", CLS_ERRORS, ro->key, te, "5xx %s", ro->key);
		if (ro->n5xx > br->n5xx)
			ci_fail_check(c, x, o->warn_only[CLS_ERRORS], "%s: %" PRId64 " 5xx responses, baseline %" PRId64 "%s",
				   ro->key, ro->n5xx, br->n5xx, ci_in_test(te, tb, sizeof tb));
		/* timing */
		const char *tt = ci_slowest_test(r, k);
		x = ci_add_check(c, "baseline", CLS_TIMING, ro->key, tt, "timing %s", ro->key);
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
				ci_fail_check(c, x, o->warn_only[CLS_TIMING],
					   "%s: p50 %.2f ms, baseline %.2f ms (+%.0f%% > %.0f%% tolerance; %zu/%zu samples, "
					   "too few for a significance test%s)%s",
					   ro->key, p50, bp50, 100 * (p50 / bp50 - 1), 100 * o->tolerance, bn, n, how,
					   ci_in_test(tt, tb, sizeof tb));
			} else {
				double p = rp_mann_whitney_greater(bv, bn, v, n);
				if (p < MW_ALPHA)
					ci_fail_check(c, x, o->warn_only[CLS_TIMING],
						   "%s: p50 %.2f ms, baseline %.2f ms (+%.0f%% > %.0f%% tolerance, "
						   "Mann-Whitney p = %.2g%s)%s",
						   ro->key, p50, bp50, 100 * (p50 / bp50 - 1), 100 * o->tolerance, p, how,
						   ci_in_test(tt, tb, sizeof tb));
			}
		}
	}
	for (size_t i = 0; i < r->ntests; i++) {
		const struct rp_test *t = &r->tests[i];
		for (size_t j = 0; j < b->ntests; j++) {
			const struct base_test *bt = &b->tests[j];
			if (strcmp(bt->nodeid, t->nodeid))
				continue;
			struct check *x = ci_add_check(c, "baseline", CLS_QUERIES, "", t->nodeid, "queries in %s", t->nodeid);
			/* an older baseline counted only the queries of the test's requests */
			int64_t nq = bt->all_queries ? t->queries : t->queries - t->outside_queries;
			if (nq > bt->queries)
				ci_fail_check(c, x, o->warn_only[CLS_QUERIES], "test %s: %" PRId64 " queries%s, baseline %" PRId64,
					   t->nodeid, nq, bt->all_queries ? "" : " in requests", bt->queries);
			break;
		}
	}
}

