/*
 * load.h - the load generator of `timeglass bench`: HTTP/1.1 keep-alive
 * connections driven by one epoll loop on one thread, so that it can share
 * a small machine with the app it measures.
 *
 * Closed loop (rate 0): each of `connections` sends its next request as
 * soon as the previous response ended. Open loop (rate R): requests are
 * scheduled at R per second spread over the connections, and a latency is
 * measured from the request's scheduled time, not from when a busy
 * connection could send it: the correction for coordinated omission that
 * wrk2 makes (a stalled server counts the time callers would have waited).
 *
 * Cost per request in the steady state: one epoll_wait, one recv, one send.
 * The response is parsed incrementally (resp.h) and its body skipped.
 */
#ifndef LG_LOAD_H
#define LG_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "hdr.h"
#include "net.h"

struct lg_raw {               /* one complete request, ready to send */
	char *data;
	size_t len;
	int head;                 /* HEAD: the response has no body */
};

struct lg_load_opts {
	int connections;          /* >= 1 */
	double duration_s;        /* > 0 */
	double rate;              /* requests/s in all; 0 = closed loop */
	uint64_t max_requests;    /* bound on requests sent; 0 = none */
	int timeout_ms;           /* per request; a late one is an error and its connection is replaced */
	/* called about every 250 ms from the loop; may be NULL */
	void (*progress)(void *ctx, uint64_t done, double elapsed_s);
	void *ctx;
};

struct lg_load_result {
	uint64_t requests;        /* responses received */
	uint64_t errors;          /* connect, read, write, parse failures and timeouts */
	uint64_t timeouts;        /* of which timeouts */
	uint64_t status[6];       /* responses by class: [1]=1xx .. [5]=5xx, [0] other */
	uint64_t status_code[1000];
	uint64_t bytes_read;
	double elapsed_s;         /* wall time of the phase */
	int64_t cpu_ns;           /* CPU time (user + system) of the generator thread */
	struct lg_hdr *hist;      /* latencies, ns; owned by the caller */
};

/* Runs the load: reqs[] sent in turn. res->hist must point to a histogram.
 * Returns 0, or -1 with a message in err when no connection could be made
 * at all. */
int lg_load_run(const struct lg_target *t, const struct lg_raw *reqs, size_t nreqs, const struct lg_load_opts *o,
		struct lg_load_result *res, char err[LG_ERR_MAX]);

#endif
