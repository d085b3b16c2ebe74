/*
 * httpc.h - outbound HTTP/1.x exchanges of one client connection.
 *
 * The server-side parser (http1.h) reads requests and writes responses; a
 * client does the mirror image, so this adapter feeds what the app writes
 * to the request side of that parser and what it reads to the response
 * side. Each finished exchange becomes a tg_http_call_info with method,
 * host (Host header, else the peer), target, status, byte counts and times
 * from the first request byte written to the last response byte read. The
 * request scope and call site are taken when an exchange's first byte is
 * written (the response may be read elsewhere, on an event loop callback).
 */
#ifndef TG_HTTPC_H
#define TG_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include "http1.h"

#define TG_HTTPC_SITE_MAX 256

struct tg_httpc;

/* The context of an exchange, taken when its first byte is written. */
typedef size_t (*tg_httpc_context_fn)(void *ctx, uint64_t *scope, char *site, size_t cap);

/* One finished exchange. */
struct tg_httpc_call {
	const struct tg_http_req *req; /* method, target, headers, status, bytes, times */
	const char *host; size_t host_len;
	uint64_t scope;
	const char *site; size_t site_len;
};
typedef void (*tg_httpc_emit_fn)(void *ctx, const struct tg_httpc_call *call);

/* peer: "address:port" used when there is no Host header. NULL on ENOMEM. */
struct tg_httpc *tg_httpc_new(const char *peer);
void tg_httpc_free(struct tg_httpc *c);

/* The app wrote (dir 0) or read (dir 1) n bytes. Returns TG_HTTP_OK or
 * TG_HTTP_UNTRACK (not HTTP: free the state). */
int tg_httpc_feed(struct tg_httpc *c, int dir, const uint8_t *buf, size_t n, uint64_t now,
		  tg_httpc_emit_fn emit, tg_httpc_context_fn context, void *ctx);

/* Exchanges ended without details since the last call (tg_http_take_lost). */
uint64_t tg_httpc_take_lost(struct tg_httpc *c);

/* The connection ended: exchanges in flight are emitted (see tg_http_on_close). */
void tg_httpc_close(struct tg_httpc *c, uint64_t now, tg_httpc_emit_fn emit, void *ctx);

#endif
