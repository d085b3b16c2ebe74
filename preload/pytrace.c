/*
 * pytrace.c - exact-trace mode (`timeglass run --trace`): every run of a
 * Python function that lasts at least a threshold becomes a TG_EV_PY_FUNC
 * record, which the collector stores as a 'function' span of its request.
 *
 * How: a PEP 523 eval-frame hook (_PyInterpreterState_SetEvalFrameFunc, 3.11
 * and later) that wraps _PyEval_EvalFrameDefault with two clock reads. With
 * a hook set, CPython no longer inlines Python-to-Python calls, so every
 * call passes through it; a generator or coroutine passes through it once
 * per resumption, so each run between resumption and suspension is timed on
 * its own. The Python bootstrap (timeglass/_trace.py) turns it on with
 * timeglass_trace_start(), holding the GIL; an eval-frame hook already set
 * by someone else (a debugger) is left alone.
 *
 * Costs: every call pays two reads of the CPU's time-stamp counter (x86-64
 * with an invariant TSC, calibrated against CLOCK_MONOTONIC at start; else
 * two vDSO clock reads) and a compare, and loses CPython's inlining of
 * Python-to-Python calls: ~20 ns a call on this project's test VM; a call
 * over the threshold also pays its request scope (a walk of the caller's own
 * frames) and its site, cached per code object (one safe read to check the
 * cache). At most MAX_SPANS_PER_S records a second; the rest are counted.
 * All of this runs with the GIL held, so the static buffers are not shared.
 *
 * The same hook drives eval-clocked sampling (`--sample-mode eval`,
 * timeglass_sample_eval_start()); without --trace a leaner twin of it is
 * set instead, which does nothing else. Each thread keeps its next period
 * boundary, and a call that starts or ends past it takes a sample of the
 * thread (sampler.c, tg_sampler_eval_sample) weighted by the boundaries
 * crossed since the thread's previous call or return, the interval during
 * which its stack did not change. A call that crosses no boundary pays one
 * compare more.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "common/event_py.h"
#include "pyframes.h"
#include "pyversions.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))
#define MAX_SPANS_PER_S 20000u
#define SITE_SLOTS 512   /* code objects whose site is cached (power of two) */
#define SITE_MAX 256u
#define RD_SLOTS 4

typedef void *(*tg_eval_fn)(void *tstate, void *frame, int throwflag);

TG_EXPORT int timeglass_trace_start(uint64_t threshold_ns);
TG_EXPORT int timeglass_sample_eval_start(uint32_t hz);
TG_EXPORT uint64_t timeglass_trace_dropped(void);

uint64_t tg_scope_current(void) __attribute__((weak));

static tg_eval_fn real_eval;
static uint64_t threshold; /* in clock units (TSC ticks or ns) */
static int hooked;        /* one of the hooks below is the interpreter's eval-frame function */
static int tracing;       /* spans of long calls (--trace) */
static int eval_sampling; /* eval-clocked samples (--sample-mode eval) */
static uint64_t eval_period; /* clock units between two sampling boundaries */
static TG_TLS uint64_t ev_last, ev_next; /* this thread's last boundary sampled and the next one */
static int use_tsc;
static double tsc_per_ns;

/* The clock of the hook: TSC ticks when use_tsc, else nanoseconds. */
static inline uint64_t clock_now(void)
{
#if defined(__x86_64__)
	if (use_tsc)
		return __rdtsc();
#endif
	return tg_now_ns();
}

/* Turns on the TSC when the CPU says it is invariant (constant rate, runs
 * in every power state), measuring its rate over a couple of ms. */
static void tsc_setup(void)
{
#if defined(__x86_64__)
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (!f)
		return;
	char line[4096];
	int constant = 0, nonstop = 0;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "flags", 5) == 0) {
			constant = strstr(line, " constant_tsc") != NULL;
			nonstop = strstr(line, " nonstop_tsc") != NULL;
			break;
		}
	fclose(f);
	if (!constant || !nonstop)
		return;
	uint64_t n0 = tg_now_ns(), c0 = __rdtsc();
	struct timespec d = {0, 2000000};
	nanosleep(&d, NULL);
	uint64_t n1 = tg_now_ns(), c1 = __rdtsc();
	if (n1 <= n0 || c1 <= c0)
		return;
	tsc_per_ns = (double)(c1 - c0) / (double)(n1 - n0);
	use_tsc = tsc_per_ns > 0.1 && tsc_per_ns < 100;
#endif
}
static uint64_t win_start, win_count, dropped;

