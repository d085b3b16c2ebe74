/*
 * cmd_bench.c - `timeglass bench`: benchmarks a running app (--url) or one
 * it starts under `timeglass run` (-- CMD...), then grades it.
 *
 * Phases: discover (the app's OpenAPI document, one valid request per
 * operation), probe (negative and boundary cases per operation, four
 * response checks: see loadgen/probe.h), load (loadgen/load.h, per
 * operation, closed loop or at a fixed rate) and score (the scorecard of
 * `timeglass score` for the run that recorded the bench, with latency and
 * throughput from the load phase and bad-input handling from the probe).
 *
 * Request ids: every discover and probe request carries a header
 * X-TimeGlass-Bench: <nonce>-<case number> (load requests: <nonce>-load),
 * which the recorder keeps with the request's headers; after the probe the
 * store is searched for those values, which gives each finding the id of
 * its recorded request (traceback, queries, flame graph in the dashboard).
 *
 * Safety: loopback targets only unless --allow-remote; each phase bounded
 * in requests (--max-cases, --max-requests) and time (--duration,
 * --timeout); redirects are reported, never followed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "common/grow.h"
#include "lib/jsonw.h"
#include "loadgen/load.h"
#include "loadgen/openapi.h"
#include "loadgen/probe.h"
#include "lib/report.h"
#include "lib/store.h"
#include "lib/util.h"

#define MAX_FINDINGS_PER_KEY 3    /* findings kept per (check, operation, status) */
#define SPEC_MAX (16 << 20)       /* bytes of an OpenAPI document */
#define BODY_CAP (1 << 20)        /* response bytes kept for the checks */

void cmd_bench_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass bench [OPTIONS] --url http://127.0.0.1:8000\n"
		   "       timeglass bench [OPTIONS] -- CMD...\n"
		   "\n"
		   "Benchmarks an HTTP app from its OpenAPI document and grades it. With --url the\n"
		   "app is already running (recorded by `timeglass run` or not); with -- CMD the\n"
		   "app is started under `timeglass run`, benchmarked once it listens on --url\n"
		   "(default http://127.0.0.1:8000), and stopped with SIGINT.\n"
		   "\n"
		   "Phases:\n"
		   "  discover  read /openapi.json; one valid request per operation, from examples,\n"
		   "            defaults, --values and the schemas\n"
		   "  probe     per operation, inputs the schema forbids (missing required fields,\n"
		   "            wrong types, out-of-range numbers, bad enums, over-long strings,\n"
		   "            malformed JSON, wrong content type) and edge values it allows (0, -1,\n"
		   "            2^53+1, empty and non-ASCII strings, optional fields left out, a 1 MiB\n"
		   "            body). Findings: server_error (a 5xx), accepted_invalid (a 2xx for\n"
		   "            forbidden input), undocumented_status, response_schema (a 2xx body\n"
		   "            that breaks its documented schema)\n"
		   "  load      per operation, --connections keep-alive connections for --duration\n"
		   "            seconds (closed loop), or --rate requests/s (open loop, latency from\n"
		   "            each request's scheduled time); GET and HEAD only unless --unsafe\n"
		   "  score     the scorecard of `timeglass score` for the recorded run, with\n"
		   "            latency and throughput from the load phase and bad-input handling\n"
		   "            from the probe (the share of forbidden inputs answered with a 4xx)\n"
		   "\n"
		   "Options:\n"
		   "  --url URL          the app (http:// only; loopback unless --allow-remote)\n"
		   "  --openapi FILE     OpenAPI document to use instead of URL/openapi.json\n"
		   "  --values FILE      JSON object: values by parameter or field name (ids, slugs)\n"
		   "  --header 'K: V'    header sent on every request (repeatable), e.g. a token\n"
		   "  --op TEXT          only the operation 'METHOD /route' that is TEXT, or else those\n"
		   "                     whose 'METHOD /route' contains TEXT (repeatable)\n"
		   "  --connections N    load connections (default 8)\n"
		   "  --duration S       load seconds per operation (default 3)\n"
		   "  --rate R           open loop at R requests/s per operation (default: closed loop)\n"
		   "  --unsafe           load POST/PUT/PATCH/DELETE operations too\n"
		   "  --max-cases N      probe cases per operation (default 200)\n"
		   "  --max-requests N   load requests per operation (default 1000000)\n"
		   "  --timeout MS       per request (default 5000)\n"
		   "  --no-probe, --no-load  skip a phase\n"
		   "  --db PATH          store of the recording (default: $TIMEGLASS_DB or\n"
		   "                     .timeglass/timeglass.db)\n"
		   "  --coverage FILE    coverage.py data file for the coverage benchmark\n"
		   "  --json FILE        write the report as JSON ('-' for stdout)\n"
		   "  --markdown FILE    write the report as Markdown\n"
		   "  --fail-under GRADE exit 1 when a graded benchmark is below GRADE (A-F)\n"
		   "  --fail-on CHECK    exit 1 on any finding of CHECK (repeatable): server_error,\n"
		   "                     accepted_invalid, undocumented_status, response_schema\n"
		   "  --allow-remote     allow a target that is not a loopback address\n"
		   "  --startup-timeout S  -- CMD mode: seconds to wait for the app (default 60)\n"
		   "  -q, --quiet        no progress line\n"
		   "  -h, --help         show this help\n"
		   "\n"
		   "Each finding names its request as a curl command line and, when the app is\n"
		   "recorded, the id of its recorded request (timeglass requests, the dashboard).\n"
		   "Exit status: 0, 1 on --fail-under/--fail-on, 2 on bad usage or an unreachable app.\n");
}

struct opts {
	const char *url, *openapi, *values, *db, *coverage, *json, *markdown;
	char extra[8192];                /* --header lines, "K: V\r\n" */
	const char *ops[32];
	int nops;
	int connections;
	double duration, rate;
	int unsafe, no_probe, no_load, allow_remote, quiet;
	size_t max_cases;
	uint64_t max_requests;
	int timeout_ms;
	char fail_under;                 /* 0 or 'A'..'F' */
	int fail_on[LG_CHECK_COUNT];
	int startup_s;
	char **cmd;
};

