/*
 * lib/otlp.c - OpenTelemetry trace export of the store (OTLP/JSON); see otlp.h.
 *
 * Workload: a whole run at once (`timeglass export`), or a few hundred
 * requests at a time while a run goes on (the streaming exporter). Each
 * request costs three indexed look-ups (the request, its queries, its
 * outbound calls); nothing of a run is held in memory but the list of the
 * selected request ids.
 *
 * Encoding (OTLP/JSON, opentelemetry-proto's JSON mapping with the OTLP
 * exceptions): lowerCamelCase keys, trace and span ids as lowercase hex
 * (not base64), 64-bit integers (times, intValue) as decimal strings, enums
 * as integers. Span kinds: 2 SERVER, 3 CLIENT; status code 2 ERROR.
 *
 * Ids: SipHash-2-4 of (kind, row id) under the run's trace_key (a random
 * 16 bytes kept in the store), so that they look random, differ from run to
 * run, and come out the same from every export of the same rows.
 */
#include "lib/otlp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_config.h"

/* ---- ids ---------------------------------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
	v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
	v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* SipHash-2-4 of m[0..n) under key. */
static uint64_t siphash(const uint8_t key[16], const uint8_t *m, size_t n)
{
	uint64_t k0 = le64(key), k1 = le64(key + 8);
	uint64_t v[4] = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
			 k1 ^ 0x7465646279746573ull};
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = le64(m + i);
		v[3] ^= w;
		sip_round(v);
		sip_round(v);
		v[0] ^= w;
	}
	uint64_t last = (uint64_t)n << 56;
	for (size_t k = 0; i + k < n; k++)
		last |= (uint64_t)m[i + k] << (8 * k);
	v[3] ^= last;
	sip_round(v);
	sip_round(v);
	v[0] ^= last;
	v[2] ^= 0xff;
	for (int r = 0; r < 4; r++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* What an id is derived for; part of the hashed message. */
enum id_of {
	ID_TRACE_HI = 'T', /* trace id of a request, first 8 bytes */
	ID_TRACE_LO = 't', /* ... last 8 */
	ID_SERVER = 'R',   /* the request's SERVER span */
	ID_QUERY = 'Q',    /* a queries row */
	ID_CALL = 'H',     /* a spans row (outbound HTTP call) */
	ID_KEY = 'K',      /* the key of a run that has none (see run_key) */
};

/* A non-zero 64-bit id for (of, row) under key. */
static uint64_t keyed_id(const uint8_t key[16], enum id_of of, int64_t row)
{
	uint8_t m[9];
	m[0] = (uint8_t)of;
	for (int i = 0; i < 8; i++)
		m[1 + i] = (uint8_t)((uint64_t)row >> (8 * i));
	uint64_t h = siphash(key, m, sizeof m);
	return h ? h : 1;
}

static void hex16(char out[17], uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = digits[v & 15];
	out[16] = '\0';
}

/* 1 if s[0..n) is exactly want lowercase hex digits, not all zero (a W3C
 * trace or parent id as the collector stores it). */
static int valid_hex_id(const char *s, size_t n, size_t want)
{
	int nonzero = 0;
	if (!s || n != want)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

/* ---- service name ------------------------------------------------------- */

static int ident_char(char c, int first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* 1 if tok[0..n) is an ASGI app reference "module.path:attr" (attr may be
 * a factory call "attr()"); *mod_len: the module part's length. */
static int app_ref(const char *tok, size_t n, size_t *mod_len)
{
	const char *colon = memchr(tok, ':', n);
	if (!colon || colon == tok)
		return 0;
	size_t m = (size_t)(colon - tok);
	for (size_t i = 0, start = 1; i < m; i++) {
		if (tok[i] == '.') {
			if (start)
				return 0;
			start = 1;
		} else if (!ident_char(tok[i], (int)start)) {
			return 0;
		} else {
			start = 0;
		}
	}
	if (tok[m - 1] == '.' || m + 1 >= n || !ident_char(tok[m + 1], 1))
		return 0;
	*mod_len = m;
	return 1;
}

/* 1 if the program tok[0..n) (its base name) only launches another:
 * an interpreter or a runner, whose next argument names the application. */
static int launcher(const char *tok, size_t n)
{
	static const char *const names[] = {"env", "uv", "poetry", "pipenv", "run", "exec", "pdm", "hatch"};
	if (n >= 6 && !memcmp(tok, "python", 6))
		return 1;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i]) == n && !memcmp(tok, names[i], n))
			return 1;
	return 0;
}

