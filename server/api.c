/*
 * api.c - the JSON API of the dashboard: /api/status, /api/runs,
 * /api/overview, /api/score, /api/endpoints, /api/requests and
 * /api/requests/ID (its /queries and /spans are in profile.c, as is
 * /api/flame).
 *
 * Each handler reads the store through the thread's read-only connection
 * inside one read transaction (a consistent snapshot while the collector
 * writes), builds the whole cJSON body, then sends it. API.md documents the
 * shapes. The requests list pages by keyset (sort key, id) so that any page
 * of a million-row run costs one index range scan.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "common/grow.h"
#include "json.h"
#include "lib/readers.h"
#include "lib/report.h"
#include "server.h"
#include "stats.h"
#include "tg_config.h"
#include "lib/util.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 500
#define SERIES_MAX_POINTS 300   /* points per process metric series */
#define TIMELINE_MAX_BUCKETS 150

int64_t tg_now_unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int tg_parse_i64(const char *s, int64_t *out)
{
	if (!*s)
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
		return -1;
	*out = v;
	return 0;
}

/* Reads integer parameter name. Returns 1 when present and valid, 0 when
 * absent or empty, -1 after sending 400 for a bad value. */
static int param_i64(struct tg_req *r, const char *name, int64_t min, int64_t max, int64_t *out)
{
	char buf[64];
	int n = tg_query_param(r, name, buf, sizeof buf);
	if (n == -1 || n == 0)
		return 0;
	if (n < 0 || tg_parse_i64(buf, out) < 0 || *out < min || *out > max) {
		tg_send_error(r, 400, "bad_param", "bad value for %s (expected an integer from %" PRId64 " to %" PRId64 ")",
			      name, min, max);
		return -1;
	}
	return 1;
}

int tg_read_begin(sqlite3 *db)
{
	return sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

void tg_read_end(sqlite3 *db)
{
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

int tg_store_error(struct tg_req *r, sqlite3 *db)
{
	int status = tg_send_error(r, 500, "store_error", "reading the store failed: %s", sqlite3_errmsg(db));
	tg_read_end(db);
	return status;
}

sqlite3 *tg_read_open(struct tg_req *r, int *status)
{
	struct tg_db dbs; /* only for the call: the connection belongs to the thread */
	sqlite3 *db = tg_req_db(r, &dbs);
	if (!db) {
		*status = 503;
		return NULL;
	}
	if (tg_read_begin(db) < 0) {
		*status = tg_store_error(r, db);
		return NULL;
	}
	return db;
}

int tg_run_is_live(sqlite3 *db, int64_t run_id)
{
	sqlite3_stmt *st;
	int live = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT r.ended_unix_ns IS NULL,"
			       " (SELECT max((SELECT max(m.ts_unix_ns) FROM process_metrics m WHERE m.process_id = p.id))"
			       "  FROM processes p WHERE p.run_id = r.id)"
			       " FROM runs r WHERE r.id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, run_id);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0)) {
		if (sqlite3_column_type(st, 1) == SQLITE_NULL)
			live = 1; /* no metrics (the middleware alone): trust ended_unix_ns */
		else
			live = tg_now_unix_ns() - sqlite3_column_int64(st, 1) < 10 * (int64_t)1000000000;
	}
	sqlite3_finalize(st);
	return live;
}

/* The newest run, 0 when there is none or it cannot be read. */
static int64_t latest_run(sqlite3 *db)
{
	int64_t id = tg_latest_run(db);
	return id > 0 ? id : 0;
}

int tg_store_summary(sqlite3 *db, struct tg_store_summary *out)
{
	memset(out, 0, sizeof *out);
	out->runs = tg_db_int(db, "SELECT count(*) FROM runs", -1);
	if (out->runs < 0)
		return -1;
	out->latest_run = latest_run(db);
	out->max_request_id = tg_db_int(db, "SELECT max(id) FROM requests", 0);
	if (out->latest_run)
		out->latest_live = tg_run_is_live(db, out->latest_run);
	return 0;
}

/* Adds "queries" and "samples" capability objects: whether the store has
 * these tables yet. */
static void add_capabilities(cJSON *obj, sqlite3 *db)
{
	cJSON *caps = cJSON_AddObjectToObject(obj, "capabilities");
	cJSON_AddBoolToObject(caps, "queries", tg_has_table(db, "queries"));
	cJSON_AddBoolToObject(caps, "samples", tg_has_table(db, "samples"));
}

int tg_api_status(struct tg_req *r)
{
	struct tg_db db;
	tg_db_acquire(r->db_path, &db);
	cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "version", TG_VERSION);
	cJSON *store = cJSON_AddObjectToObject(body, "store");
	tg_json_add_bytes(store, "path", r->db_path, strlen(r->db_path));
	cJSON_AddStringToObject(store, "state", tg_db_state_name(db.state));
	if (db.state == TG_DB_OK)
		cJSON_AddNullToObject(store, "message");
	else
		cJSON_AddStringToObject(store, "message", db.message);
	if (db.schema >= 0)
		tg_json_add_int(store, "schema", db.schema);
	else
		cJSON_AddNullToObject(store, "schema");
	tg_json_add_int(store, "supported_schema", TG_STORE_SCHEMA);

	struct tg_store_summary sum = { 0 };
	if (db.state == TG_DB_OK) {
		if (tg_read_begin(db.db) < 0 || tg_store_summary(db.db, &sum) < 0) {
			cJSON_Delete(body);
			return tg_store_error(r, db.db);
		}
		add_capabilities(body, db.db);
		tg_read_end(db.db);
	} else {
		cJSON *caps = cJSON_AddObjectToObject(body, "capabilities");
		cJSON_AddBoolToObject(caps, "queries", 0);
		cJSON_AddBoolToObject(caps, "samples", 0);
	}
	tg_json_add_int(body, "runs", sum.runs);
	if (sum.latest_run)
		tg_json_add_int(body, "latest_run", sum.latest_run);
	else
		cJSON_AddNullToObject(body, "latest_run");
	cJSON_AddBoolToObject(body, "live", sum.latest_live);
	tg_json_add_int(body, "max_request_id", sum.max_request_id);
	tg_json_add_ns(body, "now_unix_ns", tg_now_unix_ns());
	cJSON *streams = cJSON_AddObjectToObject(body, "live_streams");
	tg_json_add_int(streams, "open", tg_events_open_streams());
	tg_json_add_int(streams, "max", TG_EVENTS_MAX_STREAMS);
	return tg_send_json(r, 200, body);
}

/* Adds *_unix_ns (exact string) and *_ms (double) for a time column. */
static void add_time(cJSON *obj, const char *base, sqlite3_stmt *st, int col)
{
	char ns[64], ms[64];
	snprintf(ns, sizeof ns, "%s_unix_ns", base);
	snprintf(ms, sizeof ms, "%s_ms", base);
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		cJSON_AddNullToObject(obj, ns);
		cJSON_AddNullToObject(obj, ms);
		return;
	}
	int64_t v = sqlite3_column_int64(st, col);
	tg_json_add_ns(obj, ns, v);
	tg_json_add_num(obj, ms, (double)v / 1e6);
}

#define RUN_COLUMNS                                                                                  \
	"r.id, r.started_unix_ns, r.ended_unix_ns, r.command, r.cwd, r.hostname, r.tg_version, r.source," \
	" r.exit_status, (SELECT count(*) FROM processes p WHERE p.run_id = r.id)"

/* The kind rows of l as the array of GET /api/overview's "losses":
 * [{kind, records, events, bytes, class, label, description}]. */
static cJSON *loss_kinds_json(const struct tg_losses *l)
{
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < l->n; i++) {
		const struct tg_loss_row *row = &l->rows[i];
		cJSON *o = cJSON_CreateObject();
		tg_json_add_bytes(o, "kind", row->kind, strlen(row->kind));
		tg_json_add_int(o, "records", row->records);
		tg_json_add_int(o, "events", row->events);
		tg_json_add_int(o, "bytes", row->bytes);
		cJSON_AddStringToObject(o, "class", tg_loss_class_name(row->k->cls));
		const char *label = row->k->label ? row->k->label : row->kind;
		tg_json_add_bytes(o, "label", label, strlen(label));
		cJSON_AddStringToObject(o, "description", row->k->what);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

/* Adds the run totals of l (lost_events, samples_dropped,
 * sample_ticks_skipped) to obj. */
static void add_loss_totals(cJSON *obj, const struct tg_losses *l)
{
	for (int t = 0; t < TG_TOTAL_COUNT; t++)
		tg_json_add_int(obj, tg_loss_total_name(t), l->total[t]);
}

/* Adds name: the losses object of `timeglass score --json` and `timeglass
 * ci --json` (report.c's rp_losses_json): totals, the two lines every view
 * prints, and the kinds. */
static void add_losses_obj(cJSON *parent, const char *name, const struct tg_losses *l)
{
	char buf[512];
	cJSON *o = cJSON_AddObjectToObject(parent, name);
	add_loss_totals(o, l);
	tg_losses_text(l, buf, sizeof buf);
	tg_json_add_bytes(o, "text", buf, strlen(buf));
	tg_losses_sampling_text(l, buf, sizeof buf);
	tg_json_add_bytes(o, "sampling_text", buf, strlen(buf));
	cJSON_AddItemToObject(o, "kinds", loss_kinds_json(l));
}

/* A run object from a row of RUN_COLUMNS. */
static cJSON *run_json(sqlite3 *db, sqlite3_stmt *st)
{
	cJSON *o = cJSON_CreateObject();
	int64_t id = sqlite3_column_int64(st, 0);
	tg_json_add_int(o, "id", id);
	add_time(o, "started", st, 1);
	add_time(o, "ended", st, 2);
	tg_json_add_cols(o, st, 3, (const char *const[]){"command", "cwd", "hostname", "tg_version", "source",
							 "exit_status", "processes", NULL});
	cJSON_AddBoolToObject(o, "live", tg_run_is_live(db, id));
	struct tg_losses l;
	if (tg_losses_read(db, id, &l) == 0)
		add_loss_totals(o, &l);
	tg_losses_free(&l);
	return o;
}

/* Number of requests of a run: from the stats when loaded, else counted on
 * the run's index. */
static int64_t run_request_count(sqlite3 *db, int64_t run_id)
{
	struct tg_run_stats *s = tg_stats_peek(db, run_id);
	if (s) { /* 0.3 s to count ten million on the index */
		int64_t n = (int64_t)s->n;
		tg_stats_release();
		return n;
	}
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM requests WHERE run_id = %" PRId64, run_id);
	return tg_db_int(db, sql, 0);
}

int tg_api_runs(struct tg_req *r)
{
	int status;
	sqlite3 *db = tg_read_open(r, &status);
	if (!db)
		return status;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT " RUN_COLUMNS " FROM runs r ORDER BY r.id DESC LIMIT 200", -1, &st,
			       NULL) != SQLITE_OK)
		return tg_store_error(r, db);
	cJSON *body = cJSON_CreateObject();
	cJSON *runs = cJSON_AddArrayToObject(body, "runs");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = run_json(db, st);
		tg_json_add_int(o, "requests", run_request_count(db, sqlite3_column_int64(st, 0)));
		cJSON_AddItemToArray(runs, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		cJSON_Delete(body);
		return tg_store_error(r, db);
	}
	tg_read_end(db);
	return tg_send_json(r, 200, body);
}