struct pcase {                       /* one request sent in discover or probe */
	size_t op;
	struct lg_case c;
	int status;
	int error;                       /* transport error (errno) */
	int64_t request_id, run_id;      /* from the store, 0 when not found */
	double ms;
	char *curl;
};

struct finding {
	enum lg_check check;
	size_t pcase;                    /* index into cases */
	char detail[400];
};

struct opstat {                      /* load phase of one operation */
	int loaded;
	struct lg_load_result res;
	char skipped[120];               /* why it was not loaded */
};

struct bench {
	struct opts o;
	struct lg_target t;
	char url_root[320];              /* http://host:port */
	struct lg_spec spec;
	cJSON *values;
	int *selected;                   /* per operation */
	struct pcase *cases;
	size_t ncases, capcases;
	struct finding *findings;
	size_t nfindings, capfindings;
	struct opstat *stats;
	int64_t started_unix_ns;
	char nonce[32];
	int64_t probe_cases, probe_4xx, probe_5xx, probe_2xx;
	int64_t run_id;
	int tty;
};

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ---- progress ------------------------------------------------------------ */

static const char *cur_phase = "", *cur_op = "";

static void progress(struct bench *b, uint64_t done, double rate)
{
	if (!b->tty || b->o.quiet)
		return;
	fprintf(stderr, "\r\033[K%-8s %-40.40s %8" PRIu64 " requests", cur_phase, cur_op, done);
	if (rate > 0)
		fprintf(stderr, "  %8.0f req/s", rate);
	fflush(stderr);
}

static void progress_end(struct bench *b)
{
	if (b->tty && !b->o.quiet)
		fprintf(stderr, "\r\033[K");
}

static void load_progress(void *ctx, uint64_t done, double elapsed)
{
	progress(ctx, done, elapsed > 0 ? (double)done / elapsed : 0);
}

/* ---- helpers --------------------------------------------------------------- */

