/*
 * http1.c - incremental HTTP/1.x parser for the server side of a connection
 * (contract in http1.h).
 *
 * One message state machine (struct msg) serves both directions: the read
 * side parses requests (request line, headers, body), the write side parses
 * responses (status line, headers, body). Every feed call walks its buffer in
 * steps; each step consumes bytes of one state and reports an event (headers
 * finished, message finished, error) that the direction's driver acts on.
 *
 * Requests are numbered as they begin (seq). Those from seq_done up to
 * seq_read are pending: read, or being read, and not yet answered. The
 * response side always answers the oldest, seq_done, whose response state
 * (start, bytes, status, flags) lives in the connection. Each pending request
 * has one bit, by seq, saying whether it is a HEAD (its response has no
 * body); that is all the framing needs, so every response finds its request
 * however deep the pipeline. Details (times, strings) live in two places:
 *  - the slot, inline in the connection, holds the newest request with
 *    details, at full size while it is read: a plain keep-alive connection
 *    never allocates;
 *  - when a new request begins while the slot's request is unanswered
 *    (pipelining), that one is compacted into the detail FIFO, a list of
 *    16 KiB chunks holding records at their real size, up to
 *    TG_HTTP_PIPE_BYTES per connection. When the FIFO is full, the slot keeps
 *    its request and the new one is followed without details: once it ends
 *    it is counted in `lost` instead of being emitted.
 *
 * Cost: bodies and chunk data are skipped by arithmetic; header values, chunk
 * extensions, trailers and reason phrases are scanned with memchr; only the
 * request line, status line, header names and the values of the few headers
 * that decide framing are walked byte by byte. No line has a length limit
 * (see http1.h): past what is kept, a line costs a scan and no memory.
 */
#include "http1.h"

#include <stdlib.h>
#include <string.h>

#include "common/event.h"

#define NAME_BUF 20                  /* longest header name recognised ("transfer-encoding") */
#define TOK_BUF 16                   /* longest list token recognised ("100-continue") */
#define NUM_LIMIT (1ull << 60)       /* Content-Length / chunk size above this: malformed */
#define CHUNK_DATA (16384u - 16u)    /* bytes of records in one chunk of the detail FIFO */
#define INLINE_BITS 64u              /* pending requests whose HEAD bits need no allocation */

/* struct msg.st: where a message parser is. */
enum {
	M_IDLE,        /* between messages */
	M_START,       /* in the request line or status line (sub: RL_* / SL_*) */
	M_HEADER,      /* in the header section (sub: HS_*) */
	M_BODY_LEN,    /* Content-Length body, `remaining` bytes to go */
	M_CHUNK,       /* chunked body (sub: CS_*) */
	M_UNTIL_CLOSE, /* response body delimited by the connection closing */
};

/* Request line. */
enum { RL_METHOD, RL_TARGET, RL_VERSION, RL_MINOR, RL_EOL, RL_LF };
/* Status line. */
enum { SL_VERSION, SL_MINOR, SL_SP, SL_CODE, SL_AFTER_CODE, SL_REASON };
/* Header section. */
enum { HS_START, HS_END_LF, HS_NAME, HS_VALUE_WS, HS_VALUE };
/* Chunked body. */
enum {
	CS_SIZE, CS_SIZE_WS, CS_EXT, CS_SIZE_LF, CS_DATA, CS_DATA_CR, CS_DATA_LF,
	CS_TRAILER, CS_TRAILER_LINE, CS_TRAILER_LF,
};

/* Events a parsing step reports. */
enum { EV_NONE, EV_ERR, EV_HEADERS, EV_DONE, EV_UPGRADE };

/* Headers whose value matters for framing. */
enum { H_OTHER, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_CONNECTION, H_EXPECT, H_UPGRADE,
       H_TRACEPARENT /* not framing: its ids are kept */ };

#define TP_LEN 55 /* a version 00 traceparent; later versions may add "-..." */

/* struct msg.hflags: what the header section said. */
#define MF_CL 0x001           /* valid Content-Length seen (value in cl) */
#define MF_CL_BAD 0x002       /* unparsable or conflicting Content-Length */
#define MF_TE 0x004           /* Transfer-Encoding present */
#define MF_CHUNKED 0x008      /* the last transfer coding is chunked */
#define MF_CLOSE 0x010        /* Connection: close */
#define MF_KEEPALIVE 0x020    /* Connection: keep-alive */
#define MF_CONN_UPGRADE 0x040 /* Connection: upgrade */
#define MF_UPGRADE 0x080      /* Upgrade: header present */
#define MF_EXPECT_100 0x100   /* Expect: 100-continue */

/* Parser state of one direction. msg_begin() zeroes everything from
 * `remaining` up to `name` at the start of each message. */
struct msg {
	uint8_t st, sub;
	uint64_t remaining; /* M_BODY_LEN, CS_DATA: bytes left; CS_SIZE: size so far */
	uint64_t tlen;      /* request target bytes seen */
	uint16_t hflags;    /* MF_* */
	uint16_t status;    /* write side: status code being parsed / parsed */
	uint64_t cl;        /* Content-Length when MF_CL */
	uint64_t num;       /* Content-Length value being parsed */
	uint8_t mlen;       /* method bytes seen */
	uint8_t idx;        /* position in a literal / digits seen */
	uint8_t hid;        /* H_* of the current header line */
	uint8_t num_state;  /* 0 nothing, 1 digits, 2 trailing blanks, 3 bad */
	uint8_t name_len;   /* header name length, NAME_BUF + 1 if longer */
	uint8_t tok_len;    /* list token length, TOK_BUF + 1 when too long */
	uint8_t storing;    /* request side: the current header line is being kept */
	uint8_t secret;     /* ... and its value is redacted */
	uint8_t urlval;     /* ... and its value is a URL whose secret parameters are redacted */
	uint16_t line_start;  /* headers_len where the kept line starts */
	uint16_t value_start; /* headers_len where its value starts */
	char name[NAME_BUF];  /* lower-cased header name prefix; the method on the request line */
	char tok[TOK_BUF];    /* lower-cased list token */
	uint8_t tp_len;       /* traceparent value bytes kept, up to TP_LEN + 1 */
	uint8_t tp_blank;     /* ... a blank was seen after them (only blanks may follow) */
	uint8_t tp_bad;       /* ... a byte after such a blank: invalid */
	char tp[TP_LEN + 1];  /* its first bytes */
};

/* The newest pending request with details: the request being read, or the
 * last one read. Strings are kept up to their caps. */
