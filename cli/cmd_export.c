/*
 * cmd_export.c - `timeglass export`: a run (or one request) in a format
 * other tools open.
 *
 *   chrome-trace  Trace Event Format (JSON), for chrome://tracing and
 *                 https://ui.perfetto.dev: one track per process and thread,
 *                 each request a slice with its SQL queries and outbound calls
 *                 as slices of the threads that ran them.
 *   speedscope    the run's (or request's) sampled Python stacks, through
 *                 `timeglass flame --format speedscope`.
 *   otlp-json     OpenTelemetry traces (lib/otlp.c): one ExportTraceServiceRequest
 *                 in OTLP/JSON, for an OpenTelemetry Collector or any OTLP/HTTP
 *                 receiver (POST it to /v1/traces).
 *
 * Times in a Chrome trace are microseconds from the start of the run, so the
 * file stays readable by tools that parse them as doubles.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/otlp.h"
#include "lib/readers.h"
#include "lib/store.h"
#include "lib/util.h"

void cmd_export_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass export [--db PATH] [--run ID] [--request ID] [--format FORMAT] [-o FILE]\n"
		   "                        [--service-name NAME]\n"
		   "\n"
		   "Writes a run (default: the latest) or one request in another tool's format.\n"
		   "\n"
		   "Formats:\n"
		   "  chrome-trace  requests, SQL queries and outbound calls as slices per process\n"
		   "                and thread (chrome://tracing, ui.perfetto.dev) (default)\n"
		   "  speedscope    sampled Python stacks (speedscope.app); same as\n"
		   "                timeglass flame --format speedscope\n"
		   "  otlp-json     OpenTelemetry traces, one ExportTraceServiceRequest in OTLP/JSON\n"
		   "                (POST it to an OTLP/HTTP receiver's /v1/traces): each request a\n"
		   "                SERVER span, its SQL queries and outbound calls CLIENT spans;\n"
		   "                a request that came with a W3C traceparent joins that trace\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH      store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID       run to export (default: the latest)\n"
		   "  --request ID   only this request and what it ran\n"
		   "  -o, --output FILE  write to FILE instead of standard output\n"
		   "  --service-name NAME  otlp-json: the service.name of the spans (default:\n"
		   "                 the app's module, e.g. main for `uvicorn main:app`)\n");
}

struct export_opts {
	const char *db, *format, *output, *service;
	int64_t run, request;
};


static const char *col_str(sqlite3_stmt *st, int i, size_t *n)
{
	*n = (size_t)sqlite3_column_bytes(st, i);
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(st, i);
}

/* Column i as an integer, or null. */
static void jw_col_int(struct jw *w, sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		jw_null(w);
	else
		jw_i64(w, sqlite3_column_int64(st, i));
}

/* Microseconds from t0 with three decimals, as the format's "ts"/"dur". */
static void jw_us(struct jw *w, int64_t ns)
{
	char buf[48];
	int neg = ns < 0;
	uint64_t a = neg ? (uint64_t)-ns : (uint64_t)ns;
	snprintf(buf, sizeof buf, "%s%" PRIu64 ".%03" PRIu64, neg ? "-" : "", a / 1000, a % 1000);
	jw_raw(w, buf);
}

static void slice_head(struct jw *w, const char *cat, const char *name, size_t name_len, int64_t pid, int64_t tid,
		       int64_t ts_ns, int64_t dur_ns)
{
	jw_obj_open(w);
	jw_key(w, "name");
	jw_str(w, name, name_len);
	jw_key(w, "cat");
	jw_cstr(w, cat);
	jw_key(w, "ph");
	jw_cstr(w, "X");
	jw_key(w, "pid");
	jw_i64(w, pid);
	jw_key(w, "tid");
	jw_i64(w, tid);
	jw_key(w, "ts");
	jw_us(w, ts_ns);
	jw_key(w, "dur");
	jw_us(w, dur_ns < 0 ? 0 : dur_ns);
	jw_key(w, "args");
	jw_obj_open(w);
}

static void slice_end(struct jw *w)
{
	jw_obj_close(w);
	jw_obj_close(w);
}

