/*
 * collector/otlp_stream.c - the OTLP/HTTP exporter thread of the collector
 * and its configuration (see otlp_stream.h).
 *
 * Workload: thousands of requests a second, each a SERVER span with a few
 * CLIENT spans; an endpoint on this host or the network that may be slow,
 * restart, or be absent for the whole run.
 */
#include "collector/otlp_stream.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/jsonw.h"
#include "lib/otlp.h"
#include "lib/store.h"
#include "lib/util.h"

#define TICK_NS 1000000000LL           /* export period; also how old a request is before it goes */
#define BATCH_MAX 512                  /* requests per POST */
#define BATCH_MIN 16
#define BODY_BIG (4u << 20)            /* a body above this halves the batch, one below a quarter of it doubles it */
#define ATTEMPTS 5                     /* per batch */
#define BACKOFF_NS 500000000LL         /* before the second attempt; doubles */
#define BACKOFF_MAX_NS 8000000000LL
#define ATTEMPT_NS 10000000000LL       /* one POST, connection to answer */
#define TRACES_PATH "/v1/traces"

/* ---- configuration ---------------------------------------------------- */

/* Whether s ends with suffix. */
static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

static int hexval(int ch)
{
	return isdigit(ch) ? ch - '0' : isxdigit(ch) ? tolower(ch) - 'a' + 10 : -1;
}

/* Appends "key: value\r\n" for one "key=value" item of an OTLP headers
 * variable (spaces around both trimmed, the value URL-decoded) to *out
 * (NUL-terminated; left as it was on failure).
 * Returns 0, or -1 when the item is not a header this client can send. */
static int add_header(char **out, size_t *len, const char *item, size_t n)
{
	static const char *const own[] = {"host", "content-type", "content-length", "connection",
					  "transfer-encoding"};
	const char *eq = memchr(item, '=', n);
	if (!eq)
		return -1;
	const char *k = item, *ke = eq, *v = eq + 1, *ve = item + n;
	while (k < ke && isspace((unsigned char)*k))
		k++;
	while (ke > k && isspace((unsigned char)ke[-1]))
		ke--;
	while (v < ve && isspace((unsigned char)*v))
		v++;
	while (ve > v && isspace((unsigned char)ve[-1]))
		ve--;
	if (k == ke)
		return -1;
	for (const char *p = k; p < ke; p++)
		if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
			return -1;
	for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
		if ((size_t)(ke - k) == strlen(own[i]) && !strncasecmp(k, own[i], (size_t)(ke - k)))
			return -1;
	char *p = realloc(*out, *len + (size_t)(ke - k) + (size_t)(ve - v) + 5);
	if (!p)
		return -1;
	*out = p;
	size_t o = *len;
	memcpy(p + o, k, (size_t)(ke - k));
	o += (size_t)(ke - k);
	p[o++] = ':';
	p[o++] = ' ';
	for (const char *q = v; q < ve; q++) {
		int ch = (unsigned char)*q;
		if (ch == '%' && ve - q >= 3 && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
			ch = hexval(q[1]) * 16 + hexval(q[2]);
			q += 2;
		}
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			p[*len] = '\0'; /* the item is dropped */
			return -1;
		}
		p[o++] = (char)ch;
	}
	p[o++] = '\r';
	p[o++] = '\n';
	p[o] = '\0';
	*len = o;
	return 0;
}

/* The header lines of an OTLP headers variable; bad items are warned about
 * and left out. NULL when there are none. */
static char *parse_headers(const char *name, const char *value)
{
	char *out = NULL;
	size_t len = 0;
	for (const char *p = value; *p;) {
		size_t n = strcspn(p, ",");
		int blank = strspn(p, " \t") >= n;
		if (!blank && add_header(&out, &len, p, n) < 0)
			tg_warn("%s: '%.*s' is not a header to send (want key=value: a token key, not Host, "
				"Content-Type, Content-Length, Connection or Transfer-Encoding, and a value without "
				"control characters); left out", name, (int)(n > 80 ? 80 : n), p);
		p += n + (p[n] == ',');
	}
	return out;
}

