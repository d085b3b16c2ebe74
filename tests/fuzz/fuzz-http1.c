/*
 * fuzz-http1.c - fuzz target for the HTTP/1.x parser (preload/http1.c).
 *
 * The input is a script of connection events. Each event starts with an
 * opcode byte: bits 0-2 choose the event, bits 3-7 the payload length.
 *   0-2  the app reads the payload           5  sendfile write of n opaque bytes
 *   3-4  the app writes the payload          6  client half-close (eof)
 *                                            7  close
 * Length code 0-27 means 1-28 bytes; 28-31 means the next two bytes hold
 * the length (little endian, plus one). After UNTRACK or close the
 * connection is freed and the rest of the script runs on a fresh one; at the
 * end the last connection is closed.
 *
 * Every script is run twice: with each payload fed whole, and with each
 * payload cut in two at a point derived from its bytes. The parser must emit
 * exactly the same records, and count the same requests lost, both times
 * (times are per event, so they do not depend on the cut), and every record
 * must satisfy the invariants of check_req(): among them, no secret header
 * value and no secret query value (in the target or a URL-valued header)
 * left unredacted. Violations abort, which libFuzzer reports as a crash.
 *
 * Built with -DTG_FUZZ_REPLAY (and replay.c) it is a standalone program
 * instead: it runs the files and directories named on the command line, then a deterministic
 * generator of HTTP-like and broken conversations for N iterations (the
 * first numeric argument, default 200000): short ones, and now and then a
 * deep pipeline of thousands of requests, beyond the details the parser
 * keeps per connection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/event.h"
#include "http1.h"

#define FUZZ_NAME "fuzz-http1"
#include "fuzz.h"

#define MAX_DIGESTS 4096

struct fuzz_run {
	uint64_t digest[MAX_DIGESTS];
	size_t n;              /* records emitted in this run */
	uint64_t read_bytes;   /* read by the current connection */
	uint64_t write_bytes;  /* written on the current connection */
	uint64_t req_bytes;    /* sum of request_bytes emitted on it */
	uint64_t resp_bytes;   /* sum of response_bytes emitted on it */
	uint64_t now;          /* time of the current event */
	uint64_t lost;         /* requests counted lost (tg_http_take_lost) */
};

/* Checks that every secret parameter of the query in url[0..len) has
 * "[redacted]" as its value. cut: the text may end inside one, whose value
 * is then a prefix of the marker. */
static void check_url(const char *url, size_t len, int cut)
{
	const char *q = memchr(url, '?', len), *h = memchr(url, '#', q ? (size_t)(q - url) : len);
	if (h)
		q = h;
	if (!q)
		return;
	size_t i = (size_t)(q - url) + 1;
	while (i < len) {
		size_t n = i, e;
		while (n < len && url[n] != '=' && url[n] != '&' && url[n] != ';' && url[n] != '#')
			n++;
		e = n;
		if (n < len && url[n] == '=') {
			e = n + 1;
			while (e < len && url[e] != '&' && url[e] != ';' && url[e] != '#')
				e++;
			if (tg_http_secret_param(url + i, n - i)) {
				size_t vl = e - n - 1;
				const char *v = url + n + 1;
				if (cut && e == len)
					REQUIRE(vl <= 10 && memcmp(v, "[redacted]", vl) == 0);
				else
					REQUIRE(vl == 10 && memcmp(v, "[redacted]", 10) == 0);
			}
		}
		i = e + 1;
	}
}

/* 1 if the header name[0..len) has a URL value (Referer and the like). */
static int url_header(const char *name, size_t len)
{
	static const char *const names[] = { "referer", "x-original-url", "x-original-uri", "x-forwarded-uri",
					     "x-rewrite-url" };
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
		if (strlen(names[k]) == len && strncasecmp(name, names[k], len) == 0)
			return 1;
	return 0;
}

