/*
 * collector/scopes.h - request scopes in the collector: which request each scope
 * token of a process stands for.
 *
 * The marker opens a scope (TG_EV_REQ_SCOPE BEGIN) inside each request it
 * serves; queries, outbound calls, stack samples and marks carry its token.
 * When a request record arrives, tg_scopes_match() finds the scope begun for
 * it - on its connection when the marker knew the socket, else by the
 * client address the app was given, or, for an in-process request, by
 * thread - and from then on the token names that request's row. One table
 * per process, shared by the query (sql.c), sample (stacks.c) and mark
 * (collector.c) paths, so that all three always agree.
 *
 * Workload: one scope per request, thousands per second; lookups by token
 * (every query and sample) go through a hash index; a join scans only the
 * scopes not joined yet (the requests in flight).
 */
#ifndef TG_SCOPES_H
#define TG_SCOPES_H

#include <stddef.h>
#include <stdint.h>

#include "common/event.h"
#include "common/event_sql.h"

struct tg_scope {
	uint64_t token;
	uint32_t tid;         /* thread that began it */
	uint64_t begin_ns;    /* CLOCK_MONOTONIC of the app */
	uint64_t conn_id;     /* connection of its request, 0 if unknown */
	uint8_t family;       /* client as the app was given it */
	uint16_t port;
	uint8_t addr[16];
	int64_t request_id;   /* requests.id once joined, 0 before (or if the row was lost) */
	int joined;           /* its request record arrived */
	int64_t seen_ns;      /* collector time of arrival */
};

struct tg_scopes;

/* An empty table; NULL on ENOMEM. */
struct tg_scopes *tg_scopes_new(void);

void tg_scopes_free(struct tg_scopes *s);

/* Takes in a TG_EV_REQ_SCOPE record (size bytes, validated here). BEGIN
 * adds a scope; END is ignored. Returns 0, or -1 if malformed. */
int tg_scopes_record(struct tg_scopes *s, const void *rec, uint32_t size, int64_t now_ns);

/* The scope of token, NULL if unknown (never seen, or forgotten). */
const struct tg_scope *tg_scopes_find(const struct tg_scopes *s, uint64_t token);

/* The scope begun for request record r (validated), not joined yet: on
 * r's connection, else of r's client, or for an in-process request of r's
 * thread; NULL if none. Valid until the next call that adds or forgets. */
struct tg_scope *tg_scopes_match(struct tg_scopes *s, const struct tg_ev_request *r);

/* Joins scope sc (from tg_scopes_match) to the request row request_id (0:
 * the row was lost). A scope is joined once. */
void tg_scopes_joined(struct tg_scopes *s, struct tg_scope *sc, int64_t request_id);

/* The store rolled back a batch: scopes joined to a request row above
 * kept (the highest requests.id it still has) now stand for a lost row, as
 * if tg_scopes_joined() had been given 0, so that their late queries and
 * samples never go to another request that gets the same id. */
void tg_scopes_lost_after(struct tg_scopes *s, int64_t kept);

/* The earliest begin_ns of a scope not joined yet that began less than
 * wait_ns before app_now; INT64_MAX if none. */
int64_t tg_scopes_open_since(const struct tg_scopes *s, int64_t app_now, int64_t wait_ns);

/* 1 once the process has begun any scope: its requests are marked. */
int tg_scopes_any(const struct tg_scopes *s);

/* Forgets scopes that arrived more than keep_ns before now_ns. */
void tg_scopes_forget(struct tg_scopes *s, int64_t now_ns, int64_t keep_ns);

#endif
