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
 * Requests live in a FIFO (struct tg_http_conn.q) from their first byte read
 * until their final response has been written, then they are emitted. The
 * first request in flight uses a slot inline in the connection, so a plain
 * keep-alive connection never allocates; pipelined requests behind it get a
 * slot from calloc.
 *
 * Cost: bodies and chunk data are skipped by arithmetic; header values, chunk
 * extensions, trailers and reason phrases are scanned with memchr; only the
 * request line, status line, header names and the values of the few headers
 * that decide framing are walked byte by byte. All state is fixed-size; the
 * only buffers are the caps of struct tg_http_req.
 */
#include "http1.h"

#include <stdlib.h>
#include <string.h>

#include "event.h"

/*
 * Longest header field line (request or response) before giving up. Larger
 * than TG_HTTP_LINE_MAX, which still bounds request, status, chunk-size and
 * trailer lines: a single big header (a long Cookie, a CSP policy) is legal
 * HTTP that servers accept, and its value is skipped at memchr speed.
 */
#define HDR_LINE_MAX (16u * TG_HTTP_LINE_MAX)

#define NAME_BUF 20                  /* longest header name recognised ("transfer-encoding") */
#define TOK_BUF 16                   /* longest list token recognised ("100-continue") */
#define NUM_LIMIT (1ull << 60)       /* Content-Length / chunk size above this: malformed */

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
enum { H_OTHER, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_CONNECTION, H_EXPECT, H_UPGRADE };

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
	uint32_t line_len;  /* bytes of the current line consumed so far */
	uint16_t hflags;    /* MF_* */
	uint16_t status;    /* write side: status code being parsed / parsed */
	uint64_t cl;        /* Content-Length when MF_CL */
	uint64_t num;       /* Content-Length value being parsed */
	uint32_t tlen;      /* request target bytes seen */
	uint8_t mlen;       /* method bytes seen */
	uint8_t idx;        /* position in a literal / digits seen */
	uint8_t hid;        /* H_* of the current header line */
	uint8_t num_state;  /* 0 nothing, 1 digits, 2 trailing blanks, 3 bad */
	uint8_t name_len;   /* header name length, NAME_BUF + 1 if longer */
	uint8_t tok_len;    /* list token length, TOK_BUF + 1 when too long */
	uint8_t storing;    /* request side: the current header line is being kept */
	uint8_t secret;     /* ... and its value is redacted */
	uint16_t line_start;  /* headers_len where the kept line starts */
	uint16_t value_start; /* headers_len where its value starts */
	char name[NAME_BUF];  /* lower-cased header name prefix */
	char tok[TOK_BUF];    /* lower-cased list token */
};

/* A request in flight. `r` comes first: it is what the emit callback gets. */
struct slot {
	struct tg_http_req r;
	uint64_t cl;          /* request Content-Length */
	uint16_t hflags;      /* MF_* of the request headers */
	uint8_t complete;     /* its last byte has been read */
	uint8_t resp_started; /* a response byte has been written for it */
};

struct tg_http_conn {
	struct slot *q[TG_HTTP_MAX_PENDING]; /* FIFO of requests in flight */
	uint8_t qhead, count;
	uint8_t inline_used; /* `first` is in the FIFO */
	uint8_t dead;        /* untracked or closed: feed calls are refused */
	uint8_t upgraded;    /* after a 101: every byte is ignored */
	uint8_t eof;         /* the client half-closed */
	uint8_t app_closed;  /* the app closed the socket (tg_http_on_app_close) */
	uint8_t dropped;     /* bytes were ignored while upgrade_wait */
	struct slot *rreq;   /* request being read; NULL between requests and once answered */
	struct slot *upgrade_wait; /* complete request asking for an upgrade, not yet answered */
	uint64_t eof_ns;
	struct msg rd, wr;
	struct slot first;
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint8_t lower(uint8_t ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (uint8_t)(ch | 0x20) : ch;
}

/* 1 if ch may appear in a token (RFC 9110 tchar: ALPHA, DIGIT and
 * !#$%&'*+-.^_`|~), from a bitmap of the ASCII range. */
static inline int is_tchar(uint8_t ch)
{
	static const uint64_t tchar[2] = { 0x03ff6cfa00000000ull, 0x57ffffffc7fffffeull };
	return ch < 128 && (tchar[ch >> 6] >> (ch & 63) & 1);
}

/* Value of a hex digit, or -1. */
static inline int hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	uint8_t l = (uint8_t)(ch | 0x20);
	if (l >= 'a' && l <= 'f')
		return l - 'a' + 10;
	return -1;
}

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

