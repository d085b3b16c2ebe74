/*
 * http1.h - incremental HTTP/1.x parser for the server side of a connection.
 *
 * The preload library feeds it every byte the app reads from an accepted
 * socket (tg_http_on_read) and every byte the app writes to it
 * (tg_http_on_write), each with the CLOCK_MONOTONIC time of the call. It finds
 * request and response boundaries and hands each finished request to an emit
 * callback. It does no I/O, takes no clock and allocates only through
 * malloc/free for requests waiting for their response (pipelining).
 *
 * What it follows: keep-alive, pipelining as deep as the app reads (see
 * below), Content-Length and chunked bodies in both directions (chunk
 * extensions and trailers included), Expect: 100-continue and other 1xx
 * interim responses, HEAD, 204 and 304 without a body, responses delimited by
 * the connection closing (no length, no chunking), Connection: close, and
 * upgrades (after a 101 response the request is emitted with TG_REQF_UPGRADE
 * and every later byte is ignored). Bytes that are not HTTP/1.x make the
 * parser give up on the connection (TG_HTTP_UNTRACK); whatever request was in
 * flight is emitted with an error first. The length of a line never does:
 * servers answer request lines and header values of any length (llhttp, in
 * httptools, takes header values of megabytes; h11 answers 400 once its
 * buffer passes 16 KiB, which may be after reading 256 KiB), so a long line
 * is followed to its end and the request ends however the app ends it.
 *
 * What it keeps: method, target (up to TG_HTTP_TARGET_MAX bytes), header
 * text (up to TG_HTTP_HEADERS_MAX) and the ids of a W3C traceparent header
 * (whatever the cap on the text), with secrets removed before anything
 * leaves the parser: the values of secret-bearing headers and of
 * secret-bearing query parameters (in the target and in URL-valued headers
 * such as Referer) are replaced by "[redacted]".
 *
 * Pipelining: every request read and not yet answered is pending. Its framing
 * (whether it is a HEAD, whose response has no body) is kept for every one,
 * one bit each, so responses always match their requests. Its details are
 * kept compactly (its strings at their real length) up to TG_HTTP_PIPE_BYTES
 * per connection; a request beyond that is still followed but cannot become a
 * row: it is counted, once answered or once the connection ends, in
 * tg_http_take_lost(). A plain keep-alive connection never allocates.
 *
 * Cost: bodies are skipped by counting; the request line and headers are
 * scanned once, byte by byte. What a request keeps has fixed caps: a huge
 * line never grows memory. Pipelining costs the compacted details (at most
 * TG_HTTP_PIPE_BYTES) and one bit per pending request, a small fraction of
 * what the app itself holds for the requests it has read.
 */
#ifndef TG_HTTP1_H
#define TG_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define TG_HTTP_METHOD_MAX 16    /* longer methods are malformed */
#define TG_HTTP_TARGET_MAX 2048  /* request target (path?query) kept, rest counted */
#define TG_HTTP_HEADERS_MAX 4096 /* request header text kept, rest counted */
#define TG_HTTP_PIPE_BYTES (1u << 20) /* details of pipelined requests kept per connection */
#define TG_HTTP_REDACTED "[redacted]"  /* what replaces a secret value */

/* A request as handed to the emit callback. Strings are not NUL-terminated
 * and valid only during the call; method, target and headers are never NULL. */
struct tg_http_req {
	uint64_t start_ns;       /* time of the read that delivered its first byte */
	uint64_t req_end_ns;     /* time of the read that delivered its last byte, 0 if never */
	uint64_t resp_start_ns;  /* time of the write with the first response byte, 0 if none */
	uint64_t end_ns;         /* time of the write that completed the final response, or of the failure */
	uint64_t request_bytes;  /* bytes of this request: line, headers, body (and chunk framing) */
	uint64_t response_bytes; /* bytes of its responses: interim 1xx included */
	uint16_t status;         /* final status, 0 if none; 101 for an upgrade */
	uint16_t error;          /* enum tg_req_error of common/event.h */
	uint8_t http_minor;      /* 0 or 1 */
	uint8_t flags;           /* TG_REQF_* of common/event.h */
	uint16_t method_len;
	uint16_t target_len;
	uint16_t headers_len;
	const char *method;      /* method_len bytes */
	const char *target;      /* target_len bytes, secret query values redacted */
	const char *headers;     /* "Name: value\n" lines as sent, secrets redacted */
	/* A valid W3C traceparent header (exactly one, see tg_http_traceparent):
	 * its trace id and parent span id; all zero if none. */
	uint8_t trace_id[16];
	uint8_t parent_span_id[8];
};

typedef void (*tg_http_emit_fn)(void *ctx, const struct tg_http_req *req);

/* Return values of the feed functions. */
#define TG_HTTP_OK 0
#define TG_HTTP_UNTRACK 1 /* stop feeding this connection; call tg_http_free() */

/* Per-connection state. Treat as opaque; its size is what the caller embeds. */
struct tg_http_conn;

