/*
 * cmd_flame.c - `timeglass flame`: the Python stack samples of one request,
 * of one route (all its requests in a run), of a whole run or of the time
 * outside any request, as folded stacks ("a;b;c 12", for flamegraph.pl,
 * inferno, speedscope's import), as a speedscope JSON document, or as a
 * table of the functions that took the most samples (--format top: self
 * and total, like py-spy top or speedscope's sandwich view), or as a
 * gzipped pprof profile (--format pprof, lib/pprof.c: go tool pprof,
 * Pyroscope, Grafana).
 *
 * Frames print as "qualname (file:line)", native frames (--native) as
 * "function (library)". Waiting samples (the thread was
 * off CPU: I/O, locks, the GIL) end in a "(waiting)" leaf unless --state
 * selects one kind, so one graph separates waiting from running.
 */
#include <getopt.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/pprof.h"
#include "lib/readers.h"
#include "lib/store.h"
#include "lib/util.h"

void cmd_flame_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass flame [OPTIONS] (--request ID | --route 'METHOD TEMPLATE' | --all | --no-request)\n"
		   "\n"
		   "Prints the sampled Python stacks as a flame graph.\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH          store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID           run for --route/--all/--no-request (default: the latest)\n"
		   "  --request ID       samples of one request\n"
		   "  --route R          samples of every request of a route, e.g. 'GET /items/{item_id}'\n"
		   "  --all              every sample of the run\n"
		   "  --no-request       samples taken outside any request\n"
		   "  --state S          running, waiting or all (default: all)\n"
		   "  --format F         folded (default), speedscope, or top: the functions with\n"
		   "                     the most samples, their own (self) and with callees (total),\n"
		   "                     or pprof: a gzipped profile.proto (go tool pprof, Pyroscope)\n"
		   "                     with labels route, request_id, thread and state per sample\n"
		   "  -o, --output FILE  write to FILE instead of stdout (pprof needs it, or a pipe)\n"
		   "  --limit N          rows of --format top (default 40, 0 = all)\n"
		   "  -h, --help         show this help\n"
		   "\n"
		   "--route takes a route as recorded (see: timeglass requests); given a raw\n"
		   "path such as 'GET /items/5' it names the recorded routes that match it.\n"
		   "A selection with no stack samples says why on stderr.\n"
		   "\n"
		   "For go tool pprof, Pyroscope or Grafana:\n"
		   "  timeglass flame --all --format pprof -o run.pb.gz && go tool pprof -http : run.pb.gz\n"
		   "\n"
		   "Exit status: 0; 2 for bad usage, an unusable store, or a run, request or\n"
		   "route that was not recorded (one line on stderr).\n");
}

struct frame {
	char *label; /* "qualname (file:line)", NULL if unknown */
	const char *name, *file;
	int line;
};

struct flame_opts {
	const char *db;
	int64_t run, request;
	const char *route;
	int all, no_request;
	const char *state; /* NULL = all */
	int speedscope, top, pprof;
	const char *output; /* -o FILE, NULL = stdout */
	int64_t limit; /* rows of --format top, 0 = all */
};

static void die_db(struct tg_store *s)
{
	tg_die("%s: %s", tg_store_path(s), sqlite3_errmsg(tg_store_db(s)));
}

