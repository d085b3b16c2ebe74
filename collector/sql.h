/*
 * collector/sql.h - the collector's side of the SQL and outbound-HTTP taps: decoding
 * TG_EV_QUERY and TG_EV_HTTP_CALL records, attributing
 * queries and calls to request rows, fingerprints and N+1 flags, and
 * writing the queries and spans tables.
 *
 * A query reaches the ring before its request's record (which is written
 * when the response completes), so each process keeps its queries and
 * calls pending until the request that owns them is stored: then they are
 * written together, which is also when duplicates and N+1 patterns of that
 * request are found. Attribution, in order: the scope token the record
 * carries (joined to its request by the process's scope table,
 * scopes.h); without a token, the only request
 * in flight on the query's thread ('thread'); else none (request_id NULL).
 * Nothing is lost: what is still pending at exit is written then, and a
 * bound on pending rows writes the oldest early.
 */
#ifndef TG_SQL_H
#define TG_SQL_H

#include <stdint.h>

#include "common/event.h"
#include "collector/scopes.h"
#include "lib/store.h"

struct tg_sql_ctx {
	struct tg_store *store;
	int64_t run_id;
	int64_t process_id;     /* 0 = NULL */
	int32_t pid;
	int64_t mono_to_unix;   /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */
	unsigned n_plus_one;    /* flag a fingerprint run this often from one call site (default 5) */
	const struct tg_scopes *scopes; /* the process's request scopes */
};

struct tg_sql_proc;

/* Per-process state; NULL on ENOMEM (then records are dropped as bad). */
struct tg_sql_proc *tg_sql_proc_new(void);

/* Frees the state; call tg_sql_settle(..., final 1) first. NULL is fine. */
void tg_sql_proc_free(struct tg_sql_proc *p);

/* Takes a TG_EV_QUERY or TG_EV_HTTP_CALL record (private
 * copy, size bytes). now_ns: collector CLOCK_MONOTONIC. Returns 0, or -1
 * when the record is malformed (the caller counts it as bad). */
int tg_sql_record(const struct tg_sql_ctx *c, struct tg_sql_proc *p, const void *rec, uint32_t size,
		  int64_t now_ns);

/* A request record r (validated) was stored as row request_id (0: lost)
 * and joined to scope token (0: none): writes the pending queries and calls
 * of that scope. */
void tg_sql_request(const struct tg_sql_ctx *c, struct tg_sql_proc *p, const struct tg_ev_request *r,
		    int64_t request_id, uint64_t token);

/* The store rolled back a batch: requests above kept (the highest
 * requests.id it still has) are no longer candidates for the thread
 * fallback. */
void tg_sql_lost_after(struct tg_sql_proc *p, int64_t kept);

/* Writes what has waited long enough (final: everything). */
void tg_sql_settle(const struct tg_sql_ctx *c, struct tg_sql_proc *p, int64_t now_ns, int final);

#endif
