/* test-resp.c - the response parser: framings, split at every byte,
 * interim responses, keep-alive, malformed input. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "resp.h"

/* Feeds msg in pieces of `step` bytes; returns bytes consumed when done
 * (or -1 on error, -2 when it never completed). */
static long feed(struct lg_resp *r, const char *msg, size_t step, int head, size_t cap, int eof)
{
	lg_resp_init(r, head, cap);
	size_t n = strlen(msg), off = 0;
	while (off < n) {
		size_t k = n - off < step ? n - off : step;
		ssize_t used = lg_resp_feed(r, msg + off, k);
		if (used < 0)
			return -1;
		off += (size_t)used;
		if (r->done)
			return (long)off;
	}
	if (eof && lg_resp_eof(r))
		return (long)off;
	return -2;
}

int main(void)
{
	struct lg_resp r;
	const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello"
			 "HTTP/1.1 204 No Content\r\n\r\n";
	const char *chunked = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n";
	const char *interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 422 Unprocessable\r\nContent-Length: 2\r\n\r\n{}";
	for (size_t step = 1; step < 200; step++) {
		long used = feed(&r, cl, step, 0, 64, 0);
		assert(used == (long)strlen(cl) - (long)strlen("HTTP/1.1 204 No Content\r\n\r\n"));
		assert(r.status == 200 && r.keep_alive && r.body_len == 5 && !strcmp(r.body, "hello"));
		assert(!strcmp(r.content_type, "application/json"));
		lg_resp_free(&r);

		used = feed(&r, chunked, step, 0, 8, 0);
		assert(used == (long)strlen(chunked));
		assert(r.status == 201 && r.chunked && r.body_bytes == 19 && r.body_len == 8 && r.body_truncated);
		assert(!memcmp(r.body, "abc01234", 8));
		lg_resp_free(&r);

		used = feed(&r, interim, step, 0, 0, 0);
		assert(used == (long)strlen(interim) && r.status == 422 && !r.body);
	}
	/* HEAD: Content-Length without a body */
	assert(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 7, 1, 0, 0) > 0 && r.done);
	/* body until close; HTTP/1.0 is not keep-alive */
	assert(feed(&r, "HTTP/1.0 200 OK\r\n\r\nabc", 3, 0, 16, 0) == -2);
	assert(lg_resp_eof(&r) && r.body_len == 3 && !r.keep_alive);
	lg_resp_free(&r);
	assert(feed(&r, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 5, 0, 0, 0) > 0);
	assert(!r.keep_alive);
	/* truncated: not complete at close */
	assert(feed(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 4, 0, 0, 1) == -2);
	/* malformed */
	const char *bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert(feed(&r, bad[i], 3, 0, 0, 0) == -1);
	/* an over-long header line is refused, not buffered */
	static char big[LG_RESP_LINE_MAX + 64];
	strcpy(big, "HTTP/1.1 200 OK\r\nX: ");
	memset(big + strlen(big), 'a', LG_RESP_LINE_MAX);
	assert(feed(&r, big, 4096, 0, 0, 0) == -1);
	puts("ok");
	return 0;
}