static sqlite3_stmt *prep(struct tg_store *s, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(tg_store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		die_db(s);
	return st;
}

/* All frames, indexed by id. */
static struct frame *load_frames(struct tg_store *s, int64_t *n)
{
	sqlite3_stmt *st = prep(s, "SELECT coalesce(max(id), 0) FROM frames");
	*n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) + 1 : 1;
	sqlite3_finalize(st);
	struct frame *fr = calloc((size_t)*n, sizeof *fr);
	if (!fr)
		tg_die("out of memory");
	st = prep(s, "SELECT id, name, file, line, kind FROM frames");
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		if (id <= 0 || id >= *n)
			continue;
		const char *name = (const char *)sqlite3_column_text(st, 1);
		const char *file = (const char *)sqlite3_column_text(st, 2);
		int line = sqlite3_column_int(st, 3);
		const char *kind = (const char *)sqlite3_column_text(st, 4);
		int native = kind && strcmp(kind, "native") == 0;
		name = name ? name : "?";
		file = file ? file : "";
		size_t len = strlen(name) + strlen(file) + 32;
		char *l = malloc(len);
		char *nm = strdup(name), *fl = strdup(file);
		if (!l || !nm || !fl)
			tg_die("out of memory");
		if (*file && native) { /* "function (library)": no line */
			const char *base = strrchr(file, '/');
			snprintf(l, len, "%s (%s)", name, base ? base + 1 : file);
		} else if (*file)
			snprintf(l, len, "%s (%s:%d)", name, file, line);
		else
			snprintf(l, len, "%s", name);
		for (char *c = l; *c; c++)
			if (*c == ';' || *c == '\n')
				*c = ','; /* folded format separators */
		size_t ll = strlen(l);
		if (tg_utf8_valid_prefix(l, ll) != ll) {
			/* A store written before text was kept valid: the folded
			 * output stays UTF-8 all the same. */
			size_t m;
			char *fixed = tg_utf8_repair(l, ll, &m);
			if (!fixed)
				tg_die("out of memory");
			free(l);
			l = fixed;
		}
		fr[id] = (struct frame){.label = l, .name = nm, .file = fl, .line = native ? 0 : line};
	}
	sqlite3_finalize(st);
	return fr;
}

static void parse(int argc, char **argv, struct flame_opts *o)
{
	enum { OPT_ROUTE = CLI_OWN, OPT_STATE, OPT_FORMAT, OPT_LIMIT };
	const struct option opts[] = {
		CLI_OPT_DB, CLI_OPT_RUN, CLI_OPT_REQUEST,
		{"route", required_argument, NULL, OPT_ROUTE},
		{"all", no_argument, &o->all, 1},
		{"no-request", no_argument, &o->no_request, 1},
		{"state", required_argument, NULL, OPT_STATE},
		{"format", required_argument, NULL, OPT_FORMAT},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"output", required_argument, NULL, 'o'},
		CLI_OPT_HELP_END,
	};
	struct cli_args a = {"flame", cmd_flame_usage, ":ho:", opts, argc, argv,
			     .db = &o->db, .run = &o->run, .request = &o->request};
	int c;
	while ((c = cli_next(&a)) != -1) {
		switch (c) {
		case OPT_ROUTE: o->route = optarg; break;
		case OPT_STATE:
			if (strcmp(optarg, "all") == 0)
				o->state = NULL;
			else if (strcmp(optarg, "running") == 0 || strcmp(optarg, "waiting") == 0)
				o->state = optarg;
			else
				tg_die_usage("flame", "--state must be running, waiting or all");
			break;
		case OPT_FORMAT:
			o->speedscope = strcmp(optarg, "speedscope") == 0;
			o->top = strcmp(optarg, "top") == 0;
			o->pprof = strcmp(optarg, "pprof") == 0;
			if (!o->speedscope && !o->top && !o->pprof && strcmp(optarg, "folded") != 0)
				tg_die_usage("flame", "--format must be folded, speedscope, top or pprof");
			break;
		case 'o': o->output = optarg; break;
		case OPT_LIMIT: o->limit = (int64_t)tg_number_or_die("--limit", optarg, 0, INT64_MAX); break;
		}
	}
	cli_no_operands(&a);
	if ((o->request != 0) + (o->route != NULL) + o->all + o->no_request != 1)
		tg_die_usage("flame", "give exactly one of --request, --route, --all, --no-request");
	if (o->pprof && !o->output && isatty(STDOUT_FILENO))
		tg_die_usage("flame", "--format pprof writes a binary file: give -o FILE or redirect the output");
	o->db = tg_default_db(o->db);
}

/* ---- finding what was asked for ------------------------------------- */

