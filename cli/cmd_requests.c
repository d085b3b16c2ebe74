/*
 * cmd_requests.c - `timeglass requests` and `timeglass runs`: what a store
 * holds, as a table for people or as JSON lines for scripts.
 *
 * Both open the store read-only, so they work while a run is recording.
 * Text that came from the wire (paths, methods, commands) is attacker-
 * controlled: the JSON writer escapes it, and the tables replace control
 * characters so that nothing reaches the terminal as an escape sequence.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/losses.h"
#include "lib/readers.h"
#include "lib/store.h"
#include "lib/util.h"

void cmd_requests_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass requests [OPTIONS]\n"
		   "\n"
		   "Prints the HTTP requests recorded in a run, oldest first: their path and\n"
		   "route template (ROUTE, '-' when none was recorded), status and timing, and\n"
		   "in ERROR the type of the exception behind a 500 (e.g. ZeroDivisionError)\n"
		   "and what went wrong on the wire.\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH    store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID     run to show (default: the latest; see: timeglass runs)\n"
		   "  --json       one JSON object per line instead of a table\n"
		   "  --limit N    only the N most recent requests\n"
		   "  -h, --help   show this help\n");
}

void cmd_runs_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass runs [OPTIONS]\n"
		   "\n"
		   "Lists the runs in the store, oldest first. LOST counts the events the\n"
		   "recording missed (a full ring, untracked connections, corrupt records,\n"
		   "store errors); stack samples the sampler did not take by design (a rate\n"
		   "lowered under its CPU budget) are not losses: see --json.\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH    store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --json       one JSON object per line instead of a table\n"
		   "  -h, --help   show this help\n");
}

struct query_opts {
	const char *db;
	int64_t run;     /* 0 = latest */
	int json;
	uint64_t limit;  /* 0 = all */
};

static void parse(const char *cmd, int argc, char **argv, struct query_opts *o, int with_run)
{
	enum { OPT_LIMIT = CLI_OWN };
	static const struct option requests_opts[] = {
		CLI_OPT_DB, CLI_OPT_RUN, CLI_OPT_JSON,
		{"limit", required_argument, NULL, OPT_LIMIT},
		CLI_OPT_HELP_END,
	};
	static const struct option runs_opts[] = {CLI_OPT_DB, CLI_OPT_JSON, CLI_OPT_HELP_END};
	struct cli_args a = {cmd, with_run ? cmd_requests_usage : cmd_runs_usage, ":h",
			     with_run ? requests_opts : runs_opts, argc, argv,
			     .db = &o->db, .run = &o->run, .json = &o->json};
	int c;
	while ((c = cli_next(&a)) != -1)
		if (c == OPT_LIMIT)
			o->limit = tg_number_or_die("--limit", optarg, 1, INT64_MAX);
	cli_no_operands(&a);
	o->db = tg_default_db(o->db);
}

static struct tg_store *open_or_die(const char *path)
{
	struct tg_store *s = tg_store_open(path, TG_STORE_READ);
	if (!s)
		tg_die("%s", tg_error());
	return s;
}


static void step_failed(struct tg_store *s)
{
	tg_die("%s: %s", tg_store_path(s), sqlite3_errmsg(tg_store_db(s)));
}

/* ---- output helpers ---------------------------------------------------- */

static int64_t col_i64(sqlite3_stmt *st, int i)
{
	return (int64_t)sqlite3_column_int64(st, i);
}

/* Column text as (pointer, length); NULL for SQL NULL. */
static const char *col_text(sqlite3_stmt *st, int i, size_t *n)
{
	if (sqlite3_column_type(st, i) == SQLITE_NULL) {
		*n = 0;
		return NULL;
	}
	const char *p = (const char *)sqlite3_column_text(st, i);
	*n = (size_t)sqlite3_column_bytes(st, i);
	return p;
}

static void json_text(struct jw *w, const char *key, sqlite3_stmt *st, int i)
{
	size_t n;
	const char *p = col_text(st, i, &n);
	jw_key(w, key);
	jw_str(w, p, n);
}

