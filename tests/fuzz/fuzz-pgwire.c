/*
 * fuzz-pgwire.c - fuzz target for the client-side protocol parsers of the
 * outbound taps: the PostgreSQL wire parser (preload/pgwire.c) and the
 * client HTTP/1.x adapter (preload/httpc.c).
 *
 * The input is a script of I/O events. Each event starts with an opcode
 * byte: bit 0 is the direction (0: the app writes, 1: the app reads), bits
 * 1-7 the payload length minus one (1-128 bytes); 0xff means the next two
 * bytes hold the length (little endian, plus one). The whole script runs
 * through both parsers, twice: with each payload fed whole and cut in two
 * at a point derived from its bytes. Each parser must emit exactly the same
 * queries (or exchanges) both times and every one must satisfy check_*();
 * violations abort, which libFuzzer reports as a crash.
 *
 * Built with -DTG_FUZZ_REPLAY (and replay.c) it is a standalone program: it
 * runs the files and directories named on the command line, then a deterministic generator
 * of PostgreSQL-like conversations for N iterations (the first numeric
 * argument, default 100000).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "pgwire.h"

#define FUZZ_NAME "fuzz-pgwire"
#include "fuzz.h"

#define SQL_MAX 64
#define MAX_DIGESTS 4096

struct run {
	uint64_t digest[MAX_DIGESTS];
	size_t n;
	uint64_t now;
};

static void pg_emit(void *ctx, const struct tg_pg_query *q)
{
	struct run *r = ctx;
	REQUIRE(q->sql_len <= SQL_MAX);
	REQUIRE(!q->sql_len || q->sql);
	REQUIRE(q->err_len <= 512 && (!q->err_len || q->err));
	REQUIRE(q->db_len <= 128);
	REQUIRE(q->end_ns >= q->start_ns);
	REQUIRE(q->end_ns <= r->now);
	REQUIRE(q->site_len <= TG_PG_SITE_MAX);
	REQUIRE(q->failed || !q->err_len);
	REQUIRE(q->params_len <= TG_PG_PARAMS_MAX && (!q->params_len || q->params));
	REQUIRE(q->executions >= 1);
	REQUIRE(q->params_known == 0 || q->params_known == 1);
	uint64_t h = fnv(0xcbf29ce484222325ull, q->sql ? q->sql : "", q->sql_len);
	h = fnv(h, &q->executions, sizeof q->executions);
	h = fnv(h, &q->params_known, sizeof q->params_known);
	h = fnv(h, &q->batch_cont, sizeof q->batch_cont);
	if (q->params_known)
		h = fnv(h, &q->params_hash, sizeof q->params_hash);
	h = fnv(h, q->err ? q->err : "", q->err_len);
	h = fnv(h, &q->rows, sizeof q->rows);
	h = fnv(h, &q->start_ns, sizeof q->start_ns);
	h = fnv(h, &q->end_ns, sizeof q->end_ns);
	h = fnv(h, q->params ? q->params : "", q->params_len);
	if (r->n < MAX_DIGESTS)
		r->digest[r->n] = h;
	r->n++;
}

static size_t pg_context(void *ctx, uint64_t *scope, char *site, size_t cap)
{
	struct run *r = ctx;
	/* One caller for a few events in a row: executions can merge. */
	*scope = r->now / 3;
	return (size_t)snprintf(site, cap, "f.py:%llu g", (unsigned long long)(r->now / 3));
}

static void http_emit(void *ctx, const struct tg_httpc_call *c)
{
	struct run *r = ctx;
	const struct tg_http_req *q = c->req;
	REQUIRE(q->method_len <= TG_HTTP_METHOD_MAX && q->target_len <= TG_HTTP_TARGET_MAX);
	REQUIRE(c->host_len <= 64 || c->host_len <= q->headers_len);
	REQUIRE(q->end_ns >= q->start_ns);
	uint64_t h = fnv(0x84222325cbf29ce4ull, q->method, q->method_len);
	h = fnv(h, q->target, q->target_len);
	h = fnv(h, c->host, c->host_len);
	h = fnv(h, &q->status, sizeof q->status);
	h = fnv(h, &q->request_bytes, sizeof q->request_bytes);
	h = fnv(h, &q->response_bytes, sizeof q->response_bytes);
	if (r->n < MAX_DIGESTS)
		r->digest[r->n] = h;
	r->n++;
}

