/*
 * test-scopes.c - unit tests of request scope joins (collector/scopes.c):
 * a request joins the scope begun for it on its connection; the next
 * request's scope on a keep-alive connection, begun while this one's last
 * response bytes were still being written, is never taken for it.
 */
#include <string.h>

#include "collector/scopes.h"
#include "lib/test-check.h"

static void begin(struct tg_scopes *s, uint64_t token, uint64_t conn_id, uint64_t ts_ns)
{
	struct tg_ev_scope e;
	memset(&e, 0, sizeof e);
	e.kind = TG_SCOPE_BEGIN;
	e.tid = 7;
	e.token = token;
	e.ts_ns = ts_ns;
	e.conn_id = conn_id;
	CHECK(tg_scopes_record(s, &e, sizeof e, 0) == 0);
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
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("scopes: ok\n");
	return 0;
}
