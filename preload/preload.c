/*
 * preload.c - process state of libtimeglass.so: resolving the real libc
 * functions, creating this process's ring, registering it with the collector,
 * and starting over in fork children.
 *
 * The library is inert unless TIMEGLASS_SOCK names a collector socket: then
 * the constructor creates a memfd ring, maps it, and sends the memfd to the
 * collector with SCM_RIGHTS over a non-blocking Unix socket. Registration
 * never waits: if the collector is not there or does not accept at once, the
 * process simply runs untraced. After registration nothing in the app talks
 * to the collector again; events go through shared memory only, so a dead
 * collector costs the app nothing but dropped records.
 */
/* sendfile and sendfile64 are both wrapped: see them under their own names. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/event.h"
#include "common/ring.h"
#include "http1.h"
#include "tg_preload.h"

struct tg_real tg_real;
int tg_real_ready;
struct tg_proc tg_proc = {.sock = -1};

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static size_t ring_data_bytes = 8u << 20;

static void *must_resolve(const char *name, void *ours)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn == ours) /* would call ourselves forever */
		abort();
	return fn;
}

/* Hooks are exported under their libc names; take their addresses here so a
 * lookup that comes back to us is caught. */

#define R(field, name) tg_real.field = must_resolve(#name, (void *)&name)

static void resolve_all(void)
{
	R(accept, accept);
	R(accept4, accept4);
	R(close, close);
	R(dup2, dup2);
	R(dup3, dup3);
	R(read, read);
	R(read_chk, __read_chk);
	R(readv, readv);
	R(recv, recv);
	R(recv_chk, __recv_chk);
	R(recvfrom, recvfrom);
	R(recvfrom_chk, __recvfrom_chk);
	R(recvmsg, recvmsg);
	R(write, write);
	R(writev, writev);
	R(send, send);
	R(sendto, sendto);
	R(sendmsg, sendmsg);
	R(sendfile, sendfile);
	R(sendfile64, sendfile64);
	R(syscall, syscall);
	R(connect, connect);
	tg_real.close_range = dlsym(RTLD_NEXT, "close_range"); /* glibc 2.34+ */
	__atomic_store_n(&tg_real_ready, 1, __ATOMIC_RELEASE);
}

void tg_resolve(void)
{
	pthread_once(&resolve_once, resolve_all);
}

uint32_t tg_tid(void)
{
	static TG_TLS uint32_t tid;
	static TG_TLS pid_t tid_pid;
	if (TG_UNLIKELY(tid == 0 || tid_pid != tg_proc.pid)) {
		tid = (uint32_t)syscall(SYS_gettid);
		tid_pid = tg_proc.pid;
	}
	return tid;
}

static size_t env_ring_bytes(void)
{
	const char *s = getenv("TIMEGLASS_RING_KB");
	if (!s || !*s)
		return 8u << 20;
	unsigned long kb = strtoul(s, NULL, 10);
	size_t bytes = TG_RING_MIN_DATA;
	while (bytes < (size_t)kb * 1024 && bytes < TG_RING_MAX_DATA)
		bytes <<= 1;
	return bytes;
}

/* Creates and maps a fresh ring. Returns the memfd, or -1. */
static int make_ring(void)
{
	size_t map_bytes = TG_RING_HDR_BYTES + ring_data_bytes;
	int fd = (int)syscall(SYS_memfd_create, "timeglass-ring", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)map_bytes) < 0)
		goto fail;
	void *m = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	if (tg_ring_format(m, map_bytes) < 0 || tg_ring_attach(&tg_proc.ring, m, map_bytes) < 0) {
		munmap(m, map_bytes);
		goto fail;
	}
	tg_proc.ring_map = m;
	tg_proc.ring_map_bytes = map_bytes;
	return fd;
fail:
	tg_real.close(fd);
	return -1;
}

static void drop_ring(void)
{
	if (tg_proc.ring_map)
		munmap(tg_proc.ring_map, tg_proc.ring_map_bytes);
	tg_proc.ring_map = NULL;
	memset(&tg_proc.ring, 0, sizeof tg_proc.ring);
}

/* Connects to the collector and hands it a new ring. On any failure the
 * process stays untraced (enabled = 0). Never blocks. */
static void register_process(uint32_t flags)
{
	tg_proc.enabled = 0;
	tg_proc.pid = getpid();
	if (!sock_path[0])
		return;
	int memfd = make_ring();
	if (memfd < 0)
		return;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		goto fail;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	memcpy(sun.sun_path, sock_path, sizeof sun.sun_path);
	if (connect(s, (struct sockaddr *)&sun, sizeof sun) < 0)
		goto fail;

	struct tg_hello hello = {
		.magic = TG_HELLO_MAGIC,
		.version = TG_RING_VERSION,
		.pid = tg_proc.pid,
		.ppid = getppid(),
		.flags = flags,
		.ring_bytes = tg_proc.ring_map_bytes,
		.mono_ns = tg_now_ns(),
	};
	struct iovec iov = {.iov_base = &hello, .iov_len = sizeof hello};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof u.buf};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &memfd, sizeof memfd);
	if (tg_real.sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof hello)
		goto fail;
	tg_real.close(memfd);
	tg_proc.sock = s;
	tg_proc.enabled = 1;
	return;
fail:
	if (s >= 0)
		tg_real.close(s);
	tg_real.close(memfd);
	drop_ring();
}

static void after_fork_child(void)
{
	/* The parent's ring and registration belong to the parent: a child
	 * that wrote to them would be counted as its parent. */
	int was_enabled = tg_proc.enabled;
	tg_proc.enabled = 0;
	if (tg_proc.sock >= 0)
		tg_real.close(tg_proc.sock);
	tg_proc.sock = -1;
	drop_ring();
	tg_conns_after_fork();
	if (was_enabled)
		register_process(TG_HELLO_AFTER_FORK);
	tg_sampler_after_fork();
}

/* Called by the close/dup2/dup3 hooks: keeps the app from closing the
 * registration socket (daemons close every fd), or moves it out of the way
 * when the app dup2()s onto its number. Returns 1 if fd was ours and the
 * caller must pretend to have closed it. */
int tg_protect_fd(int fd, int moving);
int tg_protect_fd(int fd, int moving)
{
	if (TG_LIKELY(fd != tg_proc.sock || fd < 0))
		return 0;
	if (!moving)
		return 1;
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, 64);
	if (moved >= 0) {
		tg_proc.sock = moved;
		return 0; /* the app's dup2 now closes the old number */
	}
	return 0;
}

void tg_exec_init(const char *sock);

__attribute__((constructor)) static void tg_init(void)
{
	int saved = errno;
	tg_resolve();
	tg_proc.pid = getpid();
	const char *s = getenv("TIMEGLASS_SOCK");
	tg_exec_init(s ? s : "");
	if (s && *s && strlen(s) < sizeof sock_path) {
		memcpy(sock_path, s, strlen(s) + 1);
		ring_data_bytes = env_ring_bytes();
		/* Secret query parameters added to the defaults (--redact-param):
		 * before any socket is followed. */
		tg_http_redact_params(getenv("TIMEGLASS_REDACT_PARAMS"));
		tg_http_set_pipe_bytes((size_t)tg_getenv_uint("TIMEGLASS_PIPELINE_KB", 1024, 1, 1u << 20) * 1024);
		if (tg_conns_init() == 0) {
			pthread_atfork(tg_sampler_before_fork, tg_sampler_after_fork_parent, after_fork_child);
			register_process(0);
			tg_sampler_start();
		}
	}
	errno = saved;
}
