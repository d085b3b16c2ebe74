/*
 * lib/report.c - loads one run of the store into memory and aggregates it for
 * `timeglass ci` and `timeglass score`: requests with their query counts,
 * tests from the pytest plugin's JSON lines, statistics per route and per
 * test, process CPU and memory, coverage.py's data, and the scorecard.
 *
 * JSON input (test events, coverage.json) is parsed by SQLite's JSON
 * functions on a private in-memory connection, so the command needs no JSON
 * parser of its own.
 */
#include "lib/report.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "lib/jsonw.h"
#include "lib/readers.h"
#include "lib/store.h"
#include "lib/util.h"

#define TEST_SCAN_BACK 256 /* tests examined before a request's start (overlap from xdist) */

static int fail_sql(sqlite3 *db, const char *what)
{
	return tg_fail("%s: %s", what, sqlite3_errmsg(db));
}

/* sql prepared over db with ?1 bound to the report's run; NULL after
 * tg_fail() ("WHAT: error") when it cannot be prepared. */
static sqlite3_stmt *run_query(sqlite3 *db, const struct rp_report *r, const char *what, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail_sql(db, what);
		return NULL;
	}
	sqlite3_bind_int64(st, 1, r->run_id);
	return st;
}

/* 1 when table has column (the store may predate it). */
static int has_column(sqlite3 *db, const char *table, const char *column)
{
	char sql[160];
	sqlite3_stmt *st;
	snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT 0", column, table);
	int yes = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
	sqlite3_finalize(st);
	return yes;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	return strdup(s ? s : "");
}

double rp_percentile(const double *sorted, size_t n, double p)
{
	if (!n)
		return 0;
	double rank = ceil(p / 100.0 * (double)n);
	size_t i = rank < 1 ? 0 : (size_t)rank - 1;
	return sorted[i < n ? i : n - 1];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double rp_mann_whitney_greater(const double *a, size_t na, const double *b, size_t nb)
{
	if (!na || !nb)
		return 1.0;
	size_t n = na + nb;
	struct item { double v; int from_b; } *all = malloc(n * sizeof *all);
	if (!all)
		return 1.0;
	for (size_t i = 0; i < na; i++)
		all[i] = (struct item){a[i], 0};
	for (size_t i = 0; i < nb; i++)
		all[na + i] = (struct item){b[i], 1};
	qsort(all, n, sizeof *all, cmp_double); /* v is the first member */
	double rank_b = 0, ties = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && all[j].v == all[i].v)
			j++;
		double t = (double)(j - i), avg = ((double)i + 1 + (double)j) / 2.0;
		ties += t * t * t - t;
		for (size_t k = i; k < j; k++)
			if (all[k].from_b)
				rank_b += avg;
		i = j;
	}
	free(all);
	double dna = (double)na, dnb = (double)nb, dn = (double)n;
	double u = rank_b - dnb * (dnb + 1) / 2.0;
	double mean = dna * dnb / 2.0;
	double var = dna * dnb / 12.0 * ((dn + 1) - ties / (dn * (dn - 1)));
	if (var <= 0)
		return u > mean ? 0.0 : 1.0;
	double z = (u - mean - 0.5) / sqrt(var);
	return 0.5 * erfc(z / sqrt(2.0));
}

/* ---- loading ----------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_route_key(const void *key, const void *elem)
{
	return strcmp((const char *)key, ((const struct rp_route *)elem)->key);
}

long rp_find_route(const struct rp_report *r, const char *key)
{
	const struct rp_route *x = bsearch(key, r->routes, r->nroutes, sizeof *r->routes, cmp_route_key);
	return x ? (long)(x - r->routes) : -1;
}

#define ROUTE_KEY_SQL "coalesce(r.method, '?') || ' ' || coalesce(r.route, r.path, '?')"

static int load_run(sqlite3 *db, struct rp_report *r)
{
	sqlite3_stmt *st;
	if (!(st = run_query(db, r, "reading runs",
			     "SELECT started_unix_ns, coalesce(ended_unix_ns, 0), command FROM runs WHERE id = ?")))
		return -1;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		r->run_start_ns = sqlite3_column_int64(st, 0);
		r->run_end_ns = sqlite3_column_int64(st, 1);
		r->command = dup_col(st, 2);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? tg_fail("no run %" PRId64 " in the store", r->run_id)
					 : fail_sql(db, "reading runs");
	return 0;
}

static int load_routes(sqlite3 *db, struct rp_report *r)
{
	sqlite3_stmt *st;
	if (!(st = run_query(db, r, "reading requests",
			     "SELECT DISTINCT " ROUTE_KEY_SQL " FROM requests r WHERE r.run_id = ?")))
		return -1;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && TG_GROW(r->routes, r->nroutes, cap, 16) == 0) {
		memset(&r->routes[r->nroutes], 0, sizeof *r->routes);
		r->routes[r->nroutes++].key = dup_col(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) /* a row without memory for it, or an error */
		return rc == SQLITE_ROW ? tg_fail("out of memory") : fail_sql(db, "reading requests");
	/* key is the first member: sort the structs by it */
	qsort(r->routes, r->nroutes, sizeof *r->routes, cmp_str);
	return 0;
}