char *tg_otlp_default_service(const char *command, char *out, size_t n)
{
	const char *best = NULL;
	size_t best_len = 0;
	const char *p = command ? command : "";
	/* First choice: the module of an app reference anywhere in the line. */
	for (const char *q = p; *q;) {
		while (*q == ' ')
			q++;
		size_t len = strcspn(q, " ");
		size_t m;
		if (len && *q != '-' && app_ref(q, len, &m)) {
			best = q;
			best_len = m;
			break;
		}
		q += len;
	}
	/* Else the first program or script that is not a launcher (or the
	 * module of `python -m`), without directory or ".py". */
	for (const char *q = p; !best && *q;) {
		while (*q == ' ')
			q++;
		size_t len = strcspn(q, " ");
		const char *base = q;
		for (size_t i = 0; i < len; i++)
			if (q[i] == '/')
				base = q + i + 1;
		size_t bl = len - (size_t)(base - q);
		if (bl > 3 && !memcmp(base + bl - 3, ".py", 3))
			bl -= 3;
		if (bl && *q != '-' && !memchr(q, '=', len) && !launcher(base, bl)) {
			best = base;
			best_len = bl;
		}
		q += len;
	}
	if (!best || !best_len) {
		best = "timeglass";
		best_len = strlen(best);
	}
	if (n)
		snprintf(out, n, "%.*s", (int)(best_len > 200 ? 200 : best_len), best);
	return out;
}

/* ---- JSON pieces -------------------------------------------------------- */

struct ctx {
	sqlite3 *db;
	struct jw *w;
	uint8_t key[16];
	sqlite3_stmt *req, *qry, *call;
	long nspans;
};

static void jw_i64_str(struct jw *w, int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, v);
	jw_cstr(w, buf);
}

/* Opens {"key": k, "value": {TYPE: and leaves the value to the caller. */
static void attr_open(struct jw *w, const char *k, const char *type)
{
	jw_obj_open(w);
	jw_key(w, "key");
	jw_cstr(w, k);
	jw_key(w, "value");
	jw_obj_open(w);
	jw_key(w, type);
}

static void attr_close(struct jw *w)
{
	jw_obj_close(w);
	jw_obj_close(w);
}

/* A string attribute; nothing when s is NULL. */
static void attr_str(struct jw *w, const char *k, const char *s, size_t n)
{
	if (!s)
		return;
	attr_open(w, k, "stringValue");
	jw_str(w, s, n);
	attr_close(w);
}

static void attr_cstr(struct jw *w, const char *k, const char *s)
{
	attr_str(w, k, s, s ? strlen(s) : 0);
}

static void attr_int(struct jw *w, const char *k, int64_t v)
{
	attr_open(w, k, "intValue");
	jw_i64_str(w, v);
	attr_close(w);
}

static void attr_bool(struct jw *w, const char *k, int v)
{
	attr_open(w, k, "boolValue");
	jw_bool(w, v != 0);
	attr_close(w);
}

/* error.type of a failed HTTP exchange: its status code, as a string. */
static void attr_status_text(struct jw *w, int64_t status)
{
	attr_open(w, "error.type", "stringValue");
	jw_i64_str(w, status);
	attr_close(w);
}

/* Text column i (NULL: none), its length in *n. */
static const char *col_text(sqlite3_stmt *st, int i, size_t *n)
{
	*n = (size_t)sqlite3_column_bytes(st, i);
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(st, i);
}

/* Integer column i as an attribute, unless it is NULL. */
static void attr_col_int(struct jw *w, const char *k, sqlite3_stmt *st, int i)
{
	if (sqlite3_column_type(st, i) != SQLITE_NULL)
		attr_int(w, k, sqlite3_column_int64(st, i));
}