static void json_int(struct jw *w, const char *key, sqlite3_stmt *st, int i)
{
	jw_key(w, key);
	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		jw_null(w);
	else
		jw_i64(w, col_i64(st, i));
}

/* Prints at most `width` characters of s, control characters as '?', and
 * pads to width when pad is set. Counts UTF-8 sequences as one column. */
static void print_cell(const char *s, size_t n, int width, int pad)
{
	int cols = 0;
	size_t chars = 0;
	for (size_t i = 0; i < n; i++)
		chars += ((unsigned char)s[i] & 0xc0) != 0x80;
	int cut = (int)chars > width;
	int room = cut ? width - 3 : width;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int lead = (c & 0xc0) != 0x80;
		if (lead && cols >= room)
			break;
		if (c < 0x20 || c == 0x7f)
			c = '?';
		else if (c >= 0x80 && !lead && cols == 0)
			continue; /* stray continuation byte at the start */
		putchar(c);
		cols += lead;
	}
	if (cut) {
		fputs("...", stdout);
		cols += 3;
	}
	if (pad)
		for (; cols < width; cols++)
			putchar(' ');
}

static int terminal_width(void)
{
	struct winsize ws;
	if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
		return ws.ws_col;
	const char *env = getenv("COLUMNS");
	uint64_t v;
	if (env && tg_parse_u64(env, 40, 1000, &v) == 0)
		return (int)v;
	return 160; /* not a terminal: room for most paths */
}

static char *fmt_clock(char *buf, size_t cap, int64_t unix_ns, int with_date)
{
	time_t t = (time_t)(unix_ns / 1000000000);
	struct tm tm;
	localtime_r(&t, &tm);
	if (with_date)
		strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
	else {
		char hms[16];
		strftime(hms, sizeof hms, "%H:%M:%S", &tm);
		snprintf(buf, cap, "%s.%03d", hms, (int)(unix_ns / 1000000 % 1000));
	}
	return buf;
}

/* One stderr line if the run lost data that can hide requests (losses.h
 * decides which kinds do; the sampler's notes are not losses). */
static void warn_losses(struct tg_store *s, int64_t run)
{
	struct tg_losses l;
	if (tg_losses_read(tg_store_db(s), run, &l) < 0)
		tg_die("%s: %s", tg_store_path(s), tg_error());
	char kinds[256] = "";
	size_t used = 0;
	int n = 0;
	for (size_t i = 0; i < l.n; i++) {
		const struct tg_loss_row *r = &l.rows[i];
		if (!r->k->hides_requests || r->events <= 0)
			continue;
		if (used < sizeof kinds)
			used += (size_t)snprintf(kinds + used, sizeof kinds - used, "%s%s %" PRId64, n ? ", " : "",
						 r->k->label ? r->k->label : r->kind, r->events);
		n++;
	}
	int64_t total = l.lost_requests;
	tg_losses_free(&l);
	if (total <= 0)
		return;
	if (n == 1) /* "(ring full)" rather than "(ring full 120)" */
		*strrchr(kinds, ' ') = '\0';
	tg_warn("run %" PRId64 " lost %" PRId64 " events (%s); some requests are missing", run, total, kinds);
}

/* ---- requests ---------------------------------------------------------- */

enum {
	C_ID, C_RUN, C_PID, C_TID, C_CONN, C_START, C_DUR, C_REQ_END, C_RESP_START, C_METHOD, C_PATH, C_QUERY,
	C_ROUTE, C_VERSION, C_STATUS, C_IN, C_OUT, C_CLIENT, C_ERROR, C_FLAGS, C_HEADERS, C_TRANSPORT, C_PROCESS,
	C_EXCEPTION, C_FORWARDED, C_NQUERIES, C_NCALLS,
};
#define REQUEST_COLUMNS                                                                                        \
	"id, run_id, pid, tid, conn_id, start_unix_ns, duration_ns, req_end_ns, resp_start_ns, method, path,"     \
	" query_string, route, http_version, status, request_bytes, response_bytes, client_addr, error, flags,"  \
	" headers, transport, process_id, exception, forwarded_for,"                                             \
	" (SELECT coalesce(sum(n), 0) FROM query_sets WHERE query_sets.request_id = requests.id),"                \
	" (SELECT count(*) FROM spans WHERE spans.request_id = requests.id)"