#undef AT

/* ---- request FIFO ------------------------------------------------------ */

/* A zeroed slot: the inline one if free, else a new allocation. NULL on ENOMEM. */
static struct slot *slot_get(struct tg_http_conn *c)
{
	struct slot *s;
	if (!c->inline_used) {
		c->inline_used = 1;
		s = &c->first;
		/* The string buffers are only read up to their lengths: leave them. */
		memset(&s->r, 0, offsetof(struct tg_http_req, method));
		s->cl = 0;
		s->hflags = 0;
		s->complete = 0;
		s->resp_started = 0;
		return s;
	}
	return calloc(1, sizeof *s);
}

static void slot_put(struct tg_http_conn *c, struct slot *s)
{
	if (s == &c->first)
		c->inline_used = 0;
	else
		free(s);
}

static struct slot *q_head(const struct tg_http_conn *c)
{
	return c->count ? c->q[c->qhead] : NULL;
}

/* Appends s; the caller has checked count < TG_HTTP_MAX_PENDING. */
static void q_push(struct tg_http_conn *c, struct slot *s)
{
	c->q[(c->qhead + c->count) % TG_HTTP_MAX_PENDING] = s;
	c->count++;
}

/* Removes and returns the head (count > 0), dropping references to it. If
 * it is still being read, a header line in progress is cut off its text,
 * which so holds complete lines only. */
static struct slot *q_pop(struct tg_http_conn *c)
{
	struct slot *s = c->q[c->qhead];
	struct msg *m = &c->rd;
	c->qhead = (uint8_t)((c->qhead + 1) % TG_HTTP_MAX_PENDING);
	c->count--;
	if (c->rreq == s) {
		if (m->st == M_HEADER && m->sub >= HS_NAME && m->storing)
			s->r.headers_len = m->line_start;
		m->storing = 0; /* the rest of the request is parsed, not kept */
		c->rreq = NULL;
	}
	if (c->upgrade_wait == s)
		c->upgrade_wait = NULL;
	return s;
}

/* Finishes s with `error` at now, hands it to emit and releases it. */
static void emit_slot(struct tg_http_conn *c, struct slot *s, int error, uint64_t now,
		      tg_http_emit_fn emit, void *ctx)
{
	s->r.error = (uint16_t)error;
	s->r.end_ns = now;
	if (emit)
		emit(ctx, &s->r);
	slot_put(c, s);
}

/* Emits every request in flight with `error` and stops following the
 * connection. Returns TG_HTTP_UNTRACK. */
static int give_up(struct tg_http_conn *c, int error, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	while (c->count)
		emit_slot(c, q_pop(c), error, now, emit, ctx);
	c->dead = 1;
	return TG_HTTP_UNTRACK;
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
	m->line_len = 0;
}

/* Largest n such that consuming n more bytes of the current line can at most
 * reach one byte past `max`: limits a step so a too-long line is detected at
 * the same byte however the input is split. */
static inline size_t line_room(const struct msg *m, size_t n, uint32_t max)
{
	size_t room = (size_t)max + 1 - m->line_len;
	return n < room ? n : room;
}

/*
 * Request line. Consumes bytes of `METHOD SP target SP HTTP/1.x (CR)LF`,
 * storing method and target into r (NULL: request already answered, parse
 * only). At the end of the line moves m to M_HEADER. On an invalid byte sets
 * EV_ERR and returns the count up to and including that byte.
 */