static int load_requests(sqlite3 *db, struct rp_report *r)
{
	const char *with_q =
		"SELECT r.id, r.start_unix_ns, r.duration_ns, r.pid, coalesce(r.status, 0), " ROUTE_KEY_SQL ","
		" coalesce(q.n, 0), coalesce(q.ns, 0), coalesce(q.np1, 0), r.process_id"
		" FROM requests r LEFT JOIN (SELECT request_id, count(*) AS n, sum(duration_ns) AS ns,"
		"   count(DISTINCT CASE WHEN n_plus_one THEN coalesce(fingerprint, sql, '') END) AS np1"
		"   FROM queries WHERE request_id IN (SELECT id FROM requests WHERE run_id = ?1)"
		"   GROUP BY request_id) q ON q.request_id = r.id"
		" WHERE r.run_id = ?1 ORDER BY r.start_unix_ns, r.id";
	/* A query set holds its count and summed duration: only the sets with
	 * N+1 queries are opened, for their fingerprints. */
	const char *with_sets =
		"SELECT r.id, r.start_unix_ns, r.duration_ns, r.pid, coalesce(r.status, 0), " ROUTE_KEY_SQL ","
		" coalesce(q.n, 0), coalesce(q.ns, 0), coalesce(f.np1, 0), r.process_id"
		" FROM requests r LEFT JOIN (SELECT request_id, sum(n) AS n, sum(duration_ns) AS ns"
		"   FROM query_sets WHERE request_id IN (SELECT id FROM requests WHERE run_id = ?1)"
		"   GROUP BY request_id) q ON q.request_id = r.id"
		" LEFT JOIN (SELECT request_id, count(DISTINCT coalesce(fingerprint, sql, '')) AS np1"
		"   FROM queries WHERE n_plus_one AND request_id IN (SELECT request_id FROM query_sets"
		"     WHERE n_plus_one > 0 AND request_id IN (SELECT id FROM requests WHERE run_id = ?1))"
		"   GROUP BY request_id) f ON f.request_id = r.id"
		" WHERE r.run_id = ?1 ORDER BY r.start_unix_ns, r.id";
	const char *without_q = "SELECT r.id, r.start_unix_ns, r.duration_ns, r.pid, coalesce(r.status, 0), " ROUTE_KEY_SQL
				", 0, 0, 0, r.process_id FROM requests r WHERE r.run_id = ?1 ORDER BY r.start_unix_ns, r.id";
	sqlite3_stmt *st;
	if (!(st = run_query(db, r, "reading requests",
			     !r->has_queries ? without_q : tg_has_table(db, "query_sets") ? with_sets : with_q)))
		return -1;
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && TG_GROW(r->reqs, r->nreqs, cap, 256) == 0) {
		struct rp_request *q = &r->reqs[r->nreqs];
		q->id = sqlite3_column_int64(st, 0);
		q->start_unix_ns = sqlite3_column_int64(st, 1);
		q->duration_ns = sqlite3_column_int64(st, 2);
		q->pid = (int32_t)sqlite3_column_int(st, 3);
		q->status = sqlite3_column_int(st, 4);
		long ri = rp_find_route(r, (const char *)sqlite3_column_text(st, 5));
		if (ri < 0)
			continue; /* a request that arrived after the route list was read */
		q->route = (size_t)ri;
		q->test = -1;
		q->queries = sqlite3_column_int64(st, 6);
		q->query_ns = sqlite3_column_int64(st, 7);
		q->n_plus_one = sqlite3_column_int64(st, 8);
		q->process_id = sqlite3_column_int64(st, 9);
		r->nreqs++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) /* a row without memory for it, or an error */
		return rc == SQLITE_ROW ? tg_fail("out of memory") : fail_sql(db, "reading requests");
	return 0;
}

static int load_metrics(sqlite3 *db, struct rp_report *r)
{
	sqlite3_stmt *st;
	if (!(st = run_query(db, r, "reading process metrics",
			     "SELECT count(*), coalesce(sum(cpu), 0), coalesce(max(rss), 0), coalesce(max(t1), 0) - coalesce(min(t0), 0)"
			     " FROM (SELECT max(m.cpu_user_ns + m.cpu_sys_ns) AS cpu, max(m.rss_bytes) AS rss,"
			     "   min(m.ts_unix_ns) AS t0, max(m.ts_unix_ns) AS t1"
			     "   FROM process_metrics m JOIN processes p ON p.id = m.process_id"
			     "   WHERE p.run_id = ? GROUP BY m.process_id)")))
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		r->has_metrics = sqlite3_column_int64(st, 0) > 0;
		r->cpu_ns = sqlite3_column_int64(st, 1);
		r->peak_rss = sqlite3_column_int64(st, 2);
		r->metrics_span_ns = sqlite3_column_int64(st, 3);
	}
	sqlite3_finalize(st);
	return 0;
}

/* One interval between two metrics rows of a process: how much of it the
 * process's threads spent waiting on a run queue. */
struct wait_rate {
	int64_t process_id;
	int64_t t0, t1;          /* Unix ns; the first and last of a process reach out */
	int64_t cpu_ns, delay_ns;
	int64_t busy_ns;         /* covered by the process's requests */
};

/* The first of the n intervals v of process pid that ends after s (n if none). */
static long first_interval(const struct wait_rate *v, long n, int64_t pid, int64_t s)
{
	long lo = 0, hi = n;
	while (lo < hi) {
		long mid = (lo + hi) / 2;
		if (v[mid].process_id < pid || (v[mid].process_id == pid && v[mid].t1 <= s))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int cmp_wait_rate(const void *a, const void *b)
{
	const struct wait_rate *x = a, *y = b;
	if (x->process_id != y->process_id)
		return x->process_id < y->process_id ? -1 : 1;
	return (x->t0 > y->t0) - (x->t0 < y->t0);
}

/* Reads the intervals of the run's processes into *v (sorted by process and
 * time). Returns their number, or -1. */
static long load_wait_rates(sqlite3 *db, int64_t run_id, struct wait_rate **v)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT m.process_id, m.ts_unix_ns, m.sched_cpu_ns, m.run_delay_ns FROM process_metrics m"
			       " JOIN processes p ON p.id = m.process_id WHERE p.run_id = ? AND m.sched_cpu_ns IS NOT NULL"
			       " ORDER BY m.process_id, m.ts_unix_ns",
			       -1, &st, NULL) != SQLITE_OK)
		return fail_sql(db, "reading process metrics");
	sqlite3_bind_int64(st, 1, run_id);
	size_t n = 0, cap = 0;
	int64_t prev_pid = 0, prev_ts = 0, prev_cpu = 0, prev_delay = 0;
	int rc;
	*v = NULL;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t pid = sqlite3_column_int64(st, 0), ts = sqlite3_column_int64(st, 1),
			cpu = sqlite3_column_int64(st, 2), delay = sqlite3_column_int64(st, 3);
		if (pid == prev_pid && ts > prev_ts && cpu >= prev_cpu && delay >= prev_delay) {
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				void *p = realloc(*v, cap * sizeof **v);
				if (!p) {
					sqlite3_finalize(st);
					return tg_fail("out of memory");
				}
				*v = p;
			}
			(*v)[n++] = (struct wait_rate){.process_id = pid, .t0 = prev_ts, .t1 = ts, .cpu_ns = cpu - prev_cpu,
						       .delay_ns = delay - prev_delay};
		}
		prev_pid = pid;
		prev_ts = ts;
		prev_cpu = cpu;
		prev_delay = delay;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail_sql(db, "reading process metrics");
	return (long)n;
}

