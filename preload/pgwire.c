/*
 * pgwire.c - PostgreSQL protocol v3 client-side parser (pgwire.h).
 *
 * Workload: asyncpg and psycopg 3 connections, thousands of queries per
 * second per process, most of them extended-protocol batches
 * (Parse/Bind/Describe/Execute/Sync in one write) answered in one read. Each
 * direction is a small state machine over message headers; the bodies we
 * need are copied into a fixed buffer (capped), all others are skipped.
 * Queries in flight wait in a FIFO (pipelining); a Sync marker in the FIFO
 * closes each batch at the matching ReadyForQuery. The caller's context
 * (scope and call site) is asked for once per write, not per message: a
 * write is the work of one caller at one moment.
 */
#include "pgwire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO_V3 196608u
#define SSL_REQUEST 80877103u
#define GSSENC_REQUEST 80877104u
#define CANCEL_REQUEST 80877102u

#define STMTS_MAX 256    /* prepared statement names remembered per connection */
#define PORTALS_MAX 8    /* named portals remembered */
#define QUEUE_MAX 256    /* queries and syncs in flight */
#define ERR_MAX 512      /* bytes of "SQLSTATE message" */
#define DB_MAX 128
#define FE_EXTRA 512     /* bytes of a frontend message kept beyond the SQL cap */
#define BE_KEEP 1024     /* bytes of a backend message body kept */
#define MSG_MAX (1u << 30) /* larger length fields are not PostgreSQL */
#define BIND_KEEP 512    /* bytes of a Bind body kept (names only) */
#define BIND_KEEP_PARAMS 8192 /* ... with parameter capture on */
#define TYPES_MAX 64     /* parameter types remembered per statement */
#define DESC_MAX 16      /* Describe(statement) messages awaiting their answer */
#define PORTAL_NAME_MAX 64
#define TEXT_VALUE_MAX 200 /* bytes of one rendered text value */
#define HEX_VALUE_MAX 32   /* bytes of one binary value of unknown type rendered as hex */

enum qkind { Q_SIMPLE = 1, Q_EXT = 2, Q_SYNC = 3 };

struct qent {
	uint8_t kind;
	uint8_t done;          /* Q_EXT: completed and emitted */
	uint8_t failed;
	uint8_t sql_truncated;
	uint8_t params_known;  /* params_hash covers every execution */
	uint8_t batch_cont;    /* continues a batch already emitted */
	char *sql;             /* malloc'd, NULL if unknown */
	size_t sql_len;
	uint64_t start_ns;
	int64_t rows, datarows;
	int has_tag_rows;
	uint32_t executions;   /* Q_EXT: Executes merged into this entry */
	uint32_t remaining;    /* of them, not complete yet */
	uint64_t params_hash;
	uint64_t scope;
	uint16_t site_len;
	char site[TG_PG_SITE_MAX];
	uint16_t err_len;
	char err[ERR_MAX];
	char *params;          /* rendered Bind values (capture on), malloc'd */
	size_t params_len;
};

struct stmt {
	uint64_t hash;         /* of the name */
	char *name;
	char *sql;
	size_t sql_len;
	int truncated;
	uint32_t *types;       /* parameter type OIDs (capture on), malloc'd */
	unsigned ntypes;
};

struct dir {
	uint8_t hdr[5];
	unsigned hdr_got, hdr_need; /* 5, or 4 for an untyped startup message, or 1 for an SSL answer */
	uint8_t type;
	uint32_t body_len, body_got; /* body bytes (length field minus 4) */
	uint8_t *buf;                /* kept prefix of the body */
	size_t keep, kept;           /* bytes to keep of this body / kept so far */
	size_t cap;
	uint64_t bhash;              /* Bind: hash of the body past the two names, */
	uint64_t bword;              /* ... taken 8 bytes at a time: the bytes of */
	unsigned bwlen;              /* ... the word not yet full */
	unsigned bnul;               /* Bind: NULs seen (names end at the second) */
};

struct tg_pgwire {
	size_t sql_max;
	int startup;                 /* expecting an untyped (startup) frontend message */
	int ssl_answer;              /* expecting the one-byte answer to SSLRequest (1) or GSSENC (2) */
	int dead;                    /* returned UNTRACK or ENCRYPTED */
	struct dir fe, be;
	char db[DB_MAX];
	size_t db_len;
	struct stmt stmts[STMTS_MAX];
	unsigned nstmts, next_evict;
	char *unnamed_portal_stmt;   /* statement name bound to the unnamed portal (malloc'd) */
	char *portals[PORTALS_MAX][2]; /* named portal -> statement name */
	unsigned next_portal;
	struct stmt *batch_parse;    /* last Parse of the current batch, for errors before any Execute */
	int parse_ctx_pending;       /* a Parse was sent and no Execute since: take its context at Sync/Flush */
	uint64_t parse_scope;        /* context of the last Parse-only batch */
	uint64_t parse_ns;           /* when its Sync/Flush was sent */
	uint16_t parse_site_len;
	char parse_site[TG_PG_SITE_MAX];
	struct qent *q[QUEUE_MAX];
	unsigned qhead, qcount;
	/* Parameter capture. */
	int params_on;
	char *bind_params;           /* values of the last Bind (TG_PG_PARAMS_MAX bytes) */
	size_t bind_params_len;
	int bind_valid;              /* they belong to the portal bind_portal */
	char bind_portal[PORTAL_NAME_MAX];
	size_t bind_portal_len;
	struct {
		char *name;
		unsigned batch;
	} desc[DESC_MAX];            /* Describe('S', name) sent, answer not yet read */
	unsigned dhead, dcount;
	unsigned fe_syncs, be_syncs; /* Syncs sent / their ReadyForQuery read */
	/* Values of the last Bind, hashed (always). */
	uint64_t bind_hash;
	int bind_hash_valid;
	char bind_hash_portal[PORTAL_NAME_MAX];
	size_t bind_hash_portal_len;
	/* A batch that only prepared (Parse without Execute, then Sync or
	 * Flush): the next execution on the connection, if of that statement
	 * and by the same caller, began with its Parse. */
	uint64_t parse_first_ns;     /* first Parse of the batch being written */
	int prep_valid;
	char *prep_name;             /* statement name (malloc'd) */
	uint64_t prep_ns;
	/* The caller's context, asked once per tg_pgwire_feed() call. */
	int ctx_have;
	uint64_t ctx_scope;
	uint16_t ctx_site_len;
	char ctx_site[TG_PG_SITE_MAX];
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- hashing Bind values (streamed, word by word) ---- */

static inline uint64_t mix_word(uint64_t h, uint64_t w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 32);
}

