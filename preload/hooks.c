/*
 * hooks.c - the libc functions libtimeglass.so interposes.
 *
 * Each wrapper calls the real function first and returns its result
 * unchanged; only when the fd is a tracked connection (one table load) does it
 * pass the bytes to conn.c, which saves and restores errno. Plain read() and
 * write() on files, pipes and untracked sockets far outnumber socket traffic
 * in a Python app, so that fast path is the one that matters.
 *
 * Fortified variants (__read_chk & co.) are wrapped too: callers compiled with
 * _FORTIFY_SOURCE reach them instead of read()/recv().
 */
/* sendfile and sendfile64 are both wrapped: see them under their own names. */
#undef _FILE_OFFSET_BITS
#include <stdarg.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <errno.h>
#include <unistd.h>

#include "taps.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))

int tg_protect_fd(int fd, int moving);

static inline void on_read(int fd, void *buf, size_t n, ssize_t r)
{
	tg_sampler_poll();
	struct tg_conn *c = tg_conn_get(fd);
	if (TG_UNLIKELY(c != NULL)) {
		struct iovec v = {.iov_base = buf, .iov_len = n};
		tg_conn_read(c, fd, &v, 1, r);
	}
}

static inline void on_readv(int fd, const struct iovec *iov, int cnt, ssize_t r)
{
	tg_sampler_poll();
	struct tg_conn *c = tg_conn_get(fd);
	if (TG_UNLIKELY(c != NULL))
		tg_conn_read(c, fd, iov, cnt, r);
}

/* Writes are timed when they start (the peer can have the bytes before
 * the call returns: a request must never look longer than its client saw)
 * and parsed before they are made (see tg_conn_write_before). */
static inline uint64_t before_writev(int fd, const struct iovec *iov, int cnt, size_t opaque)
{
	struct tg_conn *c = tg_conn_get(fd);
	if (TG_LIKELY(c == NULL))
		return 0;
	uint64_t t0 = tg_now_ns();
	tg_conn_write_before(c, fd, iov, cnt, opaque, t0);
	return t0;
}

static inline uint64_t before_write(int fd, const void *buf, size_t n)
{
	if (TG_LIKELY(tg_conn_get(fd) == NULL))
		return 0;
	struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
	return before_writev(fd, &v, 1, 0);
}

static inline void after_writev(int fd, const struct iovec *iov, int cnt, size_t opaque, ssize_t r, uint64_t t0)
{
	struct tg_conn *c = tg_conn_get(fd);
	if (TG_UNLIKELY(c != NULL) && t0)
		tg_conn_write(c, fd, iov, cnt, opaque, r, t0);
}

static inline void after_write(int fd, const void *buf, size_t n, ssize_t r, uint64_t t0)
{
	if (TG_LIKELY(!t0))
		return;
	struct iovec v = {.iov_base = (void *)buf, .iov_len = n};
	after_writev(fd, &v, 1, 0, r, t0);
}

static inline void on_accept(int fd, struct sockaddr *addr, socklen_t cap, socklen_t *len)
{
	tg_sampler_poll();
	if (fd < 0 || !tg_proc.enabled)
		return;
	socklen_t got = addr && len ? (*len < cap ? *len : cap) : 0;
	tg_conn_accepted(fd, addr, got);
}

TG_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	socklen_t cap = len ? *len : 0;
	int r = TG_REAL(accept)(fd, addr, len);
	on_accept(r, addr, cap, len);
	return r;
}

TG_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	socklen_t cap = len ? *len : 0;
	int r = TG_REAL(accept4)(fd, addr, len, flags);
	on_accept(r, addr, cap, len);
	return r;
}

/* Outbound connections (PostgreSQL, HTTP clients): see outbound.c. */
TG_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	int r = TG_REAL(connect)(fd, addr, len);
	if (TG_UNLIKELY(tg_proc.enabled) && (r == 0 || errno == EINPROGRESS))
		tg_out_connected(fd, addr, len);
	return r;
}

TG_EXPORT int close(int fd)
{
	tg_sampler_poll();
	if (TG_UNLIKELY(fd == tg_proc.sock) && tg_protect_fd(fd, 0))
		return 0;
	if (TG_UNLIKELY(tg_conn_get(fd) != NULL))
		tg_conn_closing(fd);
	return TG_REAL(close)(fd);
}

