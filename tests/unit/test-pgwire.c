/*
 * test-pgwire.c - unit tests of the PostgreSQL wire-protocol parser
 * (preload/pgwire.c): startup, simple and extended queries, pipelining,
 * statement caching, errors, SSL negotiation, Bind parameter rendering,
 * value hashes, batches (executemany), executions that begin with their
 * Parse, and splits at every byte.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgwire.h"

#define MAXQ 64

struct got {
	int n;
	char sql[MAXQ][256];
	char err[MAXQ][256];
	char db[MAXQ][64];
	int64_t rows[MAXQ];
	int failed[MAXQ];
	uint64_t start[MAXQ], end[MAXQ];
	uint64_t scope[MAXQ];
	char params[MAXQ][TG_PG_PARAMS_MAX + 1];
	size_t params_len[MAXQ];
	uint64_t phash[MAXQ];
	int pknown[MAXQ];
	uint32_t executions[MAXQ];
	int cont[MAXQ];
};

static uint64_t next_scope = 100;
static uint64_t fixed_scope; /* when set, every caller is this one */
static const char *fixed_site = "app.py:1 f";

static void emit(void *ctx, const struct tg_pg_query *q)
{
	struct got *g = ctx;
	assert(g->n < MAXQ);
	snprintf(g->sql[g->n], 256, "%.*s", (int)q->sql_len, q->sql ? q->sql : "");
	snprintf(g->err[g->n], 256, "%.*s", (int)q->err_len, q->err ? q->err : "");
	snprintf(g->db[g->n], 64, "%.*s", (int)q->db_len, q->db ? q->db : "");
	g->rows[g->n] = q->rows;
	g->failed[g->n] = q->failed;
	g->start[g->n] = q->start_ns;
	g->end[g->n] = q->end_ns;
	g->scope[g->n] = q->scope;
	assert(q->params_len <= TG_PG_PARAMS_MAX);
	memcpy(g->params[g->n], q->params ? q->params : "", q->params_len);
	g->params[g->n][q->params_len] = '\0';
	g->params_len[g->n] = q->params_len;
	g->phash[g->n] = q->params_hash;
	g->pknown[g->n] = q->params_known;
	g->executions[g->n] = q->executions;
	g->cont[g->n] = q->batch_cont;
	g->n++;
}

static size_t context(void *ctx, uint64_t *scope, char *site, size_t cap)
{
	(void)ctx;
	*scope = fixed_scope ? fixed_scope : next_scope++;
	return (size_t)snprintf(site, cap, "%s", fixed_site);
}

/* ---- message builders ---- */

struct buf {
	uint8_t b[65536];
	size_t n;
};

static void put32(struct buf *b, uint32_t v)
{
	b->b[b->n++] = (uint8_t)(v >> 24);
	b->b[b->n++] = (uint8_t)(v >> 16);
	b->b[b->n++] = (uint8_t)(v >> 8);
	b->b[b->n++] = (uint8_t)v;
}

static void msg(struct buf *b, char type, const void *body, size_t len)
{
	b->b[b->n++] = (uint8_t)type;
	put32(b, (uint32_t)len + 4);
	memcpy(b->b + b->n, body, len);
	b->n += len;
}

/* Body of concatenated NUL-terminated strings, then raw tail bytes. */
static size_t strs(uint8_t *out, const char *const *s, int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(s[i]) + 1;
		memcpy(out + len, s[i], l);
		len += l;
	}
	return len;
}

static void startup(struct buf *b, const char *db)
{
	uint8_t body[256];
	size_t n = 0;
	body[n++] = 0; body[n++] = 3; body[n++] = 0; body[n++] = 0;
	const char *kv[] = {"user", "tg", "database", db, ""};
	n += strs(body + n, kv, 5);
	put32(b, (uint32_t)n + 4);
	memcpy(b->b + b->n, body, n);
	b->n += n;
}

static void query(struct buf *b, const char *sql)
{
	msg(b, 'Q', sql, strlen(sql) + 1);
}

static void parse(struct buf *b, const char *name, const char *sql)
{
	uint8_t body[4096];
	const char *s[] = {name, sql};
	size_t n = strs(body, s, 2);
	body[n++] = 0;
	body[n++] = 0; /* no parameter types */
	msg(b, 'P', body, n);
}

