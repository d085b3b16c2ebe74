/*
 * collector/http_post.c - one HTTP/1.1 POST over a fresh TCP connection,
 * every wait bounded by a deadline (see http_post.h).
 */
#include "collector/http_post.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/util.h"

#define SLICE_MS 100 /* waits are cut into slices, so that a lowered deadline is seen */

int tg_http_url_parse(const char *url, struct tg_http_url *u)
{
	memset(u, 0, sizeof *u);
	if (!strncasecmp(url, "https://", 8))
		return tg_fail("%.200s: https is not supported (plain http:// only; put an OpenTelemetry "
			       "Collector on this host or network in between)", url);
	if (strncasecmp(url, "http://", 7))
		return tg_fail("%.200s: not an http:// URL", url);
	const char *a = url + 7, *end = a + strcspn(a, "/?#");
	size_t alen = (size_t)(end - a);
	if (!alen || alen >= sizeof u->authority || memchr(a, '@', alen))
		return tg_fail("%.200s: no host, or a host this client does not take", url);
	memcpy(u->authority, a, alen);
	const char *port = NULL;
	if (a[0] == '[') {
		const char *rb = memchr(a, ']', alen);
		if (!rb || rb - a - 1 <= 0 || (size_t)(rb - a - 1) >= sizeof u->host)
			return tg_fail("%.200s: bad IPv6 address", url);
		memcpy(u->host, a + 1, (size_t)(rb - a - 1));
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return tg_fail("%.200s: bad host", url);
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(a, ':', alen);
		size_t hlen = colon ? (size_t)(colon - a) : alen;
		if (!hlen || hlen >= sizeof u->host)
			return tg_fail("%.200s: bad host", url);
		memcpy(u->host, a, hlen);
		if (colon)
			port = colon + 1;
	}
	if (port) {
		size_t plen = (size_t)(end - port);
		char digits[8] = "";
		uint64_t v;
		if (plen && plen < sizeof digits)
			memcpy(digits, port, plen);
		if (!plen || plen >= sizeof digits || tg_parse_u64(digits, 1, 65535, &v) < 0)
			return tg_fail("%.200s: bad port", url);
		snprintf(u->port, sizeof u->port, "%u", (unsigned)v);
	} else {
		snprintf(u->port, sizeof u->port, "80");
	}
	size_t plen = strcspn(end, "#");
	if (plen + 2 > sizeof u->path)
		return tg_fail("%.200s: path too long", url);
	if (*end != '/')
		u->path[0] = '/';
	memcpy(u->path + strlen(u->path), end, plen);
	return 0;
}

/* Milliseconds to wait for the next slice, or -1 once the deadline passed. */
static int slice_ms(const int64_t *deadline_ns)
{
	int64_t left = __atomic_load_n(deadline_ns, __ATOMIC_RELAXED) - tg_monotonic_ns();
	if (left <= 0)
		return -1;
	return left >= SLICE_MS * 1000000LL ? SLICE_MS : (int)((left + 999999) / 1000000);
}

/* Waits for events on fd. Returns 1 when ready, 0 at the deadline, -1 on error. */
static int wait_fd(int fd, short events, const int64_t *deadline_ns)
{
	for (;;) {
		int ms = slice_ms(deadline_ns);
		if (ms < 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, ms);
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0)
			return 1;
	}
}

/* A name lookup in flight; kept (leaked) if the resolver cannot let go of it. */
struct lookup {
	struct gaicb cb;
	struct addrinfo hints;
	char host[256], port[8];
};

/* The addresses of u, within the deadline: an address as is, a name through
 * the resolver's own threads (getaddrinfo_a), given up on at the deadline.
 * NULL with tg_fail() set on failure. */