/* Writes a span's fields up to its open "attributes" array. */
static void span_open(struct ctx *c, const char *trace, uint64_t span, const char *parent, const char *name,
		      size_t name_len, int kind, int64_t start_ns, int64_t dur_ns)
{
	struct jw *w = c->w;
	char id[17];
	hex16(id, span);
	jw_obj_open(w);
	jw_key(w, "traceId");
	jw_cstr(w, trace);
	jw_key(w, "spanId");
	jw_cstr(w, id);
	if (parent) {
		jw_key(w, "parentSpanId");
		jw_cstr(w, parent);
	}
	jw_key(w, "name");
	jw_str(w, name, name_len);
	jw_key(w, "kind");
	jw_i64(w, kind);
	jw_key(w, "startTimeUnixNano");
	jw_i64_str(w, start_ns);
	jw_key(w, "endTimeUnixNano");
	jw_i64_str(w, start_ns + (dur_ns > 0 ? dur_ns : 0));
	jw_key(w, "attributes");
	jw_arr_open(w);
	c->nspans++;
}

/* Ends the span after its attributes (and events) were closed; error:
 * status ERROR with msg. */
static void span_end(struct ctx *c, int error, const char *msg, size_t msg_len)
{
	struct jw *w = c->w;
	if (error) {
		jw_key(w, "status");
		jw_obj_open(w);
		if (msg && msg_len) {
			jw_key(w, "message");
			jw_str(w, msg, msg_len);
		}
		jw_key(w, "code");
		jw_i64(w, 2);
		jw_obj_close(w);
	}
	jw_obj_close(w);
}

/* code.* attributes of a call site "file:line function". */
static void attr_call_site(struct jw *w, const char *s, size_t n)
{
	size_t colon = 0, end = 0;
	if (!s)
		return;
	for (size_t i = 0; i < n; i++) {
		size_t j = i + 1;
		if (s[i] != ':')
			continue;
		while (j < n && s[j] >= '0' && s[j] <= '9')
			j++;
		if (j > i + 1 && (j == n || s[j] == ' ')) {
			colon = i;
			end = j;
		}
	}
	if (!end) {
		attr_str(w, "code.function", s, n);
		return;
	}
	attr_str(w, "code.filepath", s, colon);
	attr_int(w, "code.lineno", strtoll(s + colon + 1, NULL, 10));
	if (end + 1 < n)
		attr_str(w, "code.function", s + end + 1, n - end - 1);
}

/* ---- spans -------------------------------------------------------------- */

enum { R_ID, R_START, R_DUR, R_METHOD, R_PATH, R_QUERY, R_ROUTE, R_VERSION, R_STATUS, R_CLIENT, R_FORWARDED,
       R_ERROR, R_EXCEPTION, R_TRACE, R_PARENT };
static const char req_sql[] =
	"SELECT id, start_unix_ns, duration_ns, method, path, query_string, route, http_version, status,"
	" client_addr, forwarded_for, error, exception, trace_id, parent_span_id FROM requests WHERE id = ?";

enum { Q_ID, Q_START, Q_DUR, Q_SYSTEM, Q_DATABASE, Q_SQL, Q_ROWS, Q_ERROR, Q_SITE, Q_DUP, Q_N1, Q_KIND, Q_EXEC };
static const char qry_sql[] =
	"SELECT id, start_unix_ns, duration_ns, db_system, database, sql, rows, error, call_site, duplicate,"
	" n_plus_one, kind, executions FROM queries WHERE request_id = ? ORDER BY start_unix_ns, id";

enum { C_ID, C_START, C_DUR, C_METHOD, C_HOST, C_PATH, C_STATUS, C_TLS, C_ERROR, C_SITE };
static const char call_sql[] =
	"SELECT id, start_unix_ns, duration_ns, method, host, path, status, tls, error, call_site FROM spans"
	" WHERE request_id = ? AND kind = 'http_client' ORDER BY start_unix_ns, id";

/* The client's address and port of a stored "ip:port", "[ip6]:port" or
 * "unix" as attributes prefixed by pre ("client" or "network.peer"). */
static void attr_addr(struct jw *w, const char *pre, const char *a, size_t n)
{
	char k[32];
	const char *colon = n ? memrchr(a, ':', n) : NULL;
	size_t host = colon ? (size_t)(colon - a) : n;
	snprintf(k, sizeof k, "%s.address", pre);
	if (host >= 2 && a[0] == '[' && a[host - 1] == ']')
		attr_str(w, k, a + 1, host - 2);
	else
		attr_str(w, k, a, host);
	if (colon && colon + 1 < a + n) {
		snprintf(k, sizeof k, "%s.port", pre);
		attr_int(w, k, strtoll(colon + 1, NULL, 10));
	}
}