struct slot {
	uint64_t seq;
	uint64_t start_ns, req_end_ns, request_bytes;
	uint16_t method_len, target_len, headers_len;
	uint8_t http_minor, flags; /* TG_REQF_* of the request side */
	uint8_t used;              /* holds a pending request */
	uint8_t tdone;             /* its target is complete and redacted */
	uint8_t tp;                /* traceparent headers seen: 0, 1 (valid, ids kept) or 2 (ignored) */
	uint8_t trace_id[16], parent_span_id[8];
	char method[TG_HTTP_METHOD_MAX];
	char target[TG_HTTP_TARGET_MAX];
	char headers[TG_HTTP_HEADERS_MAX];
};

/* A pending request in the detail FIFO: a complete request compacted out of
 * the slot, followed by its method, target and headers at their lengths,
 * and by the ids of its traceparent if it had a valid one. */
struct rec {
	uint32_t size; /* bytes of the record, a multiple of 8 */
	uint16_t method_len, target_len, headers_len;
	uint8_t http_minor, flags;
	uint8_t tp;     /* 1: the traceparent ids (24 bytes) follow the strings */
	uint8_t pad[3];
	uint64_t seq;
	uint64_t start_ns, req_end_ns, request_bytes;
	char data[];
};

/* A chunk of the detail FIFO: records in [rd, wr). */
struct chunk {
	struct chunk *next;
	uint32_t rd, wr;
	uint8_t data[CHUNK_DATA];
};