/* Whether path matches the route template tmpl: {name} and {name:str} take
 * one or more characters other than '/', {name:path} any characters,
 * {name:int} digits, {name:float} digits and '.', {name:uuid} hex digits
 * and '-'; everything else must be equal. */
static int template_matches(const char *tmpl, const char *path)
{
	while (*tmpl) {
		if (*tmpl != '{') {
			if (*tmpl++ != *path++)
				return 0;
			continue;
		}
		const char *close = strchr(tmpl, '}');
		if (!close)
			return !strcmp(tmpl, path);
		const char *colon = memchr(tmpl, ':', (size_t)(close - tmpl));
		const char *conv = colon ? colon + 1 : "";
		size_t clen = colon ? (size_t)(close - conv) : 0;
		int any = clen == 4 && !memcmp(conv, "path", 4);
		const char *allowed = clen == 3 && !memcmp(conv, "int", 3)     ? "0123456789"
				      : clen == 5 && !memcmp(conv, "float", 5) ? "0123456789."
				      : clen == 4 && !memcmp(conv, "uuid", 4)  ? "0123456789abcdefABCDEF-"
									       : NULL;
		/* the parameter takes path[0, n) for some n >= 1; the rest must match */
		for (size_t n = 1; path[n - 1]; n++) {
			char c = path[n - 1];
			if ((!any && c == '/') || (allowed && !strchr(allowed, c)))
				break;
			if (template_matches(close + 1, path + n))
				return 1;
		}
		return 0;
	}
	return *path == '\0';
}

/* Appends "METHOD route (N requests)" to buf (used bytes in *used), with
 * control characters (wire text) as '?'; with_path > 0 adds how many of
 * them had the path asked for. */
static void add_suggestion(char *buf, size_t cap, size_t *used, const char *method, const char *route, int64_t n,
			   int64_t with_path)
{
	if (*used >= cap)
		return;
	char of[64] = "";
	if (with_path > 0 && with_path < n)
		snprintf(of, sizeof of, ", %lld with this path", (long long)with_path);
	int w = snprintf(buf + *used, cap - *used, "%s%s %s (%lld request%s%s)", *used ? ", " : "", method, route,
			 (long long)n, n == 1 ? "" : "s", of);
	size_t end = *used + (w > 0 ? (size_t)w : 0);
	if (end >= cap)
		end = cap - 1;
	for (size_t i = *used; i < end; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	*used = end;
}

/* The recorded routes of run that path (a raw path, or anything given to
 * --route) may stand for, most requests first, as one line: routes whose
 * requests had exactly this path, then templates that match it. Returns
 * the number of routes listed. */
static int matching_routes(struct tg_store *s, int64_t run, const char *path, char *buf, size_t cap)
{
	char p[1024];
	tg_strlcpy(p, path, sizeof p);
	p[strcspn(p, "?#")] = '\0';
	size_t used = 0;
	int n = 0;
	buf[0] = '\0';
	sqlite3_stmt *st = prep(s, "SELECT r.method, coalesce(r.route, r.path), count(*),"
				   " (SELECT count(*) FROM requests q WHERE q.run_id = ?1 AND q.method = r.method"
				   "  AND coalesce(q.route, q.path) = coalesce(r.route, r.path))"
				   " FROM requests r WHERE r.run_id = ?1 AND r.path = ?2 GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
				   " LIMIT 8");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_text(st, 2, p, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *m = (const char *)sqlite3_column_text(st, 0), *r = (const char *)sqlite3_column_text(st, 1);
		add_suggestion(buf, cap, &used, m ? m : "?", r ? r : "?", sqlite3_column_int64(st, 3),
			       sqlite3_column_int64(st, 2));
		n++;
	}
	sqlite3_finalize(st);
	st = prep(s, "SELECT method, route, count(*) FROM requests WHERE run_id = ?1 AND route IS NOT NULL"
		     " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2");
	sqlite3_bind_int64(st, 1, run);
	while (sqlite3_step(st) == SQLITE_ROW && n < 8) {
		const char *m = (const char *)sqlite3_column_text(st, 0), *r = (const char *)sqlite3_column_text(st, 1);
		if (!r || !template_matches(r, p))
			continue;
		/* listed already when requests of this route had exactly this path */
		char item[1200];
		snprintf(item, sizeof item, "%s %s (", m ? m : "?", r);
		if (strstr(buf, item))
			continue;
		add_suggestion(buf, cap, &used, m ? m : "?", r, sqlite3_column_int64(st, 2), 0);
		n++;
	}
	sqlite3_finalize(st);
	return n;
}

/* The routes of run, most requests first, as one line ("" when none). */
static void recorded_routes(struct tg_store *s, int64_t run, char *buf, size_t cap)
{
	sqlite3_stmt *st = prep(s, "SELECT method, coalesce(route, path), count(*) FROM requests WHERE run_id = ?1"
				   " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2");
	sqlite3_bind_int64(st, 1, run);
	size_t used = 0;
	int n = 0;
	buf[0] = '\0';
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 6) {
			if (used < cap)
				snprintf(buf + used, cap - used, ", ...");
			continue;
		}
		const char *m = (const char *)sqlite3_column_text(st, 0), *r = (const char *)sqlite3_column_text(st, 1);
		add_suggestion(buf, cap, &used, m ? m : "?", r ? r : "?", sqlite3_column_int64(st, 2), 0);
	}
	sqlite3_finalize(st);
	if (n > 6 && used < cap)
		snprintf(buf + used, cap - used, " and %d more", n - 6);
}