static size_t req_line(struct msg *m, struct tg_http_req *r, const uint8_t *p, size_t n, int *ev)
{
	size_t i = 0;
	n = line_room(m, n, TG_HTTP_LINE_MAX);
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case RL_METHOD:
			if (ch == ' ') {
				if (!m->mlen)
					goto bad;
				m->sub = RL_TARGET;
			} else if (((ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_') &&
				   m->mlen < TG_HTTP_METHOD_MAX - 1) {
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
			m->tlen += (uint32_t)(j - i);
			i = j;
			if (i == n)
				break;
			if (p[i] != ' ' || !m->tlen)
				goto bad;
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
	m->line_len += (uint32_t)i;
	if (m->line_len > TG_HTTP_LINE_MAX)
		*ev = EV_ERR;
	return i;
done:
	if (r && m->mlen == 4 && memcmp(r->method, "HEAD", 4) == 0)
		r->flags |= TG_REQF_HEAD;
	m->st = M_HEADER;
	m->sub = HS_START;
	m->line_len = 0;
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
	n = line_room(m, n, TG_HTTP_LINE_MAX);
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
	m->line_len += (uint32_t)i;
	if (m->line_len > TG_HTTP_LINE_MAX)
		*ev = EV_ERR;
	return i;
done:
	m->st = M_HEADER;
	m->sub = HS_START;
	m->line_len = 0;
	return i + 1;
bad:
	*ev = EV_ERR;
	return i + 1;
}

/* Drops the header line being kept (it does not fit the cap). */
static void drop_line(struct msg *m, struct tg_http_req *r)
{
	r->headers_len = m->line_start;
	r->flags |= TG_REQF_HEADERS_TRUNCATED;
	m->storing = 0;
}

/* Appends s[0..len) to the kept header line, or drops the line if the header
 * text would exceed its cap. No-op when the line is not being kept. */
static void store(struct msg *m, struct tg_http_req *r, const void *s, size_t len)
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
static void name_begin(struct msg *m, struct tg_http_req *r)
{
	m->name_len = 0;
	m->hid = H_OTHER;
	m->secret = 0;
	m->storing = r != NULL;
	if (r)
		m->line_start = r->headers_len;
}

/* Adds name bytes s[0..len) (all tchars). */
static void name_add(struct msg *m, struct tg_http_req *r, const uint8_t *s, size_t len)
{
	/* name_len counts up to NAME_BUF + 1, which means "too long to be known". */
	for (size_t k = 0; k < len && m->name_len <= NAME_BUF; k++) {
		if (m->name_len < NAME_BUF)
			m->name[m->name_len] = (char)lower(s[k]);
		m->name_len++;
	}
	if (r)
		store(m, r, s, len);
}

/* The name ended at ':'. Identifies the header; for a kept line writes the
 * separator and, for a secret header, the redaction marker. */
static void name_end(struct msg *m, struct tg_http_req *r)
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
	}
	m->num = 0;
	m->num_state = 0;
	m->tok_len = 0;
	if (m->storing && r) {
		m->secret = (uint8_t)tg_http_secret_header(r->headers + m->line_start,
							   (size_t)(r->headers_len - m->line_start));
		store(m, r, ": ", 2);
		if (m->secret)
			store(m, r, "[redacted]", 10);
		m->value_start = r->headers_len;
	}
}

/* Adds value bytes s[0..len) (no LF among them). */
static void value_add(struct msg *m, struct tg_http_req *r, const uint8_t *s, size_t len)
{
	if (m->hid != H_OTHER && m->hid != H_UPGRADE)
		value_parse(m, s, len);
	if (!m->secret)
		store(m, r, s, len);
}

/* The header line ended (its LF consumed). Records its meaning and finishes
 * the kept text: trailing blanks trimmed, "\n" appended. */
static void line_end(struct msg *m, struct tg_http_req *r)
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
	}
	if (!m->storing || !r)
		return;
	while (r->headers_len > m->value_start) {
		char ch = r->headers[r->headers_len - 1];
		if (ch != ' ' && ch != '\t' && ch != '\r')
			break;
		r->headers_len--;
	}
	store(m, r, "\n", 1);
}