static void export_processes(struct jw *w, struct tg_store *s, int64_t run)
{
	sqlite3_stmt *st = tg_store_prepare_or_die(s, "SELECT pid, cmdline FROM processes WHERE run_id = ? GROUP BY pid ORDER BY min(id)");
	sqlite3_bind_int64(st, 1, run);
	while (sqlite3_step(st) == SQLITE_ROW) {
		size_t n;
		const char *cmd = col_str(st, 1, &n);
		jw_obj_open(w);
		jw_key(w, "name");
		jw_cstr(w, "process_name");
		jw_key(w, "ph");
		jw_cstr(w, "M");
		jw_key(w, "pid");
		jw_i64(w, sqlite3_column_int64(st, 0));
		jw_key(w, "args");
		jw_obj_open(w);
		jw_key(w, "name");
		jw_str(w, cmd ? cmd : "?", cmd ? (n > 120 ? 120 : n) : 1);
		jw_obj_close(w);
		jw_obj_close(w);
	}
	sqlite3_finalize(st);
}

static void export_requests(struct jw *w, struct tg_store *s, int64_t run, int64_t request, int64_t t0)
{
	sqlite3_stmt *st = tg_store_prepare_or_die(
		s, "SELECT id, pid, tid, start_unix_ns, duration_ns, method, coalesce(route, path), path, query_string,"
		   " status, error, request_bytes, response_bytes, client_addr, transport"
		   " FROM requests WHERE run_id = ?1 AND (?2 = 0 OR id = ?2) ORDER BY start_unix_ns");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, request);
	while (sqlite3_step(st) == SQLITE_ROW) {
		size_t ml, rl, pl, ql, el, cl, tl;
		const char *method = col_str(st, 5, &ml), *route = col_str(st, 6, &rl), *path = col_str(st, 7, &pl);
		const char *query = col_str(st, 8, &ql), *error = col_str(st, 10, &el), *client = col_str(st, 13, &cl);
		const char *transport = col_str(st, 14, &tl);
		char name[512];
		int k = snprintf(name, sizeof name, "%.*s %.*s", (int)(method ? ml : 1), method ? method : "-",
				 (int)(route ? (rl > 400 ? 400 : rl) : 1), route ? route : "-");
		slice_head(w, "request", name, (size_t)(k < 0 ? 0 : k >= (int)sizeof name ? sizeof name - 1 : (size_t)k),
			   sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3) - t0,
			   sqlite3_column_int64(st, 4));
		jw_key(w, "request_id");
		jw_i64(w, sqlite3_column_int64(st, 0));
		jw_key(w, "path");
		jw_str(w, path, pl);
		jw_key(w, "query_string");
		jw_str(w, query, ql);
		jw_key(w, "status");
		jw_col_int(w, st, 9);
		jw_key(w, "error");
		jw_str(w, error, el);
		jw_key(w, "request_bytes");
		jw_i64(w, sqlite3_column_int64(st, 11));
		jw_key(w, "response_bytes");
		jw_i64(w, sqlite3_column_int64(st, 12));
		jw_key(w, "client_addr");
		jw_str(w, client, cl);
		jw_key(w, "transport");
		jw_str(w, transport, tl);
		slice_end(w);
	}
	sqlite3_finalize(st);
}