/* The exception event of a stored exception text: "Type: message", then
 * the traceback. */
static void exception_event(struct jw *w, const char *s, size_t n, int64_t ts)
{
	const char *nl = memchr(s, '\n', n);
	size_t head = nl ? (size_t)(nl - s) : n;
	const char *sep = NULL;
	for (size_t i = 0; i + 1 < head && !sep; i++)
		if (s[i] == ':' && s[i + 1] == ' ')
			sep = s + i;
	jw_obj_open(w);
	jw_key(w, "timeUnixNano");
	jw_i64_str(w, ts);
	jw_key(w, "name");
	jw_cstr(w, "exception");
	jw_key(w, "attributes");
	jw_arr_open(w);
	attr_str(w, "exception.type", s, sep ? (size_t)(sep - s) : head);
	if (sep)
		attr_str(w, "exception.message", sep + 2, head - (size_t)(sep + 2 - s));
	if (nl && head + 1 < n)
		attr_str(w, "exception.stacktrace", nl + 1, n - head - 1);
	jw_arr_close(w);
	jw_obj_close(w);
}

/* The first word of sql, upper-cased (db.operation.name): 0 if none. */
static size_t sql_operation(const char *sql, size_t n, char *out, size_t cap)
{
	size_t i = 0, k = 0;
	while (i < n && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '('))
		i++;
	for (; i < n && k + 1 < cap && ident_char(sql[i], 1); i++)
		out[k++] = (char)(sql[i] >= 'a' && sql[i] <= 'z' ? sql[i] - 32 : sql[i]);
	out[k] = '\0';
	return (i < n && ident_char(sql[i], 0)) ? 0 : k; /* a word too long, or with digits: none */
}

/* The CLIENT span of the queries row st is on. */
static void query_span(struct ctx *c, sqlite3_stmt *st, const char *trace, const char *parent)
{
	struct jw *w = c->w;
	size_t sl, dl, ql, el, cl, kl;
	const char *sys = col_text(st, Q_SYSTEM, &sl), *dbname = col_text(st, Q_DATABASE, &dl);
	const char *sql = col_text(st, Q_SQL, &ql), *err = col_text(st, Q_ERROR, &el);
	const char *site = col_text(st, Q_SITE, &cl), *kind = col_text(st, Q_KIND, &kl);
	char op[24];
	size_t opl = sql ? sql_operation(sql, ql, op, sizeof op) : 0;
	span_open(c, trace, keyed_id(c->key, ID_QUERY, sqlite3_column_int64(st, Q_ID)), parent,
		  opl ? op : sys ? sys : "sql", opl ? opl : sys ? sl : 3, 3, sqlite3_column_int64(st, Q_START),
		  sqlite3_column_int64(st, Q_DUR));
	attr_str(w, "db.system", sys, sl);
	attr_str(w, "db.system.name", sys, sl);
	attr_str(w, "db.namespace", dbname, dl);
	attr_str(w, "db.query.text", sql, ql);
	if (opl)
		attr_str(w, "db.operation.name", op, opl);
	if (sqlite3_column_int64(st, Q_EXEC) > 1)
		attr_col_int(w, "db.operation.batch.size", st, Q_EXEC);
	if (!err)
		attr_col_int(w, "db.response.returned_rows", st, Q_ROWS);
	/* PostgreSQL errors are stored as "SQLSTATE message". */
	size_t code = 0;
	while (err && sys && !strcmp(sys, "postgresql") && code < el && code < 5 &&
	       ((err[code] >= '0' && err[code] <= '9') || (err[code] >= 'A' && err[code] <= 'Z')))
		code++;
	if (code == 5 && (el == 5 || err[5] == ' ')) {
		attr_str(w, "db.response.status_code", err, 5);
		attr_str(w, "error.type", err, 5);
	} else if (err) {
		attr_cstr(w, "error.type", "_OTHER");
	}
	attr_call_site(w, site, cl);
	attr_bool(w, "timeglass.n_plus_one", sqlite3_column_int(st, Q_N1));
	attr_bool(w, "timeglass.duplicate", sqlite3_column_int(st, Q_DUP));
	attr_bool(w, "timeglass.housekeeping", kind && !strcmp(kind, "housekeeping"));
	attr_col_int(w, "timeglass.query.id", st, Q_ID);
	jw_arr_close(w);
	span_end(c, err != NULL, err, el);
}