/* The exception type of an exception text ("ZeroDivisionError: division by
 * zero\n..." or "app.errors.PaymentError: ..."): the name before the first
 * ':' of its first line, without its module. Sets *n; NULL when the text
 * does not start with a type name. */
static const char *exception_type(const char *text, size_t len, size_t *n)
{
	size_t end = 0;
	while (end < len && text[end] != ':' && text[end] != '\n')
		end++;
	const char *start = text;
	for (size_t i = 0; i < end; i++) {
		char c = text[i];
		if (c == '.')
			start = text + i + 1;
		else if (!(c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (unsigned char)c >= 0x80))
			return NULL; /* not a (qualified) name */
	}
	*n = (size_t)(text + end - start);
	return *n ? start : NULL;
}

/* The value of the exception_type JSON field: the type of the exception
 * recorded for the request, null without one. */
static void json_exception_type(struct jw *w, sqlite3_stmt *st)
{
	size_t n, tn;
	const char *p = col_text(st, C_EXCEPTION, &n);
	const char *t = p ? exception_type(p, n, &tn) : NULL;
	jw_key(w, "exception_type");
	jw_str(w, t, t ? tn : 0);
}

static void request_json(struct jw *w, sqlite3_stmt *st)
{
	jw_obj_open(w);
	json_int(w, "id", st, C_ID);
	json_int(w, "run_id", st, C_RUN);
	json_int(w, "process_id", st, C_PROCESS);
	json_int(w, "pid", st, C_PID);
	json_int(w, "tid", st, C_TID);
	json_int(w, "conn_id", st, C_CONN);
	json_int(w, "start_unix_ns", st, C_START);
	json_int(w, "duration_ns", st, C_DUR);
	json_int(w, "req_end_ns", st, C_REQ_END);
	json_int(w, "resp_start_ns", st, C_RESP_START);
	json_text(w, "method", st, C_METHOD);
	json_text(w, "path", st, C_PATH);
	json_text(w, "query_string", st, C_QUERY);
	json_text(w, "route", st, C_ROUTE);
	json_text(w, "http_version", st, C_VERSION);
	jw_key(w, "status");
	if (sqlite3_column_type(st, C_STATUS) == SQLITE_NULL || col_i64(st, C_STATUS) == 0)
		jw_null(w);
	else
		jw_i64(w, col_i64(st, C_STATUS));
	json_int(w, "request_bytes", st, C_IN);
	json_int(w, "response_bytes", st, C_OUT);
	json_text(w, "client_addr", st, C_CLIENT);
	json_text(w, "forwarded_for", st, C_FORWARDED);
	json_text(w, "error", st, C_ERROR);
	jw_key(w, "flags");
	jw_arr_open(w);
	int64_t flags = col_i64(st, C_FLAGS);
	for (unsigned b = 0; b < TG_REQ_FLAG_BITS; b++)
		if ((flags >> b) & 1 && tg_req_flag_name(b))
			jw_cstr(w, tg_req_flag_name(b));
	jw_arr_close(w);
	json_text(w, "headers", st, C_HEADERS);
	json_text(w, "transport", st, C_TRANSPORT);
	json_text(w, "exception", st, C_EXCEPTION);
	json_exception_type(w, st);
	json_int(w, "queries", st, C_NQUERIES);
	json_int(w, "http_calls", st, C_NCALLS);
	jw_obj_close(w);
	jw_newline(w);
}