/* tg_read_open() for the handlers of one run: also resolves the run
 * parameter (default: the newest run) into *run_id. NULL after sending an
 * error (its status in *status; the read transaction then ended). */
static sqlite3 *open_run(struct tg_req *r, int64_t *run_id, int *status)
{
	sqlite3 *db = tg_read_open(r, status);
	if (!db)
		return NULL;
	int got = param_i64(r, "run", 1, INT64_MAX, run_id);
	if (got < 0) {
		*status = 400;
		tg_read_end(db);
		return NULL;
	}
	if (got == 0)
		*run_id = latest_run(db);
	if (*run_id == 0) {
		*status = tg_send_error(r, 404, "no_runs",
					"No recordings yet: run `timeglass run -- uvicorn main:app`");
		tg_read_end(db);
		return NULL;
	}
	return db;
}

/* Adds the run object for run_id to body. Returns 0, or -1 when there is
 * no such run. */
static int add_run(cJSON *body, sqlite3 *db, int64_t run_id)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT " RUN_COLUMNS " FROM runs r WHERE r.id = ?", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, run_id);
	int found = sqlite3_step(st) == SQLITE_ROW;
	if (found)
		cJSON_AddItemToObject(body, "run", run_json(db, st));
	sqlite3_finalize(st);
	return found ? 0 : -1;
}

static double ns_to_ms(int64_t ns)
{
	return (double)ns / 1e6;
}

/* Seconds over which the run served requests: first start to last end,
 * at least one second. */
static double active_seconds(const struct tg_run_stats *s)
{
	double secs = (double)(s->max_end_ns - s->min_start_ns) / 1e9;
	return secs < 1.0 ? 1.0 : secs;
}

/* The request timeline: per time bucket, RPS, mean and max latency and
 * 4xx/5xx counts. Bucket widths are round numbers of seconds. */
/* Counts requests [t->upto, s->n) into the timeline's buckets, first
 * starting it afresh when its width or origin changed (the run grew longer,
 * or a request came in that started before the first). */
static int timeline_fill(struct tg_run_stats *s, int64_t w, int64_t t0, size_t nb)
{
	struct tg_timeline *t = &s->timeline;
	if (t->w != w || t->t0 != t0 || nb < t->nb) {
		t->w = w;
		t->t0 = t0;
		t->nb = 0;
		t->upto = 0;
	}
	if (nb > t->cap) {
		struct tg_timeline_bucket *b = realloc(t->b, nb * sizeof *b);
		if (!b) {
			t->w = 0;
			return -1;
		}
		t->b = b;
		t->cap = nb;
	}
	if (nb > t->nb)
		memset(t->b + t->nb, 0, (nb - t->nb) * sizeof *t->b);
	t->nb = nb;
	struct tg_timeline_bucket *b = t->b;
	for (size_t i = t->upto; i < s->n; i++) {
		size_t k = (size_t)((s->start_ns[i] - t0) / w);
		if (k >= nb)
			k = nb - 1;
		b[k].n++;
		b[k].sum += s->dur_ns[i];
		if (s->dur_ns[i] > b[k].max)
			b[k].max = s->dur_ns[i];
		if (s->status[i] >= 500)
			b[k].n5++;
		else if (s->status[i] >= 400)
			b[k].n4++;
	}
	t->upto = s->n;
	return 0;
}

static cJSON *timeline_json(struct tg_run_stats *s)
{
	static const int64_t widths_s[] = { 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400 };
	cJSON *tl = cJSON_CreateObject();
	if (s->n == 0) {
		tg_json_add_int(tl, "bucket_s", 1);
		const char *names[] = { "t", "rps", "avg_ms", "max_ms", "n_4xx", "n_5xx" };
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
			cJSON_AddArrayToObject(tl, names[i]);
		return tl;
	}
	int64_t span = s->max_end_ns - s->min_start_ns;
	int64_t w = widths_s[sizeof widths_s / sizeof widths_s[0] - 1] * 1000000000LL;
	for (size_t i = 0; i < sizeof widths_s / sizeof widths_s[0]; i++) {
		if (span / (widths_s[i] * 1000000000LL) < TIMELINE_MAX_BUCKETS) {
			w = widths_s[i] * 1000000000LL;
			break;
		}
	}
	int64_t t0 = s->min_start_ns - s->min_start_ns % w;
	size_t nb = (size_t)((s->max_end_ns - t0) / w) + 1;
	int capped = nb > 4 * TIMELINE_MAX_BUCKETS;
	if (capped)
		nb = 4 * TIMELINE_MAX_BUCKETS;
	if (timeline_fill(s, w, t0, nb) < 0)
		return tl;
	const struct tg_timeline_bucket *b = s->timeline.b;
	tg_json_add_int(tl, "bucket_s", w / 1000000000LL);
	cJSON *t = cJSON_AddArrayToObject(tl, "t");
	cJSON *rps = cJSON_AddArrayToObject(tl, "rps");
	cJSON *avg = cJSON_AddArrayToObject(tl, "avg_ms");
	cJSON *mx = cJSON_AddArrayToObject(tl, "max_ms");
	cJSON *e4 = cJSON_AddArrayToObject(tl, "n_4xx");
	cJSON *e5 = cJSON_AddArrayToObject(tl, "n_5xx");
	double ws = (double)w / 1e9;
	for (size_t k = 0; k < nb; k++) {
		cJSON_AddItemToArray(t, tg_json_int((t0 + (int64_t)k * w) / 1000000000LL));
		cJSON_AddItemToArray(rps, tg_json_num((double)b[k].n / ws));
		cJSON_AddItemToArray(avg, b[k].n ? tg_json_num(ns_to_ms(b[k].sum) / (double)b[k].n) : cJSON_CreateNull());
		cJSON_AddItemToArray(mx, b[k].n ? tg_json_num(ns_to_ms(b[k].max)) : cJSON_CreateNull());
		cJSON_AddItemToArray(e4, tg_json_int((int64_t)b[k].n4));
		cJSON_AddItemToArray(e5, tg_json_int((int64_t)b[k].n5));
	}
	/* Requests past the last bucket were counted into it: a later, larger
	 * cap would put them elsewhere, so such a timeline is not kept. */
	if (capped)
		s->timeline.w = 0;
	return tl;
}

/* Latency summary of an endpoint (or of all requests). */
static void add_latency(cJSON *o, struct tg_endpoint_stats *e)
{
	tg_json_add_dur(o, "avg", e->count ? e->sum_ns / (int64_t)e->count : 0);
	tg_json_add_dur(o, "p50", tg_durs_percentile(&e->durs, 50));
	tg_json_add_dur(o, "p90", tg_durs_percentile(&e->durs, 90));
	tg_json_add_dur(o, "p95", tg_durs_percentile(&e->durs, 95));
	tg_json_add_dur(o, "p99", tg_durs_percentile(&e->durs, 99));
	tg_json_add_dur(o, "max", e->max_ns);
	tg_json_add_int(o, "n_4xx", (int64_t)e->n4xx);
	tg_json_add_int(o, "n_5xx", (int64_t)e->n5xx);
	tg_json_add_num(o, "rate_4xx", e->count ? (double)e->n4xx / (double)e->count : 0.0);
	tg_json_add_num(o, "rate_5xx", e->count ? (double)e->n5xx / (double)e->count : 0.0);
}

/* CPU and memory of one process: mean and peak CPU%, peak and last RSS,
 * and a series of at most SERIES_MAX_POINTS points (CPU% averaged, RSS
 * maximum over each point's samples). */
static void add_process_series(cJSON *o, const struct tg_metric *sm, size_t n, double *cpu_avg_out, int64_t *rss_max_out)
{
	cJSON *series = cJSON_AddObjectToObject(o, "series");
	cJSON *t = cJSON_AddArrayToObject(series, "t");
	cJSON *cpu = cJSON_AddArrayToObject(series, "cpu_pct");
	cJSON *rss = cJSON_AddArrayToObject(series, "rss_bytes");
	double cpu_avg = 0, cpu_max = 0;
	int64_t rss_max = 0;
	for (size_t i = 0; i < n; i++)
		if (sm[i].rss > rss_max)
			rss_max = sm[i].rss;
	if (n >= 2 && sm[n - 1].ts > sm[0].ts)
		cpu_avg = 100.0 * (double)(sm[n - 1].cpu - sm[0].cpu) / (double)(sm[n - 1].ts - sm[0].ts);
	size_t intervals = n > 1 ? n - 1 : 0;
	size_t group = (intervals + SERIES_MAX_POINTS - 1) / SERIES_MAX_POINTS;
	if (group < 1)
		group = 1;
	for (size_t i = 0; i < intervals; i += group) {
		size_t j = i + group < intervals ? i + group : intervals;
		int64_t dt = sm[j].ts - sm[i].ts;
		double pct = dt > 0 ? 100.0 * (double)(sm[j].cpu - sm[i].cpu) / (double)dt : 0.0;
		if (pct < 0)
			pct = 0;
		int64_t m = 0;
		for (size_t k = i + 1; k <= j; k++)
			if (sm[k].rss > m)
				m = sm[k].rss;
		if (pct > cpu_max)
			cpu_max = pct;
		cJSON_AddItemToArray(t, tg_json_num((double)sm[j].ts / 1e9));
		cJSON_AddItemToArray(cpu, tg_json_num(pct));
		cJSON_AddItemToArray(rss, tg_json_int(m));
	}
	tg_json_add_num(o, "cpu_avg_pct", cpu_avg);
	tg_json_add_num(o, "cpu_max_pct", cpu_max);
	tg_json_add_int(o, "rss_max_bytes", rss_max);
	tg_json_add_int(o, "rss_last_bytes", n ? sm[n - 1].rss : 0);
	tg_json_add_int(o, "samples", (int64_t)n);
	*cpu_avg_out = cpu_avg;
	*rss_max_out = rss_max;
}