/* Dies unless --route names a route of the run (METHOD and route, or raw
 * path for requests without a route template), saying which recorded
 * routes a raw path matches or, failing that, which routes there are.
 * Returns the route's number of requests. */
static int64_t check_route(struct tg_store *s, int64_t run, const char *method, const char *route, const char *arg)
{
	sqlite3_stmt *st = prep(s, "SELECT count(*) FROM requests WHERE run_id = ?1 AND method = ?2"
				   " AND coalesce(route, path) = ?3");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_text(st, 2, method, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, route, -1, SQLITE_STATIC);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	if (n)
		return n;
	char list[400];
	if (matching_routes(s, run, route, list, sizeof list))
		tg_die("no route '%s' was recorded in run %lld; its path matches: %s", arg, (long long)run, list);
	recorded_routes(s, run, list, sizeof list);
	if (*list)
		tg_die("no route '%s' was recorded in run %lld, nor one that matches it; recorded routes: %s", arg,
		       (long long)run, list);
	tg_die("no route '%s' was recorded in run %lld: it has no requests", arg, (long long)run);
}

/* Dies unless the run or request (what) id is in the store. */
static void check_row(struct tg_store *s, const char *what, int64_t id)
{
	char sql[64];
	snprintf(sql, sizeof sql, "SELECT 1 FROM %ss WHERE id = ?1", what);
	sqlite3_stmt *st = prep(s, sql);
	sqlite3_bind_int64(st, 1, id);
	int found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (!found)
		tg_die("no %s %lld in %s; see: timeglass %ss", what, (long long)id, tg_store_path(s), what);
}

struct row {
	char *frames; /* ids, root first, comma-separated */
	int waiting;
	int64_t count;
};

/* One function of --format top: Python frames of one qualname and file
 * (whatever their lines), native frames of one symbol and library. */
struct func {
	const char *name, *file;
	int64_t self, total;
	size_t seen; /* last row + 1 that counted it in total (recursion counts once) */
};

static int cmp_func(const void *a, const void *b)
{
	const struct func *x = a, *y = b;
	if (x->self != y->self)
		return x->self < y->self ? 1 : -1;
	if (x->total != y->total)
		return x->total < y->total ? 1 : -1;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->file, y->file);
}