static void request_row(sqlite3_stmt *st, int path_width, int route_width)
{
	char id[24], when[32], pid[16], status[8], dur[24];
	size_t n;
	const char *p;
	snprintf(id, sizeof id, "%" PRId64, col_i64(st, C_ID));
	fmt_clock(when, sizeof when, col_i64(st, C_START), 0);
	snprintf(pid, sizeof pid, "%" PRId64, col_i64(st, C_PID));
	printf("%-7s %-12s %-7s ", id, when, pid);
	p = col_text(st, C_METHOD, &n);
	print_cell(p ? p : "-", p ? n : 1, 7, 1);
	putchar(' ');
	p = col_text(st, C_PATH, &n);
	print_cell(p ? p : "-", p ? n : 1, path_width, 1);
	putchar(' ');
	p = col_text(st, C_ROUTE, &n);
	print_cell(p ? p : "-", p ? n : 1, route_width, 1);
	if (sqlite3_column_type(st, C_STATUS) == SQLITE_NULL)
		snprintf(status, sizeof status, "-");
	else
		snprintf(status, sizeof status, "%" PRId64, col_i64(st, C_STATUS));
	tg_fmt_duration(dur, sizeof dur, col_i64(st, C_DUR));
	printf(" %-6s %10s %9" PRId64 " %9" PRId64, status, dur, col_i64(st, C_IN),
	       col_i64(st, C_OUT));
	/* ERROR: the exception's type (a 500 with a traceback recorded), then
	 * what went wrong on the wire */
	size_t en, tn = 0;
	const char *exc = col_text(st, C_EXCEPTION, &en);
	const char *type = exc ? exception_type(exc, en, &tn) : NULL;
	if (exc && !type) {
		type = "exception";
		tn = strlen(type);
	}
	p = col_text(st, C_ERROR, &n);
	if (type) {
		putchar(' ');
		print_cell(type, tn, 40, 0);
	}
	if (p) {
		fputs(type ? "; " : " ", stdout);
		print_cell(p, n, 40, 0);
	}
	putchar('\n');
}

/* The run to show: the one asked for, or the latest. Dies if none. */
static int64_t pick_run(struct tg_store *s, int64_t want)
{
	int64_t id = 0;
	if (want) {
		sqlite3_stmt *st = tg_store_prepare_or_die(s, "SELECT id FROM runs WHERE id = ?");
		sqlite3_bind_int64(st, 1, want);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			id = col_i64(st, 0);
		else if (rc != SQLITE_DONE)
			step_failed(s);
		sqlite3_finalize(st);
	} else {
		id = tg_store_latest_run(s);
	}
	if (!id && want)
		tg_die("no run %" PRId64 " in %s; see: timeglass runs", want, tg_store_path(s));
	if (!id)
		tg_die("no runs in %s yet; record one with: timeglass run -- CMD", tg_store_path(s));
	return id;
}

int cmd_requests(int argc, char **argv)
{
	struct query_opts o = {0};
	parse("requests", argc, argv, &o, 1);
	struct tg_store *s = open_or_die(o.db);
	int64_t run = pick_run(s, o.run);

	sqlite3_stmt *st = tg_store_prepare_or_die(
		s, o.limit ? "SELECT * FROM (SELECT " REQUEST_COLUMNS " FROM requests WHERE run_id = ?1"
			     " ORDER BY start_unix_ns DESC, id DESC LIMIT ?2) ORDER BY start_unix_ns, id"
			   : "SELECT " REQUEST_COLUMNS " FROM requests WHERE run_id = ?1 ORDER BY start_unix_ns, id");
	sqlite3_bind_int64(st, 1, run);
	if (o.limit)
		sqlite3_bind_int64(st, 2, (int64_t)o.limit);

	struct jw w;
	jw_init(&w, stdout);
	/* PATH and ROUTE share what the fixed columns and ERROR leave */
	int room = terminal_width() - (7 + 1 + 12 + 1 + 7 + 1 + 7 + 1) - (1 + 6 + 1 + 10 + 1 + 9 + 1 + 9) - 24 - 1;
	int path_width = room * 11 / 20, route_width = room - path_width;
	if (path_width < 16)
		path_width = 16;
	if (route_width < 16)
		route_width = 16;
	if (!o.json) {
		printf("%-7s %-12s %-7s %-7s %-*s %-*s %-6s %10s %9s %9s %s\n", "ID", "TIME", "PID", "METHOD", path_width,
		       "PATH", route_width, "ROUTE", "STATUS", "DURATION", "IN", "OUT", "ERROR");
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (o.json)
			request_json(&w, st);
		else
			request_row(st, path_width, route_width);
	}
	if (rc != SQLITE_DONE)
		step_failed(s);
	sqlite3_finalize(st);
	fflush(stdout);
	warn_losses(s, run);
	tg_store_close(s);
	return 0;
}