/* Estimates each request's wait for a CPU. Over each metrics interval (100
 * ms) the process's threads waited on a run queue for some time; that delay
 * is spread over the time its requests were in flight in the interval (the
 * union of their spans), at most all of it, and each request waited for its
 * share of its own time there (its event loop or worker thread was the one
 * waiting). Time-local, so a CPU-bound phase and an I/O-bound one each get
 * their own share, and it needs no per-request CPU. A delay outside any
 * request (a wake-up before a request's first byte) is counted as if inside:
 * the estimate errs on the large side, which makes a busy machine's
 * durations look shorter, never longer; route_stats() keeps them at no
 * less than their route's CPU per request. Also sums the schedstat figures of
 * the intervals that requests overlap, for r->cpu_wait_k. Leaves
 * r->cpu_wait 0 (and every wait_ns -1) without such figures. */
static int load_cpu_wait(sqlite3 *db, struct rp_report *r)
{
	for (size_t i = 0; i < r->nreqs; i++)
		r->reqs[i].wait_ns = -1;
	if (!r->nreqs || !has_column(db, "process_metrics", "run_delay_ns"))
		return 0;
	struct wait_rate *v = NULL;
	long n = load_wait_rates(db, r->run_id, &v);
	if (n <= 0) {
		free(v);
		return n < 0 ? -1 : 0;
	}
	for (long j = 0; j < n; j++) { /* a process's first and last intervals reach out */
		if (!j || v[j - 1].process_id != v[j].process_id)
			v[j].t0 = INT64_MIN / 4;
		if (j == n - 1 || v[j + 1].process_id != v[j].process_id)
			v[j].t1 = INT64_MAX / 4;
	}
	qsort(v, (size_t)n, sizeof *v, cmp_wait_rate);
	/* pass 0: the time of each interval that requests cover (their union:
	 * each request adds what it holds beyond the ends of those before it);
	 * pass 1: each request's share of its intervals' delay */
	struct covered { int64_t process_id, end; } *cov = NULL;
	size_t ncov = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < r->nreqs; i++) {
			struct rp_request *q = &r->reqs[i];
			int64_t s = q->start_unix_ns, e = q->start_unix_ns + q->duration_ns;
			if (!pass) {
				size_t c = 0;
				while (c < ncov && cov[c].process_id != q->process_id)
					c++;
				if (c == ncov) {
					void *p = realloc(cov, (ncov + 1) * sizeof *cov);
					if (!p) {
						free(cov);
						free(v);
						return tg_fail("out of memory");
					}
					cov = p;
					cov[ncov++] = (struct covered){q->process_id, s};
				}
				if (e <= cov[c].end)
					continue;
				if (s < cov[c].end)
					s = cov[c].end;
				cov[c].end = e;
			}
			double wait = 0;
			for (long j = first_interval(v, n, q->process_id, s); j < n && v[j].process_id == q->process_id &&
			     v[j].t0 < e; j++) {
				int64_t a = v[j].t0 > s ? v[j].t0 : s, b = v[j].t1 < e ? v[j].t1 : e;
				if (b <= a)
					continue;
				if (!pass)
					v[j].busy_ns += b - a;
				else
					wait += fmin((double)v[j].delay_ns / (double)v[j].busy_ns, 1.0) * (double)(b - a);
			}
			if (pass) {
				q->wait_ns = (int64_t)fmin(wait, (double)q->duration_ns);
				r->cpu_wait = 1;
			}
		}
	}
	free(cov);
	/* the CPU the stack sampler gave each route's requests, summed here
	 * (route_stats() makes it the mean); none in a store without it */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT " ROUTE_KEY_SQL ", sum(r.cpu_ns) FROM requests r"
			       " WHERE r.run_id = ? AND r.cpu_ns IS NOT NULL GROUP BY 1",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, r->run_id);
		while (sqlite3_step(st) == SQLITE_ROW) {
			long k = rp_find_route(r, (const char *)sqlite3_column_text(st, 0));
			if (k >= 0)
				r->routes[k].cpu_ms = (double)sqlite3_column_int64(st, 1) / 1e6;
		}
		sqlite3_finalize(st);
	}
	for (long j = 0; j < n; j++)
		if (v[j].busy_ns) {
			r->sched_cpu_ns += v[j].cpu_ns;
			r->run_delay_ns += v[j].delay_ns;
		}
	r->cpu_wait_k = r->sched_cpu_ns > 0 ? (double)(r->sched_cpu_ns + r->run_delay_ns) / (double)r->sched_cpu_ns : 1;
	free(v);
	return 0;
}

static int cmp_test_start(const void *a, const void *b)
{
	const struct rp_test *x = a, *y = b;
	return (x->start_unix_ns > y->start_unix_ns) - (x->start_unix_ns < y->start_unix_ns);
}

static int add_test(struct rp_report *r, size_t *cap, const char *nodeid, const char *outcome, int32_t pid,
		    int64_t start, int64_t end)
{
	for (size_t i = r->ntests; i-- > 0;) {
		struct rp_test *t = &r->tests[i];
		if (t->pid == pid && t->start_unix_ns == start && !strcmp(t->nodeid, nodeid)) {
			t->end_unix_ns = end; /* the end line of a test seen begun */
			tg_strlcpy(t->outcome, outcome, sizeof t->outcome);
			return 0;
		}
	}
	if (TG_GROW(r->tests, r->ntests, *cap, 64) < 0)
		return tg_fail("out of memory");
	struct rp_test *t = &r->tests[r->ntests++];
	memset(t, 0, sizeof *t);
	t->nodeid = strdup(nodeid);
	tg_strlcpy(t->outcome, outcome, sizeof t->outcome);
	t->pid = pid;
	t->start_unix_ns = start;
	t->end_unix_ns = end;
	return t->nodeid ? 0 : tg_fail("out of memory");
}

/* Reads the plugin's JSON lines. A begin without an end (a crashed test)
 * lasts until the end of the run. */