static struct site_ent {
	uintptr_t code;
	uint64_t ident;
	uint16_t len;
	char text[SITE_MAX];
} sites[SITE_SLOTS];

static uintptr_t rd_tags[RD_SLOTS];
static uint8_t rd_pages[RD_SLOTS * 4096];
static struct tg_py_code_info code_info;

/* "file:firstline qualname" of code, cached; NULL if it cannot be read. */
static const struct site_ent *site_of(uintptr_t code)
{
	struct tg_py_rd rd = {.tags = rd_tags, .pages = rd_pages, .nslots = RD_SLOTS};
	tg_py_rd_reset(&rd);
	uint64_t ident;
	if (tg_py_code_ident(&rd, code, &ident) < 0)
		return NULL;
	struct site_ent *e = &sites[(code >> 4) & (SITE_SLOTS - 1)];
	if (e->code == code && e->ident == ident)
		return e;
	if (tg_py_code_info(&rd, code, &code_info, NULL, 0) < 0)
		return NULL;
	int w = snprintf(e->text, sizeof e->text, "%s:%d %s", code_info.filename, (int)code_info.firstlineno,
			 code_info.qualname);
	if (w < 0)
		return NULL;
	e->len = (uint16_t)((size_t)w < sizeof e->text ? (size_t)w : sizeof e->text - 1);
	e->code = code;
	e->ident = ident;
	return e;
}

/* A call of span clock units just ended. */
static void emit(uintptr_t code, uint64_t span, int error)
{
	int saved = errno;
	uint64_t t1 = tg_now_ns();
	uint64_t t0 = t1 - (use_tsc ? (uint64_t)((double)span / tsc_per_ns) : span);
	if (t1 - win_start >= 1000000000ull) {
		win_start = t1;
		win_count = 0;
	}
	if (++win_count > MAX_SPANS_PER_S) {
		dropped++;
		errno = saved;
		return;
	}
	const struct site_ent *site = site_of(code);
	uint16_t sl = site ? site->len : 0;
	uint32_t size = (uint32_t)((sizeof(struct tg_ev_py_func) + sl + 7u) & ~7u);
	struct tg_ev_py_func *ev = tg_reserve(size);
	if (!ev) {
		dropped++;
		errno = saved;
		return;
	}
	ev->tid = tg_tid();
	ev->site_len = sl;
	ev->flags = error ? TG_PYFUNC_ERROR : 0;
	ev->scope = tg_scope_current ? tg_scope_current() : 0;
	ev->start_ns = t0;
	ev->end_ns = t1;
	char *d = (char *)(ev + 1);
	if (sl)
		memcpy(d, site->text, sl);
	memset(d + sl, 0, size - sizeof *ev - sl);
	tg_ring_commit(ev, size, TG_EV_PY_FUNC, 0);
	errno = saved;
}

/* The thread reached a call or a return at t, past its next boundary:
 * one sample for the boundaries crossed since the previous one (code and
 * frame: the call that just returned, 0 at a call). */
static void __attribute__((noinline)) eval_tick(void *tstate, uint64_t t, uintptr_t code, void *frame)
{
	int saved = errno;
	if (!ev_next) { /* the thread's first event */
		ev_last = t;
		ev_next = t + eval_period;
		tg_sampler_eval_sample((uintptr_t)tstate, 0, 0, 0);
		errno = saved;
		return;
	}
	uint64_t w = (t - ev_last) / eval_period;
	ev_last += w * eval_period;
	ev_next = ev_last + eval_period;
	tg_sampler_eval_sample((uintptr_t)tstate, w > UINT32_MAX ? UINT32_MAX : (uint32_t)w, code, (uintptr_t)frame);
	errno = saved;
}

/* The hook while --trace is on (with or without eval-clocked sampling). */
static void *eval_hook(void *tstate, void *frame, int throwflag)
{
	uint64_t t0 = clock_now();
	/* The code object is read now: the frame is gone when the call returns. */
	uintptr_t code = *(const uintptr_t *)((const char *)frame + TG_PYO(fr_code)) &
			 ~(uintptr_t)TG_PYO(code_tag_mask);
	if (eval_sampling && t0 >= ev_next)
		eval_tick(tstate, t0, 0, NULL);
	void *r = real_eval(tstate, frame, throwflag);
	uint64_t t1 = clock_now();
	if (eval_sampling && t1 >= ev_next)
		eval_tick(tstate, t1, code, frame);
	if (tracing && t1 - t0 >= threshold && tg_proc.enabled)
		emit(code, t1 - t0, r == NULL);
	return r;
}