/* The function index of every frame id (frames of one function share one). */
static size_t *functions_of(const struct frame *fr, int64_t nframes, struct func **out, size_t *nfuncs)
{
	size_t cap = 64;
	while (cap < (size_t)nframes * 2)
		cap <<= 1;
	size_t *slot = malloc(cap * sizeof *slot); /* function index + 1, 0 = empty */
	size_t *of = calloc((size_t)nframes, sizeof *of);
	struct func *f = calloc((size_t)nframes + 1, sizeof *f);
	if (!slot || !of || !f)
		tg_die("out of memory");
	memset(slot, 0, cap * sizeof *slot);
	size_t n = 0;
	for (int64_t id = 1; id < nframes; id++) {
		if (!fr[id].label)
			continue;
		uint64_t h = 1469598103934665603ull;
		for (const char *c = fr[id].name; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		for (const char *c = fr[id].file; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		size_t j = h & (cap - 1);
		while (slot[j] && (strcmp(f[slot[j] - 1].name, fr[id].name) || strcmp(f[slot[j] - 1].file, fr[id].file)))
			j = (j + 1) & (cap - 1);
		if (!slot[j]) {
			f[n] = (struct func){.name = fr[id].name, .file = fr[id].file};
			slot[j] = ++n;
		}
		of[id] = slot[j] - 1;
	}
	free(slot);
	f[n] = (struct func){.name = "(waiting)", .file = ""}; /* the waiting leaf, last */
	*out = f;
	*nfuncs = n + 1;
	return of;
}

/* --format top: self and total samples per function, most self first. */
static void print_top(struct row *rows, size_t nrows, const struct frame *fr, int64_t nframes, int mark_waiting,
		      int64_t limit)
{
	struct func *f;
	size_t nf;
	size_t *of = functions_of(fr, nframes, &f, &nf);
	int64_t all = 0;
	for (size_t i = 0; i < nrows; i++) {
		all += rows[i].count;
		size_t leaf = SIZE_MAX;
		char *save = NULL;
		for (char *tok = strtok_r(rows[i].frames, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			int64_t id = strtoll(tok, NULL, 10);
			if (id <= 0 || id >= nframes || !fr[id].label)
				continue;
			struct func *x = &f[of[id]];
			if (x->seen != i + 1) {
				x->total += rows[i].count;
				x->seen = i + 1;
			}
			leaf = of[id];
		}
		if (rows[i].waiting && mark_waiting) {
			f[nf - 1].total += rows[i].count;
			leaf = nf - 1;
		}
		if (leaf != SIZE_MAX)
			f[leaf].self += rows[i].count;
	}
	qsort(f, nf, sizeof *f, cmp_func);
	printf("%7s %9s %7s %9s  %s\n", "SELF%", "SELF", "TOTAL%", "TOTAL", "FUNCTION");
	for (size_t i = 0; i < nf && (limit == 0 || (int64_t)i < limit); i++) {
		if (!f[i].total)
			break;
		double d = all ? 100.0 / (double)all : 0;
		printf("%6.1f%% %9lld %6.1f%% %9lld  %s", (double)f[i].self * d, (long long)f[i].self,
		       (double)f[i].total * d, (long long)f[i].total, f[i].name);
		if (*f[i].file)
			printf(" (%s)", f[i].file);
		putchar('\n');
	}
	printf("%lld samples\n", (long long)all);
	free(of);
	free(f);
}

int cmd_flame(int argc, char **argv)
{
	struct flame_opts o = {.limit = 40};
	parse(argc, argv, &o);
	struct tg_store *s = tg_store_open(o.db, TG_STORE_READ);
	if (!s)
		tg_die("%s", tg_error());
	if (!o.request && !o.run) {
		o.run = tg_store_latest_run(s);
		if (!o.run)
			tg_die("no runs in %s yet; record one with: timeglass run -- CMD", tg_store_path(s));
	}
	if (o.request)
		check_row(s, "request", o.request);
	else
		check_row(s, "run", o.run);
	char method[32] = "";
	const char *route = NULL;
	int64_t route_requests = 0;
	if (o.route) {
		const char *sp = strchr(o.route, ' ');
		if (!sp || (size_t)(sp - o.route) >= sizeof method) {
			char list[400];
			if (matching_routes(s, o.run, o.route, list, sizeof list))
				tg_die_usage("flame", "--route takes 'METHOD /template'; recorded routes matching '%s': %s",
					     o.route, list);
			tg_die_usage("flame", "--route takes 'METHOD /template', e.g. 'GET /items/{item_id}'");
		}
		memcpy(method, o.route, (size_t)(sp - o.route));
		method[sp - o.route] = '\0';
		route = sp + 1;
		route_requests = check_route(s, o.run, method, route, o.route);
	}

	struct tg_samples_sel sel = {
		.of = o.request ? TG_SAMPLES_REQUEST : o.route ? TG_SAMPLES_ROUTE : o.all ? TG_SAMPLES_RUN : TG_SAMPLES_OUTSIDE,
		.id = o.request ? o.request : o.run,
		.method = method,
		.route = route,
		.state = o.state,
	};
	sqlite3_stmt *st = tg_samples_prepare(tg_store_db(s), &sel);
	if (!st)
		die_db(s);

	struct row *rows = NULL;
	size_t nrows = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (nrows == cap) {
			cap = cap ? cap * 2 : 256;
			rows = realloc(rows, cap * sizeof *rows);
			if (!rows)
				tg_die("out of memory");
		}
		const char *f = (const char *)sqlite3_column_text(st, 0);
		const char *state = (const char *)sqlite3_column_text(st, 1);
		rows[nrows].frames = strdup(f ? f : "");
		rows[nrows].waiting = state && strcmp(state, "waiting") == 0;
		rows[nrows].count = sqlite3_column_int64(st, 2);
		if (!rows[nrows].frames)
			tg_die("out of memory");
		nrows++;
	}
	if (rc != SQLITE_DONE)
		die_db(s);
	sqlite3_finalize(st);

	if (!nrows) {
		/* an empty answer says why */
		const char *state = o.state ? o.state : "", *sp = o.state ? " " : "";
		const char *why = o.state ? " (--state all shows every sample)"
					  : " (shorter than the sampling period, or recorded with sampling off)";
		if (o.request)
			tg_warn("request %lld has no %s%sstack samples%s", (long long)o.request, state, sp, why);
		else if (o.route)
			tg_warn("route '%s' has %lld request%s in run %lld but no %s%sstack samples%s", o.route,
				(long long)route_requests, route_requests == 1 ? "" : "s", (long long)o.run, state, sp, why);
		else
			tg_warn("run %lld has no %s%sstack samples%s%s", (long long)o.run, state, sp,
				o.no_request ? " outside requests" : "", o.state ? why : "");
	}

	if (o.output && !freopen(o.output, "w", stdout))
		tg_die("cannot write %s: %m", o.output);
	int64_t nframes;
	struct frame *fr = load_frames(s, &nframes);
	int mark_waiting = o.state == NULL;

	if (o.top) {
		print_top(rows, nrows, fr, nframes, mark_waiting, o.limit);
	} else if (o.pprof) {
		if (tg_pprof_write_samples(tg_store_db(s), &sel, stdout) < 0)
			tg_die("%s", tg_error());
	} else if (!o.speedscope) {
		for (size_t i = 0; i < nrows; i++) {
			char *save = NULL, *tok;
			int first = 1;
			for (tok = strtok_r(rows[i].frames, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int64_t id = strtoll(tok, NULL, 10);
				const char *l = id > 0 && id < nframes && fr[id].label ? fr[id].label : "?";
				printf(first ? "%s" : ";%s", l);
				first = 0;
			}
			if (rows[i].waiting && mark_waiting)
				printf(";(waiting)");
			printf(" %lld\n", (long long)rows[i].count);
		}
	} else {
		/* speedscope: shared frame table (indices into our frames + the
		 * waiting leaf), one sampled profile with weights. */
		int64_t *index = calloc((size_t)nframes + 1, sizeof *index); /* frame id -> speedscope index + 1 */
		if (!index)
			tg_die("out of memory");
		int64_t nidx = 0, waiting_idx = -1;
		struct jw w;
		jw_init(&w, stdout);
		jw_obj_open(&w);
		jw_key(&w, "$schema");
		jw_cstr(&w, "https://www.speedscope.app/file-format-schema.json");
		jw_key(&w, "exporter");
		jw_cstr(&w, "timeglass");
		char name[512];
		if (o.request)
			snprintf(name, sizeof name, "request %lld", (long long)o.request);
		else if (o.route)
			snprintf(name, sizeof name, "%s (run %lld)", o.route, (long long)o.run);
		else
			snprintf(name, sizeof name, "run %lld%s", (long long)o.run, o.no_request ? ", no request" : "");
		jw_key(&w, "name");
		jw_cstr(&w, name);
		jw_key(&w, "activeProfileIndex");
		jw_i64(&w, 0);
		/* Frames in order of first use. */
		jw_key(&w, "shared");
		jw_obj_open(&w);
		jw_key(&w, "frames");
		jw_arr_open(&w);
		for (size_t i = 0; i < nrows; i++) {
			char *copy = strdup(rows[i].frames), *save = NULL;
			for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int64_t id = strtoll(tok, NULL, 10);
				if (id <= 0 || id >= nframes || index[id])
					continue;
				index[id] = ++nidx;
				jw_obj_open(&w);
				jw_key(&w, "name");
				jw_cstr(&w, fr[id].name ? fr[id].name : "?");
				if (fr[id].file && *fr[id].file) {
					jw_key(&w, "file");
					jw_cstr(&w, fr[id].file);
					if (fr[id].line) {
						jw_key(&w, "line");
						jw_i64(&w, fr[id].line);
					}
				}
				jw_obj_close(&w);
			}
			free(copy);
			if (rows[i].waiting && mark_waiting && waiting_idx < 0) {
				waiting_idx = nidx++;
				jw_obj_open(&w);
				jw_key(&w, "name");
				jw_cstr(&w, "(waiting)");
				jw_obj_close(&w);
			}
		}
		jw_arr_close(&w);
		jw_obj_close(&w);
		int64_t total = 0;
		for (size_t i = 0; i < nrows; i++)
			total += rows[i].count;
		jw_key(&w, "profiles");
		jw_arr_open(&w);
		jw_obj_open(&w);
		jw_key(&w, "type");
		jw_cstr(&w, "sampled");
		jw_key(&w, "name");
		jw_cstr(&w, name);
		jw_key(&w, "unit");
		jw_cstr(&w, "none");
		jw_key(&w, "startValue");
		jw_i64(&w, 0);
		jw_key(&w, "endValue");
		jw_i64(&w, total);
		jw_key(&w, "samples");
		jw_arr_open(&w);
		for (size_t i = 0; i < nrows; i++) {
			jw_arr_open(&w);
			char *save = NULL;
			for (char *tok = strtok_r(rows[i].frames, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int64_t id = strtoll(tok, NULL, 10);
				if (id > 0 && id < nframes && index[id])
					jw_i64(&w, index[id] - 1);
			}
			if (rows[i].waiting && mark_waiting)
				jw_i64(&w, waiting_idx);
			jw_arr_close(&w);
		}
		jw_arr_close(&w);
		jw_key(&w, "weights");
		jw_arr_open(&w);
		for (size_t i = 0; i < nrows; i++)
			jw_i64(&w, rows[i].count);
		jw_arr_close(&w);
		jw_obj_close(&w);
		jw_arr_close(&w);
		jw_obj_close(&w);
		jw_newline(&w);
		free(index);
	}
	for (size_t i = 0; i < nrows; i++)
		free(rows[i].frames);
	free(rows);
	for (int64_t i = 0; i < nframes; i++) {
		free(fr[i].label);
		free((char *)fr[i].name);
		free((char *)fr[i].file);
	}
	free(fr);
	tg_store_close(s);
	if (fflush(stdout) != 0 || ferror(stdout))
		tg_die("cannot write %s: %m", o.output ? o.output : "the output");
	return 0;
}
