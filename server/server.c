/*
 * server.c - civetweb set-up and the one dispatcher of the dashboard
 * (server.h): Host check, method check, route table, JSON and error
 * responses with the security headers.
 *
 * civetweb runs a fixed pool of worker threads; each request runs one
 * handler, which reads the store through its thread's own read-only
 * connection (db.h). Handlers build their whole JSON body before writing
 * anything, so no lock is held while writing to the network. Event streams
 * hold a worker each while open: the pool has TG_EVENTS_MAX_STREAMS workers
 * for them on top of TG_API_WORKERS, and events.c refuses the stream past
 * the cap, so the API always has workers.
 *
 * The Host check is the defence against DNS rebinding, so the request must
 * not be able to show it one host and mean another: a request with two Host
 * headers, a Host that is not host[:port] (userinfo, a path, a list), an
 * absolute request target naming another host, or more header fields than
 * civetweb keeps (the rest would go unseen) is refused with 400 and closed.
 */
#include "server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pthread.h>

#include "lib/readers.h"
#include "stats.h"

/* What the page may load and run: only its own scripts and styles. */
#define CSP                                                                                         \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " \
	"frame-ancestors 'none'"

#define MAX_HOSTS 5

struct tg_server {
	struct mg_context *ctx;
	char *db_path;
	int port;
	int wildcard;                 /* listening on all addresses */
	char *hosts[MAX_HOSTS];       /* accepted Host header values, "name:port" */
	size_t n_hosts;
	atomic_int stopping;
};

typedef int (*handler_fn)(struct tg_req *r);

/* Route prefixes: a request path matches a prefix when it equals it or
 * continues with '/'. The first match wins; "/" takes the rest. A route
 * without subpaths answers 404 to anything after its prefix. */
static const struct route {
	const char *prefix;
	handler_fn fn;
	int subpaths; /* fn reads r->rest itself */
} routes[] = {
	{ "/api/status", tg_api_status, 0 },
	{ "/api/runs", tg_api_runs, 0 },
	{ "/api/overview", tg_api_overview, 0 },
	{ "/api/score", tg_api_score, 0 },
	{ "/api/endpoints", tg_api_endpoints, 0 },
	{ "/api/requests", tg_api_requests, 1 },
	{ "/api/flame", tg_api_flame, 1 },
	{ "/api/events", tg_api_events, 0 },
	{ "/api/bench", tg_api_bench, 0 },
};

int tg_server_stopping(const struct tg_server *srv)
{
	return atomic_load(&srv->stopping);
}

int tg_server_port(const struct tg_server *srv)
{
	return srv->port;
}

int tg_send_headers(struct tg_req *r, int status, const char *content_type, long long content_length,
		    const char *cache_control, const char *etag)
{
	struct mg_connection *c = r->conn;
	char len[24];
	if (mg_response_header_start(c, status) < 0)
		return -1;
	mg_response_header_add(c, "Content-Type", content_type, -1);
	if (content_length >= 0) {
		snprintf(len, sizeof len, "%lld", content_length);
		mg_response_header_add(c, "Content-Length", len, -1);
	}
	mg_response_header_add(c, "Cache-Control", cache_control ? cache_control : "no-store", -1);
	if (etag)
		mg_response_header_add(c, "ETag", etag, -1);
	mg_response_header_add(c, "Content-Security-Policy", CSP, -1);
	mg_response_header_add(c, "X-Content-Type-Options", "nosniff", -1);
	mg_response_header_add(c, "Referrer-Policy", "no-referrer", -1);
	mg_response_header_add(c, "X-Frame-Options", "DENY", -1);
	mg_response_header_add(c, "Cross-Origin-Opener-Policy", "same-origin", -1);
	mg_response_header_add(c, "Cross-Origin-Resource-Policy", "same-origin", -1);
	if (status == 405)
		mg_response_header_add(c, "Allow", "GET, HEAD", -1);
	if (r->retry_after)
		mg_response_header_add(c, "Retry-After", r->retry_after, -1);
	return mg_response_header_send(c) < 0 ? -1 : 0;
}