/* The run's processes with their CPU and memory series (held in the run's
 * stats s, locked by the caller); sets the run-wide totals (sum over
 * processes of mean CPU% and of peak RSS). */
static int add_processes(cJSON *body, sqlite3 *db, struct tg_run_stats *s, double *cpu_total, int64_t *rss_total)
{
	*cpu_total = 0;
	*rss_total = 0;
	sqlite3_stmt *ps = tg_prepare_id(db,
					 "SELECT id, pid, ppid, exe, cmdline, started_unix_ns, ended_unix_ns, after_fork"
					 " FROM processes WHERE run_id = ?1 ORDER BY id LIMIT 64",
					 s->run_id, "reading processes");
	if (!ps)
		return -1;
	cJSON *arr = cJSON_AddArrayToObject(body, "processes");
	int rc;
	while ((rc = sqlite3_step(ps)) == SQLITE_ROW) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		tg_json_add_cols(o, ps, 0, (const char *const[]){"id", "pid", "ppid", "exe", "cmdline", NULL});
		add_time(o, "started", ps, 5);
		add_time(o, "ended", ps, 6);
		cJSON_AddBoolToObject(o, "after_fork", sqlite3_column_int(ps, 7));
		const char *err;
		const struct tg_proc_metrics *m = tg_stats_metrics(db, s, sqlite3_column_int64(ps, 0), &err);
		if (!m) {
			rc = SQLITE_ERROR;
			break;
		}
		double cpu;
		int64_t rss;
		add_process_series(o, m->v, m->n, &cpu, &rss);
		*cpu_total += cpu;
		*rss_total += rss;
	}
	sqlite3_finalize(ps);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* "losses": one object per kind of the run's losses table, classified by
 * losses.h; "recording": the run's totals and the lines every view prints. */
static int add_losses(cJSON *body, sqlite3 *db, int64_t run_id)
{
	struct tg_losses l;
	if (tg_losses_read(db, run_id, &l) < 0) {
		tg_losses_free(&l);
		return -1;
	}
	cJSON_AddItemToObject(body, "losses", loss_kinds_json(&l));
	add_losses_obj(body, "recording", &l);
	tg_losses_free(&l);
	return 0;
}

/* "queries": captured SQL of the run (t, kept up to date with the run's
 * stats), or {"available": false} while the store has no such table. */
static void add_queries_summary(cJSON *body, int avail, const struct tg_query_totals *t, int64_t req_ns)
{
	cJSON *q = cJSON_AddObjectToObject(body, "queries");
	cJSON_AddBoolToObject(q, "available", avail);
	if (!avail || !t)
		return; /* a layout this build does not know: just "available" */
	tg_json_add_int(q, "count", t->count);
	tg_json_add_dur(q, "total", t->sum_ns);
	/* Time in the database while serving requests, over the requests' time. */
	tg_json_add_int(q, "in_requests", t->in_requests);
	tg_json_add_dur(q, "in_requests", t->in_requests_ns);
	tg_json_add_num(q, "db_share", req_ns > 0 ? (double)t->in_requests_ns / (double)req_ns : 0.0);
	tg_json_add_int(q, "n_plus_one_requests", (int64_t)t->n_plus_one.n);
}

int tg_api_overview(struct tg_req *r)
{
	int64_t run_id;
	int status;
	sqlite3 *db = open_run(r, &run_id, &status);
	if (!db)
		return status;
	cJSON *body = cJSON_CreateObject();
	if (add_run(body, db, run_id) < 0) {
		cJSON_Delete(body);
		tg_read_end(db);
		return tg_send_error(r, 404, "no_such_run", "there is no run %" PRId64 " in this store", run_id);
	}
	const char *err;
	struct tg_run_stats *s = tg_stats_acquire(db, run_id, &err);
	if (!s) {
		cJSON_Delete(body);
		status = tg_send_error(r, 500, "store_error", "reading the store failed: %s", err);
		tg_read_end(db);
		return status;
	}
	cJSON *sum = cJSON_AddObjectToObject(body, "summary");
	tg_json_add_int(sum, "count", (int64_t)s->n);
	add_latency(sum, &s->all);
	double secs = active_seconds(s);
	tg_json_add_num(sum, "active_s", s->n ? (double)(s->max_end_ns - s->min_start_ns) / 1e9 : 0.0);
	tg_json_add_num(sum, "rps", s->n ? (double)s->n / secs : 0.0);
	if (s->n) {
		tg_json_add_ns(sum, "first_start_unix_ns", s->min_start_ns);
		tg_json_add_ns(sum, "last_end_unix_ns", s->max_end_ns);
	} else {
		cJSON_AddNullToObject(sum, "first_start_unix_ns");
		cJSON_AddNullToObject(sum, "last_end_unix_ns");
	}
	tg_json_add_int(sum, "endpoints", (int64_t)s->n_eps);
	cJSON *tl = timeline_json(s);
	cJSON_AddItemToObject(body, "timeline", tl);
	double peak = 0;
	cJSON *it;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(tl, "rps")) if (it->valuedouble > peak) peak = it->valuedouble;
	tg_json_add_num(sum, "peak_rps", peak);

	double cpu;
	int64_t rss;
	int64_t req_ns = s->all.sum_ns;
	int bad = add_processes(body, db, s, &cpu, &rss) < 0;
	int have_queries = tg_has_table(db, "queries");
	struct tg_query_totals qt = {0};
	const struct tg_query_totals *q = NULL;
	if (!bad && have_queries && (q = tg_stats_queries(db, s, &err)) != NULL)
		qt = *q; /* the totals; the ids behind n_plus_one.n stay with the stats */
	tg_stats_release();
	if (bad || add_losses(body, db, run_id) < 0) {
		cJSON_Delete(body);
		return tg_store_error(r, db);
	}
	cJSON *res = cJSON_AddObjectToObject(body, "resources");
	tg_json_add_num(res, "cpu_avg_pct", cpu);
	tg_json_add_int(res, "rss_peak_bytes", rss);
	add_queries_summary(body, have_queries, q ? &qt : NULL, req_ns);
	cJSON *samples = cJSON_AddObjectToObject(body, "samples");
	cJSON_AddBoolToObject(samples, "available", tg_has_table(db, "samples"));
	tg_read_end(db);
	return tg_send_json(r, 200, body);
}

/* GET /api/score?run=ID: the scorecard of `timeglass score`, computed by
 * report.c over the run (coverage from ./.coverage of the server's cwd). */
int tg_api_score(struct tg_req *r)
{
	int64_t run_id;
	int status;
	sqlite3 *db = open_run(r, &run_id, &status);
	if (!db)
		return status;
	struct rp_report rep;
	int rc = rp_load(db, run_id, NULL, &rep);
	tg_read_end(db);
	if (rc < 0) {
		rp_free(&rep);
		return tg_send_error(r, 404, "no_such_run", "%s", tg_error());
	}
	struct rp_coverage cov;
	rp_coverage_read(NULL, &cov);
	struct rp_score_item items[RP_BENCH_COUNT];
	rp_score(&rep, &cov, items);
	cJSON *body = cJSON_CreateObject();
	tg_json_add_int(body, "run_id", run_id);
	tg_json_add_int(body, "requests", (int64_t)rep.nreqs);
	cJSON *arr = cJSON_AddArrayToObject(body, "scorecard");
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		const struct rp_score_item *it = &items[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "key", it->key);
		cJSON_AddStringToObject(o, "name", it->name);
		cJSON_AddBoolToObject(o, "measured", it->measured);
		if (it->measured && isfinite(it->value))
			tg_json_add_num(o, "value", it->value);
		else
			cJSON_AddNullToObject(o, "value");
		cJSON_AddStringToObject(o, "unit", it->unit);
		tg_json_add_bytes(o, "figure", it->figure, strlen(it->figure));
		char g[2] = {it->grade, 0};
		if (it->grade == '-')
			cJSON_AddNullToObject(o, "grade");
		else
			cJSON_AddStringToObject(o, "grade", g);
		tg_json_add_bytes(o, "note", it->note, strlen(it->note));
		/* evidence quotes wire text (paths): through tg_json_add_bytes for valid UTF-8 */
		cJSON *ev = cJSON_AddArrayToObject(o, "evidence"), *tmp = cJSON_CreateObject();
		for (size_t k = 0; k < it->nevidence; k++) {
			tg_json_add_bytes(tmp, "e", it->evidence[k], strlen(it->evidence[k]));
			cJSON_AddItemToArray(ev, cJSON_DetachItemFromObject(tmp, "e"));
		}
		cJSON_Delete(tmp);
		cJSON_AddItemToArray(arr, o);
	}
	add_losses_obj(body, "losses", &rep.losses);
	rp_free(&rep);
	return tg_send_json(r, 200, body);
}

struct ep_db;

/* Sort keys of the endpoints table. */
enum ep_key { EK_COUNT, EK_AVG, EK_P50, EK_P90, EK_P99, EK_MAX, EK_ERR5, EK_ERR4, EK_NAME, EK_QPR, EK_DB, EK_N1 };

struct ep_row {
	struct tg_endpoint_stats *e;
	int64_t p50, p90, p99;
	double qpr, db_share;  /* queries per request, share of its time in SQL */
	double n1;             /* its requests with an N+1 flag */
};

static enum ep_key sort_key;
static int sort_desc;

