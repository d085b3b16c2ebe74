/*
 * fake-app.c - a stand-in for a traced app, to test the collector alone.
 *
 * It does what libtimeglass.so does at start-up: creates a ring in a memfd,
 * connects to $TIMEGLASS_SOCK and registers with a struct tg_hello and the
 * memfd as SCM_RIGHTS. Then it appends COUNT request records of known
 * content and exits; with FORKS > 0 it first forks that many children,
 * which register their own rings (TG_HELLO_AFTER_FORK) and write COUNT
 * records each.
 *
 *   fake-app COUNT [FORKS] [MODE]
 *
 * MODE "normal" (default): ring of $TIMEGLASS_RING_KB; a full ring is
 *   retried, so exactly COUNT records arrive per process.
 * MODE "overflow": a 64 KiB ring written as fast as possible without retry,
 *   so records are lost and counted in the ring header.
 * MODE "corrupt": like normal, plus one record whose string lengths exceed
 *   its size, which the collector must drop and count as a loss.
 *
 * Record i (0-based) of each process: method POST if i % 3 == 0 else GET;
 * target "/items/I?q=I" if i is even, else "/health"; except record 1
 * ("http://example.com/abs?x=1", absolute form) and record 3 (a path with a
 * quote, a backslash, a control byte, invalid UTF-8 and U+2028); status 404
 * if i % 10 == 9, no response (status 0, error 2) if i % 50 == 7, else 200;
 * times start + 1000 (request end), + 2000 (response start), + 3000 + i
 * (end) ns; request bytes 100 + i, response bytes 200 + i; client by i % 4:
 * 127.0.0.1:(40000 + i % 1000), [::1]:5555, unix, none; flags head and
 * chunked_response if i % 5 == 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/event.h"
#include "common/ring.h"

enum mode { NORMAL, OVERFLOW, CORRUPT, SHRINK };

static int ring_memfd = -1; /* kept open in SHRINK mode */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "fake-app: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Creates a ring of data_bytes and registers it. Returns the connection. */
static int register_ring(struct tg_ring *r, size_t data_bytes, int after_fork)
{
	size_t map_bytes = TG_RING_HDR_BYTES + data_bytes;
	int mfd = memfd_create("timeglass-ring", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)map_bytes) < 0)
		die("memfd");
	void *mem = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED || tg_ring_format(mem, map_bytes) < 0 || tg_ring_attach(r, mem, map_bytes) < 0)
		die("ring");

	const char *path = getenv("TIMEGLASS_SOCK");
	if (!path)
		die("TIMEGLASS_SOCK not set");
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("connect");

	struct tg_hello h = {
		.magic = TG_HELLO_MAGIC,
		.version = TG_RING_VERSION,
		.pid = getpid(),
		.ppid = getppid(),
		.flags = after_fork ? TG_HELLO_AFTER_FORK : 0,
		.ring_bytes = map_bytes,
		.mono_ns = mono_ns(),
	};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof h};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &mfd, sizeof mfd);
	if (sendmsg(fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof h)
		die("sendmsg");
	ring_memfd = mfd;
	return fd;
}

