/*
 * httpc.c - outbound HTTP/1.x exchanges (httpc.h), the server-side parser
 * of http1.c driven in mirror image.
 *
 * Workload: httpx, requests, aiohttp and urllib calls from request
 * handlers, a few per request; one parser per client connection, keep-alive
 * included. Clients send one request at a time on a connection, so the
 * context of the exchange is taken at the first write after the previous
 * exchange finished.
 */
#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct tg_httpc {
	struct tg_http_conn *h;
	int need_ctx;                 /* the next write starts an exchange */
	uint64_t scope;
	uint16_t site_len;
	char site[TG_HTTPC_SITE_MAX];
	char peer[64];
	/* for the emit trampoline */
	tg_httpc_emit_fn emit;
	void *ctx;
};

struct tg_httpc *tg_httpc_new(const char *peer)
{
	struct tg_httpc *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->h = tg_http_new();
	if (!c->h) {
		free(c);
		return NULL;
	}
	c->need_ctx = 1;
	if (peer) {
		snprintf(c->peer, sizeof c->peer, "%s", peer);
	}
	return c;
}

void tg_httpc_free(struct tg_httpc *c)
{
	if (!c)
		return;
	tg_http_free(c->h);
	free(c);
}

/* The value of the Host header in "Name: value\n" lines. */
static const char *find_host(const char *h, size_t n, size_t *len)
{
	size_t i = 0;
	while (i < n) {
		const char *line = h + i;
		const char *nl = memchr(line, '\n', n - i);
		size_t ll = nl ? (size_t)(nl - line) : n - i;
		if (ll > 5 && strncasecmp(line, "host:", 5) == 0) {
			const char *v = line + 5;
			size_t vl = ll - 5;
			while (vl && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
				vl--;
			*len = vl;
			return v;
		}
		i += ll + 1;
	}
	return NULL;
}

static void on_exchange(void *ctx, const struct tg_http_req *req)
{
	struct tg_httpc *c = ctx;
	struct tg_httpc_call call = {.req = req, .scope = c->scope, .site = c->site, .site_len = c->site_len};
	call.host = find_host(req->headers, req->headers_len, &call.host_len);
	if (!call.host) {
		call.host = c->peer;
		call.host_len = strlen(c->peer);
	}
	c->need_ctx = 1;
	if (c->emit)
		c->emit(c->ctx, &call);
}

int tg_httpc_feed(struct tg_httpc *c, int dir, const uint8_t *buf, size_t n, uint64_t now,
		  tg_httpc_emit_fn emit, tg_httpc_context_fn context, void *ctx)
{
	c->emit = emit;
	c->ctx = ctx;
	if (dir == 0) {
		if (c->need_ctx) {
			c->need_ctx = 0;
			c->scope = 0;
			c->site_len = context ? (uint16_t)context(ctx, &c->scope, c->site, sizeof c->site) : 0;
		}
		return tg_http_on_read(c->h, buf, n, now, on_exchange, c);
	}
	return tg_http_on_write(c->h, buf, n, now, on_exchange, c);
}

uint64_t tg_httpc_take_lost(struct tg_httpc *c)
{
	return tg_http_take_lost(c->h);
}

void tg_httpc_close(struct tg_httpc *c, uint64_t now, tg_httpc_emit_fn emit, void *ctx)
{
	c->emit = emit;
	c->ctx = ctx;
	tg_http_on_close(c->h, now, on_exchange, c);
}