struct tg_http_conn {
	uint64_t seq_read;   /* requests begun */
	uint64_t seq_done;   /* requests answered or ended: seq_done is the oldest pending */
	uint64_t lost;       /* ended without details, not yet taken (tg_http_take_lost) */
	uint64_t *bits;      /* HEAD bit of each pending request, by seq modulo nbits */
	uint64_t nbits;      /* a power of two, >= INLINE_BITS */
	uint64_t bits_inline[INLINE_BITS / 64];
	struct chunk *first, *last, *spare; /* detail FIFO (oldest first) and one empty chunk */
	uint32_t nchunks;    /* chunks allocated, spare included */
	/* Response to the oldest pending request. */
	uint8_t resp_started; /* a byte of it has been written */
	uint8_t resp_flags;   /* TG_REQF_* of the response side */
	uint16_t resp_status; /* final status, 0 until seen */
	uint64_t resp_start_ns, resp_bytes;
	uint8_t reading;     /* a request is being read (seq_read - 1, its last byte not read yet) */
	uint8_t dead;        /* untracked or closed: feed calls are refused */
	uint8_t upgraded;    /* after a 101: every byte is ignored */
	uint8_t eof;         /* the client half-closed */
	uint8_t app_closed;  /* the app closed the socket (tg_http_on_app_close) */
	uint8_t dropped;     /* bytes were ignored while upgrade_wait */
	uint8_t upgrade_wait; /* request upgrade_seq asked for an upgrade, complete, unanswered */
	uint64_t upgrade_seq;
	struct slot *rreq;   /* &slot while the request being read has details, else NULL */
	uint64_t eof_ns;
	struct msg rd, wr;
	struct slot slot;
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint8_t lower(uint8_t ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (uint8_t)(ch | 0x20) : ch;
}

/* tchar_lower[ch]: ch lower-cased if it may appear in a token (RFC 9110
 * tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~), else 0 (bytes 128 and
 * up are none). Scans and lower-cases a header name in one look-up a byte. */
static const uint8_t tchar_lower[256] = {
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,  33,   0,  35,  36,  37,  38,  39,   0,   0,  42,  43,   0,  45,  46,   0,
	 48,  49,  50,  51,  52,  53,  54,  55,  56,  57,   0,   0,   0,   0,   0,   0,
	  0,  97,  98,  99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
	112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122,   0,   0,   0,  94,  95,
	 96,  97,  98,  99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
	112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122,   0, 124,   0, 126,   0,
};

/* 1 if s[0..len) equals the lower-case literal lit (s is lower-cased already). */
static inline int eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* 1 if s[i..len) starts with the lower-case literal lit[0..n), any case. */
static inline int at_ci(const char *s, size_t len, size_t i, const char *lit, size_t n)
{
	if (len - i < n)
		return 0;
	for (size_t k = 0; k < n; k++)
		if (lower((uint8_t)s[i + k]) != (uint8_t)lit[k])
			return 0;
	return 1;
}

#define AT(lit) at_ci(name, len, i, (lit), sizeof(lit) - 1)

/* One pass over the name: at each letter that starts a needle, compare the
 * needles starting with it. Authorization, Proxy-Authorization and X-Api-Key
 * are covered by "auth" and "api-key"; Cookie and Set-Cookie are exact. */
int tg_http_secret_header(const char *name, size_t len)
{
	size_t i = 0;
	if (!name)
		return 0;
	if ((len == 6 && AT("cookie")) || (len == 10 && AT("set-cookie")))
		return 1;
	for (; i < len; i++) {
		switch (name[i] | 0x20) {
		case 'a':
			if (AT("auth") || AT("api-key") || AT("apikey"))
				return 1;
			break;
		case 'p':
			if (AT("password") || AT("passwd"))
				return 1;
			break;
		case 's':
			if (AT("secret") || AT("session"))
				return 1;
			break;
		case 't':
			if (AT("token"))
				return 1;
			break;
		}
	}
	return 0;
}

/* Lowercase hex s[0..2n) into out[0..n); 0 if a digit is not lowercase hex. */
static int lower_hex(const char *s, size_t n, uint8_t *out, int *nonzero)
{
	for (size_t i = 0; i < 2 * n; i++) {
		int d = tg_hexval((uint8_t)s[i]);
		if (d < 0 || (s[i] >= 'A' && s[i] <= 'F'))
			return 0;
		*nonzero |= d;
		out[i / 2] = (uint8_t)(i & 1 ? (out[i / 2] << 4) | d : d);
	}
	return 1;
}

int tg_http_traceparent(const char *v, size_t n, uint8_t trace_id[16], uint8_t parent_span_id[8])
{
	/* Reads v[0..TP_LEN], never further. */
	uint8_t version, flags, t[16], p[8];
	int any = 0, tz = 0, pz = 0;
	if (n < TP_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-' || !lower_hex(v, 1, &version, &any) ||
	    version == 0xff || (version == 0 && n != TP_LEN) || (n > TP_LEN && v[TP_LEN] != '-') ||
	    !lower_hex(v + 3, 16, t, &tz) || !lower_hex(v + 36, 8, p, &pz) || !lower_hex(v + 53, 1, &flags, &any) ||
	    !tz || !pz)
		return 0;
	memcpy(trace_id, t, sizeof t);
	memcpy(parent_span_id, p, sizeof p);
	return 1;
}

#undef AT

/* ---- pending requests -------------------------------------------------- */

static uint32_t max_chunks = TG_HTTP_PIPE_BYTES / sizeof(struct chunk);

void tg_http_set_pipe_bytes(size_t bytes)
{
	size_t n = bytes / sizeof(struct chunk);
	max_chunks = n < 1 ? 1 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static inline uint64_t *bit_word(const struct tg_http_conn *c, uint64_t seq)
{
	return &c->bits[(seq & (c->nbits - 1)) >> 6];
}

static inline int is_head_req(const struct tg_http_conn *c, uint64_t seq)
{
	return (int)(*bit_word(c, seq) >> (seq & 63) & 1);
}

/* Doubles the HEAD bits, keeping those of the pending requests. 0, or -1 on
 * ENOMEM. */
static int bits_grow(struct tg_http_conn *c)
{
	uint64_t n = c->nbits * 2;
	uint64_t *b = calloc(n / 64, sizeof *b);
	if (!b)
		return -1;
	for (uint64_t q = c->seq_done; q < c->seq_read; q++)
		if (is_head_req(c, q))
			b[(q & (n - 1)) >> 6] |= 1ull << (q & 63);
	if (c->bits != c->bits_inline)
		free(c->bits);
	c->bits = b;
	c->nbits = n;
	return 0;
}

/* The oldest record of the detail FIFO, or NULL. Chunks in the list are
 * never empty. */
static inline struct rec *fifo_first(const struct tg_http_conn *c)
{
	return c->first ? (struct rec *)(c->first->data + c->first->rd) : NULL;
}

/* Room for a record of `size` bytes (a multiple of 8, at most CHUNK_DATA) at
 * the end of the FIFO, or NULL when TG_HTTP_PIPE_BYTES are used (or ENOMEM). */
static struct rec *fifo_push(struct tg_http_conn *c, uint32_t size)
{
	struct chunk *k = c->last;
	if (!k || CHUNK_DATA - k->wr < size) {
		k = c->spare;
		c->spare = NULL;
		if (!k) {
			if (c->nchunks >= max_chunks || !(k = malloc(sizeof *k)))
				return NULL;
			c->nchunks++;
		}
		k->next = NULL;
		k->rd = k->wr = 0;
		if (c->last)
			c->last->next = k;
		else
			c->first = k;
		c->last = k;
	}
	struct rec *r = (struct rec *)(k->data + k->wr);
	k->wr += size;
	return r;
}

/* Drops the oldest record (the FIFO is not empty). An emptied chunk becomes
 * the spare, or is freed if there is one. */
static void fifo_pop(struct tg_http_conn *c)
{
	struct chunk *k = c->first;
	k->rd += fifo_first(c)->size;
	if (k->rd < k->wr)
		return;
	c->first = k->next;
	if (!c->first)
		c->last = NULL;
	if (!c->spare) {
		c->spare = k;
	} else {
		free(k);
		c->nchunks--;
	}
}

/* Redacts the secret query values of the slot's target (once). */
static void slot_redact(struct slot *s)
{
	int cut = 0;
	if (s->tdone)
		return;
	s->tdone = 1;
	s->target_len = (uint16_t)tg_http_redact_url(s->target, s->target_len, TG_HTTP_TARGET_MAX, &cut);
	if (cut)
		s->flags |= TG_REQF_TARGET_TRUNCATED;
}

/* Moves the slot's request (complete, unanswered) into the detail FIFO,
 * freeing the slot. 0 if the FIFO has no room: the slot keeps it. */
static int compact(struct tg_http_conn *c)
{
	struct slot *s = &c->slot;
	slot_redact(s);
	uint32_t strings = (uint32_t)s->method_len + s->target_len + s->headers_len;
	uint32_t len = strings + (s->tp == 1 ? 24u : 0u);
	struct rec *r = fifo_push(c, (uint32_t)(sizeof *r + len + 7) & ~7u);
	if (!r)
		return 0;
	r->size = (uint32_t)(sizeof *r + len + 7) & ~7u;
	r->method_len = s->method_len;
	r->target_len = s->target_len;
	r->headers_len = s->headers_len;
	r->http_minor = s->http_minor;
	r->flags = s->flags;
	r->tp = s->tp == 1;
	r->seq = s->seq;
	r->start_ns = s->start_ns;
	r->req_end_ns = s->req_end_ns;
	r->request_bytes = s->request_bytes;
	memcpy(r->data, s->method, s->method_len);
	memcpy(r->data + s->method_len, s->target, s->target_len);
	memcpy(r->data + s->method_len + s->target_len, s->headers, s->headers_len);
	if (r->tp) {
		memcpy(r->data + strings, s->trace_id, 16);
		memcpy(r->data + strings + 16, s->parent_span_id, 8);
	}
	s->used = 0;
	return 1;
}

/* The ids of a request's traceparent for emit: kept only if there was
 * exactly one, and valid. */
static void set_trace(struct tg_http_req *v, uint8_t tp, const uint8_t trace_id[16], const uint8_t parent[8])
{
	if (tp == 1) {
		memcpy(v->trace_id, trace_id, sizeof v->trace_id);
		memcpy(v->parent_span_id, parent, sizeof v->parent_span_id);
	} else {
		memset(v->trace_id, 0, sizeof v->trace_id);
		memset(v->parent_span_id, 0, sizeof v->parent_span_id);
	}
}

/*
 * Ends the oldest pending request at `now` with `error`: hands its details to
 * emit (with the response state), or counts it in `lost` if it has none.
 * discard: neither (after an upgrade, the bytes were not requests). Then the
 * next pending request is the oldest, with no response yet.
 */
static void finish_oldest(struct tg_http_conn *c, int error, uint64_t now, tg_http_emit_fn emit, void *ctx,
			  int discard)
{
	uint64_t seq = c->seq_done;
	struct rec *r = fifo_first(c);
	struct tg_http_req v;
	v.status = c->resp_status;
	v.error = (uint16_t)error;
	v.resp_start_ns = c->resp_started ? c->resp_start_ns : 0;
	v.response_bytes = c->resp_bytes;
	v.end_ns = now;
	if (r && r->seq == seq) {
		v.start_ns = r->start_ns;
		v.req_end_ns = r->req_end_ns;
		v.request_bytes = r->request_bytes;
		v.http_minor = r->http_minor;
		v.flags = r->flags | c->resp_flags;
		v.method_len = r->method_len;
		v.target_len = r->target_len;
		v.headers_len = r->headers_len;
		v.method = r->data;
		v.target = r->data + r->method_len;
		v.headers = r->data + r->method_len + r->target_len;
		const uint8_t *ids = (const uint8_t *)v.headers + r->headers_len;
		set_trace(&v, r->tp, ids, ids + 16);
		if (emit && !discard)
			emit(ctx, &v);
		fifo_pop(c);
	} else if (c->slot.used && c->slot.seq == seq) {
		struct slot *s = &c->slot;
		if (c->rreq == s) {
			/* Answered while still being read: the rest of it is
			 * parsed, not kept, and a header line in progress is
			 * cut off the text, which so holds complete lines. */
			struct msg *m = &c->rd;
			if (m->st == M_HEADER && m->sub >= HS_NAME && m->storing)
				s->headers_len = m->line_start;
			m->storing = 0;
			c->rreq = NULL;
		}
		slot_redact(s);
		v.start_ns = s->start_ns;
		v.req_end_ns = s->req_end_ns;
		v.request_bytes = s->request_bytes;
		v.http_minor = s->http_minor;
		v.flags = s->flags | c->resp_flags;
		v.method_len = s->method_len;
		v.target_len = s->target_len;
		v.headers_len = s->headers_len;
		v.method = s->method;
		v.target = s->target;
		v.headers = s->headers;
		set_trace(&v, s->tp, s->trace_id, s->parent_span_id);
		if (emit && !discard)
			emit(ctx, &v);
		s->used = 0;
	} else if (!discard) {
		c->lost++;
	}
	c->seq_done++;
	if (c->upgrade_wait && c->upgrade_seq == seq)
		c->upgrade_wait = 0;
	c->resp_started = 0;
	c->resp_flags = 0;
	c->resp_status = 0;
	c->resp_start_ns = 0;
	c->resp_bytes = 0;
}

/* Emits every pending request with `error` and stops following the
 * connection. Returns TG_HTTP_UNTRACK. */
static int give_up(struct tg_http_conn *c, int error, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	while (c->seq_done < c->seq_read)
		finish_oldest(c, error, now, emit, ctx, 0);
	c->dead = 1;
	return TG_HTTP_UNTRACK;
}

uint64_t tg_http_take_lost(struct tg_http_conn *c)
{
	uint64_t n = c->lost;
	c->lost = 0;
	return n;
}

/* ---- message parser ---------------------------------------------------- */

/* Starts a new message in state st/sub, forgetting the previous one. */
static void msg_begin(struct msg *m, uint8_t st, uint8_t sub)
{
	memset(&m->remaining, 0, offsetof(struct msg, name) - offsetof(struct msg, remaining));
	m->st = st;
	m->sub = sub;
}

/* Puts m at the start of a chunked body. */
static void chunk_begin(struct msg *m)
{
	m->st = M_CHUNK;
	m->sub = CS_SIZE;
	m->remaining = 0;
	m->idx = 0;
}

/*
 * Request line of the request being read (seq_read - 1). Consumes bytes of
 * `METHOD SP target SP HTTP/1.x (CR)LF`, storing method and target into r
 * (NULL: no details kept, or already answered: parse only); a HEAD sets the
 * request's HEAD bit. At the end of the target redacts its secret query
 * values; at the end of the line moves to M_HEADER. On an invalid byte sets
 * EV_ERR and returns the count up to and including that byte.
 */
static size_t req_line(struct tg_http_conn *c, struct slot *r, const uint8_t *p, size_t n, int *ev)
{
	struct msg *m = &c->rd;
	size_t i = 0;
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case RL_METHOD:
			if (ch == ' ') {
				if (!m->mlen)
					goto bad;
				m->sub = RL_TARGET;
				if (m->mlen == 4 && memcmp(m->name, "HEAD", 4) == 0) {
					uint64_t q = c->seq_read - 1; /* a stale bit if answered: harmless */
					*bit_word(c, q) |= 1ull << (q & 63);
					if (r)
						r->flags |= TG_REQF_HEAD;
				}
			} else if (((ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_') &&
				   m->mlen < TG_HTTP_METHOD_MAX - 1) {
				m->name[m->mlen] = (char)ch;
				if (r) {
					r->method[m->mlen] = (char)ch;
					r->method_len = (uint16_t)(m->mlen + 1);
				}
				m->mlen++;
			} else {
				goto bad;
			}
			i++;
			break;
		case RL_TARGET: {
			size_t j = i;
			while (j < n && p[j] > 0x20 && p[j] != 0x7f)
				j++;
			if (r && j > i) {
				size_t keep = 0;
				if (m->tlen < TG_HTTP_TARGET_MAX)
					keep = TG_HTTP_TARGET_MAX - m->tlen;
				if (keep > j - i)
					keep = j - i;
				if (keep) {
					memcpy(r->target + m->tlen, p + i, keep);
					r->target_len = (uint16_t)(m->tlen + keep);
				}
				if (keep < j - i)
					r->flags |= TG_REQF_TARGET_TRUNCATED;
			}
			m->tlen += j - i;
			i = j;
			if (i == n)
				break;
			if (p[i] != ' ' || !m->tlen)
				goto bad;
			if (r)
				slot_redact(r);
			m->sub = RL_VERSION;
			m->idx = 0;
			i++;
			break;
		}
		case RL_VERSION:
			if (ch != (uint8_t)"HTTP/1."[m->idx])
				goto bad;
			if (++m->idx == 7)
				m->sub = RL_MINOR;
			i++;
			break;
		case RL_MINOR:
			if (ch != '0' && ch != '1')
				goto bad;
			if (r)
				r->http_minor = (uint8_t)(ch - '0');
			m->sub = RL_EOL;
			i++;
			break;
		case RL_EOL:
			if (ch == '\n')
				goto done;
			if (ch != '\r')
				goto bad;
			m->sub = RL_LF;
			i++;
			break;
		case RL_LF:
			if (ch != '\n')
				goto bad;
			goto done;
		}
	}
	return i;
done:
	m->st = M_HEADER;
	m->sub = HS_START;
	return i + 1;
bad:
	*ev = EV_ERR;
	return i + 1;
}

/*
 * Status line. Consumes bytes of `HTTP/1.x SP ddd [SP reason] (CR)LF`, the
 * code going to m->status. At the end of the line moves m to M_HEADER. On an
 * invalid byte sets EV_ERR and returns the count including that byte.
 */
static size_t status_line(struct msg *m, const uint8_t *p, size_t n, int *ev)
{
	size_t i = 0;
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case SL_VERSION:
			if (ch != (uint8_t)"HTTP/1."[m->idx])
				goto bad;
			if (++m->idx == 7)
				m->sub = SL_MINOR;
			i++;
			break;
		case SL_MINOR:
			if (ch != '0' && ch != '1')
				goto bad;
			m->sub = SL_SP;
			i++;
			break;
		case SL_SP:
			if (ch != ' ')
				goto bad;
			m->sub = SL_CODE;
			m->idx = 0;
			i++;
			break;
		case SL_CODE:
			if (ch < '0' || ch > '9' || (m->idx == 0 && ch == '0'))
				goto bad;
			m->status = (uint16_t)(m->status * 10 + (ch - '0'));
			if (++m->idx == 3)
				m->sub = SL_AFTER_CODE;
			i++;
			break;
		case SL_AFTER_CODE:
			if (ch == '\n')
				goto done;
			if (ch != ' ' && ch != '\r')
				goto bad;
			m->sub = SL_REASON;
			i++;
			break;
		case SL_REASON: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			if (!nl) {
				i = n;
				break;
			}
			i = (size_t)(nl - p);
			goto done;
		}
		}
	}
	return i;