static int cmp_ep(const void *a, const void *b)
{
	const struct ep_row *x = a, *y = b;
	double u = 0, v = 0;
	int c = 0;
	switch (sort_key) {
	case EK_COUNT: u = (double)x->e->count, v = (double)y->e->count; break;
	case EK_AVG: u = (double)x->e->sum_ns / (double)x->e->count, v = (double)y->e->sum_ns / (double)y->e->count; break;
	case EK_P50: u = (double)x->p50, v = (double)y->p50; break;
	case EK_P90: u = (double)x->p90, v = (double)y->p90; break;
	case EK_P99: u = (double)x->p99, v = (double)y->p99; break;
	case EK_MAX: u = (double)x->e->max_ns, v = (double)y->e->max_ns; break;
	case EK_ERR5: u = (double)x->e->n5xx / (double)x->e->count, v = (double)y->e->n5xx / (double)y->e->count; break;
	case EK_ERR4: u = (double)x->e->n4xx / (double)x->e->count, v = (double)y->e->n4xx / (double)y->e->count; break;
	case EK_NAME: c = strcmp(x->e->name, y->e->name); break;
	case EK_QPR: u = x->qpr, v = y->qpr; break;
	case EK_DB: u = x->db_share, v = y->db_share; break;
	case EK_N1: u = x->n1, v = y->n1; break;
	}
	if (sort_key != EK_NAME)
		c = (u > v) - (u < v);
	if (sort_desc)
		c = -c;
	if (c == 0)
		c = strcmp(x->e->name, y->e->name) ? strcmp(x->e->name, y->e->name) : strcmp(x->e->method, y->e->method);
	return c;
}

int tg_api_endpoints(struct tg_req *r)
{
	static const struct { const char *name; enum ep_key key; } keys[] = {
		{ "count", EK_COUNT }, { "rps", EK_COUNT }, { "avg", EK_AVG }, { "p50", EK_P50 },
		{ "p90", EK_P90 }, { "p99", EK_P99 }, { "max", EK_MAX }, { "errors", EK_ERR5 },
		{ "5xx", EK_ERR5 }, { "4xx", EK_ERR4 }, { "name", EK_NAME }, { "queries", EK_QPR },
		{ "db", EK_DB }, { "n_plus_one", EK_N1 },
	};
	char sort[16] = "count", dir[8] = "";
	if (tg_query_param(r, "sort", sort, sizeof sort) == 0)
		strcpy(sort, "count");
	tg_query_param(r, "dir", dir, sizeof dir);
	enum ep_key key = EK_COUNT;
	int known = 0;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(sort, keys[i].name) == 0)
			key = keys[i].key, known = 1;
	if (!known && sort[0])
		return tg_send_error(r, 400, "bad_param",
				     "bad value for sort (count, rps, avg, p50, p90, p99, max, 5xx, 4xx, name, queries, db or n_plus_one)");
	if (dir[0] && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0)
		return tg_send_error(r, 400, "bad_param", "bad value for dir (asc or desc)");
	int desc = dir[0] ? strcmp(dir, "desc") == 0 : key != EK_NAME;
	int64_t limit = 1000;
	if (param_i64(r, "limit", 1, 10000, &limit) < 0)
		return 400;

	int64_t run_id;
	int status;
	sqlite3 *db = open_run(r, &run_id, &status);
	if (!db)
		return status;
	const char *err;
	struct tg_run_stats *s = tg_stats_acquire(db, run_id, &err);
	if (!s) {
		int nf = err && strcmp(err, "no such run") == 0;
		status = nf ? tg_send_error(r, 404, "no_such_run", "there is no run %" PRId64 " in this store", run_id)
			    : tg_send_error(r, 500, "store_error", "reading the store failed: %s", err);
		tg_read_end(db);
		return status;
	}
	struct ep_row *rows = calloc(s->n_eps ? s->n_eps : 1, sizeof *rows);
	if (!rows) {
		tg_stats_release();
		tg_read_end(db);
		return tg_send_json(r, 500, NULL);
	}
	int have_queries = tg_has_table(db, "queries");
	if (have_queries)
		tg_stats_queries(db, s, &err); /* on an error its figures are 0 */
	for (size_t i = 0; i < s->n_eps; i++) {
		struct tg_endpoint_stats *e = &s->eps[i];
		rows[i].e = e;
		rows[i].p50 = tg_durs_percentile(&e->durs, 50);
		rows[i].p90 = tg_durs_percentile(&e->durs, 90);
		rows[i].p99 = tg_durs_percentile(&e->durs, 99);
		rows[i].qpr = e->count ? (double)e->queries / (double)e->count : 0.0;
		rows[i].db_share = e->sum_ns > 0 ? (double)e->db_ns / (double)e->sum_ns : 0.0;
		rows[i].n1 = (double)e->n_plus_one;
	}
	sort_key = key; /* qsort has no context argument: the lock guards these */
	sort_desc = desc;
	qsort(rows, s->n_eps, sizeof *rows, cmp_ep);
	double secs = active_seconds(s);
	cJSON *body = cJSON_CreateObject();
	tg_json_add_int(body, "run", run_id);
	tg_json_add_int(body, "total", (int64_t)s->n_eps);
	cJSON_AddBoolToObject(body, "capped", s->n_eps >= TG_STATS_MAX_ENDPOINTS);
	cJSON *arr = cJSON_AddArrayToObject(body, "endpoints");
	for (size_t i = 0; i < s->n_eps && (int64_t)i < limit; i++) {
		struct tg_endpoint_stats *e = rows[i].e;
		cJSON *o = cJSON_CreateObject();
		tg_json_add_bytes(o, "method", e->method, strlen(e->method));
		tg_json_add_bytes(o, "route", e->name, strlen(e->name));
		cJSON_AddBoolToObject(o, "is_route", e->is_route);
		cJSON_AddBoolToObject(o, "is_other", e->is_other);
		tg_json_add_int(o, "count", (int64_t)e->count);
		tg_json_add_num(o, "rps", (double)e->count / secs);
		add_latency(o, e);
		if (have_queries) {
			tg_json_add_int(o, "queries", e->queries);
			tg_json_add_num(o, "queries_per_request", rows[i].qpr);
			tg_json_add_dur(o, "db", e->db_ns);
			tg_json_add_num(o, "db_ms_share", rows[i].db_share);
			tg_json_add_int(o, "n_plus_one", (int64_t)e->n_plus_one);
		}
		cJSON_AddItemToArray(arr, o);
	}
	free(rows);
	tg_stats_release();
	tg_read_end(db);
	return tg_send_json(r, 200, body);
}

/* ---- the requests list ---- */

#define MAX_BINDS 16

struct sql_buf {
	char text[2048];
	size_t len;
	struct bind {
		int is_text;
		int64_t i;
		char s[512];
	} binds[MAX_BINDS];
	int n;
	size_t filt_start, filt_end; /* text[filt_start..filt_end): " AND " + each filter */
};

static void sql_add(struct sql_buf *q, const char *s)
{
	size_t l = strlen(s);
	if (q->len + l < sizeof q->text) {
		memcpy(q->text + q->len, s, l + 1);
		q->len += l;
	}
}

static int bind_i(struct sql_buf *q, int64_t v)
{
	if (q->n == MAX_BINDS)
		return 0;
	q->binds[q->n].is_text = 0;
	q->binds[q->n].i = v;
	return ++q->n;
}

static int bind_s(struct sql_buf *q, const char *s)
{
	if (q->n == MAX_BINDS)
		return 0;
	q->binds[q->n].is_text = 1;
	snprintf(q->binds[q->n].s, sizeof q->binds[q->n].s, "%s", s);
	return ++q->n;
}

/* Writes cond to out (size 256), where the first "?#" becomes ?a and the
 * second ?b (the numbers bind_*() returned). */