/* Checks the header text: "Name: value\n" lines, secret values redacted. */
static void check_headers(const char *h, size_t len, int truncated)
{
	size_t i = 0;
	REQUIRE(len == 0 || h[len - 1] == '\n');
	while (i < len) {
		const char *line = h + i;
		const char *nl = memchr(line, '\n', len - i);
		REQUIRE(nl);
		size_t ll = (size_t)(nl - line);
		const char *colon = memchr(line, ':', ll);
		REQUIRE(colon && colon > line);
		REQUIRE((size_t)(colon - line) + 1 < ll + 1);
		size_t nlen = (size_t)(colon - line);
		REQUIRE(colon[1] == ' ' || colon + 1 == nl);
		if (tg_http_secret_header(line, nlen))
			REQUIRE(ll == nlen + 12 && memcmp(colon, ": [redacted]", 12) == 0);
		else if (url_header(line, nlen) && colon + 1 < nl)
			check_url(colon + 2, (size_t)(nl - colon - 2), truncated);
		i += ll + 1;
	}
}

/* Invariants of one emitted record. */
static void check_req(struct fuzz_run *fr, const struct tg_http_req *r)
{
	REQUIRE(r->method_len < TG_HTTP_METHOD_MAX);
	REQUIRE(r->target_len <= TG_HTTP_TARGET_MAX);
	REQUIRE(r->headers_len <= TG_HTTP_HEADERS_MAX);
	REQUIRE(r->error <= TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE);
	REQUIRE(r->http_minor <= 1);
	REQUIRE(r->flags < 0x80);
	REQUIRE(r->method && r->target && r->headers);
	REQUIRE(r->status == 0 || (r->status >= 100 && r->status <= 999));
	REQUIRE(!(r->flags & TG_REQF_UPGRADE) == (r->status != 101));
	REQUIRE(r->error != TG_REQ_OK || r->status >= 200 || r->status == 101);
	REQUIRE(r->request_bytes >= 1);
	REQUIRE(r->start_ns >= 1 && r->start_ns <= fr->now);
	REQUIRE(r->end_ns == fr->now);
	REQUIRE(r->req_end_ns == 0 || (r->req_end_ns >= r->start_ns && r->req_end_ns <= fr->now));
	REQUIRE(r->resp_start_ns == 0 || (r->resp_start_ns >= r->start_ns && r->resp_start_ns <= fr->now));
	REQUIRE((r->resp_start_ns == 0) == (r->response_bytes == 0));
	for (size_t i = 0; i < r->method_len; i++)
		REQUIRE((r->method[i] >= 'A' && r->method[i] <= 'Z') || r->method[i] == '-' ||
			r->method[i] == '_');
	for (size_t i = 0; i < r->target_len; i++)
		REQUIRE((uint8_t)r->target[i] > 0x20 && r->target[i] != 0x7f);
	check_url(r->target, r->target_len, (r->flags & TG_REQF_TARGET_TRUNCATED) != 0);
	check_headers(r->headers, r->headers_len, (r->flags & TG_REQF_HEADERS_TRUNCATED) != 0);
	fr->req_bytes += r->request_bytes;
	fr->resp_bytes += r->response_bytes;
	REQUIRE(fr->req_bytes <= fr->read_bytes);
	REQUIRE(fr->resp_bytes <= fr->write_bytes);
}

static void on_emit(void *ctx, const struct tg_http_req *r)
{
	struct fuzz_run *fr = ctx;
	check_req(fr, r);
	uint64_t h = 0xcbf29ce484222325ull;
	uint64_t nums[] = { r->start_ns, r->req_end_ns, r->resp_start_ns, r->end_ns, r->request_bytes,
			    r->response_bytes, r->status, r->error, r->http_minor, r->flags };
	h = fnv(h, nums, sizeof nums);
	h = fnv(h, r->method, r->method_len);
	h = fnv(h, r->target, r->target_len);
	h = fnv(h, r->headers, r->headers_len);
	h = fnv(h, r->trace_id, sizeof r->trace_id);
	h = fnv(h, r->parent_span_id, sizeof r->parent_span_id);
	if (fr->n < MAX_DIGESTS)
		fr->digest[fr->n] = h;
	fr->n++;
}