static void bind(struct buf *b, const char *portal, const char *stmt)
{
	uint8_t body[256];
	const char *s[] = {portal, stmt};
	size_t n = strs(body, s, 2);
	memset(body + n, 0, 6); /* formats, params, result formats */
	n += 6;
	msg(b, 'B', body, n);
}

static void execute(struct buf *b, const char *portal)
{
	uint8_t body[64];
	size_t n = strlen(portal) + 1;
	memcpy(body, portal, n);
	memset(body + n, 0, 4);
	msg(b, 'E', body, n + 4);
}

static void simple(struct buf *b, char type)
{
	msg(b, type, "", 0);
}

static void complete(struct buf *b, const char *tag)
{
	msg(b, 'C', tag, strlen(tag) + 1);
}

static void datarow(struct buf *b)
{
	static const uint8_t row[] = {0, 1, 0, 0, 0, 1, 'x'};
	msg(b, 'D', row, sizeof row);
}

static void ready(struct buf *b)
{
	msg(b, 'Z', "I", 1);
}

static void error(struct buf *b, const char *code, const char *text)
{
	uint8_t body[512];
	size_t n = 0;
	body[n++] = 'S';
	n += strs(body + n, (const char *[]){"ERROR"}, 1);
	body[n++] = 'C';
	n += strs(body + n, (const char *[]){code}, 1);
	body[n++] = 'M';
	n += strs(body + n, (const char *[]){text}, 1);
	body[n++] = 0;
	msg(b, 'E', body, n);
}

/* Feeds fe then be, split into chunks of `chunk` bytes (0 = whole). */
static void feed(struct tg_pgwire *w, struct got *g, struct buf *fe, struct buf *be, size_t chunk, uint64_t t)
{
	for (int d = 0; d < 2; d++) {
		struct buf *b = d ? be : fe;
		size_t step = chunk ? chunk : b->n;
		for (size_t off = 0; off < b->n; off += step) {
			size_t n = b->n - off < step ? b->n - off : step;
			int rc = tg_pgwire_feed(w, d ? TG_PG_FROM_SERVER : TG_PG_TO_SERVER, b->b + off, n, t + d, emit,
						context, g);
			assert(rc == TG_PG_OK);
		}
		b->n = 0;
	}
}

static void session(size_t chunk)
{
	struct tg_pgwire *w = tg_pgwire_new(4096);
	struct got g = {0};
	struct buf fe = {.n = 0}, be = {.n = 0};

	startup(&fe, "shop");
	msg(&be, 'R', "\0\0\0\0", 4);
	msg(&be, 'S', "a\0b", 4);
	msg(&be, 'K', "\0\0\0\1\0\0\0\2", 8);
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 10);
	assert(g.n == 0);

	/* simple query with rows */
	query(&fe, "SELECT 1");
	msg(&be, 'T', "\0\0", 2);
	datarow(&be);
	datarow(&be);
	complete(&be, "SELECT 2");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 20);
	assert(g.n == 1 && !strcmp(g.sql[0], "SELECT 1") && g.rows[0] == 2 && !g.failed[0]);
	assert(!strcmp(g.db[0], "shop") && g.start[0] == 20 && g.end[0] == 21);

	/* extended: Parse/Bind/Describe/Execute/Sync, unnamed */
	parse(&fe, "", "SELECT name FROM items WHERE id = $1");
	bind(&fe, "", "");
	msg(&fe, 'D', "P\0", 2);
	execute(&fe, "");
	simple(&fe, 'S');
	simple(&be, '1');
	simple(&be, '2');
	msg(&be, 'T', "\0\0", 2);
	datarow(&be);
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 30);
	assert(g.n == 2 && !strcmp(g.sql[1], "SELECT name FROM items WHERE id = $1") && g.rows[1] == 1);

	/* named statement prepared once, executed twice in a pipeline */
	parse(&fe, "__asyncpg_stmt_1__", "UPDATE items SET n = n + 1");
	msg(&fe, 'D', "S__asyncpg_stmt_1__\0", 20);
	simple(&fe, 'S');
	simple(&be, '1');
	simple(&be, 'n');
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 40);
	assert(g.n == 2); /* a prepare is not a query */
	for (int k = 0; k < 2; k++) {
		bind(&fe, "", "__asyncpg_stmt_1__");
		execute(&fe, "");
		simple(&fe, 'S');
		simple(&be, '2');
		complete(&be, "UPDATE 7");
		ready(&be);
		feed(w, &g, &fe, &be, chunk, 50 + (uint64_t)k * 2);
	}
	assert(g.n == 4 && !strcmp(g.sql[2], "UPDATE items SET n = n + 1") && g.rows[2] == 7 && g.rows[3] == 7);
	assert(g.scope[2] != g.scope[3]); /* each write asks for its caller's context */

	/* error in an extended batch: the failed Execute is reported, the
	 * one after it (skipped by the server) is not */
	parse(&fe, "", "SELECT * FROM missing");
	bind(&fe, "", "");
	execute(&fe, "");
	simple(&fe, 'S');
	error(&be, "42P01", "relation \"missing\" does not exist");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 60);
	assert(g.n == 5 && g.failed[4] && !strcmp(g.err[4], "42P01 relation \"missing\" does not exist"));
	assert(!strcmp(g.sql[4], "SELECT * FROM missing"));

	/* error in a simple query */
	query(&fe, "SELEC 1");
	error(&be, "42601", "syntax error");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 70);
	assert(g.n == 6 && g.failed[5] && !strncmp(g.err[5], "42601 ", 6));

	/* password message is skipped */
	msg(&fe, 'p', "secret\0", 7);
	feed(w, &g, &fe, &be, chunk, 80);
	assert(g.n == 6);

	/* in flight at close: failed */
	query(&fe, "SELECT pg_sleep(10)");
	feed(w, &g, &fe, &be, chunk, 90);
	tg_pgwire_close(w, 99, emit, &g);
	assert(g.n == 7 && g.failed[6] && g.end[6] == 99);
	tg_pgwire_free(w);
}