done:
	m->st = M_HEADER;
	m->sub = HS_START;
	return i + 1;
bad:
	*ev = EV_ERR;
	return i + 1;
}

/* Drops the header line being kept (it does not fit the cap). */
static void drop_line(struct msg *m, struct slot *r)
{
	r->headers_len = m->line_start;
	r->flags |= TG_REQF_HEADERS_TRUNCATED;
	m->storing = 0;
}

/* Appends s[0..len) to the kept header line, or drops the line if the header
 * text would exceed its cap. No-op when the line is not being kept. */
static void store(struct msg *m, struct slot *r, const void *s, size_t len)
{
	if (!m->storing || !r)
		return;
	if (len > (size_t)TG_HTTP_HEADERS_MAX - r->headers_len) {
		drop_line(m, r);
		return;
	}
	memcpy(r->headers + r->headers_len, s, len);
	r->headers_len = (uint16_t)(r->headers_len + len);
}

/* Ends the current list token of a Transfer-Encoding, Connection or Expect
 * value, recording what it means in m->hflags. */
static void tok_end(struct msg *m)
{
	size_t len = m->tok_len;
	m->tok_len = 0;
	if (len == 0)
		return; /* empty list element */
	int known = len <= TOK_BUF;
	const char *t = m->tok;
	switch (m->hid) {
	case H_TRANSFER_ENCODING:
		if (known && eq(t, len, "chunked"))
			m->hflags |= MF_CHUNKED;
		else
			m->hflags &= (uint16_t)~MF_CHUNKED;
		break;
	case H_CONNECTION:
		if (!known)
			break;
		if (eq(t, len, "close"))
			m->hflags |= MF_CLOSE;
		else if (eq(t, len, "keep-alive"))
			m->hflags |= MF_KEEPALIVE;
		else if (eq(t, len, "upgrade"))
			m->hflags |= MF_CONN_UPGRADE;
		break;
	case H_EXPECT:
		if (known && eq(t, len, "100-continue"))
			m->hflags |= MF_EXPECT_100;
		break;
	}
}