/* Feeds one read or write payload, whole (cut == 0) or in two pieces. */
static int feed(struct tg_http_conn *c, int write, const uint8_t *p, size_t n, size_t cut,
		struct fuzz_run *fr)
{
	int rc = TG_HTTP_OK;
	size_t pieces[2] = { cut ? cut : n, cut ? n - cut : 0 };
	for (int k = 0; k < 2 && pieces[k] && rc == TG_HTTP_OK; k++) {
		const uint8_t *q = p ? p + (k ? pieces[0] : 0) : NULL;
		if (write)
			rc = tg_http_on_write(c, q, pieces[k], fr->now, on_emit, fr);
		else
			rc = tg_http_on_read(c, q, pieces[k], fr->now, on_emit, fr);
	}
	REQUIRE(rc == TG_HTTP_OK || rc == TG_HTTP_UNTRACK);
	fr->lost += tg_http_take_lost(c);
	return rc;
}

static struct tg_http_conn *conn_new(struct fuzz_run *fr)
{
	struct tg_http_conn *c = tg_http_new();
	REQUIRE(c);
	fr->read_bytes = fr->write_bytes = fr->req_bytes = fr->resp_bytes = 0;
	return c;
}

/* Runs the script; split: cut every payload in two. */
static void run_script(const uint8_t *data, size_t size, int split, struct fuzz_run *fr)
{
	struct tg_http_conn *c = conn_new(fr);
	size_t i = 0;
	fr->n = 0;
	fr->now = 0;
	fr->lost = 0;
	while (i < size) {
		uint8_t op = data[i++];
		unsigned kind = op & 7, code = op >> 3;
		size_t len = code + 1u;
		if (code >= 28) {
			len = 1;
			if (i + 2 <= size)
				len = (size_t)data[i] + ((size_t)data[i + 1] << 8) + 1;
			i += 2;
			if (i > size)
				break;
		}
		fr->now++;
		if (kind == 6) {
			tg_http_on_eof(c, fr->now);
			continue;
		}
		if (kind == 7) {
			tg_http_on_close(c, fr->now, on_emit, fr);
			fr->lost += tg_http_take_lost(c);
			tg_http_free(c);
			c = conn_new(fr);
			continue;
		}
		int rc;
		if (kind == 5) {
			size_t cut = split ? (len * 7 + 3) % len : 0;
			fr->write_bytes += len;
			rc = feed(c, 1, NULL, len, cut, fr);
		} else {
			if (len > size - i)
				len = size - i;
			if (!len)
				break;
			size_t cut = split ? (data[i] * 31u + len) % len : 0;
			if (kind <= 2)
				fr->read_bytes += len;
			else
				fr->write_bytes += len;
			rc = feed(c, kind > 2, data + i, len, cut, fr);
			i += len;
		}
		if (rc == TG_HTTP_UNTRACK) {
			tg_http_free(c);
			c = conn_new(fr);
		}
	}
	fr->now++;
	tg_http_on_close(c, fr->now, on_emit, fr);
	fr->lost += tg_http_take_lost(c);
	tg_http_free(c);
}

static uint64_t total_lost; /* for the replay's summary */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_run whole, cut;
	run_script(data, size, 0, &whole);
	run_script(data, size, 1, &cut);
	REQUIRE(whole.n == cut.n);
	REQUIRE(whole.lost == cut.lost);
	total_lost += whole.lost;
	size_t n = whole.n < MAX_DIGESTS ? whole.n : MAX_DIGESTS;
	for (size_t k = 0; k < n; k++)
		REQUIRE(whole.digest[k] == cut.digest[k]);
	return 0;
}

#ifdef TG_FUZZ_REPLAY

