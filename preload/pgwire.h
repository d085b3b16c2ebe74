/*
 * pgwire.h - incremental parser of the PostgreSQL frontend/backend protocol
 * (version 3) as seen from the client side of one connection.
 *
 * The preload library feeds it every byte the app writes to (TG_PG_TO_SERVER)
 * and reads from (TG_PG_FROM_SERVER) a PostgreSQL connection, on the socket
 * or, for TLS, as plaintext from the TLS taps. It follows the startup
 * (StartupMessage with the database name; SSLRequest and its one-byte
 * answer), simple queries (Query ... ReadyForQuery) and the extended
 * protocol (Parse with statement names cached per connection, Bind,
 * Describe, Execute, Sync; pipelining of many Execute/Sync batches), counts
 * DataRow messages, reads CommandComplete tags and ErrorResponse SQLSTATE
 * and message, and hands each finished query to an emit callback. Password
 * and SASL messages are skipped unread. It does no I/O and takes no clock.
 *
 * A query's time runs from the first message of its execution to its last
 * result: when a statement is prepared in a batch of its own (Parse,
 * Describe, Sync - asyncpg, psycopg 3's prepared statements) and then
 * executed by the same caller (scope and call site), who may have run other
 * statements in between (type introspection), its Parse begins the
 * execution. Executions of one statement that follow each other
 * in one batch for one caller (asyncpg's executemany, psycopg 3 pipelines)
 * are one query with their count of executions; those whose first part was
 * already reported are reported with batch_cont set. Every Bind's values
 * are hashed (not kept) so that duplicates can be told from queries that
 * differ only in their values.
 *
 * With parameter capture on (tg_pgwire_capture_params), Bind values are
 * rendered as "$1='text', $2=NULL, $3=42": text-format values as text,
 * binary ones by type (int2/int4/int8/oid, bool, float4/float8, text-like,
 * uuid) where the statement's parameter types are known - from its Parse
 * or from the server's ParameterDescription answering a Describe - else
 * as capped hex. Off, Bind values are never looked at.
 *
 * Cost: message bodies that matter are copied up to a cap (SQL text up to
 * the configured maximum); DataRow and other bodies are skipped by counting.
 */
#ifndef TG_PGWIRE_H
#define TG_PGWIRE_H

#include <stddef.h>
#include <stdint.h>

#define TG_PG_TO_SERVER 0
#define TG_PG_FROM_SERVER 1

/* Return values of tg_pgwire_feed(). */
#define TG_PG_OK 0
#define TG_PG_UNTRACK 1   /* not PostgreSQL (or a protocol we do not follow): stop feeding */
#define TG_PG_ENCRYPTED 2 /* the server accepted SSLRequest: later socket bytes are TLS */

#define TG_PG_SITE_MAX 256 /* bytes of call site kept per query in flight */

/* A finished query as handed to the emit callback. Strings are not
 * NUL-terminated and live until the callback returns. */
struct tg_pg_query {
	const char *sql; size_t sql_len;
	int sql_truncated;
	const char *db; size_t db_len;      /* from the StartupMessage, may be empty */
	uint64_t start_ns, end_ns;          /* sent / completed */
	int64_t rows;                       /* from the CommandComplete tag, else DataRows */
	int failed;
	const char *err; size_t err_len;    /* "SQLSTATE message" */
	uint64_t scope;                     /* as given by the context callback at send time */
	const char *site; size_t site_len;  /* likewise */
	const char *params; size_t params_len; /* rendered Bind values (the first execution's), capture on */
	uint64_t params_hash;               /* of every execution's Bind values, when params_known */
	int params_known;                   /* 0: some execution's Bind was not seen */
	uint32_t executions;                /* >= 1 */
	int batch_cont;                     /* continues the batch of the last query reported */
};

typedef void (*tg_pg_emit_fn)(void *ctx, const struct tg_pg_query *q);

/* Asked when a query is sent: fills *scope and site (cap bytes), returns
 * the site's length. May be NULL. */
typedef size_t (*tg_pg_context_fn)(void *ctx, uint64_t *scope, char *site, size_t cap);

struct tg_pgwire;

/* New connection state; sql_max caps the SQL text kept. NULL on ENOMEM. */
struct tg_pgwire *tg_pgwire_new(size_t sql_max);
void tg_pgwire_free(struct tg_pgwire *w);

/* Turns the rendering of Bind parameter values on (1) or off (0, the
 * default). Set it before the first feed. */
void tg_pgwire_capture_params(struct tg_pgwire *w, int on);

#define TG_PG_PARAMS_MAX 1024 /* bytes of rendered parameters kept per query */

/* Feeds n bytes in direction dir at time now. Returns TG_PG_*. After
 * TG_PG_UNTRACK or TG_PG_ENCRYPTED the state must only be freed. */
int tg_pgwire_feed(struct tg_pgwire *w, int dir, const uint8_t *buf, size_t n, uint64_t now,
		   tg_pg_emit_fn emit, tg_pg_context_fn context, void *ctx);

/* The connection ended at now: queries still waiting for their result are
 * emitted as failed ("connection closed"). */
void tg_pgwire_close(struct tg_pgwire *w, uint64_t now, tg_pg_emit_fn emit, void *ctx);

/* 1 if the first bytes a client writes look like a PostgreSQL startup
 * (StartupMessage, SSLRequest, GSSENCRequest or CancelRequest). n >= 8. */
int tg_pgwire_sniff(const uint8_t *buf, size_t n);

#endif