static void export_queries(struct jw *w, struct tg_store *s, int64_t run, int64_t request, int64_t t0)
{
	sqlite3_stmt *st = tg_store_prepare_or_die(
		s, request
		? "SELECT pid, tid, start_unix_ns, duration_ns, sql, db_system, database, rows, error, call_site,"
		  " request_id, n_plus_one, duplicate FROM queries"
		  " WHERE request_id = ?2 AND run_id = ?1 ORDER BY start_unix_ns"
		/* the run's queries: those of its requests, then those outside
		 * any request (the only ones indexed by run) */
		: "SELECT pid, tid, start_unix_ns, duration_ns, sql, db_system, database, rows, error, call_site,"
		  " request_id, n_plus_one, duplicate FROM queries"
		  " WHERE request_id IN (SELECT id FROM requests WHERE run_id = ?1)"
		  " UNION ALL SELECT pid, tid, start_unix_ns, duration_ns, sql, db_system, database, rows, error,"
		  " call_site, request_id, n_plus_one, duplicate FROM queries"
		  " WHERE run_id = ?1 AND request_id IS NULL ORDER BY start_unix_ns");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, request);
	while (sqlite3_step(st) == SQLITE_ROW) {
		size_t ql, dl, bl, el, cl;
		const char *sql = col_str(st, 4, &ql), *db = col_str(st, 5, &dl), *dbname = col_str(st, 6, &bl);
		const char *error = col_str(st, 8, &el), *site = col_str(st, 9, &cl);
		slice_head(w, "sql", sql ? sql : "(sql)", sql ? (ql > 80 ? 80 : ql) : 5, sqlite3_column_int64(st, 0),
			   sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2) - t0, sqlite3_column_int64(st, 3));
		jw_key(w, "sql");
		jw_str(w, sql, ql);
		jw_key(w, "db_system");
		jw_str(w, db, dl);
		jw_key(w, "database");
		jw_str(w, dbname, bl);
		jw_key(w, "rows");
		jw_col_int(w, st, 7);
		jw_key(w, "error");
		jw_str(w, error, el);
		jw_key(w, "call_site");
		jw_str(w, site, cl);
		jw_key(w, "request_id");
		jw_col_int(w, st, 10);
		jw_key(w, "n_plus_one");
		jw_bool(w, sqlite3_column_int(st, 11));
		jw_key(w, "duplicate");
		jw_bool(w, sqlite3_column_int(st, 12));
		slice_end(w);
	}
	sqlite3_finalize(st);
}

static void export_spans(struct jw *w, struct tg_store *s, int64_t run, int64_t request, int64_t t0)
{
	sqlite3_stmt *st = tg_store_prepare_or_die(
		s, "SELECT pid, tid, start_unix_ns, duration_ns, method, host, path, status, error, request_id, kind"
		   " FROM spans WHERE run_id = ?1 AND (?2 = 0 OR request_id = ?2) ORDER BY start_unix_ns");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, request);
	while (sqlite3_step(st) == SQLITE_ROW) {
		size_t ml, hl, pl, el, kl;
		const char *method = col_str(st, 4, &ml), *host = col_str(st, 5, &hl), *path = col_str(st, 6, &pl);
		const char *error = col_str(st, 8, &el), *kind = col_str(st, 10, &kl);
		char name[512];
		int k = snprintf(name, sizeof name, "%.*s %.*s%.*s", (int)(method ? ml : 0), method ? method : "",
				 (int)(host ? (hl > 200 ? 200 : hl) : 0), host ? host : "",
				 (int)(path ? (pl > 250 ? 250 : pl) : 0), path ? path : "");
		slice_head(w, kind ? kind : "span", name,
			   (size_t)(k < 0 ? 0 : k >= (int)sizeof name ? sizeof name - 1 : (size_t)k),
			   sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2) - t0,
			   sqlite3_column_int64(st, 3));
		jw_key(w, "status");
		jw_col_int(w, st, 7);
		jw_key(w, "error");
		jw_str(w, error, el);
		jw_key(w, "request_id");
		jw_col_int(w, st, 9);
		slice_end(w);
	}
	sqlite3_finalize(st);
}

static int export_chrome(struct tg_store *s, int64_t run, int64_t request, FILE *out)
{
	sqlite3_stmt *st = tg_store_prepare_or_die(s, "SELECT started_unix_ns, command FROM runs WHERE id = ?");
	sqlite3_bind_int64(st, 1, run);
	if (sqlite3_step(st) != SQLITE_ROW)
		tg_die("no run %" PRId64 " in %s; see: timeglass runs", run, tg_store_path(s));
	int64_t t0 = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (request) {
		st = tg_store_prepare_or_die(s, "SELECT 1 FROM requests WHERE id = ? AND run_id = ?");
		sqlite3_bind_int64(st, 1, request);
		sqlite3_bind_int64(st, 2, run);
		int found = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (!found)
			tg_die("no request %" PRId64 " in run %" PRId64, request, run);
	}

	struct jw w;
	jw_init(&w, out);
	jw_obj_open(&w);
	jw_key(&w, "displayTimeUnit");
	jw_cstr(&w, "ms");
	jw_key(&w, "otherData");
	jw_obj_open(&w);
	jw_key(&w, "producer");
	jw_cstr(&w, "timeglass");
	jw_key(&w, "run_id");
	jw_i64(&w, run);
	jw_key(&w, "run_started_unix_ns");
	jw_i64(&w, t0);
	jw_obj_close(&w);
	jw_key(&w, "traceEvents");
	jw_arr_open(&w);
	export_processes(&w, s, run);
	export_requests(&w, s, run, request, t0);
	if (tg_has_table(tg_store_db(s), "queries"))
		export_queries(&w, s, run, request, t0);
	if (tg_has_table(tg_store_db(s), "spans"))
		export_spans(&w, s, run, request, t0);
	jw_arr_close(&w);
	jw_obj_close(&w);
	jw_newline(&w);
	return ferror(out) ? -1 : 0;
}