/* The CLIENT span of the spans row (an outbound call) st is on. */
static void call_span(struct ctx *c, sqlite3_stmt *st, const char *trace, const char *parent)
{
	struct jw *w = c->w;
	size_t ml, hl, pl, el, cl;
	const char *method = col_text(st, C_METHOD, &ml), *host = col_text(st, C_HOST, &hl);
	const char *path = col_text(st, C_PATH, &pl), *err = col_text(st, C_ERROR, &el);
	const char *site = col_text(st, C_SITE, &cl);
	int64_t status = sqlite3_column_int64(st, C_STATUS);
	span_open(c, trace, keyed_id(c->key, ID_CALL, sqlite3_column_int64(st, C_ID)), parent,
		  method ? method : "HTTP", method ? ml : 4, 3, sqlite3_column_int64(st, C_START),
		  sqlite3_column_int64(st, C_DUR));
	attr_str(w, "http.request.method", method, ml);
	if (host) {
		char *url = NULL;
		size_t ul = 0;
		FILE *f = open_memstream(&url, &ul);
		if (f) {
			fprintf(f, "%s://%.*s%.*s", sqlite3_column_int(st, C_TLS) ? "https" : "http", (int)hl,
				host, (int)(path ? pl : 0), path ? path : "");
			fclose(f);
			attr_str(w, "url.full", url, ul);
		}
		free(url);
		attr_addr(w, "server", host, hl);
	}
	if (status)
		attr_int(w, "http.response.status_code", status);
	if (err)
		attr_cstr(w, "error.type", "_OTHER");
	else if (status >= 400)
		attr_status_text(w, status);
	attr_call_site(w, site, cl);
	jw_arr_close(w);
	span_end(c, err || status >= 400, err, el);
}

/* Runs st (a children query) for request and writes each row with span. */
static int children(struct ctx *c, sqlite3_stmt *st, int64_t request, const char *trace, const char *parent,
		    void (*span)(struct ctx *, sqlite3_stmt *, const char *, const char *))
{
	int rc;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, request);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		span(c, st, trace, parent);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int write_request(struct ctx *c, int64_t id)
{
	sqlite3_stmt *st = c->req;
	struct jw *w = c->w;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW)
		return -1;
	size_t ml, pl, ql, rl, vl, al, fl, el, xl, tl, pal;
	const char *method = col_text(st, R_METHOD, &ml), *path = col_text(st, R_PATH, &pl);
	const char *query = col_text(st, R_QUERY, &ql), *route = col_text(st, R_ROUTE, &rl);
	const char *version = col_text(st, R_VERSION, &vl), *client = col_text(st, R_CLIENT, &al);
	const char *fwd = col_text(st, R_FORWARDED, &fl), *error = col_text(st, R_ERROR, &el);
	const char *exc = col_text(st, R_EXCEPTION, &xl), *tp_trace = col_text(st, R_TRACE, &tl);
	const char *tp_parent = col_text(st, R_PARENT, &pal);
	int64_t status = sqlite3_column_int64(st, R_STATUS);
	int64_t start = sqlite3_column_int64(st, R_START), dur = sqlite3_column_int64(st, R_DUR);

	/* The trace the request joined (a valid traceparent), else its own. */
	char trace[33], parent_buf[17], self[17];
	const char *parent = NULL;
	if (valid_hex_id(tp_trace, tl, 32)) {
		memcpy(trace, tp_trace, 32);
		trace[32] = '\0';
		if (valid_hex_id(tp_parent, pal, 16)) {
			memcpy(parent_buf, tp_parent, 17);
			parent = parent_buf;
		}
	} else {
		hex16(trace, keyed_id(c->key, ID_TRACE_HI, id));
		hex16(trace + 16, keyed_id(c->key, ID_TRACE_LO, id));
	}
	uint64_t span = keyed_id(c->key, ID_SERVER, id);
	hex16(self, span);

	char name[512];
	const char *what = route ? route : path ? path : "";
	size_t wl = route ? rl : path ? pl : 0;
	int k = snprintf(name, sizeof name, "%.*s%s%.*s", (int)(method ? ml : 4), method ? method : "HTTP",
			 wl ? " " : "", (int)(wl > 400 ? 400 : wl), what);
	span_open(c, trace, span, parent, name, k < 0 ? 0 : (size_t)k >= sizeof name ? sizeof name - 1 : (size_t)k,
		  2, start, dur);
	attr_str(w, "http.request.method", method, ml);
	attr_str(w, "url.path", path, pl);
	if (query && ql)
		attr_str(w, "url.query", query, ql);
	attr_str(w, "http.route", route, rl);
	if (status)
		attr_int(w, "http.response.status_code", status);
	if (version && vl > 5 && !memcmp(version, "HTTP/", 5)) {
		attr_cstr(w, "network.protocol.name", "http");
		attr_str(w, "network.protocol.version", version + 5, vl - 5);
	}
	/* client.*: the client (behind a proxy: the one it forwarded for);
	 * network.peer.*: the socket's peer. */
	if (client && strcmp(client, "unix"))
		attr_addr(w, "network.peer", client, al);
	if (fwd)
		attr_str(w, "client.address", fwd, fl);
	else if (client && strcmp(client, "unix"))
		attr_addr(w, "client", client, al);
	if (status >= 500)
		attr_status_text(w, status);
	else if (error)
		attr_str(w, "error.type", error, el);
	attr_int(w, "timeglass.request.id", id);
	jw_arr_close(w);
	if (exc && xl) {
		jw_key(w, "events");
		jw_arr_open(w);
		exception_event(w, exc, xl, start + (dur > 0 ? dur : 0));
		jw_arr_close(w);
	}
	span_end(c, status >= 500, NULL, 0);
	if (children(c, c->qry, id, trace, self, query_span) < 0)
		return -1;
	return children(c, c->call, id, trace, self, call_span);
}

