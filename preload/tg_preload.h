/*
 * tg_preload.h - internals shared by the files of libtimeglass.so.
 *
 * preload.c owns the process state (real-function table, ring, registration
 * with the collector, fork handling); conn.c owns the table of tracked
 * connections and feeds the HTTP parser; hooks.c holds the exported wrappers,
 * which only call the real function and, for tracked fds, hand the bytes on.
 * Nothing here is exported from the library (see libtimeglass.map).
 */
#ifndef TG_PRELOAD_H
#define TG_PRELOAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "common/ring.h"

#define TG_LIKELY(x) __builtin_expect(!!(x), 1)
#define TG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TG_TLS __thread __attribute__((tls_model("initial-exec")))

/* The libc functions we wrap, resolved once with dlsym(RTLD_NEXT). */
struct tg_real {
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*close)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off_t *, size_t);
	long (*syscall)(long, ...);
	int (*close_range)(unsigned, unsigned, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
};

extern struct tg_real tg_real;

/* glibc's fortified entry points, declared by its headers only under
 * _FORTIFY_SOURCE; we define and resolve them either way. */
ssize_t __read_chk(int, void *, size_t, size_t);
ssize_t __recv_chk(int, void *, size_t, size_t, int);
ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
extern int tg_real_ready;

/* Resolves tg_real once (idempotent, thread-safe). Hooks call it when they
 * run before the library's constructor. */
void tg_resolve(void);

#define TG_REAL(fn) (TG_LIKELY(tg_real_ready) ? (void)0 : tg_resolve(), tg_real.fn)

/* Process state, owned by preload.c. */
struct tg_proc {
	pid_t pid;
	int enabled;   /* registered with a collector: record events */
	int sock;      /* registration socket kept open until exit, -1 if none */
	struct tg_ring ring;
	void *ring_map;
	size_t ring_map_bytes;
};
extern struct tg_proc tg_proc;

/* Appends a record to the process ring (drops and counts it when full). */
static inline void *tg_reserve(uint32_t size)
{
	return tg_ring_reserve(&tg_proc.ring, size);
}

static inline uint64_t tg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- Python stack sampler (sampler.c) ---- */

/* Starts the sampler thread when this process runs a supported CPython and
 * is traced (TIMEGLASS_SAMPLE_HZ, default 1000, 0 = off). */
void tg_sampler_start(void);

/* In a fork child, after registration: a sampler of the child's own. */
void tg_sampler_after_fork(void);

/* pthread_atfork prepare and parent: the sampler thread is not running
 * while fork() returns in the parent; it comes back a little later, when a
 * hook calls tg_sampler_poll() (sampler.c). */
void tg_sampler_before_fork(void);
void tg_sampler_after_fork_parent(void);
void tg_sampler_restart(void);
extern uint64_t tg_sampler_restart_at;

/* While the app is idle the sampler dozes (sampler.c); the hooks that see
 * the app take up work (a read, an accept, a close) wake it. */
void tg_sampler_wake(void);
extern uint32_t tg_sampler_dozing;

static inline void tg_sampler_poll(void)
{
	if (TG_UNLIKELY(__atomic_load_n(&tg_sampler_restart_at, __ATOMIC_RELAXED) != 0))
		tg_sampler_restart();
	if (TG_UNLIKELY(__atomic_load_n(&tg_sampler_dozing, __ATOMIC_RELAXED) != 0))
		tg_sampler_wake();
}

/* Eval-driven sampling (pytrace.c calls these from its eval-frame hook, GIL
 * held): a sample of the calling thread, whose PyThreadState is tstate,
 * standing for weight period boundaries (0: the thread's first event, only
 * its baseline); code and frame, when not 0, are those of a call that just
 * returned, shown innermost. tg_sampler_eval_on() stops the sampler thread's
 * own passes. */
void tg_sampler_eval_sample(uintptr_t tstate, uint32_t weight, uintptr_t code, uintptr_t frame);
void tg_sampler_eval_on(unsigned hz);

/* Parses a textual client address (marker calls) into addr; returns
 * AF_INET or AF_INET6, or 0 (addr zeroed) when it is not an IP address. */
uint8_t tg_parse_host(const char *host, uint8_t addr[16]);

/* Kernel thread id of the caller, cached per thread. */
uint32_t tg_tid(void);

/* ---- tracked connections (conn.c) ---- */

struct tg_conn;

/* Table of tracked connections indexed by fd; NULL = not tracked. */
extern _Atomic(struct tg_conn *) *tg_conns;
extern unsigned tg_nconns;

static inline struct tg_conn *tg_conn_get(int fd)
{
	if (TG_LIKELY((unsigned)fd >= tg_nconns))
		return NULL;
	return atomic_load_explicit(&tg_conns[fd], memory_order_acquire);
}

/* Allocates the table. Returns 0, -1 on ENOMEM (then nothing is tracked). */
int tg_conns_init(void);

/* A connection was accepted on fd; addr is the peer (may be NULL). */
void tg_conn_accepted(int fd, const struct sockaddr *addr, socklen_t addrlen);

/* The app read r bytes (r may be 0 for EOF or -1 with errno) into the iovec. */
void tg_conn_read(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, ssize_t r);

/* The app is about to write the iovec (iov NULL: `opaque` bytes of unknown
 * content, sendfile) at time t0: inbound connections parse it now. */
void tg_conn_write_before(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t opaque,
			  uint64_t t0);

/* The write returned r (bytes taken, or -1 with errno); arguments as
 * given to tg_conn_write_before(). */
void tg_conn_write(struct tg_conn *c, int fd, const struct iovec *iov, int iovcnt, size_t opaque, ssize_t r,
		   uint64_t t0);

/* fd is about to be closed (or replaced by dup2/dup3). */
void tg_conn_closing(int fd);

/* Every tracked fd in [first, last] is about to be closed (close_range). */
void tg_conn_closing_range(unsigned first, unsigned last);

/* In a fork child: reset locks so inherited connections stay usable. */
void tg_conns_after_fork(void);

/* Bytes that never reach a tracked connection: count an untracked conn. */
void tg_count_untracked(void);
/* Counts n requests followed without details (deep pipelining): each is a
 * request missing from the store, reported as the pipeline_overflow loss. */
void tg_count_lost_requests(uint64_t n);

/* TIMEGLASS_* settings (env.c), read strictly as `timeglass run` checks
 * them: unset or empty gives def; a value out of [min, max] is clamped and
 * one that is not a plain decimal integer gives def, both said once on
 * stderr. A flag is 1/yes/true/on or 0/no/false/off (any case), else def
 * (said once). A percentage is digits with at most one decimal point,
 * clamped to 100, else def (said once). */
unsigned long tg_getenv_uint(const char *name, unsigned long def, unsigned long min, unsigned long max);
int tg_getenv_flag(const char *name, int def);
double tg_getenv_percent(const char *name, double def);

#endif
