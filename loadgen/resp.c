/*
 * resp.c - incremental HTTP/1.x response parser (see resp.h).
 */
#include "resp.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	S_STATUS,      /* reading the status line */
	S_HEADER,      /* reading header lines */
	S_BODY_LEN,    /* remaining bytes of a Content-Length body */
	S_CHUNK_SIZE,  /* reading a chunk-size line */
	S_CHUNK_DATA,  /* remaining bytes of a chunk */
	S_CHUNK_CRLF,  /* reading the empty line after a chunk */
	S_TRAILER,     /* reading trailer lines */
	S_BODY_EOF,    /* body until the connection closes */
	S_DONE,
};

void lg_resp_init(struct lg_resp *r, int head, size_t body_cap)
{
	r->done = 0;
	r->status = 0;
	r->minor = 1;
	r->keep_alive = 1;
	r->content_length = -1;
	r->chunked = 0;
	r->body_bytes = 0;
	r->content_type[0] = '\0';
	r->location[0] = '\0';
	r->body = NULL;
	r->body_len = 0;
	r->body_cap = body_cap;
	r->body_truncated = 0;
	r->head = head;
	r->state = S_STATUS;
	r->header_bytes = 0;
	r->remaining = 0;
	r->line_len = 0;
}

void lg_resp_free(struct lg_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

static int keep_body(struct lg_resp *r, const char *p, size_t n)
{
	r->body_bytes += n;
	if (!r->body_cap)
		return 0;
	if (!r->body) {
		r->body = malloc(r->body_cap + 1);
		if (!r->body)
			return -1;
	}
	size_t room = r->body_cap - r->body_len;
	if (n > room) {
		n = room;
		r->body_truncated = 1;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static void trim(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

static void copy_capped(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* 1 if the comma-separated list s[0..n) holds token tok (any case). */
static int has_token(const char *s, size_t n, const char *tok)
{
	size_t tl = strlen(tok);
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		const char *t = s + i;
		size_t len = j - i;
		trim(&t, &len);
		if (len == tl && !strncasecmp(t, tok, tl))
			return 1;
		i = j + 1;
	}
	return 0;
}

static int parse_status(struct lg_resp *r, const char *l, size_t n)
{
	/* HTTP/1.x SP 3DIGIT [SP reason] */
	if (n < 12 || memcmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
		return -1;
	if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) || !isdigit((unsigned char)l[11]))
		return -1;
	if (n > 12 && l[12] != ' ')
		return -1;
	r->minor = l[7] - '0';
	r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (r->status < 100)
		return -1;
	r->keep_alive = r->minor == 1;
	return 0;
}

static int parse_header(struct lg_resp *r, const char *l, size_t n)
{
	const char *colon = memchr(l, ':', n);
	if (!colon || colon == l)
		return -1;
	size_t nl = (size_t)(colon - l);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	trim(&v, &vl);
#define IS(name) (nl == sizeof(name) - 1 && !strncasecmp(l, name, nl))
	if (IS("content-length")) {
		if (!vl)
			return -1;
		uint64_t x = 0;
		for (size_t i = 0; i < vl; i++) {
			if (!isdigit((unsigned char)v[i]) || x > (UINT64_MAX - 9) / 10)
				return -1;
			x = x * 10 + (uint64_t)(v[i] - '0');
		}
		if (x > INT64_MAX || (r->content_length >= 0 && (uint64_t)r->content_length != x))
			return -1;
		r->content_length = (int64_t)x;
	} else if (IS("transfer-encoding")) {
		if (has_token(v, vl, "chunked"))
			r->chunked = 1;
	} else if (IS("connection")) {
		if (has_token(v, vl, "close"))
			r->keep_alive = 0;
		else if (has_token(v, vl, "keep-alive"))
			r->keep_alive = 1;
	} else if (IS("content-type")) {
		if (!r->content_type[0])
			copy_capped(r->content_type, sizeof r->content_type, v, vl);
	} else if (IS("location")) {
		if (!r->location[0])
			copy_capped(r->location, sizeof r->location, v, vl);
	}
#undef IS
	return 0;
}

/* The header block ended: decide how the body is delimited. */
static void headers_done(struct lg_resp *r)
{
	if (r->status < 200) {   /* interim response: the real one follows */
		int head = r->head;
		size_t cap = r->body_cap;
		lg_resp_init(r, head, cap);
		return;
	}
	if (r->head || r->status == 204 || r->status == 304) {
		r->state = S_DONE;
	} else if (r->chunked) {
		r->state = S_CHUNK_SIZE;
	} else if (r->content_length >= 0) {
		r->remaining = (uint64_t)r->content_length;
		r->state = r->remaining ? S_BODY_LEN : S_DONE;
	} else {
		r->keep_alive = 0;
		r->state = S_BODY_EOF;
	}
}

static int chunk_size(struct lg_resp *r, const char *l, size_t n)
{
	uint64_t x = 0;
	size_t i = 0;
	for (; i < n && isxdigit((unsigned char)l[i]); i++) {
		if (x >> 59)
			return -1;
		int c = tolower((unsigned char)l[i]);
		x = x * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	if (!i || (i < n && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
		return -1;
	r->remaining = x;
	r->state = x ? S_CHUNK_DATA : S_TRAILER;
	return 0;
}

/* One complete line (CRLF or LF stripped) in the current state. */
static int on_line(struct lg_resp *r, const char *l, size_t n)
{
	switch (r->state) {
	case S_STATUS:
		if (parse_status(r, l, n) < 0)
			return -1;
		r->state = S_HEADER;
		return 0;
	case S_HEADER:
		if (!n) {
			headers_done(r);
			return 0;
		}
		return parse_header(r, l, n);
	case S_CHUNK_SIZE:
		return chunk_size(r, l, n);
	case S_CHUNK_CRLF:
		if (n)
			return -1;
		r->state = S_CHUNK_SIZE;
		return 0;
	case S_TRAILER:
		if (!n)
			r->state = S_DONE;
		return 0;
	}
	return -1;
}

ssize_t lg_resp_feed(struct lg_resp *r, const char *data, size_t n)
{
	size_t i = 0;
	while (i < n && r->state != S_DONE) {
		switch (r->state) {
		case S_BODY_LEN:
		case S_CHUNK_DATA: {
			size_t take = n - i;
			if (take > r->remaining)
				take = (size_t)r->remaining;
			if (keep_body(r, data + i, take) < 0)
				return -1;
			i += take;
			r->remaining -= take;
			if (!r->remaining)
				r->state = r->state == S_BODY_LEN ? S_DONE : S_CHUNK_CRLF;
			break;
		}
		case S_BODY_EOF:
			if (keep_body(r, data + i, n - i) < 0)
				return -1;
			i = n;
			break;
		default: {
			/* line states: gather up to LF */
			const char *nl = memchr(data + i, '\n', n - i);
			size_t take = nl ? (size_t)(nl - (data + i)) : n - i;
			if (r->line_len + take > LG_RESP_LINE_MAX)
				return -1;
			if (r->state != S_CHUNK_SIZE && r->state != S_CHUNK_CRLF) {
				r->header_bytes += take + (nl ? 1 : 0);
				if (r->header_bytes > LG_RESP_HEADERS_MAX)
					return -1;
			}
			memcpy(r->line + r->line_len, data + i, take);
			r->line_len += take;
			i += take;
			if (!nl)
				break;
			i++;   /* the LF */
			size_t len = r->line_len;
			if (len && r->line[len - 1] == '\r')
				len--;
			r->line_len = 0;
			if (on_line(r, r->line, len) < 0)
				return -1;
			break;
		}
		}
	}
	if (r->state == S_DONE)
		r->done = 1;
	return (ssize_t)i;
}

int lg_resp_eof(struct lg_resp *r)
{
	if (r->state == S_BODY_EOF) {
		r->state = S_DONE;
		r->done = 1;
	}
	return r->done;
}
