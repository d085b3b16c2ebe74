/*
 * unwind.c - native stacks for the sampler (`timeglass run --native`,
 * TIMEGLASS_NATIVE=1): the sampler thread sends a signal to the thread it
 * samples (tgkill); the handler, on that thread, unwinds its own stack from
 * the interrupted context with libunwind's local unwinder and writes the
 * instruction addresses into a preallocated slot; the sampler copies them
 * into the sample record. Names are found later, in the collector
 * (symbolize/).
 *
 * The handler is async-signal-safe: no allocation, no lock of ours, at most
 * TG_NATIVE_MAX frames; errno is kept. It uses libunwind's fast path
 * (unw_backtrace: frame shapes cached per thread, ~2.5 us for 64 frames on
 * the test VM) and falls back to the DWARF unwinder (unw_init_local2 from
 * the interrupted context, unw_step: ~17 us) when the interrupted
 * instruction is not found in the fast trace. The sampler waits for it a bounded
 * time (WAIT_NS); a handler that has not started by then is cancelled, one
 * still running keeps its slot busy (that thread gets no native frames until
 * it finishes) and the sample goes without native frames (counted). The
 * sampler sleeps on the slot (futex) while it waits; the handler wakes it.
 * Built only with the native_unwind feature (libunwind); otherwise the
 * functions below are stubs that say "not available". libunwind is loaded
 * with dlopen by tg_unwind_init(), only under --native: other processes do
 * not load it.
 *
 * Signal: SIGRTMIN + 5, with SA_RESTART; used only if the app has not
 * installed a handler for it. A signal can still end a blocking call that
 * the kernel never restarts (epoll_wait, poll, select, nanosleep) with EINTR;
 * CPython retries those (PEP 475).
 */
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tg_preload.h"
#include "unwind.h"

#ifdef TG_HAVE_NATIVE
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define SLOTS 256               /* threads with a slot of their own (by tid hash) */
#define TG_STR_(x) #x
#define TG_STR(x) TG_STR_(x)    /* the real (per-architecture) name of a libunwind macro */
#define WAIT_NS 2000000ull      /* the sampler waits this long for a handler */

enum { SLOT_IDLE, SLOT_ASKED, SLOT_FILLING, SLOT_DONE };

struct slot {
	uint32_t tid;   /* thread the request is for; set by the sampler while IDLE */
	int state;      /* SLOT_*, atomic */
	int n;          /* addresses written */
	uint64_t ips[TG_NATIVE_MAX];
};

static struct slot slots[SLOTS];
static int sig_no;
static int active;

/* libunwind, from dlopen */
static int (*u_getcontext)(unw_context_t *);
static int (*u_init_local)(unw_cursor_t *, unw_context_t *);
static int (*u_init_local2)(unw_cursor_t *, unw_context_t *, int);
static int (*u_step)(unw_cursor_t *);
static int (*u_get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
static int (*u_backtrace)(void **, int);

static int load_libunwind(void)
{
	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen("libunwind.so", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return -1;
	u_getcontext = (int (*)(unw_context_t *))dlsym(h, TG_STR(unw_tdep_getcontext));
	u_init_local = (int (*)(unw_cursor_t *, unw_context_t *))dlsym(h, TG_STR(unw_init_local));
	u_init_local2 = (int (*)(unw_cursor_t *, unw_context_t *, int))dlsym(h, TG_STR(unw_init_local2));
	u_step = (int (*)(unw_cursor_t *))dlsym(h, TG_STR(unw_step));
	u_get_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))dlsym(h, TG_STR(unw_get_reg));
	u_backtrace = (int (*)(void **, int))dlsym(h, "unw_backtrace"); /* optional: the fast path */
	return u_getcontext && u_init_local && u_init_local2 && u_step && u_get_reg ? 0 : -1;
}

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	int saved = errno;
	uint32_t tid = (uint32_t)syscall(SYS_gettid);
	struct slot *s = &slots[tid % SLOTS];
	int want = SLOT_ASKED;
	if (__atomic_load_n(&s->tid, __ATOMIC_ACQUIRE) != tid ||
	    !__atomic_compare_exchange_n(&s->state, &want, SLOT_FILLING, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		errno = saved;
		return; /* not asked, or the request was cancelled */
	}
	int n = 0;
#if defined(__x86_64__)
	/* Fast path: libunwind's frame-shape cache (unw_backtrace), from this
	 * handler through the signal frame; keep what lies from the
	 * interrupted instruction on. */
	if (u_backtrace) {
		void *buf[TG_NATIVE_MAX + 8];
		int m = u_backtrace(buf, TG_NATIVE_MAX + 8);
		uintptr_t pc = (uintptr_t)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];
		for (int i = 0; i < m && i < 8; i++)
			if ((uintptr_t)buf[i] == pc) {
				for (int j = i; j < m && n < TG_NATIVE_MAX; j++)
					s->ips[n++] = (uint64_t)(uintptr_t)buf[j];
				break;
			}
	}