int tg_send_json(struct tg_req *r, int status, cJSON *body)
{
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;
	cJSON_Delete(body);
	if (!text) {
		static const char oom[] =
			"{\"error\":{\"status\":500,\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
		if (tg_send_headers(r, 500, "application/json", (long long)sizeof oom - 1, NULL, NULL) == 0 &&
		    !r->head)
			mg_write(r->conn, oom, sizeof oom - 1);
		return 500;
	}
	size_t n = strlen(text);
	text[n] = '\n'; /* overwrites the NUL: the body ends with a newline */
	if (tg_send_headers(r, status, "application/json", (long long)n + 1, NULL, NULL) == 0 && !r->head)
		mg_write(r->conn, text, n + 1);
	cJSON_free(text);
	return status;
}

int tg_send_error(struct tg_req *r, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cJSON *body = cJSON_CreateObject();
	cJSON *err = cJSON_AddObjectToObject(body, "error");
	cJSON_AddNumberToObject(err, "status", status);
	cJSON_AddStringToObject(err, "code", code);
	cJSON_AddStringToObject(err, "message", msg);
	return tg_send_json(r, status, body);
}

int tg_query_param(const struct tg_req *r, const char *name, char *buf, size_t n)
{
	const char *q = r->ri->query_string;
	if (!q || n == 0)
		return -1;
	char *tmp = malloc(n);
	if (!tmp)
		return -2;
	int len = mg_get_var(q, strlen(q), name, tmp, n);
	if (len >= 0)
		memcpy(buf, tmp, (size_t)len + 1); /* buf keeps its value otherwise */
	free(tmp);
	return len;
}

sqlite3 *tg_req_db(struct tg_req *r, struct tg_db *db)
{
	tg_db_acquire(r->db_path, db);
	if (db->state == TG_DB_OK)
		return db->db;
	char code[32];
	snprintf(code, sizeof code, "store_%s", tg_db_state_name(db->state));
	tg_send_error(r, 503, code, "%s", db->message);
	return NULL;
}

/* Nonzero when the Host header names this server. */
static int host_allowed(const struct tg_server *srv, const char *host)
{
	if (!host)
		return 0;
	for (size_t i = 0; i < srv->n_hosts; i++)
		if (strcasecmp(host, srv->hosts[i]) == 0)
			return 1;
	if (!srv->wildcard)
		return 0;
	/* Listening on every address: also accept any IP literal with our port
	 * (an IP literal cannot be rebound the way a DNS name can). */
	char port[16];
	snprintf(port, sizeof port, ":%d", srv->port);
	size_t hl = strlen(host), pl = strlen(port);
	if (hl <= pl || strcmp(host + hl - pl, port) != 0)
		return 0;
	size_t n = hl - pl;
	if (host[0] == '[')
		return host[n - 1] == ']' && strspn(host + 1, "0123456789abcdefABCDEF:.") == n - 2;
	return strspn(host, "0123456789.") == n;
}

/* Nonzero when h (n bytes) is syntactically a host[:port]: a name, an IPv4
 * address or a bracketed IPv6 address, then optionally ':' and digits. No
 * userinfo, path, query, list, space or control character. */
static int host_syntax_ok(const char *h, size_t n)
{
	if (n == 0)
		return 1; /* empty: well formed, and names nobody (refused as a host) */
	size_t i = 0;
	if (h[0] == '[') {
		while (++i < n && h[i] != ']')
			if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.' && h[i] != '%')
				return 0;
		if (i == n)
			return 0;
		i++;
	} else {
		for (; i < n && h[i] != ':'; i++)
			if (!isalnum((unsigned char)h[i]) && !strchr("-._~%", h[i]))
				return 0;
	}
	if (i == n)
		return 1;
	if (h[i] != ':' || i + 1 == n)
		return 0;
	for (i++; i < n; i++)
		if (!isdigit((unsigned char)h[i]))
			return 0;
	return 1;
}

/* Checks what the request says about the host it is meant for. Returns 0
 * when it may go on, or the status sent (400 or 403). */
