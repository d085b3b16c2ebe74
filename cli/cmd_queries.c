/*
 * cmd_queries.c - `timeglass queries` and `timeglass spans`: the SQL queries
 * and outbound HTTP calls of a run, or of one request, as a table for
 * people or as JSON lines for scripts.
 *
 * Both open the store read-only (they work while a run is recording).
 * Text that came from the app (SQL, hosts, paths) is escaped in JSON and
 * has control characters replaced in tables.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/store.h"
#include "lib/util.h"

void cmd_queries_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass queries [OPTIONS]\n"
		   "\n"
		   "Prints the SQL queries recorded in a run (or one request), oldest first.\n"
		   "Flags: N+1 (one query shape run again and again from one call site), dup\n"
		   "(the same text and values ran before in the request), xN (a batch, such as\n"
		   "executemany, of N executions), hk (housekeeping the driver or a library ran\n"
		   "by itself: transaction control, SET, pool resets, probes; never N+1 or dup).\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH      store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID       run to show (default: the latest)\n"
		   "  --request ID   only the queries of request ID (see: timeglass requests)\n"
		   "  --json         one JSON object per line instead of a table\n"
		   "  --limit N      only the N most recent queries\n"
		   "  -h, --help     show this help\n");
}

void cmd_spans_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass spans [OPTIONS]\n"
		   "\n"
		   "Prints the outbound HTTP calls recorded in a run (or one request), oldest first.\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH      store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID       run to show (default: the latest)\n"
		   "  --request ID   only the calls made by request ID\n"
		   "  --json         one JSON object per line instead of a table\n"
		   "  --limit N      only the N most recent calls\n"
		   "  -h, --help     show this help\n");
}

struct opts {
	const char *db;
	int64_t run, request;
	int json;
	int64_t limit;
};

static void parse(const char *cmd, void (*usage)(FILE *), int argc, char **argv, struct opts *o)
{
	enum { OPT_LIMIT = CLI_OWN };
	static const struct option longopts[] = {
		CLI_OPT_DB, CLI_OPT_RUN, CLI_OPT_REQUEST, CLI_OPT_JSON,
		{"limit", required_argument, NULL, OPT_LIMIT},
		CLI_OPT_HELP_END,
	};
	struct cli_args a = {cmd, usage, ":h", longopts, argc, argv,
			     .db = &o->db, .run = &o->run, .request = &o->request, .json = &o->json};
	int c;
	while ((c = cli_next(&a)) != -1)
		if (c == OPT_LIMIT)
			o->limit = (int64_t)tg_number_or_die("--limit", optarg, 1, INT64_MAX);
	cli_no_operands(&a);
	o->db = tg_default_db(o->db);
}


/* The run to show: --run, else that of --request, else the latest. */
static int64_t pick_run(struct tg_store *s, const struct opts *o)
{
	if (o->run)
		return o->run;
	int64_t id = 0;
	if (o->request) {
		sqlite3_stmt *st = tg_store_prepare_or_die(s, "SELECT run_id FROM requests WHERE id = ?");
		sqlite3_bind_int64(st, 1, o->request);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
			id = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	} else {
		id = tg_store_latest_run(s);
	}
	if (!id && o->request)
		tg_die("no request %" PRId64 " in %s", o->request, tg_store_path(s));
	if (!id)
		tg_die("no runs in %s yet; record one with: timeglass run -- CMD", tg_store_path(s));
	return id;
}

/* Column i as JSON under key: integer, text or null, as stored. */
static void json_col(struct jw *w, const char *key, sqlite3_stmt *st, int i)
{
	jw_key(w, key);
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL: jw_null(w); break;
	case SQLITE_INTEGER: jw_i64(w, sqlite3_column_int64(st, i)); break;
	default:
		jw_str(w, (const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
	}
}

/* Prints text without control characters, cut at width columns. */
static void cell(sqlite3_stmt *st, int i, int width)
{
	const unsigned char *p = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);
	if (!p) {
		p = (const unsigned char *)"-";
		n = 1;
	}
	for (int k = 0; k < n && k < width; k++)
		putchar(p[k] < 0x20 || p[k] == 0x7f ? ' ' : p[k]);
}

/* Prints the rows of `table` for the options in argv; header is the table
 * view's first line (not printed with --json, nor before an error). */
