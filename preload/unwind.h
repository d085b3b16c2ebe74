/*
 * unwind.h - native stacks of the app's threads for the sampler (unwind.c).
 */
#ifndef TG_UNWIND_H
#define TG_UNWIND_H

#include <stdint.h>

#define TG_NATIVE_MAX 64 /* native frames kept per sample, innermost first */

/* Installs the unwinding signal handler when TIMEGLASS_NATIVE=1 and the
 * build has libunwind. Returns 0 when native capture is on, -1 otherwise.
 * Call before the sampler thread starts. */
int tg_unwind_init(void);

/* 1 when tg_unwind_init() turned native capture on. */
int tg_unwind_active(void);

/* In a fork child: forget requests in flight at the fork. */
void tg_unwind_after_fork(void);

/* From the sampler thread: the native stack of thread tid of this process
 * (innermost first) into ips[0..max). Waits a bounded time. Returns the
 * count, -1 when it could not be had (no handler ran in time, the
 * thread is gone, capture is off), -2 when the thread's handler is still
 * busy with an earlier request. */
int tg_unwind_capture(uint32_t tid, uint64_t *ips, int max);

#endif