#endif
	unw_cursor_t cur;
	if (!n && u_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) == 0) {
		do {
			unw_word_t ip = 0;
			if (u_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0)
				break;
			s->ips[n++] = (uint64_t)ip;
		} while (n < TG_NATIVE_MAX && u_step(&cur) > 0);
	}
	s->n = n;
	__atomic_store_n(&s->state, SLOT_DONE, __ATOMIC_RELEASE);
	syscall(SYS_futex, &s->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); /* the sampler may wait */
	errno = saved;
}

int tg_unwind_init(void)
{
	if (!tg_getenv_flag("TIMEGLASS_NATIVE", 0))
		return -1;
	if (active)
		return 0;
	int sig = SIGRTMIN + 5;
	struct sigaction old;
	if (sig > SIGRTMAX || sigaction(sig, NULL, &old) < 0 ||
	    (old.sa_handler != SIG_DFL && old.sa_sigaction != on_signal))
		return -1; /* the app uses it */
	if (load_libunwind() < 0)
		return -1;
	/* Unwind once here: libunwind sets itself up on first use, which is
	 * not something to do inside a signal handler. */
	unw_context_t ctx;
	unw_cursor_t cur;
	if (u_getcontext(&ctx) == 0 && u_init_local(&cur, &ctx) == 0)
		while (u_step(&cur) > 0)
			;
	if (u_backtrace) {
		void *buf[8];
		u_backtrace(buf, 8);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0)
		return -1;
	sig_no = sig;
	active = 1;
	return 0;
}

int tg_unwind_active(void)
{
	return active;
}

void tg_unwind_after_fork(void)
{
	memset(slots, 0, sizeof slots); /* requests of the parent's sampler */
}

int tg_unwind_capture(uint32_t tid, uint64_t *ips, int max)
{
	if (!active)
		return -1;
	struct slot *s = &slots[tid % SLOTS];
	int st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
	if (st == SLOT_DONE) /* a late answer to an old request */
		__atomic_store_n(&s->state, st = SLOT_IDLE, __ATOMIC_RELEASE);
	if (st != SLOT_IDLE)
		return -2; /* a handler is still running on that thread */
	__atomic_store_n(&s->tid, tid, __ATOMIC_RELEASE);
	__atomic_store_n(&s->state, SLOT_ASKED, __ATOMIC_RELEASE);
	int saved = errno;
	if (syscall(SYS_tgkill, (int)getpid(), (int)tid, sig_no) < 0) {
		__atomic_store_n(&s->state, SLOT_IDLE, __ATOMIC_RELEASE);
		errno = saved;
		return -1;
	}
	uint64_t start = tg_now_ns();
	for (unsigned spin = 0;; spin++) {
		st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
		if (st == SLOT_DONE)
			break;
		if (tg_now_ns() - start > WAIT_NS) {
			/* Cancel; if the handler has begun, the slot stays busy
			 * until it is done. */
			int want = SLOT_ASKED;
			__atomic_compare_exchange_n(&s->state, &want, SLOT_IDLE, 0, __ATOMIC_ACQ_REL,
						    __ATOMIC_ACQUIRE);
			errno = saved;
			return -1;
		}
		if (spin < 64) {
			__builtin_ia32_pause();
		} else {
			/* Sleep until the handler is done (it wakes us) or the
			 * time is up: the thread may need this CPU to run. */
			uint64_t left = WAIT_NS - (tg_now_ns() - start);
			struct timespec d = {(time_t)(left / 1000000000ull), (long)(left % 1000000000ull)};
			if (st == SLOT_ASKED || st == SLOT_FILLING)
				syscall(SYS_futex, &s->state, FUTEX_WAIT_PRIVATE, st, &d, NULL, 0);
		}
	}
	int n = s->n < max ? s->n : max;
	memcpy(ips, s->ips, (size_t)n * sizeof ips[0]);
	__atomic_store_n(&s->state, SLOT_IDLE, __ATOMIC_RELEASE);
	errno = saved;
	return n;
}

#else /* !TG_HAVE_NATIVE */

int tg_unwind_init(void)
{
	return -1;
}

int tg_unwind_active(void)
{
	return 0;
}

void tg_unwind_after_fork(void)
{
}

int tg_unwind_capture(uint32_t tid, uint64_t *ips, int max)
{
	(void)tid;
	(void)ips;
	(void)max;
	return -1;
}

#endif
