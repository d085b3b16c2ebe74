/*
 * test-http1.c - unit tests of the incremental HTTP/1.x parser (preload/http1.c).
 *
 * A table of cases, each a sequence of steps (bytes read, bytes written,
 * opaque sendfile bytes, half-close, close) and the requests it must emit,
 * field by field. Step i happens at time T(i); expected times are given as
 * step indices. Every case runs three ways and must give the same result:
 *   - each step fed whole;
 *   - each step in turn fed in two pieces, at every split point;
 *   - every step fed one byte at a time.
 * Both pieces of a split step carry the step's time, so times do not depend
 * on the split and are checked in every run. (The one megabyte step is cut at
 * a sample of points; TG_TEST_QUICK=1 samples the other huge steps too, for
 * slow runs under valgrind: see split_wanted().)
 *
 * Output is TAP-like: "ok N - name" / "not ok N - name", then a summary line.
 * Exit status is non-zero if anything failed.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/event.h"
#include "http1.h"

#define T(i) ((uint64_t)((i) + 1) * 1000u)
#define NONE (-1) /* expected time 0: never happened */

#define MAX_STEPS 12
#define MAX_EXP 6
#define MAX_GOT 40

struct step {
	char dir; /* 'r' read, 'w' write, 'f' sendfile write (buf NULL), 'e' eof, 'c' close; 0 ends */
	const char *data;
	size_t len;
};

#define R(s) { 'r', (s), sizeof(s) - 1 }
#define W(s) { 'w', (s), sizeof(s) - 1 }
#define RB(buf) { 'r', (buf), sizeof(buf) - 1 }
#define WB(buf) { 'w', (buf), sizeof(buf) - 1 }
#define F(n) { 'f', NULL, (n) }
#define EOF_ { 'e', NULL, 0 }
#define CLOSE { 'c', NULL, 0 }
#define L(s) (sizeof(s) - 1)

struct expect {
	const char *method;
	const char *target; /* NULL: only target_len is checked; with seq, a prefix of the index as %02d */
	uint16_t status, error;
	uint8_t flags, minor;
	uint64_t req_bytes, resp_bytes;
	const char *headers; /* NULL: not checked */
	int start, req_end, resp_start, end; /* step indices or NONE */
	int emit_step;                       /* step during which it is emitted */
	int rep;                             /* this many identical records (0 = 1) */
	int seq;                             /* target is a format taking the record index */
	int first;                           /* ... counted from this number */
	size_t target_len;                   /* checked when target is NULL */
};

/* method, target, status, error, flags, minor, request bytes, response bytes,
 * headers, start, req_end, resp_start, end, emitted at step */
#define E(m, t, st, err, fl, mi, rq, rs, hd, s0, s1, s2, s3, em)                                      \
	{ .method = (m), .target = (t), .status = (st), .error = (err), .flags = (fl), .minor = (mi),    \
	  .req_bytes = (rq), .resp_bytes = (rs), .headers = (hd), .start = (s0), .req_end = (s1),     \
	  .resp_start = (s2), .end = (s3), .emit_step = (em) }

struct tcase {
	const char *name;
	struct step steps[MAX_STEPS];
	int nexp;
	struct expect exp[MAX_EXP];
	int untrack;          /* 1 + index of the step that must return UNTRACK; 0 none */
	const char *forbid;   /* must not occur anywhere in an emitted struct */
	int sample_splits;    /* huge steps: 1 may, 2 must be split at a sample of points only */
};

/* ---- generated inputs --------------------------------------------------- */

#define BIG_VALUE (100u * 1024u)
#define BIG_PRE "GET /big HTTP/1.1\r\nHost: x\r\nX-Big: "
#define BIG_POST "\r\nAccept: */*\r\n\r\n"
static char big_req[L(BIG_PRE) + BIG_VALUE + L(BIG_POST) + 1];

#define LONG_TARGET 3000u
#define LT_POST " HTTP/1.1\r\nHost: x\r\n\r\n"
static char long_req[4 + LONG_TARGET + L(LT_POST) + 1];
static char long_target[TG_HTTP_TARGET_MAX + 1];

/* Lines far longer than anything kept: a 64 KiB + 100 request target, a
 * chunk extension, a reason phrase and a 1 MiB header value. No length makes
 * a request malformed: each is followed to its end. */
#define HUGE_LINE (65536u + 100u)
static char huge_line[HUGE_LINE + L(LT_POST) + 1]; /* "GET /aaaa... HTTP/1.1..." */
#define HUGE_LINE_PART 20000u /* what h11 has read when it answers 400 */

#define CHUNK_PRE "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;"
#define CHUNK_POST "\r\nz\r\n0\r\n\r\n"
static char huge_chunk_ext[L(CHUNK_PRE) + HUGE_LINE + L(CHUNK_POST) + 1];

#define STATUS_PRE "HTTP/1.1 200 "
#define STATUS_POST "\r\nContent-Length: 2\r\n\r\nok"
static char huge_status[L(STATUS_PRE) + HUGE_LINE + L(STATUS_POST) + 1];

#define HDR_LIMIT (1u << 20)
#define HUGE_HDR_PRE "GET / HTTP/1.1\r\nX: "
#define HUGE_HDR_POST "\r\nAccept: */*\r\n\r\n"
static char huge_header[L(HUGE_HDR_PRE) + HDR_LIMIT + L(HUGE_HDR_POST) + 1];

/* 33 pipelined GETs "GET /pNN HTTP/1.1\r\nHost: h\r\n\r\n" and their responses. */
#define PIPE_REQ_LEN 30
#define PIPE_RESP_LEN 40
static char pipe33[33 * PIPE_REQ_LEN + 1];
static char resp33[33 * PIPE_RESP_LEN + 1];

/* Secret query values in a target longer than the cap: the value that the
 * cap cuts is redacted too, and one whose marker does not fit ends the text. */
#define TS_PRE "GET /t?a="
#define TS_SECRET "&password=SECRET-LONG-VALUE-SECRET-LONG-VALUE"
#define TS_XS (TG_HTTP_TARGET_MAX - 3 - (L(TS_PRE) - 4) - L("&password="))
static char trunc_secret_req[L(TS_PRE) + TS_XS + L(TS_SECRET) + L(LT_POST) + 1];
static char trunc_secret_target[TG_HTTP_TARGET_MAX + 1];

/* "/g?a=yyy...&pwd=s&z=1" (2045 bytes): "[redacted]" fits the cap, "&z=1"
 * does not quite: kept as "/g?a=yyy...&pwd=[redacted]&z", flagged. */
#define GS_PRE "GET /g?a="
#define GS_YS 2026u
#define GS_POST "&pwd=s&z=1"
static char grow_secret_req[L(GS_PRE) + GS_YS + L(GS_POST) + L(LT_POST) + 1];
static char grow_secret_target[TG_HTTP_TARGET_MAX + 1];