/* Feeds value bytes of a header that matters for framing to its parser. */
static void value_parse(struct msg *m, const uint8_t *s, size_t len)
{
	for (size_t k = 0; k < len; k++) {
		uint8_t ch = s[k];
		if (m->hid == H_CONTENT_LENGTH) {
			if (ch >= '0' && ch <= '9') {
				if (m->num_state > 1 || m->num > NUM_LIMIT / 10) {
					m->num_state = 3;
				} else {
					m->num = m->num * 10 + (uint64_t)(ch - '0');
					m->num_state = 1;
				}
			} else if (ch == ' ' || ch == '\t' || ch == '\r') {
				if (m->num_state == 1)
					m->num_state = 2;
			} else {
				m->num_state = 3;
			}
		} else if (ch == ',') {
			tok_end(m);
		} else if (ch != ' ' && ch != '\t' && ch != '\r') {
			if (m->tok_len < TOK_BUF)
				m->tok[m->tok_len] = (char)lower(ch);
			if (m->tok_len <= TOK_BUF)
				m->tok_len++;
		}
	}
}

/* Starts a header line: r non-NULL means its text is to be kept. */
static void name_begin(struct msg *m, struct slot *r)
{
	m->name_len = 0;
	m->hid = H_OTHER;
	m->secret = 0;
	m->urlval = 0;
	m->storing = r != NULL;
	if (r)
		m->line_start = r->headers_len;
}

/* Adds the name bytes at the start of s[0..n) (the tchars up to the first
 * other byte) and returns how many there were. */
static size_t name_add(struct msg *m, struct slot *r, const uint8_t *s, size_t n)
{
	/* name_len counts up to NAME_BUF + 1, which means "too long to be known". */
	size_t k = 0;
	uint8_t c;
	while (k < n && (c = tchar_lower[s[k]]) != 0) {
		if (m->name_len < NAME_BUF)
			m->name[m->name_len] = (char)c;
		if (m->name_len <= NAME_BUF)
			m->name_len++;
		k++;
	}
	if (r)
		store(m, r, s, k);
	return k;
}

/* 1 if the lower-cased header name nm[0..len) has a URL as its value, whose
 * query may carry secrets: Referer, and the original URL that proxies pass
 * (X-Original-URL, X-Original-URI, X-Forwarded-URI, X-Rewrite-URL). */
static int url_header(const char *nm, size_t len)
{
	switch (len) {
	case 7:
		return eq(nm, len, "referer");
	case 13:
		return eq(nm, len, "x-rewrite-url");
	case 14:
		return eq(nm, len, "x-original-url") || eq(nm, len, "x-original-uri");
	case 15:
		return eq(nm, len, "x-forwarded-uri");
	}
	return 0;
}

/* The name ended at ':'. Identifies the header; for a kept line writes the
 * separator and, for a secret header, the redaction marker. */
static void name_end(struct msg *m, struct slot *r)
{
	const char *nm = m->name;
	size_t len = m->name_len;
	switch (len) { /* len > NAME_BUF: unknown */
	case 14:
		if (eq(nm, len, "content-length"))
			m->hid = H_CONTENT_LENGTH;
		break;
	case 17:
		if (eq(nm, len, "transfer-encoding"))
			m->hid = H_TRANSFER_ENCODING;
		break;
	case 10:
		if (eq(nm, len, "connection"))
			m->hid = H_CONNECTION;
		break;
	case 6:
		if (eq(nm, len, "expect"))
			m->hid = H_EXPECT;
		break;
	case 7:
		if (eq(nm, len, "upgrade"))
			m->hid = H_UPGRADE;
		break;
	case 11:
		if (eq(nm, len, "traceparent"))
			m->hid = H_TRACEPARENT;
		break;
	}
	m->tp_len = 0;
	m->tp_blank = 0;
	m->tp_bad = 0;
	m->num = 0;
	m->num_state = 0;
	m->tok_len = 0;
	if (m->storing && r) {
		m->secret = (uint8_t)tg_http_secret_header(r->headers + m->line_start,
							   (size_t)(r->headers_len - m->line_start));
		store(m, r, ": ", 2);
		if (m->secret)
			store(m, r, TG_HTTP_REDACTED, sizeof TG_HTTP_REDACTED - 1);
		else
			m->urlval = (uint8_t)url_header(nm, len);
		m->value_start = r->headers_len;
	}
}