/* Runs the script on one parser; split: cut each payload in two. */
static void run_script(const uint8_t *data, size_t size, int http, int split, struct run *r)
{
	struct tg_pgwire *w = http ? NULL : tg_pgwire_new(SQL_MAX);
	struct tg_httpc *c = http ? tg_httpc_new("127.0.0.1:80") : NULL;
	if (!w && !c)
		abort();
	if (w && size && (data[0] & 0x80)) /* half the inputs render Bind values */
		tg_pgwire_capture_params(w, 1);
	int dead = 0;
	size_t i = 0;
	while (i < size) {
		uint8_t op = data[i++];
		size_t len;
		if (op == 0xff) {
			if (i + 2 > size)
				break;
			len = (size_t)(data[i] | data[i + 1] << 8) + 1;
			i += 2;
		} else {
			len = (size_t)(op >> 1) + 1;
		}
		if (len > size - i)
			len = size - i;
		int dir = op & 1;
		r->now++;
		const uint8_t *p = data + i;
		i += len;
		if (dead || !len)
			continue;
		size_t cut = split && len > 1 ? 1 + p[0] % (len - 1) : len;
		for (int part = 0; part < 2 && !dead; part++) {
			const uint8_t *b = part ? p + cut : p;
			size_t n = part ? len - cut : cut;
			if (!n)
				continue;
			int rc = http ? tg_httpc_feed(c, dir, b, n, r->now, http_emit, pg_context, r)
				      : tg_pgwire_feed(w, dir, b, n, r->now, pg_emit, pg_context, r);
			if (rc != 0)
				dead = 1;
		}
	}
	r->now++;
	if (w) {
		if (!dead)
			tg_pgwire_close(w, r->now, pg_emit, r);
		tg_pgwire_free(w);
	}
	if (c) {
		if (!dead)
			tg_httpc_close(c, r->now, http_emit, r);
		tg_httpc_free(c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run a, b;
	for (int http = 0; http < 2; http++) {
		memset(&a, 0, sizeof a);
		memset(&b, 0, sizeof b);
		run_script(data, size, http, 0, &a);
		run_script(data, size, http, 1, &b);
		REQUIRE(a.n == b.n);
		size_t n = a.n < MAX_DIGESTS ? a.n : MAX_DIGESTS;
		REQUIRE(memcmp(a.digest, b.digest, n * sizeof a.digest[0]) == 0);
	}
	return 0;
}

#ifdef TG_FUZZ_REPLAY

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	return fuzz_xorshift(&rng_state);
}

struct script {
	uint8_t b[16384];
	size_t n;
};

static void ev(struct script *s, int dir, const void *p, size_t len)
{
	while (len) {
		size_t n = len > 128 ? 128 : len;
		if (s->n + 1 + n > sizeof s->b)
			return;
		s->b[s->n++] = (uint8_t)(((n - 1) << 1) | (unsigned)dir);
		memcpy(s->b + s->n, p, n);
		s->n += n;
		p = (const uint8_t *)p + n;
		len -= n;
	}
}

static size_t msg(uint8_t *out, char type, const char *body, size_t len)
{
	out[0] = (uint8_t)type;
	uint32_t l = (uint32_t)len + 4;
	out[1] = (uint8_t)(l >> 24);
	out[2] = (uint8_t)(l >> 16);
	out[3] = (uint8_t)(l >> 8);
	out[4] = (uint8_t)l;
	memcpy(out + 5, body, len);
	return len + 5;
}

static const char startup[] = "\0\0\0\x1d\0\3\0\0user\0tg\0database\0db\0\0"; /* 29 bytes */
static const char ssl_req[] = "\0\0\0\x08\x04\xd2\x16\x2f";
static const char parse_body[] = "s1\0SELECT * FROM t WHERE a = $1 AND b = 'a long literal past the cap'\0\0";

static void gen(struct script *s)
{
	uint8_t m[512];
	s->n = 0;
	if (rnd() % 4 == 0) {
		ev(s, 0, ssl_req, 8);
		ev(s, 1, rnd() % 2 ? "N" : "S", 1);
	}
	ev(s, 0, startup, sizeof startup - 1);
	ev(s, 1, m, msg(m, 'R', "\0\0\0\0", 4));
	ev(s, 1, m, msg(m, 'Z', "I", 1));
	int steps = 1 + (int)(rnd() % 12);
	for (int k = 0; k < steps; k++) {
		switch (rnd() % 11) {
		case 0: ev(s, 0, m, msg(m, 'Q', "SELECT 1\0", 9)); break;
		case 1: ev(s, 0, m, msg(m, 'P', parse_body, sizeof parse_body - 1)); break;
		case 2: ev(s, 0, m, msg(m, 'B', "\0s1\0\0\0\0\0\0\0", 10)); break;
		case 3: ev(s, 0, m, msg(m, 'E', "\0\0\0\0\0", 5)); break;
		case 4: ev(s, 0, m, msg(m, 'S', "", 0)); break;
		case 5: ev(s, 1, m, msg(m, 'D', "\0\1\0\0\0\1x", 7)); break;
		case 6: {
			int sel = rnd() % 2;
			ev(s, 1, m, msg(m, 'C', sel ? "SELECT 3\0" : "INSERT 0 12\0", sel ? 9 : 12));
			break;
		}
		case 7: ev(s, 1, m, msg(m, 'E', "SERROR\0C42P01\0Mmissing\0\0", 24)); break;
		case 9: { /* executemany: Bind/Execute of one statement, twice, in one write */
			size_t n = 0;
			char v = (char)('0' + rnd() % 3);
			const char bind_v[] = {0, 's', '1', 0, 0, 0, 0, 1, 0, 0, 0, 1, v, 0, 0};
			for (int e = 0; e < 2; e++) {
				n += msg(m + n, 'B', bind_v, sizeof bind_v);
				n += msg(m + n, 'E', "\0\0\0\0\0", 5);
			}
			if (rnd() % 2)
				n += msg(m + n, 'S', "", 0);
			ev(s, 0, m, n);
			break;
		}
		case 10: { /* a statement prepared in a batch of its own */
			size_t n = msg(m, 'P', parse_body, sizeof parse_body - 1);
			n += msg(m + n, 'D', "Ss1\0", 4);
			n += msg(m + n, 'S', "", 0);
			ev(s, 0, m, n);
			break;
		}
		default: ev(s, 1, m, msg(m, 'Z', "I", 1)); break;
		}
		if (rnd() % 16 == 0 && s->n > 4) /* corrupt a byte */
			s->b[rnd() % s->n] ^= (uint8_t)(1u << (rnd() % 8));
	}
	if (rnd() % 3 == 0) { /* some HTTP for the HTTP adapter */
		static const char req[] = "GET /x?y=1 HTTP/1.1\r\nHost: h:1\r\n\r\n";
		static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
		s->n = 0;
		for (int k = 0; k < 1 + (int)(rnd() % 4); k++) {
			ev(s, 0, req, sizeof req - 1);
			ev(s, 1, resp, sizeof resp - 1);
		}
	}
}

const long fuzz_iterations = 100000;

size_t fuzz_generate(const uint8_t **data)
{
	static struct script s;
	gen(&s);
	*data = s.b;
	return s.n;
}

#endif
