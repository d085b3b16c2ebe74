/*
 * conn.c - the connections libtimeglass.so follows: sockets the app
 * accept()ed, indexed by fd, each with its HTTP/1.x parser state.
 *
 * The hooks in hooks.c look an fd up in tg_conns (one bounds check and one
 * load) and come here only for tracked fds. A connection is fed by whichever
 * thread does I/O on it; a per-connection spinlock serialises that (it is
 * uncontended in every server we know: one event loop owns a socket).
 * Finished requests are turned into TG_EV_REQUEST records in the ring.
 *
 * Connection structs are never returned to malloc while the process runs:
 * they go to a free list, so a thread that raced a close() with a stale
 * pointer reads a valid (if reused) struct rather than freed memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/event.h"
#include "http1.h"
#include "taps.h"
#include "tg_preload.h"

struct tg_conn {
	int fd;
	int lock;                /* spinlock: 0 free, 1 held */
	uint64_t id;             /* per-process connection number, from 1 */
	struct tg_http_conn *http;
	struct tg_out *out;      /* outbound socket (outbound.c), http is NULL then */
	uint8_t family;          /* AF_INET, AF_INET6, AF_UNIX or 0 */
	uint16_t port;           /* peer port, host order */
	uint8_t addr[16];        /* peer address */
	uint64_t ahead;          /* bytes fed to the parser that the kernel has not taken yet */
	uint64_t last_start_ns;  /* start_ns of the last request emitted, 0 if none */
	struct tg_conn *next_free;
};

_Atomic(struct tg_conn *) *tg_conns;
unsigned tg_nconns;

static uint64_t next_conn_id;
static unsigned max_fd_seen; /* highest fd ever tracked: bounds table walks */
static struct tg_conn *free_list;
static int free_lock;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static void spin_lock(int *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(l, __ATOMIC_RELAXED))
			cpu_relax();
}

static void spin_unlock(int *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

int tg_conns_init(void)
{
	struct rlimit rl;
	rlim_t n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max > n)
		n = rl.rlim_max;
	if (n > (1u << 20))
		n = 1u << 20;
	/* calloc of this size is an untouched anonymous mapping: only the
	 * pages of fds actually used cost memory. */
	tg_conns = calloc(n, sizeof *tg_conns);
	if (!tg_conns)
		return -1;
	tg_nconns = (unsigned)n;
	return 0;
}

void tg_count_untracked(void)
{
	if (tg_proc.enabled)
		__atomic_fetch_add(&tg_proc.ring.hdr->untracked_conns, 1, __ATOMIC_RELAXED);
}

void tg_count_lost_requests(uint64_t n)
{
	if (n && tg_proc.enabled)
		__atomic_fetch_add(&tg_proc.ring.hdr->lost_requests, n, __ATOMIC_RELAXED);
}

/* Reports the requests the parser ended without details (under c->lock). */
static inline void take_lost(struct tg_conn *c)
{
	uint64_t n = tg_http_take_lost(c->http);
	if (n)
		tg_count_lost_requests(n);
}

static struct tg_conn *conn_alloc(void)
{
	struct tg_conn *c;
	spin_lock(&free_lock);
	c = free_list;
	if (c)
		free_list = c->next_free;
	spin_unlock(&free_lock);
	if (!c)
		c = malloc(sizeof *c);
	return c;
}

static void conn_free(struct tg_conn *c)
{
	if (c->http)
		tg_http_free(c->http);
	c->http = NULL;
	if (c->out)
		tg_out_free(c->out, tg_now_ns());
	c->out = NULL;
	spin_lock(&free_lock);
	c->next_free = free_list;
	free_list = c;
	spin_unlock(&free_lock);
}

