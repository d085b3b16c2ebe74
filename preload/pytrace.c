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
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "event_py.h"
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
TG_EXPORT uint64_t timeglass_trace_dropped(void);

uint64_t tg_scope_current(void) __attribute__((weak));

static tg_eval_fn real_eval;
static uint64_t threshold; /* in clock units (TSC ticks or ns) */
static int tracing;
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

static void *eval_hook(void *tstate, void *frame, int throwflag)
{
	uint64_t t0 = clock_now();
	/* The code object is read now: the frame is gone when the call returns. */
	uintptr_t code = *(const uintptr_t *)((const char *)frame + TG_PYO(fr_code)) &
			 ~(uintptr_t)TG_PYO(code_tag_mask);
	void *r = real_eval(tstate, frame, throwflag);
	uint64_t span = clock_now() - t0;
	if (span >= threshold && tg_proc.enabled)
		emit(code, span, r == NULL);
	return r;
}

/* Turns exact-trace mode on for the main interpreter; call with the GIL
 * held (ctypes.PyDLL). Returns 0, or -1 when it cannot be (not a supported
 * CPython, another eval-frame hook is set, the process is not recorded). */
int timeglass_trace_start(uint64_t threshold_ns)
{
	if (tracing)
		return 0;
	if (!tg_proc.enabled || tg_py_init() < 0)
		return -1;
	void *(*get_interp)(void) = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyInterpreterState_Get");
	void (*set_eval)(void *, tg_eval_fn) =
		(void (*)(void *, tg_eval_fn))dlsym(RTLD_DEFAULT, "_PyInterpreterState_SetEvalFrameFunc");
	tg_eval_fn (*get_eval)(void *) = (tg_eval_fn(*)(void *))dlsym(RTLD_DEFAULT, "_PyInterpreterState_GetEvalFrameFunc");
	real_eval = (tg_eval_fn)dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
	if (!get_interp || !set_eval || !get_eval || !real_eval)
		return -1;
	void *interp = get_interp();
	if (!interp || get_eval(interp) != real_eval)
		return -1; /* someone else's hook */
	tsc_setup();
	threshold = use_tsc ? (uint64_t)((double)threshold_ns * tsc_per_ns) : threshold_ns;
	set_eval(interp, eval_hook);
	tracing = 1;
	return 0;
}

/* Calls over the threshold not recorded (rate cap, full ring). */
uint64_t timeglass_trace_dropped(void)
{
	return dropped;
}