static struct addrinfo *resolve(const struct tg_http_url *u, const int64_t *deadline_ns)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res = NULL;
	if (getaddrinfo(u->host, u->port, &hints, &res) == 0)
		return res;
	struct lookup *l = calloc(1, sizeof *l);
	if (!l) {
		tg_fail("out of memory");
		return NULL;
	}
	tg_strlcpy(l->host, u->host, sizeof l->host);
	tg_strlcpy(l->port, u->port, sizeof l->port);
	l->hints = (struct addrinfo){.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	l->cb = (struct gaicb){.ar_name = l->host, .ar_service = l->port, .ar_request = &l->hints};
	struct gaicb *list[1] = {&l->cb};
	int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
	if (!rc)
		rc = gai_error(&l->cb);
	for (; rc == EAI_INPROGRESS; rc = gai_error(&l->cb)) {
		int ms = slice_ms(deadline_ns);
		if (ms < 0) {
			if (gai_cancel(&l->cb) == EAI_NOTCANCELED && gai_error(&l->cb) == EAI_INPROGRESS) {
				tg_fail("cannot resolve %s: timed out", u->host);
				return NULL; /* l stays with the resolver */
			}
			if (gai_error(&l->cb) == 0)
				freeaddrinfo(l->cb.ar_result);
			free(l);
			tg_fail("cannot resolve %s: timed out", u->host);
			return NULL;
		}
		struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
		gai_suspend((const struct gaicb *const *)list, 1, &ts);
	}
	res = rc ? NULL : l->cb.ar_result;
	free(l);
	if (rc)
		tg_fail("cannot resolve %s: %s", u->host, gai_strerror(rc));
	return res;
}

static int connect_to(const struct tg_http_url *u, const int64_t *deadline_ns)
{
	struct addrinfo *res = resolve(u, deadline_ns);
	if (!res)
		return -1;
	int fd = -1, err = ETIMEDOUT;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			err = errno;
			if (err == EINPROGRESS) {
				socklen_t elen = sizeof err;
				int w = wait_fd(fd, POLLOUT, deadline_ns);
				if (w <= 0)
					err = w < 0 ? errno : ETIMEDOUT;
				else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
					err = errno;
			}
			if (err) {
				close(fd);
				fd = -1;
			}
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		return tg_fail("cannot connect to %s:%s: %s", u->host, u->port, strerror(err));
	return fd;
}

/* Sends n bytes. Returns 0, or -1 with errno set (ETIMEDOUT at the deadline). */
static int send_all(int fd, const char *p, size_t n, const int64_t *deadline_ns)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		int r = wait_fd(fd, POLLOUT, deadline_ns);
		if (r <= 0) {
			if (!r)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/* Reads until the status line is complete. Returns the status, or -1. */
static int read_status(int fd, const int64_t *deadline_ns)
{
	char buf[512];
	size_t got = 0;
	for (;;) {
		char *nl = memchr(buf, '\n', got);
		if (nl || got == sizeof buf - 1) {
			buf[got] = '\0';
			int major, minor, status;
			if (sscanf(buf, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || status < 100 || status > 599)
				return tg_fail("not an HTTP answer: %.40s", buf);
			return status;
		}
		ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0)
			return tg_fail("the connection closed before an answer came");
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return tg_fail("receiving the answer: %s", strerror(errno));
		int w = wait_fd(fd, POLLIN, deadline_ns);
		if (w <= 0)
			return tg_fail("receiving the answer: %s", w ? strerror(errno) : "timed out");
	}
}

int tg_http_post(const struct tg_http_url *u, const char *headers, const char *content_type, const void *body,
		 size_t len, const int64_t *deadline_ns)
{
	int fd = connect_to(u, deadline_ns);
	if (fd < 0)
		return -1;
	char *head = NULL;
	int hn = asprintf(&head,
			  "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: timeglass\r\nContent-Type: %s\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
			  u->path, u->authority, content_type, len, headers ? headers : "");
	if (hn < 0) {
		close(fd);
		return tg_fail("out of memory");
	}
	int status;
	if (send_all(fd, head, (size_t)hn, deadline_ns) == 0 && send_all(fd, body, len, deadline_ns) == 0) {
		status = read_status(fd, deadline_ns);
	} else {
		int e = errno;
		/* A server may answer (413, 400) and close before taking the whole body. */
		status = e == ETIMEDOUT ? -1 : read_status(fd, deadline_ns);
		if (status < 0)
			tg_fail("sending to %s:%s: %s", u->host, u->port, strerror(e));
	}
	free(head);
	close(fd);
	return status;
}