/* Collects value bytes of a traceparent header: its first TP_LEN + 1
 * bytes, blanks at the end left out (a blank inside makes it invalid). */
static void tp_add(struct msg *m, const uint8_t *s, size_t len)
{
	for (size_t k = 0; k < len; k++) {
		uint8_t ch = s[k];
		if (ch == ' ' || ch == '\t' || ch == '\r') {
			m->tp_blank = 1;
			continue;
		}
		if (m->tp_blank)
			m->tp_bad = 1;
		if (m->tp_len < sizeof m->tp)
			m->tp[m->tp_len++] = (char)ch;
	}
}

/* A traceparent header line ended: its ids go to the request, unless it
 * is the second one (then none is trusted). */
static void tp_end(struct msg *m, struct slot *r)
{
	if (!r || r->tp >= 2)
		return;
	if (r->tp == 1) {
		r->tp = 2;
		return;
	}
	/* Past TP_LEN + 1 bytes the value is a later version's longer one:
	 * what the validator reads of it is kept. */
	r->tp = (uint8_t)(!m->tp_bad && tg_http_traceparent(m->tp, m->tp_len, r->trace_id, r->parent_span_id) ? 1 : 2);
}

/* Adds value bytes s[0..len) (no LF among them). */
static void value_add(struct msg *m, struct slot *r, const uint8_t *s, size_t len)
{
	if (m->hid == H_TRACEPARENT)
		tp_add(m, s, len);
	else if (m->hid != H_OTHER && m->hid != H_UPGRADE)
		value_parse(m, s, len);
	if (!m->secret)
		store(m, r, s, len);
}

/* The header line ended (its LF consumed). Records its meaning and finishes
 * the kept text: trailing blanks trimmed, secret query values of a URL
 * redacted, "\n" appended. */
static void line_end(struct msg *m, struct slot *r)
{
	switch (m->hid) {
	case H_CONTENT_LENGTH:
		if (m->num_state != 1 && m->num_state != 2)
			m->hflags |= MF_CL_BAD;
		else if ((m->hflags & MF_CL) && m->cl != m->num)
			m->hflags |= MF_CL_BAD;
		m->cl = m->num;
		m->hflags |= MF_CL;
		break;
	case H_TRANSFER_ENCODING:
		tok_end(m);
		m->hflags |= MF_TE;
		break;
	case H_CONNECTION:
	case H_EXPECT:
		tok_end(m);
		break;
	case H_UPGRADE:
		m->hflags |= MF_UPGRADE;
		break;
	case H_TRACEPARENT:
		tp_end(m, r);
		break;
	}
	if (!m->storing || !r)
		return;
	while (r->headers_len > m->value_start) {
		char ch = r->headers[r->headers_len - 1];
		if (ch != ' ' && ch != '\t' && ch != '\r')
			break;
		r->headers_len--;
	}
	if (m->urlval && m->value_start < TG_HTTP_HEADERS_MAX) {
		int cut = 0;
		size_t v = m->value_start;
		/* The cap keeps room for the "\n". */
		size_t len = tg_http_redact_url(r->headers + v, r->headers_len - v, TG_HTTP_HEADERS_MAX - 1 - v, &cut);
		r->headers_len = (uint16_t)(v + len);
		if (cut)
			r->flags |= TG_REQF_HEADERS_TRUNCATED;
	}
	store(m, r, "\n", 1);
}

/*
 * Header section: consumes at most one header line (or the empty line that
 * ends the section, then EV_HEADERS). r non-NULL: keep the header text there.
 * On an invalid byte or a too-long line sets EV_ERR.
 */
static size_t header_line(struct msg *m, struct slot *r, const uint8_t *p, size_t n, int *ev)
{
	size_t i = 0;
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case HS_START:
			if (ch == '\r') {
				m->sub = HS_END_LF;
				i++;
				break;
			}
			if (ch == '\n')
				goto end_of_headers;
			if (!tchar_lower[ch])
				goto bad; /* includes obs-fold continuation lines */
			name_begin(m, r);
			m->sub = HS_NAME;
			break;
		case HS_END_LF:
			if (ch != '\n')
				goto bad;
			goto end_of_headers;
		case HS_NAME: {
			i += name_add(m, r, p + i, n - i);
			if (i == n)
				break;
			if (p[i] != ':')
				goto bad;
			name_end(m, r);
			m->sub = HS_VALUE_WS;
			i++;
			break;
		}
		case HS_VALUE_WS:
			if (ch == ' ' || ch == '\t') {
				i++;
				break;
			}
			m->sub = HS_VALUE;
			break;
		case HS_VALUE: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			size_t len = nl ? (size_t)(nl - (p + i)) : n - i;
			value_add(m, r, p + i, len);
			i += len;
			if (!nl)
				break;
			line_end(m, r);
			m->sub = HS_START;
			return i + 1;
		}
		}
	}
	return i;
end_of_headers:
	*ev = EV_HEADERS;
	return i + 1;
bad:
	*ev = EV_ERR;
	return i + 1;
}

/*
 * Chunked body: consumes chunk data (by arithmetic) or at most one framing
 * line (size line with extensions, CRLF after data, trailer line, final empty
 * line). Reports EV_DONE after the final empty line, EV_ERR on bad framing.
 */
static size_t chunk_step(struct msg *m, const uint8_t *p, size_t n, int *ev)
{
	size_t i = 0;
	if (m->sub == CS_DATA) {
		size_t k = n < m->remaining ? n : (size_t)m->remaining;
		m->remaining -= k;
		if (!m->remaining)
			m->sub = CS_DATA_CR;
		return k;
	}
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case CS_SIZE: {
			int d = tg_hexval(ch);
			if (d >= 0) {
				if (m->remaining >= NUM_LIMIT >> 4)
					goto bad;
				m->remaining = (m->remaining << 4) | (uint64_t)d;
				m->idx = 1;
				i++;
				break;
			}
			if (!m->idx)
				goto bad;
			m->sub = CS_SIZE_WS;
			break;
		}
		case CS_SIZE_WS:
			if (ch == '\n')
				goto size_done;
			if (ch == ';')
				m->sub = CS_EXT;
			else if (ch == '\r')
				m->sub = CS_SIZE_LF;
			else if (ch != ' ' && ch != '\t')
				goto bad;
			i++;
			break;
		case CS_EXT: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			if (!nl) {
				i = n;
				break;
			}
			i = (size_t)(nl - p);
			goto size_done;
		}
		case CS_SIZE_LF:
			if (ch != '\n')
				goto bad;
			goto size_done;
		case CS_DATA_CR:
			if (ch == '\n')
				goto next_chunk;
			if (ch != '\r')
				goto bad;
			m->sub = CS_DATA_LF;
			i++;
			break;
		case CS_DATA_LF:
			if (ch != '\n')
				goto bad;
			goto next_chunk;
		case CS_TRAILER:
			if (ch == '\n')
				goto done;
			if (ch == '\r') {
				m->sub = CS_TRAILER_LF;
				i++;
				break;
			}
			m->sub = CS_TRAILER_LINE;
			break;
		case CS_TRAILER_LINE: {
			const uint8_t *nl = memchr(p + i, '\n', n - i);
			if (!nl) {
				i = n;
				break;
			}
			m->sub = CS_TRAILER;
			return (size_t)(nl - p) + 1;
		}
		case CS_TRAILER_LF:
			if (ch != '\n')
				goto bad;
			goto done;
		}
	}
	return i;