/* ---- deterministic generator of conversations -------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	return fuzz_xorshift(&rng_state);
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static const char *const req_frag[] = {
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /items?id=7 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\nCookie: sid=s3cr3t\r\n\r\n",
	"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
	"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
	"PUT /c HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n1\r\nz\r\n0\r\n\r\n",
	"HEAD /h HTTP/1.0\r\n\r\n",
	"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
	"PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nxyz",
	"GET /lf HTTP/1.1\nAuthorization: Bearer t0k3n\nX-Api-Key: k\n\n",
	"DELETE /d HTTP/1.1\r\nConnection: close\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	"\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"\x16\x03\x01\x00\xa5\x01\x00",
	"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
	"GET /bad HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	"GET /fold HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
	"GET /s?user=u&password=p%41ss&%54oken=t;sig=s#code=c HTTP/1.1\r\nReferer: /r?key=k&x=1\r\n\r\n",
	"GET /cb#access_token=at&state=1 HTTP/1.1\r\nX-Original-URL: /o?api%5Fkey=k\r\n\r\n",
	"HEAD /s?session=s HTTP/1.1\r\nreferer: http://h/?refresh_token=r&secret=\r\n\r\n",
	"GET /t HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
	"GET /t2 HTTP/1.1\r\nTraceparent:  cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x \r\n\r\n",
};

static const char *const resp_frag[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nserver: uvicorn\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1a;e=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX: y\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
	"HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
	"HTTP/1.1 200\nContent-Length: 1\n\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
};

#define NFRAG(a) (sizeof(a) / sizeof((a)[0]))

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_byte(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

/* Appends a stream of fragments (occasionally damaged) to s. */
static void gen_stream(struct buf *s, const char *const *frag, size_t nfrag, size_t count)
{
	for (size_t k = 0; k < count; k++) {
		const char *f = frag[rnd_below(nfrag)];
		size_t len = strlen(f), at = s->n;
		if (f[0] == '\x16' || f[0] == '\x81')
			len = f[0] == '\x16' ? 7 : 11;
		put(s, f, len);
		switch (rnd_below(24)) {
		case 0: /* flip a byte */
			s->p[at + rnd_below(len)] ^= (uint8_t)(1u << rnd_below(8));
			break;
		case 1: /* drop the tail */
			s->n = at + rnd_below(len);
			break;
		case 2: /* random junk */
			for (size_t j = rnd_below(40); j; j--)
				put_byte(s, (uint8_t)rnd());
			break;
		case 3: /* a long header value */
			put(s, "X-Long: ", 8);
			for (size_t j = rnd_below(6000); j; j--)
				put_byte(s, 'L');
			put(s, "\r\n", 2);
			break;
		case 4: /* a long request line, with a secret somewhere */
			if (frag != req_frag)
				break;
			put(s, "GET /l?a=", 9);
			for (size_t j = rnd_below(2) ? 2000 + rnd_below(100) : rnd_below(80000); j; j--)
				put_byte(s, 'a');
			put(s, "&pwd=", 5);
			for (size_t j = rnd_below(40); j; j--)
				put_byte(s, 'P');
			put(s, " HTTP/1.1\r\nReferer: /?token=", 29);
			for (size_t j = rnd_below(5000); j; j--)
				put_byte(s, 'T');
			put(s, "\r\n\r\n", 4);
			break;
		}
	}
}

/* Appends one event with payload p[0..n) (p NULL: no payload). */
static void put_event(struct buf *out, unsigned kind, const uint8_t *p, size_t n)
{
	if (n >= 1 && n <= 28) {
		put_byte(out, (uint8_t)(kind | ((n - 1) << 3)));
	} else {
		size_t v = n ? n - 1 : 0;
		put_byte(out, (uint8_t)(kind | (28u << 3)));
		put_byte(out, (uint8_t)(v & 0xff));
		put_byte(out, (uint8_t)(v >> 8));
	}
	if (p)
		put(out, p, n);
}

/* A deep pipeline: n requests (GETs, HEADs, bodies, with headers of
 * `pad` bytes so that n * pad may pass the details kept per connection) and
 * as many responses of mixed framing. */