/* ---- the request -------------------------------------------------------- */

/* The run's key (runs.trace_key); a run without one (a store written by
 * hand) gets one derived from its id and start, stable but guessable. */
static int run_key(sqlite3 *db, int64_t run, uint8_t key[16], char *service, size_t sn, char *host, size_t hn,
		   const struct tg_otlp_opts *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT trace_key, command, hostname, started_unix_ns FROM runs WHERE id = ?", -1,
			       &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, run);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_finalize(st);
		return rc == SQLITE_DONE ? 1 : -1;
	}
	if (sqlite3_column_bytes(st, 0) == 16 && sqlite3_column_type(st, 0) == SQLITE_BLOB) {
		memcpy(key, sqlite3_column_blob(st, 0), 16);
	} else {
		static const uint8_t zero[16];
		uint64_t a = keyed_id(zero, ID_KEY, run), b = keyed_id(zero, ID_KEY, sqlite3_column_int64(st, 3));
		for (int i = 0; i < 8; i++) {
			key[i] = (uint8_t)(a >> (8 * i));
			key[8 + i] = (uint8_t)(b >> (8 * i));
		}
	}
	if (o && o->service_name)
		snprintf(service, sn, "%s", o->service_name);
	else
		tg_otlp_default_service((const char *)sqlite3_column_text(st, 1), service, sn);
	const char *h = (const char *)sqlite3_column_text(st, 2);
	if (o && o->host_name)
		snprintf(host, hn, "%s", o->host_name);
	else if (h && *h)
		snprintf(host, hn, "%s", h);
	else if (gethostname(host, hn) != 0 || !host[0])
		snprintf(host, hn, "%s", "unknown");
	host[hn - 1] = '\0';
	sqlite3_finalize(st);
	return 0;
}

struct sel {
	int64_t id, pid;
};

