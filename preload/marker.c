/*
 * marker.c - the marker API: what the Python side (TimeGlassMiddleware or the
 * bootstrap that `timeglass run` injects) tells the library through ctypes.
 *
 * The wire already gives request boundaries; the marker adds what only the
 * framework knows: the route template that matched ("/items/{item_id}"), the
 * exception behind a 500, and requests that never touch a socket (FastAPI's
 * TestClient, httpx's ASGI transport). Calls are cheap: one ring record each,
 * no lookup in the app; the collector joins marks to wire requests by
 * (process, client address and port, time).
 *
 * ABI: every function here is exported with C linkage and stays compatible;
 * timeglass_abi_version() grows when functions are added.
 */
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "common/event.h"
#include "http1.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))
#define TG_MARK_TEXT_MAX 8192u
#define TG_ROUTE_MAX 512u

TG_EXPORT int timeglass_abi_version(void);
TG_EXPORT int timeglass_active(void);
TG_EXPORT int timeglass_mark(int kind, const char *client_host, int client_port, const char *text,
			     size_t text_len);
TG_EXPORT int timeglass_mark_scope(int kind, uint64_t token, const char *text, size_t text_len);
TG_EXPORT int timeglass_asgi_request(const char *method, const char *target, const char *route,
				     int status, uint64_t start_ns, uint64_t end_ns,
				     uint64_t request_bytes, uint64_t response_bytes,
				     const char *client_host, int client_port, int error);

/* 2: request scopes (timeglass_scope_enter/exit, timeglass_thread_enter/exit,
 * see scope.c). 3: exact-trace mode (timeglass_trace_start,
 * timeglass_trace_dropped, see pytrace.c). 4: scopes tied to their socket
 * (timeglass_scope_begin), child tasks (timeglass_scope_adopt/release),
 * marks by scope token (timeglass_mark_scope). 5: the current thread's scope
 * (timeglass_scope_current). */
int timeglass_abi_version(void)
{
	return 5;
}

/* 1 when this process is registered with a collector (under `timeglass run`). */
int timeglass_active(void)
{
	return tg_proc.enabled;
}

uint8_t tg_parse_host(const char *host, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (!host)
		return 0;
	if (inet_pton(AF_INET, host, addr) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, host, addr) == 1)
		return AF_INET6;
	return 0;
}

static int mark(int kind, uint64_t token, const char *client_host, int client_port, const char *text,
		size_t text_len)
{
	if (!tg_proc.enabled || !text)
		return -1;
	if (text_len > TG_MARK_TEXT_MAX)
		text_len = TG_MARK_TEXT_MAX;
	uint32_t size = (uint32_t)(sizeof(struct tg_ev_mark) + text_len);
	uint8_t *rec = tg_reserve(size);
	if (!rec)
		return -1;
	struct tg_ev_mark *m = (struct tg_ev_mark *)rec;
	m->tid = tg_tid();
	m->kind = (uint16_t)kind;
	m->text_len = (uint16_t)text_len;
	m->ts_ns = tg_now_ns();
	m->client_family = tg_parse_host(client_host, m->client_addr);
	m->pad0 = 0;
	m->client_port = (uint16_t)client_port;
	m->pad1 = 0;
	m->token = token;
	memcpy(rec + sizeof *m, text, text_len);
	uint32_t padded = (size + 7u) & ~7u;
	memset(rec + size, 0, padded - size);
	tg_ring_commit(rec, size, TG_EV_MARK, 0);
	return 0;
}

/* Names the wire request of client_host:client_port in flight in this
 * process. kind is enum tg_mark_kind; text is capped. Returns 0, or -1 when
 * not recording or the record was dropped. */
int timeglass_mark(int kind, const char *client_host, int client_port, const char *text,
		   size_t text_len)
{
	return mark(kind, 0, client_host, client_port, text, text_len);
}

/* Names the request of scope `token` (timeglass_scope_begin): exact
 * whatever the client address, and in time even after the response. */
int timeglass_mark_scope(int kind, uint64_t token, const char *text, size_t text_len)
{
	return mark(kind, token, NULL, 0, text, text_len);
}

static uint16_t capped_len(const char *s, size_t cap)
{
	return s ? (uint16_t)strnlen(s, cap) : 0;
}

/* Records a request served in-process, without a socket (transport "asgi").
 * Times are CLOCK_MONOTONIC ns (Python's time.monotonic_ns()). error is an
 * enum tg_req_error. Returns 0, or -1 when not recording or dropped. */
int timeglass_asgi_request(const char *method, const char *target, const char *route, int status,
			   uint64_t start_ns, uint64_t end_ns, uint64_t request_bytes,
			   uint64_t response_bytes, const char *client_host, int client_port,
			   int error)
{
	if (!tg_proc.enabled)
		return -1;
	/* The target's secret query values are redacted before the ring, as
	 * on the wire path; a target cut at the cap is flagged. */
	char tbuf[TG_HTTP_TARGET_MAX];
	int cut = target && strnlen(target, TG_HTTP_TARGET_MAX + 1) > TG_HTTP_TARGET_MAX;
	uint16_t ml = capped_len(method, 15), tl = capped_len(target, TG_HTTP_TARGET_MAX),
		 rl = capped_len(route, TG_ROUTE_MAX);
	if (tl) {
		memcpy(tbuf, target, tl);
		tl = (uint16_t)tg_http_redact_url(tbuf, tl, sizeof tbuf, &cut);
	}
	uint32_t size = (uint32_t)sizeof(struct tg_ev_request) + ml + tl + rl;
	uint8_t *rec = tg_reserve(size);
	if (!rec)
		return -1;
	struct tg_ev_request *ev = (struct tg_ev_request *)rec;
	memset(rec + sizeof(struct tg_ev_hdr), 0, sizeof *ev - sizeof(struct tg_ev_hdr));
	ev->tid = tg_tid();
	ev->status = (uint16_t)status;
	ev->error = (uint16_t)error;
	ev->start_ns = start_ns;
	ev->end_ns = end_ns >= start_ns ? end_ns : start_ns;
	ev->request_bytes = request_bytes;
	ev->response_bytes = response_bytes;
	ev->http_minor = 1;
	ev->flags = (uint8_t)(TG_REQF_ASGI | (cut ? TG_REQF_TARGET_TRUNCATED : 0));
	ev->client_family = tg_parse_host(client_host, ev->client_addr);
	ev->client_port = (uint16_t)client_port;
	ev->method_len = ml;
	ev->target_len = tl;
	ev->route_len = rl;
	uint8_t *p = rec + sizeof *ev;
	if (ml)
		memcpy(p, method, ml);
	p += ml;
	if (tl)
		memcpy(p, tbuf, tl);
	p += tl;
	if (rl)
		memcpy(p, route, rl);
	p += rl;
	uint32_t padded = (size + 7u) & ~7u;
	memset(p, 0, padded - size);
	tg_ring_commit(rec, size, TG_EV_REQUEST, 0);
	return 0;
}