size_done:
	m->sub = m->remaining ? CS_DATA : CS_TRAILER;
	return i + 1;
next_chunk:
	chunk_begin(m);
	return i + 1;
done:
	*ev = EV_DONE;
	return i + 1;
bad:
	*ev = EV_ERR;
	return i + 1;
}

/* Content-Length body: consumes up to the end of it; EV_DONE at the end. */
static size_t body_step(struct msg *m, size_t n, int *ev)
{
	size_t k = n < m->remaining ? n : (size_t)m->remaining;
	m->remaining -= k;
	if (!m->remaining)
		*ev = EV_DONE;
	return k;
}

/* ---- read side --------------------------------------------------------- */

/* A request begins at now: numbers it, gives it the slot if it can (moving
 * the slot's unanswered request to the detail FIFO), and sets the read side
 * to its request line. 0 if it cannot be followed (no memory for its HEAD
 * bit). */
static int request_begin(struct tg_http_conn *c, uint64_t now)
{
	if (c->seq_read - c->seq_done >= c->nbits && bits_grow(c) < 0)
		return 0;
	uint64_t seq = c->seq_read++;
	struct slot *s = &c->slot;
	*bit_word(c, seq) &= ~(1ull << (seq & 63));
	if (s->used && !compact(c)) {
		s = NULL; /* the FIFO is full: followed without details */
	} else {
		s->used = 1;
		s->tdone = 0;
		s->seq = seq;
		s->start_ns = now;
		s->req_end_ns = 0;
		s->request_bytes = 0;
		s->method_len = s->target_len = s->headers_len = 0;
		s->http_minor = 0;
		s->flags = 0;
		s->tp = 0;
	}
	c->rreq = s;
	c->reading = 1;
	msg_begin(&c->rd, M_START, RL_METHOD);
	return 1;
}

/* The request headers ended: chooses how the body is framed. Returns
 * EV_DONE (no body), EV_NONE (body follows) or EV_ERR. */
static int request_headers_done(struct tg_http_conn *c)
{
	struct msg *m = &c->rd;
	if (m->hflags & MF_TE) {
		if (!(m->hflags & MF_CHUNKED))
			return EV_ERR; /* length unknowable */
		if (c->rreq)
			c->rreq->flags |= TG_REQF_CHUNKED_REQ;
		chunk_begin(m);
		return EV_NONE;
	}
	if (m->hflags & MF_CL_BAD)
		return EV_ERR;
	if ((m->hflags & MF_CL) && m->cl) {
		m->st = M_BODY_LEN;
		m->remaining = m->cl;
		return EV_NONE;
	}
	return EV_DONE;
}

/* The request's last byte was read at now. A request still unanswered that
 * asks for an upgrade stops the reading of requests until it is answered. */
static void request_done(struct tg_http_conn *c, uint64_t now)
{
	struct msg *m = &c->rd;
	if (c->rreq)
		c->rreq->req_end_ns = now;
	if ((m->hflags & (MF_UPGRADE | MF_CONN_UPGRADE)) == (MF_UPGRADE | MF_CONN_UPGRADE) &&
	    c->seq_read > c->seq_done) {
		c->upgrade_wait = 1;
		c->upgrade_seq = c->seq_read - 1;
	}
	c->rreq = NULL;
	c->reading = 0;
	m->st = M_IDLE;
}

int tg_http_on_read(struct tg_http_conn *c, const uint8_t *buf, size_t n, uint64_t now_ns,
		    tg_http_emit_fn emit, void *ctx)
{
	struct msg *m = &c->rd;
	size_t off = 0;
	if (c->dead)
		return TG_HTTP_UNTRACK;
	if (c->upgraded || !buf)
		return TG_HTTP_OK;
	while (off < n) {
		const uint8_t *p = buf + off;
		size_t avail = n - off, used = 0;
		struct slot *r = c->rreq;
		int ev = EV_NONE;
		switch (m->st) {
		case M_IDLE:
			if (c->upgrade_wait) {
				/* Bytes after an upgrade request: protocol data if
				 * the answer is 101, a lost request otherwise. */
				c->dropped = 1;
				return TG_HTTP_OK;
			}
			while (used < avail && (p[used] == '\r' || p[used] == '\n'))
				used++; /* blank lines between requests belong to none */
			off += used;
			if (used < avail && !request_begin(c, now_ns))
				return give_up(c, TG_REQ_TOO_MANY_PIPELINED, now_ns, emit, ctx);
			continue;
		case M_START:
			used = req_line(c, r, p, avail, &ev);
			break;
		case M_HEADER:
			used = header_line(m, r, p, avail, &ev);
			break;
		case M_BODY_LEN:
			used = body_step(m, avail, &ev);
			break;
		case M_CHUNK:
			used = chunk_step(m, p, avail, &ev);
			break;
		default:
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx);
		}
		off += used;
		if (r)
			r->request_bytes += used;
		if (ev == EV_HEADERS)
			ev = request_headers_done(c);
		if (ev == EV_ERR)
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx);
		if (ev == EV_DONE)
			request_done(c, now_ns);
	}
	return TG_HTTP_OK;
}

void tg_http_on_eof(struct tg_http_conn *c, uint64_t now_ns)
{
	if (!c->eof) {
		c->eof = 1;
		c->eof_ns = now_ns;
	}
}

/* ---- write side -------------------------------------------------------- */

/* The response headers for the oldest pending request ended: records the
 * status and chooses how the body is framed. Returns EV_DONE (no body),
 * EV_NONE (body follows or the response was interim), EV_UPGRADE (101) or
 * EV_ERR. */
