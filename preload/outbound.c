/*
 * outbound.c - sockets the app connects out with: PostgreSQL connections
 * (asyncpg, psycopg 3 over its own libpq, any driver speaking the wire
 * protocol) and HTTP/1.x client connections (httpx, requests, aiohttp,
 * urllib), and the plaintext stream parsers that the TLS taps share.
 *
 * connect() on a stream socket registers the fd in the connection table
 * of conn.c with a struct tg_out, so the I/O hooks' fast path stays one
 * table load. The first bytes the app writes decide what the connection
 * is: a PostgreSQL startup packet, an HTTP request line, or anything else
 * (TLS handshakes, other protocols: forgotten at once). Connections that
 * libpq opened inside a libpq tap, or that a libpq tap later claims, are
 * left to that tap.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "httpc.h"
#include "pgwire.h"
#include "pyframes.h"
#include "taps.h"
#include "tg_preload.h"

enum stream_kind { S_SNIFF = 0, S_PG = 1, S_HTTP = 2, S_DEAD = 3 };

struct tg_stream {
	struct tg_out *owner; /* the socket's state, NULL under TLS */
	int kind;
	int tls;
	uint64_t conn_key;
	char peer[64];
	struct tg_pgwire *pg;
	struct tg_httpc *http;
};

struct tg_out {
	int libpq;           /* owned by the libpq taps: bytes ignored */
	struct tg_stream *s; /* NULL once given up */
	/* Scope bound by the marker for the operation the driver runs now
	 * (timeglass_fd_scope): used when the bytes go out from the event
	 * loop rather than from the request's task (uvloop defers writes). */
	int bound;
	uint64_t bound_scope;
	uint16_t bound_site_len;
	char bound_site[TG_CALL_SITE_MAX];
};

struct tg_stream *tg_stream_new(int tls, const char *peer, uint64_t conn_key)
{
	struct tg_stream *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->tls = tls;
	s->conn_key = conn_key;
	if (peer)
		snprintf(s->peer, sizeof s->peer, "%s", peer);
	return s;
}

/* Context of a query or exchange at the moment it is sent. */
static size_t send_context(void *ctx, uint64_t *scope, char *site, size_t cap)
{
	const struct tg_stream *s = ctx;
	size_t len = tg_taps_context(scope, site, cap);
	const struct tg_out *o = s->owner;
	if (!*scope && o && o->bound) {
		*scope = o->bound_scope;
		size_t n = o->bound_site_len < cap ? o->bound_site_len : cap;
		memcpy(site, o->bound_site, n);
		return n;
	}
	return len;
}

void tg_out_bind(struct tg_out *o, int bind, uint64_t token, const char *site, size_t len)
{
	o->bound = bind;
	o->bound_scope = token;
	if (len > sizeof o->bound_site)
		len = sizeof o->bound_site;
	o->bound_site_len = (uint16_t)len;
	if (len)
		memcpy(o->bound_site, site, len);
}

static void pg_emit(void *ctx, const struct tg_pg_query *pq)
{
	const struct tg_stream *s = ctx;
	struct tg_query_info q = {
		.tap = TG_TAP_WIRE,
		.db_system = TG_DB_POSTGRESQL,
		.flags = (uint16_t)((pq->failed ? TG_QF_ERROR : 0) | (pq->sql_truncated ? TG_QF_SQL_TRUNCATED : 0) |
				    (s->tls ? TG_QF_TLS : 0) | (pq->params_known ? TG_QF_PARAMS_KNOWN : 0) |
				    (pq->batch_cont ? TG_QF_BATCH_CONT : 0)),
		.conn_key = s->conn_key,
		.start_ns = pq->start_ns,
		.end_ns = pq->end_ns,
		.rows = pq->rows,
		.sql = pq->sql,
		.sql_len = pq->sql_len,
		.db = pq->db,
		.db_len = pq->db_len,
		.err = pq->err,
		.err_len = pq->err_len,
		.scope = pq->scope,
		.scope_set = 1,
		.site = pq->site,
		.site_len = pq->site_len,
		.site_set = 1,
		.params = pq->params,
		.params_len = pq->params_len,
		.params_hash = pq->params_hash,
		.executions = pq->executions,
	};
	tg_emit_query(&q);
}

static void http_emit(void *ctx, const struct tg_httpc_call *call)
{
	const struct tg_stream *s = ctx;
	const struct tg_http_req *r = call->req;
	const char *err = NULL;
	switch (r->error) {
	case 0: break;
	case 1: err = "connection closed mid-request"; break;
	case 2: err = "connection closed before response"; break;
	case 3: err = "connection closed mid-response"; break;
	default: err = "not HTTP"; break;
	}
	struct tg_http_call_info h = {
		.status = r->status,
		.flags = s->tls ? TG_HF_TLS : 0,
		.scope = call->scope,
		.start_ns = r->start_ns,
		.end_ns = r->end_ns,
		.request_bytes = r->request_bytes,
		.response_bytes = r->response_bytes,
		/* each text with its length */
		.method = r->method, .method_len = r->method_len,
		.host = call->host, .host_len = call->host_len,
		.target = r->target, .target_len = r->target_len,
		.err = err, .err_len = err ? strlen(err) : 0,
		.site = call->site, .site_len = call->site_len,
	};
	tg_emit_http_call(&h);
}