static int load_tests(struct rp_report *r, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	sqlite3 *mem;
	if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fclose(f);
		return tg_fail("cannot open an in-memory database");
	}
	sqlite3_stmt *st;
	int ret = 0;
	if (sqlite3_prepare_v2(mem,
			       "SELECT json_extract(?1, '$.event'), json_extract(?1, '$.nodeid'), json_extract(?1, '$.pid'),"
			       " coalesce(json_extract(?1, '$.start_unix_ns'), json_extract(?1, '$.unix_ns')),"
			       " json_extract(?1, '$.end_unix_ns'), coalesce(json_extract(?1, '$.outcome'), '')"
			       " WHERE json_valid(?1)",
			       -1, &st, NULL) != SQLITE_OK) {
		ret = fail_sql(mem, "parsing test events");
		goto out;
	}
	char *line = NULL;
	size_t lcap = 0, cap = 0;
	ssize_t n;
	int64_t open_end = r->run_end_ns ? r->run_end_ns : INT64_MAX;
	while ((n = getline(&line, &lcap, f)) > 0 && ret == 0) {
		sqlite3_bind_text(st, 1, line, (int)n, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 1) == SQLITE_TEXT) {
			const char *ev = (const char *)sqlite3_column_text(st, 0);
			const char *nodeid = (const char *)sqlite3_column_text(st, 1);
			int32_t pid = (int32_t)sqlite3_column_int(st, 2);
			int64_t start = sqlite3_column_int64(st, 3);
			const char *outcome = (const char *)sqlite3_column_text(st, 5);
			if (ev && !strcmp(ev, "end"))
				ret = add_test(r, &cap, nodeid, outcome, pid, start, sqlite3_column_int64(st, 4));
			else if (ev && !strcmp(ev, "begin"))
				ret = add_test(r, &cap, nodeid, "", pid, start, open_end);
		}
		sqlite3_reset(st);
	}
	free(line);
	sqlite3_finalize(st);
	qsort(r->tests, r->ntests, sizeof *r->tests, cmp_test_start);
out:
	sqlite3_close(mem);
	fclose(f);
	return ret;
}

/* Gives each request the test whose window holds its start, preferring a
 * test of the same process. */
static void attribute(struct rp_report *r)
{
	for (size_t i = 0; i < r->nreqs; i++) {
		struct rp_request *q = &r->reqs[i];
		size_t lo = 0, hi = r->ntests; /* first test starting after q */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (r->tests[mid].start_unix_ns <= q->start_unix_ns)
				lo = mid + 1;
			else
				hi = mid;
		}
		long best = -1;
		for (size_t k = lo, seen = 0; k-- > 0 && seen < TEST_SCAN_BACK; seen++) {
			const struct rp_test *t = &r->tests[k];
			if (q->start_unix_ns > t->end_unix_ns)
				continue;
			if (t->pid == q->pid) {
				best = (long)k;
				break;
			}
			if (best < 0)
				best = (long)k;
		}
		q->test = best;
		if (best >= 0) {
			struct rp_test *t = &r->tests[best];
			t->requests++;
			t->queries += q->queries;
			t->query_ns += q->query_ns;
			t->n_plus_one += q->n_plus_one;
			t->n5xx += q->status >= 500;
		} else {
			r->untested_queries += q->queries;
		}
	}
}

/* The index of the test of process pid whose window holds ts, or -1. A
 * process runs its tests one after the other, so the latest test of pid
 * starting at or before ts is the only candidate. */
static long test_at(const struct rp_report *r, int32_t pid, int64_t ts)
{
	size_t lo = 0, hi = r->ntests; /* first test starting after ts */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->tests[mid].start_unix_ns <= ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t k = lo, seen = 0; k-- > 0 && seen < TEST_SCAN_BACK; seen++) {
		const struct rp_test *t = &r->tests[k];
		if (t->pid == pid)
			return ts <= t->end_unix_ns ? (long)k : -1;
	}
	return -1;
}

/* The N+1 threshold of the recorder ($TIMEGLASS_N_PLUS_ONE, default 5,
 * 2..1000000 as `timeglass run` checks it; anything else is the default). */
static unsigned n_plus_one_limit(void)
{
	const char *s = getenv("TIMEGLASS_N_PLUS_ONE");
	uint64_t n;
	return s && *s && tg_parse_u64(s, 2, 1000000, &n) == 0 ? (unsigned)n : 5;
}

static uint64_t hash_text(const unsigned char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; s && *s; s++)
		h = (h ^ *s) * 1099511628211ull;
	return h;
}

struct outside_q {
	long test;
	uint64_t fp, site; /* hashes of the fingerprint (or text) and of the call site */
};

static int cmp_outside(const void *a, const void *b)
{
	const struct outside_q *x = a, *y = b;
	if (x->test != y->test)
		return x->test < y->test ? -1 : 1;
	if (x->fp != y->fp)
		return x->fp < y->fp ? -1 : 1;
	return (x->site > y->site) - (x->site < y->site);
}

/* Gives the queries outside any request to the test of their process whose
 * window holds their start, and finds their N+1 patterns per test: a
 * fingerprint run from one call site at least the recorder's threshold
 * times (each such fingerprint counts once per test). */
static int attribute_outside(sqlite3 *db, struct rp_report *r)
{
	if (!r->has_queries)
		return 0;
	sqlite3_stmt *st;
	if (!r->ntests) {
		/* no tests to give them to (`timeglass score`, the dashboard): totals only */
		if (!(st = run_query(db, r, "reading queries",
				     "SELECT count(*), coalesce(sum(duration_ns), 0) FROM queries"
				     " WHERE run_id = ? AND request_id IS NULL")))
			return -1;
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			r->outside_queries = sqlite3_column_int64(st, 0);
			r->outside_query_ns = sqlite3_column_int64(st, 1);
			r->untested_queries += r->outside_queries;
		}
		sqlite3_finalize(st);
		return rc == SQLITE_ROW ? 0 : fail_sql(db, "reading queries");
	}
	if (!(st = run_query(db, r, "reading queries",
			     "SELECT pid, start_unix_ns, duration_ns, coalesce(fingerprint, sql, ''), coalesce(call_site, ''),"
			     " kind = 'housekeeping' FROM queries WHERE run_id = ? AND request_id IS NULL")))
		return -1;
	struct outside_q *v = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t ts = sqlite3_column_int64(st, 1), dur = sqlite3_column_int64(st, 2);
		r->outside_queries++;
		r->outside_query_ns += dur;
		long k = test_at(r, (int32_t)sqlite3_column_int(st, 0), ts);
		if (k < 0) {
			r->untested_queries++;
			continue;
		}
		struct rp_test *t = &r->tests[k];
		t->queries++;
		t->query_ns += dur;
		t->outside_queries++;
		if (sqlite3_column_int(st, 5))
			continue; /* driver housekeeping: never an N+1 (the collector's rule) */
		if (TG_GROW(v, n, cap, 256) < 0) {
			free(v);
			sqlite3_finalize(st);
			return tg_fail("out of memory");
		}
		v[n++] = (struct outside_q){.test = k, .fp = hash_text(sqlite3_column_text(st, 3)),
					    .site = hash_text(sqlite3_column_text(st, 4))};
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(v);
		return fail_sql(db, "reading queries");
	}
	qsort(v, n, sizeof *v, cmp_outside);
	unsigned limit = n_plus_one_limit();
	for (size_t i = 0; i < n;) {
		/* one fingerprint of one test: [i, j); runs of one site within it */
		size_t j = i;
		int flagged = 0;
		while (j < n && v[j].test == v[i].test && v[j].fp == v[i].fp) {
			size_t k = j;
			while (k < n && v[k].test == v[j].test && v[k].fp == v[j].fp && v[k].site == v[j].site)
				k++;
			flagged |= k - j >= limit;
			j = k;
		}
		r->tests[v[i].test].n_plus_one += flagged;
		i = j;
	}
	free(v);
	return 0;
}