void tg_conn_accepted(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	if (!tg_proc.enabled || fd < 0 || (unsigned)fd >= tg_nconns)
		return;
	/* An fd number we still track was closed behind our back (close_range,
	 * a raw syscall): finish the old connection first. */
	if (atomic_load_explicit(&tg_conns[fd], memory_order_relaxed))
		tg_conn_closing(fd);

	struct sockaddr_storage ss;
	if (!addr || addrlen == 0) {
		socklen_t len = sizeof ss;
		if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
			addr = (struct sockaddr *)&ss;
			addrlen = len;
		} else {
			addr = NULL;
		}
	}
	struct tg_conn *c = conn_alloc();
	if (!c)
		return;
	memset(c, 0, sizeof *c);
	c->http = tg_http_new();
	if (!c->http) {
		conn_free(c);
		return;
	}
	c->fd = fd;
	if ((unsigned)fd > __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED))
		__atomic_store_n(&max_fd_seen, (unsigned)fd, __ATOMIC_RELAXED);
	c->id = __atomic_add_fetch(&next_conn_id, 1, __ATOMIC_RELAXED);
	if (addr && addr->sa_family == AF_INET && addrlen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		c->family = AF_INET;
		c->port = ntohs(in->sin_port);
		memcpy(c->addr, &in->sin_addr, 4);
	} else if (addr && addr->sa_family == AF_INET6 && addrlen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		c->family = AF_INET6;
		c->port = ntohs(in6->sin6_port);
		memcpy(c->addr, &in6->sin6_addr, 16);
	} else if (addr && addr->sa_family == AF_UNIX) {
		c->family = AF_UNIX;
	}
	atomic_store_explicit(&tg_conns[fd], c, memory_order_release);
}

/* Emit callback of the parser: one finished request → one ring record. */
static void emit_request(void *ctx, const struct tg_http_req *req)
{
	struct tg_conn *c = ctx;
	if (!tg_proc.enabled)
		return;
	c->last_start_ns = req->start_ns;
	uint32_t strings = (uint32_t)req->method_len + req->target_len + req->headers_len;
	uint32_t size = (uint32_t)sizeof(struct tg_ev_request) + strings;
	uint8_t *rec = tg_reserve(size);
	if (!rec)
		return;
	struct tg_ev_request *ev = (struct tg_ev_request *)rec;
	ev->tid = tg_tid();
	ev->status = req->status;
	ev->error = req->error;
	ev->conn_id = c->id;
	ev->start_ns = req->start_ns;
	ev->req_end_ns = req->req_end_ns;
	ev->resp_start_ns = req->resp_start_ns;
	ev->end_ns = req->end_ns;
	ev->request_bytes = req->request_bytes;
	ev->response_bytes = req->response_bytes;
	ev->http_minor = req->http_minor;
	ev->flags = req->flags;
	ev->client_family = c->family;
	ev->pad0 = 0;
	ev->client_port = c->port;
	ev->method_len = req->method_len;
	ev->target_len = req->target_len;
	ev->headers_len = req->headers_len;
	ev->route_len = 0;
	ev->pad1 = 0;
	memcpy(ev->client_addr, c->addr, sizeof ev->client_addr);
	memcpy(ev->trace_id, req->trace_id, sizeof ev->trace_id);
	memcpy(ev->parent_span_id, req->parent_span_id, sizeof ev->parent_span_id);
	uint8_t *p = rec + sizeof *ev;
	memcpy(p, req->method, req->method_len);
	p += req->method_len;
	memcpy(p, req->target, req->target_len);
	p += req->target_len;
	memcpy(p, req->headers, req->headers_len);
	p += req->headers_len;
	uint32_t padded = (size + 7u) & ~7u;
	memset(p, 0, padded - size);
	tg_ring_commit(rec, size, TG_EV_REQUEST, 0);
}

/* Stops following fd: flushes what is in flight, frees the state. by_app:
 * the app closes it (else the peer reset it). The caller holds no lock. */
static void untrack(int fd, struct tg_conn *c, uint64_t now, int by_app)
{
	struct tg_conn *expected = c;
	if (!atomic_compare_exchange_strong(&tg_conns[fd], &expected, NULL))
		return; /* someone else is already closing it */
	spin_lock(&c->lock);
	if (c->http && c->ahead && c->last_start_ns && tg_proc.enabled) {
		/* The response was parsed as complete, but its tail was
		 * never sent: correct the request we emitted. */
		struct tg_ev_req_fixup *f = tg_reserve(sizeof *f);
		if (f) {
			f->tid = tg_tid();
			f->error = TG_REQ_CLOSED_MID_RESPONSE;
			f->pad0 = 0;
			f->conn_id = c->id;
			f->start_ns = c->last_start_ns;
			f->unsent_bytes = c->ahead;
			f->ts_ns = now;
			tg_ring_commit(f, sizeof *f, TG_EV_REQ_FIXUP, 0);
		}
	}
	if (c->http) {
		if (by_app)
			tg_http_on_app_close(c->http);
		tg_http_on_close(c->http, now, emit_request, c);
		take_lost(c);
	}
	spin_unlock(&c->lock);
	conn_free(c);
}