static void gen_burst(struct buf *rq, struct buf *rs, size_t n, size_t pad)
{
	for (size_t k = 0; k < n; k++) {
		char line[96];
		unsigned kind = (unsigned)rnd_below(8);
		snprintf(line, sizeof line, "%s /b%zu?token=t%zu HTTP/1.1\r\nX-Pad: ",
			 kind == 0 ? "HEAD" : kind == 1 ? "POST" : "GET", k, k);
		put(rq, line, strlen(line));
		for (size_t j = rnd_below(pad + 1); j; j--)
			put_byte(rq, 'p');
		put(rq, kind == 1 ? "\r\nContent-Length: 3\r\n\r\nabc" : "\r\n\r\n", kind == 1 ? 26 : 4);
		if (rnd_below(500) == 0)
			continue; /* a request never answered */
		/* complete responses that keep the connection going (an
		 * interim one first, now and then) */
		static const int keep[] = { 0, 3, 4, 5, 6, 8, 11 };
		const char *r = kind == 0 ? "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
					  : resp_frag[keep[rnd_below(NFRAG(keep))]];
		if (rnd_below(50) == 0)
			put(rs, resp_frag[10], strlen(resp_frag[10]));
		put(rs, r, strlen(r));
	}
}

/* Builds one script: a request stream and a response stream interleaved in
 * random chunks, with sendfile writes, eofs and closes sprinkled in. */
static void gen_script(struct buf *out)
{
	struct buf rq = { 0 }, rs = { 0 };
	size_t ri = 0, wi = 0, big = 0;
	if (rnd_below(4000) == 0) {
		gen_burst(&rq, &rs, 500 + rnd_below(6000), rnd_below(2) ? 20 : 800);
		big = 1;
	} else {
		gen_stream(&rq, req_frag, NFRAG(req_frag), 1 + rnd_below(6));
		gen_stream(&rs, resp_frag, NFRAG(resp_frag), 1 + rnd_below(6));
	}
	out->n = 0;
	while (ri < rq.n || wi < rs.n) {
		unsigned pick = (unsigned)rnd_below(40);
		if (pick == 0 && !big) {
			put_event(out, 6, NULL, 1);
		} else if (pick == 1 && rnd_below(4) == 0 && !big) {
			put_event(out, 7, NULL, 1);
		} else if (pick == 2 && !big) {
			put_event(out, 5, NULL, 1 + rnd_below(2000));
		} else if (big && ri < rq.n && (wi >= rs.n || rnd_below(3))) {
			/* mostly reads: the pipeline grows deep before answers drain it */
			size_t n = 1 + rnd_below(65536);
			if (n > rq.n - ri)
				n = rq.n - ri;
			put_event(out, (unsigned)rnd_below(3), rq.p + ri, n);
			ri += n;
		} else if ((pick & 1) && ri < rq.n) {
			size_t n = 1 + rnd_below(rnd_below(3) ? 64 : 3000);
			if (n > rq.n - ri)
				n = rq.n - ri;
			put_event(out, (unsigned)rnd_below(3), rq.p + ri, n);
			ri += n;
		} else if (wi < rs.n) {
			size_t n = 1 + rnd_below(big ? 4096 : rnd_below(3) ? 64 : 3000);
			if (n > rs.n - wi)
				n = rs.n - wi;
			put_event(out, 3 + (unsigned)rnd_below(2), rs.p + wi, n);
			wi += n;
		}
	}
	free(rq.p);
	free(rs.p);
}

const long fuzz_iterations = 200000;

size_t fuzz_generate(const uint8_t **data)
{
	static struct buf script;
	gen_script(&script);
	*data = script.p;
	return script.n;
}

const char *fuzz_summary(void)
{
	static char text[64];
	snprintf(text, sizeof text, "%llu requests counted lost", (unsigned long long)total_lost);
	return text;
}

#endif
