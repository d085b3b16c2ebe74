/*
 * fuzz-resp.c - fuzz target for the HTTP/1.x response parser of
 * `timeglass bench` (loadgen/resp.c), which reads bytes from the network.
 *
 * The first input byte holds options (bit 0: the request was HEAD; bits
 * 1-3: body bytes kept, 0 or 2^(2k)); the rest is the server's byte stream.
 * It is parsed three times: whole, cut at a point derived from the input,
 * and one byte at a time. Every run must end in the same state (done,
 * status, bytes consumed, body, keep-alive) and satisfy the invariants;
 * violations abort, which libFuzzer reports as a crash.
 *
 * Built with -DTG_FUZZ_REPLAY (and replay.c) it is a standalone program:
 * it runs the files and directories named on the command line, then N
 * mutations of built-in responses (the numeric argument, default 100000).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

#define FUZZ_NAME "fuzz-resp"
#include "fuzz.h"

struct outcome {
	int failed, done, status, keep_alive;
	size_t consumed, body_len;
	uint64_t body_bytes;
	uint64_t body_hash;
};

static void run(const uint8_t *p, size_t n, int head, size_t cap, size_t step, size_t cut, struct outcome *o)
{
	static struct lg_resp r;
	lg_resp_init(&r, head, cap);
	memset(o, 0, sizeof *o);
	size_t off = 0;
	while (off < n && !r.done) {
		size_t k = step ? step : (off < cut ? cut - off : n - off);
		if (k > n - off)
			k = n - off;
		ssize_t used = lg_resp_feed(&r, (const char *)p + off, k);
		if (used < 0) {
			o->failed = 1;
			break;
		}
		REQUIRE((size_t)used <= k);
		REQUIRE((size_t)used == k || r.done);
		off += (size_t)used;
	}
	if (!o->failed && !r.done)
		lg_resp_eof(&r);
	o->done = r.done;
	o->consumed = off;
	if (r.done) {
		REQUIRE(r.status >= 200 && r.status <= 999);
		o->status = r.status;
		o->keep_alive = r.keep_alive;
		o->body_bytes = r.body_bytes;
	}
	REQUIRE(r.body_len <= cap);
	REQUIRE(!r.body_len || r.body);
	REQUIRE(r.content_type[sizeof r.content_type - 1] == '\0' || strlen(r.content_type) < sizeof r.content_type);
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < r.body_len; i++)
		h = (h ^ (uint8_t)r.body[i]) * 1099511628211ull;
	o->body_len = r.body_len;
	o->body_hash = h;
	lg_resp_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	int head = data[0] & 1;
	unsigned k = (data[0] >> 1) & 7;
	size_t cap = k ? (size_t)1 << (2 * k) : 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct outcome a, b, c;
	run(p, n, head, cap, 0, n, &a);
	run(p, n, head, cap, 0, n ? (size_t)(data[0] * 31u + size) % n : 0, &b);
	run(p, n, head, cap, 1, 0, &c);
	const struct outcome *x[] = {&b, &c};
	for (int i = 0; i < 2; i++) {
		REQUIRE(a.failed == x[i]->failed);
		if (a.failed)
			continue;
		REQUIRE(a.done == x[i]->done && a.status == x[i]->status && a.keep_alive == x[i]->keep_alive);
		REQUIRE(a.consumed == x[i]->consumed && a.body_bytes == x[i]->body_bytes);
		REQUIRE(a.body_len == x[i]->body_len && a.body_hash == x[i]->body_hash);
	}
	return 0;
}

#ifdef TG_FUZZ_REPLAY

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	return fuzz_xorshift(&rng_state);
}

static const char *const seeds[] = {
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello",
	"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=1\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 422 Unprocessable\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
	"HTTP/1.0 500 Internal Server Error\r\ncontent-type: text/plain\r\n\r\nboom",
	"HTTP/1.1 204 No Content\r\nLocation: /x\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
};

const long fuzz_iterations = 100000;

/* One of the seeds, a random options byte before it, mutated a few times. */
size_t fuzz_generate(const uint8_t **data)
{
	static uint8_t buf[4096];
	const char *s = seeds[rnd() % (sizeof seeds / sizeof seeds[0])];
	size_t n = strlen(s);
	buf[0] = (uint8_t)rnd();
	memcpy(buf + 1, s, n);
	size_t len = n + 1;
	int muts = (int)(rnd() % 6);
	for (int m = 0; m < muts && len > 2; m++) {
		size_t at = 1 + rnd() % (len - 1);
		switch (rnd() % 4) {
		case 0: buf[at] = (uint8_t)rnd(); break;
		case 1: buf[at] = "0123456789abcdef\r\n: ;"[rnd() % 21]; break;
		case 2: if (len > 2) len = at; break;       /* truncate */
		case 3:                                      /* duplicate a span */
			if (len + 32 < sizeof buf) {
				size_t span = rnd() % 32;
				if (at + span > len)
					span = len - at;
				memmove(buf + at + span, buf + at, len - at);
				len += span;
			}
			break;
		}
	}
	*data = buf;
	return len;
}
#endif