/* Allocates and initialises the state of a new connection. NULL on ENOMEM. */
struct tg_http_conn *tg_http_new(void);

/* Frees the state. Emits nothing: call tg_http_on_close() first to flush. */
void tg_http_free(struct tg_http_conn *c);

/* The app read n bytes (n > 0) from the client at time now_ns. */
int tg_http_on_read(struct tg_http_conn *c, const uint8_t *buf, size_t n, uint64_t now_ns,
		    tg_http_emit_fn emit, void *ctx);

/* The app wrote n bytes (n > 0) to the client at time now_ns. buf may be NULL
 * for bytes whose content is unknown (sendfile): they are counted as body. */
int tg_http_on_write(struct tg_http_conn *c, const uint8_t *buf, size_t n, uint64_t now_ns,
		     tg_http_emit_fn emit, void *ctx);

/* The client half-closed (read returned 0) at time now_ns. Nothing is
 * emitted yet: the app may still answer what it has read. */
void tg_http_on_eof(struct tg_http_conn *c, uint64_t now_ns);

/* The app itself is closing the connection: a complete request it has not
 * answered then ends as TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE (unless the
 * client had half-closed first). Call before tg_http_on_close(). */
void tg_http_on_app_close(struct tg_http_conn *c);

/* The connection is gone (close, or a read/write failed with ECONNRESET or
 * EPIPE) at time now_ns. Emits every request still in flight: a response
 * delimited by the close completes normally; others get the matching
 * TG_REQ_* error (mid-request, before response - by the client, or by the
 * app, see tg_http_on_app_close - mid-response). */
void tg_http_on_close(struct tg_http_conn *c, uint64_t now_ns, tg_http_emit_fn emit, void *ctx);

/* Sets the details of pipelined requests kept per connection, in bytes
 * (default TG_HTTP_PIPE_BYTES; rounded down to 16 KiB chunks, at least one).
 * Call before any traffic (TIMEGLASS_PIPELINE_KB). */
void tg_http_set_pipe_bytes(size_t bytes);

/* Requests that were answered (or ended with the connection) but whose
 * details were not kept (pipelined beyond TG_HTTP_PIPE_BYTES, or no memory):
 * returns how many since the last call, and resets the count. Each is a
 * request missing from the emitted ones; the caller reports it as a loss. */
uint64_t tg_http_take_lost(struct tg_http_conn *c);

/* Returns 1 if `name` (len bytes, any case) is a header whose value must be
 * redacted: Authorization, Proxy-Authorization, Cookie, Set-Cookie,
 * X-Api-Key, and any name containing "token", "secret", "password",
 * "passwd", "api-key", "apikey", "session" or "auth". */
int tg_http_secret_header(const char *name, size_t len);

/* Parses a W3C Trace Context traceparent value v[0..n) (no surrounding
 * blanks) strictly: "VV-<32 hex>-<16 hex>-<2 hex>" in lowercase, version
 * not "ff", exactly 55 bytes for version 00 (a later version may add
 * "-..."), trace id and parent id not all zero. Returns 1 and fills the
 * ids, or 0 if invalid. */
int tg_http_traceparent(const char *v, size_t n, uint8_t trace_id[16], uint8_t parent_span_id[8]);

/* ---- secret query parameters (redact.c) ---- */

/* Returns 1 if the query parameter `name` (len bytes as sent, percent-encoded
 * or not, any case) is one whose value must be redacted: password, passwd,
 * pwd, token, access_token, refresh_token, api_key, apikey, key, secret,
 * client_secret, auth, session, signature, sig, code, and the names added
 * with tg_http_redact_params(). The whole decoded name must match. */
int tg_http_secret_param(const char *name, size_t len);

/* Adds names to the secret parameters: `list` holds names separated by
 * commas (spaces around them ignored), as TIMEGLASS_REDACT_PARAMS does.
 * Names longer than TG_HTTP_PARAM_NAME_MAX bytes, and names beyond
 * TG_HTTP_EXTRA_PARAMS in all, are ignored. Call before any traffic (it is
 * not thread-safe against the parsers). Returns the number of names added. */
#define TG_HTTP_PARAM_NAME_MAX 63
#define TG_HTTP_EXTRA_PARAMS 64
int tg_http_redact_params(const char *list);

/* Redacts, in place, the values of secret parameters in the query (after the
 * first '?' or '#') of the URL or request target s[0..len): each value
 * becomes TG_HTTP_REDACTED (parameters are separated by '&', ';' or '#').
 * The text may grow; it never exceeds cap bytes: what does not fit is cut
 * off the end, and *cut is set to 1 (it is left alone otherwise). A value
 * that s ends in the middle of is redacted too. Returns the new length. */
size_t tg_http_redact_url(char *s, size_t len, size_t cap, int *cut);

/* Value of a hex digit, or -1 (of the parser and the redaction of URLs). */
static inline int tg_hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	uint8_t l = (uint8_t)(ch | 0x20);
	if (l >= 'a' && l <= 'f')
		return l - 'a' + 10;
	return -1;
}

#endif
