/*
 * sampler.c - the Python stack sampler: one thread per traced Python process
 * that, every 1/rate seconds, reads every Python thread's frame chain
 * (pyframes.c, safe reads, no GIL) and appends one TG_EV_SAMPLE per thread to
 * the process ring, preceded by a TG_EV_CODE the first time a code object is
 * seen (event_py.h).
 *
 * Running or waiting: each sample carries the thread's CPU time used since
 * its previous sample (a per-thread CPU clock read with clock_gettime, one
 * system call, no /proc parsing); a thread that used less than half of the
 * wall interval on CPU is labelled waiting (blocked in epoll, on a socket, a
 * lock or the GIL), else running. The collector sums cpu_ns per request.
 *
 * Unchanged stacks are not walked again: a thread whose CPU clock has not
 * moved since its previous sample cannot have changed its stack (it ran no
 * code), so that sample is sent again, labelled waiting; a running thread
 * whose two innermost frames (address, code object, instruction) are those
 * of its previous sample is taken to have the same stack (two frame reads
 * instead of a walk; the usual case of a thread inside a long C call), for
 * at most REUSE_MAX samples in a row: then a full walk, since a deeper
 * caller can change under an unchanged leaf.
 *
 * CPU budget: the sampler measures its own CPU time every BUDGET_WINDOW_NS
 * and, when it used more than TIMEGLASS_SAMPLE_BUDGET (percent of one core,
 * default 5, 0 = no limit), lowers its rate to fit (never below MIN_HZ); it
 * raises it again, up to the rate asked for, when well under. A lowered rate
 * is said in the TG_EV_PY_INFO records (rate_hz < target_hz, budget_skipped),
 * written at once when the rate changes. On a VM one wakeup of a sleeping
 * thread costs ~15 us of CPU whatever the work done, so 10 kHz costs ~15% of
 * a core before any stack is read: the budget is what bounds it.
 *
 * Dozing: after DOZE_AFTER ticks in a row in which no thread ran any code
 * (an app waiting for work), the sampler sleeps up to TIMEGLASS_SAMPLE_DOZE_MS
 * (default 100, 0 = never) instead of waking every period: the next read,
 * accept or close of the app (hooks.c, tg_sampler_poll) wakes it at once.
 * The pass after a doze stands for the ticks it skipped: a thread that ran
 * no code sends its kept sample with that weight (its stack cannot have
 * changed); a thread that ran sends its kept stack, waiting, for the ticks
 * before it ran, and its stack now for the rest (sample_thread). An idle
 * app's sampler thus wakes a few dozen times a second rather than 1,000, and
 * its samples say the same.
 *
 * Native frames (--native, TIMEGLASS_NATIVE=1): before walking a thread
 * that ran, the sampler asks it for its native stack (unwind.c: a signal,
 * libunwind in the handler, bounded wait); the addresses follow the Python
 * frames in the sample (TG_SAMPLEF_NATIVE). A thread that does not answer
 * three times in a row is not asked again for about 100 ms. The innermost-frame shortcut is
 * off in this mode (the native stack may have changed under it).
 *
 * Costs and bounds: at most MAX_THREADS threads and MAX_FRAMES frames per
 * tick; a stack that changes under the reader is dropped and counted; the
 * thread blocks every signal, never allocates after start, never takes a lock
 * the app can hold, and does not keep the process alive. After fork the
 * child starts its own sampler (tg_sampler_after_fork).
 *
 * Fork: the thread is stopped and joined before fork() (pthread_atfork
 * prepare; it sleeps on a futex, so it wakes at once) and restarted in the
 * parent only 10 ms later, by the next socket or file hook that runs
 * (tg_sampler_poll): CPython 3.12+ counts the process's threads right after
 * fork() returns in the parent and warns (DeprecationWarning, an error under
 * -W error) when there is more than one, and the sampler must not be the
 * thread that makes a single-threaded app's fork look unsafe.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/event_py.h"
#include "pyframes.h"
#include "tg_preload.h"
#include "unwind.h"

#define MAX_THREADS 256
#define MAX_FRAMES 1024
#define RD_SLOTS 64            /* page cache of one tick: 256 KiB */
#define CODE_SLOTS 8192        /* code objects remembered as already sent */
#define TABLE_CAP 8192         /* bytes of co_linetable sent per code object */
#define INFO_EVERY_NS 1000000000ull
#define RECHECK_NS 50000000ull /* identity of a known code object re-read this often */
#define KEEP_FRAMES 128        /* a thread's previous stack is kept for reuse up to this depth */
#define BUDGET_WINDOW_NS 100000000ull /* the sampler's CPU use is checked this often */
#define MIN_HZ 50u             /* the budget never lowers the rate below this */
#define REUSE_MAX 8            /* the shortcut's samples in a row before a full walk */
#define DOZE_AFTER 2           /* idle ticks in a row before the sampler dozes */