static void ssl_negotiation(void)
{
	struct tg_pgwire *w = tg_pgwire_new(4096);
	struct got g = {0};
	uint8_t req[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	assert(tg_pgwire_sniff(req, 8));
	assert(tg_pgwire_feed(w, TG_PG_TO_SERVER, req, 8, 1, emit, context, &g) == TG_PG_OK);
	assert(tg_pgwire_feed(w, TG_PG_FROM_SERVER, (const uint8_t *)"S", 1, 2, emit, context, &g) == TG_PG_ENCRYPTED);
	tg_pgwire_free(w);

	/* refused: plaintext startup follows */
	w = tg_pgwire_new(4096);
	assert(tg_pgwire_feed(w, TG_PG_TO_SERVER, req, 8, 1, emit, context, &g) == TG_PG_OK);
	assert(tg_pgwire_feed(w, TG_PG_FROM_SERVER, (const uint8_t *)"N", 1, 2, emit, context, &g) == TG_PG_OK);
	struct buf fe = {.n = 0}, be = {.n = 0};
	startup(&fe, "db2");
	ready(&be);
	query(&fe, "SELECT 3");
	complete(&be, "SELECT 0");
	ready(&be);
	/* the ReadyForQuery after startup and the query's answer */
	assert(tg_pgwire_feed(w, TG_PG_TO_SERVER, fe.b, fe.n, 3, emit, context, &g) == TG_PG_OK);
	assert(tg_pgwire_feed(w, TG_PG_FROM_SERVER, be.b, be.n, 4, emit, context, &g) == TG_PG_OK);
	assert(g.n == 1 && !strcmp(g.db[0], "db2") && g.rows[0] == 0);
	tg_pgwire_free(w);

	/* not PostgreSQL */
	assert(!tg_pgwire_sniff((const uint8_t *)"GET / HTTP/1.1\r\n", 16));
	w = tg_pgwire_new(4096);
	assert(tg_pgwire_feed(w, TG_PG_TO_SERVER, (const uint8_t *)"\x16\x03\x01\x02\x00\x01\x00\x01", 8, 1, emit,
			      context, &g) == TG_PG_UNTRACK);
	tg_pgwire_free(w);
}

/* ---- parameters ---- */

static void put16(uint8_t *b, size_t *n, unsigned v)
{
	b[(*n)++] = (uint8_t)(v >> 8);
	b[(*n)++] = (uint8_t)v;
}

static void put32b(uint8_t *b, size_t *n, uint32_t v)
{
	put16(b, n, v >> 16);
	put16(b, n, v & 0xffff);
}

static void parse_typed(struct buf *b, const char *name, const char *sql, const uint32_t *types, unsigned nt)
{
	uint8_t body[4096];
	const char *s[] = {name, sql};
	size_t n = strs(body, s, 2);
	put16(body, &n, nt);
	for (unsigned k = 0; k < nt; k++)
		put32b(body, &n, types[k]);
	msg(b, 'P', body, n);
}

struct pval {
	int fmt;            /* 0 text, 1 binary */
	int len;            /* -1 NULL */
	const uint8_t *v;
};

static void bind_values(struct buf *b, const char *portal, const char *stmt, const struct pval *p, unsigned np,
			int one_fmt)
{
	static uint8_t body[32768];
	const char *s[] = {portal, stmt};
	size_t n = strs(body, s, 2);
	if (one_fmt >= 0) {
		put16(body, &n, 1);
		put16(body, &n, (unsigned)one_fmt);
	} else {
		put16(body, &n, np);
		for (unsigned k = 0; k < np; k++)
			put16(body, &n, (unsigned)p[k].fmt);
	}
	put16(body, &n, np);
	for (unsigned k = 0; k < np; k++) {
		put32b(body, &n, (uint32_t)p[k].len);
		if (p[k].len > 0) {
			memcpy(body + n, p[k].v, (size_t)p[k].len);
			n += (size_t)p[k].len;
		}
	}
	put16(body, &n, 0); /* result formats */
	msg(b, 'B', body, n);
}

static void param_types(struct buf *b, const uint32_t *types, unsigned nt)
{
	uint8_t body[512];
	size_t n = 0;
	put16(body, &n, nt);
	for (unsigned k = 0; k < nt; k++)
		put32b(body, &n, types[k]);
	msg(b, 't', body, n);
}

static struct tg_pgwire *params_conn(struct got *g, int on)
{
	struct tg_pgwire *w = tg_pgwire_new(4096);
	tg_pgwire_capture_params(w, on);
	struct buf fe = {.n = 0}, be = {.n = 0};
	startup(&fe, "shop");
	ready(&be);
	feed(w, g, &fe, &be, 0, 1);
	return w;
}

static void params(size_t chunk)
{
	static const uint8_t i4[] = {0, 0, 0, 42}, i2[] = {0xff, 0xfe}, i8[] = {0, 0, 0, 1, 0, 0, 0, 0},
			     yes[] = {1}, f8[] = {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18},
			     blob[] = {0xde, 0xad, 0xbe, 0xef}, txt[] = "caf\xc3\xa9",
			     uu[] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8};
	struct got g;
	memset(&g, 0, sizeof g);
	struct tg_pgwire *w = params_conn(&g, 1);
	struct buf fe = {.n = 0}, be = {.n = 0};

	/* psycopg 3 style: types in the Parse, per-parameter formats */
	uint32_t types[] = {23, 25, 16, 20, 701, 17, 21, 2950};
	struct pval p[] = {
		{1, 4, i4}, {0, 5, (const uint8_t *)"o'k x"}, {1, 1, yes}, {1, 8, i8},
		{1, 8, f8}, {1, 4, blob}, {1, 2, i2}, {1, 16, uu}, {0, -1, NULL},
	};
	parse_typed(&fe, "", "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9", types, 8);
	bind_values(&fe, "", "", p, 9, -1);
	execute(&fe, "");
	simple(&fe, 'S');
	simple(&be, '1');
	simple(&be, '2');
	datarow(&be);
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 10);
	assert(g.n == 1);
	assert(!strcmp(g.params[0], "$1=42, $2='o'k x', $3=true, $4=4294967296, $5=3.1415926535897931, "
				    "$6=0xdeadbeef, $7=-2, $8='12345678-9abc-def0-0102-030405060708', $9=NULL"));

	/* asyncpg style: untyped Parse, types from the ParameterDescription
	 * answering Describe(statement), all parameters binary */
	parse(&fe, "__asyncpg_stmt_2__", "SELECT name FROM items WHERE id = $1 AND name = $2");
	msg(&fe, 'D', "S__asyncpg_stmt_2__\0", 20);
	simple(&fe, 'S');
	simple(&be, '1');
	param_types(&be, (const uint32_t[]){20, 1043}, 2);
	msg(&be, 'T', "\0\0", 2);
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 20);
	struct pval q[] = {{1, 8, i8}, {1, 5, txt}};
	bind_values(&fe, "", "__asyncpg_stmt_2__", q, 2, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	simple(&be, '2');
	complete(&be, "SELECT 0");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 30);
	assert(g.n == 2 && !strcmp(g.params[1], "$1=4294967296, $2='caf\xc3\xa9'"));

	/* a Describe whose answer never comes (its Parse failed) does not
	 * take the next statement's ParameterDescription */
	parse(&fe, "bad", "SELEC $1");
	msg(&fe, 'D', "Sbad\0", 5);
	simple(&fe, 'S');
	error(&be, "42601", "syntax error");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 34);
	parse(&fe, "good", "SELECT $1");
	msg(&fe, 'D', "Sgood\0", 6);
	simple(&fe, 'S');
	simple(&be, '1');
	param_types(&be, (const uint32_t[]){23}, 1);
	msg(&be, 'n', "", 0);
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 35);
	assert(g.n == 3 && g.failed[2] && !strcmp(g.sql[2], "SELEC $1"));
	bind_values(&fe, "", "good", (struct pval[]){{1, 4, i4}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 36);
	assert(g.n == 4 && !strcmp(g.params[3], "$1=42"));
	g.n = 2;

	/* unknown types: binary values as hex; text-only binds (each its
	 * own batch: executions in one batch are one query) */
	parse(&fe, "s3", "SELECT $1");
	bind_values(&fe, "", "s3", (struct pval[]){{1, 4, i4}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	bind_values(&fe, "", "s3", (struct pval[]){{0, 2, (const uint8_t *)"42"}}, 1, 0);
	execute(&fe, "");
	simple(&fe, 'S');
	simple(&be, '1');
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 40);
	assert(g.n == 4 && !strcmp(g.params[2], "$1=0x0000002a") && !strcmp(g.params[3], "$1='42'"));

	/* caps: a long text value, a long binary value, many parameters */
	static uint8_t big[20000];
	memset(big, 'a', sizeof big);
	bind_values(&fe, "", "s3", (struct pval[]){{0, 300, big}, {1, 100, big}}, 2, -1);
	execute(&fe, "");
	simple(&fe, 'S');
	static struct pval many[500];
	for (int k = 0; k < 500; k++)
		many[k] = (struct pval){0, 3, (const uint8_t *)"abc"};
	bind_values(&fe, "", "s3", many, 500, 0);
	execute(&fe, "");
	simple(&fe, 'S');
	bind_values(&fe, "", "s3", (struct pval[]){{0, 20000, big}}, 1, 0);
	execute(&fe, "");
	simple(&fe, 'S');
	for (int k = 0; k < 3; k++) {
		simple(&be, '2');
		complete(&be, "SELECT 1");
		ready(&be);
	}
	feed(w, &g, &fe, &be, chunk, 50);
	assert(g.n == 7);
	assert(!strncmp(g.params[4], "$1='aaaa", 8) && strstr(g.params[4], "a...', $2=0x6161") &&
	       !strcmp(g.params[4] + strlen(g.params[4]) - 5, "61..."));
	assert(g.params_len[5] <= TG_PG_PARAMS_MAX && !strcmp(g.params[5] + g.params_len[5] - 3, "..."));
	assert(!strncmp(g.params[5], "$1='abc', $2='abc'", 18));
	assert(!strncmp(g.params[6], "$1='aaa", 7) && !strcmp(g.params[6] + g.params_len[6] - 4, "...'"));

	/* an Execute of another portal than the one bound last: no values */
	bind_values(&fe, "p1", "s3", (struct pval[]){{0, 1, (const uint8_t *)"1"}}, 1, 0);
	bind_values(&fe, "p2", "s3", (struct pval[]){{0, 1, (const uint8_t *)"2"}}, 1, 0);
	execute(&fe, "p1");
	simple(&fe, 'S');
	execute(&fe, "p2");
	simple(&fe, 'S');
	simple(&be, '2');
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 60);
	assert(g.n == 9 && g.params_len[7] == 0 && !strcmp(g.params[8], "$1='2'"));
	tg_pgwire_free(w);

	/* off: never rendered */
	memset(&g, 0, sizeof g);
	w = params_conn(&g, 0);
	parse_typed(&fe, "", "SELECT $1", types, 1);
	bind_values(&fe, "", "", p, 1, -1);
	execute(&fe, "");
	simple(&fe, 'S');
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, chunk, 10);
	assert(g.n == 1 && g.params_len[0] == 0);
	tg_pgwire_free(w);
}