/* Gives up on a connection whose bytes are not HTTP: the parser already
 * emitted what it had; count it and forget it. */
static void give_up(int fd, struct tg_conn *c)
{
	struct tg_conn *expected = c;
	if (!atomic_compare_exchange_strong(&tg_conns[fd], &expected, NULL))
		return;
	tg_count_untracked();
	conn_free(c);
}

/* Bytes on an outbound socket go to outbound.c (dir 0 written, 1 read).
 * Written bytes are timed when the write began (t0): the peer may have
 * them, and may have answered, before the call returns; read bytes when
 * the read returned. */
static void out_io(struct tg_conn *c, int fd, int dir, const struct iovec *iov, int iovcnt, ssize_t r, uint64_t t0)
{
	int saved = errno;
	uint64_t now = dir == 0 && t0 ? t0 : tg_now_ns();
	if (r > 0 && iov) {
		size_t left = (size_t)r;
		spin_lock(&c->lock);
		for (int i = 0; i < iovcnt && left; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			if (n)
				tg_out_io(c->out, dir, iov[i].iov_base, n, now);
			left -= n;
		}
		spin_unlock(&c->lock);
	} else if (r < 0 && (saved == ECONNRESET || saved == EPIPE || saved == ETIMEDOUT || saved == ENOTCONN)) {
		untrack(fd, c, now, 0);
	}
	errno = saved;
}

int tg_conn_outbound(int fd, struct tg_out *o)
{
	if (!tg_proc.enabled || fd < 0 || (unsigned)fd >= tg_nconns)
		return -1;
	if (atomic_load_explicit(&tg_conns[fd], memory_order_relaxed))
		tg_conn_closing(fd);
	struct tg_conn *c = conn_alloc();
	if (!c)
		return -1;
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->out = o;
	if ((unsigned)fd > __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED))
		__atomic_store_n(&max_fd_seen, (unsigned)fd, __ATOMIC_RELAXED);
	c->id = __atomic_add_fetch(&next_conn_id, 1, __ATOMIC_RELAXED);
	atomic_store_explicit(&tg_conns[fd], c, memory_order_release);
	return 0;
}

struct tg_out *tg_conn_get_out(int fd)
{
	struct tg_conn *c = tg_conn_get(fd);
	return c ? c->out : NULL;
}

void tg_conn_bind(int fd, int bind, uint64_t token, const char *site, size_t len)
{
	struct tg_conn *c = tg_conn_get(fd);
	if (!c || !c->out)
		return;
	spin_lock(&c->lock);
	if (c->out)
		tg_out_bind(c->out, bind, token, site, len);
	spin_unlock(&c->lock);
}

uint64_t tg_conn_inbound_id(int fd)
{
	struct tg_conn *c = tg_conn_get(fd);
	/* A racing close may recycle c: its id is then another connection's,
	 * which the collector's time check refuses. */
	return c && !c->out ? __atomic_load_n(&c->id, __ATOMIC_RELAXED) : 0;
}

void tg_conn_claim_libpq(int fd)
{
	struct tg_conn *c = tg_conn_get(fd);
	if (!c || !c->out)
		return;
	spin_lock(&c->lock);
	if (c->out)
		tg_out_set_libpq(c->out);
	spin_unlock(&c->lock);
}