static void bhash_bytes(struct dir *d, const uint8_t *p, size_t n)
{
	while (n && d->bwlen) {
		d->bword |= (uint64_t)*p++ << (8 * d->bwlen);
		n--;
		if (++d->bwlen == 8) {
			d->bhash = mix_word(d->bhash, d->bword);
			d->bword = 0;
			d->bwlen = 0;
		}
	}
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
			     (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
		d->bhash = mix_word(d->bhash, w);
	}
	while (n--)
		d->bword |= (uint64_t)*p++ << (8 * d->bwlen++);
}

/* The hash of the whole Bind body once it is in. */
static uint64_t bhash_final(const struct dir *d)
{
	return mix_word(mix_word(d->bhash, d->bword), d->bwlen + 1);
}

static uint64_t hash_name(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

int tg_pgwire_sniff(const uint8_t *buf, size_t n)
{
	if (n < 8)
		return 0;
	uint32_t len = be32(buf), code = be32(buf + 4);
	if (code == SSL_REQUEST || code == GSSENC_REQUEST || code == CANCEL_REQUEST)
		return len == 8 || len == 16;
	return (code >> 16) == 3 && len >= 8 && len < 10000;
}

struct tg_pgwire *tg_pgwire_new(size_t sql_max)
{
	struct tg_pgwire *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->sql_max = sql_max;
	w->startup = 1;
	w->fe.cap = sql_max + FE_EXTRA;
	w->be.cap = BE_KEEP;
	w->fe.buf = malloc(w->fe.cap);
	w->be.buf = malloc(w->be.cap);
	if (!w->fe.buf || !w->be.buf) {
		tg_pgwire_free(w);
		return NULL;
	}
	w->fe.hdr_need = 4;
	w->be.hdr_need = 5;
	return w;
}

void tg_pgwire_capture_params(struct tg_pgwire *w, int on)
{
	if (on && !w->bind_params)
		w->bind_params = malloc(TG_PG_PARAMS_MAX);
	if (on && w->bind_params && w->fe.cap < BIND_KEEP_PARAMS && !w->fe.kept) {
		uint8_t *buf = realloc(w->fe.buf, BIND_KEEP_PARAMS);
		if (buf) {
			w->fe.buf = buf;
			w->fe.cap = BIND_KEEP_PARAMS;
		}
	}
	w->params_on = on && w->bind_params;
}

static void qent_free(struct qent *e)
{
	if (e) {
		free(e->sql);
		free(e->params);
		free(e);
	}
}

void tg_pgwire_free(struct tg_pgwire *w)
{
	if (!w)
		return;
	for (unsigned i = 0; i < w->nstmts; i++) {
		free(w->stmts[i].name);
		free(w->stmts[i].sql);
		free(w->stmts[i].types);
	}
	for (unsigned i = 0; i < w->dcount; i++)
		free(w->desc[(w->dhead + i) % DESC_MAX].name);
	free(w->bind_params);
	for (unsigned i = 0; i < w->qcount; i++)
		qent_free(w->q[(w->qhead + i) % QUEUE_MAX]);
	for (unsigned i = 0; i < PORTALS_MAX; i++) {
		free(w->portals[i][0]);
		free(w->portals[i][1]);
	}
	free(w->unnamed_portal_stmt);
	free(w->prep_name);
	free(w->fe.buf);
	free(w->be.buf);
	free(w);
}

/* ---- statements and portals ---- */

static struct stmt *stmt_find(struct tg_pgwire *w, const char *name, size_t n)
{
	uint64_t h = hash_name(name, n);
	for (unsigned i = 0; i < w->nstmts; i++)
		if (w->stmts[i].hash == h && strlen(w->stmts[i].name) == n && memcmp(w->stmts[i].name, name, n) == 0)
			return &w->stmts[i];
	return NULL;
}

static struct stmt *stmt_set(struct tg_pgwire *w, const char *name, size_t nlen, const char *sql, size_t slen,
			     int truncated)
{
	struct stmt *s = stmt_find(w, name, nlen);
	if (!s) {
		if (w->nstmts < STMTS_MAX) {
			s = &w->stmts[w->nstmts++];
		} else {
			/* Full: replace the slots round-robin (drivers cap their own caches). */
			s = &w->stmts[w->next_evict++ % STMTS_MAX];
			free(s->name);
			free(s->sql);
			free(s->types);
		}
		memset(s, 0, sizeof *s);
		s->name = malloc(nlen + 1);
		if (!s->name) {
			s->hash = 0;
			return NULL;
		}
		memcpy(s->name, name, nlen);
		s->name[nlen] = '\0';
		s->hash = hash_name(name, nlen);
	}
	free(s->sql);
	free(s->types);
	s->types = NULL;
	s->ntypes = 0;
	s->sql = malloc(slen ? slen : 1);
	s->sql_len = s->sql ? slen : 0;
	if (s->sql && slen)
		memcpy(s->sql, sql, slen);
	s->truncated = truncated;
	return s;
}

/* Statement bound to portal (name, n bytes): "" = unnamed portal. */
static const char *portal_stmt(struct tg_pgwire *w, const char *portal, size_t n)
{
	if (n == 0)
		return w->unnamed_portal_stmt;
	for (unsigned i = 0; i < PORTALS_MAX; i++)
		if (w->portals[i][0] && strlen(w->portals[i][0]) == n && memcmp(w->portals[i][0], portal, n) == 0)
			return w->portals[i][1];
	return NULL;
}

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static void portal_bind(struct tg_pgwire *w, const char *portal, size_t pn, const char *stmt, size_t sn)
{
	char *name = dupn(stmt, sn);
	if (pn == 0) {
		free(w->unnamed_portal_stmt);
		w->unnamed_portal_stmt = name;
		return;
	}
	unsigned slot = w->next_portal++ % PORTALS_MAX;
	for (unsigned i = 0; i < PORTALS_MAX; i++)
		if (w->portals[i][0] && strlen(w->portals[i][0]) == pn && memcmp(w->portals[i][0], portal, pn) == 0)
			slot = i;
	free(w->portals[slot][0]);
	free(w->portals[slot][1]);
	w->portals[slot][0] = dupn(portal, pn);
	w->portals[slot][1] = name;
}

/* ---- the queue ---- */

static struct qent *q_push(struct tg_pgwire *w, enum qkind kind)
{
	if (w->qcount == QUEUE_MAX)
		return NULL;
	struct qent *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->kind = (uint8_t)kind;
	w->q[(w->qhead + w->qcount++) % QUEUE_MAX] = e;
	return e;
}

static struct qent *q_at(struct tg_pgwire *w, unsigned i)
{
	return i < w->qcount ? w->q[(w->qhead + i) % QUEUE_MAX] : NULL;
}

static void q_pop(struct tg_pgwire *w)
{
	qent_free(w->q[w->qhead]);
	w->q[w->qhead] = NULL;
	w->qhead = (w->qhead + 1) % QUEUE_MAX;
	w->qcount--;
}

/* The query a backend message is about: the first not yet done, before any sync. */
static struct qent *q_current(struct tg_pgwire *w)
{
	for (unsigned i = 0; i < w->qcount; i++) {
		struct qent *e = q_at(w, i);
		if (e->kind == Q_SYNC)
			return NULL;
		if (!e->done)
			return e;
	}
	return NULL;
}

static void emit_q(struct tg_pgwire *w, struct qent *e, uint64_t now, tg_pg_emit_fn emit, void *ctx)
{
	if (e->done)
		return;
	e->done = 1;
	struct tg_pg_query q = {
		.sql = e->sql,
		.sql_len = e->sql_len,
		.sql_truncated = e->sql_truncated,
		.db = w->db,
		.db_len = w->db_len,
		.start_ns = e->start_ns,
		.end_ns = now,
		.rows = e->has_tag_rows ? e->rows : e->datarows,
		.failed = e->failed,
		.err = e->err,
		.err_len = e->err_len,
		.scope = e->scope,
		.site = e->site,
		.site_len = e->site_len,
		.params = e->params,
		.params_len = e->params_len,
		.params_hash = e->params_hash,
		.params_known = e->params_known,
		.executions = e->executions ? e->executions : 1,
		.batch_cont = e->batch_cont,
	};
	if (emit)
		emit(ctx, &q);
}

/* The caller's context for this write: asked once per feed call. */
static void get_context(struct tg_pgwire *w, tg_pg_context_fn context, void *ctx, uint64_t *scope, char *site,
			uint16_t *site_len)
{
	if (!w->ctx_have) {
		w->ctx_have = 1;
		w->ctx_scope = 0;
		w->ctx_site_len = context ? (uint16_t)context(ctx, &w->ctx_scope, w->ctx_site, sizeof w->ctx_site) : 0;
	}
	*scope = w->ctx_scope;
	memcpy(site, w->ctx_site, w->ctx_site_len);
	*site_len = w->ctx_site_len;
}

static struct qent *new_query(struct tg_pgwire *w, enum qkind kind, const char *sql, size_t len, int truncated,
			      uint64_t now, tg_pg_context_fn context, void *ctx)
{
	struct qent *e = q_push(w, kind);
	if (!e)
		return NULL;
	e->start_ns = now;
	e->executions = e->remaining = 1;
	if (sql) {
		e->sql = dupn(sql, len);
		e->sql_len = e->sql ? len : 0;
		e->sql_truncated = truncated;
	}
	if (context)
		get_context(w, context, ctx, &e->scope, e->site, &e->site_len);
	return e;
}

/* The last entry of the queue when it is an execution of the current
 * batch (no Sync after it), else NULL. */
static struct qent *q_tail_ext(struct tg_pgwire *w)
{
	struct qent *t = w->qcount ? q_at(w, w->qcount - 1) : NULL;
	return t && t->kind == Q_EXT ? t : NULL;
}

/* 1 if entry t ran the same statement text for the same caller. */
static int same_call(const struct qent *t, const char *sql, size_t len, uint64_t scope, const char *site,
		     uint16_t site_len)
{
	return t->sql && sql && t->sql_len == len && memcmp(t->sql, sql, len) == 0 && t->scope == scope &&
	       t->site_len == site_len && memcmp(t->site, site, site_len) == 0;
}

static uint64_t mix_hash(uint64_t a, uint64_t b)
{
	uint64_t h = (a ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
	h ^= b + 0x94d049bb133111ebull + (h << 6) + (h >> 2);
	return h;
}

/* ---- parameter values (capture on) ---- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void stmt_set_types(struct stmt *s, const uint8_t *b, unsigned n)
{
	if (n > TYPES_MAX)
		n = TYPES_MAX;
	uint32_t *t = n ? malloc(n * sizeof *t) : NULL;
	if (n && !t)
		return;
	for (unsigned k = 0; k < n; k++)
		t[k] = be32(b + 4 * k);
	free(s->types);
	s->types = t;
	s->ntypes = n;
}

struct pout {
	char *p;
	size_t len, cap;
	int full;
};

static void pput(struct pout *o, const char *s, size_t n)
{
	if (o->full)
		return;
	if (n > o->cap - o->len) {
		n = o->cap - o->len;
		o->full = 1;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void pput_hex(struct pout *o, const uint8_t *v, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char hex[2 * HEX_VALUE_MAX + 2];
	size_t m = n < HEX_VALUE_MAX ? n : HEX_VALUE_MAX, k = 0;
	hex[k++] = '0';
	hex[k++] = 'x';
	for (size_t i = 0; i < m; i++) {
		hex[k++] = digits[v[i] >> 4];
		hex[k++] = digits[v[i] & 15];
	}
	pput(o, hex, k);
	if (m < n)
		pput(o, "...", 3);
}

static void pput_text(struct pout *o, const uint8_t *v, size_t n, int cut)
{
	pput(o, "'", 1);
	size_t m = n < TEXT_VALUE_MAX ? n : TEXT_VALUE_MAX;
	pput(o, (const char *)v, m);
	pput(o, m < n || cut ? "...'" : "'", m < n || cut ? 4 : 1);
}

/* One binary value of type oid (0: unknown), n bytes. */
static void pput_binary(struct pout *o, uint32_t oid, const uint8_t *v, size_t n)
{
	char num[48];
	int w = -1;
	uint64_t u = 0;
	for (size_t i = 0; i < n && i < 8; i++)
		u = u << 8 | v[i];
	switch (oid) {
	case 16: /* bool */
		if (n == 1)
			w = snprintf(num, sizeof num, "%s", v[0] ? "true" : "false");
		break;
	case 21: /* int2 */
	case 23: /* int4 */
	case 20: /* int8 */
		if (n == (oid == 21 ? 2u : oid == 23 ? 4u : 8u)) {
			unsigned pad = 64 - 8 * (unsigned)n; /* sign-extends the n-byte integer */
			w = snprintf(num, sizeof num, "%lld", (long long)((int64_t)(u << pad) >> pad));
		}
		break;
	case 26: /* oid */
		if (n == 4)
			w = snprintf(num, sizeof num, "%u", (uint32_t)u);
		break;
	case 700: /* float4 */
		if (n == 4) {
			uint32_t bits = (uint32_t)u;
			float f;
			memcpy(&f, &bits, sizeof f);
			w = snprintf(num, sizeof num, "%.9g", (double)f);
		}
		break;
	case 701: /* float8 */
		if (n == 8) {
			double d;
			memcpy(&d, &u, sizeof d);
			w = snprintf(num, sizeof num, "%.17g", d);
		}
		break;
	case 2950: /* uuid */
		if (n == 16) {
			static const char digits[] = "0123456789abcdef";
			size_t k = 0;
			num[k++] = '\'';
			for (size_t i = 0; i < 16; i++) {
				if (i == 4 || i == 6 || i == 8 || i == 10)
					num[k++] = '-';
				num[k++] = digits[v[i] >> 4];
				num[k++] = digits[v[i] & 15];
			}
			num[k++] = '\'';
			w = (int)k;
		}
		break;
	case 19:   /* name */
	case 25:   /* text */
	case 114:  /* json */
	case 1042: /* bpchar */
	case 1043: /* varchar */
		pput_text(o, v, n, 0);
		return;
	default:
		break;
	}
	if (w > 0 && (size_t)w < sizeof num)
		pput(o, num, (size_t)w);
	else
		pput_hex(o, v, n);
}

/* Renders the values of a Bind body (b, n bytes kept; complete: the whole
 * body) from offset i, just past the statement name, with the parameter
 * types of s (may be NULL), into w->bind_params. */
static void render_bind(struct tg_pgwire *w, const struct stmt *s, const uint8_t *b, size_t n, size_t i,
			int complete)
{
	struct pout o = {.p = w->bind_params, .cap = TG_PG_PARAMS_MAX};
	if (n - i < 2)
		goto cut;
	unsigned nfmt = be16(b + i);
	i += 2;
	if (n - i < 2 * (size_t)nfmt + 2)
		goto cut;
	const uint8_t *fmts = b + i;
	i += 2 * (size_t)nfmt;
	unsigned np = be16(b + i);
	i += 2;
	for (unsigned k = 0; k < np && !o.full; k++) {
		char head[16];
		int hl = snprintf(head, sizeof head, "%s$%u=", k ? ", " : "", k + 1);
		if (n - i < 4)
			goto cut;
		int32_t len = (int32_t)be32(b + i);
		i += 4;
		pput(&o, head, (size_t)hl);
		if (len < 0) {
			pput(&o, "NULL", 4);
			continue;
		}
		size_t have = n - i < (size_t)len ? n - i : (size_t)len;
		int binary = nfmt == 0 ? 0 : nfmt == 1 ? be16(fmts) != 0 : k < nfmt && be16(fmts + 2 * k) != 0;
		if (have < (size_t)len) { /* the value runs past what was kept */
			if (binary) {
				pput_hex(&o, b + i, have);
				if (have <= HEX_VALUE_MAX)
					pput(&o, "...", 3);
			} else {
				pput_text(&o, b + i, have, 1);
			}
			goto done;
		}
		if (binary)
			pput_binary(&o, s && k < s->ntypes ? s->types[k] : 0, b + i, have);
		else
			pput_text(&o, b + i, have, 0);
		i += have;
	}
	if (o.full)
		goto cut;
	goto done;
cut:
	if (!complete || o.full) {
		if (o.len + 3 > o.cap)
			o.len = o.cap - 3;
		o.full = 0;
		pput(&o, "...", 3);
	}
done:
	w->bind_params_len = o.len;
}

static void desc_push(struct tg_pgwire *w, const char *name, size_t n)
{
	if (w->dcount == DESC_MAX) { /* answers lost: start over */
		free(w->desc[w->dhead].name);
		w->dhead = (w->dhead + 1) % DESC_MAX;
		w->dcount--;
	}
	char *d = dupn(name, n);
	if (!d)
		return;
	unsigned at = (w->dhead + w->dcount++) % DESC_MAX;
	w->desc[at].name = d;
	w->desc[at].batch = w->fe_syncs;
}

static void desc_pop(struct tg_pgwire *w)
{
	free(w->desc[w->dhead].name);
	w->desc[w->dhead].name = NULL;
	w->dhead = (w->dhead + 1) % DESC_MAX;
	w->dcount--;
}

/* Describes of batches already over (their answer was skipped after an error). */
static void desc_drop_stale(struct tg_pgwire *w)
{
	while (w->dcount && (int)(w->desc[w->dhead].batch - w->be_syncs) < 0)
		desc_pop(w);
}

static void attach_params(struct tg_pgwire *w, struct qent *e, const char *portal, size_t n)
{
	if (!w->bind_valid || n != w->bind_portal_len || memcmp(portal, w->bind_portal, n) != 0)
		return;
	e->params = malloc(w->bind_params_len ? w->bind_params_len : 1);
	if (e->params) {
		memcpy(e->params, w->bind_params, w->bind_params_len);
		e->params_len = w->bind_params_len;
	}
}

/* ---- frontend messages ---- */

static void fe_startup(struct tg_pgwire *w, const uint8_t *b, size_t n, int *rc)
{
	if (n < 4) {
		*rc = TG_PG_UNTRACK;
		return;
	}
	uint32_t code = be32(b);
	if (code == SSL_REQUEST) {
		w->ssl_answer = 1;
		return; /* the next frontend message is a startup message again */
	}
	if (code == GSSENC_REQUEST) {
		w->ssl_answer = 2;
		return;
	}
	if (code == CANCEL_REQUEST || (code >> 16) != 3) {
		*rc = TG_PG_UNTRACK;
		return;
	}
	w->startup = 0;
	/* key\0value\0 ... \0 */
	size_t i = 4;
	while (i < n && b[i]) {
		const char *key = (const char *)b + i;
		size_t kl = strnlen(key, n - i);
		i += kl + 1;
		if (i >= n)
			break;
		const char *val = (const char *)b + i;
		size_t vl = strnlen(val, n - i);
		i += vl + 1;
		if ((kl == 8 && memcmp(key, "database", 8) == 0) || (kl == 4 && memcmp(key, "user", 4) == 0 && !w->db_len)) {
			w->db_len = vl < DB_MAX ? vl : DB_MAX;
			memcpy(w->db, val, w->db_len);
		}
	}
}

/* A NUL-terminated string at b[*i] within n bytes; its length, or -1. */
static long cstr(const uint8_t *b, size_t n, size_t *i)
{
	if (*i >= n)
		return -1;
	const uint8_t *z = memchr(b + *i, 0, n - *i);
	if (!z)
		return -1;
	long len = (long)(z - (b + *i));
	*i += (size_t)len + 1;
	return len;
}

static void fe_message(struct tg_pgwire *w, uint8_t type, const uint8_t *b, size_t n, int complete, uint64_t now,
		       tg_pg_context_fn context, void *ctx)
{
	size_t i = 0;
	switch (type) {
	case 'Q': { /* Query: sql\0 */
		size_t len = complete && n ? n - 1 : n;
		if (len > w->sql_max)
			len = w->sql_max;
		struct qent *e = new_query(w, Q_SIMPLE, (const char *)b, strnlen((const char *)b, len),
					   !complete || len < n - 1, now, context, ctx);
		if (e) { /* values, if any, are in the text */
			e->params_known = 1;
			if (e->scope != w->parse_scope || e->site_len != w->parse_site_len ||
			    memcmp(e->site, w->parse_site, e->site_len) != 0)
				w->prep_valid = 0; /* another caller came between */
		}
		break;
	}
	case 'P': { /* Parse: name\0 sql\0 nparams types */
		long nl = cstr(b, n, &i);
		if (nl < 0)
			break;
		const char *sql = (const char *)b + i;
		size_t avail = n - i;
		size_t sl = strnlen(sql, avail);
		int truncated = sl == avail; /* no NUL seen: cut by the cap */
		if (sl > w->sql_max) {
			sl = w->sql_max;
			truncated = 1;
		}
		w->batch_parse = stmt_set(w, (const char *)b, (size_t)nl, sql, sl, truncated);
		if (!w->parse_ctx_pending)
			w->parse_first_ns = now;
		w->parse_ctx_pending = 1;
		if (w->params_on && w->batch_parse && !truncated) {
			size_t t = i + strnlen(sql, avail) + 1;
			if (t + 2 <= n) {
				unsigned nt = be16(b + t);
				if (t + 2 + 4 * (size_t)nt <= n)
					stmt_set_types(w->batch_parse, b + t + 2, nt);
			}
		}
		break;
	}
	case 'B': { /* Bind: portal\0 statement\0 ... */
		long pl = cstr(b, n, &i);
		size_t stmt_at = i;
		long sl = cstr(b, n, &i);
		if (pl >= 0 && sl >= 0)
			portal_bind(w, (const char *)b, (size_t)pl, (const char *)b + stmt_at, (size_t)sl);
		w->bind_hash_valid = pl >= 0 && (size_t)pl <= sizeof w->bind_hash_portal && w->fe.bnul >= 2;
		if (w->bind_hash_valid) {
			w->bind_hash = bhash_final(&w->fe);
			memcpy(w->bind_hash_portal, b, (size_t)pl);
			w->bind_hash_portal_len = (size_t)pl;
		}
		if (w->params_on) {
			w->bind_valid = 0;
			if (pl < 0 || sl < 0 || (size_t)pl > sizeof w->bind_portal)
				break;
			const struct stmt *s = stmt_find(w, (const char *)b + stmt_at, (size_t)sl);
			render_bind(w, s, b, n, i, complete);
			memcpy(w->bind_portal, b, (size_t)pl);
			w->bind_portal_len = (size_t)pl;
			w->bind_valid = 1;
		}
		break;
	}
	case 'E': { /* Execute: portal\0 maxrows */
		long pl = cstr(b, n, &i);
		if (pl < 0)
			break;
		const char *name = portal_stmt(w, (const char *)b, (size_t)pl);
		struct stmt *s = name ? stmt_find(w, name, strlen(name)) : NULL;
		int known = w->bind_hash_valid && (size_t)pl == w->bind_hash_portal_len &&
			    memcmp(b, w->bind_hash_portal, (size_t)pl) == 0;
		uint64_t hash = known ? w->bind_hash : 0;
		w->bind_hash_valid = 0;
		w->parse_ctx_pending = 0;
		uint64_t scope = 0;
		char site[TG_PG_SITE_MAX];
		uint16_t site_len = 0;
		get_context(w, context, ctx, &scope, site, &site_len);
		/* Prepared in a batch of its own by this caller (who may have run
		 * other statements since, such as type introspection)? */
		int claim = 0;
		if (w->prep_valid) {
			int same = scope == w->parse_scope && site_len == w->parse_site_len &&
				   memcmp(site, w->parse_site, site_len) == 0;
			claim = same && name && w->prep_name && strcmp(name, w->prep_name) == 0;
			if (claim || !same)
				w->prep_valid = 0;
		}
		/* Another execution of the statement just queued, for the same
		 * caller in the same batch: the same query, executed again. */
		struct qent *t = q_tail_ext(w);
		int cont = 0;
		if (t && s && !t->failed && same_call(t, s->sql, s->sql_len, scope, site, site_len)) {
			if (!t->done) {
				t->executions++;
				t->remaining++;
				t->params_hash = mix_hash(t->params_hash, hash);
				t->params_known = t->params_known && known;
				break;
			}
			cont = 1; /* its first part is out: the rest continues it */
		}
		struct qent *e =
			new_query(w, Q_EXT, s ? s->sql : NULL, s ? s->sql_len : 0, s ? s->truncated : 1, now, context, ctx);
		if (!e)
			break;
		e->batch_cont = (uint8_t)cont;
		e->params_hash = mix_hash(0, hash);
		e->params_known = (uint8_t)known;
		if (claim && w->prep_ns <= now)
			e->start_ns = w->prep_ns;
		if (w->params_on)
			attach_params(w, e, (const char *)b, (size_t)pl);
		break;
	}
	case 'S': /* Sync */
	case 'H': /* Flush */
		if (w->parse_ctx_pending && context) {
			/* A batch that only prepares: if the statement does not
			 * compile, the error is reported as a query of this caller;
			 * if it does, its execution may follow. */
			w->parse_ctx_pending = 0;
			w->parse_ns = now;
			get_context(w, context, ctx, &w->parse_scope, w->parse_site, &w->parse_site_len);
			if (w->batch_parse && w->batch_parse->name) {
				free(w->prep_name);
				w->prep_name = dupn(w->batch_parse->name, strlen(w->batch_parse->name));
				w->prep_ns = w->parse_first_ns;
				w->prep_valid = w->prep_name != NULL;
			}
		}
		if (type == 'S') {
			q_push(w, Q_SYNC);
			w->fe_syncs++;
		}
		break;
	case 'D': /* Describe: 'S' name\0 (its ParameterDescription gives the types) */
		if (w->params_on && n >= 2 && b[0] == 'S') {
			i = 1;
			long nl = cstr(b, n, &i);
			if (nl >= 0)
				desc_push(w, (const char *)b + 1, (size_t)nl);
		}
		break;
	default: /* Describe, Close, Flush, Terminate, password/SASL, copy, function call */
		break;
	}
}

/* ---- backend messages ---- */

static void be_error(struct qent *e, const uint8_t *b, size_t n)
{
	const char *code = "", *msg = "";
	size_t cl = 0, ml = 0, i = 0;
	while (i < n && b[i]) {
		uint8_t f = b[i++];
		size_t at = i;
		long l = cstr(b, n, &i);
		if (l < 0) { /* cut by the cap: take what is there */
			l = (long)(n - at);
			i = n;
		}
		if (f == 'C') {
			code = (const char *)b + at;
			cl = (size_t)l;
		} else if (f == 'M') {
			msg = (const char *)b + at;
			ml = (size_t)l;
		}
	}
	e->failed = 1;
	size_t len = 0;
	if (cl > 16)
		cl = 16;
	memcpy(e->err, code, cl);
	len = cl;
	e->err[len++] = ' ';
	if (ml > ERR_MAX - len)
		ml = ERR_MAX - len;
	memcpy(e->err + len, msg, ml);
	e->err_len = (uint16_t)(len + ml);
}

/* Rows from a CommandComplete tag: its last number ("INSERT 0 3" -> 3). */
static int tag_rows(const uint8_t *b, size_t n, int64_t *rows)
{
	size_t len = strnlen((const char *)b, n);
	size_t i = len;
	while (i > 0 && b[i - 1] >= '0' && b[i - 1] <= '9')
		i--;
	if (i == len || i == 0 || b[i - 1] != ' ')
		return 0;
	int64_t v = 0;
	for (size_t k = i; k < len && k < i + 18; k++)
		v = v * 10 + (b[k] - '0');
	*rows = v;
	return 1;
}

static void be_message(struct tg_pgwire *w, uint8_t type, const uint8_t *b, size_t n, uint64_t now,
		       tg_pg_emit_fn emit, tg_pg_context_fn context, void *ctx)
{
	struct qent *e = q_current(w);
	switch (type) {
	case 'D': /* DataRow */
		if (e)
			e->datarows++;
		break;
	case 'C': { /* CommandComplete */
		if (!e)
			break;
		int64_t r;
		if (tag_rows(b, n, &r)) {
			e->rows += r;
			e->has_tag_rows = 1;
		}
		if (e->kind == Q_EXT && --e->remaining == 0)
			emit_q(w, e, now, emit, ctx);
		break;
	}
	case 'I': /* EmptyQueryResponse */
	case 's': /* PortalSuspended */
		if (e && e->kind == Q_EXT && --e->remaining == 0)
			emit_q(w, e, now, emit, ctx);
		break;
	case 'E': /* ErrorResponse */
		if (e) {
			if (!e->failed)
				be_error(e, b, n);
			if (e->kind == Q_EXT)
				emit_q(w, e, now, emit, ctx);
		} else if (w->batch_parse) {
			/* A batch without Execute failed (a statement that does not
			 * compile, as drivers prepare it first): a failed query too. */
			struct stmt *s = w->batch_parse;
			w->batch_parse = NULL;
			w->prep_valid = 0;
			struct qent *f = new_query(w, Q_EXT, s->sql, s->sql_len, s->truncated, now, NULL, ctx);
			if (f) {
				f->scope = w->parse_scope;
				f->start_ns = w->parse_ns && w->parse_ns <= now ? w->parse_ns : now;
				f->site_len = w->parse_site_len;
				memcpy(f->site, w->parse_site, w->parse_site_len);
				be_error(f, b, n);
				emit_q(w, f, now, emit, ctx);
			}
		}
		break;
	case 't': /* ParameterDescription: the types of the statement described */
		desc_drop_stale(w);
		if (w->dcount) {
			struct stmt *s = stmt_find(w, w->desc[w->dhead].name, strlen(w->desc[w->dhead].name));
			if (s && n >= 2 && 2 + 4 * (size_t)be16(b) <= n)
				stmt_set_types(s, b + 2, be16(b));
			desc_pop(w);
		}
		break;
	case 'Z': /* ReadyForQuery: the batch (or simple query) is over */
		while (w->qcount) {
			struct qent *h = q_at(w, 0);
			if (h->kind == Q_SIMPLE) {
				emit_q(w, h, now, emit, ctx);
				q_pop(w);
				break;
			}
			int sync = h->kind == Q_SYNC;
			q_pop(w); /* an Execute skipped after an error is not a query that ran */
			if (sync) {
				w->be_syncs++;
				break;
			}
		}
		w->batch_parse = NULL;
		if (w->dcount)
			desc_drop_stale(w);
		break;
	default:
		break;
	}
}

/* ---- byte streams ---- */

/* Bytes of the body of this message type worth keeping. */
static size_t fe_keep(const struct tg_pgwire *w, uint8_t type, int startup)
{
	if (startup)
		return 4096;
	switch (type) {
	case 'Q':
	case 'P':
		return w->sql_max + FE_EXTRA;
	case 'B':
		return w->params_on ? BIND_KEEP_PARAMS : BIND_KEEP;
	case 'E':
		return 512;
	case 'D':
		return w->params_on ? 512 : 0;
	default:
		return 0; /* password and SASL messages are never copied */
	}
}

static size_t be_keep(const struct tg_pgwire *w, uint8_t type)
{
	return type == 'C' || type == 'E' || (type == 't' && w->params_on) ? BE_KEEP : 0;
}

int tg_pgwire_feed(struct tg_pgwire *w, int dir, const uint8_t *buf, size_t n, uint64_t now,
		   tg_pg_emit_fn emit, tg_pg_context_fn context, void *ctx)
{
	if (w->dead)
		return TG_PG_UNTRACK;
	struct dir *d = dir == TG_PG_TO_SERVER ? &w->fe : &w->be;
	int rc = TG_PG_OK;
	w->ctx_have = 0;
	while (n && rc == TG_PG_OK) {
		if (dir == TG_PG_FROM_SERVER && w->ssl_answer) {
			uint8_t a = buf[0];
			buf++;
			n--;
			int gss = w->ssl_answer == 2;
			w->ssl_answer = 0;
			if (a == 'S' || (gss && a == 'G')) {
				rc = gss ? TG_PG_UNTRACK : TG_PG_ENCRYPTED;
				break;
			}
			if (a != 'N') {
				rc = TG_PG_UNTRACK;
				break;
			}
			continue;
		}
		if (d->hdr_got < d->hdr_need) {
			if (dir == TG_PG_TO_SERVER)
				d->hdr_need = w->startup ? 4 : 5;
			size_t take = d->hdr_need - d->hdr_got;
			if (take > n)
				take = n;
			memcpy(d->hdr + d->hdr_got, buf, take);
			d->hdr_got += (unsigned)take;
			buf += take;
			n -= take;
			if (d->hdr_got < d->hdr_need)
				break;
			uint32_t len;
			if (d->hdr_need == 4) {
				d->type = 0;
				len = be32(d->hdr);
			} else {
				d->type = d->hdr[0];
				len = be32(d->hdr + 1);
			}
			if (len < 4 || len > MSG_MAX || (d->hdr_need == 4 && (len < 8 || len > 10000))) {
				rc = TG_PG_UNTRACK;
				break;
			}
			d->body_len = len - 4;
			d->body_got = 0;
			d->kept = 0;
			d->keep = dir == TG_PG_TO_SERVER ? fe_keep(w, d->type, d->hdr_need == 4) : be_keep(w, d->type);
			if (d->keep > d->cap)
				d->keep = d->cap;
			d->bhash = 0xcbf29ce484222325ull;
			d->bword = 0;
			d->bwlen = 0;
			d->bnul = 0;
		}
		size_t take = d->body_len - d->body_got;
		if (take > n)
			take = n;
		if (dir == TG_PG_TO_SERVER && d->type == 'B' && d->hdr_need == 5) {
			/* Bind: hash what follows the portal and statement names
			 * (formats, values, result formats), however long. */
			size_t k = 0;
			while (k < take && d->bnul < 2)
				d->bnul += buf[k++] == 0;
			bhash_bytes(d, buf + k, take - k);
		}
		if (d->kept < d->keep) {
			size_t k = d->keep - d->kept < take ? d->keep - d->kept : take;
			memcpy(d->buf + d->kept, buf, k);
			d->kept += k;
		}
		d->body_got += (uint32_t)take;
		buf += take;
		n -= take;
		if (d->body_got < d->body_len)
			break;
		/* A whole message. */
		int startup = d->hdr_need == 4;
		d->hdr_got = 0;
		if (dir == TG_PG_TO_SERVER) {
			if (startup)
				fe_startup(w, d->buf, d->kept, &rc);
			else
				fe_message(w, d->type, d->buf, d->kept, d->kept == d->body_len, now, context, ctx);
		} else {
			be_message(w, d->type, d->buf, d->kept, now, emit, context, ctx);
		}
	}
	if (rc != TG_PG_OK)
		w->dead = 1;
	return rc;
}

void tg_pgwire_close(struct tg_pgwire *w, uint64_t now, tg_pg_emit_fn emit, void *ctx)
{
	while (w->qcount) {
		struct qent *e = q_at(w, 0);
		if (e->kind != Q_SYNC && !e->done) {
			static const char closed[] = "08006 connection closed";
			e->failed = 1;
			memcpy(e->err, closed, sizeof closed - 1);
			e->err_len = sizeof closed - 1;
			emit_q(w, e, now, emit, ctx);
		}
		q_pop(w);
	}
}