static void fmt_cond(char *out, const char *cond, int a, int b)
{
	size_t o = 0;
	int k = 0;
	for (const char *p = cond; *p && o < 256 - 16; p++) {
		if (p[0] == '?' && p[1] == '#') {
			o += (size_t)snprintf(out + o, 256 - o, "?%d", k++ == 0 ? a : b);
			p++;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = 0;
}

/* Appends " AND " + cond, with its "?#" numbered as fmt_cond() does. */
static void sql_cond(struct sql_buf *q, const char *cond, int a, int b)
{
	char buf[256];
	fmt_cond(buf, cond, a, b);
	sql_add(q, " AND ");
	sql_add(q, buf);
}

/*
 * Choosing how the requests list reads the store.
 *
 * Every page is ORDER BY key, id LIMIT n, key the start or the duration.
 * A list sorted or filtered by duration, or filtered by route, method or
 * status class or code, is answered from the run's aggregates in memory
 * (list_from_stats(), loading them first if need be): the store has no
 * index on those columns (schemas 10 and 11; writing them cost the
 * collector some 20-30% of its work per request). Otherwise, and when the
 * aggregates cannot say (a route while requests with a route were pooled
 * as "(other)", newer_than, the memory lists off), there are two ways in:
 * walk the start index, (run_id, start_unix_ns), checking each row
 * against the filters and stopping after n matches (no sort; the cost is
 * n / the share of rows that match, whatever the store's size), or look
 * the rows up on the index of one filter (the start window; status=none,
 * whose index holds only the requests without a status), check the others
 * and sort what matches (the cost is the rows that filter matches); sorted
 * by duration, only the second (the cheapest filter's rows, else the
 * whole run's, sorted).
 * SQLite has no statistics on a store (nothing runs ANALYZE; the collector
 * writes, the dashboard only reads) and then picks an index without
 * knowing how many rows each filter matches, e.g. a wide start window's,
 * most of the run's rows to fetch and sort. So the list
 * counts, up to PROBE_ROWS, the entries each indexed filter matches (each
 * a range of one index, no row read) and decides:
 * - a filter matching fewer than PROBE_ROWS: look up on its index;
 * - otherwise walk the sort index over its first WALK_FIRST_ROWS rows,
 *   where most pages are found; failing that, count each filter further
 *   (PROBE_ROWS_MORE) and walk again with a budget of rows about what the
 *   cheapest filter's lookup would cost; a walk that uses it up (the
 *   filters together are rare although each alone is common) stops and
 *   the page is read again on that filter's index.
 * Either way the rows and their order are the same: only the speed differs.
 */

/* The indexes on requests, in the order of enum list_ix. The duration is
 * a sort key without one (NULL; see above): no condition is planned on it.
 * Route, method and status ranges have none either: they are checked on
 * each row read. */
enum list_ix { IX_START, IX_DURATION, IX_NOSTATUS, IX_N };
static const char *const list_ix_name[IX_N] = {"requests_run_start", NULL, "requests_run_nostatus"};

/* Entries counted by the first probe of each indexed filter. */
#define PROBE_ROWS 4000
/* ... and by the second, which ranks the filters that all match more. */
#define PROBE_ROWS_MORE 50000
/* Rows of the first walk along the start index. */
#define WALK_FIRST_ROWS 20000
/* The fallback of that first walk: rank the filters (list_rank()). */
#define FALLBACK_RANK (-2)
/* SQLite VM steps per row of a walk, about (the budget's unit). */
#define WALK_STEPS_PER_ROW 6
/* A search by path text (q) whose other filters all match many rows reads
 * at most this many rows along the start index, and for at most SCAN_NS,
 * per call; see list_scan(). */
#define SCAN_ROWS 100000
#define SCAN_NS (30 * 1000000LL)
/* ... and this many when the run's aggregates can answer instead. */
#define SCAN_ROWS_FIRST 20000

/* What reading a row costs along each index, relative: rows are stored in
 * about the order they started, so a range of the start index reads
 * neighbouring rows, the other indexes rows spread over the table. */
static const int list_ix_cost[IX_N] = {1, 4, 4};

/* The conditions on each index's columns (empty when that filter is not
 * given), numbered as in q. */
struct list_plan {
	char cond[IX_N][256];
};

static void plan_add(struct list_plan *p, enum list_ix ix, const char *cond)
{
	char *c = p->cond[ix];
	size_t l = strlen(c);
	snprintf(c + l, sizeof p->cond[ix] - l, "%s%s", l ? " AND " : "", cond);
}

static void bind_all(sqlite3_stmt *st, const struct sql_buf *q)
{
	int n = sqlite3_bind_parameter_count(st);
	for (int i = 0; i < q->n && i < n; i++) {
		if (q->binds[i].is_text)
			sqlite3_bind_text(st, i + 1, q->binds[i].s, -1, SQLITE_STATIC);
		else
			sqlite3_bind_int64(st, i + 1, q->binds[i].i);
	}
}

/* Counts up to cap requests of the run matching the conditions on index ix
 * (a range of that index, no table row read); cap on errors. */
static int64_t list_probe(sqlite3 *db, const struct sql_buf *q, const struct list_plan *p, enum list_ix ix,
			  int64_t cap)
{
	char sql[512];
	snprintf(sql, sizeof sql,
		 "SELECT count(*) FROM (SELECT 1 FROM requests INDEXED BY %s WHERE run_id = ?1 AND %s LIMIT %" PRId64 ")",
		 list_ix_name[ix], p->cond[ix], cap);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return cap;
	bind_all(st, q);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : cap;
	sqlite3_finalize(st);
	return n;
}

static void list_rank(sqlite3 *db, const struct sql_buf *q, const struct list_plan *p, enum list_ix sort_ix,
		      int *fallback, int64_t *budget);

/* Whether the store has index ix (a store of an older schema may lack
 * one: requests_run_nostatus came with schema 11). */
static int list_ix_exists(sqlite3 *db, enum list_ix ix)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, list_ix_name[ix], -1, SQLITE_STATIC);
	int yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

/* Picks the index to read the page on (*drive) and, when that is the sort
 * index walked on a budget, the index to fall back on (*fallback, -1 for
 * none) and the budget in rows walked (*budget). */
static void list_choose(sqlite3 *db, const struct sql_buf *q, const struct list_plan *p, enum list_ix sort_ix,
			int *drive, int *fallback, int64_t *budget)
{
	int64_t n[IX_N];
	int best = -1;
	*drive = sort_ix;
	*fallback = -1;
	*budget = 0;
	for (int i = 0; i < IX_N; i++) {
		n[i] = INT64_MAX;
		if (p->cond[i][0])
			n[i] = list_probe(db, q, p, (enum list_ix)i, PROBE_ROWS);
		if (n[i] < PROBE_ROWS && (best < 0 || n[i] < n[best]))
			best = i;
	}
	if (best >= 0) {
		*drive = best; /* walking the sort index within its range is one of these */
		return;
	}
	if (!list_ix_name[sort_ix]) {
		/* No index in the sort key's order: sort what the cheapest
		 * filter matches, else the whole run. */
		list_rank(db, q, p, sort_ix, fallback, budget);
		*drive = *fallback >= 0 ? *fallback : IX_START;
		*fallback = -1;
		*budget = 0;
		return;
	}
	/* Every filter given matches PROBE_ROWS or more: most pages are then
	 * found within the newest (slowest) few thousand rows. Walk those
	 * first and rank the filters only when that is not enough. */
	for (int i = 0; i < IX_N; i++) {
		if (i != (int)sort_ix && p->cond[i][0]) {
			*fallback = FALLBACK_RANK;
			*budget = WALK_FIRST_ROWS / list_ix_cost[sort_ix];
			break;
		}
	}
}

/* After a first walk used its budget: ranks the filters by what looking
 * each up costs and sets the fallback and the budget of the next walk as
 * list_choose() does. */
static void list_rank(sqlite3 *db, const struct sql_buf *q, const struct list_plan *p, enum list_ix sort_ix,
		      int *fallback, int64_t *budget)
{
	int64_t n[IX_N];
	int best = -1;
	*fallback = -1;
	*budget = 0;
	for (int i = 0; i < IX_N; i++) {
		if (!p->cond[i][0])
			continue;
		n[i] = list_probe(db, q, p, (enum list_ix)i, PROBE_ROWS_MORE) * list_ix_cost[i];
		if (best < 0 || n[i] < n[best])
			best = i;
	}
	if (best < 0 || best == (int)sort_ix)
		return; /* walk the sort index (within the range of its filter) */
	*fallback = best;
	*budget = n[best] / list_ix_cost[sort_ix];
}

/* The filters of the list that the run's in-memory aggregates know of. */
struct list_known {
	char route[512], method[512]; /* "" when not given */
	char path[512], q[512];       /* "" when not given (list_from_stats() only) */
	int status_class;             /* 4 or 5 for 4xx or 5xx, else 0 */
	int64_t min_ns;               /* -1 when not given */
};

/* Whether none of the requests pooled as "(other)" can match k: k names a
 * route, and none of them had one (a scanner's 404s by distinct paths). */
static int pooled_cannot_match(const struct tg_run_stats *s, const struct list_known *k)
{
	return k->route[0] && !s->other_routed;
}

/* Whether the run's aggregates show that no request matches route and
 * method together with the status class, or with min_ms (each a part of
 * the filters: when a part matches nothing, the whole does not either).
 * Such combinations are the slowest to look for in the store: every
 * filter matches many rows and each must be read to find none. Only
 * aggregates loaded already are used (brought up to this read's rows, so
 * a row the list would see is counted); 0 when they are not at hand. */
static int list_known_empty(sqlite3 *db, int64_t run_id, const struct list_known *k)
{
	if (!k->route[0] && !k->method[0])
		return 0;
	struct tg_run_stats *s = tg_stats_peek(db, run_id);
	if (!s)
		return 0;
	uint64_t n = 0, n_status = 0, n_dur = 0;
	int known = 1;
	for (size_t i = 0; i < s->n_eps && known; i++) {
		struct tg_endpoint_stats *e = &s->eps[i];
		if (e->is_other && e->count > 0 && !pooled_cannot_match(s, k))
			known = 0; /* endpoints beyond the cap, pooled (with a route among them) */
		if ((k->route[0] && (!e->is_route || strcmp(e->name, k->route) != 0)) ||
		    (k->method[0] && strcmp(e->method, k->method) != 0))
			continue;
		n += e->count;
		n_status += k->status_class == 4 ? e->n4xx : e->n5xx;
		if (k->min_ns >= 0)
			n_dur += tg_durs_count_ge(&e->durs, k->min_ns);
	}
	tg_stats_release();
	return known && (n == 0 || (k->status_class && n_status == 0) || (k->min_ns >= 0 && n_dur == 0));
}

static int walk_progress(void *arg)
{
	int64_t *left = arg;
	return --*left < 0;
}

/* Adds a status filter: "2xx".."5xx", "NNN" or "none". Returns 0, or -1
 * for a bad value. */
static int status_filter(struct sql_buf *q, struct list_plan *p, const char *v, int *lo_out, int *hi_out)
{
	int lo, hi;
	int64_t n;
	*lo_out = *hi_out = -1; /* "none" */
	if (strcmp(v, "none") == 0) {
		sql_add(q, " AND status IS NULL");
		plan_add(p, IX_NOSTATUS, "status IS NULL");
		return 0;
	}
	if (strlen(v) == 3 && v[0] >= '1' && v[0] <= '5' && strcmp(v + 1, "xx") == 0) {
		lo = (v[0] - '0') * 100;
		hi = lo + 99;
	} else if (tg_parse_i64(v, &n) == 0 && n >= 100 && n <= 999) {
		lo = hi = (int)n;
	} else {
		return -1;
	}
	*lo_out = lo;
	*hi_out = hi;
	char c[256];
	fmt_cond(c, "status BETWEEN ?# AND ?#", bind_i(q, lo), bind_i(q, hi));
	sql_add(q, " AND ");
	sql_add(q, c);
	return 0;
}

/* A row of the list, from LIST_COLUMNS. */
#define LIST_COLUMNS                                                                                        \
	"id, start_unix_ns, duration_ns, method, path, query_string, route, status, response_bytes, pid, error," \
	" exception IS NOT NULL, run_id"

static cJSON *list_row(sqlite3_stmt *st)
{
	cJSON *o = cJSON_CreateObject();
	tg_json_add_col(o, "id", st, 0);
	add_time(o, "start", st, 1);
	int64_t dur = sqlite3_column_int64(st, 2);
	tg_json_add_int(o, "duration_ns", dur);
	tg_json_add_num(o, "duration_ms", ns_to_ms(dur));
	tg_json_add_cols(o, st, 3, (const char *const[]){"method", "path", "query_string", "route", "status",
							 "response_bytes", "pid", "error", NULL});
	cJSON_AddBoolToObject(o, "exception", sqlite3_column_int(st, 11));
	tg_json_add_col(o, "run", st, 12);
	return o;
}

/*
 * The path text (q) has no index: no filter can be looked up on it, and a
 * text that matches few rows had every row of the run read in one call
 * when no other indexed filter was given (some 6 s on ten million
 * requests). Such a list, newest or oldest first, is read here instead:
 * along the start index, every row of the run in order (within the
 * window's range), each checked against all the filters by SQLite - the
 * rows the walk of list_choose() would read, in the same order - at most
 * SCAN_ROWS rows and SCAN_NS per call (by duration, the aggregates answer
 * it, or one call sorts the run). A call that stops there before its page is full answers with
 * the matches found, "partial": true and, in "next", the place it
 * stopped: the same cursor as a full page's, so that following "next"
 * gives every matching row once, in order, each call short; the dashboard
 * follows it by itself, showing how far back it has searched. (With
 * status=none too, the rows that filter matches are read on its index in
 * one call: fewer rows in all than this walk.)
 * Returns the last sqlite3_step() code: SQLITE_ROW when there is a next
 * page (o->stopped set when because of the budget), SQLITE_DONE at the
 * end.
 */
struct list_scan_out {
	int64_t count, last_key, last_id; /* the rows added; the cursor of the next page */
	int64_t scanned;                  /* rows read */
	int stopped;                      /* the budget ran out before the page was full */
};

/* Where a scan is, kept by tg_scan_at() as SQLite reads the rows. */
struct scan_pos {
	int64_t budget, t0;  /* rows; CLOCK_MONOTONIC at the start */
	int64_t n;           /* rows seen */
	int64_t key, id;     /* the last row gone through (matched or not) */
	int have, stopped;
};

/* tg_scan_at(pos, key, id): called first for each row of a scan (the
 * filters are checked after it), so that when it is called for a row the
 * one before has been gone through. Records that row's place and returns
 * 1; once the budget is spent, fails instead, leaving the place of the
 * last row gone through. */
static void scan_at(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	struct scan_pos *p = sqlite3_value_pointer(argv[0], "tg_scan_pos");
	if (!p) {
		sqlite3_result_error(ctx, "tg_scan_at: no scan", -1);
		return;
	}
	if (p->n >= p->budget || ((p->n & 1023) == 1023 && tg_monotonic_ns() - p->t0 > SCAN_NS)) {
		p->stopped = 1;
		sqlite3_result_error(ctx, "tg_scan_at: budget spent", -1);
		return;
	}
	p->n++;
	p->key = sqlite3_value_int64(argv[1]);
	p->id = sqlite3_value_int64(argv[2]);
	p->have = 1;
	sqlite3_result_int(ctx, 1);
}

void tg_api_functions(sqlite3 *db)
{
	sqlite3_create_function(db, "tg_scan_at", 3, SQLITE_UTF8 | SQLITE_DIRECTONLY, NULL, scan_at, NULL, NULL);
}

static int list_scan(sqlite3 *db, const struct sql_buf *q, const struct list_plan *plan, enum list_ix sort_ix,
		     const char *cursor, size_t cursor_len, const char *key, int desc, int64_t limit, int64_t budget,
		     cJSON *rows, struct list_scan_out *o)
{
	*o = (struct list_scan_out){0};
	char *sql = malloc(2 * sizeof q->text + 1024);
	if (!sql)
		return SQLITE_NOMEM;
	const char *dir = desc ? "DESC" : "ASC";
	/* The filters inside the CASE: checked only after the row's place
	 * is recorded. ?99 is the scan's place (bound as a pointer). */
	snprintf(sql, 2 * sizeof q->text + 1024,
		 "SELECT " LIST_COLUMNS " FROM requests INDEXED BY %s WHERE run_id = ?1%s%s%.*s"
		 " AND CASE WHEN tg_scan_at(?99, %s, id) THEN (1%.*s) ELSE 0 END ORDER BY %s %s, id %s",
		 list_ix_name[sort_ix], plan->cond[sort_ix][0] ? " AND " : "", plan->cond[sort_ix], (int)cursor_len,
		 cursor, key, (int)(q->filt_end - q->filt_start), q->text + q->filt_start, key, dir, dir);
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK)
		return rc;
	bind_all(st, q);
	struct scan_pos pos = {.budget = (budget ? budget : SCAN_ROWS) / list_ix_cost[sort_ix], .t0 = tg_monotonic_ns()};
	const char *env = getenv("TIMEGLASS_UI_SCAN_ROWS"); /* tests: pages that stop early on a small store */
	if (env && atoll(env) > 0)
		pos.budget = atoll(env);
	sqlite3_bind_pointer(st, 99, &pos, "tg_scan_pos", NULL);
	int key_col = strcmp(key, "start_unix_ns") == 0 ? 1 : 2;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (o->count == limit)
			break; /* one more than the page: there is a next page */
		cJSON_AddItemToArray(rows, list_row(st));
		o->count++;
		o->last_key = sqlite3_column_int64(st, key_col);
		o->last_id = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	o->scanned = pos.n;
	if (pos.stopped) {
		/* Go on after the last row gone through, matched or not (when
		 * the page is full, that is its last row or one after it). */
		if (o->count < limit)
			o->stopped = 1;
		if (pos.have) {
			o->last_key = pos.key;
			o->last_id = pos.id;
		}
		rc = SQLITE_ROW;
	}
	return rc;
}