static void route_stats(struct rp_report *r)
{
	for (size_t i = 0; i < r->nreqs; i++) {
		const struct rp_request *q = &r->reqs[i];
		struct rp_route *ro = &r->routes[q->route];
		ro->count++;
	}
	for (size_t k = 0; k < r->nroutes; k++) {
		struct rp_route *ro = &r->routes[k];
		ro->samples_ms = ro->count ? malloc((size_t)ro->count * sizeof(double)) : NULL;
		ro->count = 0;
	}
	r->first_start_ns = r->nreqs ? r->reqs[0].start_unix_ns : 0;
	for (size_t i = 0; i < r->nreqs; i++) {
		const struct rp_request *q = &r->reqs[i];
		struct rp_route *ro = &r->routes[q->route];
		if (ro->samples_ms)
			ro->samples_ms[ro->count] = (double)q->duration_ns / 1e6;
		ro->count++;
		ro->n4xx += q->status >= 400 && q->status < 500;
		ro->n5xx += q->status >= 500;
		ro->queries += q->queries;
		ro->query_ns += q->query_ns;
		ro->n_plus_one += q->n_plus_one > 0;
		if (ro->count == 1 || q->queries > ro->max_queries) {
			ro->max_q_req = i; /* the first request with the most queries */
			if (q->queries > ro->max_queries)
				ro->max_queries = q->queries;
		}
		r->total_queries += q->queries;
		r->total_query_ns += q->query_ns;
		r->total_n_plus_one += q->n_plus_one;
		int64_t end = q->start_unix_ns + q->duration_ns;
		if (end > r->last_end_ns)
			r->last_end_ns = end;
	}
	for (size_t k = 0; k < r->nroutes; k++) {
		struct rp_route *ro = &r->routes[k];
		if (!ro->count || !ro->samples_ms)
			continue;
		size_t n = (size_t)ro->count;
		qsort(ro->samples_ms, n, sizeof(double), cmp_double);
		double sum = 0, sq = 0;
		for (size_t i = 0; i < n; i++)
			sum += ro->samples_ms[i];
		ro->mean_ms = sum / (double)n;
		for (size_t i = 0; i < n; i++)
			sq += (ro->samples_ms[i] - ro->mean_ms) * (ro->samples_ms[i] - ro->mean_ms);
		ro->stdev_ms = n > 1 ? sqrt(sq / (double)(n - 1)) : 0;
		ro->p50_ms = rp_percentile(ro->samples_ms, n, 50);
		ro->p90_ms = rp_percentile(ro->samples_ms, n, 90);
		ro->p95_ms = rp_percentile(ro->samples_ms, n, 95);
		ro->p99_ms = rp_percentile(ro->samples_ms, n, 99);
		ro->max_ms = ro->samples_ms[n - 1];
		ro->adj_p50_ms = NAN;
		ro->cpu_wait_ms = NAN;
		ro->cpu_ms = r->cpu_wait && ro->cpu_ms > 0 ? ro->cpu_ms / (double)n : NAN;
		if (!r->cpu_wait || !(ro->adj_samples_ms = malloc(n * sizeof(double))))
			continue;
		size_t m = 0;
		double wait = 0;
		for (size_t i = 0; i < r->nreqs; i++) {
			const struct rp_request *q = &r->reqs[i];
			if (&r->routes[q->route] != ro)
				continue;
			double w = q->wait_ns > 0 ? (double)q->wait_ns / 1e6 : 0;
			/* never below the route's CPU per request: no request takes
			 * less, and a wait taken for too large a share stops there */
			double d = (double)q->duration_ns / 1e6;
			ro->adj_samples_ms[m++] = isnan(ro->cpu_ms) ? d - w : fmin(d, fmax(d - w, ro->cpu_ms));
			wait += w;
		}
		qsort(ro->adj_samples_ms, m, sizeof(double), cmp_double);
		ro->cpu_wait_ms = wait / (double)n;
		ro->adj_p50_ms = rp_percentile(ro->adj_samples_ms, n, 50);
	}
}

int rp_load(sqlite3 *db, int64_t run_id, const char *events_path, struct rp_report *r)
{
	memset(r, 0, sizeof *r);
	if (!run_id) {
		run_id = tg_latest_run(db);
		if (run_id < 0)
			return -1;
		if (!run_id)
			return tg_fail("the store holds no runs yet");
	}
	r->run_id = run_id;
	r->has_queries = tg_has_table(db, "queries");
	if (load_run(db, r) < 0 || load_routes(db, r) < 0 || load_requests(db, r) < 0 || load_metrics(db, r) < 0 ||
	    load_cpu_wait(db, r) < 0 ||
	    tg_losses_read(db, r->run_id, &r->losses) < 0)
		return -1;
	if (events_path && load_tests(r, events_path) < 0)
		return -1;
	for (size_t i = 0; i < r->nroutes; i++)
		if (!r->routes[i].key)
			return tg_fail("out of memory");
	attribute(r);
	if (attribute_outside(db, r) < 0)
		return -1;
	route_stats(r);
	return 0;
}

int rp_load_path(const char *path, int64_t run_id, const char *events_path, struct rp_report *r)
{
	struct tg_store *s = tg_store_open(path, TG_STORE_READ);
	if (!s)
		return -1;
	int rc = rp_load(tg_store_db(s), run_id, events_path, r);
	tg_store_close(s);
	return rc;
}

void rp_free(struct rp_report *r)
{
	for (size_t i = 0; i < r->nroutes; i++) {
		free(r->routes[i].key);
		free(r->routes[i].samples_ms);
		free(r->routes[i].adj_samples_ms);
	}
	for (size_t i = 0; i < r->ntests; i++)
		free(r->tests[i].nodeid);
	free(r->routes);
	free(r->tests);
	free(r->reqs);
	free(r->command);
	tg_losses_free(&r->losses);
	memset(r, 0, sizeof *r);
}

