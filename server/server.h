/*
 * server.h - the dashboard's HTTP server: civetweb with one dispatcher, the
 * Host-header check, security headers, JSON responses and errors in one
 * shape, and the embedded web assets.
 *
 * Every response carries a strict Content-Security-Policy, nosniff and
 * no-referrer, and never a CORS header. A request whose Host header is not
 * one this server answers to (127.0.0.1:PORT, localhost:PORT, [::1]:PORT or
 * the --host value) gets 403, which defeats DNS rebinding; one that could
 * show that check one host and mean another (two Host headers, a Host that
 * is not host[:port], an absolute target naming another host, more header
 * fields than civetweb keeps, a body) gets 400 and is closed. Only GET and
 * HEAD are served.
 *
 * Errors have one shape everywhere:
 *   {"error": {"status": 404, "code": "not_found", "message": "..."}}
 */
#ifndef TG_SERVER_SERVER_H
#define TG_SERVER_SERVER_H

#include <stddef.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "db.h"

struct tg_server;

/* Live-update streams (/api/events) served at once; one more gets 503
 * "too_many_streams". Each holds a worker thread, and the server runs
 * TG_API_WORKERS more workers than that for everything else. */
#define TG_EVENTS_MAX_STREAMS 32
#define TG_API_WORKERS 16

struct tg_server_config {
	const char *db_path; /* the store; may not exist yet */
	const char *host;    /* address to listen on, e.g. "127.0.0.1" or "::1" */
	int port;            /* 0: any free port (see tg_server_port()) */
};

/* Starts listening and serving in civetweb's threads. Returns NULL with one
 * line in err (no "timeglass: " prefix) when it cannot listen. */
struct tg_server *tg_server_start(const struct tg_server_config *cfg, char *err, size_t errlen);

/* The port actually listened on. */
int tg_server_port(const struct tg_server *srv);

/* Stops serving (open event streams end within ~100 ms) and frees srv. */
void tg_server_stop(struct tg_server *srv);

/* One request being handled. */
struct tg_req {
	struct mg_connection *conn;
	const struct mg_request_info *ri;
	struct tg_server *srv;
	const char *path;    /* the URI path, e.g. "/api/requests/12" */
	const char *rest;    /* what follows the route prefix: "" or "/12" */
	const char *db_path; /* the store path */
	int head;            /* HEAD request: headers only */
	const char *retry_after; /* Retry-After value of the response, or NULL */
};

/* Sends body (owned and freed here; NULL = out of memory → 500) with the
 * given status. Returns status, the handler's return value. */
int tg_send_json(struct tg_req *r, int status, cJSON *body);

/* Sends the error shape with the given status, code and message. Returns
 * status. */
int tg_send_error(struct tg_req *r, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Sends the status line and headers of a response: security headers always;
 * content_length < 0 means none (a stream). Returns 0, or -1 when the
 * connection failed. */
int tg_send_headers(struct tg_req *r, int status, const char *content_type, long long content_length,
		    const char *cache_control, const char *etag);

/* Copies query parameter name into buf (URL-decoded). Returns its length,
 * or -1 when it is absent, or -2 when it does not fit; buf is left as it
 * was (a default) in both cases. */
int tg_query_param(const struct tg_req *r, const char *name, char *buf, size_t n);

/* The store connection for an API handler. On any state but TG_DB_OK it
 * sends the 503 error (code "store_missing", "store_newer", ...) and returns
 * NULL; the handler then returns 503. */
sqlite3 *tg_req_db(struct tg_req *r, struct tg_db *db);

/* Nonzero once the server is stopping (long-running handlers return). */
int tg_server_stopping(const struct tg_server *srv);

/* The event streams' store poller (events.c): started with the server,
 * stopped after civetweb. tg_events_start() returns 0 or -1. */
int tg_events_start(const char *db_path);
void tg_events_stop(void);

/* Event streams open now. */
int tg_events_open_streams(void);

/* Handlers, one per route prefix (api.c, events.c, assets.c). Each returns
 * the HTTP status it sent. */
int tg_api_status(struct tg_req *r);
int tg_api_runs(struct tg_req *r);
int tg_api_overview(struct tg_req *r);
int tg_api_score(struct tg_req *r);
int tg_api_endpoints(struct tg_req *r);
int tg_api_requests(struct tg_req *r);
int tg_api_flame(struct tg_req *r);
int tg_api_events(struct tg_req *r);
int tg_api_bench(struct tg_req *r);
int tg_serve_asset(struct tg_req *r);

#endif