int tg_otlp_conf_read(const char *opt_endpoint, const char *opt_service, struct tg_otlp_conf *c)
{
	memset(c, 0, sizeof *c);
	const char *v;
	int from_env = 0;
	size_t cap = sizeof c->url;
	if (opt_endpoint) {
		if (!*opt_endpoint)
			return 0;
		c->from = "--otlp-endpoint";
		if ((size_t)snprintf(c->url, cap, "%s%s", opt_endpoint,
				     ends_with(opt_endpoint, TRACES_PATH) ? "" : ends_with(opt_endpoint, "/") ? "v1/traces"
													 : TRACES_PATH) >= cap)
			return tg_fail("--otlp-endpoint: URL too long");
	} else if ((v = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && *v) {
		c->from = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
		from_env = 1;
		tg_strlcpy(c->url, v, cap);
	} else if ((v = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) && *v) {
		c->from = "OTEL_EXPORTER_OTLP_ENDPOINT";
		from_env = 1;
		snprintf(c->url, cap, "%s%s", v, ends_with(v, "/") ? "v1/traces" : TRACES_PATH);
	} else {
		return 0;
	}
	if (from_env) {
		const char *proto = getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
		if (!proto || !*proto)
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL");
		if (proto && *proto && strcmp(proto, "http/json") && strcmp(proto, "http/protobuf")) {
			tg_warn("%s is set, for OTLP protocol '%.32s': timeglass streams OTLP/HTTP only, so it does not "
				"stream spans (use --otlp-endpoint to give it an OTLP/HTTP endpoint)", c->from, proto);
			return 0;
		}
	}
	if (tg_http_url_parse(c->url, &c->target) < 0) {
		if (!from_env)
			return tg_fail("--otlp-endpoint: %s", tg_error());
		tg_warn("%s: %s; not streaming spans", c->from, tg_error());
		return 0;
	}
	const char *hname = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
	if (!(v = getenv(hname)) || !*v)
		v = getenv(hname = "OTEL_EXPORTER_OTLP_HEADERS");
	if (v && *v)
		c->headers = parse_headers(hname, v);
	v = opt_service ? opt_service : getenv("OTEL_SERVICE_NAME");
	if (opt_service && (!*opt_service || strlen(opt_service) >= sizeof c->service)) {
		tg_otlp_conf_free(c);
		return tg_fail("--service-name: want 1 to %zu bytes", sizeof c->service - 1);
	}
	if (v)
		tg_strlcpy(c->service, v, sizeof c->service);
	return 1;
}

void tg_otlp_conf_free(struct tg_otlp_conf *c)
{
	free(c->headers);
	c->headers = NULL;
}

/* ---- the exporter thread ---------------------------------------------- */

struct tg_otlp_stream {
	const struct tg_otlp_conf *c;
	int64_t run_id;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;         /* CLOCK_MONOTONIC */
	int finishing;             /* under mu */
	int64_t final_deadline;    /* atomic: CLOCK_MONOTONIC end of the last sends, INT64_MAX before */
	int64_t attempt_deadline;  /* atomic: of the POST under way */
	int64_t sent, lost, lost_untaken; /* atomic: spans */
	int failing;               /* atomic: the last POST failed (the end of the run then waits for no other) */
	/* the thread's own */
	struct tg_store *store;
	int64_t cursor;            /* last request id handled (sent or counted) */
	int batch_max;             /* requests per batch, adapted to body sizes */
	int batch_cap;             /* at most this many: lowered by 413 answers */
	int down;                  /* the last batch could not be delivered */
	int warned_encode;
	char db_path[];            /* the store's */
};

static int64_t load64(const int64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* Lowers *p to v if v is lower. */
static void lower64(int64_t *p, int64_t v)
{
	int64_t cur = load64(p);
	while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
}

/* Waits until the CLOCK_MONOTONIC time until or until the run's end is
 * announced. Returns whether it is. */
static int wait_until(struct tg_otlp_stream *s, int64_t until)
{
	struct timespec ts = {.tv_sec = until / 1000000000LL, .tv_nsec = until % 1000000000LL};
	pthread_mutex_lock(&s->mu);
	while (!s->finishing && tg_monotonic_ns() < until)
		if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
			break;
	int f = s->finishing;
	pthread_mutex_unlock(&s->mu);
	return f;
}

static int finishing(struct tg_otlp_stream *s)
{
	pthread_mutex_lock(&s->mu);
	int f = s->finishing;
	pthread_mutex_unlock(&s->mu);
	return f;
}

static int retryable(int status)
{
	return status < 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

/* POSTs one batch, with retries. Returns 0 when the endpoint took it, 413
 * when it was too large for the endpoint and splittable (more than one
 * request), else -1. */
static int deliver(struct tg_otlp_stream *s, const char *body, size_t len, int splittable)
{
	int64_t delay = BACKOFF_NS;
	int status = -1;
	char why[TG_ERR_MAX + 32] = "no time left at the end of the run";
	for (int attempt = 1;; attempt++) {
		int64_t now = tg_monotonic_ns(), fin = load64(&s->final_deadline);
		if (now >= fin)
			break;
		__atomic_store_n(&s->attempt_deadline, now + ATTEMPT_NS < fin ? now + ATTEMPT_NS : fin, __ATOMIC_SEQ_CST);
		lower64(&s->attempt_deadline, load64(&s->final_deadline));
		status = tg_http_post(&s->c->target, s->c->headers, "application/json", body, len, &s->attempt_deadline);
		__atomic_store_n(&s->failing, !(status >= 200 && status <= 299), __ATOMIC_SEQ_CST);
		if (status >= 200 && status <= 299) {
			if (s->down)
				fprintf(stderr, "timeglass: OTLP export to %s works again (%" PRId64
					" spans counted lost so far)\n", s->c->url, load64(&s->lost));
			s->down = 0;
			return 0;
		}
		if (status < 0)
			tg_strlcpy(why, tg_error(), sizeof why);
		else
			snprintf(why, sizeof why, "it answered %d", status);
		/* Too large: the caller sends it again in smaller batches. */
		if (status == 413 && splittable)
			return 413;
		/* At the end, an endpoint that cannot be reached stays so. */
		if (!retryable(status) || attempt >= ATTEMPTS || (status < 0 && finishing(s)))
			break;
		int64_t until = tg_monotonic_ns() + delay;
		wait_until(s, until < load64(&s->final_deadline) ? until : load64(&s->final_deadline));
		delay = delay * 2 < BACKOFF_MAX_NS ? delay * 2 : BACKOFF_MAX_NS;
	}
	if (!s->down)
		tg_warn("OTLP export to %s failed (%s): spans are counted as lost until it takes them", s->c->url, why);
	s->down = 1;
	return -1;
}

/* The newest request id of the store (of any run: ids only grow, and the
 * encoder keeps to its run); or, with count, sets *count (and returns) the
 * number of requests of the run with ids in (after, upto]. -1 on errors. */
static int64_t newest_id(struct tg_otlp_stream *s, int64_t after, int64_t upto, int64_t *count)
{
	sqlite3_stmt *st;
	sqlite3 *db = tg_store_db(s->store);
	int64_t v = -1;
	if (count)
		*count = -1;
	if (sqlite3_prepare_v2(db,
			       count ? "SELECT count(*) FROM requests WHERE id > ? AND id <= ? AND run_id = ?"
				     : "SELECT coalesce(max(id), 0) FROM requests",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (count) {
		sqlite3_bind_int64(st, 1, after);
		sqlite3_bind_int64(st, 2, upto);
		sqlite3_bind_int64(st, 3, s->run_id);
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (count)
		*count = v;
	return v;
}

/* Encodes and sends (or, when sending is over, counts as lost) the
 * requests with ids in (cursor, upto]. Stops early on store errors. */
static void export_upto(struct tg_otlp_stream *s, int64_t upto)
{
	sqlite3 *db = tg_store_db(s->store);
	struct tg_otlp_opts oo = {.service_name = s->c->service[0] ? s->c->service : NULL};
	while (s->cursor < upto) {
		int64_t n;
		char err[TG_ERR_MAX];
		/* One snapshot for the count and the batch (if BEGIN fails, as
		 * within a transaction left open, the COMMIT below ends it) */
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		newest_id(s, s->cursor, upto, &n);
		if (n <= 0) {
			sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
			if (n == 0)
				s->cursor = upto;
			return;
		}
		char *body = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&body, &len);
		if (!f) {
			sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
			return;
		}
		struct jw w;
		jw_init(&w, f);
		int64_t last = s->cursor;
		long nspans = 0;
		int m = n < s->batch_max ? (int)n : s->batch_max;
		int rc = tg_otlp_write(db, &oo, s->run_id, 0, s->cursor, m, &w,
				       &last, &nspans, err, sizeof err);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		if (fclose(f) != 0 && rc == 0) {
			rc = -1;
			snprintf(err, sizeof err, "out of memory");
		}
		if (rc < 0 || last <= s->cursor) {
			if (!s->warned_encode++)
				tg_warn("OTLP export: %s", rc < 0 ? err : "the encoder skipped requests");
			free(body);
			if (rc < 0)
				return; /* tried again next time */
			s->cursor = upto;
			return;
		}
		int64_t fin = load64(&s->final_deadline);
		int got = fin != INT64_MAX && (s->down || tg_monotonic_ns() >= fin) ? -1 : deliver(s, body, len, m > 1);
		free(body);
		if (got == 413) {
			/* the same requests again, fewer at a time from now on */
			s->batch_cap = s->batch_max = m / 2;
			continue;
		}
		int ok = got == 0;
		__atomic_add_fetch(ok ? &s->sent : &s->lost, nspans, __ATOMIC_SEQ_CST);
		if (!ok)
			__atomic_add_fetch(&s->lost_untaken, nspans, __ATOMIC_SEQ_CST);
		s->cursor = last;
		if (len > BODY_BIG && s->batch_max > BATCH_MIN)
			s->batch_max /= 2;
		else if (len < BODY_BIG / 4 && s->batch_max < s->batch_cap)
			s->batch_max = s->batch_max * 2 < s->batch_cap ? s->batch_max * 2 : s->batch_cap;
	}
}

static void *exporter_main(void *arg)
{
	struct tg_otlp_stream *s = arg;
	pthread_setname_np(pthread_self(), "tg-otlp");
	s->store = tg_store_open(s->db_path, TG_STORE_READ);
	if (!s->store) {
		tg_warn("OTLP export: %s; not streaming spans", tg_error());
		return NULL;
	}
	/* Each round sends what the previous round saw stored: at least a
	 * second old, so queries settled late and route names are in. */
	int64_t seen = s->cursor;
	for (int64_t next = tg_monotonic_ns() + TICK_NS;; next += TICK_NS) {
		int fin = wait_until(s, next);
		int64_t newest = newest_id(s, 0, 0, NULL);
		export_upto(s, fin ? newest : seen);
		if (newest >= 0)
			seen = newest;
		if (fin)
			break;
		if (next < tg_monotonic_ns() - TICK_NS)
			next = tg_monotonic_ns();
	}
	tg_store_close(s->store);
	s->store = NULL;
	return NULL;
}

struct tg_otlp_stream *tg_otlp_stream_start(const struct tg_otlp_conf *c, const char *db_path, int64_t run_id,
					    sqlite3 *db)
{
	/* The run has no requests yet: all there are belong to older runs. */
	sqlite3_stmt *st;
	int64_t before = 0;
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM requests", -1, &st, NULL) != SQLITE_OK) {
		tg_fail("reading the store: %s", sqlite3_errmsg(db));
		return NULL;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		before = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	size_t plen = strlen(db_path) + 1;
	struct tg_otlp_stream *s = calloc(1, sizeof *s + plen);
	if (!s) {
		tg_fail("out of memory");
		return NULL;
	}
	memcpy(s->db_path, db_path, plen);
	s->cursor = before;
	s->c = c;
	s->run_id = run_id;
	s->batch_max = s->batch_cap = BATCH_MAX;
	s->final_deadline = INT64_MAX;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&s->mu, NULL);
	/* Signals stay with the collector's main thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&s->thread, NULL, exporter_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		tg_fail("cannot start the OTLP exporter: %s", strerror(rc));
		tg_otlp_stream_free(s);
		return NULL;
	}
	return s;
}

int64_t tg_otlp_stream_take_lost(struct tg_otlp_stream *s)
{
	return s ? __atomic_exchange_n(&s->lost_untaken, 0, __ATOMIC_SEQ_CST) : 0;
}

void tg_otlp_stream_finish(struct tg_otlp_stream *s, int64_t budget_ns)
{
	if (!s)
		return;
	/* An endpoint that does not answer now gets no more time. */
	int64_t deadline = tg_monotonic_ns() + (__atomic_load_n(&s->failing, __ATOMIC_SEQ_CST) ? 0 : budget_ns);
	pthread_mutex_lock(&s->mu);
	s->finishing = 1;
	__atomic_store_n(&s->final_deadline, deadline, __ATOMIC_SEQ_CST);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	lower64(&s->attempt_deadline, deadline);
	pthread_join(s->thread, NULL);
	s->thread = 0;
}

void tg_otlp_stream_totals(struct tg_otlp_stream *s, int64_t *sent, int64_t *lost)
{
	*sent = s ? load64(&s->sent) : 0;
	*lost = s ? load64(&s->lost) : 0;
}

void tg_otlp_stream_free(struct tg_otlp_stream *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}