void tg_conn_read(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	if (c->out) {
		out_io(c, fd, 1, iov, iovcnt, r, 0);
		return;
	}
	int saved = errno;
	uint64_t now = tg_now_ns();
	if (r > 0) {
		int rc = TG_HTTP_OK;
		size_t left = (size_t)r;
		spin_lock(&c->lock);
		for (int i = 0; i < iovcnt && left && rc == TG_HTTP_OK; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			if (n)
				rc = tg_http_on_read(c->http, iov[i].iov_base, n, now, emit_request, c);
			left -= n;
		}
		take_lost(c);
		spin_unlock(&c->lock);
		if (rc == TG_HTTP_UNTRACK)
			give_up(fd, c);
	} else if (r == 0) {
		spin_lock(&c->lock);
		tg_http_on_eof(c->http, now);
		spin_unlock(&c->lock);
	} else if (saved == ECONNRESET || saved == ETIMEDOUT || saved == ENOTCONN) {
		untrack(fd, c, now, 0);
	}
	errno = saved;
}

/*
 * Writes are parsed before they are made, so that the request a response
 * completes is in the ring before its client can have the response: a
 * process killed right after its last write loses nothing. Bytes the kernel
 * then does not take (a short write, EAGAIN) were parsed already; `ahead`
 * counts them, and the next write, which must start with them (a stream's
 * unsent bytes go first), skips them.
 */
void tg_conn_write_before(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t opaque,
			  uint64_t t0)
{
	if (c->out)
		return;
	int saved = errno;
	int rc = TG_HTTP_OK;
	spin_lock(&c->lock);
	uint64_t skip = c->ahead;
	if (!iov) {
		size_t s = skip < opaque ? (size_t)skip : opaque;
		skip -= s;
		if (opaque > s)
			rc = tg_http_on_write(c->http, NULL, opaque - s, t0, emit_request, c);
	} else {
		for (int i = 0; i < iovcnt && rc == TG_HTTP_OK; i++) {
			size_t n = iov[i].iov_len;
			size_t s = skip < n ? (size_t)skip : n;
			skip -= s;
			if (n > s)
				rc = tg_http_on_write(c->http, (const uint8_t *)iov[i].iov_base + s, n - s, t0,
						      emit_request, c);
		}
	}
	c->ahead = skip;
	take_lost(c);
	spin_unlock(&c->lock);
	if (rc == TG_HTTP_UNTRACK)
		give_up(fd, c);
	errno = saved;
}

void tg_conn_write(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t opaque, ssize_t r,
		   uint64_t t0)
{
	if (c->out) {
		out_io(c, fd, 0, iov, iovcnt, r, t0);
		return;
	}
	int saved = errno;
	size_t total = 0;
	if (iov) {
		for (int i = 0; i < iovcnt; i++)
			total += iov[i].iov_len;
	} else {
		total = opaque;
	}
	if (r < 0 || (size_t)r < total) {
		spin_lock(&c->lock);
		c->ahead += total - (r > 0 ? (size_t)r : 0);
		spin_unlock(&c->lock);
	}
	if (r < 0 && (saved == EPIPE || saved == ECONNRESET || saved == ENOTCONN))
		untrack(fd, c, tg_now_ns(), 0);
	errno = saved;
}

void tg_conn_closing(int fd)
{
	struct tg_conn *c = tg_conn_get(fd);
	if (!c)
		return;
	/* A vfork child shares our memory but not our fds: leave our state
	 * alone, its close() only affects its own fd table. */
	if (getpid() != tg_proc.pid)
		return;
	int saved = errno;
	untrack(fd, c, tg_now_ns(), 1);
	errno = saved;
}

void tg_conn_closing_range(unsigned first, unsigned last)
{
	unsigned top = __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED);
	if (!tg_conns || first > top)
		return;
	if (last > top)
		last = top;
	for (unsigned fd = first; fd <= last && fd < tg_nconns; fd++)
		if (atomic_load_explicit(&tg_conns[fd], memory_order_relaxed))
			tg_conn_closing((int)fd);
}

void tg_conns_after_fork(void)
{
	free_lock = 0;
	if (!tg_conns)
		return;
	for (unsigned fd = 0; fd <= max_fd_seen && fd < tg_nconns; fd++) {
		struct tg_conn *c = atomic_load_explicit(&tg_conns[fd], memory_order_relaxed);
		if (c)
			c->lock = 0;
	}
}