static char *read_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		tg_fail("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max, f) : 0;
	fclose(f);
	if (!buf) {
		tg_fail("out of memory");
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* An --op TEXT selects the operation whose "METHOD /route" is TEXT exactly
 * when there is one, otherwise every operation whose key contains TEXT. */
static int op_selected(const struct bench *b, const struct lg_op *op)
{
	if (!b->o.nops)
		return 1;
	char key[600];
	snprintf(key, sizeof key, "%s %s", op->method, op->route);
	for (int i = 0; i < b->o.nops; i++) {
		const char *pat = b->o.ops[i];
		int exact = 0;
		for (size_t k = 0; k < b->spec.nops && !exact; k++) {
			char other[600];
			snprintf(other, sizeof other, "%s %s", b->spec.ops[k].method, b->spec.ops[k].route);
			exact = !strcmp(other, pat);
		}
		if (exact ? !strcmp(key, pat) : strstr(key, pat) != NULL)
			return 1;
	}
	return 0;
}

static int safe_method(const char *m)
{
	return !strcmp(m, "GET") || !strcmp(m, "HEAD");
}

static struct pcase *new_case(struct bench *b)
{
	if (TG_GROW(b->cases, b->ncases, b->capcases, 256) < 0)
		tg_die("out of memory");
	struct pcase *p = &b->cases[b->ncases++];
	memset(p, 0, sizeof *p);
	return p;
}

static void add_finding(struct bench *b, enum lg_check check, size_t pc, const char *detail)
{
	const struct pcase *p = &b->cases[pc];
	int same = 0;
	for (size_t i = 0; i < b->nfindings; i++) {
		const struct finding *f = &b->findings[i];
		const struct pcase *q = &b->cases[f->pcase];
		if (f->check == check && q->op == p->op && q->status == p->status)
			same++;
	}
	if (same >= MAX_FINDINGS_PER_KEY)
		return;
	if (TG_GROW(b->findings, b->nfindings, b->capfindings, 64) < 0)
		tg_die("out of memory");
	struct finding *f = &b->findings[b->nfindings++];
	f->check = check;
	f->pcase = pc;
	snprintf(f->detail, sizeof f->detail, "%s", detail);
}

/* Sends one case, runs the checks. */
static void send_case(struct bench *b, size_t opi, struct lg_case *c)
{
	const struct lg_op *op = &b->spec.ops[opi];
	struct pcase *p = new_case(b);
	size_t pc = b->ncases - 1;
	p->op = opi;
	p->c = *c;
	memset(c, 0, sizeof *c);
	char tag[64];
	snprintf(tag, sizeof tag, "%s-%zu", b->nonce, pc);
	struct lg_wire w;
	if (lg_wire_build(op, &p->c, b->t.base, b->t.hostport, b->o.extra, tag, b->url_root, &w) < 0)
		tg_die("out of memory");
	struct lg_exchange x;
	lg_exchange(&b->t, w.data, w.len, !strcmp(op->method, "HEAD"), b->o.timeout_ms, BODY_CAP, &x);
	p->curl = w.curl;
	w.curl = NULL;
	lg_wire_free(&w);
	p->status = x.resp.status;
	p->error = x.error;
	p->ms = (double)x.latency_ns / 1e6;
	if (p->c.negative && p->status) {
		b->probe_cases++;
		b->probe_4xx += p->status >= 400 && p->status < 500;
		b->probe_5xx += p->status >= 500;
		b->probe_2xx += p->status >= 200 && p->status < 300;
	}
	struct lg_finding_detail fd[LG_CHECK_COUNT];
	int nf = lg_check_response(&b->spec, op, &p->c, p->status, x.resp.content_type, x.resp.body, x.resp.body_len,
				   x.resp.body_truncated, fd);
	for (int i = 0; i < nf; i++)
		add_finding(b, fd[i].check, pc, fd[i].detail);
	lg_resp_free(&x.resp);
	/* the case's values are no longer needed; its text (what) stays */
	cJSON_Delete(p->c.params);
	cJSON_Delete(p->c.body);
	free(p->c.raw_body);
	p->c.params = p->c.body = NULL;
	p->c.raw_body = NULL;
}

/* ---- phases ------------------------------------------------------------------- */

static int fetch_spec(struct bench *b)
{
	char *text = NULL;
	if (b->o.openapi) {
		text = read_file(b->o.openapi, SPEC_MAX, NULL);
		if (!text)
			return -1;
	} else {
		char req[10240];
		snprintf(req, sizeof req,
			 "GET %s/openapi.json HTTP/1.1\r\nHost: %s\r\nUser-Agent: timeglass-bench\r\nAccept: application/json\r\n%s\r\n",
			 b->t.base, b->t.hostport, b->o.extra);
		struct lg_exchange x;
		lg_exchange(&b->t, req, strlen(req), 0, b->o.timeout_ms, SPEC_MAX, &x);
		if (x.error || x.resp.status != 200 || !x.resp.body) {
			if (x.error)
				tg_fail("cannot read %s%s/openapi.json: %s", b->url_root, b->t.base, strerror(x.error));
			else
				tg_fail("%s%s/openapi.json answered %d (give the document with --openapi FILE)", b->url_root,
					b->t.base, x.resp.status);
			lg_resp_free(&x.resp);
			return -1;
		}
		text = x.resp.body;
		x.resp.body = NULL;
	}
	char err[256];
	int rc = lg_spec_parse(text, &b->spec, err, sizeof err);
	free(text);
	if (rc < 0)
		return tg_fail("%s", err);
	return 0;
}

static void phase_probe(struct bench *b)
{
	cur_phase = b->o.no_probe ? "discover" : "probe";
	for (size_t i = 0; i < b->spec.nops && !interrupted; i++) {
		if (!b->selected[i])
			continue;
		const struct lg_op *op = &b->spec.ops[i];
		char label[300];
		snprintf(label, sizeof label, "%s %s", op->method, op->route);
		cur_op = label;
		struct lg_case valid;
		if (lg_case_valid(&b->spec, op, b->values, &valid) < 0)
			tg_die("out of memory");
		struct lg_cases cs = {0};
		if (!b->o.no_probe && !op->body_form)
			lg_probe_cases(&b->spec, op, &valid, b->o.max_cases, &cs);
		size_t before = b->ncases;
		send_case(b, i, &valid);
		for (size_t k = 0; k < cs.n && !interrupted; k++) {
			send_case(b, i, &cs.v[k]);
			progress(b, b->ncases - before, 0);
		}
		lg_cases_free(&cs);
	}
	progress_end(b);
}

static void phase_load(struct bench *b)
{
	cur_phase = "load";
	for (size_t i = 0; i < b->spec.nops && !interrupted; i++) {
		struct opstat *st = &b->stats[i];
		if (!b->selected[i])
			continue;
		const struct lg_op *op = &b->spec.ops[i];
		if (!safe_method(op->method) && !b->o.unsafe) {
			snprintf(st->skipped, sizeof st->skipped, "not loaded: %s is not safe (--unsafe loads it)", op->method);
			continue;
		}
		if (op->body_form) {
			snprintf(st->skipped, sizeof st->skipped, "not loaded: form bodies are not generated");
			continue;
		}
		char label[300];
		snprintf(label, sizeof label, "%s %s", op->method, op->route);
		cur_op = label;
		struct lg_case valid;
		if (lg_case_valid(&b->spec, op, b->values, &valid) < 0)
			tg_die("out of memory");
		char tag[64];
		snprintf(tag, sizeof tag, "%s-load", b->nonce);
		struct lg_wire w;
		if (lg_wire_build(op, &valid, b->t.base, b->t.hostport, b->o.extra, tag, b->url_root, &w) < 0)
			tg_die("out of memory");
		lg_case_free(&valid);
		struct lg_raw raw = {w.data, w.len, !strcmp(op->method, "HEAD")};
		struct lg_load_opts lo = {
			.connections = b->o.connections,
			.duration_s = b->o.duration,
			.rate = b->o.rate,
			.max_requests = b->o.max_requests,
			.timeout_ms = b->o.timeout_ms,
			.progress = load_progress,
			.ctx = b,
		};
		st->res.hist = lg_hdr_new();
		if (!st->res.hist)
			tg_die("out of memory");
		char err[LG_ERR_MAX];
		if (lg_load_run(&b->t, &raw, 1, &lo, &st->res, err) < 0)
			snprintf(st->skipped, sizeof st->skipped, "%.110s", err);
		else
			st->loaded = 1;
		lg_wire_free(&w);
	}
	progress_end(b);
}

/* Finds the recorded request of each tagged case; sets b->run_id. */
static void match_requests(struct bench *b, sqlite3 *db)
{
	size_t want = 0;
	for (size_t i = 0; i < b->ncases; i++)
		want += b->cases[i].status != 0;
	if (!want)
		return;
	char pat[64];
	int plen = snprintf(pat, sizeof pat, "X-TimeGlass-Bench: %s-", b->nonce);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, run_id, headers FROM requests WHERE start_unix_ns >= ?1"
			       " AND instr(headers, ?2) > 0",
			       -1, &st, NULL) != SQLITE_OK)
		return;
	int64_t deadline = tg_monotonic_ns() + 10 * (int64_t)1000000000;
	size_t found = 0;
	for (;;) {
		sqlite3_bind_int64(st, 1, b->started_unix_ns - (int64_t)5000000000);
		sqlite3_bind_text(st, 2, pat, plen, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *h = (const char *)sqlite3_column_text(st, 2);
			const char *at = h ? strstr(h, pat) : NULL;
			if (!at)
				continue;
			char *end;
			unsigned long long k = strtoull(at + plen, &end, 10);
			if (end == at + plen || k >= b->ncases || b->cases[k].request_id)
				continue;
			b->cases[k].request_id = sqlite3_column_int64(st, 0);
			b->cases[k].run_id = sqlite3_column_int64(st, 1);
			found++;
		}
		sqlite3_reset(st);
		if (found >= want || tg_monotonic_ns() > deadline || interrupted)
			break;
		usleep(250000);
	}
	sqlite3_finalize(st);
	/* the run: the one most of the cases were recorded in */
	int64_t best = 0;
	size_t best_n = 0;
	for (size_t i = 0; i < b->ncases; i++) {
		int64_t r = b->cases[i].run_id;
		if (!r)
			continue;
		size_t n = 0;
		for (size_t k = 0; k < b->ncases; k++)
			n += b->cases[k].run_id == r;
		if (n > best_n) {
			best_n = n;
			best = r;
		}
	}
	b->run_id = best;
}