static int ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : (unsigned char)c;
}

/* TIMEGLASS_UI_LIST_MEMORY=0: never from the aggregates (to compare, and
 * for tests of the store's ways on a small store). */
static int list_memory_on(void)
{
	const char *e = getenv("TIMEGLASS_UI_LIST_MEMORY");
	return !e || strcmp(e, "0") != 0;
}

/* Whether the run's aggregates are loaded with every request's path. */
static int list_memory_has_paths(sqlite3 *db, int64_t run_id)
{
	if (!list_memory_on())
		return 0;
	struct tg_run_stats *s = tg_stats_peek(db, run_id);
	if (!s)
		return 0;
	int ok = !s->paths_full && !s->ids_far;
	tg_stats_release();
	return ok;
}

/* needle in hay, ASCII letters in any case: the list's q, as SQLite's
 * LIKE '%q%' compares. */
static int ascii_icase_contains(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++) {
		size_t i = 0;
		while (i < n && hay[i] && ascii_lower(hay[i]) == ascii_lower(needle[i]))
			i++;
		if (i == n)
			return 1;
	}
	return n == 0;
}

/* A page of the list from the run's aggregates (tg_stats_list()), when
 * they are loaded (or, with load set, once loaded) and hold every filter
 * given (route and method through the endpoints, so not when some requests
 * were pooled under "(other)"; a path only while every request's is kept):
 * a scan of a few arrays in memory, some 8-20 ms at ten million requests,
 * where the store would read every row of the cheapest filter (100-120 ms
 * there for status=5xx&min_ms=500). Only the page's rows are read, by id.
 * Returns 0 with *body, *count, the cursor and *rc (SQLITE_ROW when there
 * is a next page) set, or -1 to read the store instead. */
static int list_from_stats(sqlite3 *db, int64_t run_id, const struct list_known *k, struct tg_stats_filter *f,
			   int64_t limit, int load, cJSON **body, int *count, int64_t *last_key, int64_t *last_id,
			   int *rc)
{
	if (!list_memory_on())
		return -1;
	const char *err;
	struct tg_run_stats *s = load ? tg_stats_acquire(db, run_id, &err) : tg_stats_peek(db, run_id);
	if (!s)
		return -1;
	uint8_t *path_ok = NULL;
	if ((k->path[0] || k->q[0]) && s->paths_full) {
		tg_stats_release(); /* some requests' paths are not kept */
		return -1;
	}
	if (k->path[0] || k->q[0]) {
		path_ok = calloc(s->n_paths ? s->n_paths : 1, 1);
		if (!path_ok) {
			tg_stats_release();
			return -1;
		}
		for (size_t i = 1; i < s->n_paths; i++) /* paths[0]: none, never matches */
			path_ok[i] = (!k->path[0] || strcmp(s->paths[i], k->path) == 0) &&
				     (!k->q[0] || ascii_icase_contains(s->paths[i], k->q));
	}
	f->path_ok = path_ok;
	uint8_t *ok = NULL;
	if (k->route[0] || k->method[0]) {
		ok = calloc(s->n_eps ? s->n_eps : 1, 1);
		for (size_t i = 0; ok && i < s->n_eps; i++) {
			const struct tg_endpoint_stats *e = &s->eps[i];
			if (e->is_other && e->count && pooled_cannot_match(s, k))
				continue; /* pooled, none with a route: none matches (ok[i] 0) */
			if (e->is_other && e->count) {
				free(ok);
				ok = NULL; /* which of them match is not known */
				break;
			}
			ok[i] = !e->is_other && (!k->route[0] || (e->is_route && strcmp(e->name, k->route) == 0)) &&
				(!k->method[0] || strcmp(e->method, k->method) == 0);
		}
		if (!ok) {
			tg_stats_release();
			free(path_ok);
			f->path_ok = NULL;
			return -1;
		}
	}
	f->ep_ok = ok;
	size_t cap = (size_t)limit + 1;
	int64_t *ids = malloc(cap * sizeof *ids), *keys = malloc(cap * sizeof *keys);
	long n = ids && keys ? tg_stats_list(s, f, ids, keys, cap) : -1;
	tg_stats_release();
	free(ok);
	free(path_ok);
	f->ep_ok = NULL;
	f->path_ok = NULL;
	sqlite3_stmt *st = NULL;
	if (n < 0 || sqlite3_prepare_v2(db, "SELECT " LIST_COLUMNS " FROM requests WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
		free(ids);
		free(keys);
		return -1;
	}
	cJSON *b = cJSON_CreateObject();
	tg_json_add_int(b, "run", run_id);
	cJSON *rows = cJSON_AddArrayToObject(b, "rows");
	long shown = n < (long)cap ? n : (long)limit;
	for (long i = 0; i < shown; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, ids[i]);
		if (sqlite3_step(st) != SQLITE_ROW) { /* cannot be: the same snapshot */
			sqlite3_finalize(st);
			cJSON_Delete(b);
			free(ids);
			free(keys);
			return -1;
		}
		cJSON_AddItemToArray(rows, list_row(st));
	}
	sqlite3_finalize(st);
	*body = b;
	*count = (int)shown;
	*last_key = shown ? keys[shown - 1] : 0;
	*last_id = shown ? ids[shown - 1] : 0;
	*rc = n > limit ? SQLITE_ROW : SQLITE_DONE;
	free(ids);
	free(keys);
	return 0;
}

static int request_detail(struct tg_req *r, const char *idtext);