/* The eval-clocked sampler's rate (pytrace.c). */
void tg_trace_eval_rate(unsigned hz) __attribute__((weak));

/* Request scope, provided by scope.c when it is linked in. */
uint64_t tg_scope_of_frames(const uintptr_t *frames, int n) __attribute__((weak));
uint64_t tg_scope_of_thread(uint32_t tid) __attribute__((weak));

void tg_sampler_start(void);
void tg_sampler_after_fork(void);

struct thr_state {
	uint32_t tid;
	uint64_t cpu_ns;  /* thread CPU time at its previous sample */
	uint64_t wall_ns; /* CLOCK_MONOTONIC at its previous sample */
	uint64_t tick;    /* last tick it was seen */
	/* Its previous sample, sent again while the stack is unchanged. */
	uintptr_t kept_top;   /* innermost frame address (_PyInterpreterFrame *) */
	uint64_t kept_scope;
	uint16_t kept_n;      /* 0: nothing kept */
	uint8_t kept_flags;
	uint8_t kept_nn;      /* native frames kept (--native) */
	uint64_t native_off_until; /* tick before which it is not asked for native frames */
	uint8_t native_misses;     /* requests in a row it did not answer */
	uint8_t reuse_run;         /* samples in a row taken by the innermost-frames shortcut */
	struct tg_ev_pyframe kept[KEEP_FRAMES];
	uintptr_t kept_addrs[KEEP_FRAMES]; /* their frame addresses: the request scope is found again */
	uint64_t kept_native[TG_NATIVE_MAX];
};

struct code_slot {
	uintptr_t code;
	uint64_t ident;
	uint64_t checked; /* tick of the last identity check */
};

/* The sampler thread, its futex (bumped to wake it) and the fork stop. */
static pthread_t smp_thread;
static uint32_t smp_tid;
static uint32_t smp_wake;
static int smp_stopped_for_fork;
uint64_t tg_sampler_restart_at; /* CLOCK_MONOTONIC ns; 0: nothing to restart */
uint32_t tg_sampler_dozing;     /* 1 while the sampler dozes: the next hook wakes it */

static struct {
	unsigned rate_hz;       /* rate in force */
	unsigned target_hz;     /* rate asked for */
	uint32_t budget_ppm;    /* CPU budget, millionths of one core; 0 = none */
	uint64_t doze_ns;       /* longest doze (0: never doze) */
	uint64_t recheck_ticks; /* RECHECK_NS in ticks */
	int started;
	uint64_t gen; /* bumped on fork: a stale thread exits */
	/* counters (sampler thread only) */
	uint64_t ticks, samples, dropped, truncated, codes, ring_full, overruns;
	uint64_t budget_skipped, reused, native_missed;
	int eval_mode;      /* 1: the threads sample themselves (tg_sampler_eval_sample) */
	uint64_t eval_busy; /* eval samples skipped: the buffers were in use */
	uint64_t eval_cost_ns; /* wall time the threads spent taking eval samples */
} S;

/* Sampler-thread-only buffers (static: no allocation while sampling). */
static uintptr_t rd_tags[RD_SLOTS];
static uint8_t rd_pages[RD_SLOTS * 4096];
static struct tg_py_thread threads[MAX_THREADS];
static struct thr_state tstates[MAX_THREADS];
static struct tg_py_frame frames[MAX_FRAMES];
static uintptr_t frame_addrs[MAX_FRAMES];
static struct code_slot codes[CODE_SLOTS];
static uint8_t table_buf[TABLE_CAP];
static struct tg_py_code_info code_info;
static struct tg_ev_pyframe out_frames[MAX_FRAMES];
#define EVAL_RD_SLOTS 4
static uintptr_t eval_rd_tags[EVAL_RD_SLOTS];
static uint8_t eval_rd_pages[EVAL_RD_SLOTS * 4096];

/* Held for a pass over the stacks (sampler thread) or for one eval-hook
 * sample (an app thread): the buffers and tables above are shared. Never
 * waited for by an app thread: a sample that finds it taken is skipped. */
static int busy;

static int lock_try(void)
{
	return !__atomic_exchange_n(&busy, 1, __ATOMIC_ACQUIRE);
}

static void lock_release(void)
{
	__atomic_store_n(&busy, 0, __ATOMIC_RELEASE);
}