/* ---- score ------------------------------------------------------------------ */

static const char *grade_note_load = "from the load phase of timeglass bench";

static void bench_score(struct bench *b, const struct rp_report *r, const struct rp_coverage *cov,
			struct rp_score_item items[RP_BENCH_COUNT])
{
	rp_score(r, cov, items);
	struct lg_hdr *all = lg_hdr_new();
	if (!all)
		tg_die("out of memory");
	double secs = 0;
	uint64_t n5 = 0, nreq = 0;
	for (size_t i = 0; i < b->spec.nops; i++) {
		struct opstat *st = &b->stats[i];
		if (!st->loaded)
			continue;
		lg_hdr_merge(all, st->res.hist);
		secs += st->res.elapsed_s;
		n5 += st->res.status[5];
		nreq += st->res.requests;
	}
	if (all->count) {
		rp_score_set(&items[RP_AVG], RP_AVG, lg_hdr_mean(all) / 1e6, 2, grade_note_load);
		rp_score_set(&items[RP_P90], RP_P90, (double)lg_hdr_percentile(all, 90) / 1e6, 2, grade_note_load);
		rp_score_set(&items[RP_P99], RP_P99, (double)lg_hdr_percentile(all, 99) / 1e6, 2, grade_note_load);
		rp_score_set(&items[RP_RPS], RP_RPS, (double)nreq / secs, 1,
			     b->o.rate > 0 ? "requests/s reached at the offered --rate (open loop)"
					   : "requests/s of the load phase (closed loop), over all loaded operations");
		rp_score_set(&items[RP_5XX], RP_5XX, 100.0 * (double)n5 / (double)nreq, 2, "5xx share of the load phase");
		snprintf(items[RP_5XX].figure, sizeof items[RP_5XX].figure, "%.2f %% (%" PRIu64 " of %" PRIu64 ")",
			 100.0 * (double)n5 / (double)nreq, n5, nreq);
		for (size_t i = 0; i < b->spec.nops; i++) {
			struct opstat *st = &b->stats[i];
			if (!st->loaded || items[RP_RPS].nevidence >= RP_EVIDENCE_MAX)
				continue;
			const struct lg_op *op = &b->spec.ops[i];
			snprintf(items[RP_RPS].evidence[items[RP_RPS].nevidence++], sizeof items[RP_RPS].evidence[0],
				 "%s %s: %.1f req/s, p50 %.2f ms, p99 %.2f ms", op->method, op->route,
				 (double)st->res.requests / st->res.elapsed_s,
				 (double)lg_hdr_percentile(st->res.hist, 50) / 1e6,
				 (double)lg_hdr_percentile(st->res.hist, 99) / 1e6);
		}
	}
	free(all);
	if (b->probe_cases) {
		double pct = 100.0 * (double)b->probe_4xx / (double)b->probe_cases;
		rp_score_set(&items[RP_4XX], RP_4XX, pct, 1,
			     "share of the probe's forbidden inputs answered with a 4xx");
		snprintf(items[RP_4XX].figure, sizeof items[RP_4XX].figure,
			 "%.1f %% (%" PRId64 " of %" PRId64 " bad inputs got a 4xx; %" PRId64 " a 5xx, %" PRId64 " a 2xx)",
			 pct, b->probe_4xx, b->probe_cases, b->probe_5xx, b->probe_2xx);
		for (size_t i = 0; i < b->nfindings && items[RP_4XX].nevidence < RP_EVIDENCE_MAX; i++) {
			const struct finding *f = &b->findings[i];
			if (f->check != LG_SERVER_ERROR && f->check != LG_ACCEPTED_INVALID)
				continue;
			const struct pcase *p = &b->cases[f->pcase];
			const struct lg_op *op = &b->spec.ops[p->op];
			snprintf(items[RP_4XX].evidence[items[RP_4XX].nevidence++], sizeof items[RP_4XX].evidence[0],
				 "%s %s -> %d: %.120s", op->method, op->route, p->status, p->c.what);
		}
	}
}

/* ---- reports ----------------------------------------------------------------- */

