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

#include "event.h"
#include "http1.h"
#include "tg_preload.h"

struct tg_conn {
	int fd;
	int lock;                /* spinlock: 0 free, 1 held */
	uint64_t id;             /* per-process connection number, from 1 */
	struct tg_http_conn *http;
	uint8_t family;          /* AF_INET, AF_INET6, AF_UNIX or 0 */
	uint16_t port;           /* peer port, host order */
	uint8_t addr[16];        /* peer address */
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
	const struct tg_conn *c = ctx;
	if (!tg_proc.enabled)
		return;
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

/* Stops following fd: flushes what is in flight, frees the state. The
 * caller holds no lock. */
static void untrack(int fd, struct tg_conn *c, uint64_t now)
{
	struct tg_conn *expected = c;
	if (!atomic_compare_exchange_strong(&tg_conns[fd], &expected, NULL))
		return; /* someone else is already closing it */
	spin_lock(&c->lock);
	tg_http_on_close(c->http, now, emit_request, c);
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

void tg_conn_read(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
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
		spin_unlock(&c->lock);
		if (rc == TG_HTTP_UNTRACK)
			give_up(fd, c);
	} else if (r == 0) {
		spin_lock(&c->lock);
		tg_http_on_eof(c->http, now);
		spin_unlock(&c->lock);
	} else if (saved == ECONNRESET || saved == ETIMEDOUT || saved == ENOTCONN) {
		untrack(fd, c, now);
	}
	errno = saved;
}

void tg_conn_write(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, ssize_t r)
{
	int saved = errno;
	uint64_t now = tg_now_ns();
	if (r > 0) {
		int rc = TG_HTTP_OK;
		size_t left = (size_t)r;
		spin_lock(&c->lock);
		if (!iov) {
			rc = tg_http_on_write(c->http, NULL, left, now, emit_request, c);
		} else {
			for (int i = 0; i < iovcnt && left && rc == TG_HTTP_OK; i++) {
				size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
				if (n)
					rc = tg_http_on_write(c->http, iov[i].iov_base, n, now,
							      emit_request, c);
				left -= n;
			}
		}
		spin_unlock(&c->lock);
		if (rc == TG_HTTP_UNTRACK)
			give_up(fd, c);
	} else if (r < 0 && (saved == EPIPE || saved == ECONNRESET || saved == ENOTCONN)) {
		untrack(fd, c, now);
	}
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
	untrack(fd, c, tg_now_ns());
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
