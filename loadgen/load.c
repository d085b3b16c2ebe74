/*
 * load.c - the epoll load generator (see load.h).
 */
#include "load.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { C_IDLE, C_CONNECTING, C_WRITING, C_READING, C_WAITING };

struct conn {
	int fd;
	int state;
	size_t req;               /* index into reqs of the request in flight */
	size_t off;               /* bytes of it written */
	int64_t start_ns;         /* latency origin: sent, or scheduled (open loop) */
	int64_t sent_ns;          /* when its first byte went out (timeouts) */
	int64_t next_ns;          /* open loop: scheduled time of the next request */
	int pollout;              /* EPOLLOUT is in the interest set */
	uint64_t served;          /* responses received on this connection */
	struct lg_resp resp;
};

struct loop {
	const struct lg_target *t;
	const struct lg_raw *reqs;
	size_t nreqs, next_req;
	const struct lg_load_opts *o;
	struct lg_load_result *res;
	int ep;
	int64_t end_ns;
	int64_t interval_ns;      /* open loop: per connection */
	uint64_t sent;
	int stopping;             /* no more requests are started */
};

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void conn_close(struct loop *l, struct conn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = C_IDLE;
	c->pollout = 0;
}

static int set_pollout(struct loop *l, struct conn *c, int on)
{
	if (c->pollout == on)
		return 0;
	struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
	c->pollout = on;
	return epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_open(struct loop *l, struct conn *c)
{
	c->fd = socket(l->t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (const struct sockaddr *)&l->t->addr, l->t->addrlen) < 0 && errno != EINPROGRESS) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
	c->served = 0;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->pollout = 1;
	c->state = C_CONNECTING;
	return 0;
}

static void fail(struct loop *l, struct conn *c, int timeout)
{
	l->res->errors++;
	l->res->timeouts += timeout != 0;
	conn_close(l, c);
}

static int conn_retry(struct loop *l, struct conn *c);

/* Writes what is left of the request; arms EPOLLOUT when the socket is full. */
static void conn_write(struct loop *l, struct conn *c)
{
	const struct lg_raw *r = &l->reqs[c->req];
	while (c->off < r->len) {
		ssize_t w = send(c->fd, r->data + c->off, r->len - c->off, MSG_NOSIGNAL);
		if (w > 0) {
			c->off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			c->state = C_WRITING;
			set_pollout(l, c, 1);
			return;
		}
		if (c->off == 0 && conn_retry(l, c) == 0)
			return;
		fail(l, c, 0);
		return;
	}
	c->state = C_READING;
	if (c->pollout)
		set_pollout(l, c, 0);
}

/* Starts the next request on c (connecting first when needed). */
static void conn_start(struct loop *l, struct conn *c, int64_t now)
{
	if (l->stopping || (l->o->max_requests && l->sent >= l->o->max_requests)) {
		l->stopping = 1;
		if (c->fd >= 0)
			conn_close(l, c);
		return;
	}
	if (l->interval_ns) {
		if (c->next_ns > now) {
			c->state = C_WAITING;
			return;
		}
		c->start_ns = c->next_ns;       /* corrected: from the scheduled time */
		c->next_ns += l->interval_ns;
	} else {
		c->start_ns = now;
	}
	c->sent_ns = now;
	c->req = l->next_req;
	l->next_req = (l->next_req + 1) % l->nreqs;
	c->off = 0;
	lg_resp_init(&c->resp, l->reqs[c->req].head, 0);
	l->sent++;
	if (c->fd < 0) {
		if (conn_open(l, c) < 0) {
			l->res->errors++;
			return;
		}
		return;   /* written once connected */
	}
	conn_write(l, c);
}

/* A kept-alive connection the server closed before any byte of the answer
 * (it closes after an error response, or an idle timeout raced the
 * request): the request is sent again on a new connection, not counted
 * as an error. Returns 0 when resent. */
static int conn_retry(struct loop *l, struct conn *c)
{
	if (!c->served || c->resp.status || c->resp.header_bytes || c->resp.line_len)
		return -1;
	conn_close(l, c);
	c->off = 0;
	lg_resp_init(&c->resp, l->reqs[c->req].head, 0);
	if (conn_open(l, c) < 0)
		return -1;
	return 0;
}

static void response_done(struct loop *l, struct conn *c, int64_t now)
{
	struct lg_load_result *res = l->res;
	res->requests++;
	c->served++;
	int st = c->resp.status;
	res->status[st >= 100 && st < 600 ? st / 100 : 0]++;
	if (st > 0 && st < 1000)
		res->status_code[st]++;
	lg_hdr_record(res->hist, (uint64_t)(now - c->start_ns));
	if (!c->resp.keep_alive)
		conn_close(l, c);
	conn_start(l, c, now);
}

static void on_readable(struct loop *l, struct conn *c)
{
	char buf[16384];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof buf, 0);
		if (n > 0) {
			l->res->bytes_read += (uint64_t)n;
			if (c->state != C_READING) {   /* bytes nobody asked for */
				fail(l, c, 0);
				return;
			}
			size_t off = 0;
			while (off < (size_t)n) {
				ssize_t used = lg_resp_feed(&c->resp, buf + off, (size_t)n - off);
				if (used < 0) {
					fail(l, c, 0);
					return;
				}
				off += (size_t)used;
				if (!c->resp.done)
					break;
				if (off < (size_t)n) {   /* more than one response: not ours */
					fail(l, c, 0);
					return;
				}
				response_done(l, c, lg_mono_ns());
				return;
			}
			if ((size_t)n < sizeof buf)
				return;
			continue;
		}
		if (n == 0) {
			if (c->state == C_READING && lg_resp_eof(&c->resp)) {
				c->resp.keep_alive = 0;
				response_done(l, c, lg_mono_ns());
				return;
			}
			if ((c->state == C_READING || c->state == C_WRITING) && conn_retry(l, c) == 0)
				return;
			if (c->state == C_READING)
				fail(l, c, 0);
			else
				conn_close(l, c);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && conn_retry(l, c) < 0)
			fail(l, c, 0);
		return;
	}
}