static void print_clean(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static double route_db_ms(const struct rp_report *r, const struct lg_op *op)
{
	char key[600];
	snprintf(key, sizeof key, "%s %s", op->method, op->route);
	long k = rp_find_route(r, key);
	if (k < 0 || !r->routes[k].count)
		return -1;
	return (double)r->routes[k].query_ns / 1e6 / (double)r->routes[k].count;
}

static void report_text(struct bench *b, const struct rp_report *r, const struct rp_score_item items[RP_BENCH_COUNT])
{
	printf("timeglass bench %s (%zu operations", b->url_root, b->spec.nops);
	if (b->run_id)
		printf(", recorded as run %" PRId64 ")\n\n", b->run_id);
	else
		printf(", not recorded: no request ids)\n\n");
	printf("%-7s %-34s %9s %9s %9s %9s %6s %8s\n", "METHOD", "ROUTE", "REQ/S", "P50 ms", "P90 ms", "P99 ms", "5XX",
	       "DB ms");
	for (size_t i = 0; i < b->spec.nops; i++) {
		const struct lg_op *op = &b->spec.ops[i];
		const struct opstat *st = &b->stats[i];
		if (!b->selected[i])
			continue;
		if (!st->loaded) {
			printf("%-7s %-34.34s  %s\n", op->method, op->route, st->skipped[0] ? st->skipped : "not loaded");
			continue;
		}
		double db = route_db_ms(r, op);
		char dbs[32];
		if (db >= 0)
			snprintf(dbs, sizeof dbs, "%.2f", db);
		else
			snprintf(dbs, sizeof dbs, "-");
		printf("%-7s %-34.34s %9.1f %9.2f %9.2f %9.2f %6" PRIu64 " %8s\n", op->method, op->route,
		       (double)st->res.requests / st->res.elapsed_s, (double)lg_hdr_percentile(st->res.hist, 50) / 1e6,
		       (double)lg_hdr_percentile(st->res.hist, 90) / 1e6, (double)lg_hdr_percentile(st->res.hist, 99) / 1e6,
		       st->res.status[5], dbs);
		if (st->res.errors)
			printf("%-7s %-34s   %" PRIu64 " errors (%" PRIu64 " timeouts)\n", "", "", st->res.errors,
			       st->res.timeouts);
	}
	if (!b->o.no_probe)
		printf("\nProbe: %" PRId64 " bad inputs, %" PRId64 " answered 4xx, %" PRId64 " 5xx, %" PRId64 " 2xx\n",
		       b->probe_cases, b->probe_4xx, b->probe_5xx, b->probe_2xx);
	printf("\nFindings: %zu\n", b->nfindings);
	for (size_t i = 0; i < b->nfindings; i++) {
		const struct finding *f = &b->findings[i];
		const struct pcase *p = &b->cases[f->pcase];
		const struct lg_op *op = &b->spec.ops[p->op];
		printf("  %-19s %s %s -> %d", lg_check_names[f->check], op->method, op->route, p->status);
		if (p->request_id)
			printf("  (request %" PRId64 ")", p->request_id);
		printf("\n      ");
		print_clean(stdout, f->detail);
		printf("\n      ");
		print_clean(stdout, p->curl);
		printf("\n");
	}
	printf("\nScorecard\n");
	printf("%-26s %-5s %s\n", "BENCHMARK", "GRADE", "FIGURE");
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		const struct rp_score_item *it = &items[i];
		printf("%-26s %-5c ", it->name, it->grade);
		print_clean(stdout, it->figure);
		printf("\n");
		if (!it->measured) {
			printf("%-32s ", "");
			print_clean(stdout, it->note);
			printf("\n");
		}
	}
}

static void json_report(struct bench *b, const struct rp_report *r, const struct rp_score_item items[RP_BENCH_COUNT],
			FILE *out)
{
	struct jw w;
	jw_init(&w, out);
	jw_obj_open(&w);
	jw_key(&w, "url");
	jw_cstr(&w, b->o.url);
	jw_key(&w, "started_unix_ns");
	jw_i64(&w, b->started_unix_ns);
	jw_key(&w, "run_id");
	if (b->run_id)
		jw_i64(&w, b->run_id);
	else
		jw_null(&w);
	jw_key(&w, "mode");
	jw_cstr(&w, b->o.rate > 0 ? "open" : "closed");
	jw_key(&w, "connections");
	jw_i64(&w, b->o.connections);
	rp_jw_num(&w, "duration_s", b->o.duration);
	rp_jw_num(&w, "rate", b->o.rate);
	jw_key(&w, "operations");
	jw_arr_open(&w);
	for (size_t i = 0; i < b->spec.nops; i++) {
		if (!b->selected[i])
			continue;
		const struct lg_op *op = &b->spec.ops[i];
		const struct opstat *st = &b->stats[i];
		jw_obj_open(&w);
		jw_key(&w, "method");
		jw_cstr(&w, op->method);
		jw_key(&w, "route");
		jw_cstr(&w, op->route);
		jw_key(&w, "loaded");
		jw_bool(&w, st->loaded);
		if (!st->loaded) {
			jw_key(&w, "skipped");
			jw_cstr(&w, st->skipped);
			jw_obj_close(&w);
			continue;
		}
		const struct lg_hdr *h = st->res.hist;
		jw_key(&w, "requests");
		jw_u64(&w, st->res.requests);
		rp_jw_num(&w, "rps", (double)st->res.requests / st->res.elapsed_s);
		rp_jw_num(&w, "mean_ms", lg_hdr_mean(h) / 1e6);
		rp_jw_num(&w, "p50_ms", (double)lg_hdr_percentile(h, 50) / 1e6);
		rp_jw_num(&w, "p90_ms", (double)lg_hdr_percentile(h, 90) / 1e6);
		rp_jw_num(&w, "p99_ms", (double)lg_hdr_percentile(h, 99) / 1e6);
		rp_jw_num(&w, "p999_ms", (double)lg_hdr_percentile(h, 99.9) / 1e6);
		rp_jw_num(&w, "max_ms", (double)h->max / 1e6);
		jw_key(&w, "errors");
		jw_u64(&w, st->res.errors);
		jw_key(&w, "timeouts");
		jw_u64(&w, st->res.timeouts);
		rp_jw_num(&w, "elapsed_s", st->res.elapsed_s);
		rp_jw_num(&w, "generator_cpu_us_per_request",
			  st->res.requests ? (double)st->res.cpu_ns / 1e3 / (double)st->res.requests : NAN);
		double db = route_db_ms(r, op);
		rp_jw_num(&w, "db_ms_per_request", db >= 0 ? db : NAN);
		jw_key(&w, "status_counts");
		jw_obj_open(&w);
		for (int s = 0; s < 1000; s++) {
			if (!st->res.status_code[s])
				continue;
			char k[8];
			snprintf(k, sizeof k, "%d", s);
			jw_key(&w, k);
			jw_u64(&w, st->res.status_code[s]);
		}
		jw_obj_close(&w);
		/* the histogram: [upper bound ms, count] of each non-empty bucket */
		jw_key(&w, "histogram");
		jw_arr_open(&w);
		for (size_t k = 0; k < LG_HDR_BUCKETS; k++) {
			if (!h->counts[k])
				continue;
			jw_arr_open(&w);
			char num[32];
			snprintf(num, sizeof num, "%.6f", (double)lg_hdr_highest(k) / 1e6);
			jw_raw(&w, num);
			jw_u64(&w, h->counts[k]);
			jw_arr_close(&w);
		}
		jw_arr_close(&w);
		jw_obj_close(&w);
	}
	jw_arr_close(&w);
	jw_key(&w, "probe");
	jw_obj_open(&w);
	jw_key(&w, "cases");
	jw_i64(&w, b->probe_cases);
	jw_key(&w, "answered_4xx");
	jw_i64(&w, b->probe_4xx);
	jw_key(&w, "server_errors");
	jw_i64(&w, b->probe_5xx);
	jw_key(&w, "accepted_invalid");
	jw_i64(&w, b->probe_2xx);
	jw_key(&w, "requests_sent");
	jw_u64(&w, b->ncases);
	jw_obj_close(&w);
	jw_key(&w, "findings");
	jw_arr_open(&w);
	for (size_t i = 0; i < b->nfindings; i++) {
		const struct finding *f = &b->findings[i];
		const struct pcase *p = &b->cases[f->pcase];
		const struct lg_op *op = &b->spec.ops[p->op];
		jw_obj_open(&w);
		jw_key(&w, "check");
		jw_cstr(&w, lg_check_names[f->check]);
		jw_key(&w, "method");
		jw_cstr(&w, op->method);
		jw_key(&w, "route");
		jw_cstr(&w, op->route);
		jw_key(&w, "status");
		jw_i64(&w, p->status);
		jw_key(&w, "request");
		jw_cstr(&w, p->curl);
		jw_key(&w, "request_id");
		if (p->request_id)
			jw_i64(&w, p->request_id);
		else
			jw_null(&w);
		jw_key(&w, "case");
		jw_cstr(&w, p->c.what);
		jw_key(&w, "detail");
		jw_cstr(&w, f->detail);
		jw_obj_close(&w);
	}
	jw_arr_close(&w);
	jw_key(&w, "score");
	jw_obj_open(&w);
	jw_key(&w, "run_id");
	if (r->run_id)
		jw_i64(&w, r->run_id);
	else
		jw_null(&w);
	jw_key(&w, "requests");
	jw_u64(&w, r->nreqs);
	jw_key(&w, "scorecard");
	rp_score_json(&w, items);
	jw_key(&w, "losses");
	rp_losses_json(&w, &r->losses);
	jw_obj_close(&w);
	jw_obj_close(&w);
	jw_newline(&w);
}

