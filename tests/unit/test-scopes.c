/*
 * test-scopes.c - unit tests of request scope joins (collector/scopes.c):
 * a request joins the scope begun for it on its connection; the next
 * request's scope on a keep-alive connection, begun while this one's last
 * response bytes were still being written, is never taken for it. A long
 * stream of scopes is found by token while kept, and only then.
 */
#include <stdlib.h>
#include <string.h>

#include "collector/scopes.h"
#include "lib/test-check.h"

static void begin_seen(struct tg_scopes *s, uint64_t token, uint64_t conn_id, uint64_t ts_ns, int64_t seen_ns)
{
	struct tg_ev_scope e;
	memset(&e, 0, sizeof e);
	e.kind = TG_SCOPE_BEGIN;
	e.tid = 7;
	e.token = token;
	e.ts_ns = ts_ns;
	e.conn_id = conn_id;
	CHECK(tg_scopes_record(s, &e, sizeof e, seen_ns) == 0);
}

static void begin(struct tg_scopes *s, uint64_t token, uint64_t conn_id, uint64_t ts_ns)
{
	begin_seen(s, token, conn_id, ts_ns, 0);
}

static struct tg_ev_request request(uint64_t conn_id, uint64_t start, uint64_t resp_start, uint64_t end)
{
	struct tg_ev_request r;
	memset(&r, 0, sizeof r);
	r.tid = 7;
	r.conn_id = conn_id;
	r.start_ns = start;
	r.req_end_ns = start + 10;
	r.resp_start_ns = resp_start;
	r.end_ns = end;
	return r;
}

/* The next of a stream of well-spread tokens (xorshift64; never
 * 0, which is no token). */
static uint64_t next_token(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x | 1;
}

/* Scope i of churn(): begun at 1000 i on connection i + 1, arrived at i. */
static struct tg_ev_request churn_request(size_t i)
{
	return request(i + 1, 1000 * i - 10, 0, 1000 * i + 10);
}

/* A long stream: each scope is found by its token, with its request's id,
 * as long as it is kept - those that arrived within the kept time, at most
 * the newest 65,536 - and never once forgotten. The ring wraps around many
 * times, and the index loses entries from the middle of its probe runs. */
static void churn(void)
{
	enum { N = 300000, KEEP = 40000, MAX = 65536, FORGET_UNTIL = 150000 };
	struct tg_scopes *s = tg_scopes_new();
	uint64_t *tok = malloc(N * sizeof *tok);
	CHECK(s && tok);
	if (!s || !tok)
		return;
	uint64_t x = 88172645463325252ull;
	size_t forgot_below = 0; /* scopes below it were forgotten */
	int bad = 0;
	for (size_t i = 0; i < N; i++) {
		tok[i] = next_token(&x);
		begin_seen(s, tok[i], i + 1, 1000 * i, (int64_t)i);
		if (i % 100 != 0) { /* one in a hundred stays open */
			struct tg_ev_request r = churn_request(i);
			struct tg_scope *sc = tg_scopes_match(s, &r);
			if (!sc || sc->token != tok[i])
				bad++;
			else
				tg_scopes_joined(s, sc, (int64_t)i + 1);
		}
		if (i < FORGET_UNTIL && i % 1000 == 999) { /* then only the maximum forgets */
			tg_scopes_forget(s, (int64_t)i, KEEP);
			if (i > KEEP)
				forgot_below = i - KEEP;
		}
		if (i % 4999 == 4998) {
			size_t lo = forgot_below, cap_lo = i + 1 > MAX ? i + 1 - MAX : 0;
			if (cap_lo > lo)
				lo = cap_lo;
			for (size_t j = 0; j <= i; j += 7) {
				const struct tg_scope *f = tg_scopes_find(s, tok[j]);
				if (j >= lo ? !f || f->token != tok[j] || f->request_id != (j % 100 ? (int64_t)j + 1 : 0)
					    : f != NULL)
					bad++;
			}
		}
	}
	CHECK(bad == 0);
	/* The open ones still kept are matched; forgotten ones are not. */
	struct tg_ev_request r = churn_request(N - 100);
	struct tg_scope *sc = tg_scopes_match(s, &r);
	CHECK(sc && sc->token == tok[N - 100]);
	r = churn_request(N - MAX - 100);
	CHECK(tg_scopes_match(s, &r) == NULL);
	/* A rolled-back batch: the requests above it are lost. */
	tg_scopes_lost_after(s, N - 50);
	CHECK(tg_scopes_find(s, tok[N - 51])->request_id == N - 50);
	CHECK(tg_scopes_find(s, tok[N - 49])->request_id == 0);
	/* Everything forgotten at last. */
	tg_scopes_forget(s, 10 * N, KEEP);
	CHECK(tg_scopes_find(s, tok[N - 1]) == NULL);
	CHECK(tg_scopes_open_since(s, 1000 * N, 1000 * N) == INT64_MAX);
	tg_scopes_free(s);
	free(tok);
}