/* CPU time of thread tid of this process, 0 if unknown. */
static uint64_t thread_cpu_ns(uint32_t tid)
{
	/* The kernel's per-thread CPU clock id (as pthread_getcpuclockid
	 * builds it): ~tid << 3 | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED. */
	clockid_t id = (clockid_t)((~(unsigned)tid << 3) | 4 | 2);
	struct timespec ts;
	if (clock_gettime(id, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t own_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct thr_state *thread_slot(uint32_t tid)
{
	unsigned h = (tid * 2654435761u) % MAX_THREADS;
	for (unsigned i = 0; i < MAX_THREADS; i++) {
		struct thr_state *t = &tstates[(h + i) % MAX_THREADS];
		if (t->tid == tid)
			return t;
		if (t->tid == 0 || t->tick + 100 < S.ticks) { /* empty, or gone for 100 ticks */
			memset(t, 0, sizeof *t);
			t->tid = tid;
			return t;
		}
	}
	return NULL;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* Sends a TG_EV_CODE for code unless this exact object was sent before.
 * A code object seen before is checked again (type and identity, against
 * address reuse) when its last check is RECHECK_NS old: in between, a frame
 * pointing at a known code address costs no read of the code object.
 * Returns 0, -1 if the object could not be read (the sample is dropped). */
static int note_code(struct tg_py_rd *rd, uintptr_t code)
{
	/* 4-way set: the entry of code, else an empty one, else the least
	 * recently checked. */
	unsigned h = (unsigned)mix(code) & (CODE_SLOTS - 1) & ~3u;
	struct code_slot *c = NULL;
	for (unsigned i = 0; i < 4; i++) {
		struct code_slot *e = &codes[h + i];
		if (e->code == code) {
			c = e;
			break;
		}
		if (!c || (c->code && (!e->code || e->checked < c->checked)))
			c = e;
	}
	if (c->code == code && S.ticks - c->checked < S.recheck_ticks)
		return 0; /* known, and checked recently */
	uint64_t ident;
	if (tg_py_code_ident(rd, code, &ident) < 0)
		return -1;
	if (c->code == code && c->ident == ident) {
		c->checked = S.ticks;
		return 0;
	}
	if (tg_py_code_info(rd, code, &code_info, table_buf, sizeof table_buf) < 0)
		return -1;
	size_t ql = strlen(code_info.qualname), fl = strlen(code_info.filename);
	uint32_t size = (uint32_t)((sizeof(struct tg_ev_code) + ql + fl + code_info.table_len + 7) & ~7ul);
	struct tg_ev_code *ev = tg_reserve(size);
	if (!ev) {
		S.ring_full++;
		return -1; /* not sent: do not remember it */
	}
	ev->code = code;
	ev->ident = ident;
	ev->firstlineno = code_info.firstlineno;
	ev->py_version = tg_py_version();
	ev->qualname_len = (uint16_t)ql;
	ev->filename_len = (uint16_t)fl;
	ev->table_len = code_info.table_len;
	char *d = (char *)(ev + 1);
	memcpy(d, code_info.qualname, ql);
	memcpy(d + ql, code_info.filename, fl);
	memcpy(d + ql + fl, table_buf, code_info.table_len);
	size_t used = sizeof *ev + ql + fl + code_info.table_len;
	memset((char *)ev + used, 0, size - used);
	tg_ring_commit(ev, size, TG_EV_CODE, 0);
	S.codes++;
	c->code = code;
	c->ident = ident;
	c->checked = S.ticks;
	return 0;
}

/* Appends one TG_EV_SAMPLE of n frames f (innermost first). Returns 0, -1
 * when the ring is full. */
static int emit_sample(uint32_t tid, int running, uint8_t flags, uint64_t now, uint64_t scope, uint64_t cpu_d,
		       uint64_t wall_d, const struct tg_ev_pyframe *f, int n, const uint64_t *nat, int nn,
		       uint32_t weight)
{
	if (nn > 0)
		flags |= TG_SAMPLEF_NATIVE;
	else
		flags &= (uint8_t)~TG_SAMPLEF_NATIVE;
	uint32_t size = (uint32_t)(sizeof(struct tg_ev_sample) + (size_t)n * sizeof(struct tg_ev_pyframe));
	if (nn > 0)
		size += (uint32_t)(sizeof(struct tg_ev_native) + (size_t)nn * sizeof(uint64_t));
	struct tg_ev_sample *ev = tg_reserve(size);
	if (!ev) {
		S.ring_full++;
		return -1;
	}
	ev->tid = tid;
	ev->state = running ? TG_PYSTATE_RUNNING : TG_PYSTATE_WAITING;
	ev->flags = flags;
	ev->nframes = (uint16_t)n;
	ev->ts_ns = now;
	ev->scope = scope;
	ev->cpu_ns = cpu_d;
	ev->interval_ns = wall_d;
	ev->weight = weight;
	ev->reserved = 0;
	memcpy(ev + 1, f, (size_t)n * sizeof *f);
	if (nn > 0) {
		struct tg_ev_native *nh = (struct tg_ev_native *)((struct tg_ev_pyframe *)(ev + 1) + n);
		nh->n = (uint32_t)nn;
		nh->flags = nn >= TG_NATIVE_MAX ? TG_NATIVE_TRUNCATED : 0;
		memcpy(nh + 1, nat, (size_t)nn * sizeof *nat);
	}
	tg_ring_commit(ev, size, TG_EV_SAMPLE, 0);
	S.samples++;
	if (flags & TG_SAMPLEF_TRUNCATED)
		S.truncated++;
	return 0;
}

/* The request a thread works for (timeglass_thread_enter), 0 if none. */
static uint64_t thread_scope(uint32_t tid)
{
	return tg_scope_of_thread ? tg_scope_of_thread(tid) : 0;
}

/* The request of a stack (its frames' addresses), else of its thread: the
 * one it worked for when its frames were read, which began after `before`
 * (thread_scope() then). A thread that took up or left a job meanwhile
 * (a worker between two requests) has frames of either, or of none: no
 * request rather than the wrong one. */
static uint64_t scope_of(const uintptr_t *addrs, int n, uint32_t tid, uint64_t before)
{
	uint64_t scope = tg_scope_of_frames ? tg_scope_of_frames(addrs, n) : 0;
	if (!scope) {
		scope = thread_scope(tid);
		if (scope != before)
			scope = 0;
	}
	return scope;
}

/* frames[0..n) as a sample's frames (out_frames) and their addresses
 * (frame_addrs), returning the stack's request scope (before: as for
 * scope_of). */
static uint64_t export_frames(int n, uint32_t tid, uint64_t before)
{
	for (int i = 0; i < n; i++) {
		frame_addrs[i] = frames[i].frame;
		out_frames[i] = (struct tg_ev_pyframe){.code = frames[i].code, .lasti = frames[i].lasti,
						       .flags = frames[i].entry ? TG_PYFRAME_ENTRY : 0};
	}
	return scope_of(frame_addrs, n, tid, before);
}

/* Whether the stack just read (out_frames[0..n)) is thread slot ts's kept one. */
static int same_as_kept(const struct thr_state *ts, int n)
{
	if (ts->kept_n != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (out_frames[i].code != ts->kept[i].code || out_frames[i].lasti != ts->kept[i].lasti)
			return 0;
	return 1;
}

/* After a doze of doze_w ticks in which thread tid (slot ts) ran, doze_ran
 * of them by its CPU time: this pass's stack stands for those when it is
 * the work's (not the kept stack: !same, or the same one still running,
 * its CPU clock past cpu), else for the last only; the kept stack, waiting,
 * for the ticks before. *weight, *wall_d and *running are set for this
 * pass's sample. */
static void doze_rest(uint32_t tid, const struct thr_state *ts, uint64_t now, uint32_t doze_w, uint32_t doze_ran,
		      int same, uint64_t cpu, uint64_t cpu_d, uint32_t *weight, uint64_t *wall_d, int *running)
{
	uint32_t mine = doze_ran > 1 && (!same || thread_cpu_ns(tid) != cpu) ? doze_ran : 1;
	uint64_t period = *wall_d / doze_w;
	if (mine < doze_w)
		emit_sample(tid, 0, ts->kept_flags, now - mine * period, ts->kept_scope, 0, *wall_d - mine * period,
			    ts->kept, ts->kept_n, ts->kept_native, ts->kept_nn, doze_w - mine);
	*weight = mine;
	*wall_d = mine * period;
	*running = cpu_d * 2 >= *wall_d;
}

/* Samples thread th. weight: the ticks this pass stands for (more than 1
 * after a doze). Returns 1 if the thread ran no code since its previous
 * sample (its kept sample was sent again), else 0. */
static int sample_thread(struct tg_py_rd *rd, const struct tg_py_thread *th, uint64_t now, uint32_t weight)
{
	struct thr_state *ts = thread_slot(th->tid);
	uint64_t cpu = thread_cpu_ns(th->tid);
	uint64_t cpu_d = 0, wall_d = 0, prev_cpu = 0;
	if (ts && ts->wall_ns) {
		wall_d = now - ts->wall_ns;
		cpu_d = cpu > ts->cpu_ns ? cpu - ts->cpu_ns : 0;
		prev_cpu = ts->cpu_ns;
	}
	if (ts) {
		ts->cpu_ns = cpu;
		ts->wall_ns = now;
		ts->tick = S.ticks;
	}
	int running;
	if (wall_d)
		running = cpu_d * 2 >= wall_d;
	else
		running = th->holds_gil == 1;

	/* Ran no code since its previous sample: the same stack, waiting. */
	if (ts && ts->kept_n && cpu && cpu == prev_cpu) {
		if (emit_sample(th->tid, 0, ts->kept_flags, now, ts->kept_scope, 0, wall_d, ts->kept, ts->kept_n,
				ts->kept_native, ts->kept_nn, weight) == 0)
			S.reused++;
		return 1;
	}
	/* It ran during a doze: most likely just now (the work that woke the
	 * sampler), else work that began without a read (a timer); how the
	 * doze's ticks are shared between its stacks: doze_rest. */
	uint32_t doze_w = 0, doze_ran = 1;
	if (weight > 1 && ts && ts->kept_n && wall_d) {
		uint64_t ticks = (cpu_d + wall_d / weight / 2) / (wall_d / weight);
		doze_w = weight;
		doze_ran = ticks < 1 ? 1 : ticks >= weight ? weight : (uint32_t)ticks;
	}
	weight = 1;
	int truncated;
	int n;
	int native = tg_unwind_active();
	uint64_t before = thread_scope(th->tid);
	if (ts && ts->kept_n && !native && ts->reuse_run < REUSE_MAX) {
		/* Same two innermost frames (address, code, instruction): taken
		 * as the same stack. Not proof (a deeper caller may have changed
		 * under the same leaf and caller), hence a full walk at least
		 * every REUSE_MAX samples. */
		int want = ts->kept_n < 2 ? ts->kept_n : 2;
		n = tg_py_walk_ex(rd, th->tstate, frames, want, &truncated, 0);
		int same = n == want && frames[0].frame == ts->kept_top;
		for (int i = 0; same && i < n; i++)
			same = frames[i].frame == ts->kept_addrs[i] && frames[i].code == ts->kept[i].code &&
			       frames[i].lasti == ts->kept[i].lasti;
		if (same) {
			ts->reuse_run++;
			if (doze_w)
				doze_rest(th->tid, ts, now, doze_w, doze_ran, 1, cpu, cpu_d, &weight, &wall_d,
					  &running);
			/* The thread ran: its request may have changed (a new
			 * request's frames at the addresses of the last one's). */
			uint64_t scope = scope_of(ts->kept_addrs, ts->kept_n, th->tid, before);
			if (emit_sample(th->tid, running, ts->kept_flags, now, scope, cpu_d, wall_d, ts->kept,
					ts->kept_n, NULL, 0, weight) == 0)
				S.reused++;
			return 0;
		}
		if (doze_w) { /* before the kept stack goes */
			doze_rest(th->tid, ts, now, doze_w, doze_ran, 0, cpu, cpu_d, &weight, &wall_d, &running);
			doze_w = 0;
		}
		ts->kept_n = 0;
	}
	if (ts)
		ts->reuse_run = 0;
	/* Native frames first (the thread runs on between the two reads). */
	static uint64_t nat[TG_NATIVE_MAX];
	int nn = 0;
	if (native && (!ts || S.ticks >= ts->native_off_until)) {
		nn = tg_unwind_capture(th->tid, nat, TG_NATIVE_MAX);
		if (nn == -1 && ts && ++ts->native_misses >= 3) {
			/* No answer three times in a row (the thread blocks the
			 * signal, or its unwinding is slow): not asked again
			 * for a tenth of a second. */
			ts->native_off_until = S.ticks + S.rate_hz / 10;
			ts->native_misses = 0;
		} else if (nn >= 0 && ts) {
			ts->native_misses = 0;
		}
		if (nn < 0) {
			S.native_missed++;
			nn = 0;
		}
	} else if (native) {
		S.native_missed++;
	}
	n = tg_py_walk_ex(rd, th->tstate, frames, MAX_FRAMES, &truncated, 0);
	if (n < 0) {
		S.dropped++;
		return 0;
	}
	if (n == 0)
		return 0; /* no Python code on this thread right now */
	for (int i = 0; i < n; i++)
		if (note_code(rd, frames[i].code) < 0) {
			S.dropped++;
			return 0;
		}
	uint64_t scope = export_frames(n, th->tid, before);
	struct tg_ev_pyframe *out = out_frames;
	uint8_t flags = truncated ? TG_SAMPLEF_TRUNCATED : 0;
	if (doze_w)
		doze_rest(th->tid, ts, now, doze_w, doze_ran, same_as_kept(ts, n), cpu, cpu_d, &weight, &wall_d,
			  &running);
	if (emit_sample(th->tid, running, flags, now, scope, cpu_d, wall_d, out, n, nat, nn, weight) < 0)
		return 0;
	if (ts && n <= KEEP_FRAMES) {
		memcpy(ts->kept, out, (size_t)n * sizeof out[0]);
		memcpy(ts->kept_addrs, frame_addrs, (size_t)n * sizeof frame_addrs[0]);
		memcpy(ts->kept_native, nat, (size_t)nn * sizeof nat[0]);
		ts->kept_nn = (uint8_t)nn;
		ts->kept_n = (uint16_t)n;
		ts->kept_flags = flags;
		ts->kept_scope = scope;
		ts->kept_top = frames[0].frame;
	}
	return 0;
}

/* ---- Eval-driven sampling (--sample-mode eval, pytrace.c) ----
 *
 * The thread samples itself, in the eval-frame hook, holding the GIL: when a
 * Python call starts or ends past the thread's next period boundary, its
 * stack is the one it had since its previous call or return, so one sample
 * weighted by the boundaries crossed stands for all of them. No timer, no
 * wakeup, no signal; the frames are read with plain loads (the thread's own
 * live frames), except the code object of a call that just ended (it may be
 * gone: a safe read). That call's frame is gone too: it is shown at its
 * first line. */

static TG_TLS uint64_t ev_cpu, ev_wall; /* this thread's CPU clock and time at its previous sample */

void tg_sampler_eval_sample(uintptr_t tstate, uint32_t weight, uintptr_t code, uintptr_t frame)
{
	if (!tg_proc.enabled)
		return;
	uint64_t now = tg_now_ns(), cpu = own_cpu_ns();
	if (weight == 0 || !ev_wall) { /* the thread's first event: its baseline */
		ev_cpu = cpu;
		ev_wall = now;
		return;
	}
	uint64_t cpu_d = cpu > ev_cpu ? cpu - ev_cpu : 0, wall_d = now - ev_wall;
	ev_cpu = cpu;
	ev_wall = now;
	if (!lock_try()) {
		__atomic_add_fetch(&S.eval_busy, 1, __ATOMIC_RELAXED);
		return;
	}
	struct tg_py_rd direct = {.direct = 1};
	struct tg_py_rd safe = {.tags = eval_rd_tags, .pages = eval_rd_pages, .nslots = EVAL_RD_SLOTS};
	tg_py_rd_reset(&safe);
	int off = 0, truncated;
	if (code) {
		frames[0] = (struct tg_py_frame){.frame = frame, .code = code, .lasti = 0, .entry = 1};
		off = 1;
	}
	int n = tg_py_walk_ex(&direct, tstate, frames + off, MAX_FRAMES - off, &truncated, 0);
	if (n < 0) {
		S.dropped++;
		goto out;
	}
	n += off;
	if (n == 0)
		goto out; /* no Python code on the thread (a callback from C) */
	for (int i = 0; i < n; i++)
		if (note_code(i < off ? &safe : &direct, frames[i].code) < 0) {
			S.dropped++;
			goto out;
		}
	uint32_t tid = tg_tid();
	/* Its own frames, read between two of its own steps: no race. */
	uint64_t scope = export_frames(n, tid, thread_scope(tid));
	uint8_t flags = TG_SAMPLEF_EVAL | (truncated ? TG_SAMPLEF_TRUNCATED : 0);
	S.ticks++;
	emit_sample(tid, cpu_d * 2 >= wall_d, flags, now, scope, cpu_d, wall_d, out_frames, n, NULL, 0, weight);
out:
	__atomic_add_fetch(&S.eval_cost_ns, tg_now_ns() - now, __ATOMIC_RELAXED);
	lock_release();
}

/* The eval-frame hook is on: the sampler thread stops walking stacks (it
 * still sends the counters). hz is the rate of the hook's boundaries. */
void tg_sampler_eval_on(unsigned hz)
{
	S.rate_hz = S.target_hz = hz;
	S.eval_cost_ns = 0;
	__atomic_store_n(&S.eval_mode, 1, __ATOMIC_RELEASE);
}

static void write_info(void)
{
	struct tg_ev_py_info ev;
	memset(&ev, 0, sizeof ev);
	struct timespec ts;
	ev.py_version = tg_py_version();
	ev.rate_hz = S.rate_hz;
	ev.target_hz = S.target_hz;
	ev.budget_ppm = S.budget_ppm;
	ev.budget_skipped = S.budget_skipped;
	ev.reused = S.reused;
	ev.native_missed = S.native_missed;
	ev.ticks = S.ticks;
	ev.samples = S.samples;
	ev.dropped = S.dropped;
	ev.truncated = S.truncated;
	ev.codes = S.codes;
	ev.ring_full = S.ring_full;
	ev.overruns = S.overruns;
	ev.mode = (uint32_t)__atomic_load_n(&S.eval_mode, __ATOMIC_RELAXED);
	ev.eval_busy = __atomic_load_n(&S.eval_busy, __ATOMIC_RELAXED);
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
		ev.sampler_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	tg_ring_write(&tg_proc.ring, &ev, sizeof ev, TG_EV_PY_INFO);
}

/* The CPU budget, once per window: the new rate, or 0 to keep the rate. */
static unsigned budget_rate(uint64_t cpu_used, uint64_t wall, uint64_t ticks)
{
	if (!S.budget_ppm || !wall)
		return 0;
	if (S.rate_hz < S.target_hz) {
		uint64_t due = wall * S.target_hz / 1000000000ull;
		if (due > ticks)
			S.budget_skipped += due - ticks;
	}
	uint64_t allowed = wall * S.budget_ppm / 1000000ull;
	if (cpu_used > allowed && S.rate_hz > MIN_HZ) {
		/* Aim 10% under the budget: cost is about proportional to rate. */
		uint64_t hz = (uint64_t)S.rate_hz * allowed / cpu_used * 9 / 10;
		return hz < MIN_HZ ? MIN_HZ : (unsigned)hz;
	}
	if (cpu_used * 10 < allowed * 6 && S.rate_hz < S.target_hz) {
		uint64_t hz = (uint64_t)S.rate_hz * 5 / 4 + 1;
		return hz > S.target_hz ? S.target_hz : (unsigned)hz;
	}
	return 0;
}

static void *sampler_main(void *arg)
{
	uint64_t gen = (uint64_t)(uintptr_t)arg;
	__atomic_store_n(&smp_tid, (uint32_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	struct tg_py_rd rd = {.tags = rd_tags, .pages = rd_pages, .nslots = RD_SLOTS};
	uint64_t period = 1000000000ull / S.rate_hz;
	uint64_t next = tg_now_ns() + period, last_info = 0;
	uint64_t win_start = 0, win_cpu = 0, win_ticks = 0;
	uint64_t last_pass = 0; /* time of the previous pass over the stacks */
	unsigned idle = 0;      /* passes in a row in which no thread ran */
	int was_up = 0, was_eval = 0;
	while (__atomic_load_n(&S.gen, __ATOMIC_ACQUIRE) == gen) {
		int doze = S.doze_ns && idle >= DOZE_AFTER && last_pass;
		uint64_t until = doze ? last_pass + S.doze_ns : next;
		struct timespec dl = {.tv_sec = (time_t)(until / 1000000000ull),
				      .tv_nsec = (long)(until % 1000000000ull)};
		/* Until the deadline, or until woken (fork: see the top; a
		 * doze: tg_sampler_wake). The wake count is read before the
		 * doze is shown: a wake in between makes the wait return. */
		uint32_t w = __atomic_load_n(&smp_wake, __ATOMIC_ACQUIRE);
		if (doze)
			__atomic_store_n(&tg_sampler_dozing, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&S.gen, __ATOMIC_ACQUIRE) != gen)
			break;
		syscall(SYS_futex, &smp_wake, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, w, &dl, NULL,
			FUTEX_BITSET_MATCH_ANY);
		if (doze)
			__atomic_store_n(&tg_sampler_dozing, 0, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&S.gen, __ATOMIC_ACQUIRE) != gen)
			break;
		uint64_t now = tg_now_ns();
		uint32_t weight = 1;
		if (doze) {
			/* The ticks slept through, this one included. */
			uint64_t d = (now - last_pass + period / 2) / period;
			weight = d < 1 ? 1 : d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
			next = now;
		} else if (now > next + period) {
			S.overruns++;
			next = now;
		}
		next += period;
		/* Only a pass over the stacks counts towards a doze. */
		unsigned was_idle = idle;
		idle = 0;
		if (!tg_proc.enabled)
			continue;
		if (__atomic_load_n(&S.eval_mode, __ATOMIC_ACQUIRE)) {
			/* The threads sample themselves: only the budget and the
			 * counters, without the lock, which the threads must never
			 * find taken by a sampler thread the machine preempted (their
			 * sample would be lost); the counters are read racily. */
			if (!was_eval) { /* a new baseline: the window counted the thread's CPU */
				win_start = 0;
				was_eval = 1;
			}
			/* The budget holds for the threads' sampling too: its cost
			 * is the time they spent in it. */
			uint64_t cost = __atomic_load_n(&S.eval_cost_ns, __ATOMIC_RELAXED);
			unsigned hz = win_start ? budget_rate(cost - win_cpu, now - win_start, UINT64_MAX) : 0;
			win_start = now;
			win_cpu = cost;
			if (hz && hz != S.rate_hz && tg_trace_eval_rate) {
				S.rate_hz = hz;
				tg_trace_eval_rate(hz);
			}
			write_info();
			next = now + BUDGET_WINDOW_NS;
			continue;
		}
		if (!lock_try())
			continue;
		tg_py_rd_reset(&rd);
		int n = tg_py_threads(&rd, threads, MAX_THREADS);
		if (n < 0) {
			if (was_up) { /* interpreter finalizing: last counters, then rest */
				write_info();
				was_up = 0;
			}
			next = now + 20 * period; /* not up yet (or finalizing): poll slowly */
			lock_release();
			continue;
		}
		was_up = 1;
		S.ticks += weight;
		int ran = n == 0;
		for (int i = 0; i < n; i++)
			ran |= !sample_thread(&rd, &threads[i], now, weight);
		idle = ran ? 0 : was_idle + 1;
		last_pass = now;
		if (now - win_start >= BUDGET_WINDOW_NS) {
			uint64_t cpu = own_cpu_ns();
			unsigned hz = win_start ? budget_rate(cpu - win_cpu, now - win_start, S.ticks - win_ticks) : 0;
			win_start = now;
			win_cpu = cpu;
			win_ticks = S.ticks;
			if (hz && hz != S.rate_hz) {
				S.rate_hz = hz;
				period = 1000000000ull / hz;
				next = now + period;
				S.recheck_ticks = RECHECK_NS * hz / 1000000000ull;
				if (S.recheck_ticks == 0)
					S.recheck_ticks = 1;
				last_info = 0; /* say so now */
			}
		}
		if (now - last_info >= INFO_EVERY_NS) {
			write_info();
			last_info = now;
		}
		lock_release();
	}
	return NULL;
}

static void spawn(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	if (pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setstacksize(&attr, 256 * 1024); /* joinable: joined before fork */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits: no signal ever lands on it */
	uint64_t gen = __atomic_add_fetch(&S.gen, 1, __ATOMIC_ACQ_REL);
	if (pthread_create(&t, &attr, sampler_main, (void *)(uintptr_t)gen) == 0) {
		pthread_setname_np(t, "timeglass-smp");
		smp_thread = t;
		S.started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}

/* Starts the sampler if this process runs a supported CPython, is traced,
 * and sampling is not turned off (TIMEGLASS_SAMPLE_HZ=0). Call once, from the
 * library constructor after registration. */
void tg_sampler_start(void)
{
	unsigned long hz = tg_getenv_uint("TIMEGLASS_SAMPLE_HZ", 1000, 0, 100000);
	if (hz == 0 || !tg_proc.enabled || tg_py_init() < 0)
		return;
	tg_unwind_init();
	S.rate_hz = S.target_hz = (unsigned)hz;
	double pct = tg_getenv_percent("TIMEGLASS_SAMPLE_BUDGET", 5.0); /* 0: no budget */
	S.budget_ppm = (uint32_t)(pct * 10000.0);
	S.doze_ns = tg_getenv_uint("TIMEGLASS_SAMPLE_DOZE_MS", 100, 0, 10000) * 1000000ull;
	S.recheck_ticks = RECHECK_NS * hz / 1000000000ull;
	if (S.recheck_ticks == 0)
		S.recheck_ticks = 1;
	spawn();
}

/* Ends the sampler thread's wait on its futex now. */
static void wake_thread(void)
{
	__atomic_add_fetch(&smp_wake, 1, __ATOMIC_ACQ_REL);
	syscall(SYS_futex, &smp_wake, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
}

/* pthread_atfork prepare: the sampler thread ends before fork() (see the
 * top); it is not waited for longer than one pass. */
void tg_sampler_before_fork(void)
{
	if (!S.started)
		return;
	int saved = errno;
	__atomic_add_fetch(&S.gen, 1, __ATOMIC_ACQ_REL);
	wake_thread();
	pthread_join(smp_thread, NULL);
	/* pthread_join returns when the kernel clears the thread's tid, a little
	 * before it leaves the thread group that CPython counts: wait for that
	 * too (microseconds; bounded). */
	uint32_t tid = __atomic_exchange_n(&smp_tid, 0, __ATOMIC_ACQ_REL);
	for (int i = 0; tid && i < 2000 && syscall(SYS_tgkill, getpid(), tid, 0) == 0; i++) {
		struct timespec d = {0, 10000};
		nanosleep(&d, NULL);
	}
	S.started = 0;
	smp_stopped_for_fork = 1;
	errno = saved;
}

/* pthread_atfork parent: the sampler comes back 10 ms later (tg_sampler_poll). */
void tg_sampler_after_fork_parent(void)
{
	if (!smp_stopped_for_fork)
		return;
	smp_stopped_for_fork = 0;
	__atomic_store_n(&tg_sampler_restart_at, tg_now_ns() + 10000000ull, __ATOMIC_RELEASE);
}

/* Wakes the sampler from a doze (one caller wins). */
void tg_sampler_wake(void)
{
	if (!__atomic_exchange_n(&tg_sampler_dozing, 0, __ATOMIC_ACQ_REL))
		return;
	int saved = errno;
	wake_thread();
	errno = saved;
}

/* Restarts the sampler thread if its time has come (one caller wins). */
void tg_sampler_restart(void)
{
	uint64_t at = __atomic_load_n(&tg_sampler_restart_at, __ATOMIC_ACQUIRE);
	if (!at || tg_now_ns() < at)
		return;
	if (!__atomic_compare_exchange_n(&tg_sampler_restart_at, &at, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		return;
	if (tg_proc.enabled && !S.started) {
		/* The threads ran while the sampler was away: what it kept of
		 * their stacks is stale (and its thread is not running now). */
		memset(tstates, 0, sizeof tstates);
		spawn();
	}
}

/* In a fork child, once it is registered: forget what the parent sent and
 * start a sampler of its own (threads do not survive fork). */
void tg_sampler_after_fork(void)
{
	tg_py_after_fork();
	tg_unwind_after_fork();
	__atomic_store_n(&tg_sampler_restart_at, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&tg_sampler_dozing, 0, __ATOMIC_RELEASE);
	if (!S.started && !smp_stopped_for_fork)
		return;
	smp_stopped_for_fork = 0;
	S.started = 0;
	S.ticks = S.samples = S.dropped = S.truncated = S.codes = S.ring_full = S.overruns = 0;
	S.budget_skipped = S.reused = S.native_missed = 0;
	S.rate_hz = S.target_hz;
	busy = 0; /* held by a thread of the parent that the child does not have */
	memset(codes, 0, sizeof codes);
	memset(tstates, 0, sizeof tstates);
	if (tg_proc.enabled && S.rate_hz)
		spawn();
}