static void md_cell(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputs("\\|", f);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', f);
		else
			fputc(*s, f);
	}
}

static void markdown_report(struct bench *b, const struct rp_report *r, const struct rp_score_item items[RP_BENCH_COUNT],
			    FILE *f)
{
	fprintf(f, "# timeglass bench: %s\n\n", b->url_root);
	if (b->run_id)
		fprintf(f, "Recorded as run %" PRId64 ".\n\n", b->run_id);
	fprintf(f, "## Scorecard\n\n| Benchmark | Grade | Figure |\n|---|---|---|\n");
	for (int i = 0; i < RP_BENCH_COUNT; i++) {
		fprintf(f, "| %s | %c | ", items[i].name, items[i].grade);
		md_cell(f, items[i].figure);
		fprintf(f, " |\n");
	}
	fprintf(f, "\n## Load\n\n| Operation | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | 5xx | errors |\n"
		   "|---|---|---|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < b->spec.nops; i++) {
		const struct opstat *st = &b->stats[i];
		const struct lg_op *op = &b->spec.ops[i];
		if (!b->selected[i])
			continue;
		if (!st->loaded) {
			fprintf(f, "| `%s %s` | %s | | | | | | | |\n", op->method, op->route, st->skipped);
			continue;
		}
		const struct lg_hdr *h = st->res.hist;
		fprintf(f, "| `%s %s` | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %" PRIu64 " | %" PRIu64 " |\n", op->method,
			op->route, (double)st->res.requests / st->res.elapsed_s, (double)lg_hdr_percentile(h, 50) / 1e6,
			(double)lg_hdr_percentile(h, 90) / 1e6, (double)lg_hdr_percentile(h, 99) / 1e6,
			(double)lg_hdr_percentile(h, 99.9) / 1e6, (double)h->max / 1e6, st->res.status[5], st->res.errors);
	}
	fprintf(f, "\n## Probe\n\n%" PRId64 " bad inputs: %" PRId64 " answered 4xx, %" PRId64 " 5xx, %" PRId64 " 2xx.\n",
		b->probe_cases, b->probe_4xx, b->probe_5xx, b->probe_2xx);
	fprintf(f, "\n## Findings (%zu)\n\n", b->nfindings);
	if (b->nfindings)
		fprintf(f, "| Check | Operation | Status | Request id | Detail |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < b->nfindings; i++) {
		const struct finding *fd = &b->findings[i];
		const struct pcase *p = &b->cases[fd->pcase];
		const struct lg_op *op = &b->spec.ops[p->op];
		fprintf(f, "| %s | `%s %s` | %d | ", lg_check_names[fd->check], op->method, op->route, p->status);
		if (p->request_id)
			fprintf(f, "%" PRId64, p->request_id);
		fprintf(f, " | ");
		md_cell(f, fd->detail);
		fprintf(f, "<br>`");
		md_cell(f, p->curl);
		fprintf(f, "` |\n");
	}
	(void)r;
}