int tg_stream_feed(struct tg_stream *s, int dir, const uint8_t *buf, size_t n, uint64_t now)
{
	if (s->kind == S_SNIFF) {
		if (dir != 0 || !n) {
			s->kind = S_DEAD; /* the server speaks first: not a protocol we follow */
			return 1;
		}
		if (buf[0] == 0 && tg_pgwire_sniff(buf, n)) {
			s->pg = tg_pgwire_new(tg_sql_max());
			s->kind = s->pg ? S_PG : S_DEAD;
			if (s->pg && tg_capture_params())
				tg_pgwire_capture_params(s->pg, 1);
		} else if (buf[0] >= 'A' && buf[0] <= 'Z') {
			s->http = tg_httpc_new(s->peer);
			s->kind = s->http ? S_HTTP : S_DEAD;
		} else {
			s->kind = S_DEAD;
		}
	}
	if (s->kind == S_PG) {
		int rc = tg_pgwire_feed(s->pg, dir, buf, n, now, pg_emit, send_context, s);
		if (rc != TG_PG_OK) {
			/* Encrypted (the TLS taps see the rest) or not PostgreSQL. */
			s->kind = S_DEAD;
			return 1;
		}
		return 0;
	}
	if (s->kind == S_HTTP) {
		int rc = tg_httpc_feed(s->http, dir, buf, n, now, http_emit, send_context, s);
		tg_count_lost_requests(tg_httpc_take_lost(s->http));
		if (rc != TG_HTTP_OK) {
			s->kind = S_DEAD;
			return 1;
		}
		return 0;
	}
	return 1;
}

void tg_stream_forget(struct tg_stream *s)
{
	if (s)
		s->kind = S_DEAD;
	tg_stream_free(s, 0);
}

void tg_stream_free(struct tg_stream *s, uint64_t now)
{
	if (!s)
		return;
	if (s->pg) {
		if (s->kind == S_PG)
			tg_pgwire_close(s->pg, now, pg_emit, s);
		tg_pgwire_free(s->pg);
	}
	if (s->http) {
		if (s->kind == S_HTTP)
			tg_httpc_close(s->http, now, http_emit, s);
		tg_count_lost_requests(tg_httpc_take_lost(s->http));
		tg_httpc_free(s->http);
	}
	free(s);
}

/* ---- sockets ---- */

static void peer_text(const struct sockaddr *addr, socklen_t len, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	out[0] = '\0';
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
	} else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else if (addr->sa_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
		size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
		if (n > sizeof un->sun_path)
			n = sizeof un->sun_path;
		snprintf(out, cap, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
	}
}

static uint64_t next_out_key;

void tg_out_connected(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!tg_proc.enabled || fd < 0 || (unsigned)fd >= tg_nconns || !addr)
		return;
	int fam = addr->sa_family;
	if (fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX)
		return;
	int saved = errno;
	int type = 0;
	socklen_t tl = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM) {
		errno = saved;
		return;
	}
	struct tg_out *o = calloc(1, sizeof *o);
	if (!o) {
		errno = saved;
		return;
	}
	o->libpq = tg_in_libpq > 0;
	if (!o->libpq) {
		char peer[64];
		peer_text(addr, len, peer, sizeof peer);
		uint64_t key = __atomic_add_fetch(&next_out_key, 1, __ATOMIC_RELAXED) | (1ull << 62);
		o->s = tg_stream_new(0, peer, key);
		if (!o->s) {
			free(o);
			errno = saved;
			return;
		}
		o->s->owner = o;
	}
	if (tg_conn_outbound(fd, o) < 0)
		tg_out_free(o, 0);
	errno = saved;
}

void tg_out_io(struct tg_out *o, int dir, const uint8_t *buf, size_t n, uint64_t now)
{
	if (o->libpq || !o->s)
		return;
	if (tg_in_libpq) { /* libpq talks inside a libpq tap: the connection is that tap's */
		tg_out_set_libpq(o);
		return;
	}
	if (tg_stream_feed(o->s, dir, buf, n, now)) {
		tg_stream_free(o->s, now);
		o->s = NULL;
	}
}

void tg_out_free(struct tg_out *o, uint64_t now)
{
	if (!o)
		return;
	tg_stream_free(o->s, now);
	free(o);
}

void tg_out_owned_by_libpq(int fd)
{
	struct tg_out *o = tg_conn_get_out(fd);
	if (o && !o->libpq)
		tg_conn_claim_libpq(fd);
}

/* Called by conn.c under the connection's lock. */
void tg_out_set_libpq(struct tg_out *o)
{
	o->libpq = 1;
	tg_stream_forget(o->s); /* emit nothing: the libpq tap reports its queries */
	o->s = NULL;
}

int tg_out_is_libpq(int fd)
{
	struct tg_out *o = tg_conn_get_out(fd);
	return o && o->libpq;
}