/*
 * Header section: consumes at most one header line (or the empty line that
 * ends the section, then EV_HEADERS). r non-NULL: keep the header text there.
 * On an invalid byte or a too-long line sets EV_ERR.
 */
static size_t header_line(struct msg *m, struct tg_http_req *r, const uint8_t *p, size_t n, int *ev)
{
	size_t i = 0;
	n = line_room(m, n, HDR_LINE_MAX);
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
			if (!is_tchar(ch))
				goto bad; /* includes obs-fold continuation lines */
			name_begin(m, r);
			m->sub = HS_NAME;
			break;
		case HS_END_LF:
			if (ch != '\n')
				goto bad;
			goto end_of_headers;
		case HS_NAME: {
			size_t j = i;
			while (j < n && is_tchar(p[j]))
				j++;
			name_add(m, r, p + i, j - i);
			i = j;
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
			m->line_len = 0;
			return i + 1;
		}
		}
	}
	m->line_len += (uint32_t)i;
	if (m->line_len > HDR_LINE_MAX)
		*ev = EV_ERR;
	return i;
end_of_headers:
	m->line_len = 0;
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
	n = line_room(m, n, TG_HTTP_LINE_MAX);
	while (i < n) {
		uint8_t ch = p[i];
		switch (m->sub) {
		case CS_SIZE: {
			int d = hexval(ch);
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
			m->line_len = 0;
			return (size_t)(nl - p) + 1;
		}
		case CS_TRAILER_LF:
			if (ch != '\n')
				goto bad;
			goto done;
		}
	}
	m->line_len += (uint32_t)i;
	if (m->line_len > TG_HTTP_LINE_MAX)
		*ev = EV_ERR;
	return i;
size_done:
	m->line_len = 0;
	m->sub = m->remaining ? CS_DATA : CS_TRAILER;
	return i + 1;
next_chunk:
	chunk_begin(m);
	return i + 1;
done:
	m->line_len = 0;
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

/* A request begins at now: allocates and queues its slot and sets the read
 * side to its request line. 0 if it cannot be followed (FIFO full, ENOMEM). */
static int request_begin(struct tg_http_conn *c, uint64_t now)
{
	if (c->count >= TG_HTTP_MAX_PENDING)
		return 0;
	struct slot *s = slot_get(c);
	if (!s)
		return 0;
	s->r.start_ns = now;
	q_push(c, s);
	c->rreq = s;
	msg_begin(&c->rd, M_START, RL_METHOD);
	return 1;
}

/* The request headers ended: records them and chooses how the body is
 * framed. Returns EV_DONE (no body), EV_NONE (body follows) or EV_ERR. */