static int write_to(const char *path, void (*fn)(struct bench *, const struct rp_report *,
						 const struct rp_score_item *, FILE *),
		    struct bench *b, const struct rp_report *r, const struct rp_score_item *items)
{
	if (!strcmp(path, "-")) {
		fn(b, r, items, stdout);
		return 0;
	}
	FILE *f = fopen(path, "w");
	if (!f) {
		tg_warn("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	fn(b, r, items, f);
	if (fclose(f) != 0) {
		tg_warn("cannot write %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- -- CMD ------------------------------------------------------------------ */

static pid_t start_app(struct bench *b, const char *db)
{
	int argc = 0;
	while (b->o.cmd[argc])
		argc++;
	char **argv = calloc((size_t)argc + 6, sizeof *argv);
	if (!argv)
		tg_die("out of memory");
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		tg_die("cannot find the timeglass binary: %s", strerror(errno));
	self[n] = '\0';
	int k = 0;
	argv[k++] = self;
	argv[k++] = "run";
	argv[k++] = "--db";
	argv[k++] = (char *)db;
	argv[k++] = "--";
	for (int i = 0; i < argc; i++)
		argv[k++] = b->o.cmd[i];
	argv[k] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		tg_die("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		execv(self, argv);
		_exit(127);
	}
	free(argv);
	return pid;
}

static int stop_app(pid_t pid)
{
	kill(pid, SIGINT);
	int status = 0;
	for (int i = 0; i < 300; i++) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

/* ---- main --------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv)
{
	enum {
		OPT_URL = CLI_OWN, OPT_OPENAPI, OPT_VALUES, OPT_HEADER, OPT_OP, OPT_CONN, OPT_DUR, OPT_RATE,
		OPT_MAXCASES, OPT_MAXREQ, OPT_TIMEOUT, OPT_FAILUNDER, OPT_FAILON, OPT_STARTUP,
	};
	static struct bench b;
	struct opts *o = &b.o;
	const struct option lopts[] = {
		{"url", required_argument, NULL, OPT_URL},
		{"openapi", required_argument, NULL, OPT_OPENAPI},
		{"values", required_argument, NULL, OPT_VALUES},
		{"header", required_argument, NULL, OPT_HEADER},
		{"op", required_argument, NULL, OPT_OP},
		{"connections", required_argument, NULL, OPT_CONN},
		{"duration", required_argument, NULL, OPT_DUR},
		{"rate", required_argument, NULL, OPT_RATE},
		{"unsafe", no_argument, &o->unsafe, 1},
		{"max-cases", required_argument, NULL, OPT_MAXCASES},
		{"max-requests", required_argument, NULL, OPT_MAXREQ},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"no-probe", no_argument, &o->no_probe, 1},
		{"no-load", no_argument, &o->no_load, 1},
		CLI_OPT_DB,
		CLI_OPT_COVERAGE,
		CLI_OPT_JSON_FILE,
		CLI_OPT_MARKDOWN,
		{"fail-under", required_argument, NULL, OPT_FAILUNDER},
		{"fail-on", required_argument, NULL, OPT_FAILON},
		{"allow-remote", no_argument, &o->allow_remote, 1},
		{"startup-timeout", required_argument, NULL, OPT_STARTUP},
		{"quiet", no_argument, NULL, 'q'},
		CLI_OPT_HELP_END,
	};
	memset(&b, 0, sizeof b);
	*o = (struct opts){.connections = 8, .duration = 3, .max_cases = 200, .max_requests = 1000000,
			   .timeout_ms = 5000, .startup_s = 60};
	struct cli_args a = {"bench", cmd_bench_usage, "+:hq", lopts, argc, argv, .db = &o->db,
			     .json_file = &o->json, .markdown = &o->markdown, .coverage = &o->coverage};
	int c;
	while ((c = cli_next(&a)) != -1) {
		switch (c) {
		case OPT_URL: o->url = optarg; break;
		case OPT_OPENAPI: o->openapi = optarg; break;
		case OPT_VALUES: o->values = optarg; break;
		case OPT_HEADER: {
			const char *colon = strchr(optarg, ':');
			if (!colon || colon == optarg || strpbrk(optarg, "\r\n"))
				tg_die_usage("bench", "--header wants 'Name: value', not '%.64s'", optarg);
			size_t used = strlen(o->extra);
			if (used + strlen(optarg) + 3 >= sizeof o->extra)
				tg_die_usage("bench", "too many --header bytes");
			snprintf(o->extra + used, sizeof o->extra - used, "%s\r\n", optarg);
			break;
		}
		case OPT_OP:
			if (o->nops >= 32)
				tg_die_usage("bench", "at most 32 --op");
			o->ops[o->nops++] = optarg;
			break;
		case OPT_CONN: o->connections = (int)tg_number_or_die("--connections", optarg, 1, 10000); break;
		case OPT_DUR:
		case OPT_RATE: {
			char *end;
			double v = strtod(optarg, &end);
			if (*end || !(v > 0) || v > 1e7)
				tg_die_usage("bench", "%s wants a positive number, not '%.32s'",
					     c == OPT_DUR ? "--duration" : "--rate", optarg);
			if (c == OPT_DUR)
				o->duration = v;
			else
				o->rate = v;
			break;
		}
		case OPT_MAXCASES: o->max_cases = tg_number_or_die("--max-cases", optarg, 0, 100000); break;
		case OPT_MAXREQ: o->max_requests = tg_number_or_die("--max-requests", optarg, 1, UINT64_MAX / 2); break;
		case OPT_TIMEOUT: o->timeout_ms = (int)tg_number_or_die("--timeout", optarg, 10, 3600000); break;
		case OPT_FAILUNDER: {
			char g = (char)(optarg[0] & ~0x20);
			if (optarg[1] || g < 'A' || g > 'F')
				tg_die_usage("bench", "--fail-under wants a grade A-F, not '%.16s'", optarg);
			o->fail_under = g;
			break;
		}
		case OPT_FAILON: {
			int k;
			for (k = 0; k < LG_CHECK_COUNT; k++)
				if (!strcmp(optarg, lg_check_names[k]))
					break;
			if (k == LG_CHECK_COUNT)
				tg_die_usage("bench", "unknown check '%.32s' (server_error, accepted_invalid, "
						      "undocumented_status, response_schema)", optarg);
			o->fail_on[k] = 1;
			break;
		}
		case OPT_STARTUP: o->startup_s = (int)tg_number_or_die("--startup-timeout", optarg, 1, 3600); break;
		case 'q': o->quiet = 1; break;
		}
	}
	if (optind < argc) {
		if (strcmp(argv[optind - 1], "--") || optind >= argc)
			tg_die_usage("bench", "unexpected argument '%.64s' (a command goes after --)", argv[optind]);
		o->cmd = argv + optind;
	}
	if (!o->url) {
		if (!o->cmd)
			tg_die_usage("bench", "give the app's --url, or a command to start after --");
		o->url = "http://127.0.0.1:8000";
	}
	const char *db = tg_default_db(o->db);
	char err[LG_ERR_MAX];
	if (lg_target_parse(o->url, &b.t, err) < 0)
		tg_die_usage("bench", "%s", err);
	if (!b.t.loopback && !o->allow_remote)
		tg_die_usage("bench", "%s is not a loopback address: benchmarking another machine needs --allow-remote",
			     b.t.host);
	snprintf(b.url_root, sizeof b.url_root, "http://%s", b.t.hostport);
	if (o->values) {
		char *text = read_file(o->values, 4 << 20, NULL);
		if (!text)
			tg_die_usage("bench", "%s", tg_error());
		b.values = cJSON_Parse(text);
		free(text);
		if (!cJSON_IsObject(b.values))
			tg_die_usage("bench", "%s: not a JSON object of values by name", o->values);
	}
	b.tty = isatty(STDERR_FILENO);
	struct sigaction sa = {.sa_handler = on_sigint};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pid_t app = 0;
	if (o->cmd) {
		if (tg_mkdirs_for(db) < 0)
			tg_die("%s", tg_error());
		app = start_app(&b, db);
		int64_t deadline = tg_monotonic_ns() + (int64_t)o->startup_s * 1000000000;
		for (;;) {
			if (lg_wait_listening(&b.t, 500) == 0)
				break;
			int st;
			if (waitpid(app, &st, WNOHANG) == app)
				tg_die("the app exited before it listened on %s", b.url_root);
			if (tg_monotonic_ns() > deadline || interrupted) {
				stop_app(app);
				tg_die("the app did not listen on %s within %d s", b.url_root, o->startup_s);
			}
			usleep(200000);
		}
	}

	int rc = 0;
	if (fetch_spec(&b) < 0) {
		tg_warn("%s", tg_error());
		if (app)
			stop_app(app);
		return TG_EXIT_USAGE;
	}
	b.selected = calloc(b.spec.nops + 1, sizeof *b.selected);
	b.stats = calloc(b.spec.nops + 1, sizeof *b.stats);
	if (!b.selected || !b.stats)
		tg_die("out of memory");
	size_t nsel = 0;
	for (size_t i = 0; i < b.spec.nops; i++)
		nsel += (b.selected[i] = op_selected(&b, &b.spec.ops[i]));
	if (!nsel) {
		tg_warn("no operation to benchmark (%zu in the document%s)", b.spec.nops, o->nops ? ", none matches --op" : "");
		if (app)
			stop_app(app);
		return TG_EXIT_USAGE;
	}
	b.started_unix_ns = tg_realtime_ns();
	snprintf(b.nonce, sizeof b.nonce, "%08x%04x", (unsigned)(b.started_unix_ns / 1000 & 0xffffffff),
		 (unsigned)getpid() & 0xffff);

	phase_probe(&b);
	if (!o->no_load && !interrupted)
		phase_load(&b);

	/* the recording */
	struct rp_report r;
	memset(&r, 0, sizeof r);
	struct tg_store *s = access(db, F_OK) == 0 ? tg_store_open(db, TG_STORE_READ) : NULL;
	if (s) {
		match_requests(&b, tg_store_db(s));
		if (b.run_id && rp_load(tg_store_db(s), b.run_id, NULL, &r) < 0) {
			tg_warn("run %" PRId64 ": %s", b.run_id, tg_error());
			rp_free(&r);
			memset(&r, 0, sizeof r);
		}
		tg_store_close(s);
	}
	if (!b.run_id && !o->quiet)
		fprintf(stderr, "timeglass bench: no request of this bench is in %s: findings have no request ids and "
				"CPU, memory and DB time are not measured (run the app under `timeglass run`)\n",
			db);
	struct rp_coverage cov;
	rp_coverage_read(o->coverage, &cov);
	struct rp_score_item items[RP_BENCH_COUNT];
	bench_score(&b, &r, &cov, items);

	if (!o->json || strcmp(o->json, "-"))
		report_text(&b, &r, items);
	if (o->json && write_to(o->json, json_report, &b, &r, items) < 0)
		rc = TG_EXIT_USAGE;
	if (o->markdown && write_to(o->markdown, markdown_report, &b, &r, items) < 0)
		rc = TG_EXIT_USAGE;
	/* beside the store, for the dashboard's Bench view (server/bench.c) */
	if (b.run_id) {
		char path[4200];
		const char *slash = strrchr(db, '/');
		snprintf(path, sizeof path, "%.*s%sbench/run-%" PRId64 ".json", slash ? (int)(slash - db) : 0, db,
			 slash ? "/" : "", b.run_id);
		if (tg_mkdirs_for(path) == 0)
			write_to(path, json_report, &b, &r, items);
	}

	if (o->fail_under) {
		for (int i = 0; i < RP_BENCH_COUNT; i++)
			if (items[i].grade != '-' && items[i].grade > o->fail_under) {
				fprintf(stderr, "timeglass bench: %s graded %c, under %c\n", items[i].name, items[i].grade,
					o->fail_under);
				rc = rc ? rc : 1;
			}
	}
	for (size_t i = 0; i < b.nfindings; i++)
		if (o->fail_on[b.findings[i].check]) {
			fprintf(stderr, "timeglass bench: %s found (--fail-on)\n", lg_check_names[b.findings[i].check]);
			rc = rc ? rc : 1;
			break;
		}
	if (interrupted) {
		fprintf(stderr, "timeglass bench: interrupted; the report covers what ran\n");
		rc = rc ? rc : 130;
	}
	if (app)
		stop_app(app);
	rp_free(&r);
	for (size_t i = 0; i < b.ncases; i++)
		free(b.cases[i].curl);
	free(b.cases);
	free(b.findings);
	for (size_t i = 0; i < b.spec.nops; i++)
		free(b.stats[i].res.hist);
	free(b.stats);
	free(b.selected);
	cJSON_Delete(b.values);
	lg_spec_free(&b.spec);
	return rc;
}