/* ---- coverage ---------------------------------------------------------- */

static int popcount_blob(const unsigned char *p, int n)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += __builtin_popcount(p[i]);
	return c;
}

/* Lines of line_bits, OR-ing the bitmaps of a file's contexts. */
static int64_t count_line_bits(sqlite3 *db)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT file_id, numbits FROM line_bits ORDER BY file_id", -1, &st, NULL) != SQLITE_OK)
		return -1;
	int64_t total = 0, cur = -1;
	unsigned char *acc = NULL;
	int acc_n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t fid = sqlite3_column_int64(st, 0);
		const unsigned char *b = sqlite3_column_blob(st, 1);
		int n = sqlite3_column_bytes(st, 1);
		if (fid != cur) {
			total += popcount_blob(acc, acc_n);
			acc_n = 0;
			cur = fid;
		}
		if (n > acc_n) {
			unsigned char *p = realloc(acc, (size_t)n);
			if (!p)
				break;
			acc = p;
			memset(acc + acc_n, 0, (size_t)(n - acc_n));
			acc_n = n;
		}
		for (int i = 0; i < n && b; i++)
			acc[i] |= b[i];
	}
	total += popcount_blob(acc, acc_n);
	free(acc);
	sqlite3_finalize(st);
	return total;
}

static int64_t int_query(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	return v;
}

/* totals.percent_covered of a coverage.json report beside the data file. */
static double json_percent(const char *data_path)
{
	char path[600];
	const char *slash = strrchr(data_path, '/');
	int dir = slash ? (int)(slash - data_path + 1) : 0;
	snprintf(path, sizeof path, "%.*scoverage.json", dir, data_path);
	static char buf[1 << 20];
	if (tg_read_small_file(path, buf, sizeof buf) <= 0)
		return -1;
	sqlite3 *mem;
	double pct = -1;
	if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(mem, "SELECT json_extract(?1, '$.totals.percent_covered') WHERE json_valid(?1)", -1,
				       &st, NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, buf, -1, SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
				pct = sqlite3_column_double(st, 0);
			sqlite3_finalize(st);
		}
	}
	sqlite3_close(mem);
	return pct;
}

void rp_coverage_read(const char *path, struct rp_coverage *c)
{
	memset(c, 0, sizeof *c);
	c->percent = -1;
	tg_strlcpy(c->path, path ? path : ".coverage", sizeof c->path);
	sqlite3 *db;
	if (sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return;
	}
	if (tg_has_table(db, "file")) {
		c->files = int_query(db, "SELECT count(*) FROM file");
		int64_t lines = 0;
		if (tg_has_table(db, "line_bits"))
			lines = count_line_bits(db);
		if (lines <= 0 && tg_has_table(db, "arc"))
			lines = int_query(db, "SELECT count(*) FROM (SELECT DISTINCT file_id, tono FROM arc WHERE tono > 0)");
		c->lines = lines < 0 ? 0 : lines;
		c->found = c->files >= 0;
		if (c->found)
			c->percent = json_percent(c->path);
	}
	sqlite3_close(db);
}

/* ---- the scorecard ----------------------------------------------------- */

/* Grade limits A, B, C, D (beyond D: F); lower is better unless higher. */
struct bench_def {
	const char *key, *name, *unit;
	int higher_better;
	double lim[4];
	const char *what;
};

static const struct bench_def benches[RP_BENCH_COUNT] = {
	[RP_AVG] = {"latency_avg", "Average latency", "ms", 0, {50, 100, 250, 500}, "mean request duration"},
	[RP_P90] = {"latency_p90", "p90 latency", "ms", 0, {100, 200, 500, 1000}, "90th percentile of request durations"},
	[RP_P99] = {"latency_p99", "p99 latency", "ms", 0, {200, 500, 1000, 2000}, "99th percentile of request durations"},
	[RP_RPS] = {"throughput", "Throughput", "req/s", 1, {500, 200, 50, 10},
		    "requests per second while requests were served (a test suite's pace is a lower bound)"},
	[RP_CPU] = {"cpu", "CPU usage", "ms/req", 0, {5, 10, 25, 50},
		    "CPU time of the run's processes per request (test code included under pytest)"},
	[RP_MEM] = {"memory", "Memory (RSS)", "MiB", 0, {128, 256, 512, 1024}, "peak resident set of one process"},
	[RP_DB] = {"db_time", "Database query time", "ms/req", 0, {5, 20, 50, 100}, "SQL time per request"},
	[RP_5XX] = {"error_rate_5xx", "5xx error rate", "%", 0, {0, 0.1, 1, 5}, "share of responses with status 500-599"},
	[RP_4XX] = {"bad_input_4xx", "Bad input handling (4xx)", "%", 1, {100, 99, 95, 90},
		    "share of error responses that are 4xx rather than 5xx"},
	[RP_COVERAGE] = {"coverage", "Test coverage", "%", 1, {90, 80, 70, 50}, "lines covered (coverage.py)"},
};

static char grade_of(const struct bench_def *b, double v)
{
	static const char g[] = "ABCD";
	for (int i = 0; i < 4; i++)
		if (b->higher_better ? v >= b->lim[i] : v <= b->lim[i])
			return g[i];
	return 'F';
}

void rp_score_thresholds(FILE *f)
{
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		const struct bench_def *b = &benches[i];
		const char *op = b->higher_better ? ">=" : "<=";
		fprintf(f, "  %-26s A %s %g, B %s %g, C %s %g, D %s %g %s, else F\n", b->name, op, b->lim[0], op,
			b->lim[1], op, b->lim[2], op, b->lim[3], b->unit);
	}
}