/* close(2) by way of syscall(2): libuv (uvloop) closes sockets so. */
TG_EXPORT long syscall(long n, ...)
{
	va_list ap;
	va_start(ap, n);
	long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
	long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
	va_end(ap);
	if (TG_UNLIKELY(n == SYS_close)) {
		int fd = (int)a1;
		if (TG_UNLIKELY(fd == tg_proc.sock) && tg_protect_fd(fd, 0))
			return 0;
		if (TG_UNLIKELY(tg_conn_get(fd) != NULL))
			tg_conn_closing(fd);
	}
#ifdef SYS_close_range
	else if (TG_UNLIKELY(n == SYS_close_range) && tg_nconns && !((unsigned)a3 & 4u /* CLOSE_RANGE_CLOEXEC */)) {
		tg_conn_closing_range((unsigned)a1, (unsigned)a2);
	}
#endif
	return TG_REAL(syscall)(n, a1, a2, a3, a4, a5, a6);
}

TG_EXPORT int close_range(unsigned first, unsigned last, int flags);
TG_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	if (TG_UNLIKELY(tg_nconns) && !(flags & 4 /* CLOSE_RANGE_CLOEXEC */))
		tg_conn_closing_range(first, last);
	if (!TG_REAL(close_range)) {
		errno = ENOSYS;
		return -1;
	}
	return tg_real.close_range(first, last, flags);
}

TG_EXPORT int dup2(int oldfd, int newfd)
{
	if (oldfd != newfd) {
		if (TG_UNLIKELY(newfd == tg_proc.sock))
			tg_protect_fd(newfd, 1);
		if (TG_UNLIKELY(tg_conn_get(newfd) != NULL))
			tg_conn_closing(newfd);
	}
	return TG_REAL(dup2)(oldfd, newfd);
}

TG_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd) {
		if (TG_UNLIKELY(newfd == tg_proc.sock))
			tg_protect_fd(newfd, 1);
		if (TG_UNLIKELY(tg_conn_get(newfd) != NULL))
			tg_conn_closing(newfd);
	}
	return TG_REAL(dup3)(oldfd, newfd, flags);
}

TG_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t r = TG_REAL(read)(fd, buf, n);
	on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	ssize_t r = TG_REAL(read_chk)(fd, buf, n, buflen);
	on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	ssize_t r = TG_REAL(readv)(fd, iov, cnt);
	on_readv(fd, iov, cnt, r);
	return r;
}

TG_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	ssize_t r = TG_REAL(recv)(fd, buf, n, flags);
	if (!(flags & MSG_PEEK))
		on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	ssize_t r = TG_REAL(recv_chk)(fd, buf, n, buflen, flags);
	if (!(flags & MSG_PEEK))
		on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
			   socklen_t *len)
{
	ssize_t r = TG_REAL(recvfrom)(fd, buf, n, flags, addr, len);
	if (!(flags & MSG_PEEK))
		on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *addr, socklen_t *len)
{
	ssize_t r = TG_REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, len);
	if (!(flags & MSG_PEEK))
		on_read(fd, buf, n, r);
	return r;
}

TG_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t r = TG_REAL(recvmsg)(fd, msg, flags);
	if (!(flags & MSG_PEEK))
		on_readv(fd, msg->msg_iov, (int)msg->msg_iovlen, r);
	return r;
}

TG_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	uint64_t t0 = before_write(fd, buf, n);
	ssize_t r = TG_REAL(write)(fd, buf, n);
	after_write(fd, buf, n, r, t0);
	return r;
}

TG_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	uint64_t t0 = before_writev(fd, iov, cnt, 0);
	ssize_t r = TG_REAL(writev)(fd, iov, cnt);
	after_writev(fd, iov, cnt, 0, r, t0);
	return r;
}

TG_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	uint64_t t0 = before_write(fd, buf, n);
	ssize_t r = TG_REAL(send)(fd, buf, n, flags);
	after_write(fd, buf, n, r, t0);
	return r;
}

TG_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
			 socklen_t len)
{
	uint64_t t0 = before_write(fd, buf, n);
	ssize_t r = TG_REAL(sendto)(fd, buf, n, flags, addr, len);
	after_write(fd, buf, n, r, t0);
	return r;
}

TG_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	uint64_t t0 = before_writev(fd, msg->msg_iov, (int)msg->msg_iovlen, 0);
	ssize_t r = TG_REAL(sendmsg)(fd, msg, flags);
	after_writev(fd, msg->msg_iov, (int)msg->msg_iovlen, 0, r, t0);
	return r;
}

TG_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	uint64_t t0 = before_writev(out, NULL, 0, n);
	ssize_t r = TG_REAL(sendfile)(out, in, off, n);
	after_writev(out, NULL, 0, n, r, t0);
	return r;
}

TG_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
	uint64_t t0 = before_writev(out, NULL, 0, n);
	ssize_t r = TG_REAL(sendfile64)(out, in, off, n);
	after_writev(out, NULL, 0, n, r, t0);
	return r;
}