static int check_host(struct tg_req *r)
{
	const struct tg_server *srv = r->srv;
	const struct mg_request_info *ri = r->ri;
	const char *host = NULL;
	int hosts = 0;
	if (ri->num_headers >= MG_MAX_HEADERS) {
		mg_disable_connection_keep_alive(r->conn);
		return tg_send_error(r, 400, "bad_request", "too many header fields (at most %d)", MG_MAX_HEADERS - 1);
	}
	for (int i = 0; i < ri->num_headers; i++)
		if (strcasecmp(ri->http_headers[i].name, "Host") == 0) {
			host = ri->http_headers[i].value;
			hosts++;
		}
	if (hosts > 1) {
		mg_disable_connection_keep_alive(r->conn);
		return tg_send_error(r, 400, "bad_host", "more than one Host header");
	}
	char buf[300];
	size_t n = host ? strlen(host) : 0;
	while (n > 0 && (host[n - 1] == ' ' || host[n - 1] == '\t'))
		n--; /* trailing whitespace is not part of the value */
	if (host && (n >= sizeof buf || !host_syntax_ok(host, n))) {
		mg_disable_connection_keep_alive(r->conn);
		return tg_send_error(r, 400, "bad_host", "the Host header is not a host[:port]");
	}
	if (host) {
		memcpy(buf, host, n);
		buf[n] = '\0';
		host = buf;
	}
	/* An absolute target (http://HOST/path) names the host itself, and
	 * takes precedence over the Host header: they must agree. */
	const char *target = ri->request_uri ? ri->request_uri : "/";
	const char *scheme = strstr(target, "://");
	if (target[0] != '/' && scheme) {
		const char *a = scheme + 3;
		size_t an = strcspn(a, "/?#");
		if (!host_syntax_ok(a, an) || !host || an != n || strncasecmp(a, host, n) != 0) {
			mg_disable_connection_keep_alive(r->conn);
			return tg_send_error(r, 400, "bad_host", "the request target names another host than the Host header");
		}
	}
	if (!host_allowed(srv, host))
		return tg_send_error(r, 403, "forbidden_host",
				     "this server answers only to http://127.0.0.1:%d/ and http://localhost:%d/",
				     srv->port, srv->port);
	return 0;
}

/* Nonzero when the request carries a body (GET and HEAD have none here):
 * its framing could hide a second request from whatever stands in front. */
static int has_body(const struct mg_request_info *ri)
{
	for (int i = 0; i < ri->num_headers; i++) {
		const char *name = ri->http_headers[i].name, *v = ri->http_headers[i].value;
		if (strcasecmp(name, "Transfer-Encoding") == 0)
			return 1;
		if (strcasecmp(name, "Content-Length") == 0 && strspn(v, "0") != strlen(v))
			return 1;
	}
	return 0;
}

/* The one request handler registered with civetweb. */
static int dispatch(struct mg_connection *conn, void *cbdata)
{
	struct tg_server *srv = cbdata;
	const struct mg_request_info *ri = mg_get_request_info(conn);
	struct tg_req r = {
		.conn = conn,
		.ri = ri,
		.srv = srv,
		.path = ri->local_uri ? ri->local_uri : "/",
		.rest = "",
		.db_path = srv->db_path,
		.head = strcmp(ri->request_method, "HEAD") == 0,
	};
	int refused = check_host(&r);
	if (refused)
		return refused;
	if (!r.head && strcmp(ri->request_method, "GET") != 0)
		return tg_send_error(&r, 405, "method_not_allowed", "only GET and HEAD are served");
	if (has_body(ri)) {
		mg_disable_connection_keep_alive(conn);
		return tg_send_error(&r, 400, "bad_request", "GET and HEAD requests carry no body here");
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		size_t n = strlen(routes[i].prefix);
		if (strncmp(r.path, routes[i].prefix, n) == 0 && (r.path[n] == 0 || r.path[n] == '/')) {
			r.rest = r.path + n;
			if (r.rest[0] && !routes[i].subpaths)
				return tg_send_error(&r, 404, "not_found", "no such API endpoint");
			return routes[i].fn(&r);
		}
	}
	if (strncmp(r.path, "/api/", 5) == 0 || strcmp(r.path, "/api") == 0)
		return tg_send_error(&r, 404, "not_found", "no such API endpoint");
	return tg_serve_asset(&r);
}

/* civetweb's own log lines (bad requests, socket errors) are not for users. */
static int quiet_log(const struct mg_connection *conn, const char *message)
{
	(void)conn;
	(void)message;
	return 1;
}

static int add_host(struct tg_server *srv, const char *name)
{
	char buf[300];
	int ipv6 = strchr(name, ':') != NULL;
	snprintf(buf, sizeof buf, "%s%s%s:%d", ipv6 ? "[" : "", name, ipv6 ? "]" : "", srv->port);
	if (srv->n_hosts == MAX_HOSTS || !(srv->hosts[srv->n_hosts] = strdup(buf)))
		return -1;
	srv->n_hosts++;
	return 0;
}

static void server_free(struct tg_server *srv)
{
	for (size_t i = 0; i < srv->n_hosts; i++)
		free(srv->hosts[i]);
	free(srv->db_path);
	free(srv);
}