static void evidence(struct rp_score_item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void evidence(struct rp_score_item *it, const char *fmt, ...)
{
	if (it->nevidence >= RP_EVIDENCE_MAX)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(it->evidence[it->nevidence++], sizeof it->evidence[0], fmt, ap);
	va_end(ap);
}

static void set_value(struct rp_score_item *it, const struct bench_def *b, double v, int decimals)
{
	it->measured = 1;
	it->value = v;
	snprintf(it->figure, sizeof it->figure, "%.*f %s", decimals, v, b->unit);
	it->grade = grade_of(b, v);
}

void rp_score_set(struct rp_score_item *it, enum rp_bench b, double v, int decimals, const char *note)
{
	set_value(it, &benches[b], v, decimals);
	it->nevidence = 0;
	if (note)
		snprintf(it->note, sizeof it->note, "%s", note);
}

/* Indexes of routes sorted by a metric, descending; caller frees. */
static const struct rp_report *sort_ctx;
static double (*sort_metric)(const struct rp_route *);
static int cmp_routes_desc(const void *a, const void *b)
{
	double x = sort_metric(&sort_ctx->routes[*(const size_t *)a]);
	double y = sort_metric(&sort_ctx->routes[*(const size_t *)b]);
	return (x < y) - (x > y);
}
static double m_mean(const struct rp_route *ro) { return ro->mean_ms; }
static double m_p90(const struct rp_route *ro) { return ro->p90_ms; }
static double m_p99(const struct rp_route *ro) { return ro->p99_ms; }
static double m_db(const struct rp_route *ro) { return (double)ro->query_ns; }
static double m_count(const struct rp_route *ro) { return (double)ro->count; }

static const char *plural(int64_t n)
{
	return n == 1 ? "" : "s";
}

/* Evidence lines for the three routes with the largest metric, each in the
 * unit of the benchmark: a latency in ms, SQL time in ms with its queries,
 * request counts with their rate in req/s over span_ns (the span the
 * throughput is measured over). */
static void top_routes(const struct rp_report *r, struct rp_score_item *it, double (*metric)(const struct rp_route *),
		       const char *label, int64_t span_ns)
{
	size_t *ix = malloc(r->nroutes * sizeof *ix + 1);
	if (!ix)
		return;
	for (size_t i = 0; i < r->nroutes; i++)
		ix[i] = i;
	sort_ctx = r;
	sort_metric = metric;
	qsort(ix, r->nroutes, sizeof *ix, cmp_routes_desc);
	for (size_t i = 0; i < r->nroutes && i < 3; i++) {
		const struct rp_route *ro = &r->routes[ix[i]];
		if (metric == m_db)
			evidence(it, "%s: %.2f ms SQL in %" PRId64 " quer%s over %" PRId64 " request%s%s", ro->key,
				 (double)ro->query_ns / 1e6, ro->queries, ro->queries == 1 ? "y" : "ies", ro->count,
				 plural(ro->count), ro->n_plus_one ? " (N+1 found)" : "");
		else if (metric == m_count)
			evidence(it, "%s: %" PRId64 " request%s, %.1f req/s (%.0f%% of the requests)", ro->key, ro->count,
				 plural(ro->count), (double)ro->count / ((double)span_ns / 1e9),
				 100.0 * (double)ro->count / (double)r->nreqs);
		else
			evidence(it, "%s: %s %.2f ms (%" PRId64 " request%s)", ro->key, label, metric(ro), ro->count,
				 plural(ro->count));
	}
	free(ix);
}

static const char *test_name(const struct rp_report *r, long t)
{
	return t >= 0 ? r->tests[t].nodeid : "no test";
}

void rp_score(const struct rp_report *r, const struct rp_coverage *cov, struct rp_score_item out[RP_BENCH_COUNT])
{
	memset(out, 0, sizeof(struct rp_score_item) * RP_BENCH_COUNT);
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		out[i].key = benches[i].key;
		out[i].name = benches[i].name;
		out[i].unit = benches[i].unit;
		out[i].grade = '-';
		snprintf(out[i].note, sizeof out[i].note, "%s", benches[i].what);
		snprintf(out[i].figure, sizeof out[i].figure, "not measured");
	}
	size_t n = r->nreqs;
	double *all = n ? malloc(n * sizeof *all) : NULL;
	double sum = 0;
	int64_t n4 = 0, n5 = 0;
	for (size_t i = 0; i < n; i++) {
		if (all)
			all[i] = (double)r->reqs[i].duration_ns / 1e6;
		sum += (double)r->reqs[i].duration_ns / 1e6;
		n4 += r->reqs[i].status >= 400 && r->reqs[i].status < 500;
		n5 += r->reqs[i].status >= 500;
	}
	if (all) {
		qsort(all, n, sizeof *all, cmp_double);
		set_value(&out[RP_AVG], &benches[RP_AVG], sum / (double)n, 2);
		set_value(&out[RP_P90], &benches[RP_P90], rp_percentile(all, n, 90), 2);
		set_value(&out[RP_P99], &benches[RP_P99], rp_percentile(all, n, 99), 2);
		top_routes(r, &out[RP_AVG], m_mean, "mean", 0);
		top_routes(r, &out[RP_P90], m_p90, "p90", 0);
		top_routes(r, &out[RP_P99], m_p99, "p99", 0);
		free(all);

		int64_t span = r->last_end_ns - r->first_start_ns;
		if (span > 0) {
			set_value(&out[RP_RPS], &benches[RP_RPS], (double)n / ((double)span / 1e9), 1);
			evidence(&out[RP_RPS], "%zu requests in %.3f s (first request's start to last one's end)", n,
				 (double)span / 1e9);
			top_routes(r, &out[RP_RPS], m_count, NULL, span);
		}
	} else {
		for (int i = RP_AVG; i <= RP_RPS; i++)
			snprintf(out[i].figure, sizeof out[i].figure, "no requests recorded");
	}

	if (r->has_metrics && n) {
		double per = (double)r->cpu_ns / 1e6 / (double)n;
		set_value(&out[RP_CPU], &benches[RP_CPU], per, 2);
		double wall = (double)(r->run_end_ns > r->run_start_ns ? r->run_end_ns - r->run_start_ns : r->metrics_span_ns);
		evidence(&out[RP_CPU], "%.3f s CPU for %zu requests", (double)r->cpu_ns / 1e9, n);
		if (wall > 0)
			evidence(&out[RP_CPU], "%.0f%% of one core on average over %.2f s", 100.0 * (double)r->cpu_ns / wall,
				 wall / 1e9);
	} else if (!r->has_metrics) {
		snprintf(out[RP_CPU].figure, sizeof out[RP_CPU].figure, "not sampled");
	}
	if (r->has_metrics) {
		set_value(&out[RP_MEM], &benches[RP_MEM], (double)r->peak_rss / 1048576.0, 1);
		evidence(&out[RP_MEM], "%" PRId64 " bytes peak RSS", r->peak_rss);
	} else {
		snprintf(out[RP_MEM].figure, sizeof out[RP_MEM].figure, "not sampled");
	}

	if (!r->has_queries || !r->total_queries) {
		snprintf(out[RP_DB].figure, sizeof out[RP_DB].figure, "not measured");
		if (r->outside_queries)
			snprintf(out[RP_DB].note, sizeof out[RP_DB].note,
				 "no SQL query ran in a request (%" PRId64 " ran outside any request)", r->outside_queries);
		else
			snprintf(out[RP_DB].note, sizeof out[RP_DB].note, "%s",
				 r->has_queries ? "no SQL queries were captured in this run" : "this store has no SQL capture");
	} else if (n) {
		set_value(&out[RP_DB], &benches[RP_DB], (double)r->total_query_ns / 1e6 / (double)n, 2);
		evidence(&out[RP_DB], "%" PRId64 " queries in %zu requests, %.2f ms in all, %" PRId64 " N+1 findings",
			 r->total_queries, n, (double)r->total_query_ns / 1e6, r->total_n_plus_one);
		top_routes(r, &out[RP_DB], m_db, NULL, 0);
		if (r->outside_queries)
			evidence(&out[RP_DB], "not counted: %" PRId64 " quer%s outside any request, %.2f ms",
				 r->outside_queries, r->outside_queries == 1 ? "y" : "ies", (double)r->outside_query_ns / 1e6);
	}

	if (n) {
		set_value(&out[RP_5XX], &benches[RP_5XX], 100.0 * (double)n5 / (double)n, 2);
		snprintf(out[RP_5XX].figure, sizeof out[RP_5XX].figure, "%.2f %% (%" PRId64 " of %zu)",
			 100.0 * (double)n5 / (double)n, n5, n);
		for (size_t i = 0; i < n; i++) {
			const struct rp_request *q = &r->reqs[i];
			if (q->status >= 500)
				evidence(&out[RP_5XX], "request %" PRId64 ": %s -> %d (%s)", q->id, r->routes[q->route].key,
					 q->status, test_name(r, q->test));
		}
	} else {
		snprintf(out[RP_5XX].figure, sizeof out[RP_5XX].figure, "no requests recorded");
	}

	if (n4 + n5) {
		double pct = 100.0 * (double)n4 / (double)(n4 + n5);
		set_value(&out[RP_4XX], &benches[RP_4XX], pct, 1);
		snprintf(out[RP_4XX].figure, sizeof out[RP_4XX].figure, "%.1f %% (%" PRId64 " 4xx, %" PRId64 " 5xx)", pct, n4,
			 n5);
		for (size_t k = 0; k < r->nroutes; k++) {
			const struct rp_route *ro = &r->routes[k];
			if (ro->n4xx || ro->n5xx)
				evidence(&out[RP_4XX], "%s: %" PRId64 " 4xx, %" PRId64 " 5xx", ro->key, ro->n4xx, ro->n5xx);
		}
	} else {
		snprintf(out[RP_4XX].figure, sizeof out[RP_4XX].figure, "not exercised");
		snprintf(out[RP_4XX].note, sizeof out[RP_4XX].note,
			 "no request got an error response: the tests never sent bad input");
	}

	struct rp_score_item *c = &out[RP_COVERAGE];
	if (cov && cov->found) {
		evidence(c, "%s: %" PRId64 " line%s executed in %" PRId64 " file%s", cov->path, cov->lines,
			 plural(cov->lines), cov->files, plural(cov->files));
		if (cov->percent >= 0) {
			set_value(c, &benches[RP_COVERAGE], cov->percent, 1);
		} else {
			snprintf(c->figure, sizeof c->figure, "%" PRId64 " line%s in %" PRId64 " file%s", cov->lines,
				 plural(cov->lines), cov->files, plural(cov->files));
			snprintf(c->note, sizeof c->note,
				 "percent not computed: run `coverage json` to add the total (coverage.json)");
		}
	} else {
		snprintf(c->figure, sizeof c->figure, "not measured");
		snprintf(c->note, sizeof c->note, "no coverage data (.coverage); run the tests under `coverage run`");
	}
}

