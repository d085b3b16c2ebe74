/*
 * collector/record.c - decoding of request and mark records into store rows (record.h).
 */
#include "collector/record.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/event.h"
#include "lib/util.h"

#define MAX_DURATION_NS (30LL * 86400 * 1000000000) /* longer is a corrupt record */

static const char *const error_text[] = {
	[TG_REQ_CLIENT_CLOSED_MID_REQUEST] = "client closed mid-request",
	[TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE] = "client closed before response",
	[TG_REQ_CLOSED_MID_RESPONSE] = "connection closed mid-response",
	[TG_REQ_MALFORMED] = "malformed HTTP request",
	[TG_REQ_TOO_MANY_PIPELINED] = "too many pipelined requests",
	[TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE] = "server closed before response",
};

const char *tg_req_error_text(unsigned error)
{
	return error < sizeof error_text / sizeof error_text[0] ? error_text[error] : NULL;
}

void tg_split_target(const char *t, size_t n, const char **path, size_t *path_len, const char **query,
		     size_t *query_len)
{
	size_t start = 0;
	if (n && t[0] != '/') {
		/* Absolute form: scheme "://" authority, then the path. */
		const char *sep = t && n >= 3 ? memmem(t, n, "://", 3) : NULL;
		if (sep) {
			size_t i = (size_t)(sep - t) + 3;
			while (i < n && t[i] != '/' && t[i] != '?')
				i++;
			start = i;
		}
	}
	const char *q = memchr(t + start, '?', n - start);
	size_t end = q ? (size_t)(q - t) : n;
	if (start == end && start > 0) {
		*path = "/"; /* "http://host" or "http://host?q" */
		*path_len = 1;
	} else {
		*path = t + start;
		*path_len = end - start;
	}
	*query = q ? q + 1 : NULL;
	*query_len = q ? n - end - 1 : 0;
}

/* The value of header `name` (len bytes, lower case) in header text h
 * ("Name: value\n" lines, any case), trimmed; NULL if absent. */
static const char *header_value(const char *h, size_t n, const char *name, size_t len, size_t *vlen)
{
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(h + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - h) : n;
		if (end - i > len && h[i + len] == ':' && (h[i] | 0x20) == name[0] &&
		    strncasecmp(h + i, name, len) == 0) {
			size_t a = i + len + 1, b = end;
			while (a < b && (h[a] == ' ' || h[a] == '\t'))
				a++;
			while (b > a && (h[b - 1] == ' ' || h[b - 1] == '\t' || h[b - 1] == '\r'))
				b--;
			*vlen = b - a;
			return h + a;
		}
		i = end + 1;
	}
	return NULL;
}

/* The first element of a comma-separated list, trimmed. */
static const char *first_item(const char *v, size_t n, size_t *len)
{
	const char *comma = memchr(v, ',', n);
	size_t b = comma ? (size_t)(comma - v) : n;
	while (b && (v[b - 1] == ' ' || v[b - 1] == '\t'))
		b--;
	*len = b;
	return v;
}

void tg_forwarded_for(const char *headers, size_t n, const char **out, size_t *out_len)
{
	size_t vl, il;
	const char *v;
	*out = NULL;
	*out_len = 0;
	if (!headers || !n)
		return;
	if ((v = header_value(headers, n, "x-forwarded-for", 15, &vl)) && vl) {
		*out = first_item(v, vl, out_len);
	} else if ((v = header_value(headers, n, "forwarded", 9, &vl)) && vl) {
		/* RFC 7239: the first element's for= parameter, unquoted. */
		v = first_item(v, vl, &il);
		for (size_t i = 0; i + 4 <= il; i++) {
			if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ') && strncasecmp(v + i, "for=", 4) == 0) {
				size_t a = i + 4, b = a;
				while (b < il && v[b] != ';')
					b++;
				if (b - a >= 2 && v[a] == '"' && v[b - 1] == '"') {
					a++;
					b--;
				}
				*out = v + a;
				*out_len = b - a;
				break;
			}
		}
	} else if ((v = header_value(headers, n, "x-real-ip", 9, &vl)) && vl) {
		*out = v;
		*out_len = vl;
	}
	if (*out_len > TG_FORWARDED_MAX)
		*out_len = TG_FORWARDED_MAX;
	if (!*out_len)
		*out = NULL;
}

/* id[0..n) as 2n lowercase hex digits into out, or "" if all zero. */
static void hex_id(const uint8_t *id, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	int nonzero = 0;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
		nonzero |= id[i];
	}
	out[nonzero ? 2 * n : 0] = '\0';
}

/* "ip:port" or "[ip6]:port". Clients come from few addresses: the text of
 * the last one is kept, and only the port is formatted for each request. */
static void format_addr(const struct tg_ev_request *r, char addr[TG_ADDR_MAX])
{
	static int last_family;
	static unsigned char last_addr[16];
	static char last_ip[INET6_ADDRSTRLEN + 2]; /* with the brackets of IPv6 */
	static size_t last_len;
	int fam = r->client_family;
	size_t alen = fam == AF_INET ? 4 : 16;
	if (fam == AF_UNIX) {
		memcpy(addr, "unix", 5);
		return;
	}
	if (fam != AF_INET && fam != AF_INET6) {
		addr[0] = '\0';
		return;
	}
	if (fam != last_family || memcmp(last_addr, r->client_addr, alen) != 0) {
		char ip[INET6_ADDRSTRLEN];
		last_family = 0;
		if (!inet_ntop(fam, r->client_addr, ip, sizeof ip)) {
			addr[0] = '\0';
			return;
		}
		last_len = (size_t)snprintf(last_ip, sizeof last_ip, fam == AF_INET ? "%s" : "[%s]", ip);
		memcpy(last_addr, r->client_addr, alen);
		last_family = fam;
	}
	char p[20];
	size_t plen = tg_fmt_u64(p, r->client_port);
	if (last_len + 1 + plen >= TG_ADDR_MAX) {
		addr[0] = '\0';
		return;
	}
	memcpy(addr, last_ip, last_len);
	addr[last_len] = ':';
	memcpy(addr + last_len + 1, p, plen);
	addr[last_len + 1 + plen] = '\0';
}