/* ---- runs -------------------------------------------------------------- */

enum { R_ID, R_START, R_END, R_CMD, R_CWD, R_HOST, R_VERSION, R_SOURCE, R_EXIT, R_REQUESTS };

int cmd_runs(int argc, char **argv)
{
	struct query_opts o = {0};
	parse("runs", argc, argv, &o, 0);
	struct tg_store *s = open_or_die(o.db);
	sqlite3_stmt *st = tg_store_prepare_or_die(
		s, "SELECT r.id, r.started_unix_ns, r.ended_unix_ns, r.command, r.cwd, r.hostname, r.tg_version,"
		   " r.source, r.exit_status,"
		   " (SELECT count(*) FROM requests q WHERE q.run_id = r.id)"
		   " FROM runs r ORDER BY r.id");
	struct jw w;
	jw_init(&w, stdout);
	if (!o.json)
		printf("%-5s %-19s %10s %9s %5s %7s %s\n", "ID", "STARTED", "DURATION", "REQUESTS", "EXIT", "LOST",
		       "COMMAND");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct tg_losses l;
		if (tg_losses_read(tg_store_db(s), col_i64(st, R_ID), &l) < 0)
			tg_die("%s: %s", tg_store_path(s), tg_error());
		int64_t lost = l.total[TG_TOTAL_LOST], dropped = l.total[TG_TOTAL_SAMPLES_DROPPED],
			skipped = l.total[TG_TOTAL_TICKS_SKIPPED], unexported = l.total[TG_TOTAL_NOT_EXPORTED];
		tg_losses_free(&l);
		int64_t start = col_i64(st, R_START);
		int ended = sqlite3_column_type(st, R_END) != SQLITE_NULL;
		int64_t dur = ended ? col_i64(st, R_END) - start : -1;
		if (o.json) {
			jw_obj_open(&w);
			json_int(&w, "id", st, R_ID);
			json_int(&w, "started_unix_ns", st, R_START);
			json_int(&w, "ended_unix_ns", st, R_END);
			jw_key(&w, "duration_ns");
			if (ended)
				jw_i64(&w, dur);
			else
				jw_null(&w);
			json_text(&w, "command", st, R_CMD);
			json_text(&w, "cwd", st, R_CWD);
			json_text(&w, "hostname", st, R_HOST);
			json_text(&w, "tg_version", st, R_VERSION);
			json_text(&w, "source", st, R_SOURCE);
			json_int(&w, "exit_status", st, R_EXIT);
			json_int(&w, "requests", st, R_REQUESTS);
			jw_key(&w, "lost_events");
			jw_i64(&w, lost);
			jw_key(&w, "samples_dropped");
			jw_i64(&w, dropped);
			jw_key(&w, "sample_ticks_skipped");
			jw_i64(&w, skipped);
			jw_key(&w, "spans_not_exported");
			jw_i64(&w, unexported);
			jw_obj_close(&w);
			jw_newline(&w);
			continue;
		}
		char started[32], d[24], ex[16];
		fmt_clock(started, sizeof started, start, 1);
		if (ended)
			tg_fmt_duration(d, sizeof d, dur);
		else
			snprintf(d, sizeof d, "-");
		if (sqlite3_column_type(st, R_EXIT) == SQLITE_NULL)
			snprintf(ex, sizeof ex, "-");
		else
			snprintf(ex, sizeof ex, "%" PRId64, col_i64(st, R_EXIT));
		printf("%-5" PRId64 " %-19s %10s %9" PRId64 " %5s %7" PRId64 " ", col_i64(st, R_ID), started,
		       d, col_i64(st, R_REQUESTS), ex, lost);
		size_t n;
		const char *cmd = col_text(st, R_CMD, &n);
		print_cell(cmd ? cmd : "", n, 200, 0);
		putchar('\n');
	}
	if (rc != SQLITE_DONE)
		step_failed(s);
	sqlite3_finalize(st);
	tg_store_close(s);
	return 0;
}