/* Loads the newest run's aggregates in the background, so that the first
 * overview of a big store does not wait for it. arg: malloc'd store path. */
static void *warm_up(void *arg)
{
	char *path = arg;
	struct tg_db db;
	tg_db_acquire(path, &db);
	if (db.state == TG_DB_OK) {
		int64_t run = tg_latest_run(db.db);
		const char *err;
		if (run > 0 && tg_stats_acquire(db.db, run, &err))
			tg_stats_release();
	}
	tg_db_close_thread();
	free(path);
	return NULL;
}

struct tg_server *tg_server_start(const struct tg_server_config *cfg, char *err, size_t errlen)
{
	struct tg_server *srv = calloc(1, sizeof *srv);
	if (!srv || !(srv->db_path = strdup(cfg->db_path))) {
		snprintf(err, errlen, "out of memory");
		free(srv);
		return NULL;
	}
	int ipv6 = strchr(cfg->host, ':') != NULL;
	if (ipv6 && !mg_check_feature(8)) {
		snprintf(err, errlen, "cannot listen on [%s]: this civetweb has no IPv6 support", cfg->host);
		server_free(srv);
		return NULL;
	}
	char listen[300], threads[16];
	snprintf(threads, sizeof threads, "%d", TG_EVENTS_MAX_STREAMS + TG_API_WORKERS);
	snprintf(listen, sizeof listen, "%s%s%s:%d", ipv6 ? "[" : "", cfg->host, ipv6 ? "]" : "", cfg->port);
	const char *options[] = {
		"listening_ports", listen,
		"num_threads", threads,
		"listen_backlog", "1024", /* a burst of connections waits, not dropped */
		/* absolute targets (http://HOST:PORT/...) reach dispatch(), which
		 * checks HOST; civetweb would compare it with a domain of its own */
		"enable_auth_domain_check", "no",
		"enable_keep_alive", "yes",
		"keep_alive_timeout_ms", "5000",
		"request_timeout_ms", "15000",
		"access_control_allow_origin", "",
		"access_control_allow_methods", "",
		"access_control_allow_headers", "",
		"enable_directory_listing", "no",
		"tcp_nodelay", "1", /* headers and body are separate writes: no Nagle delay */
		NULL,
	};
	struct mg_callbacks callbacks;
	memset(&callbacks, 0, sizeof callbacks);
	callbacks.log_message = quiet_log;
	struct mg_init_data init = { .callbacks = &callbacks, .user_data = srv, .configuration_options = options };
	char text[256] = "";
	unsigned code = 0;
	struct mg_error_data error = { .code = &code, .text = text, .text_buffer_size = sizeof text };
	mg_init_library(0);
	srv->ctx = mg_start2(&init, &error);
	if (!srv->ctx) {
		snprintf(err, errlen, "cannot listen on %s: %s", listen, text[0] ? text : "unknown error");
		mg_exit_library();
		server_free(srv);
		return NULL;
	}
	struct mg_server_port ports[2];
	memset(ports, 0, sizeof ports);
	srv->port = mg_get_server_ports(srv->ctx, 2, ports) >= 1 ? ports[0].port : cfg->port;
	srv->wildcard = strcmp(cfg->host, "0.0.0.0") == 0 || strcmp(cfg->host, "::") == 0;
	if (add_host(srv, "127.0.0.1") < 0 || add_host(srv, "localhost") < 0 || add_host(srv, "::1") < 0 ||
	    add_host(srv, cfg->host) < 0) {
		snprintf(err, errlen, "out of memory");
		tg_server_stop(srv);
		return NULL;
	}
	if (tg_events_start(srv->db_path) < 0) {
		snprintf(err, errlen, "cannot start a thread: out of resources");
		tg_server_stop(srv);
		return NULL;
	}
	mg_set_request_handler(srv->ctx, "/", dispatch, srv);
	pthread_t t;
	pthread_attr_t attr;
	char *path = strdup(srv->db_path);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (path && pthread_create(&t, &attr, warm_up, path) != 0)
		free(path);
	pthread_attr_destroy(&attr);
	return srv;
}

void tg_server_stop(struct tg_server *srv)
{
	if (!srv)
		return;
	atomic_store(&srv->stopping, 1);
	mg_stop(srv->ctx);
	tg_events_stop();
	mg_exit_library();
	server_free(srv);
}