static void build_inputs(void)
{
	char *p = big_req;
	memcpy(p, BIG_PRE, L(BIG_PRE));
	memset(p + L(BIG_PRE), 'v', BIG_VALUE);
	memcpy(p + L(BIG_PRE) + BIG_VALUE, BIG_POST, L(BIG_POST));

	memcpy(long_req, "GET ", 4);
	long_req[4] = '/';
	memset(long_req + 5, 'a', LONG_TARGET - 1);
	memcpy(long_req + 4 + LONG_TARGET, LT_POST, L(LT_POST));
	long_target[0] = '/';
	memset(long_target + 1, 'a', TG_HTTP_TARGET_MAX - 1);

	memcpy(huge_line, "GET /", 5);
	memset(huge_line + 5, 'a', HUGE_LINE - 5);
	memcpy(huge_line + HUGE_LINE, LT_POST, L(LT_POST));

	p = huge_chunk_ext;
	memcpy(p, CHUNK_PRE, L(CHUNK_PRE));
	memset(p + L(CHUNK_PRE), 'e', HUGE_LINE);
	memcpy(p + L(CHUNK_PRE) + HUGE_LINE, CHUNK_POST, L(CHUNK_POST));
	p = huge_status;
	memcpy(p, STATUS_PRE, L(STATUS_PRE));
	memset(p + L(STATUS_PRE), 'r', HUGE_LINE);
	memcpy(p + L(STATUS_PRE) + HUGE_LINE, STATUS_POST, L(STATUS_POST));
	p = huge_header;
	memcpy(p, HUGE_HDR_PRE, L(HUGE_HDR_PRE));
	memset(p + L(HUGE_HDR_PRE), 'v', HDR_LIMIT);
	memcpy(p + L(HUGE_HDR_PRE) + HDR_LIMIT, HUGE_HDR_POST, L(HUGE_HDR_POST));

	for (int i = 0; i < 33; i++) {
		char tmp[64];
		snprintf(tmp, sizeof tmp, "GET /p%02d HTTP/1.1\r\nHost: h\r\n\r\n", i);
		if (strlen(tmp) != PIPE_REQ_LEN)
			abort();
		memcpy(pipe33 + i * PIPE_REQ_LEN, tmp, PIPE_REQ_LEN);
		snprintf(tmp, sizeof tmp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d", i);
		if (strlen(tmp) != PIPE_RESP_LEN)
			abort();
		memcpy(resp33 + i * PIPE_RESP_LEN, tmp, PIPE_RESP_LEN);
	}

	/* "/t?a=xxx...&password=SECRET..." with the '=' 3 bytes before the cap:
	 * kept as "/t?a=xxx...&password=[r" (the marker cut by the cap). */
	size_t xs = TS_XS;
	p = trunc_secret_req;
	memcpy(p, TS_PRE, L(TS_PRE));
	memset(p + L(TS_PRE), 'x', xs);
	memcpy(p + L(TS_PRE) + xs, TS_SECRET, L(TS_SECRET));
	memcpy(p + L(TS_PRE) + xs + L(TS_SECRET), LT_POST, L(LT_POST));
	memcpy(trunc_secret_target, trunc_secret_req + 4, TG_HTTP_TARGET_MAX - 3);
	memcpy(trunc_secret_target + TG_HTTP_TARGET_MAX - 3, "[re", 3);

	p = grow_secret_req;
	memcpy(p, GS_PRE, L(GS_PRE));
	memset(p + L(GS_PRE), 'y', GS_YS);
	memcpy(p + L(GS_PRE) + GS_YS, GS_POST, L(GS_POST));
	memcpy(p + L(GS_PRE) + GS_YS + L(GS_POST), LT_POST, L(LT_POST));
	p = grow_secret_target;
	memcpy(p, GS_PRE + 4, L(GS_PRE) - 4);
	memset(p + L(GS_PRE) - 4, 'y', GS_YS);
	memcpy(p + L(GS_PRE) - 4 + GS_YS, "&pwd=[redacted]&z", 17);
	if (strlen(grow_secret_target) != TG_HTTP_TARGET_MAX)
		abort();
}

/* ---- fixed inputs ------------------------------------------------------- */

#define G1 "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
#define G1_HDRS "Host: example.com\nUser-Agent: t/1\n"
#define G2 "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define G3 "GET /c HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define RS1 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
#define RS2 "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
#define RS3 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
#define RS201 "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"

#define P1H "POST /items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
#define P1B1 "{\"a\":"
#define P1B2 "\"bcdef\"}"
#define GN1 "GET /n"
#define GN2 " HTTP/1.1\r\nHost: a\r\n\r\n"

#define CU "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define CU1 "5;name=val\r\nhel"
#define CU2 "lo\r\n6 ; x=\"y\"\r\n world\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"
#define CU3 "PUT /u2 HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\nA\r\n0123456789\r\n0010\r\n" \
	    "0123456789abcdef\r\n0\r\n\r\n"

#define CR_H "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n"
#define CR_2 "5;ext=1\r\npedia\r\n"
#define CR_3 "0\r\nTrailer: x\r\n\r\n"

#define HEADREQ "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"
#define HEADRESP "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"

#define DEL "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n"
#define R204 "HTTP/1.1 204 No Content\r\nserver: uvicorn\r\n\r\n"
#define ETAG "GET /etag HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n"
#define R304 "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 100\r\n\r\n"

#define EXP100 "POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
#define R100 "HTTP/1.1 100 Continue\r\n\r\n"
#define R200OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define R103 "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"

#define WSREQ "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" \
	      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
#define WSREQ_HDRS "Host: a\nUpgrade: websocket\nConnection: keep-alive, Upgrade\n" \
		   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n"
#define W101 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
	     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
#define WSFRAME_C "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
#define R426 "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"

#define DL "GET /dl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
#define DLRESP "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"

#define MIDREQ "POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345"
#define MIDRESP "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n123"

#define GARBAGE "\x00\x01\x02garbage\xff\r\n"
#define TLS_HELLO "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x5e\x2b\x1c\x00\x13\x01\x13\x02"
#define PRI "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#define OLD "GET /old HTTP/1.0\r\nHost: a\r\n\r\n"
#define OLDRESP "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"

#define EP "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n"
#define R422 "HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 2\r\n\r\n{}"
#define AFTER "GET /after HTTP/1.1\r\nHost: a\r\n\r\n"

#define SECRETS "GET /me HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer SECRET-AAA\r\n" \
		"Cookie: sid=SECRET-BBB; x=1\r\nX-Api-Key: SECRET-CCC\r\nX-Auth-Token:SECRET-DDD  \r\n" \
		"Proxy-Authorization: Basic SECRET-EEE\r\nX-Session-Id: SECRET-FFF\r\nAccept:  */* \r\n\r\n"
#define SECRETS_HDRS "Host: a\nAuthorization: [redacted]\nCookie: [redacted]\nX-Api-Key: [redacted]\n" \
		     "X-Auth-Token: [redacted]\nProxy-Authorization: [redacted]\nX-Session-Id: [redacted]\n" \
		     "Accept: */*\n"

#define LF1 "GET /lf HTTP/1.1\nHost: a\n\n"
#define LF2 "POST /lf2 HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n"
#define LFR1 "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"
#define LFR2 "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n"

#define SF_RESP "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
#define BOTH "POST /both HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
#define BADCL "POST /x HTTP/1.1\r\nContent-Length: 12a\r\n\r\n"

#define TE_GZ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
#define TE_BAD "POST /te HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
#define CL2 "PATCH /r HTTP/1.1\r\nContent-Length: 3\r\ncontent-length:   3\r\n\r\n"
#define CLX "POST /r HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
#define FOLD "GET /f HTTP/1.1\r\nX: a\r\n b\r\n\r\n"

#define R400 "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n" \
	     "content-length: 30\r\n\r\nInvalid HTTP request received."

#define QSECRETS "GET /login?user=bob&password=SECRET-1&Token=SECRET-2&x=1&%70wd=SECRET-3&api%5Fkey=SECRET-4" \
		 ";sig=SECRET-5&empty=&code=SECRET-6&key&monkey=visible HTTP/1.1\r\nHost: a\r\n" \
		 "Referer: http://a/p?access_token=SECRET-7&page=2#refresh_token=SECRET-8\r\n" \
		 "X-Original-URL: /o?session=SECRET-9\r\nX-Note: /n?password=visible\r\n\r\n"
#define QSECRETS_TARGET "/login?user=bob&password=[redacted]&Token=[redacted]&x=1&%70wd=[redacted]" \
			"&api%5Fkey=[redacted];sig=[redacted]&empty=&code=[redacted]&key&monkey=visible"
#define QSECRETS_HDRS "Host: a\nReferer: http://a/p?access_token=[redacted]&page=2#refresh_token=[redacted]\n" \
		      "X-Original-URL: /o?session=[redacted]\nX-Note: /n?password=visible\n"

#define OK_ TG_REQ_OK

static const struct tcase cases[] = {
	{ .name = "simple GET keep-alive, two requests",
	  .steps = { R(G1), W(RS1), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, 59, 69, G1_HDRS, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, 38, 45, "Host: example.com\n", 2, 2, 3, 3, 3) } },

	{ .name = "three pipelined GETs in one read, responses in one write",
	  .steps = { R(G1 G2 G3), W(RS1 RS2 RS3), CLOSE },
	  .nexp = 3,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(RS1), G1_HDRS, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/c", 200, OK_, TG_REQF_CHUNKED_RESP, 1, L(G3), L(RS3), NULL, 0, 0, 1, 1, 1) } },

	{ .name = "three pipelined GETs in one read, responses in separate writes",
	  .steps = { R(G1 G2 G3), W(RS1), W(RS2), W(RS3), CLOSE },
	  .nexp = 3,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(RS1), G1_HDRS, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 0, 0, 2, 2, 2),
		   E("GET", "/c", 200, OK_, TG_REQF_CHUNKED_RESP, 1, L(G3), 60, NULL, 0, 0, 3, 3, 3) } },

	{ .name = "pipelined requests, close with one unanswered",
	  .steps = { R(G1 G2), W(RS1), EOF_, CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(RS1), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/b", 0, TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE, 0, 1, L(G2), 0, NULL, 0, 0,
		     NONE, 3, 3) } },

	{ .name = "POST with Content-Length body split across reads",
	  .steps = { R(P1H P1B1), R(P1B2 GN1), R(GN2), W(RS201), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("POST", "/items", 201, OK_, 0, 1, L(P1H) + 13, L(RS201),
		     "Host: a\nContent-Type: application/json\nContent-Length: 13\n", 0, 1, 3, 3, 3),
		   E("GET", "/n", 404, OK_, 0, 1, 28, L(RS2), "Host: a\n", 1, 2, 4, 4, 4) } },

	{ .name = "chunked upload with extensions and trailers",
	  .steps = { R(CU), R(CU1), R(CU2), W(RS201), R(CU3), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("POST", "/up", 201, OK_, TG_REQF_CHUNKED_REQ, 1, L(CU) + L(CU1) + L(CU2), L(RS201),
		     "Host: a\nTransfer-Encoding: chunked\n", 0, 2, 3, 3, 3),
		   E("PUT", "/u2", 404, OK_, TG_REQF_CHUNKED_REQ, 1, L(CU3), L(RS2),
		     "Transfer-Encoding: gzip, Chunked\n", 4, 4, 5, 5, 5) } },

	{ .name = "chunked response",
	  .steps = { R(G1), W(CR_H), W(CR_2), W(CR_3), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/a?x=1", 200, OK_, TG_REQF_CHUNKED_RESP, 1, L(G1), L(CR_H CR_2 CR_3), NULL,
		     0, 0, 1, 3, 3),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 4, 4, 5, 5, 5) } },

	{ .name = "HEAD: Content-Length in response, no body",
	  .steps = { R(HEADREQ G2), W(HEADRESP RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("HEAD", "/h", 200, OK_, TG_REQF_HEAD, 1, L(HEADREQ), L(HEADRESP), "Host: a\n", 0, 0, 1,
		     1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 0, 0, 1, 1, 1) } },

	{ .name = "204 has no body",
	  .steps = { R(DEL), W(R204), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("DELETE", "/x", 204, OK_, 0, 1, L(DEL), L(R204), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 2, 2, 3, 3, 3) } },

	{ .name = "304 with Content-Length has no body",
	  .steps = { R(ETAG G2), W(R304 RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/etag", 304, OK_, 0, 1, L(ETAG), L(R304), "If-None-Match: \"x\"\n", 0, 0, 1, 1,
		     1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 0, 0, 1, 1, 1) } },

	{ .name = "Expect: 100-continue, interim 100, body, 200",
	  .steps = { R(EXP100), W(R100), R("data"), W(R200OK), CLOSE },
	  .nexp = 1,
	  .exp = { E("POST", "/upload", 200, OK_, TG_REQF_CONTINUE, 1, L(EXP100) + 4, L(R100) + L(R200OK),
		     "Host: a\nExpect: 100-continue\nContent-Length: 4\n", 0, 2, 1, 3, 3) } },

	{ .name = "103 Early Hints then 200 in one write",
	  .steps = { R(G1), W(R103 R200OK), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(R103 R200OK), NULL, 0, 0, 1, 1, 1) } },

	{ .name = "101 upgrade, websocket frames both ways ignored",
	  .steps = { R(WSREQ), W(W101 "\x81\x05hello"), R(WSFRAME_C), W("\x81\x02hi"),
		     R("\x88\x80\x00\x00\x00\x00"), W("\x88\x00"), EOF_, CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/ws", 101, OK_, TG_REQF_UPGRADE, 1, L(WSREQ), L(W101), WSREQ_HDRS, 0, 0, 1, 1,
		     1) } },

	{ .name = "101 upgrade, client frame read before the 101",
	  .steps = { R(WSREQ WSFRAME_C), W(W101), R("GET / HTTP/1.1\r\n\r\n"), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/ws", 101, OK_, TG_REQF_UPGRADE, 1, L(WSREQ), L(W101), WSREQ_HDRS, 0, 0, 1, 1,
		     1) } },

	{ .name = "upgrade refused (426), connection goes on",
	  .steps = { R(WSREQ), W(R426), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/ws", 426, OK_, 0, 1, L(WSREQ), L(R426), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 2, 2, 3, 3, 3) } },

	{ .name = "upgrade refused after bytes were ignored: untrack",
	  .steps = { R(WSREQ G2), W(R426), R(G3) },
	  .nexp = 1,
	  .untrack = 2,
	  .exp = { E("GET", "/ws", 426, OK_, 0, 1, L(WSREQ), L(R426), NULL, 0, 0, 1, 1, 1) } },

	{ .name = "Connection: close response without length ends at close",
	  .steps = { R(DL), W(DLRESP), W("body part 1,"), F(100), W("part 2"), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/dl", 200, OK_, 0, 1, L(DL), L(DLRESP) + 12 + 100 + 6,
		     "Host: a\nConnection: close\n", 0, 0, 1, 5, 5) } },

	{ .name = "sendfile body bytes",
	  .steps = { R(G1), W(SF_RESP), F(600), F(400), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(SF_RESP) + 1000, NULL, 0, 0, 1, 3, 3),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 4, 4, 5, 5, 5) } },

	{ .name = "client closes mid-request (body)",
	  .steps = { R(MIDREQ), EOF_, CLOSE },
	  .nexp = 1,
	  .exp = { E("POST", "/p", 0, TG_REQ_CLIENT_CLOSED_MID_REQUEST, 0, 1, L(MIDREQ), 0,
		     "Content-Length: 10\n", 0, NONE, NONE, 2, 2) } },

	{ .name = "client closes mid-request (request line)",
	  .steps = { R("GET /partial HT"), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/partial", 0, TG_REQ_CLIENT_CLOSED_MID_REQUEST, 0, 0, 15, 0, "", 0, NONE, NONE,
		     1, 1) } },

	{ .name = "client closes after the request, before any response",
	  .steps = { R(G1), EOF_, CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/a?x=1", 0, TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE, 0, 1, L(G1), 0, G1_HDRS, 0,
		     0, NONE, 2, 2) } },

	{ .name = "connection closes mid-response",
	  .steps = { R(G1), W(MIDRESP), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/a?x=1", 200, TG_REQ_CLOSED_MID_RESPONSE, 0, 1, L(G1), L(MIDRESP), NULL, 0, 0,
		     1, 2, 2) } },

	{ .name = "connection without any request emits nothing",
	  .steps = { R("\r\n"), EOF_, CLOSE },
	  .nexp = 0 },

	{ .name = "huge header (100 KiB value): capped, counted exactly",
	  .steps = { RB(big_req), W(RS1), CLOSE },
	  .nexp = 1,
	  .sample_splits = 1,
	  .exp = { E("GET", "/big", 200, OK_, TG_REQF_HEADERS_TRUNCATED, 1, L(big_req), L(RS1),
		     "Host: x\nAccept: */*\n", 0, 0, 1, 1, 1) } },

	{ .name = "long target: truncated, counted exactly",
	  .steps = { RB(long_req), W(RS2), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", long_target, 404, OK_, TG_REQF_TARGET_TRUNCATED, 1, 4 + LONG_TARGET + L(LT_POST),
		     L(RS2), "Host: x\n", 0, 0, 1, 1, 1) } },

	{ .name = "64 KiB request line answered 404: method, truncated target, status",
	  .steps = { RB(huge_line), W(RS2), CLOSE },
	  .nexp = 1,
	  .sample_splits = 1,
	  .exp = { E("GET", long_target, 404, OK_, TG_REQF_TARGET_TRUNCATED, 1, L(huge_line), L(RS2),
		     "Host: x\n", 0, 0, 1, 1, 1) } },

	{ .name = "request line answered 400 before its end (h11), the rest read after",
	  .steps = { { 'r', huge_line, HUGE_LINE_PART }, W(R400),
		     { 'r', huge_line + HUGE_LINE_PART, sizeof huge_line - 1 - HUGE_LINE_PART }, EOF_, CLOSE },
	  .nexp = 1,
	  .sample_splits = 1,
	  .exp = { E("GET", long_target, 400, OK_, TG_REQF_TARGET_TRUNCATED, 0, HUGE_LINE_PART, L(R400),
		     "", 0, NONE, 1, 1, 1) } },

	{ .name = "64 KiB chunk extension: followed",
	  .steps = { RB(huge_chunk_ext), W(RS2), CLOSE },
	  .nexp = 1,
	  .sample_splits = 1,
	  .exp = { E("POST", "/x", 404, OK_, TG_REQF_CHUNKED_REQ, 1, L(huge_chunk_ext), L(RS2),
		     "Transfer-Encoding: chunked\n", 0, 0, 1, 1, 1) } },

	{ .name = "64 KiB reason phrase: followed",
	  .steps = { R(G1), WB(huge_status), R(G2), W(RS2), CLOSE },
	  .nexp = 2,
	  .sample_splits = 1,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(huge_status), G1_HDRS, 0, 0, 1, 1, 1),
		   E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 2, 2, 3, 3, 3) } },

	{ .name = "1 MiB header value: line dropped, the others kept",
	  .steps = { RB(huge_header), W(RS2), CLOSE },
	  .nexp = 1,
	  .sample_splits = 2,
	  .exp = { E("GET", "/", 404, OK_, TG_REQF_HEADERS_TRUNCATED, 1, L(huge_header), L(RS2),
		     "Accept: */*\n", 0, 0, 1, 1, 1) } },

	{ .name = "garbage bytes: malformed, untracked",
	  .steps = { R(GARBAGE), W(RS1) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("", "", 0, TG_REQ_MALFORMED, 0, 0, 1, 0, "", 0, NONE, NONE, 0, 0) } },

	{ .name = "garbage after a valid request",
	  .steps = { R(G1), R("hello world\r\n\r\n") },
	  .nexp = 2,
	  .untrack = 2,
	  .exp = { E("GET", "/a?x=1", 0, TG_REQ_MALFORMED, 0, 1, L(G1), 0, G1_HDRS, 0, 0, NONE, 1, 1),
		   E("", "", 0, TG_REQ_MALFORMED, 0, 0, 1, 0, "", 1, NONE, NONE, 1, 1) } },

	{ .name = "TLS ClientHello",
	  .steps = { R(TLS_HELLO) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("", "", 0, TG_REQ_MALFORMED, 0, 0, 1, 0, "", 0, NONE, NONE, 0, 0) } },

	{ .name = "HTTP/2 prior knowledge preface",
	  .steps = { R(PRI) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("PRI", "*", 0, TG_REQ_MALFORMED, 0, 0, 12, 0, "", 0, NONE, NONE, 0, 0) } },

	{ .name = "method longer than TG_HTTP_METHOD_MAX - 1",
	  .steps = { R("ABCDEFGHIJKLMNOP / HTTP/1.1\r\n\r\n") },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("ABCDEFGHIJKLMNO", "", 0, TG_REQ_MALFORMED, 0, 0, 16, 0, "", 0, NONE, NONE, 0, 0) } },

	{ .name = "invalid Content-Length",
	  .steps = { R(BADCL) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("POST", "/x", 0, TG_REQ_MALFORMED, 0, 1, L(BADCL), 0, "Content-Length: 12a\n", 0, NONE,
		     NONE, 0, 0) } },

	{ .name = "Content-Length and chunked: chunked wins",
	  .steps = { R(BOTH), W(RS2), CLOSE },
	  .nexp = 1,
	  .exp = { E("POST", "/both", 404, OK_, TG_REQF_CHUNKED_REQ, 1, L(BOTH), L(RS2), NULL, 0, 0, 1, 1,
		     1) } },

	{ .name = "response coding list not ending in chunked: until close",
	  .steps = { R(G1), W(TE_GZ), W("3\r\nabc\r\n0\r\n\r\n"), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/a?x=1", 200, OK_, 0, 1, L(G1), L(TE_GZ) + 13, NULL, 0, 0, 1, 3, 3) } },

	{ .name = "request coding list not ending in chunked: malformed",
	  .steps = { R(TE_BAD) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("POST", "/te", 0, TG_REQ_MALFORMED, 0, 1, L(TE_BAD), 0,
		     "Transfer-Encoding: chunked, gzip\n", 0, NONE, NONE, 0, 0) } },

	{ .name = "repeated equal Content-Length is fine",
	  .steps = { R(CL2 "abc"), W(RS2), CLOSE },
	  .nexp = 1,
	  .exp = { E("PATCH", "/r", 404, OK_, 0, 1, L(CL2) + 3, L(RS2),
		     "Content-Length: 3\ncontent-length: 3\n", 0, 0, 1, 1, 1) } },

	{ .name = "conflicting Content-Length: malformed",
	  .steps = { R(CLX) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("POST", "/r", 0, TG_REQ_MALFORMED, 0, 1, L(CLX) - 4, 0, NULL, 0, NONE, NONE, 0, 0) } },

	{ .name = "obsolete line folding: malformed",
	  .steps = { R(FOLD) },
	  .nexp = 1,
	  .untrack = 1,
	  .exp = { E("GET", "/f", 0, TG_REQ_MALFORMED, 0, 1, 24, 0, "X: a\n", 0, NONE, NONE, 0, 0) } },

	{ .name = "close after an interim 100 only",
	  .steps = { R(EXP100), W(R100), EOF_, CLOSE },
	  .nexp = 1,
	  .exp = { E("POST", "/upload", 0, TG_REQ_CLOSED_MID_RESPONSE, TG_REQF_CONTINUE, 1, L(EXP100), L(R100),
		     NULL, 0, NONE, 1, 3, 3) } },

	{ .name = "close in the middle of a header line",
	  .steps = { R("GET /h HTTP/1.1\r\nHost: a\r\nX-Partial: abc"), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/h", 0, TG_REQ_CLIENT_CLOSED_MID_REQUEST, 0, 1, 40, 0, "Host: a\n", 0, NONE,
		     NONE, 1, 1) } },

	{ .name = "write before any request: untracked, nothing emitted",
	  .steps = { W(RS1), R(G1) },
	  .nexp = 0,
	  .untrack = 1 },

	{ .name = "unparsable response: untracked",
	  .steps = { R(G1), W("HTTP/1.1 2OO OK\r\n\r\n") },
	  .nexp = 1,
	  .untrack = 2,
	  .exp = { E("GET", "/a?x=1", 0, TG_REQ_MALFORMED, 0, 1, L(G1), 11, NULL, 0, 0, 1, 1, 1) } },

	{ .name = "HTTP/1.0 request, response until close",
	  .steps = { R(OLD), W(OLDRESP), W("old body"), EOF_, CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", "/old", 200, OK_, 0, 0, L(OLD), L(OLDRESP) + 8, "Host: a\n", 0, 0, 1, 4, 4) } },

	{ .name = "early response (422) before the body is read",
	  .steps = { R(EP "0123456789"), W(R422), R("abcdefghij" AFTER), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("POST", "/e", 422, OK_, 0, 1, L(EP) + 10, L(R422), "Host: a\nContent-Length: 20\n", 0,
		     NONE, 1, 1, 1),
		   E("GET", "/after", 404, OK_, 0, 1, L(AFTER), L(RS2), NULL, 2, 2, 3, 3, 3) } },

	{ .name = "secret headers are redacted",
	  .steps = { R(SECRETS), W(RS2), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", "/me", 404, OK_, 0, 1, L(SECRETS), L(RS2), SECRETS_HDRS, 0, 0, 1, 1, 1) } },

	{ .name = "33 pipelined requests in one read are followed",
	  .steps = { RB(pipe33), WB(resp33), CLOSE },
	  .nexp = 1,
	  .exp = { { .method = "GET", .target = "/p", .seq = 1, .rep = 33, .status = 200, .minor = 1,
		     .req_bytes = PIPE_REQ_LEN, .resp_bytes = PIPE_RESP_LEN, .headers = "Host: h\n",
		     .start = 0, .req_end = 0, .resp_start = 1, .end = 1, .emit_step = 1 } } },

	{ .name = "pipelined requests, a client close with many unanswered",
	  .steps = { RB(pipe33), W(RS2), EOF_, CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/p00", 404, OK_, 0, 1, PIPE_REQ_LEN, L(RS2), "Host: h\n", 0, 0, 1, 1, 1),
		   { .method = "GET", .target = "/p", .seq = 1, .rep = 32,
		     .error = TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE, .minor = 1, .req_bytes = PIPE_REQ_LEN,
		     .headers = "Host: h\n", .start = 0, .req_end = 0, .resp_start = NONE, .end = 3,
		     .emit_step = 3, .first = 1 } } },

	{ .name = "pipelined HEAD, 204, 304 and chunked: each response finds its request",
	  .steps = { R(HEADREQ DEL ETAG G1 HEADREQ), W(HEADRESP R204 R304), W(RS3 HEADRESP), CLOSE },
	  .nexp = 5,
	  .exp = { E("HEAD", "/h", 200, OK_, TG_REQF_HEAD, 1, L(HEADREQ), L(HEADRESP), NULL, 0, 0, 1, 1, 1),
		   E("DELETE", "/x", 204, OK_, 0, 1, L(DEL), L(R204), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/etag", 304, OK_, 0, 1, L(ETAG), L(R304), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/a?x=1", 200, OK_, TG_REQF_CHUNKED_RESP, 1, L(G1), L(RS3), NULL, 0, 0, 2, 2, 2),
		   E("HEAD", "/h", 200, OK_, TG_REQF_HEAD, 1, L(HEADREQ), L(HEADRESP), NULL, 0, 0, 2, 2, 2) } },

	{ .name = "secret query values are redacted in the target and the Referer",
	  .steps = { R(QSECRETS), W(RS2), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", QSECRETS_TARGET, 404, OK_, 0, 1, L(QSECRETS), L(RS2), QSECRETS_HDRS, 0, 0, 1, 1,
		     1) } },

	{ .name = "a secret value cut by the target cap is redacted",
	  .steps = { RB(trunc_secret_req), W(RS2), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", trunc_secret_target, 404, OK_, TG_REQF_TARGET_TRUNCATED, 1, L(trunc_secret_req),
		     L(RS2), "Host: x\n", 0, 0, 1, 1, 1) } },

	{ .name = "redaction growing a target past the cap truncates it",
	  .steps = { RB(grow_secret_req), W(RS2), CLOSE },
	  .nexp = 1,
	  .exp = { E("GET", grow_secret_target, 404, OK_, TG_REQF_TARGET_TRUNCATED, 1, L(grow_secret_req),
		     L(RS2), "Host: x\n", 0, 0, 1, 1, 1) } },

	{ .name = "a secret in a target the client never finished",
	  .steps = { R("GET /cb?x=1&access_token=SECRET-PARTIAL"), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", "/cb?x=1&access_token=[redacted]", 0, TG_REQ_CLIENT_CLOSED_MID_REQUEST, 0, 0, 39,
		     0, "", 0, NONE, NONE, 1, 1) } },

	{ .name = "a secret in a target answered before its end",
	  .steps = { R("GET /cb?token=SECRET-EARLY"), W(R400), R("-MORE&x=1 HTTP/1.1\r\n\r\n"), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", "/cb?token=[redacted]", 400, OK_, 0, 0, 26, L(R400), "", 0, NONE, 1, 1, 1) } },

	{ .name = "a Referer cut by the close mid-line is not kept",
	  .steps = { R("GET /r HTTP/1.1\r\nHost: a\r\nReferer: http://x/?password=SECRET-CUT"), CLOSE },
	  .nexp = 1,
	  .forbid = "SECRET",
	  .exp = { E("GET", "/r", 0, TG_REQ_CLIENT_CLOSED_MID_REQUEST, 0, 1, 64, 0, "Host: a\n", 0, NONE, NONE,
		     1, 1) } },

	{ .name = "bare LF line endings",
	  .steps = { R(LF1 LF2), W(LFR1 LFR2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/lf", 200, OK_, 0, 1, L(LF1), L(LFR1), "Host: a\n", 0, 0, 1, 1, 1),
		   E("POST", "/lf2", 200, OK_, TG_REQF_CHUNKED_REQ | TG_REQF_CHUNKED_RESP, 1, L(LF2), L(LFR2),
		     "Transfer-Encoding: chunked\n", 0, 0, 1, 1, 1) } },

	{ .name = "blank lines between requests belong to none",
	  .steps = { R("\r\n" G2 "\r\n"), W(RS2), R("\n" G3), W(RS2), CLOSE },
	  .nexp = 2,
	  .exp = { E("GET", "/b", 404, OK_, 0, 1, L(G2), L(RS2), NULL, 0, 0, 1, 1, 1),
		   E("GET", "/c", 404, OK_, 0, 1, L(G3), L(RS2), NULL, 2, 2, 3, 3, 3) } },
};

#define NCASES (sizeof cases / sizeof cases[0])

/* ---- harness ------------------------------------------------------------ */

/* An emitted request, with copies of its strings (the parser's are valid
 * only during the emit call). */
struct got {
	struct tg_http_req r;
	int step;
	char method[TG_HTTP_METHOD_MAX];
	char target[TG_HTTP_TARGET_MAX];
	char headers[TG_HTTP_HEADERS_MAX];
};

struct run {
	struct got got[MAX_GOT];
	int n;
	int step; /* step being fed */
};

static struct run run_buf;
static int n_tests, n_failed;
static int verbose_budget; /* diagnostics printed for the current test */

static int bad_emit; /* an emitted request broke the contract of struct tg_http_req */

static void on_emit(void *ctx, const struct tg_http_req *r)
{
	struct run *run = ctx;
	if (!r->method || !r->target || !r->headers || r->method_len >= TG_HTTP_METHOD_MAX ||
	    r->target_len > TG_HTTP_TARGET_MAX || r->headers_len > TG_HTTP_HEADERS_MAX)
		bad_emit++;
	else if (run->n < MAX_GOT) {
		struct got *g = &run->got[run->n];
		g->r = *r;
		g->step = run->step;
		memcpy(g->method, r->method, r->method_len);
		memcpy(g->target, r->target, r->target_len);
		memcpy(g->headers, r->headers, r->headers_len);
		g->r.method = g->method;
		g->r.target = g->target;
		g->r.headers = g->headers;
	}
	run->n++;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void diag(const char *fmt, ...)
{
	if (verbose_budget <= 0)
		return;
	verbose_budget--;
	va_list ap;
	va_start(ap, fmt);
	fputs("#   ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
}

static uint64_t t_of(int idx)
{
	return idx < 0 ? 0 : T(idx);
}

static int str_eq(const char *s, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(s, want, len) == 0;
}

/* Compares one emitted record with its expectation; returns mismatches. */
static int check_one(const char *what, const struct got *g, const struct expect *e, int idx,
		     const char *forbid)
{
	const struct tg_http_req *r = &g->r;
	int bad = 0;
	char tgt[64];
	const char *want_target = e->target;
	if (e->seq) {
		snprintf(tgt, sizeof tgt, "%s%02d", e->target, e->first + idx);
		want_target = tgt;
	}
#define CHECK_NUM(field, want)                                                                        \
	do {                                                                                          \
		unsigned long long a_ = (unsigned long long)(field), w_ = (unsigned long long)(want); \
		if (a_ != w_) {                                                                       \
			diag("%s #%d: %s = %llu, want %llu", what, idx, #field, a_, w_);              \
			bad++;                                                                        \
		}                                                                                     \
	} while (0)
	if (!str_eq(r->method, r->method_len, e->method)) {
		diag("%s #%d: method '%.*s', want '%s'", what, idx, (int)r->method_len, r->method, e->method);
		bad++;
	}
	if (want_target && !str_eq(r->target, r->target_len, want_target)) {
		diag("%s #%d: target '%.*s' (%u bytes), want '%.40s' (%zu bytes)", what, idx,
		     r->target_len > 40 ? 40 : (int)r->target_len, r->target, r->target_len, want_target,
		     strlen(want_target));
		bad++;
	}
	if (!want_target)
		CHECK_NUM(r->target_len, e->target_len);
	if (e->headers && !str_eq(r->headers, r->headers_len, e->headers)) {
		diag("%s #%d: headers '%.*s', want '%s'", what, idx, (int)r->headers_len, r->headers, e->headers);
		bad++;
	}
	CHECK_NUM(r->status, e->status);
	CHECK_NUM(r->error, e->error);
	CHECK_NUM(r->flags, e->flags);
	CHECK_NUM(r->http_minor, e->minor);
	CHECK_NUM(r->request_bytes, e->req_bytes);
	CHECK_NUM(r->response_bytes, e->resp_bytes);
	CHECK_NUM(r->start_ns, t_of(e->start));
	CHECK_NUM(r->req_end_ns, t_of(e->req_end));
	CHECK_NUM(r->resp_start_ns, t_of(e->resp_start));
	CHECK_NUM(r->end_ns, t_of(e->end));
	CHECK_NUM(g->step, e->emit_step);
	if (r->method_len >= TG_HTTP_METHOD_MAX || r->target_len > TG_HTTP_TARGET_MAX ||
	    r->headers_len > TG_HTTP_HEADERS_MAX) {
		diag("%s #%d: lengths out of bounds", what, idx);
		bad++;
	}
	if (forbid && (memmem(r->method, r->method_len, forbid, strlen(forbid)) ||
		       memmem(r->target, r->target_len, forbid, strlen(forbid)) ||
		       memmem(r->headers, r->headers_len, forbid, strlen(forbid)))) {
		diag("%s #%d: '%s' found in the emitted strings", what, idx, forbid);
		bad++;
	}
#undef CHECK_NUM
	return bad;
}

/* Feeds one piece of a step; returns the feed function's result. */
static int feed(struct tg_http_conn *c, char dir, const char *p, size_t n, uint64_t now)
{
	if (dir == 'r')
		return tg_http_on_read(c, (const uint8_t *)p, n, now, on_emit, &run_buf);
	return tg_http_on_write(c, (const uint8_t *)p, n, now, on_emit, &run_buf);
}

/*
 * Runs case tc. split_step >= 0: that step is fed in two pieces cut at
 * split_at. bytewise: every step is fed one byte at a time. Returns the
 * number of mismatches, describing them as `what`.
 */
static int run_case(const struct tcase *tc, const struct expect *exp, int nexp, int split_step,
		    size_t split_at, int bytewise, const char *what)
{
	struct tg_http_conn *c = tg_http_new();
	int bad = 0, untracked_at = -1, want = 0;
	run_buf.n = 0;
	bad_emit = 0;
	if (!c) {
		diag("tg_http_new failed");
		return 1;
	}
	for (int i = 0; i < MAX_STEPS && tc->steps[i].dir && untracked_at < 0; i++) {
		const struct step *s = &tc->steps[i];
		int rc = TG_HTTP_OK;
		run_buf.step = i;
		switch (s->dir) {
		case 'e':
			tg_http_on_eof(c, T(i));
			break;
		case 'c':
			tg_http_on_close(c, T(i), on_emit, &run_buf);
			break;
		case 'f':
			rc = tg_http_on_write(c, NULL, s->len, T(i), on_emit, &run_buf);
			break;
		default:
			if (bytewise) {
				for (size_t k = 0; k < s->len && rc == TG_HTTP_OK; k++)
					rc = feed(c, s->dir, s->data + k, 1, T(i));
			} else if (i == split_step) {
				rc = feed(c, s->dir, s->data, split_at, T(i));
				if (rc == TG_HTTP_OK)
					rc = feed(c, s->dir, s->data + split_at, s->len - split_at, T(i));
			} else {
				rc = feed(c, s->dir, s->data, s->len, T(i));
			}
		}
		if (rc == TG_HTTP_UNTRACK)
			untracked_at = i;
		else if (rc != TG_HTTP_OK) {
			diag("%s: step %d returned %d", what, i, rc);
			bad++;
		}
	}
	if (tg_http_take_lost(c)) {
		diag("%s: requests counted lost", what);
		bad++;
	}
	tg_http_free(c);
	if (bad_emit) {
		diag("%s: %d emitted requests with bad strings or lengths", what, bad_emit);
		bad++;
	}
	if (untracked_at != tc->untrack - 1) {
		diag("%s: untracked at step %d, want %d", what, untracked_at, tc->untrack - 1);
		bad++;
	}
	for (int i = 0; i < nexp; i++)
		want += exp[i].rep ? exp[i].rep : 1;
	if (run_buf.n != want) {
		diag("%s: %d requests emitted, want %d", what, run_buf.n, want);
		bad++;
	}
	for (int i = 0, k = 0; i < nexp; i++) {
		int rep = exp[i].rep ? exp[i].rep : 1;
		for (int j = 0; j < rep && k < run_buf.n && k < MAX_GOT; j++, k++)
			bad += check_one(what, &run_buf.got[k], &exp[i], exp[i].seq ? j : k, tc->forbid);
	}
	return bad;
}

static void report(int ok, const char *name, const char *suffix)
{
	n_tests++;
	if (!ok)
		n_failed++;
	printf("%sok %d - %s%s\n", ok ? "" : "not ", n_tests, name, suffix);
	fflush(stdout);
}

/* Split points for a step of len bytes: all of them, except for huge steps
 * of cases marked sample_splits 2 (a megabyte: all points would take hours),
 * or marked 1 when TG_TEST_QUICK is set in the environment (for slow runs
 * such as valgrind). Those are cut only within 4 KiB of either end and at
 * every 509th byte in between (the middle of a huge value is uniform). */
static int quick;

static int split_wanted(const struct tcase *tc, size_t len, size_t k)
{
	if (tc->sample_splits == 0 || (tc->sample_splits == 1 && !quick) || len <= 16384)
		return 1;
	return k <= 4096 || k >= len - 4096 || k % 509 == 0;
}

static void run_table(void)
{
	for (size_t ci = 0; ci < NCASES; ci++) {
		const struct tcase *tc = &cases[ci];
		int bad;
		char what[96];

		verbose_budget = 20;
		bad = run_case(tc, tc->exp, tc->nexp, -1, 0, 0, "whole");
		report(!bad, tc->name, "");

		verbose_budget = 20;
		bad = 0;
		for (int si = 0; si < MAX_STEPS && tc->steps[si].dir; si++) {
			const struct step *s = &tc->steps[si];
			if (s->dir != 'r' && s->dir != 'w')
				continue;
			for (size_t k = 1; k < s->len; k++) {
				if (!split_wanted(tc, s->len, k))
					continue;
				snprintf(what, sizeof what, "step %d split at %zu", si, k);
				int b = run_case(tc, tc->exp, tc->nexp, si, k, 0, what);
				bad += b;
				if (b && verbose_budget <= 0)
					break;
			}
		}
		report(!bad, tc->name, " [every split point]");

		verbose_budget = 20;
		bad = run_case(tc, tc->exp, tc->nexp, -1, 0, 1, "byte at a time");
		report(!bad, tc->name, " [byte at a time]");
	}
}

/* ---- tests outside the table ------------------------------------------- */

/* A name and whether it is secret (1) or not (0). */
struct secret_case {
	const char *name;
	int secret;
};

/* Checks f (named fname) on each of the n cases t; returns the failures. */
static int check_secret_names(const char *fname, int (*f)(const char *, size_t), const struct secret_case *t,
			      size_t n)
{
	int bad = 0;
	verbose_budget = 20;
	for (size_t i = 0; i < n; i++) {
		int got = f(t[i].name, strlen(t[i].name));
		if (got != t[i].secret) {
			diag("%s(\"%s\") = %d, want %d", fname, t[i].name, got, t[i].secret);
			bad++;
		}
	}
	return bad;
}

static void test_secret_header(void)
{
	static const struct secret_case t[] = {
		{ "Authorization", 1 }, { "authorization", 1 }, { "Proxy-Authorization", 1 },
		{ "Cookie", 1 }, { "COOKIE", 1 }, { "Set-Cookie", 1 }, { "X-Api-Key", 1 },
		{ "X-Auth-Token", 1 }, { "X-CSRF-Token", 1 }, { "X-Client-Secret", 1 },
		{ "X-Password", 1 }, { "X-Passwd", 1 }, { "My-ApiKey", 1 }, { "X-Session-Id", 1 },
		{ "WWW-Authenticate", 1 }, { "Host", 0 }, { "Content-Type", 0 }, { "Cookies-Enabled", 0 },
		{ "Accept", 0 }, { "X-Request-Id", 0 }, { "User-Agent", 0 }, { "", 0 }, { "Au", 0 },
	};
	int bad = check_secret_names("tg_http_secret_header", tg_http_secret_header, t, sizeof t / sizeof t[0]);
	/* length is honoured: "Cookie" cut to "Cook" is not secret */
	if (tg_http_secret_header("Cookie", 4)) {
		diag("length ignored");
		bad++;
	}
	report(!bad, "tg_http_secret_header", "");
}

/* W3C traceparent: the validator, then the parser keeping the ids of a
 * request's one valid header (in any case of the name, whatever the cap on
 * the header text, through pipelining), fed whole and a byte at a time. */
#define TP_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_PARENT "00f067aa0ba902b7"
#define TP_OK "00-" TP_TRACE "-" TP_PARENT "-01"

static void test_traceparent(void)
{
	static const struct {
		const char *v;
		int valid;
	} t[] = {
		{ TP_OK, 1 },
		{ "00-" TP_TRACE "-" TP_PARENT "-00", 1 },
		{ "cc-" TP_TRACE "-" TP_PARENT "-01-what-the-future-says", 1 },
		{ "cc-" TP_TRACE "-" TP_PARENT "-01", 1 },
		{ "00-" TP_TRACE "-" TP_PARENT "-01-x", 0 },     /* version 00 is exactly 55 bytes */
		{ "cc-" TP_TRACE "-" TP_PARENT "-01x", 0 },      /* a later version adds "-..." only */
		{ "ff-" TP_TRACE "-" TP_PARENT "-01", 0 },       /* version ff is invalid */
		{ "00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_PARENT "-01", 0 }, /* uppercase */
		{ "00-00000000000000000000000000000000-" TP_PARENT "-01", 0 },
		{ "00-" TP_TRACE "-0000000000000000-01", 0 },
		{ "00-" TP_TRACE "-" TP_PARENT "-0", 0 },
		{ "00-" TP_TRACE "-" TP_PARENT "-0g", 0 },
		{ "00_" TP_TRACE "-" TP_PARENT "-01", 0 },
		{ "00-" TP_TRACE "x" TP_PARENT "-01", 0 },
		{ "00-4bf92f3577b34da6a3ce929d0e0e473-" TP_PARENT "-011", 0 }, /* a short trace id */
		{ "", 0 },
		{ "00", 0 },
	};
	static const uint8_t want_trace[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
					       0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
	static const uint8_t want_parent[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
	static const uint8_t zero[16];
	int bad = 0;
	verbose_budget = 20;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		uint8_t tr[16] = {0}, pa[8] = {0};
		int got = tg_http_traceparent(t[i].v, strlen(t[i].v), tr, pa);
		if (got != t[i].valid || (got && (memcmp(tr, want_trace, 16) || memcmp(pa, want_parent, 8)))) {
			diag("tg_http_traceparent(\"%s\") = %d, want %d", t[i].v, got, t[i].valid);
			bad++;
		}
	}
	report(!bad, "tg_http_traceparent: strict W3C validation", "");

	static char big[TG_HTTP_HEADERS_MAX + 200];
	memset(big, 0, sizeof big);
	snprintf(big, sizeof big, "GET /big HTTP/1.1\r\nX-Big: %0*d\r\ntraceparent: " TP_OK "\r\n\r\n",
		 TG_HTTP_HEADERS_MAX, 7);
	static const struct {
		const char *name, *req;
		int want[2]; /* ids expected in the first and second request */
	} p[] = {
		{ "one header", "GET / HTTP/1.1\r\nHost: a\r\ntraceparent: " TP_OK "\r\n\r\n", {1} },
		{ "name in any case, blanks around", "GET / HTTP/1.1\r\nTraceParent: \t " TP_OK " \t\r\n\r\n", {1} },
		{ "blank inside", "GET / HTTP/1.1\r\ntraceparent: 00-" TP_TRACE " -" TP_PARENT "-01\r\n\r\n", {0} },
		{ "two headers", "GET / HTTP/1.1\r\ntraceparent: " TP_OK "\r\ntraceparent: " TP_OK "\r\n\r\n", {0} },
		{ "invalid value", "GET / HTTP/1.1\r\ntraceparent: 00-" TP_TRACE "-" TP_PARENT "-01-\r\n\r\n", {0} },
		{ "a longer name", "GET / HTTP/1.1\r\ntraceparents: " TP_OK "\r\n\r\n", {0} },
		{ "after the header text cap", big, {1} },
		{ "pipelined: the second request only",
		  "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\ntraceparent: " TP_OK "\r\n\r\n", {0, 1} },
		{ "pipelined: the first request only",
		  "GET /1 HTTP/1.1\r\ntraceparent: " TP_OK "\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", {1, 0} },
	};
	for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
		size_t len = strlen(p[i].req);
		int nreq = 1 + (strstr(p[i].req, "GET /2") != NULL);
		bad = 0;
		for (size_t piece = 0; piece < 2; piece++) {
			size_t step = piece ? 1 : len;
			struct tg_http_conn *c = tg_http_new();
			memset(&run_buf, 0, sizeof run_buf);
			for (size_t off = 0; off < len; off += step)
				tg_http_on_read(c, (const uint8_t *)p[i].req + off, step, 1, on_emit, &run_buf);
			for (int k = 0; k < nreq; k++)
				tg_http_on_write(c, (const uint8_t *)RS2, L(RS2), 2, on_emit, &run_buf);
			tg_http_free(c);
			if (run_buf.n != nreq) {
				diag("%s: %d requests, want %d", p[i].name, run_buf.n, nreq);
				bad++;
				continue;
			}
			for (int k = 0; k < nreq; k++) {
				const struct tg_http_req *r = &run_buf.got[k].r;
				int ok = p[i].want[k] ? !memcmp(r->trace_id, want_trace, 16) &&
							       !memcmp(r->parent_span_id, want_parent, 8)
						      : !memcmp(r->trace_id, zero, 16) && !memcmp(r->parent_span_id, zero, 8);
				if (!ok) {
					diag("%s (%s): request %d has the wrong ids", p[i].name,
					     piece ? "byte by byte" : "whole", k + 1);
					bad++;
				}
			}
		}
		char name[128];
		snprintf(name, sizeof name, "traceparent kept: %s", p[i].name);
		report(!bad, name, "");
	}
}

/* Who closed a connection with a complete request unanswered: the app
 * (uvicorn drops a connection whose previous request raised, with the next
 * one already read), or the client (it half-closed first, or reset). */
static void test_closed_before_response(void)
{
	static const struct {
		int eof, by_app;
		uint16_t error;
	} closes[] = {
		{0, 1, TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE},
		{1, 1, TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE},
		{0, 0, TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE},
	};
	int bad = 0;
	verbose_budget = 20;
	for (size_t i = 0; i < sizeof closes / sizeof closes[0]; i++) {
		struct tg_http_conn *c = tg_http_new();
		memset(&run_buf, 0, sizeof run_buf);
		tg_http_on_read(c, (const uint8_t *)G1, L(G1), 1, on_emit, &run_buf);
		if (closes[i].eof)
			tg_http_on_eof(c, 2);
		if (closes[i].by_app)
			tg_http_on_app_close(c);
		tg_http_on_close(c, 3, on_emit, &run_buf);
		if (run_buf.n != 1 || run_buf.got[0].r.error != closes[i].error) {
			diag("case %zu: %d requests, error %u", i, run_buf.n, run_buf.n ? run_buf.got[0].r.error : 0);
			bad++;
		}
		tg_http_free(c);
	}
	report(!bad, "closed before response: by the app or by the client", "");
}

/* Feed calls after UNTRACK or close keep returning UNTRACK and emit nothing. */
static void test_after_untrack(void)
{
	struct tg_http_conn *c = tg_http_new();
	int bad = 0;
	memset(&run_buf, 0, sizeof run_buf);
	verbose_budget = 20;
	if (tg_http_on_read(c, (const uint8_t *)"\x16\x03", 2, 1, on_emit, &run_buf) != TG_HTTP_UNTRACK)
		bad++;
	if (tg_http_on_read(c, (const uint8_t *)G1, L(G1), 2, on_emit, &run_buf) != TG_HTTP_UNTRACK)
		bad++;
	if (tg_http_on_write(c, (const uint8_t *)RS1, L(RS1), 3, on_emit, &run_buf) != TG_HTTP_UNTRACK)
		bad++;
	tg_http_on_close(c, 4, on_emit, &run_buf);
	if (run_buf.n != 1)
		bad++;
	tg_http_free(c);

	c = tg_http_new();
	memset(&run_buf, 0, sizeof run_buf);
	tg_http_on_read(c, (const uint8_t *)G1, L(G1), 1, on_emit, &run_buf);
	tg_http_on_close(c, 2, on_emit, &run_buf);
	tg_http_on_close(c, 3, on_emit, &run_buf);
	if (run_buf.n != 1)
		bad++;
	if (tg_http_on_read(c, (const uint8_t *)G1, L(G1), 4, on_emit, &run_buf) != TG_HTTP_UNTRACK)
		bad++;
	tg_http_free(c);
	tg_http_free(NULL);

	/* freed with requests in flight (pipelined: one inline, one allocated):
	 * nothing emitted, nothing leaked */
	c = tg_http_new();
	memset(&run_buf, 0, sizeof run_buf);
	if (tg_http_on_read(c, (const uint8_t *)(G1 G2 "GET /x"), L(G1 G2 "GET /x"), 1, on_emit,
			    &run_buf) != TG_HTTP_OK)
		bad++;
	tg_http_free(c);
	if (run_buf.n != 0)
		bad++;
	report(!bad, "feeding after untrack or close", "");
}

/* A long keep-alive connection: many requests, no growth, all emitted once. */
static void test_many_keepalive(void)
{
	struct tg_http_conn *c = tg_http_new();
	int bad = 0;
	memset(&run_buf, 0, sizeof run_buf);
	for (int i = 0; i < 100000 && !bad; i++) {
		run_buf.n = 0;
		if (tg_http_on_read(c, (const uint8_t *)G1, L(G1), 1, on_emit, &run_buf) != TG_HTTP_OK ||
		    tg_http_on_write(c, (const uint8_t *)RS1, L(RS1), 2, on_emit, &run_buf) != TG_HTTP_OK ||
		    run_buf.n != 1 || run_buf.got[0].r.request_bytes != L(G1) ||
		    run_buf.got[0].r.response_bytes != L(RS1))
			bad++;
	}
	tg_http_free(c);
	report(!bad, "100000 keep-alive requests on one connection", "");
}

/*
 * Deep pipelining. n requests "GET|HEAD /qNNNNNN" (every 11th a HEAD, each
 * with a pad header of `pad` bytes) are read in pieces of `rpiece` bytes;
 * after every `every` pieces read, the responses due so far are written in
 * pieces of `wpiece` bytes. Responses vary in framing: 204, 304 with a
 * Content-Length, chunked, Content-Length bodies, a HEAD's Content-Length
 * without a body; their status (200 + i % 3 for the plain ones) says which
 * request each answers. Every request must come out once: as a record, in
 * order and with its own status, or counted in tg_http_take_lost(). Then a
 * last request on the connection is followed as usual.
 */
struct deep {
	int n, emitted, lost_seen, bad;
	int next;      /* lowest index an emitted request may have */
};

static int deep_status(int i)
{
	if (i % 11 == 3)
		return 200; /* HEAD */
	if (i % 7 == 0)
		return 204;
	if (i % 7 == 1)
		return 304;
	return 200 + i % 3;
}

static void deep_emit(void *ctx, const struct tg_http_req *r)
{
	struct deep *d = ctx;
	int i = -1;
	d->emitted++;
	if (r->target_len == 8 && sscanf(r->target, "/q%6d", &i) == 1 && i >= 0 && i < d->n) {
		if (i < d->next || r->status != deep_status(i) || r->error != TG_REQ_OK ||
		    ((r->flags & TG_REQF_HEAD) != 0) != (i % 11 == 3) || r->method_len != (i % 11 == 3 ? 4 : 3)) {
			if (d->bad++ < 5)
				diag("request %d (after %d): status %u error %u flags %#x", i, d->next, r->status,
				     r->error, r->flags);
		}
		d->next = i + 1;
	} else if (!(r->target_len == 5 && memcmp(r->target, "/last", 5) == 0 && r->status == 200)) {
		if (d->bad++ < 5)
			diag("unexpected request '%.*s' status %u", (int)r->target_len, r->target, r->status);
	}
}

static size_t deep_request(char *out, int i, size_t pad)
{
	size_t len = (size_t)sprintf(out, "%s /q%06d HTTP/1.1\r\nHost: h\r\nX-Pad: ", i % 11 == 3 ? "HEAD" : "GET", i);
	memset(out + len, 'p', pad);
	len += pad;
	memcpy(out + len, "\r\n\r\n", 4);
	return len + 4;
}

static size_t deep_response(char *out, int i)
{
	int st = deep_status(i);
	if (i % 11 == 3)
		return (size_t)sprintf(out, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
	if (st == 204)
		return (size_t)sprintf(out, "HTTP/1.1 204 No Content\r\n\r\n");
	if (st == 304)
		return (size_t)sprintf(out, "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n");
	if (i % 5 == 2)
		return (size_t)sprintf(out, "HTTP/1.1 %d OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", st);
	return (size_t)sprintf(out, "HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n%.*s", st, i % 13, i % 13,
			       "0123456789abc");
}

/* Feeds buf[0..len) in pieces of `piece` bytes; returns 0 or -1. */
static int deep_feed(struct tg_http_conn *c, int dir, const char *buf, size_t len, size_t piece, struct deep *d)
{
	for (size_t off = 0; off < len; off += piece) {
		size_t k = len - off < piece ? len - off : piece;
		int rc = dir ? tg_http_on_write(c, (const uint8_t *)buf + off, k, 1, deep_emit, d)
			     : tg_http_on_read(c, (const uint8_t *)buf + off, k, 1, deep_emit, d);
		if (rc != TG_HTTP_OK)
			return -1;
	}
	return 0;
}

static void test_deep_pipeline(const char *name, int n, size_t pad, size_t rpiece, int every, size_t wpiece,
			       int want_lost)
{
	struct tg_http_conn *c = tg_http_new();
	struct deep d = { .n = n };
	size_t rcap = (size_t)n * (64 + pad), wcap = (size_t)n * 96, rlen = 0, wlen = 0, rdone = 0, wdone = 0;
	char *rbuf = malloc(rcap), *wbuf = malloc(wcap);
	uint64_t lost = 0;
	int bad = 0, pieces = 0;
	verbose_budget = 20;
	for (int i = 0; i < n; i++)
		rlen += deep_request(rbuf + rlen, i, pad);
	int answered = 0, upto = 0;
	size_t uoff = 0; /* end of request `upto - 1` */
	while (rdone < rlen && !bad) {
		size_t k = rlen - rdone < rpiece ? rlen - rdone : rpiece;
		bad += deep_feed(c, 0, rbuf + rdone, k, k, &d) < 0;
		rdone += k;
		if (++pieces % every && rdone < rlen)
			continue;
		/* answer every request read completely so far */
		for (;;) {
			char tmp[128];
			size_t l = deep_request(tmp, upto, 0) + pad;
			if (upto == n || uoff + l > rdone)
				break;
			uoff += l;
			upto++;
		}
		for (; answered < upto; answered++)
			wlen += deep_response(wbuf + wlen, answered);
		bad += deep_feed(c, 1, wbuf + wdone, wlen - wdone, wpiece, &d) < 0;
		wdone = wlen;
		lost += tg_http_take_lost(c);
	}
	lost += tg_http_take_lost(c);
	if (d.emitted + (int)lost != n || (want_lost && !lost) || (!want_lost && lost)) {
		diag("%d requests: %d emitted + %llu lost", n, d.emitted, (unsigned long long)lost);
		bad++;
	}
	/* the connection is still followed */
	const char *last = "GET /last HTTP/1.1\r\nHost: h\r\n\r\n";
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	int before = d.emitted;
	if (tg_http_on_read(c, (const uint8_t *)last, strlen(last), 2, deep_emit, &d) != TG_HTTP_OK ||
	    tg_http_on_write(c, (const uint8_t *)ok, strlen(ok), 3, deep_emit, &d) != TG_HTTP_OK ||
	    d.emitted != before + 1) {
		diag("the request after the burst was not followed");
		bad++;
	}
	tg_http_on_close(c, 4, deep_emit, &d);
	bad += d.bad;
	tg_http_free(c);
	free(rbuf);
	free(wbuf);
	char label[160];
	snprintf(label, sizeof label, "%s: %d emitted, %llu counted lost", name, d.emitted - 1,
		 (unsigned long long)lost);
	report(!bad, label, "");
}

/* Requests pipelined beyond the detail budget and never answered are
 * counted too when the connection ends. */
static void test_deep_unanswered(void)
{
	struct tg_http_conn *c = tg_http_new();
	struct deep d = { .n = 20000 };
	char req[600];
	int bad = 0;
	verbose_budget = 20;
	for (int i = 0; i < d.n; i++) {
		size_t len = deep_request(req, i, 400);
		if (tg_http_on_read(c, (const uint8_t *)req, len, 1, deep_emit, &d) != TG_HTTP_OK)
			bad++;
	}
	tg_http_on_app_close(c);
	tg_http_on_close(c, 2, NULL, NULL);
	uint64_t lost = tg_http_take_lost(c);
	tg_http_free(c);
	/* about TG_HTTP_PIPE_BYTES / 480 keep their details */
	if (lost < 15000 || lost > 19000) {
		diag("%llu of %d unanswered requests counted lost", (unsigned long long)lost, d.n);
		bad++;
	}
	report(!bad, "20000 pipelined requests never answered: the undetailed ones counted lost", "");
}

static void test_secret_param(void)
{
	static const struct secret_case t[] = {
		{ "password", 1 }, { "PASSWORD", 1 }, { "Passwd", 1 }, { "pwd", 1 }, { "token", 1 },
		{ "access_token", 1 }, { "refresh_token", 1 }, { "api_key", 1 }, { "apikey", 1 }, { "key", 1 },
		{ "Key", 1 }, { "secret", 1 }, { "client_secret", 1 }, { "auth", 1 }, { "session", 1 },
		{ "signature", 1 }, { "Signature", 1 }, { "sig", 1 }, { "code", 1 }, { "%70assword", 1 },
		{ "api%5Fkey", 1 }, { "api%5fKEY", 1 }, { "%6B%65%79", 1 }, { "to%6ben", 1 },
		{ "monkey", 0 }, { "keys", 0 }, { "tokens", 0 }, { "zipcode", 0 }, { "author", 0 },
		{ "design", 0 }, { "passwords", 0 }, { "q", 0 }, { "", 0 }, { "%", 0 }, { "%7", 0 },
		{ "ke%7", 0 }, { "%%70wd", 0 }, { "my_secret", 0 }, { "x-custom", 0 }, { "pass word", 0 },
	};
	int bad = check_secret_names("tg_http_secret_param", tg_http_secret_param, t, sizeof t / sizeof t[0]);
	if (tg_http_secret_param("password", 4) || !tg_http_secret_param("keys", 3)) {
		diag("length ignored");
		bad++;
	}
	/* names added (TIMEGLASS_REDACT_PARAMS, --redact-param) */
	char long_name[TG_HTTP_PARAM_NAME_MAX + 2];
	memset(long_name, 'n', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = 0;
	char list[200];
	snprintf(list, sizeof list, " My_Secret ,, X-Custom,pass+word,%s,", long_name);
	int added = tg_http_redact_params(list);
	if (added != 3) {
		diag("tg_http_redact_params added %d names, want 3", added);
		bad++;
	}
	const char *now_secret[] = { "my_secret", "MY_SECRET", "x-custom", "X%2DCustom", "pass word", "pass+word" };
	for (size_t i = 0; i < sizeof now_secret / sizeof now_secret[0]; i++)
		if (!tg_http_secret_param(now_secret[i], strlen(now_secret[i]))) {
			diag("added name \"%s\" is not secret", now_secret[i]);
			bad++;
		}
	if (tg_http_secret_param(long_name, strlen(long_name)) || tg_http_secret_param("custom", 6) ||
	    tg_http_redact_params(NULL) != 0) {
		diag("a name too long, or a part of an added name, is secret");
		bad++;
	}
	report(!bad, "tg_http_secret_param and added names", "");
}

static void test_redact_url(void)
{
	static const struct {
		const char *in, *out;
		size_t cap; /* 0: roomy */
		int cut;
	} t[] = {
		{ "/a", "/a", 0, 0 },
		{ "/a?", "/a?", 0, 0 },
		{ "/a?password=x", "/a?password=[redacted]", 0, 0 },
		{ "/a?password=x&b=2", "/a?password=[redacted]&b=2", 0, 0 },
		{ "/a?b=2&password=0123456789abcdefghij&c=3", "/a?b=2&password=[redacted]&c=3", 0, 0 },
		{ "/a?password=[redacted]", "/a?password=[redacted]", 0, 0 },
		{ "/a?token&key=&sig=1", "/a?token&key=[redacted]&sig=[redacted]", 0, 0 },
		{ "/a?&&;token=1;;", "/a?&&;token=[redacted];;", 0, 0 },
		{ "/a?x=a=b&code=c=d", "/a?x=a=b&code=[redacted]", 0, 0 },
		{ "/a#access_token=t&x=1", "/a#access_token=[redacted]&x=1", 0, 0 },
		{ "/a?x=1#code=2", "/a?x=1#code=[redacted]", 0, 0 },
		{ "/p/token=1/x", "/p/token=1/x", 0, 0 },
		{ "http://h:1/p?key=v", "http://h:1/p?key=[redacted]", 0, 0 },
		{ "/a?key=v&b=2", "/a?key=[redacted]&b", 19, 1 },
		{ "/a?key=v&b=2", "/a?key=[redac", 13, 1 },
		{ "/a?key=v", "/a?key=", 7, 1 },
		{ "/a?key=0123456789012&b=2", "/a?key=[redacted]&b=2", 24, 0 },
	};
	int bad = 0;
	verbose_budget = 20;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char buf[128];
		size_t len = strlen(t[i].in), cap = t[i].cap ? t[i].cap : sizeof buf;
		int cut = 0;
		memcpy(buf, t[i].in, len);
		len = tg_http_redact_url(buf, len, cap, &cut);
		if (len > cap || len != strlen(t[i].out) || memcmp(buf, t[i].out, len) || cut != t[i].cut) {
			diag("redact(\"%s\", cap %zu) = \"%.*s\" cut %d, want \"%s\" cut %d", t[i].in, cap,
			     (int)len, buf, cut, t[i].out, t[i].cut);
			bad++;
		}
	}
	report(!bad, "tg_http_redact_url", "");
}

/* The harness itself must notice a wrong expectation. */
static void test_harness_detects_errors(void)
{
	const struct tcase *tc = &cases[0];
	struct expect wrong[2];
	memcpy(wrong, tc->exp, sizeof wrong);
	wrong[1].req_bytes++;
	verbose_budget = 0;
	int bad = run_case(tc, wrong, 2, -1, 0, 0, "wrong");
	report(bad == 1, "harness reports a wrong expectation", "");
}

int main(void)
{
	quick = getenv("TG_TEST_QUICK") != NULL;
	build_inputs();
	run_table();
	test_secret_header();
	test_traceparent();
	test_after_untrack();
	test_closed_before_response();
	test_many_keepalive();
	/* 10000 small requests: all kept; in one read each, answered after all. */
	test_deep_pipeline("10000 pipelined requests, answered after all were read", 10000, 8, 1 << 20, 1,
			   1 << 20, 0);
	/* Big requests beyond the budget: details for the first ones only. */
	test_deep_pipeline("10000 pipelined requests beyond the detail budget", 10000, 400, 1 << 24, 1,
			   4096, 1);
	/* Read and answered in interleaved pieces, as uvicorn does: within the
	 * budget, then beyond it (details come back as answers free room). */
	test_deep_pipeline("30000 pipelined requests, read and answered in pieces", 30000, 400, 65536, 3,
			   7, 0);
	test_deep_pipeline("30000 pipelined requests, read in big pieces and answered", 30000, 400, 1 << 20, 3,
			   1000, 1);
	test_deep_unanswered();
	test_secret_param();
	test_redact_url();
	test_harness_detects_errors();
	printf("# %d tests, %d passed, %d failed\n", n_tests, n_tests - n_failed, n_failed);
	return n_failed ? 1 : 0;
}
