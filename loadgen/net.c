/*
 * net.c - URL, address and one-shot exchange (see net.h).
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int64_t lg_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t lg_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int lg_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

int lg_target_parse(const char *url, struct lg_target *t, char err[LG_ERR_MAX])
{
	memset(t, 0, sizeof *t);
	if (!strncasecmp(url, "https://", 8)) {
		snprintf(err, LG_ERR_MAX, "https is not supported: give the app's plain http:// address");
		return -1;
	}
	if (strncasecmp(url, "http://", 7)) {
		snprintf(err, LG_ERR_MAX, "the URL must start with http:// ('%.64s')", url);
		return -1;
	}
	const char *p = url + 7;
	const char *slash = strchr(p, '/');
	size_t auth_len = slash ? (size_t)(slash - p) : strlen(p);
	if (!auth_len || auth_len >= sizeof t->hostport || memchr(p, '@', auth_len)) {
		snprintf(err, LG_ERR_MAX, "bad host in URL '%.64s'", url);
		return -1;
	}
	memcpy(t->hostport, p, auth_len);
	t->hostport[auth_len] = '\0';
	const char *hs = t->hostport, *he, *portp = NULL;
	if (*hs == '[') {
		he = strchr(hs, ']');
		if (!he) {
			snprintf(err, LG_ERR_MAX, "bad IPv6 address in URL '%.64s'", url);
			return -1;
		}
		hs++;
		if (he[1] == ':')
			portp = he + 2;
		else if (he[1]) {
			snprintf(err, LG_ERR_MAX, "bad host in URL '%.64s'", url);
			return -1;
		}
	} else {
		he = strchr(hs, ':');
		if (he)
			portp = he + 1;
		else
			he = hs + strlen(hs);
	}
	if (he == hs || (size_t)(he - hs) >= sizeof t->host) {
		snprintf(err, LG_ERR_MAX, "bad host in URL '%.64s'", url);
		return -1;
	}
	memcpy(t->host, hs, (size_t)(he - hs));
	t->host[he - hs] = '\0';
	unsigned long port = 80;
	if (portp) {
		char *end;
		port = strtoul(portp, &end, 10);
		if (!*portp || *end || port == 0 || port > 65535) {
			snprintf(err, LG_ERR_MAX, "bad port in URL '%.64s'", url);
			return -1;
		}
	}
	t->port = (uint16_t)port;
	if (slash) {
		size_t bl = strcspn(slash, "?#");
		while (bl && slash[bl - 1] == '/')
			bl--;
		if (bl >= sizeof t->base) {
			snprintf(err, LG_ERR_MAX, "URL path too long");
			return -1;
		}
		memcpy(t->base, slash, bl);
		t->base[bl] = '\0';
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	char ps[8];
	snprintf(ps, sizeof ps, "%u", t->port);
	int rc = getaddrinfo(t->host, ps, &hints, &ai);
	if (rc || !ai) {
		snprintf(err, LG_ERR_MAX, "cannot resolve '%.64s': %s", t->host, gai_strerror(rc));
		return -1;
	}
	memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
	t->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	t->loopback = lg_addr_is_loopback((struct sockaddr *)&t->addr);
	return 0;
}

static int connect_nb(const struct lg_target *t)
{
	int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		int64_t left = (deadline - lg_mono_ns()) / 1000000;
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = ev};
		int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int lg_wait_listening(const struct lg_target *t, int timeout_ms)
{
	int fd = connect_nb(t);
	if (fd < 0)
		return -1;
	int rc = wait_fd(fd, POLLOUT, lg_mono_ns() + (int64_t)timeout_ms * 1000000);
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (!rc)
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	close(fd);
	return rc || soerr ? -1 : 0;
}

void lg_exchange(const struct lg_target *t, const char *req, size_t len, int head, int timeout_ms,
		 size_t body_cap, struct lg_exchange *x)
{
	memset(x, 0, sizeof *x);
	lg_resp_init(&x->resp, head, body_cap);
	int64_t t0 = lg_mono_ns(), deadline = t0 + (int64_t)timeout_ms * 1000000;
	int fd = connect_nb(t);
	if (fd < 0) {
		x->error = errno;
		return;
	}
	int rc = wait_fd(fd, POLLOUT, deadline);
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
		rc = -soerr;
	if (rc) {
		x->error = -rc;
		close(fd);
		return;
	}
	struct sockaddr_storage la;
	socklen_t ll = sizeof la;
	if (!getsockname(fd, (struct sockaddr *)&la, &ll))
		x->local_port = ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port
							       : ((struct sockaddr_in *)&la)->sin_port);
	x->sent_unix_ns = lg_wall_ns();
	size_t off = 0;
	while (off < len) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if ((rc = wait_fd(fd, POLLOUT, deadline)) == 0)
				continue;
			x->error = -rc;
		} else {
			x->error = w < 0 ? errno : EPIPE;
		}
		/* the server may answer before reading all (413, 400): read on */
		if (x->error == EPIPE || x->error == ECONNRESET) {
			x->error = 0;
			break;
		}
		close(fd);
		return;
	}
	char buf[16384];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n > 0) {
			if (lg_resp_feed(&x->resp, buf, (size_t)n) < 0) {
				x->error = EPROTO;
				break;
			}
			if (x->resp.done)
				break;
			continue;
		}
		if (n == 0) {
			if (!lg_resp_eof(&x->resp))
				x->error = x->resp.status ? EPROTO : ECONNRESET;
			break;
		}
		if (errno == EAGAIN || errno == EINTR) {
			if ((rc = wait_fd(fd, POLLIN, deadline)) == 0)
				continue;
			x->error = -rc;
			break;
		}
		x->error = errno;
		break;
	}
	x->latency_ns = lg_mono_ns() - t0;
	if (x->error && !x->resp.done)
		x->resp.status = x->resp.status && x->error == EPROTO ? x->resp.status : 0;
	close(fd);
}