int tg_api_requests(struct tg_req *r)
{
	if (r->rest[0] == '/')
		return request_detail(r, r->rest + 1);
	if (r->rest[0])
		return tg_send_error(r, 404, "not_found", "no such API endpoint");

	struct sql_buf *q = calloc(1, sizeof *q);
	struct list_plan *plan = calloc(1, sizeof *plan);
	cJSON *body;
	int rc, count = 0;
	int64_t last_key = 0, last_id = 0;
	if (!q || !plan) {
		free(q);
		free(plan);
		return tg_send_json(r, 500, NULL);
	}
	char v[512], sort[16] = "start", dir[8] = "desc";
	int status = 0;
	int64_t n, limit = LIST_LIMIT_DEFAULT, newer_than = 0, scanned = 0;
	int has_q = 0, partial = 0;
	if (param_i64(r, "limit", 1, LIST_LIMIT_MAX, &limit) < 0 || param_i64(r, "newer_than", 0, INT64_MAX, &newer_than) < 0) {
		free(q);
		free(plan);
		return 400;
	}
	if (tg_query_param(r, "sort", sort, sizeof sort) == 0)
		strcpy(sort, "start");
	if (tg_query_param(r, "dir", dir, sizeof dir) == 0)
		strcpy(dir, "desc");
	if (strcmp(sort, "start") != 0 && strcmp(sort, "duration") != 0) {
		free(q);
		free(plan);
		return tg_send_error(r, 400, "bad_param", "bad value for sort (start or duration)");
	}
	if (strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0) {
		free(q);
		free(plan);
		return tg_send_error(r, 400, "bad_param", "bad value for dir (asc or desc)");
	}
	const char *key = strcmp(sort, "start") == 0 ? "start_unix_ns" : "duration_ns";
	int desc = strcmp(dir, "desc") == 0;

	int64_t run_id;
	sqlite3 *db = open_run(r, &run_id, &status);
	if (!db) {
		free(q);
		free(plan);
		return status;
	}

	char c[256];
	sql_add(q, " WHERE run_id = ?1");
	bind_i(q, run_id);
	q->filt_start = q->len;
	struct list_known known = {.min_ns = -1};
	/* The same filters for list_from_stats(); mem_ok 0 when one of them
	 * is not kept in the aggregates (status=none; newer_than). */
	struct tg_stats_filter mf = {.min_dur = -1, .from = INT64_MIN, .to = INT64_MAX};
	int mem_ok = 1;
	int has_route = tg_query_param(r, "route", v, sizeof v) > 0;
	if (has_route) {
		snprintf(known.route, sizeof known.route, "%s", v);
		fmt_cond(c, "route = ?#", bind_s(q, v), 0);
		sql_cond(q, c, 0, 0);
	}
	if (tg_query_param(r, "path", v, sizeof v) > 0) {
		snprintf(known.path, sizeof known.path, "%s", v);
		sql_cond(q, "path = ?#", bind_s(q, v), 0);
	}
	if (tg_query_param(r, "method", v, sizeof v) > 0) {
		snprintf(known.method, sizeof known.method, "%s", v);
		fmt_cond(c, "method = ?#", bind_s(q, v), 0);
		sql_cond(q, c, 0, 0);
	}
	if (tg_query_param(r, "status", v, sizeof v) > 0 && (v[0] == '4' || v[0] == '5') && strcmp(v + 1, "xx") == 0)
		known.status_class = v[0] - '0';
	if (tg_query_param(r, "status", v, sizeof v) > 0 &&
	    status_filter(q, plan, v, &mf.status_lo, &mf.status_hi) < 0) {
		status = tg_send_error(r, 400, "bad_param", "bad value for status (2xx, 3xx, 4xx, 5xx, none or a code)");
		goto done;
	}
	if (plan->cond[IX_NOSTATUS][0] && !list_ix_exists(db, IX_NOSTATUS))
		plan->cond[IX_NOSTATUS][0] = '\0'; /* an older store: status=none is checked per row */
	if (tg_query_param(r, "min_ms", v, sizeof v) > 0) {
		char *end;
		double ms = strtod(v, &end);
		if (*end || !(ms >= 0) || ms > 1e9) {
			status = tg_send_error(r, 400, "bad_param", "bad value for min_ms (milliseconds, e.g. 250)");
			goto done;
		}
		known.min_ns = (int64_t)llround(ms * 1e6);
		sql_cond(q, "duration_ns >= ?#", bind_i(q, known.min_ns), 0);
	}
	int len = tg_query_param(r, "q", v, sizeof v / 2 - 2);
	has_q = len > 0;
	if (has_q)
		snprintf(known.q, sizeof known.q, "%.*s", len, v);
	if (len > 0) {
		/* Substring of the path, ASCII case-insensitive; % _ \ taken literally. */
		char pat[sizeof v];
		size_t o = 0;
		pat[o++] = '%';
		for (int i = 0; i < len; i++) {
			if (v[i] == '%' || v[i] == '_' || v[i] == '\\')
				pat[o++] = '\\';
			pat[o++] = v[i];
		}
		pat[o++] = '%';
		pat[o] = 0;
		sql_cond(q, "path LIKE ?# ESCAPE '\\'", bind_s(q, pat), 0);
	} else if (len == -2) {
		status = tg_send_error(r, 400, "bad_param", "the path text (q) is too long");
		goto done;
	}
	int got;
	if ((got = param_i64(r, "from", INT64_MIN, INT64_MAX, &n)) < 0) {
		status = 400;
		goto done;
	} else if (got) {
		mf.from = n;
		fmt_cond(c, "start_unix_ns >= ?#", bind_i(q, n), 0);
		sql_cond(q, c, 0, 0);
		plan_add(plan, IX_START, c);
	}
	if ((got = param_i64(r, "to", INT64_MIN, INT64_MAX, &n)) < 0) {
		status = 400;
		goto done;
	} else if (got) {
		mf.to = n;
		fmt_cond(c, "start_unix_ns < ?#", bind_i(q, n), 0);
		sql_cond(q, c, 0, 0);
		plan_add(plan, IX_START, c);
	}
	q->filt_end = q->len;
	if (newer_than > 0)
		sql_cond(q, "id > ?#", bind_i(q, newer_than), 0);
	if (tg_query_param(r, "after", v, sizeof v) > 0) {
		/* The keyset cursor: "KEY:ID" of the last row shown. */
		char *colon = strchr(v, ':');
		int64_t k, id;
		if (!colon || (*colon = 0, tg_parse_i64(v, &k) < 0) || tg_parse_i64(colon + 1, &id) < 0) {
			status = tg_send_error(r, 400, "bad_param", "bad value for after (a cursor from \"next\")");
			goto done;
		}
		mf.after = 1;
		mf.after_key = k;
		mf.after_id = id;
		int a = bind_i(q, k), b = bind_i(q, id);
		if (strcmp(sort, "start") == 0)
			sql_cond(q, desc ? "(start_unix_ns, id) < (?#, ?#)" : "(start_unix_ns, id) > (?#, ?#)", a, b);
		else
			sql_cond(q, desc ? "(duration_ns, id) < (?#, ?#)" : "(duration_ns, id) > (?#, ?#)", a, b);
	}
	size_t cursor_start = q->filt_end, cursor_end = q->len; /* the "after" condition */
	char tail[160];
	snprintf(tail, sizeof tail, " ORDER BY %s %s, id %s LIMIT %" PRId64, key, desc ? "DESC" : "ASC",
		 desc ? "DESC" : "ASC", limit + 1);
	sql_add(q, tail);

	int drive = -1, fallback = -1;
	int64_t budget = 0;
	if (list_known_empty(db, run_id, &known)) {
		body = cJSON_CreateObject();
		tg_json_add_int(body, "run", run_id);
		cJSON_AddArrayToObject(body, "rows");
		rc = SQLITE_DONE;
		goto page_done;
	}
	enum list_ix sort_ix = strcmp(sort, "start") == 0 ? IX_START : IX_DURATION;
	mf.min_dur = known.min_ns;
	mf.by_duration = sort_ix == IX_DURATION;
	mf.desc = desc;
	if (newer_than > 0)
		mem_ok = 0;
	if (mf.status_lo == -1) { /* status=none */
		mf.status_none = 1;
		mf.status_lo = mf.status_hi = 0;
	}
	/* By duration, route, method or status: the store has no index for
	 * them (only for status=none, rare). */
	if (mem_ok &&
	    (sort_ix == IX_DURATION || known.min_ns >= 0 || known.route[0] || known.method[0] || mf.status_hi > 0) &&
	    list_from_stats(db, run_id, &known, &mf, limit, 1, &body, &count, &last_key, &last_id, &rc) == 0)
		goto page_done;
	if (newer_than == 0) /* else the few rows after the id: SQLite's choice */
		list_choose(db, q, plan, sort_ix, &drive, &fallback, &budget);
	int other_ix = 0; /* an indexed filter other than the sort key's range */
	for (int i = 0; i < IX_N; i++)
		other_ix |= i != (int)sort_ix && plan->cond[i][0];
	if (has_q && newer_than == 0 && drive == (int)sort_ix && !other_ix) {
		struct list_scan_out so;
		body = cJSON_CreateObject();
		tg_json_add_int(body, "run", run_id);
		cJSON *rows = cJSON_AddArrayToObject(body, "rows");
		/* With the run's paths in memory, a short walk first: the
		 * aggregates answer a text that is rare in some 10-25 ms at
		 * ten million requests. */
		int mem = mem_ok && list_memory_has_paths(db, run_id);
		rc = list_scan(db, q, plan, sort_ix, q->text + cursor_start, cursor_end - cursor_start, key, desc, limit,
			       mem ? SCAN_ROWS_FIRST : 0, rows, &so);
		if (mem && so.stopped) {
			cJSON *b = NULL;
			if (list_from_stats(db, run_id, &known, &mf, limit, 0, &b, &count, &last_key, &last_id, &rc) == 0) {
				cJSON_Delete(body);
				body = b;
				goto page_done;
			}
			cJSON_Delete(body);
			body = cJSON_CreateObject();
			tg_json_add_int(body, "run", run_id);
			rows = cJSON_AddArrayToObject(body, "rows");
			rc = list_scan(db, q, plan, sort_ix, q->text + cursor_start, cursor_end - cursor_start, key, desc,
				       limit, 0, rows, &so);
		}
		count = (int)so.count;
		last_key = so.last_key;
		last_id = so.last_id;
		partial = so.stopped;
		scanned = so.scanned;
		goto page_done;
	}
again:
	{
		char *sql = malloc(sizeof q->text + 512);
		if (!sql) {
			status = tg_send_json(r, 500, NULL);
			goto done;
		}
		snprintf(sql, sizeof q->text + 512, "SELECT " LIST_COLUMNS " FROM requests%s%s%s", drive >= 0 ? " INDEXED BY " : "",
			 drive >= 0 ? list_ix_name[drive] : "", q->text);
		sqlite3_stmt *st;
		rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
		free(sql);
		if (rc != SQLITE_OK) {
			status = tg_send_error(r, 500, "store_error", "reading the store failed: %s", sqlite3_errmsg(db));
			goto done;
		}
		bind_all(st, q);
		int64_t left = fallback != -1 ? budget * WALK_STEPS_PER_ROW / 1000 + 1 : 0;
		if (fallback != -1)
			sqlite3_progress_handler(db, 1000, walk_progress, &left);
		body = cJSON_CreateObject();
		tg_json_add_int(body, "run", run_id);
		cJSON *rows = cJSON_AddArrayToObject(body, "rows");
		count = 0;
		last_key = last_id = 0;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (count == limit)
				break; /* one more than the page: there is a next page */
			cJSON_AddItemToArray(rows, list_row(st));
			last_key = sqlite3_column_int64(st, strcmp(sort, "start") == 0 ? 1 : 2);
			last_id = sqlite3_column_int64(st, 0);
			count++;
		}
		if (fallback != -1)
			sqlite3_progress_handler(db, 0, NULL, NULL);
		sqlite3_finalize(st);
		if (rc == SQLITE_INTERRUPT && fallback == FALLBACK_RANK) {
			/* The first walk was not enough: the filters, each
			 * common, are rare together. The run's aggregates
			 * answer that without reading the rows; failing that,
			 * rank the filters. */
			cJSON_Delete(body);
			body = NULL;
			if (mem_ok &&
			    list_from_stats(db, run_id, &known, &mf, limit, 0, &body, &count, &last_key, &last_id, &rc) == 0)
				goto page_done;
			list_rank(db, q, plan, sort_ix, &fallback, &budget);
			goto again;
		}
		if (rc == SQLITE_INTERRUPT && fallback >= 0) {
			/* The walk used its budget: the matches are rarer than the
			 * filters' counts said; read the page on the cheapest one. */
			cJSON_Delete(body);
			drive = fallback;
			fallback = -1;
			goto again;
		}
	}
