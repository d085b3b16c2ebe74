/* test-load.c - the load generator against a small threaded server in this
 * process: closed loop, open loop at a rate, coordinated omission
 * corrected, Connection: close, a server that stalls (timeouts), nothing
 * listening. */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "load.h"

static int close_each;      /* answer with Connection: close */
static int stall_every;     /* never answer every Nth request (0: never) */
static unsigned served;     /* requests read so far */
static unsigned pause_at;   /* answer request number pause_at 300 ms late (0: none) */

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	size_t have = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
		char *end;
		while ((end = memmem(buf, have, "\r\n\r\n", 4))) {
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, buf + used, have - used);
			have -= used;
			unsigned k = __atomic_add_fetch(&served, 1, __ATOMIC_RELAXED);
			if (stall_every && k % (unsigned)stall_every == 0) {
				sleep(2);
				goto out;
			}
			if (k == __atomic_load_n(&pause_at, __ATOMIC_RELAXED))
				usleep(300 * 1000);
			const char *resp = close_each
				? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
				: (k % 10 ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
					  : "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n");
			send(fd, resp, strlen(resp), MSG_NOSIGNAL);
			if (close_each)
				goto out;
		}
	}
out:
	close(fd);
	return NULL;
}

static void *acceptor(void *arg)
{
	int ls = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_t th;
		pthread_create(&th, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(th);
	}
	return NULL;
}

static uint16_t start_server(void)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert(bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 128) == 0);
	socklen_t al = sizeof a;
	getsockname(ls, (struct sockaddr *)&a, &al);
	pthread_t th;
	pthread_create(&th, NULL, acceptor, (void *)(intptr_t)ls);
	pthread_detach(th);
	return ntohs(a.sin_port);
}

int main(void)
{
	char url[64], err[LG_ERR_MAX];
	struct lg_target t;
	snprintf(url, sizeof url, "http://127.0.0.1:%u/", start_server());
	assert(lg_target_parse(url, &t, err) == 0 && t.loopback && !strcmp(t.base, ""));
	struct lg_target t2;
	assert(lg_target_parse("http://localhost:8000/api/", &t2, err) == 0 && !strcmp(t2.base, "/api") &&
	       t2.port == 8000 && t2.loopback);
	assert(lg_target_parse("https://127.0.0.1/", &t2, err) < 0);
	assert(lg_target_parse("http://127.0.0.1:99999/", &t2, err) < 0);
	assert(lg_target_parse("http://[::1]:81", &t2, err) == 0 && t2.loopback && t2.port == 81);

	char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct lg_raw raw = {req, strlen(req), 0};
	struct lg_load_result res = {.hist = lg_hdr_new()};
	struct lg_load_opts o = {.connections = 4, .duration_s = 0.5, .timeout_ms = 1000};

	/* closed loop */
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	printf("closed: %llu requests, %llu errors, %.0f req/s, p50 %llu ns\n", (unsigned long long)res.requests,
	       (unsigned long long)res.errors, res.requests / res.elapsed_s,
	       (unsigned long long)lg_hdr_percentile(res.hist, 50));
	assert(res.requests > 100 && res.errors == 0);
	assert(res.status[5] > 0 && res.status[2] > res.status[5] && res.status_code[500] == res.status[5]);
	assert(res.hist->count == res.requests);

	/* bounded in requests */
	o.max_requests = 50;
	lg_hdr_reset(res.hist);
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	assert(res.requests == 50);
	o.max_requests = 0;

	/* open loop at 400/s for 1 s */
	o.rate = 400;
	o.duration_s = 1.0;
	lg_hdr_reset(res.hist);
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	printf("open: %llu requests in %.2f s\n", (unsigned long long)res.requests, res.elapsed_s);
	assert(res.requests >= 360 && res.requests <= 410);

	/* Open loop, one connection at 200/s, and one response 300 ms late: the
	 * requests due meanwhile go out late, and their latency counts from when
	 * they were due (as wrk2 counts it), not from when they went out. Timed
	 * from the send, all but one would take well under a millisecond. */
	o.connections = 1;
	o.rate = 200;
	lg_hdr_reset(res.hist);
	__atomic_store_n(&pause_at, __atomic_load_n(&served, __ATOMIC_RELAXED) + 20, __ATOMIC_RELAXED);
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	uint64_t p50 = lg_hdr_percentile(res.hist, 50), p90 = lg_hdr_percentile(res.hist, 90);
	printf("omission: %llu requests, p50 %.2f ms, p90 %.1f ms, max %.1f ms\n", (unsigned long long)res.requests,
	       p50 / 1e6, p90 / 1e6, res.hist->max / 1e6);
	assert(res.requests >= 150 && res.errors == 0);
	assert(res.hist->max >= 280 * 1000000ull && p90 >= 50 * 1000000ull);
	pause_at = 0;
	o.connections = 4;

	/* Connection: close after each response: reconnects, no errors */
	close_each = 1;
	o.rate = 0;
	o.duration_s = 0.3;
	lg_hdr_reset(res.hist);
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	printf("close: %llu requests, %llu errors\n", (unsigned long long)res.requests, (unsigned long long)res.errors);
	assert(res.requests > 20 && res.errors == 0);
	close_each = 0;

	/* a stalled server: timeouts counted, the phase still ends in time */
	stall_every = 7;
	o.timeout_ms = 300;
	o.duration_s = 0.8;
	lg_hdr_reset(res.hist);
	assert(lg_load_run(&t, &raw, 1, &o, &res, err) == 0);
	printf("stall: %llu requests, %llu timeouts in %.2f s\n", (unsigned long long)res.requests,
	       (unsigned long long)res.timeouts, res.elapsed_s);
	assert(res.timeouts > 0 && res.elapsed_s < 1.5);
	stall_every = 0;

	/* nothing listening */
	struct lg_target dead;
	assert(lg_target_parse("http://127.0.0.1:1/", &dead, err) == 0);
	o.duration_s = 0.2;
	assert(lg_load_run(&dead, &raw, 1, &o, &res, err) < 0);
	printf("dead: %s\n", err);

	/* one exchange */
	struct lg_exchange x;
	lg_exchange(&t, req, strlen(req), 0, 1000, 100, &x);
	assert(x.error == 0 && (x.resp.status == 200 || x.resp.status == 500) && x.local_port);
	lg_resp_free(&x.resp);
	free(res.hist);
	puts("ok");
	return 0;
}
