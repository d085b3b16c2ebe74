/*
 * collector/schedstat.h - how long an app process's threads waited for a
 * CPU: the scheduler's per-thread counters (/proc/PID/task/TID/schedstat:
 * time on a CPU, time runnable on a run queue) summed over the process's own
 * threads, for the process_metrics rows. On a machine busy with other work a
 * request's wall time stretches by the time its thread waits on a run
 * queue; `timeglass ci` takes that stretch out of its timing comparison.
 *
 * Threads that TimeGlass runs inside the app (named "timeglass-*", like the
 * stack sampler) are left out: they wake a thousand times a second and wait
 * for a CPU on each wake-up far more than the app's threads do. A thread's
 * counters are kept while it lives, so the sums never go back when threads
 * exit (what an exited thread did since the previous read is lost).
 *
 * Workload: one read of each thread's two small files per process per
 * collector tick (100 ms).
 */
#ifndef TG_SCHEDSTAT_H
#define TG_SCHEDSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tg_sched_thread;

/* The tracker of one process: all zeros is a new, empty one. */
struct tg_sched {
	struct tg_sched_thread *v; /* the threads seen, live at the last read */
	size_t n;
	int64_t gone_cpu_ns, gone_delay_ns; /* of the app threads that exited */
};

/* Frees what s holds and empties it. */
void tg_sched_clear(struct tg_sched *s);

/* Reads the counters of pid's threads and returns, in *cpu_ns and
 * *run_delay_ns, their sums since each thread started, over every app
 * thread seen so far. Returns 0, or -1 when the kernel gives no schedstat
 * (no CONFIG_SCHED_INFO) or the process is gone. */
int tg_sched_read(struct tg_sched *s, pid_t pid, int64_t *cpu_ns, int64_t *run_delay_ns);

#endif