static int list(int argc, char **argv, const char *cmd, void (*usage)(FILE *), const char *table,
		const char *const *cols, size_t ncols, void (*row)(sqlite3_stmt *), const char *header)
{
	struct opts o = {0};
	parse(cmd, usage, argc, argv, &o);
	struct tg_store *s = tg_store_open(o.db, TG_STORE_READ);
	if (!s)
		tg_die("%s", tg_error());
	int64_t run = pick_run(s, &o);
	if (!o.json)
		fputs(header, stdout);
	char sql[1024];
	size_t used = (size_t)snprintf(sql, sizeof sql, "SELECT ");
	for (size_t i = 0; i < ncols; i++)
		used += (size_t)snprintf(sql + used, sizeof sql - used, "%s%s", i ? ", " : "", cols[i]);
	/* One request's rows through its index; a limit keeps the newest
	 * rows, printed oldest first. */
	snprintf(sql + used, sizeof sql - used, " FROM %s WHERE %s ORDER BY start_unix_ns%s", table,
		 o.request ? "request_id = ?2 AND run_id = ?1" : "run_id = ?1",
		 o.limit ? " DESC, id DESC LIMIT ?3" : ", id");
	char outer[1200];
	if (o.limit)
		snprintf(outer, sizeof outer, "SELECT * FROM (%s) ORDER BY start_unix_ns, id", sql);
	sqlite3_stmt *st = tg_store_prepare_or_die(s, o.limit ? outer : sql);
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_int64(st, 2, o.request);
	sqlite3_bind_int64(st, 3, o.limit ? o.limit : -1);
	struct jw w;
	jw_init(&w, stdout);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (o.json) {
			jw_obj_open(&w);
			for (size_t i = 0; i < ncols; i++)
				json_col(&w, cols[i], st, (int)i);
			jw_obj_close(&w);
			jw_newline(&w);
		} else {
			row(st);
		}
	}
	if (rc != SQLITE_DONE)
		tg_die("%s: %s", tg_store_path(s), sqlite3_errmsg(tg_store_db(s)));
	sqlite3_finalize(st);
	fflush(stdout);
	tg_store_close(s);
	return 0;
}

static const char *const query_cols[] = {
	"id", "request_id", "run_id", "process_id", "pid", "tid", "start_unix_ns", "duration_ns", "db_system",
	"tap", "database", "sql", "sql_truncated", "fingerprint", "params", "rows", "error", "call_site",
	"attribution", "duplicate", "n_plus_one", "kind", "executions",
};

static void query_row(sqlite3_stmt *st)
{
	char dur[24];
	tg_fmt_duration(dur, sizeof dur, sqlite3_column_int64(st, 7));
	printf("%-7lld %-8s %-10s %9s %6s ", (long long)sqlite3_column_int64(st, 0),
	       sqlite3_column_type(st, 1) == SQLITE_NULL ? "-" : (const char *)sqlite3_column_text(st, 1),
	       (const char *)sqlite3_column_text(st, 9), dur,
	       sqlite3_column_type(st, 15) == SQLITE_NULL ? "-" : (const char *)sqlite3_column_text(st, 15));
	printf("%s%s", sqlite3_column_int64(st, 20) ? "N+1 " : "", sqlite3_column_int64(st, 19) ? "dup " : "");
	if (sqlite3_column_int64(st, 22) > 1)
		printf("x%lld ", (long long)sqlite3_column_int64(st, 22));
	const unsigned char *kind = sqlite3_column_text(st, 21);
	if (kind && strcmp((const char *)kind, "housekeeping") == 0)
		fputs("hk ", stdout);
	cell(st, 11, 100);
	if (sqlite3_column_type(st, 16) != SQLITE_NULL) {
		fputs("  ! ", stdout);
		cell(st, 16, 60);
	}
	putchar('\n');
}

int cmd_queries(int argc, char **argv)
{
	return list(argc, argv, "queries", cmd_queries_usage, "queries", query_cols,
		    sizeof query_cols / sizeof query_cols[0], query_row,
		    "ID      REQUEST  TAP         DURATION   ROWS SQL\n");
}

static const char *const span_cols[] = {
	"id", "request_id", "run_id", "process_id", "pid", "tid", "kind", "start_unix_ns", "duration_ns",
	"method", "host", "path", "status", "request_bytes", "response_bytes", "tls", "error", "call_site",
	"attribution",
};

static void span_row(sqlite3_stmt *st)
{
	char dur[24];
	tg_fmt_duration(dur, sizeof dur, sqlite3_column_int64(st, 8));
	printf("%-7lld %-8s %9s %-4s ", (long long)sqlite3_column_int64(st, 0),
	       sqlite3_column_type(st, 1) == SQLITE_NULL ? "-" : (const char *)sqlite3_column_text(st, 1), dur,
	       sqlite3_column_type(st, 12) == SQLITE_NULL ? "-" : (const char *)sqlite3_column_text(st, 12));
	cell(st, 9, 8);
	putchar(' ');
	printf("%s://", sqlite3_column_int64(st, 15) ? "https" : "http");
	cell(st, 10, 60);
	cell(st, 11, 100);
	putchar('\n');
}

int cmd_spans(int argc, char **argv)
{
	return list(argc, argv, "spans", cmd_spans_usage, "spans", span_cols, sizeof span_cols / sizeof span_cols[0],
		    span_row, "ID      REQUEST   DURATION CODE CALL\n");
}