static void truncation(void)
{
	struct tg_pgwire *w = tg_pgwire_new(32);
	struct got g = {0};
	struct buf fe = {.n = 0}, be = {.n = 0};
	startup(&fe, "d");
	ready(&be);
	feed(w, &g, &fe, &be, 0, 1);
	query(&fe, "SELECT 'a very long statement text that goes past the cap'");
	complete(&be, "SELECT 1");
	ready(&be);
	feed(w, &g, &fe, &be, 0, 2);
	assert(g.n == 1 && strlen(g.sql[0]) == 32);
	tg_pgwire_free(w);
}

/* ---- value hashes, batches, Parse claims ---- */

/* Feeds only the frontend buffer (one write at t), or only the backend's. */
static void write_at(struct tg_pgwire *w, struct got *g, struct buf *b, int dir, uint64_t t)
{
	assert(tg_pgwire_feed(w, dir, b->b, b->n, t, emit, context, g) == TG_PG_OK);
	b->n = 0;
}

static void batches(void)
{
	static const uint8_t one[] = {0, 0, 0, 1}, two[] = {0, 0, 0, 2};
	struct got g;
	memset(&g, 0, sizeof g);
	fixed_scope = 7;
	struct tg_pgwire *w = params_conn(&g, 0);
	struct buf fe = {.n = 0}, be = {.n = 0};

	/* asyncpg's executemany: the statement prepared in a batch of its
	 * own, then Bind/Execute per parameter set and one Sync */
	parse(&fe, "__asyncpg_stmt_9__", "UPDATE stock SET qty = qty + 1 WHERE id = $1");
	msg(&fe, 'D', "S__asyncpg_stmt_9__\0", 20);
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 10);
	simple(&be, '1');
	msg(&be, 't', "\0\1\0\0\0\x17", 6);
	msg(&be, 'n', "", 0);
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 11);
	for (int k = 0; k < 3; k++) {
		bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, k == 1 ? two : one}}, 1, 1);
		execute(&fe, "");
	}
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 20);
	for (int k = 0; k < 3; k++) {
		simple(&be, '2');
		complete(&be, "UPDATE 1");
	}
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 25);
	assert(g.n == 1 && g.executions[0] == 3 && g.rows[0] == 3 && !g.cont[0] && g.pknown[0]);
	assert(g.start[0] == 10 && g.end[0] == 25); /* from its Parse to its last result */

	/* the same values again: the same hash; other values: another */
	for (int k = 0; k < 3; k++) {
		bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, k == 1 ? two : one}}, 1, 1);
		execute(&fe, "");
	}
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 30);
	for (int k = 0; k < 3; k++) {
		simple(&be, '2');
		complete(&be, "UPDATE 1");
	}
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 31);
	assert(g.n == 2 && g.executions[1] == 3 && g.phash[1] == g.phash[0]);
	assert(g.start[1] == 30); /* prepared long ago: starts at its Execute */
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, two}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 40);
	for (int k = 0; k < 3; k++) {
		simple(&be, '2');
		complete(&be, "UPDATE 1");
		ready(&be);
	}
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 41);
	assert(g.n == 5 && g.executions[2] == 1 && g.executions[3] == 1 && g.executions[4] == 1);
	assert(g.pknown[2] && g.pknown[3] && g.phash[2] != g.phash[3] && g.phash[2] == g.phash[4]);

	/* pipelined: the first execution answered before the second is
	 * written: the second continues it */
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'H');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 50);
	simple(&be, '2');
	complete(&be, "UPDATE 1");
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 51);
	assert(g.n == 6 && g.executions[5] == 1 && !g.cont[5]);
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, two}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 52);
	simple(&be, '2');
	complete(&be, "UPDATE 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 53);
	assert(g.n == 7 && g.executions[6] == 1 && g.cont[6] && g.start[6] == 52 && g.end[6] == 53);

	/* another caller's executions in one batch stay apart */
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
	execute(&fe, "");
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 60);
	fixed_scope = 8;
	bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 61);
	for (int k = 0; k < 2; k++) {
		simple(&be, '2');
		complete(&be, "UPDATE 1");
	}
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 62);
	assert(g.n == 9 && g.executions[7] == 1 && g.executions[8] == 1 && !g.cont[8]);
	assert(g.scope[7] == 7 && g.scope[8] == 8);

	/* an error inside a batch: reported at once with what ran */
	for (int k = 0; k < 3; k++) {
		bind_values(&fe, "", "__asyncpg_stmt_9__", (struct pval[]){{1, 4, one}}, 1, 1);
		execute(&fe, "");
	}
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 70);
	simple(&be, '2');
	complete(&be, "UPDATE 1");
	error(&be, "23505", "duplicate key");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 71);
	assert(g.n == 10 && g.failed[9] && g.rows[9] == 1 && g.executions[9] == 3);

	/* a simple query: its values are in its text (known, no Bind) */
	query(&fe, "SELECT 1");
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 80);
	complete(&be, "SELECT 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 81);
	assert(g.n == 11 && g.pknown[10]);

	/* an Execute whose Bind was not seen: values unknown */
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 90);
	complete(&be, "UPDATE 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 91);
	assert(g.n == 12 && !g.pknown[11]);
	tg_pgwire_free(w);
	fixed_scope = 0;
}

