/*
 * collector/schedstat.c - run-queue delay of an app process's threads
 * (schedstat.h).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/schedstat.h"
#include "lib/util.h"

#define NAME_CHECKS 5 /* reads during which a new thread's name is looked at */

struct tg_sched_thread {
	pid_t tid;
	int64_t cpu_ns, delay_ns; /* its counters at the last read */
	unsigned checks;          /* reads that found its name not ours */
	int own;                  /* a TimeGlass thread: not counted */
	int seen;                 /* found by the current read */
};

#define THREADS_STEP 16 /* the table grows by this many threads */

void tg_sched_clear(struct tg_sched *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

/* 1 when thread tid of pid is one of TimeGlass's own (or gone). */
static int own_thread(pid_t pid, pid_t tid)
{
	char path[96], name[32];
	snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)pid, (int)tid);
	ssize_t n = tg_read_small_file(path, name, sizeof name);
	return n <= 0 || !strncmp(name, "timeglass-", 10);
}

static struct tg_sched_thread *thread_of(struct tg_sched *s, pid_t tid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].tid == tid)
			return &s->v[i];
	/* room for THREADS_STEP more at each multiple of it (the table only
	 * shrinks by dropping exited threads, within what it holds) */
	if (s->n % THREADS_STEP == 0) {
		struct tg_sched_thread *v = reallocarray(s->v, s->n + THREADS_STEP, sizeof *v);
		if (!v)
			return NULL;
		s->v = v;
	}
	struct tg_sched_thread *t = &s->v[s->n++];
	memset(t, 0, sizeof *t);
	t->tid = tid;
	return t;
}

int tg_sched_read(struct tg_sched *s, pid_t pid, int64_t *cpu_ns, int64_t *run_delay_ns)
{
	char path[96], buf[128];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	for (size_t i = 0; i < s->n; i++)
		s->v[i].seen = 0;
	int any = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long tid = strtol(e->d_name, &end, 10);
		if (end == e->d_name || *end || tid <= 0)
			continue;
		struct tg_sched_thread *t = thread_of(s, (pid_t)tid);
		if (!t)
			break;
		t->seen = 1;
		if (t->own)
			continue;
		if (t->checks < NAME_CHECKS) {
			t->checks++;
			if (own_thread(pid, t->tid)) {
				t->own = 1;
				continue;
			}
		}
		unsigned long long cpu, delay;
		snprintf(path, sizeof path, "/proc/%d/task/%ld/schedstat", (int)pid, tid);
		if (tg_read_small_file(path, buf, sizeof buf) <= 0 || sscanf(buf, "%llu %llu", &cpu, &delay) != 2)
			continue;
		t->cpu_ns = (int64_t)cpu;
		t->delay_ns = (int64_t)delay;
		any = 1;
	}
	closedir(d);
	int64_t cpu = s->gone_cpu_ns, delay = s->gone_delay_ns;
	size_t j = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct tg_sched_thread *t = &s->v[i];
		if (!t->own) {
			cpu += t->cpu_ns;
			delay += t->delay_ns;
		}
		if (t->seen) {
			s->v[j++] = *t;
		} else if (!t->own) {
			s->gone_cpu_ns += t->cpu_ns;
			s->gone_delay_ns += t->delay_ns;
		}
	}
	s->n = j;
	if (!any)
		return -1;
	*cpu_ns = cpu;
	*run_delay_ns = delay;
	return 0;
}