static void on_writable(struct loop *l, struct conn *c)
{
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t sl = sizeof err;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
			fail(l, c, 0);
			return;
		}
		c->state = C_WRITING;
	}
	if (c->state == C_WRITING)
		conn_write(l, c);
	else
		set_pollout(l, c, 0);
}

int lg_load_run(const struct lg_target *t, const struct lg_raw *reqs, size_t nreqs, const struct lg_load_opts *o,
		struct lg_load_result *res, char err[LG_ERR_MAX])
{
	struct lg_hdr *hist = res->hist;
	memset(res, 0, sizeof *res);
	res->hist = hist;
	if (!nreqs || o->connections < 1) {
		snprintf(err, LG_ERR_MAX, "nothing to send");
		return -1;
	}
	struct loop l = {.t = t, .reqs = reqs, .nreqs = nreqs, .o = o, .res = res};
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	if (l.ep < 0) {
		snprintf(err, LG_ERR_MAX, "epoll_create1: %s", strerror(errno));
		return -1;
	}
	int nc = o->connections;
	struct conn *conns = calloc((size_t)nc, sizeof *conns);
	if (!conns) {
		close(l.ep);
		snprintf(err, LG_ERR_MAX, "out of memory");
		return -1;
	}
	int64_t cpu0 = thread_cpu_ns();
	int64_t t0 = lg_mono_ns();
	l.end_ns = t0 + (int64_t)(o->duration_s * 1e9);
	if (o->rate > 0) {
		l.interval_ns = (int64_t)(1e9 * nc / o->rate);
		if (l.interval_ns < 1)
			l.interval_ns = 1;
	}
	for (int i = 0; i < nc; i++) {
		conns[i].fd = -1;
		/* open loop: connections start staggered over one interval */
		conns[i].next_ns = t0 + (l.interval_ns ? l.interval_ns * i / nc : 0);
		conn_start(&l, &conns[i], t0);
	}
	int64_t last_progress = t0, last_sweep = t0;
	struct epoll_event evs[256];
	for (;;) {
		int64_t now = lg_mono_ns();
		if (now >= l.end_ns)
			l.stopping = 1;
		int busy = 0;
		int64_t wake = l.end_ns;
		for (int i = 0; i < nc && (l.interval_ns || now - last_sweep > 100000000 || l.stopping); i++) {
			struct conn *c = &conns[i];
			if (c->state == C_WAITING) {
				if (l.stopping) {
					c->state = C_IDLE;
					if (c->fd >= 0)
						conn_close(&l, c);
				} else if (c->next_ns <= now) {
					conn_start(&l, c, now);
				} else if (c->next_ns < wake) {
					wake = c->next_ns;
				}
			} else if (c->state == C_IDLE && !l.stopping) {
				conn_start(&l, c, now);   /* a connection lost earlier */
			} else if ((c->state == C_READING || c->state == C_WRITING || c->state == C_CONNECTING) &&
				   now - c->sent_ns > (int64_t)o->timeout_ms * 1000000) {
				fail(&l, c, 1);
				if (!l.stopping)
					conn_start(&l, c, now);
			}
		}
		if (now - last_sweep > 100000000)
			last_sweep = now;
		if (l.stopping) {
			for (int i = 0; i < nc; i++)
				busy += conns[i].state == C_READING || conns[i].state == C_WRITING ||
					conns[i].state == C_CONNECTING;
			if (!busy)
				break;
		}
		if (l.stopping && now > l.end_ns + (int64_t)o->timeout_ms * 1000000)
			break;
		if (o->progress && now - last_progress >= 250000000) {
			last_progress = now;
			o->progress(o->ctx, res->requests, (double)(now - t0) / 1e9);
		}
		int64_t wait_ns = (l.stopping ? 50000000 : wake - now);
		if (wait_ns > 100000000)
			wait_ns = 100000000;
		int timeout = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);
		int n = epoll_wait(l.ep, evs, 256, timeout);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->fd < 0)
				continue;
			int fd = c->fd;
			if (evs[i].events & (EPOLLOUT | EPOLLERR) && c->state != C_READING)
				on_writable(&l, c);
			/* a connection replaced meanwhile has no event yet */
			if (c->fd >= 0 && c->fd == fd && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_readable(&l, c);
		}
	}
	res->elapsed_s = (double)(lg_mono_ns() - t0) / 1e9;
	for (int i = 0; i < nc; i++) {
		if (conns[i].state == C_READING || conns[i].state == C_WRITING || conns[i].state == C_CONNECTING)
			res->errors++, res->timeouts++;
		if (conns[i].fd >= 0)
			conn_close(&l, &conns[i]);
	}
	res->cpu_ns = thread_cpu_ns() - cpu0;
	free(conns);
	close(l.ep);
	if (!res->requests && res->errors) {
		snprintf(err, LG_ERR_MAX, "no response: %llu errors (is the app listening at %.100s?)",
			 (unsigned long long)res->errors, t->hostport);
		return -1;
	}
	return 0;
}