static void parse_claims(void)
{
	struct got g;
	memset(&g, 0, sizeof g);
	fixed_scope = 5;
	struct tg_pgwire *w = params_conn(&g, 0);
	struct buf fe = {.n = 0}, be = {.n = 0};

	/* prepared, then a type introspection query of the same caller, then
	 * executed: the execution began with the Parse */
	parse(&fe, "a", "SELECT $1::mytype");
	msg(&fe, 'D', "Sa\0", 3);
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 100);
	simple(&be, '1');
	msg(&be, 'n', "", 0);
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 101);
	parse(&fe, "intro", "SELECT typname FROM pg_type WHERE oid = $1");
	bind(&fe, "", "intro");
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 102);
	simple(&be, '1');
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 103);
	bind(&fe, "", "a");
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 104);
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 105);
	assert(g.n == 2 && g.start[0] == 102 && g.start[1] == 100 && g.end[1] == 105);

	/* prepared by one caller, executed by another: starts at its Execute */
	parse(&fe, "b", "SELECT 2");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 110);
	simple(&be, '1');
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 111);
	fixed_site = "app.py:2 g";
	bind(&fe, "", "b");
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 112);
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 113);
	assert(g.n == 3 && g.start[2] == 112);

	/* executed a second time: only the first execution had the Parse */
	bind(&fe, "", "b");
	execute(&fe, "");
	simple(&fe, 'S');
	write_at(w, &g, &fe, TG_PG_TO_SERVER, 120);
	simple(&be, '2');
	complete(&be, "SELECT 1");
	ready(&be);
	write_at(w, &g, &be, TG_PG_FROM_SERVER, 121);
	assert(g.n == 4 && g.start[3] == 120);
	fixed_site = "app.py:1 f";
	fixed_scope = 0;
	tg_pgwire_free(w);
}

