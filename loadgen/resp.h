/*
 * resp.h - incremental parser of HTTP/1.x responses, the client side of
 * `timeglass bench`: bytes from the socket go in as they arrive, in pieces
 * of any size; it finds where each response ends (Content-Length, chunked,
 * until close, none for HEAD/1xx/204/304) and keeps what the checks need:
 * status, keep-alive, Content-Type, Location and, when asked, the body up
 * to a cap. Interim 1xx responses are skipped.
 *
 * Input is untrusted network bytes: every length is bounded, a malformed
 * response is an error (-1), never a crash (see tests/fuzz/fuzz-resp.c).
 */
#ifndef LG_RESP_H
#define LG_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LG_RESP_LINE_MAX 8192      /* bytes of one status or header line */
#define LG_RESP_HEADERS_MAX 65536  /* bytes of all header lines of one response */

struct lg_resp {
	/* results, valid once done is set (status from the status line on) */
	int done;
	int status;              /* 100..999 */
	int minor;               /* HTTP/1.minor */
	int keep_alive;          /* the connection may carry the next request */
	int64_t content_length;  /* -1 when absent */
	int chunked;
	uint64_t body_bytes;     /* body bytes seen (decoded when chunked) */
	char content_type[128];  /* first bytes of Content-Type, "" when none */
	char location[256];      /* first bytes of Location, "" when none */
	char *body;              /* malloc'd, body_cap bytes at most; NULL when not kept */
	size_t body_len, body_cap;
	int body_truncated;
	/* parser state */
	int head;                /* the request was HEAD */
	int state;
	size_t header_bytes;
	uint64_t remaining;      /* of the current body or chunk */
	size_t line_len;
	char line[LG_RESP_LINE_MAX];
};

/* Starts a response to a request; head: the request was HEAD; body_cap:
 * bytes of body to keep (0 keeps none). Frees nothing: call lg_resp_free
 * on a parser that kept a body before reusing it. */
void lg_resp_init(struct lg_resp *r, int head, size_t body_cap);
void lg_resp_free(struct lg_resp *r);

/* Feeds n bytes. Returns the bytes consumed (fewer than n only when the
 * response ended inside them: done is set and the rest belongs to the next
 * response), or -1 on a malformed response or a failed allocation. */
ssize_t lg_resp_feed(struct lg_resp *r, const char *data, size_t n);

/* The peer closed the connection: returns 1 when that ends the response
 * (a body delimited by the close), 0 when the response is incomplete. */
int lg_resp_eof(struct lg_resp *r);

#endif