/* The hook of eval-clocked sampling alone, the one every Python call of a
 * sampled app passes through: a clock read and a compare before the call
 * and after it, nothing for --trace (a quarter fewer instructions than
 * eval_hook). */
static void *eval_hook_sample(void *tstate, void *frame, int throwflag)
{
	uint64_t t0 = clock_now();
	if (__builtin_expect(t0 >= ev_next, 0))
		eval_tick(tstate, t0, 0, NULL);
	/* Read now: the frame is gone when the call returns. */
	uintptr_t code = *(const uintptr_t *)((const char *)frame + TG_PYO(fr_code));
	void *r = real_eval(tstate, frame, throwflag);
	uint64_t t1 = clock_now();
	if (__builtin_expect(t1 >= ev_next, 0))
		eval_tick(tstate, t1, code & ~(uintptr_t)TG_PYO(code_tag_mask), frame);
	return r;
}

static void *interp;                           /* the main interpreter */
static void (*set_eval)(void *, tg_eval_fn);   /* _PyInterpreterState_SetEvalFrameFunc */
static tg_eval_fn (*get_eval)(void *);         /* _PyInterpreterState_GetEvalFrameFunc */

/* Finds the interpreter's eval-frame functions and the clock, once (GIL
 * held). 0, or -1 when there is no hook to set: not a supported CPython,
 * the process is not recorded, or someone else's hook is in place. */
static int prepare(void)
{
	if (hooked)
		return 0;
	if (!tg_proc.enabled || tg_py_init() < 0)
		return -1;
	void *(*get_interp)(void) = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyInterpreterState_Get");
	set_eval = (void (*)(void *, tg_eval_fn))dlsym(RTLD_DEFAULT, "_PyInterpreterState_SetEvalFrameFunc");
	get_eval = (tg_eval_fn(*)(void *))dlsym(RTLD_DEFAULT, "_PyInterpreterState_GetEvalFrameFunc");
	real_eval = (tg_eval_fn)dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	if (!get_interp || !set_eval || !get_eval || !real_eval)
		return -1;
	interp = get_interp();
	if (!interp || get_eval(interp) != real_eval)
		return -1;
	tsc_setup();
	return 0;
}

/* Makes the hook the modes now on need the interpreter's eval-frame
 * function (GIL held): eval_hook_sample for sampling alone, eval_hook once
 * --trace is on. Frames running under the other one return through it. */
static int install(void)
{
	tg_eval_fn want = tracing ? eval_hook : eval_hook_sample, now = get_eval(interp);
	if (now != real_eval && now != eval_hook && now != eval_hook_sample)
		return -1; /* someone else's hook, set since */
	if (now != want)
		set_eval(interp, want);
	hooked = 1;
	return 0;
}

/* Turns exact-trace mode on for the main interpreter; call with the GIL
 * held (ctypes.PyDLL). Returns 0, or -1 when it cannot be (not a supported
 * CPython, another eval-frame hook is set, the process is not recorded). */
int timeglass_trace_start(uint64_t threshold_ns)
{
	if (tracing)
		return 0;
	if (prepare() < 0)
		return -1;
	threshold = use_tsc ? (uint64_t)((double)threshold_ns * tsc_per_ns) : threshold_ns;
	tracing = 1;
	if (install() < 0) {
		tracing = 0;
		return -1;
	}
	return 0;
}

static uint64_t period_of(uint32_t hz)
{
	double per_ns = use_tsc ? tsc_per_ns : 1.0;
	uint64_t p = (uint64_t)(per_ns * 1e9 / hz);
	return p ? p : 1;
}

/* A new eval-clocked rate (the sampler's CPU budget); each thread takes it
 * after its next sample. */
void tg_trace_eval_rate(unsigned hz);
void tg_trace_eval_rate(unsigned hz)
{
	if (hz)
		__atomic_store_n(&eval_period, period_of(hz), __ATOMIC_RELAXED);
}

/* Turns eval-clocked sampling on at hz boundaries a second per thread (GIL
 * held, ctypes.PyDLL); the sampler thread stops its own passes. Returns 0,
 * or -1 when it cannot be (as timeglass_trace_start). */
int timeglass_sample_eval_start(uint32_t hz)
{
	if (eval_sampling)
		return 0;
	if (hz == 0 || hz > 1000000 || prepare() < 0)
		return -1;
	eval_period = period_of(hz);
	eval_sampling = 1;
	if (install() < 0) {
		eval_sampling = 0;
		return -1;
	}
	tg_sampler_eval_on(hz);
	return 0;
}

/* Calls over the threshold not recorded (rate cap, full ring). */
uint64_t timeglass_trace_dropped(void)
{
	return dropped;
}