static int response_headers_done(struct tg_http_conn *c)
{
	struct msg *m = &c->wr;
	uint16_t st = m->status;
	if (st < 200) {
		if (st == 101)
			return EV_UPGRADE;
		if (st == 100)
			c->resp_flags |= TG_REQF_CONTINUE;
		m->st = M_IDLE; /* interim: the final response follows */
		return EV_NONE;
	}
	c->resp_status = st;
	if (is_head_req(c, c->seq_done) || st == 204 || st == 304)
		return EV_DONE;
	if (m->hflags & MF_TE) {
		if (m->hflags & MF_CHUNKED) {
			c->resp_flags |= TG_REQF_CHUNKED_RESP;
			chunk_begin(m);
		} else {
			m->st = M_UNTIL_CLOSE;
		}
		return EV_NONE;
	}
	if (m->hflags & MF_CL_BAD)
		return EV_ERR;
	if (m->hflags & MF_CL) {
		if (!m->cl)
			return EV_DONE;
		m->st = M_BODY_LEN;
		m->remaining = m->cl;
		return EV_NONE;
	}
	m->st = M_UNTIL_CLOSE;
	return EV_NONE;
}

/* The final response of the oldest pending request was written completely
 * at now: ends that request. Returns 0, or 1 if the connection can no
 * longer be followed (bytes were ignored after an upgrade request that was
 * refused). */
static int response_done(struct tg_http_conn *c, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	int lost = 0;
	if (c->dropped && c->upgrade_wait && c->upgrade_seq == c->seq_done) {
		lost = 1; /* the upgrade request was this one */
		c->dropped = 0;
	}
	c->wr.st = M_IDLE;
	finish_oldest(c, TG_REQ_OK, now, emit, ctx, 0);
	return lost;
}

/* A 101 for the oldest pending request was written at now: ends it and
 * stops parsing; later pending requests were protocol bytes, not requests. */
static void upgrade(struct tg_http_conn *c, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	c->resp_status = 101;
	c->resp_flags |= TG_REQF_UPGRADE;
	finish_oldest(c, TG_REQ_OK, now, emit, ctx, 0);
	while (c->seq_done < c->seq_read)
		finish_oldest(c, TG_REQ_OK, now, emit, ctx, 1);
	c->upgraded = 1;
}

/* n bytes of unknown content (sendfile): valid only as body bytes. */
static int opaque_write(struct tg_http_conn *c, size_t n, uint64_t now, tg_http_emit_fn emit,
			void *ctx)
{
	struct msg *m = &c->wr;
	while (n) {
		size_t k;
		if (c->seq_done == c->seq_read)
			return give_up(c, TG_REQ_MALFORMED, now, emit, ctx);
		if (m->st == M_UNTIL_CLOSE) {
			c->resp_bytes += n;
			return TG_HTTP_OK;
		}
		if (m->st != M_BODY_LEN && !(m->st == M_CHUNK && m->sub == CS_DATA))
			return give_up(c, TG_REQ_MALFORMED, now, emit, ctx);
		k = n < m->remaining ? n : (size_t)m->remaining;
		m->remaining -= k;
		c->resp_bytes += k;
		n -= k;
		if (m->remaining)
			continue;
		if (m->st == M_CHUNK)
			m->sub = CS_DATA_CR;
		else if (response_done(c, now, emit, ctx))
			return give_up(c, TG_REQ_MALFORMED, now, emit, ctx);
	}
	return TG_HTTP_OK;
}

int tg_http_on_write(struct tg_http_conn *c, const uint8_t *buf, size_t n, uint64_t now_ns,
		     tg_http_emit_fn emit, void *ctx)
{
	struct msg *m = &c->wr;
	size_t off = 0;
	if (c->dead)
		return TG_HTTP_UNTRACK;
	if (c->upgraded)
		return TG_HTTP_OK;
	if (!buf)
		return opaque_write(c, n, now_ns, emit, ctx);
	while (off < n) {
		const uint8_t *p = buf + off;
		size_t avail = n - off, used = 0;
		int ev = EV_NONE;
		if (c->seq_done == c->seq_read)
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx); /* answer to nothing */
		switch (m->st) {
		case M_IDLE:
			if (!c->resp_started) {
				c->resp_started = 1;
				c->resp_start_ns = now_ns;
			}
			msg_begin(m, M_START, SL_VERSION);
			continue;
		case M_START:
			used = status_line(m, p, avail, &ev);
			break;
		case M_HEADER:
			used = header_line(m, NULL, p, avail, &ev);
			break;
		case M_BODY_LEN:
			used = body_step(m, avail, &ev);
			break;
		case M_CHUNK:
			used = chunk_step(m, p, avail, &ev);
			break;
		case M_UNTIL_CLOSE:
			used = avail;
			break;
		}
		off += used;
		c->resp_bytes += used;
		if (ev == EV_HEADERS)
			ev = response_headers_done(c);
		if (ev == EV_ERR)
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx);
		if (ev == EV_UPGRADE) {
			upgrade(c, now_ns, emit, ctx);
			return TG_HTTP_OK;
		}
		if (ev == EV_DONE && response_done(c, now_ns, emit, ctx))
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx);
	}
	return TG_HTTP_OK;
}

/* ---- lifetime ---------------------------------------------------------- */

struct tg_http_conn *tg_http_new(void)
{
	struct tg_http_conn *c = malloc(sizeof *c);
	if (!c)
		return NULL;
	/* The slot's string buffers are only read up to their lengths. */
	memset(c, 0, offsetof(struct tg_http_conn, slot));
	memset(&c->slot, 0, offsetof(struct slot, method));
	c->bits = c->bits_inline;
	c->nbits = INLINE_BITS;
	return c;
}

void tg_http_free(struct tg_http_conn *c)
{
	if (!c)
		return;
	while (c->first) {
		struct chunk *k = c->first;
		c->first = k->next;
		free(k);
	}
	free(c->spare);
	if (c->bits != c->bits_inline)
		free(c->bits);
	free(c);
}

void tg_http_on_app_close(struct tg_http_conn *c)
{
	c->app_closed = 1;
}

void tg_http_on_close(struct tg_http_conn *c, uint64_t now_ns, tg_http_emit_fn emit, void *ctx)
{
	if (c->dead)
		return;
	c->dead = 1;
	while (c->seq_done < c->seq_read) {
		int error;
		if (c->resp_started)
			error = c->wr.st == M_UNTIL_CLOSE ? TG_REQ_OK : TG_REQ_CLOSED_MID_RESPONSE;
		else if (c->reading && c->seq_done == c->seq_read - 1)
			error = TG_REQ_CLIENT_CLOSED_MID_REQUEST;
		else if (c->app_closed && !c->eof)
			error = TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE;
		else
			error = TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE;
		finish_oldest(c, error, now_ns, emit, ctx, 0);
	}
}
