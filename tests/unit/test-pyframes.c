/*
 * test-pyframes.c - a small shared module that exposes the frame reader of
 * the preload library (pyframes.c) to test-pyframes.py through ctypes, so
 * the reader is checked against a real interpreter: own-thread frames, call
 * sites, other threads' stacks read without the GIL, and line numbers.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/lines.h"
#include "pyframes.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT int tgt_init(void);
EXPORT unsigned tgt_version(void);
EXPORT int tgt_depth(void);
EXPORT size_t tgt_call_site(char *buf, size_t len);
EXPORT int tgt_stack_of(uint32_t tid, char *buf, size_t len);
EXPORT int tgt_hammer(uint32_t tid, int rounds, int *dropped);
EXPORT int tgt_own_stack(char *buf, size_t len);

int tgt_init(void)
{
	return tg_py_init();
}

unsigned tgt_version(void)
{
	return tg_py_version();
}

int tgt_depth(void)
{
	static uintptr_t f[4096];
	return tg_py_thread_frames(f, 4096);
}

size_t tgt_call_site(char *buf, size_t len)
{
	return tg_py_call_site(buf, len);
}

static uintptr_t tags[64];
static uint8_t pages[64 * 4096];
static struct tg_py_frame fr[1024];
static struct tg_py_thread th[256];

/* Walks the stack of thread tid into fr[]: 0 when tid is not among the
 * interpreter's threads, else 1 with *frames the walk's result (frames, or
 * negative when it failed). */
static int walk_thread(struct tg_py_rd *rd, uint32_t tid, int *frames)
{
	int n = tg_py_threads(rd, th, 256);
	for (int i = 0; i < n; i++) {
		if (th[i].tid == tid) {
			int trunc;
			*frames = tg_py_walk(rd, th[i].tstate, fr, 1024, &trunc);
			return 1;
		}
	}
	return 0;
}

/* "qualname:line;..." of thread tid, innermost first. Returns frames, -1. */
int tgt_stack_of(uint32_t tid, char *buf, size_t len)
{
	struct tg_py_rd rd = {.tags = tags, .pages = pages, .nslots = 64};
	tg_py_rd_reset(&rd);
	int k;
	if (!walk_thread(&rd, tid, &k))
		return -1;
	size_t pos = 0;
	buf[0] = '\0';
	for (int j = 0; j < k && pos + 300 < len; j++) {
		static struct tg_py_code_info ci;
		static uint8_t table[8192];
		if (tg_py_code_info(&rd, fr[j].code, &ci, table, sizeof table) < 0)
			return -1;
		int line = tg_py_addr2line(table, ci.table_len, ci.firstlineno, fr[j].lasti);
		pos += (size_t)snprintf(buf + pos, len - pos, "%s:%d;", ci.qualname, line);
	}
	return k;
}

/* Reads thread tid's stack rounds times as fast as possible (racing with
 * it). Returns the number of consistent reads, *dropped the others. */
int tgt_hammer(uint32_t tid, int rounds, int *dropped)
{
	struct tg_py_rd rd = {.tags = tags, .pages = pages, .nslots = 64};
	int ok = 0;
	*dropped = 0;
	for (int r = 0; r < rounds; r++) {
		tg_py_rd_reset(&rd);
		int k;
		if (!walk_thread(&rd, tid, &k))
			continue;
		if (k < 0) {
			(*dropped)++;
			continue;
		}
		uint64_t id;
		for (int j = 0; j < k; j++)
			if (tg_py_code_ident(&rd, fr[j].code, &id) < 0) {
				(*dropped)++;
				k = -1;
				break;
			}
		if (k >= 0)
			ok++;
	}
	return ok;
}

/* "qualname:line;..." of the calling thread, innermost first, as the SQL
 * taps walk it (tg_py_own_begin/next: plain loads, one frame at a time).
 * Returns frames, -1 if the walk failed or a frame's code was unreadable. */
int tgt_own_stack(char *buf, size_t len)
{
	static uintptr_t otags[4];
	static uint8_t opages[4 * 4096];
	struct tg_py_rd rd = {.tags = otags, .pages = opages, .nslots = 4};
	tg_py_rd_reset(&rd);
	uintptr_t ts = tg_py_my_thread_state(&rd);
	struct tg_py_own w;
	if (!ts || tg_py_own_begin(ts, &w) < 0)
		return -1;
	rd.direct = 1;
	size_t pos = 0;
	int k = 0, r;
	struct tg_py_frame f;
	buf[0] = '\0';
	while ((r = tg_py_own_next(&w, &f)) > 0 && pos + 300 < len) {
		static struct tg_py_code_info ci;
		static uint8_t table[8192];
		if (tg_py_code_info(&rd, f.code, &ci, table, sizeof table) < 0)
			return -1;
		int line = tg_py_addr2line(table, ci.table_len, ci.firstlineno, f.lasti);
		pos += (size_t)snprintf(buf + pos, len - pos, "%s:%d;", ci.qualname, line);
		k++;
	}
	return r < 0 ? -1 : k;
}
