/*
 * test-httpc.c - unit tests of the outbound HTTP/1.x adapter
 * (preload/httpc.c): keep-alive exchanges, Host header or peer, chunked
 * and close-delimited responses, HEAD, context taken at the first write,
 * secret query values of the URL redacted.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "httpc.h"

struct got {
	int n;
	char method[8][16], host[8][64], target[8][128];
	int status[8];
	uint64_t req_bytes[8], resp_bytes[8], start[8], end[8], scope[8];
};

static uint64_t scope_counter;

static void emit(void *ctx, const struct tg_httpc_call *c)
{
	struct got *g = ctx;
	int i = g->n++;
	snprintf(g->method[i], 16, "%.*s", (int)c->req->method_len, c->req->method);
	snprintf(g->host[i], 64, "%.*s", (int)c->host_len, c->host);
	snprintf(g->target[i], 128, "%.*s", (int)c->req->target_len, c->req->target);
	g->status[i] = c->req->status;
	g->req_bytes[i] = c->req->request_bytes;
	g->resp_bytes[i] = c->req->response_bytes;
	g->start[i] = c->req->start_ns;
	g->end[i] = c->req->end_ns;
	g->scope[i] = c->scope;
}

static size_t context(void *ctx, uint64_t *scope, char *site, size_t cap)
{
	(void)ctx;
	*scope = ++scope_counter;
	return (size_t)snprintf(site, cap, "app.py:9 call");
}

static void feed(struct tg_httpc *c, struct got *g, int dir, const char *s, uint64_t t)
{
	int rc = tg_httpc_feed(c, dir, (const uint8_t *)s, strlen(s), t, emit, context, g);
	assert(rc == TG_HTTP_OK);
}

int main(void)
{
	struct got g = {0};
	struct tg_httpc *c = tg_httpc_new("10.0.0.1:8080");
	const char *req1 = "GET /a?x=1 HTTP/1.1\r\nHost: api.example:8443\r\n\r\n";
	const char *resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
	feed(c, &g, 0, req1, 10);
	feed(c, &g, 1, resp1, 20);
	assert(g.n == 1 && !strcmp(g.method[0], "GET") && !strcmp(g.host[0], "api.example:8443"));
	assert(!strcmp(g.target[0], "/a?x=1") && g.status[0] == 200 && g.start[0] == 10 && g.end[0] == 20);
	assert(g.req_bytes[0] == strlen(req1) && g.resp_bytes[0] == strlen(resp1));

	/* keep-alive: next exchange, no Host (HTTP/1.0): the peer; chunked answer in pieces */
	feed(c, &g, 0, "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 30);
	feed(c, &g, 0, "abc", 31);
	feed(c, &g, 1, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n", 40);
	assert(g.n == 1);
	feed(c, &g, 1, "0\r\n\r\n", 41);
	assert(g.n == 2 && !strcmp(g.host[1], "10.0.0.1:8080") && g.status[1] == 201 && g.end[1] == 41);
	assert(g.scope[1] == g.scope[0] + 1); /* one context per exchange, not per write */

	/* HEAD: no body even with Content-Length */
	feed(c, &g, 0, "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n", 50);
	feed(c, &g, 1, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 51);
	assert(g.n == 3 && !strcmp(g.method[2], "HEAD"));

	/* response delimited by the close */
	feed(c, &g, 0, "GET /c HTTP/1.0\r\n\r\n", 60);
	feed(c, &g, 1, "HTTP/1.0 200 OK\r\n\r\nstream...", 61);
	assert(g.n == 3);
	tg_httpc_close(c, 70, emit, &g);
	assert(g.n == 4 && g.end[3] == 70 && g.status[3] == 200);
	tg_httpc_free(c);

	/* secret query values of the URL called are redacted before anything
	 * leaves the parser, percent-encoded names included */
	g.n = 0;
	c = tg_httpc_new("10.0.0.2:443");
	feed(c, &g, 0, "GET /v1/charge?amount=5&api%5Fkey=SECRET-K1&Signature=SECRET-S2 HTTP/1.1\r\n"
		       "Host: pay.example\r\nAuthorization: Bearer SECRET-A3\r\n\r\n", 80);
	feed(c, &g, 1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 90);
	assert(g.n == 1 && !strcmp(g.host[0], "pay.example") && g.status[0] == 200);
	assert(!strcmp(g.target[0], "/v1/charge?amount=5&api%5Fkey=[redacted]&Signature=[redacted]"));
	assert(!strstr(g.target[0], "SECRET"));
	tg_httpc_free(c);

	/* not HTTP */
	c = tg_httpc_new(NULL);
	assert(tg_httpc_feed(c, 0, (const uint8_t *)"\x16\x03\x01\x00", 4, 1, emit, context, &g) == TG_HTTP_UNTRACK);
	tg_httpc_free(c);
	printf("httpc: ok\n");
	return 0;
}