/* A small table under steady churn: some 150 scopes live in the first
 * ring (256 slots, an index of 512), each forgotten 150 arrivals later, so
 * that the index's probe runs often wrap around its end as entries leave.
 * Every live scope is found after every step, and the one just forgotten
 * is not. */
static void small_churn(void)
{
	enum { N = 60000, KEEP = 150 };
	struct tg_scopes *s = tg_scopes_new();
	uint64_t *tok = malloc(N * sizeof *tok);
	CHECK(s && tok);
	if (!s || !tok)
		return;
	uint64_t x = 2463534242ull;
	int bad = 0;
	for (size_t i = 0; i < N; i++) {
		tok[i] = next_token(&x);
		begin_seen(s, tok[i], i + 1, 1000 * i, (int64_t)i);
		tg_scopes_forget(s, (int64_t)i, KEEP);
		size_t lo = i > KEEP ? i - KEEP : 0;
		for (size_t j = lo; j <= i; j++)
			if (!tg_scopes_find(s, tok[j]))
				bad++;
		if (lo && tg_scopes_find(s, tok[lo - 1]))
			bad++;
	}
	CHECK(bad == 0);
	tg_scopes_free(s);
	free(tok);
}

int main(void)
{
	struct tg_scopes *s = tg_scopes_new();
	CHECK(s != NULL);
	/* Request A on connection 3: read at 1000, answered from 2000, its last
	 * bytes written at 9000 (a full socket buffer). Request B on the same
	 * connection began its scope at 5000, and A's own scope record is
	 * missing (the ring was full): A must join nothing. */
	begin(s, 200, 3, 5000);
	struct tg_ev_request a = request(3, 1000, 2000, 9000);
	CHECK(tg_scopes_match(s, &a) == NULL);
	/* Without a response (the connection failed), a scope begun during
	 * the request is still its own. */
	struct tg_ev_request failed = request(3, 1000, 0, 9000);
	struct tg_scope *sc = tg_scopes_match(s, &failed);
	CHECK(sc && sc->token == 200);
	/* B itself joins it. */
	struct tg_ev_request b = request(3, 4990, 6000, 7000);
	sc = tg_scopes_match(s, &b);
	CHECK(sc && sc->token == 200);
	if (sc)
		tg_scopes_joined(s, sc, 2);
	CHECK(tg_scopes_find(s, 200) && tg_scopes_find(s, 200)->request_id == 2);
	/* With both scopes there, each request takes its own. */
	begin(s, 300, 4, 20000);
	begin(s, 400, 4, 25000);
	struct tg_ev_request c = request(4, 19990, 21000, 30000), d = request(4, 24990, 26000, 27000);
	sc = tg_scopes_match(s, &d);
	CHECK(sc && sc->token == 400);
	if (sc)
		tg_scopes_joined(s, sc, 4);
	sc = tg_scopes_match(s, &c);
	CHECK(sc && sc->token == 300);
	/* Another connection's scope is never taken. */
	begin(s, 500, 5, 40000);
	struct tg_ev_request e = request(6, 39990, 41000, 42000);
	CHECK(tg_scopes_match(s, &e) == NULL);
	tg_scopes_free(s);
	churn();
	small_churn();
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("scopes: ok\n");
	return 0;
}
