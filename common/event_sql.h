/*
 * event_sql.h - ring records of the SQL and outbound-HTTP taps and of the
 * request scopes that attribute them (TG_EV_QUERY, TG_EV_HTTP_CALL and
 * TG_EV_REQ_SCOPE of event.h).
 *
 * The preload library copies capped texts into the record and does nothing
 * else with them: fingerprints, redaction and attribution to a request row
 * are the collector's work. Every record carries the request scope token
 * that was current on the thread (0 = none known), see preload/scope.c.
 */
#ifndef TG_EVENT_SQL_H
#define TG_EVENT_SQL_H

#include <stdint.h>

#include "event.h"

#define TG_SQL_MAX_DEFAULT 4096u /* bytes of SQL text kept (TIMEGLASS_SQL_MAX) */
#define TG_SQL_MAX_LIMIT 32768u  /* hard cap of TIMEGLASS_SQL_MAX */
#define TG_SQL_ERR_MAX 512u      /* bytes of error text kept */
#define TG_SQL_DB_MAX 128u       /* bytes of database name kept */
#define TG_SQL_PARAMS_MAX 1024u  /* bytes of parameter text kept (--capture-params) */
#define TG_CALL_SITE_MAX 256u    /* bytes of "file:line function" kept */

enum tg_query_tap {
	TG_TAP_LIBPQ = 1,   /* interposed libpq function */
	TG_TAP_WIRE = 2,    /* PostgreSQL wire protocol on a socket (or under TLS) */
	TG_TAP_SQLITE3 = 3, /* interposed sqlite3 function */
};

enum tg_db_system {
	TG_DB_POSTGRESQL = 1,
	TG_DB_SQLITE = 2,
};

/* tg_ev_query.flags */
#define TG_QF_ERROR 0x01         /* the query failed; error text follows */
#define TG_QF_SQL_TRUNCATED 0x02 /* sql longer than the cap */
#define TG_QF_ROWS_UNKNOWN 0x04  /* rows is not known */
#define TG_QF_TLS 0x08           /* seen through the TLS taps */
#define TG_QF_PARAMS_KNOWN 0x10  /* params_hash covers every bound value (none: hash of nothing) */
#define TG_QF_BATCH_CONT 0x20    /* more executions of the batch (executemany) that the last
				  * query on conn_key began: the collector adds them to it */

/*
 * One finished query. Followed by sql_len bytes of SQL, db_len bytes of
 * database name, err_len bytes of error ("SQLSTATE message" for PostgreSQL,
 * "CODE message" for SQLite), params_len bytes of parameters (only with
 * --capture-params) and site_len bytes of call site, then zero padding to
 * a multiple of 8. Strings are not NUL-terminated.
 *
 * A batch (executemany: one statement executed for many parameter sets in
 * one call of the app) is one record with executions > 1 when the tap saw
 * it whole; when it could not hold the first executions back, the rest
 * follow in records flagged TG_QF_BATCH_CONT. The parameter values
 * themselves are only sent with --capture-params, but their hash always
 * is (duplicates are the same text with the same values).
 */
struct tg_ev_query {
	struct tg_ev_hdr h;
	uint32_t tid;        /* thread that ran the query (its end) */
	uint8_t tap;         /* enum tg_query_tap */
	uint8_t db_system;   /* enum tg_db_system */
	uint16_t flags;      /* TG_QF_* */
	uint64_t scope;      /* request scope token, 0 = none */
	uint64_t conn_key;   /* per-process connection identity (pointer or fd based) */
	uint64_t start_ns;   /* CLOCK_MONOTONIC: query sent / first step */
	uint64_t end_ns;     /* CLOCK_MONOTONIC: final result / done */
	int64_t rows;        /* rows returned or affected, all executions (see TG_QF_ROWS_UNKNOWN) */
	uint64_t params_hash; /* of the bound values of every execution (TG_QF_PARAMS_KNOWN) */
	uint32_t executions; /* executions of the statement this record stands for, >= 1 */
	uint16_t sql_len;
	uint16_t db_len;
	uint16_t err_len;
	uint16_t params_len;
	uint16_t site_len;
	uint16_t pad0;
	/* char data[] follows */
};

/* tg_ev_http_call.flags */
#define TG_HF_TLS 0x01 /* https: seen through the TLS taps */

/*
 * One outbound HTTP/1.x exchange (request and its response). Followed by
 * method_len bytes of method, host_len bytes of host (Host header, else the
 * peer address), target_len bytes of request target, err_len bytes of error
 * and site_len bytes of call site, then zero padding to a multiple of 8.
 */
struct tg_ev_http_call {
	struct tg_ev_hdr h;
	uint32_t tid;           /* thread that wrote the request's first byte */
	uint16_t status;        /* final status, 0 if none */
	uint16_t flags;         /* TG_HF_* */
	uint64_t scope;         /* request scope token, 0 = none */
	uint64_t start_ns;      /* first request byte written */
	uint64_t end_ns;        /* last response byte read, or the failure */
	uint64_t request_bytes; /* bytes written for this exchange */
	uint64_t response_bytes;/* bytes read for it */
	uint16_t method_len;
	uint16_t host_len;
	uint16_t target_len;
	uint16_t err_len;
	uint16_t site_len;
	uint16_t pad0[3];
	/* char data[] follows */
};

enum tg_scope_kind {
	TG_SCOPE_BEGIN = 1, /* a request's task starts (marker: timeglass_scope_enter) */
	TG_SCOPE_END = 2,   /* it ends (timeglass_scope_exit) */
};

/*
 * A request scope begins or ends. The collector joins the BEGIN record to
 * the wire request in flight at ts_ns on connection conn_id when the marker
 * knew the request's socket; else to the one of the same client (the
 * address the app was given, which a proxy header may have rewritten), or
 * for an in-process request to the request of the same thread.
 */
struct tg_ev_scope {
	struct tg_ev_hdr h;
	uint32_t tid;
	uint16_t kind;          /* enum tg_scope_kind */
	uint16_t pad0;
	uint64_t token;         /* per-process, from 1 */
	uint64_t ts_ns;         /* CLOCK_MONOTONIC */
	uint8_t client_family;  /* AF_INET, AF_INET6, or 0 if unknown */
	uint8_t pad1;
	uint16_t client_port;   /* host byte order */
	uint32_t pad2;
	uint8_t client_addr[16];
	uint64_t conn_id;       /* tg_ev_request.conn_id of the request's connection, 0 if unknown */
};

#endif