/* Bind values are hashed whatever the split of the bytes. */
static void hash_splits(void)
{
	static uint8_t big[3000];
	for (size_t k = 0; k < sizeof big; k++)
		big[k] = (uint8_t)(k * 7);
	uint64_t first = 0;
	static const size_t chunks[] = {0, 1, 13, 700};
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
		size_t chunk = chunks[c];
		struct got g;
		memset(&g, 0, sizeof g);
		fixed_scope = 3;
		struct tg_pgwire *w = params_conn(&g, 0);
		struct buf fe = {.n = 0}, be = {.n = 0};
		parse(&fe, "", "INSERT INTO t VALUES ($1)");
		bind_values(&fe, "", "", (struct pval[]){{1, (int)sizeof big, big}}, 1, 1);
		execute(&fe, "");
		simple(&fe, 'S');
		simple(&be, '1');
		simple(&be, '2');
		complete(&be, "INSERT 0 1");
		ready(&be);
		feed(w, &g, &fe, &be, chunk, 10);
		assert(g.n == 1 && g.pknown[0]);
		if (!first)
			first = g.phash[0];
		assert(g.phash[0] == first);
		tg_pgwire_free(w);
	}
	fixed_scope = 0;
}

int main(void)
{
	session(0);
	for (size_t chunk = 1; chunk <= 17; chunk++)
		session(chunk);
	ssl_negotiation();
	truncation();
	params(0);
	for (size_t chunk = 1; chunk <= 9; chunk += 4)
		params(chunk);
	batches();
	parse_claims();
	hash_splits();
	printf("pgwire: ok\n");
	return 0;
}