int tg_decode_request(const void *rec, uint32_t size, int64_t mono_to_unix, struct tg_request_row *row,
		      char addr[TG_ADDR_MAX])
{
	static const char *const versions[] = {"HTTP/1.0", "HTTP/1.1"};
	const struct tg_ev_request *r = rec;
	if (size < sizeof *r)
		return -1;
	size_t strings = (size_t)r->method_len + r->target_len + r->headers_len + r->route_len;
	if (strings > size - sizeof *r)
		return -1;
	if (r->start_ns == 0 || r->end_ns < r->start_ns || r->end_ns - r->start_ns > (uint64_t)MAX_DURATION_NS ||
	    r->start_ns > (uint64_t)INT64_MAX - MAX_DURATION_NS)
		return -1;
	if (r->error > TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE || r->http_minor > 1 || r->status > 999 ||
	    (r->client_family != 0 && r->client_family != AF_INET && r->client_family != AF_INET6 &&
	     r->client_family != AF_UNIX) ||
	    r->request_bytes > INT64_MAX || r->response_bytes > INT64_MAX)
		return -1;

	const char *data = (const char *)(r + 1);
	memset(row, 0, sizeof *row);
	row->tid = r->tid;
	row->conn_id = r->conn_id > INT64_MAX ? -1 : (int64_t)r->conn_id;
	row->start_unix_ns = (int64_t)r->start_ns + mono_to_unix;
	row->duration_ns = (int64_t)(r->end_ns - r->start_ns);
	/* Phase times are offsets from the start; one before it is unusable. */
	if (r->req_end_ns && r->req_end_ns >= r->start_ns && r->req_end_ns - r->start_ns <= (uint64_t)MAX_DURATION_NS) {
		row->has_req_end = 1;
		row->req_end_ns = (int64_t)(r->req_end_ns - r->start_ns);
	}
	if (r->resp_start_ns && r->resp_start_ns >= r->start_ns &&
	    r->resp_start_ns - r->start_ns <= (uint64_t)MAX_DURATION_NS) {
		row->has_resp_start = 1;
		row->resp_start_ns = (int64_t)(r->resp_start_ns - r->start_ns);
	}
	if (r->method_len) {
		row->method = data;
		row->method_len = r->method_len;
	}
	if (r->target_len)
		tg_split_target(data + r->method_len, r->target_len, &row->path, &row->path_len, &row->query,
				&row->query_len);
	if (r->headers_len) {
		row->headers = data + r->method_len + r->target_len;
		row->headers_len = r->headers_len;
		tg_forwarded_for(row->headers, row->headers_len, &row->forwarded_for, &row->forwarded_for_len);
	}
	if (r->route_len) {
		row->route = data + r->method_len + r->target_len + r->headers_len;
		row->route_len = r->route_len;
	}
	row->transport = (r->flags & TG_REQF_ASGI) ? "asgi" : "http";
	row->http_version = versions[r->http_minor];
	row->status = r->status;
	row->request_bytes = (int64_t)r->request_bytes;
	row->response_bytes = (int64_t)r->response_bytes;
	format_addr(r, addr);
	row->client_addr = addr[0] ? addr : NULL;
	row->error = tg_req_error_text(r->error);
	row->flags = r->flags;
	hex_id(r->trace_id, sizeof r->trace_id, row->trace_id);
	hex_id(r->parent_span_id, sizeof r->parent_span_id, row->parent_span_id);
	if (!row->trace_id[0] || !row->parent_span_id[0])
		row->trace_id[0] = row->parent_span_id[0] = '\0'; /* both or none */
	return 0;
}

int tg_decode_mark(const void *rec, uint32_t size, struct tg_mark *m)
{
	const struct tg_ev_mark *r = rec;
	if (size < sizeof *r || r->text_len > size - sizeof *r || r->ts_ns == 0 ||
	    (r->kind != TG_MARK_ROUTE && r->kind != TG_MARK_EXCEPTION) ||
	    (r->client_family != 0 && r->client_family != AF_INET && r->client_family != AF_INET6))
		return -1;
	memset(m, 0, sizeof *m);
	m->kind = r->kind;
	m->tid = r->tid;
	m->ts_ns = r->ts_ns;
	m->family = r->client_family;
	m->port = r->client_port;
	memcpy(m->addr, r->client_addr, sizeof m->addr);
	m->token = r->token;
	m->text = (const char *)(r + 1);
	m->text_len = r->text_len;
	return 0;
}

int tg_mark_matches(const struct tg_mark *m, const void *request_rec)
{
	const struct tg_ev_request *r = request_rec;
	if (r->flags & TG_REQF_ASGI)
		return m->family == 0 && m->tid == r->tid;
	if (m->family != r->client_family || m->port != r->client_port)
		return 0;
	size_t alen = m->family == AF_INET ? 4 : m->family == AF_INET6 ? 16 : 0;
	return memcmp(m->addr, r->client_addr, alen) == 0;
}