/* Builds record i into buf; returns its size. */
static uint32_t build(uint64_t *buf, size_t cap, unsigned i)
{
	struct tg_ev_request *r = (struct tg_ev_request *)buf;
	char target[128];
	const char *method = i % 3 == 0 ? "POST" : "GET";
	const char *headers = "host: localhost\nuser-agent: fake-app\n";
	if (i == 1)
		snprintf(target, sizeof target, "http://example.com/abs?x=1");
	else if (i == 3)
		snprintf(target, sizeof target, "/odd\"q\\b\x01\xff\xe2\x80\xa8");
	else if (i % 2 == 0)
		snprintf(target, sizeof target, "/items/%u?q=%u", i, i);
	else
		snprintf(target, sizeof target, "/health");

	memset(r, 0, sizeof *r);
	r->tid = (uint32_t)gettid();
	r->status = i % 50 == 7 ? 0 : i % 10 == 9 ? 404 : 200;
	r->error = i % 50 == 7 ? TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE : TG_REQ_OK;
	r->conn_id = i / 10 + 1;
	r->start_ns = mono_ns();
	r->req_end_ns = r->start_ns + 1000;
	r->resp_start_ns = r->error ? 0 : r->start_ns + 2000;
	r->end_ns = r->start_ns + 3000 + i;
	r->request_bytes = 100 + i;
	r->response_bytes = r->error ? 0 : 200 + i;
	r->http_minor = 1;
	r->flags = i % 5 == 0 ? TG_REQF_HEAD | TG_REQF_CHUNKED_RESP : 0;
	switch (i % 4) {
	case 0:
		r->client_family = AF_INET;
		r->client_port = (uint16_t)(40000 + i % 1000);
		inet_pton(AF_INET, "127.0.0.1", r->client_addr);
		break;
	case 1:
		r->client_family = AF_INET6;
		r->client_port = 5555;
		inet_pton(AF_INET6, "::1", r->client_addr);
		break;
	case 2: r->client_family = AF_UNIX; break;
	default: break;
	}
	r->method_len = (uint16_t)strlen(method);
	r->target_len = (uint16_t)strlen(target);
	r->headers_len = (uint16_t)strlen(headers);
	char *p = (char *)(r + 1);
	size_t need = sizeof *r + r->method_len + r->target_len + r->headers_len;
	if (need > cap)
		abort();
	memcpy(p, method, r->method_len);
	memcpy(p + r->method_len, target, r->target_len);
	memcpy(p + r->method_len + r->target_len, headers, r->headers_len);
	return (uint32_t)need;
}

static void write_records(struct tg_ring *r, unsigned count, enum mode mode)
{
	uint64_t buf[512];
	for (unsigned i = 0; i < count; i++) {
		uint32_t size = build(buf, sizeof buf, i);
		/* Wait for room (a record and the padding a wrap may need) rather
		 * than retry: a failed write counts as a loss in the ring. */
		while (mode != OVERFLOW && r->mask + 1 - tg_ring_used(r) < 2 * (uint64_t)size + 8)
			usleep(1000); /* the collector drains every 10 ms */
		tg_ring_write(r, buf, size, TG_EV_REQUEST);
	}
	if (mode == CORRUPT) {
		uint32_t size = build(buf, sizeof buf, 0);
		((struct tg_ev_request *)buf)->headers_len = 60000; /* beyond the record */
		while (r->mask + 1 - tg_ring_used(r) < 2 * (uint64_t)size + 8)
			usleep(1000);
		tg_ring_write(r, buf, size, TG_EV_REQUEST);
	}
	if (mode != OVERFLOW) {
		/* Losses in normal mode would make exact counts meaningless. */
		if (__atomic_load_n(&r->hdr->lost_events, __ATOMIC_RELAXED))
			fprintf(stderr, "fake-app: unexpected ring losses\n");
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: fake-app COUNT [FORKS] [normal|overflow|corrupt]\n");
		return 2;
	}
	unsigned count = (unsigned)strtoul(argv[1], NULL, 10);
	unsigned forks = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	enum mode mode = NORMAL;
	if (argc > 3 && !strcmp(argv[3], "overflow"))
		mode = OVERFLOW;
	else if (argc > 3 && !strcmp(argv[3], "corrupt"))
		mode = CORRUPT;
	else if (argc > 3 && !strcmp(argv[3], "shrink"))
		mode = SHRINK;
	const char *kb = getenv("TIMEGLASS_RING_KB");
	size_t data = mode == OVERFLOW ? TG_RING_MIN_DATA : (size_t)(kb ? strtoul(kb, NULL, 10) : 8192) * 1024;

	struct tg_ring ring;
	int conn = register_ring(&ring, data, 0);
	if (mode == SHRINK) {
		usleep(200 * 1000);
		write_records(&ring, count, mode);
		if (ftruncate(ring_memfd, TG_RING_HDR_BYTES) < 0)
			die("ftruncate");
		return 0;
	}
	close(ring_memfd);
	for (unsigned k = 0; k < forks; k++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			/* As the preload library's fork handler: drop the parent's
			 * registration, make a ring of our own. */
			close(conn);
			munmap(ring.hdr, TG_RING_HDR_BYTES + ring.mask + 1);
			register_ring(&ring, data, 1);
			close(ring_memfd);
			write_records(&ring, count, mode);
			_exit(0);
		}
	}
	write_records(&ring, count, mode);
	int st, failed = 0;
	while (wait(&st) > 0)
		failed |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	return failed;
}