page_done:;
	int more = rc == SQLITE_ROW;

	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		cJSON_Delete(body);
		status = tg_send_error(r, 500, "store_error", "reading the store failed: %s", sqlite3_errmsg(db));
		goto done;
	}
	if (more) {
		snprintf(v, sizeof v, "%" PRId64 ":%" PRId64, last_key, last_id);
		cJSON_AddStringToObject(body, "next", v);
	} else {
		cJSON_AddNullToObject(body, "next");
	}
	/* A search that stopped before its page was full (list_scan()):
	 * how far it read, for "searched back to ..." while it goes on. */
	cJSON_AddBoolToObject(body, "partial", partial);
	if (partial) {
		tg_json_add_int(body, "scanned_rows", scanned);
		tg_json_add_num(body, "scanned_to_ms", (double)last_key / 1e6);
	}
	status = tg_send_json(r, 200, body);
done:
	tg_read_end(db);
	free(q);
	free(plan);
	return status;
}

/* Splits "Name: value\n" lines into [[name, value], ...]. */
static cJSON *headers_list(const char *h, size_t len)
{
	cJSON *arr = cJSON_CreateArray();
	size_t i = 0;
	while (i < len) {
		size_t e = i;
		while (e < len && h[e] != '\n')
			e++;
		size_t end = e;
		if (end > i && h[end - 1] == '\r')
			end--;
		if (end > i) {
			size_t c = i;
			while (c < end && h[c] != ':')
				c++;
			size_t vs = c < end ? c + 1 : end;
			while (vs < end && (h[vs] == ' ' || h[vs] == '\t'))
				vs++;
			cJSON *pair = cJSON_CreateArray();
			cJSON *tmp = cJSON_CreateObject();
			tg_json_add_bytes(tmp, "n", h + i, c - i);
			tg_json_add_bytes(tmp, "v", h + vs, end - vs);
			cJSON_AddItemToArray(pair, cJSON_DetachItemFromObject(tmp, "n"));
			cJSON_AddItemToArray(pair, cJSON_DetachItemFromObject(tmp, "v"));
			cJSON_Delete(tmp);
			cJSON_AddItemToArray(arr, pair);
		}
		i = e + 1;
	}
	return arr;
}

static int request_detail(struct tg_req *r, const char *idtext)
{
	int64_t id;
	char idbuf[32];
	const char *slash = strchr(idtext, '/');
	size_t idlen = slash ? (size_t)(slash - idtext) : strlen(idtext);
	if (idlen == 0 || idlen >= sizeof idbuf)
		return tg_send_error(r, 404, "not_found", "no such request");
	memcpy(idbuf, idtext, idlen);
	idbuf[idlen] = 0;
	if (tg_parse_i64(idbuf, &id) < 0 || id < 1)
		return tg_send_error(r, 404, "not_found", "no such request");
	if (slash && strcmp(slash, "/queries") == 0)
		return tg_api_request_queries(r, id);
	if (slash && strcmp(slash, "/spans") == 0)
		return tg_api_request_spans(r, id);
	if (slash)
		return tg_send_error(r, 404, "not_found", "no such API endpoint");
	int status;
	sqlite3 *db = tg_read_open(r, &status);
	if (!db)
		return status;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT r.*, p.exe AS process_exe, p.cmdline AS process_cmdline FROM requests r"
			       " LEFT JOIN processes p ON p.id = r.process_id WHERE r.id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return tg_store_error(r, db);
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return tg_store_error(r, db);
		tg_read_end(db);
		return tg_send_error(r, 404, "not_found", "there is no request %" PRId64 " in this store", id);
	}
	cJSON *body = cJSON_CreateObject();
	cJSON *req = cJSON_AddObjectToObject(body, "request");
	int64_t start = 0, dur = 0, req_end = -1, resp_start = -1, flags = 0;
	const char *headers = NULL;
	size_t headers_len = 0;
	/* Every column, so that columns added by later schemas show up too. */
	for (int c = 0; c < sqlite3_column_count(st); c++) {
		const char *name = sqlite3_column_name(st, c);
		size_t nl = strlen(name);
		int isnull = sqlite3_column_type(st, c) == SQLITE_NULL;
		if (nl > 8 && strcmp(name + nl - 8, "_unix_ns") == 0 && !isnull)
			tg_json_add_ns(req, name, sqlite3_column_int64(st, c));
		else
			tg_json_add_col(req, name, st, c);
		int64_t v = sqlite3_column_int64(st, c);
		if (strcmp(name, "start_unix_ns") == 0)
			start = v;
		else if (strcmp(name, "duration_ns") == 0)
			dur = v;
		else if (strcmp(name, "req_end_ns") == 0 && !isnull)
			req_end = v;
		else if (strcmp(name, "resp_start_ns") == 0 && !isnull)
			resp_start = v;
		else if (strcmp(name, "flags") == 0)
			flags = v;
		else if (strcmp(name, "headers") == 0 && !isnull) {
			headers = (const char *)sqlite3_column_text(st, c);
			headers_len = (size_t)sqlite3_column_bytes(st, c);
		}
	}
	tg_json_add_num(req, "start_ms", (double)start / 1e6);
	tg_json_add_num(req, "duration_ms", ns_to_ms(dur));
	cJSON_AddItemToObject(body, "headers", headers ? headers_list(headers, headers_len) : cJSON_CreateArray());
	cJSON *fl = cJSON_AddArrayToObject(body, "flags");
	for (unsigned b = 0; b < TG_REQ_FLAG_BITS; b++)
		if (flags & (1 << b))
			cJSON_AddItemToArray(fl, cJSON_CreateString(tg_req_flag_name(b)));

	/* The waterfall: request on the wire, the app's work, response on the wire. */
	cJSON *timing = cJSON_AddObjectToObject(body, "timing");
	tg_json_add_int(timing, "total_ns", dur);
	if (req_end >= 0 && resp_start >= req_end && resp_start <= dur) {
		cJSON_AddBoolToObject(timing, "available", 1);
		tg_json_add_int(timing, "wire_in_ns", req_end);
		tg_json_add_int(timing, "app_ns", resp_start - req_end);
		tg_json_add_int(timing, "wire_out_ns", dur - resp_start);
	} else {
		cJSON_AddBoolToObject(timing, "available", 0);
	}
	sqlite3_finalize(st);
	/* What else was captured for the request: the page fetches the lists
	 * (/queries, /spans, /api/flame) only when there is something. A query
	 * set holds its count and summed duration (sets_sql): its queries need
	 * not be read; a store before schema 12 has no sets. */
	static const struct { const char *key, *table, *sql, *sets_sql; } parts[] = {
		{ "queries", "queries", "SELECT count(*), coalesce(sum(duration_ns), 0) FROM queries WHERE request_id = ?",
		  "SELECT coalesce(sum(n), 0), coalesce(sum(duration_ns), 0) FROM query_sets WHERE request_id = ?" },
		{ "spans", "spans", "SELECT count(*), coalesce(sum(duration_ns), 0) FROM spans WHERE request_id = ?", NULL },
		{ "samples", "samples", "SELECT coalesce(sum(count), 0), 0 FROM samples WHERE request_id = ?", NULL },
	};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		cJSON *o = cJSON_AddObjectToObject(body, parts[i].key);
		int avail = tg_has_table(db, parts[i].table);
		cJSON_AddBoolToObject(o, "available", avail);
		if (!avail)
			continue;
		const char *sql = parts[i].sets_sql && tg_has_table(db, "query_sets") ? parts[i].sets_sql : parts[i].sql;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
			continue;
		sqlite3_bind_int64(st, 1, id);
		if (sqlite3_step(st) == SQLITE_ROW) {
			tg_json_add_int(o, "count", sqlite3_column_int64(st, 0));
			if (i < 2)
				tg_json_add_dur(o, "total", sqlite3_column_int64(st, 1));
		}
		sqlite3_finalize(st);
	}
	tg_read_end(db);
	return tg_send_json(r, 200, body);
}