void rp_jw_num(struct jw *w, const char *key, double v)
{
	jw_key(w, key);
	if (!isfinite(v)) {
		jw_null(w);
		return;
	}
	/* jsonw writes no doubles; right after a key no comma is due */
	fprintf(w->f, "%.10g", v);
	w->after_key = 0;
}

void rp_losses_json(struct jw *w, const struct tg_losses *l)
{
	char buf[512];
	jw_obj_open(w);
	for (int t = 0; t < TG_TOTAL_COUNT; t++) {
		jw_key(w, tg_loss_total_name(t));
		jw_i64(w, l->total[t]);
	}
	jw_key(w, "text");
	jw_cstr(w, tg_losses_text(l, buf, sizeof buf));
	jw_key(w, "sampling_text");
	jw_cstr(w, tg_losses_sampling_text(l, buf, sizeof buf));
	jw_key(w, "kinds");
	jw_arr_open(w);
	for (size_t i = 0; i < l->n; i++) {
		const struct tg_loss_row *r = &l->rows[i];
		jw_obj_open(w);
		jw_key(w, "kind");
		jw_cstr(w, r->kind);
		jw_key(w, "class");
		jw_cstr(w, tg_loss_class_name(r->k->cls));
		jw_key(w, "label");
		jw_cstr(w, r->k->label ? r->k->label : r->kind);
		jw_key(w, "description");
		jw_cstr(w, r->k->what);
		jw_key(w, "records");
		jw_i64(w, r->records);
		jw_key(w, "events");
		jw_i64(w, r->events);
		jw_key(w, "bytes");
		jw_i64(w, r->bytes);
		jw_obj_close(w);
	}
	jw_arr_close(w);
	jw_obj_close(w);
}

void rp_score_json(struct jw *w, const struct rp_score_item items[RP_BENCH_COUNT])
{
	jw_arr_open(w);
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		const struct rp_score_item *it = &items[i];
		jw_obj_open(w);
		jw_key(w, "key");
		jw_cstr(w, it->key);
		jw_key(w, "name");
		jw_cstr(w, it->name);
		jw_key(w, "measured");
		jw_bool(w, it->measured);
		if (it->measured)
			rp_jw_num(w, "value", it->value);
		else {
			jw_key(w, "value");
			jw_null(w);
		}
		jw_key(w, "unit");
		jw_cstr(w, it->unit);
		jw_key(w, "figure");
		jw_cstr(w, it->figure);
		jw_key(w, "grade");
		if (it->grade == '-')
			jw_null(w);
		else
			jw_str(w, &it->grade, 1);
		jw_key(w, "note");
		jw_cstr(w, it->note);
		jw_key(w, "evidence");
		jw_arr_open(w);
		for (size_t k = 0; k < it->nevidence; k++)
			jw_cstr(w, it->evidence[k]);
		jw_arr_close(w);
		jw_obj_close(w);
	}
	jw_arr_close(w);
}