/* The ids (and pids) of the selected requests, in id order, into *out. */
static int select_requests(sqlite3 *db, int64_t run, int64_t request, int64_t after, int max, struct sel **out,
			   size_t *n)
{
	sqlite3_stmt *st;
	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, pid FROM requests WHERE (?1 > 0 AND id = ?1)"
			       " OR (?1 <= 0 AND run_id = ?2 AND id > ?3) ORDER BY id LIMIT ?4",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, request);
	sqlite3_bind_int64(st, 2, run);
	sqlite3_bind_int64(st, 3, after);
	sqlite3_bind_int64(st, 4, max > 0 ? max : -1);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct sel *p = realloc(*out, ncap * sizeof *p);
			if (!p) {
				rc = SQLITE_NOMEM;
				break;
			}
			*out = p;
			cap = ncap;
		}
		(*out)[*n].id = sqlite3_column_int64(st, 0);
		(*out)[(*n)++].pid = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void resource(struct jw *w, const char *service, const char *host, int64_t pid)
{
	jw_key(w, "resource");
	jw_obj_open(w);
	jw_key(w, "attributes");
	jw_arr_open(w);
	attr_cstr(w, "service.name", service);
	attr_cstr(w, "host.name", host);
	attr_int(w, "process.pid", pid);
	attr_cstr(w, "telemetry.sdk.name", "timeglass");
	attr_cstr(w, "telemetry.sdk.version", TG_VERSION);
	jw_arr_close(w);
	jw_obj_close(w);
	jw_key(w, "scopeSpans");
	jw_arr_open(w);
	jw_obj_open(w);
	jw_key(w, "scope");
	jw_obj_open(w);
	jw_key(w, "name");
	jw_cstr(w, "timeglass");
	jw_key(w, "version");
	jw_cstr(w, TG_VERSION);
	jw_obj_close(w);
	jw_key(w, "spans");
	jw_arr_open(w);
}

int tg_otlp_write(sqlite3 *db, const struct tg_otlp_opts *o, int64_t run_id, int64_t request_id,
                  int64_t after_id, int max_requests, struct jw *w, int64_t *last_id, long *nspans,
                  char *err, size_t errlen)
{
	struct ctx c = {.db = db, .w = w};
	struct sel *sel = NULL;
	size_t n = 0;
	char service[256], host[256];
	int rc = -1;
	const char *what = "reading requests";
	*last_id = after_id;
	*nspans = 0;
	if (errlen)
		err[0] = '\0';

	if (request_id > 0) {
		sqlite3_stmt *st;
		what = "reading the request";
		if (sqlite3_prepare_v2(db, "SELECT run_id FROM requests WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(st, 1, request_id);
		int src = sqlite3_step(st);
		run_id = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_finalize(st);
		if (src != SQLITE_ROW && src != SQLITE_DONE)
			goto fail;
		if (src == SQLITE_DONE) {
			snprintf(err, errlen, "no request %" PRId64 " in the store", request_id);
			return -1;
		}
	}
	what = "reading the run";
	int k = run_key(db, run_id, c.key, service, sizeof service, host, sizeof host, o);
	if (k < 0)
		goto fail;
	if (k > 0) {
		snprintf(err, errlen, "no run %" PRId64 " in the store", run_id);
		return -1;
	}
	what = "reading requests";
	if (select_requests(db, run_id, request_id, after_id, max_requests, &sel, &n) < 0 ||
	    sqlite3_prepare_v2(db, req_sql, -1, &c.req, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, qry_sql, -1, &c.qry, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, call_sql, -1, &c.call, NULL) != SQLITE_OK)
		goto fail;

	jw_obj_open(w);
	jw_key(w, "resourceSpans");
	jw_arr_open(w);
	/* One ResourceSpans per process, in the order of their first request;
	 * a written request's pid is set to 0. */
	for (size_t i = 0; i < n; i++) {
		int64_t pid = sel[i].pid;
		if (!pid)
			continue;
		jw_obj_open(w);
		resource(w, service, host, pid);
		for (size_t j = i; j < n; j++) {
			if (sel[j].pid != pid)
				continue;
			sel[j].pid = 0;
			if (write_request(&c, sel[j].id) < 0)
				goto fail;
		}
		jw_arr_close(w); /* spans */
		jw_obj_close(w); /* scopeSpans[0] */
		jw_arr_close(w); /* scopeSpans */
		jw_obj_close(w); /* resourceSpans[i] */
	}
	jw_arr_close(w);
	jw_obj_close(w);
	if (n)
		*last_id = sel[n - 1].id;
	*nspans = c.nspans;
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
out:
	sqlite3_finalize(c.req);
	sqlite3_finalize(c.qry);
	sqlite3_finalize(c.call);
	free(sel);
	return rc;
}