/* One ExportTraceServiceRequest of the run, or of the request only. */
static int export_otlp(struct tg_store *s, const struct export_opts *o, int64_t run, FILE *out)
{
	struct tg_otlp_opts oo = {.service_name = o->service};
	struct jw w;
	int64_t last;
	long spans;
	char err[TG_ERR_MAX];
	jw_init(&w, out);
	if (tg_otlp_write(tg_store_db(s), &oo, run, o->request, 0, 0, &w, &last, &spans, err, sizeof err) < 0)
		tg_die("%s: %s", tg_store_path(s), err);
	jw_newline(&w);
	return ferror(out) ? -1 : 0;
}

int cmd_export(int argc, char **argv)
{
	enum { OPT_FORMAT = CLI_OWN, OPT_SERVICE };
	static const struct option longopts[] = {
		CLI_OPT_DB, CLI_OPT_RUN, CLI_OPT_REQUEST,
		{"format", required_argument, NULL, OPT_FORMAT},
		{"output", required_argument, NULL, 'o'},
		{"service-name", required_argument, NULL, OPT_SERVICE},
		CLI_OPT_HELP_END,
	};
	struct export_opts o = {.format = "chrome-trace"};
	struct cli_args a = {"export", cmd_export_usage, ":o:h", longopts, argc, argv,
			     .db = &o.db, .run = &o.run, .request = &o.request};
	int c;
	while ((c = cli_next(&a)) != -1) {
		switch (c) {
		case OPT_FORMAT: o.format = optarg; break;
		case 'o': o.output = optarg; break;
		case OPT_SERVICE: o.service = optarg; break;
		}
	}
	cli_no_operands(&a);

	if (!strcmp(o.format, "speedscope")) {
		/* The flame command owns stacks; hand the same options over. */
		char run_buf[32], req_buf[32];
		char *args[16];
		int n = 0;
		args[n++] = "flame";
		if (o.db) {
			args[n++] = "--db";
			args[n++] = (char *)o.db;
		}
		if (o.run) {
			snprintf(run_buf, sizeof run_buf, "%" PRId64, o.run);
			args[n++] = "--run";
			args[n++] = run_buf;
		}
		if (o.request) {
			snprintf(req_buf, sizeof req_buf, "%" PRId64, o.request);
			args[n++] = "--request";
			args[n++] = req_buf;
		} else {
			args[n++] = "--all";
		}
		args[n++] = "--format";
		args[n++] = "speedscope";
		args[n] = NULL;
		if (o.output && !freopen(o.output, "w", stdout))
			tg_die("cannot write %s: %s", o.output, strerror(errno));
		return cmd_flame(n, args);
	}
	int otlp = !strcmp(o.format, "otlp-json");
	if (strcmp(o.format, "chrome-trace") && !otlp)
		tg_die_usage("export", "unknown format '%.64s' (chrome-trace, speedscope or otlp-json)", o.format);

	struct tg_store *s = tg_store_open(tg_default_db(o.db), TG_STORE_READ);
	if (!s)
		tg_die("%s", tg_error());
	int64_t run = o.run;
	if (!run) {
		run = tg_store_latest_run(s);
		if (!run)
			tg_die("no runs in %s yet; record one with: timeglass run -- CMD", tg_store_path(s));
	}
	FILE *out = stdout;
	if (o.output && !(out = fopen(o.output, "w")))
		tg_die("cannot write %s: %s", o.output, strerror(errno));
	int rc = otlp ? export_otlp(s, &o, run, out) : export_chrome(s, run, o.request, out);
	if (out != stdout && fclose(out) != 0)
		rc = -1;
	tg_store_close(s);
	if (rc < 0)
		tg_die("cannot write %s", o.output ? o.output : "standard output");
	return 0;
}