static int request_headers_done(struct tg_http_conn *c)
{
	struct msg *m = &c->rd;
	struct slot *s = c->rreq;
	if (s) {
		s->hflags = m->hflags;
		s->cl = m->cl;
	}
	if (m->hflags & MF_TE) {
		if (!(m->hflags & MF_CHUNKED))
			return EV_ERR; /* length unknowable */
		if (s)
			s->r.flags |= TG_REQF_CHUNKED_REQ;
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

/* The request's last byte was read at now. */
static void request_done(struct tg_http_conn *c, uint64_t now)
{
	struct slot *s = c->rreq;
	if (s) {
		s->complete = 1;
		s->r.req_end_ns = now;
		if ((s->hflags & (MF_UPGRADE | MF_CONN_UPGRADE)) == (MF_UPGRADE | MF_CONN_UPGRADE))
			c->upgrade_wait = s;
	}
	c->rreq = NULL;
	c->rd.st = M_IDLE;
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
		struct slot *s = c->rreq;
		struct tg_http_req *r = s ? &s->r : NULL;
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
			/* A FIFO that is full (or a slot that cannot be
			 * allocated) is pipelining deeper than we follow. */
			if (used < avail && !request_begin(c, now_ns))
				return give_up(c, TG_REQ_TOO_MANY_PIPELINED, now_ns, emit, ctx);
			continue;
		case M_START:
			used = req_line(m, r, p, avail, &ev);
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

/* The response headers for h ended: records the status and chooses how the
 * body is framed. Returns EV_DONE (no body), EV_NONE (body follows or the
 * response was interim), EV_UPGRADE (101) or EV_ERR. */
static int response_headers_done(struct tg_http_conn *c, struct slot *h)
{
	struct msg *m = &c->wr;
	uint16_t st = m->status;
	if (st < 200) {
		if (st == 101)
			return EV_UPGRADE;
		if (st == 100)
			h->r.flags |= TG_REQF_CONTINUE;
		m->st = M_IDLE; /* interim: the final response follows */
		return EV_NONE;
	}
	h->r.status = st;
	if ((h->r.flags & TG_REQF_HEAD) || st == 204 || st == 304)
		return EV_DONE;
	if (m->hflags & MF_TE) {
		if (m->hflags & MF_CHUNKED) {
			h->r.flags |= TG_REQF_CHUNKED_RESP;
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

/* The final response of the FIFO head was written completely at now: emits
 * the head. Returns 0, or 1 if the connection can no longer be followed
 * (bytes were ignored after an upgrade request that was refused). */
static int response_done(struct tg_http_conn *c, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	struct slot *h = q_pop(c);
	int lost = 0;
	if (c->dropped && !c->upgrade_wait) {
		lost = 1; /* the upgrade request was h */
		c->dropped = 0;
	}
	c->wr.st = M_IDLE;
	emit_slot(c, h, TG_REQ_OK, now, emit, ctx);
	return lost;
}

/* A 101 for the FIFO head was written at now: emits it and stops parsing;
 * later requests in the FIFO were protocol bytes, not requests. */
static void upgrade(struct tg_http_conn *c, uint64_t now, tg_http_emit_fn emit, void *ctx)
{
	struct slot *h = q_pop(c);
	h->r.status = 101;
	h->r.flags |= TG_REQF_UPGRADE;
	emit_slot(c, h, TG_REQ_OK, now, emit, ctx);
	while (c->count)
		slot_put(c, q_pop(c));
	c->upgraded = 1;
}

/* n bytes of unknown content (sendfile): valid only as body bytes. */
static int opaque_write(struct tg_http_conn *c, size_t n, uint64_t now, tg_http_emit_fn emit,
			void *ctx)
{
	struct msg *m = &c->wr;
	while (n) {
		struct slot *h = q_head(c);
		size_t k;
		if (!h)
			return give_up(c, TG_REQ_MALFORMED, now, emit, ctx);
		if (m->st == M_UNTIL_CLOSE) {
			h->r.response_bytes += n;
			return TG_HTTP_OK;
		}
		if (m->st != M_BODY_LEN && !(m->st == M_CHUNK && m->sub == CS_DATA))
			return give_up(c, TG_REQ_MALFORMED, now, emit, ctx);
		k = n < m->remaining ? n : (size_t)m->remaining;
		m->remaining -= k;
		h->r.response_bytes += k;
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
		struct slot *h = q_head(c);
		int ev = EV_NONE;
		if (!h)
			return give_up(c, TG_REQ_MALFORMED, now_ns, emit, ctx); /* answer to nothing */
		switch (m->st) {
		case M_IDLE:
			if (!h->resp_started) {
				h->resp_started = 1;
				h->r.resp_start_ns = now_ns;
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
		h->r.response_bytes += used;
		if (ev == EV_HEADERS)
			ev = response_headers_done(c, h);
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
	return calloc(1, sizeof(struct tg_http_conn));
}

void tg_http_free(struct tg_http_conn *c)
{
	if (!c)
		return;
	while (c->count)
		slot_put(c, q_pop(c));
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
	while (c->count) {
		struct slot *s = q_pop(c);
		int error;
		if (s->resp_started)
			error = c->wr.st == M_UNTIL_CLOSE ? TG_REQ_OK : TG_REQ_CLOSED_MID_RESPONSE;
		else if (!s->complete)
			error = TG_REQ_CLIENT_CLOSED_MID_REQUEST;
		else if (c->app_closed && !c->eof)
			error = TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE;
		else
			error = TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE;
		emit_slot(c, s, error, now_ns, emit, ctx);
	}
}
