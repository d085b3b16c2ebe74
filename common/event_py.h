/*
 * event_py.h - ring records of the Python stack sampler (types TG_EV_SAMPLE,
 * TG_EV_CODE and TG_EV_PY_INFO of event.h).
 *
 * A sample names code objects by address only; the first time the sampler
 * sees a code object (or sees a different one at an address it knew), it
 * writes a TG_EV_CODE record before the sample that uses it, so the collector
 * always resolves an address with the latest TG_EV_CODE of that process.
 */
#ifndef TG_EVENT_PY_H
#define TG_EVENT_PY_H

#include <stdint.h>

#include "event.h"

/* tg_ev_sample.state */
enum tg_py_state {
	TG_PYSTATE_RUNNING = 0, /* the thread was on CPU during most of the interval */
	TG_PYSTATE_WAITING = 1, /* off CPU: epoll/select, a socket, a lock, the GIL */
};

/* tg_ev_sample.flags */
#define TG_SAMPLEF_TRUNCATED 0x01 /* deeper than the frame cap: outermost frames missing */
#define TG_SAMPLEF_NATIVE 0x02    /* native frames follow the Python frames */
#define TG_SAMPLEF_EVAL 0x04      /* taken by the thread itself in the eval-frame hook
				     (--sample-mode eval), not by the sampler thread */

/* tg_ev_pyframe.flags */
#define TG_PYFRAME_ENTRY 0x01 /* first frame run by its call of the eval loop: the
				 frames up to it (innermost first) are that call's */

struct tg_ev_pyframe {
	uint64_t code;  /* PyCodeObject address, resolved through TG_EV_CODE */
	int32_t lasti;  /* instruction offset, 2-byte code units */
	uint32_t flags; /* TG_PYFRAME_* */
};

/* With TG_SAMPLEF_NATIVE, the Python frames are followed by this header and
 * n native instruction addresses (uint64_t), innermost first: the first is
 * where the thread was interrupted, the others are return addresses. */
struct tg_ev_native {
	uint32_t n;
	uint32_t flags; /* TG_NATIVE_* */
};
#define TG_NATIVE_TRUNCATED 0x01 /* the stack was deeper: outermost frames missing */

/*
 * One sample of one thread: nframes frames, innermost first (then native
 * frames with TG_SAMPLEF_NATIVE).
 */
struct tg_ev_sample {
	struct tg_ev_hdr h;
	uint32_t tid;         /* kernel thread id */
	uint8_t state;        /* enum tg_py_state */
	uint8_t flags;        /* TG_SAMPLEF_* */
	uint16_t nframes;
	uint64_t ts_ns;       /* CLOCK_MONOTONIC when the stack was read */
	uint64_t scope;       /* request scope token (preload/scope.c), 0 if none */
	uint64_t cpu_ns;      /* thread CPU time used since this thread's previous sample */
	uint64_t interval_ns; /* wall time since this thread's previous sample (0 on the first) */
	uint32_t weight;      /* sampling periods this sample stands for (0 counts as 1): the
				 eval-driven sampler (TG_SAMPLEF_EVAL) sends one sample for all
				 the period boundaries the thread crossed with one stack */
	uint32_t reserved;
	/* struct tg_ev_pyframe frames[nframes] follows */
};

/*
 * What a code object is. Followed by qualname_len bytes of qualified name,
 * filename_len bytes of file name (UTF-8) and table_len bytes of co_linetable
 * (capped), then zero padding to a multiple of 8.
 */
struct tg_ev_code {
	struct tg_ev_hdr h;
	uint64_t code;          /* PyCodeObject address */
	uint64_t ident;         /* identity hash guarding against address reuse */
	int32_t firstlineno;
	uint32_t py_version;    /* PY_VERSION_HEX */
	uint16_t qualname_len;
	uint16_t filename_len;
	uint32_t table_len;     /* bytes of location table that follow */
	/* char data[] follows */
};

/*
 * Sampler counters since the process started (cumulative), written about
 * once a second and when sampling stops.
 */
struct tg_ev_py_info {
	struct tg_ev_hdr h;
	uint32_t py_version;   /* PY_VERSION_HEX, 0 if not a supported CPython */
	uint32_t rate_hz;      /* sampling rate in force (lowered when over the CPU budget) */
	uint64_t ticks;        /* passes over all threads */
	uint64_t samples;      /* thread samples written */
	uint64_t dropped;      /* thread samples dropped: inconsistent stack (race) */
	uint64_t truncated;    /* samples deeper than the frame cap */
	uint64_t codes;        /* TG_EV_CODE records written */
	uint64_t ring_full;    /* records the ring refused */
	uint64_t overruns;     /* ticks that started late by more than one period */
	uint64_t sampler_cpu_ns; /* CPU time used by the sampler thread */
	uint32_t target_hz;    /* rate asked for (TIMEGLASS_SAMPLE_HZ); rate_hz is the rate in force */
	uint32_t budget_ppm;   /* CPU budget of the sampler, millionths of one core */
	uint64_t budget_skipped; /* ticks not taken because the rate was lowered to fit the budget */
	uint64_t reused;       /* samples that reused the thread's previous stack (unchanged) */
	uint64_t native_missed; /* samples sent without their native frames (--native) */
	uint32_t mode;          /* 0: the sampler thread samples (timer), 1: the threads sample
				   themselves in the eval-frame hook (--sample-mode eval) */
	uint32_t reserved;
	uint64_t eval_busy;     /* eval-hook samples skipped: another thread was sampling */
};

/*
 * Exact-trace mode (`timeglass run --trace`): one Python function call (one
 * run of the eval loop over its frame: a generator or coroutine counts each
 * resumption) that lasted at least the threshold. Followed by site_len
 * bytes of "file:firstline qualname", then zero padding to a multiple of 8.
 * Type TG_EV_PY_FUNC, in the Python stacks range of enum tg_ev_type.
 */
#define TG_EV_PY_FUNC 19

struct tg_ev_py_func {
	struct tg_ev_hdr h;
	uint32_t tid;
	uint16_t site_len;
	uint16_t flags;    /* TG_PYFUNC_* */
	uint64_t scope;    /* request scope token (preload/scope.c), 0 if none */
	uint64_t start_ns; /* CLOCK_MONOTONIC */
	uint64_t end_ns;
	/* char site[site_len] follows */
};
#define TG_PYFUNC_ERROR 0x01 /* ended by an exception */

#endif
