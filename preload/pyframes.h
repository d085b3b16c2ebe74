/*
 * pyframes.h - reading the CPython interpreter's frames from inside the
 * process, without the GIL and without ever faulting.
 *
 * Used by the stack sampler (every thread, ~1 kHz), by the SQL and HTTP
 * taps (call site of a query: the innermost frame of the app's own code) and
 * by request attribution (which request's root frame is on this thread's
 * stack). Versions: 3.11 and 3.12 through offset tables, 3.13+ through the
 * interpreter's own _Py_DebugOffsets.
 */
#ifndef TG_PYFRAMES_H
#define TG_PYFRAMES_H

#include <stddef.h>
#include <stdint.h>

/* Finds the interpreter and its layout. Idempotent and cheap after the
 * first call. Returns 0 when this is a supported CPython, -1 otherwise
 * (then every other function here returns 0 / does nothing). */
int tg_py_init(void);

/* Fills out[] with the addresses of the calling thread's Python interpreter
 * frames (_PyInterpreterFrame *), innermost first, skipping frames owned by
 * C (shims). Returns how many were written (0 when the thread runs no
 * Python or the interpreter is unknown). Works with or without the GIL:
 * only the calling thread's own chain is read. */
int tg_py_thread_frames(uintptr_t *out, int max);

/* Writes "file:line function" of the innermost frame of the calling
 * thread that belongs to the app's own code (not the standard library, not
 * site-packages/dist-packages, not TimeGlass), NUL-terminated and capped at
 * len. Returns the length written, 0 if there is none. */
size_t tg_py_call_site(char *buf, size_t len);

/* ---- for the sampler (sampler.c) and tests ---- */

/* PY_VERSION_HEX of the interpreter found by tg_py_init(), 0 if none. */
uint32_t tg_py_version(void);

/* Reads len bytes at addr of this process into dst without ever faulting
 * (process_vm_readv on ourselves). Returns 0, or -1 if any byte is not
 * readable. */
int tg_py_safe_read(void *dst, uintptr_t addr, size_t len);

/* A reader that caches whole pages for the length of one pass over the
 * stacks (one sampler tick): frames of one thread share a few pages of its
 * data stack, so a deep stack costs a few system calls, not one per frame.
 * pages must hold nslots * 4096 bytes, tags nslots entries; nslots is a
 * power of two. Data read through it is a snapshot: call tg_py_rd_reset()
 * before each pass. */
struct tg_py_rd {
	uintptr_t *tags;    /* page address + 1 held by each slot, 0 = empty */
	uint8_t *pages;     /* nslots pages */
	unsigned nslots;
	unsigned syscalls;  /* reads made since the last reset */
	int direct;         /* 1: plain loads, for the calling thread's own live frames */
};

/* The calling thread's PyThreadState, checked with a safe read (the cached
 * pointer may belong to a thread state since freed). 0 if none. Its frame
 * chain can then be read with rd->direct = 1: no other thread changes it,
 * and the frames, their code objects and strings stay alive while this
 * thread is inside a hook. */
uintptr_t tg_py_my_thread_state(struct tg_py_rd *rd);

/* 1 if a code object's file name is the app's own code: not the standard
 * library, not site-packages/dist-packages, not frozen modules, not
 * TimeGlass's own package. */
int tg_py_is_app_file(const char *filename);
void tg_py_rd_reset(struct tg_py_rd *rd);
int tg_py_rd_read(struct tg_py_rd *rd, void *dst, uintptr_t addr, size_t len);

/* One Python thread of the main interpreter. */
struct tg_py_thread {
	uintptr_t tstate;   /* PyThreadState * */
	uint32_t tid;       /* kernel thread id */
	int holds_gil;      /* 1: holds the GIL (3.11, 3.15+), 0: no, -1: unknown */
};

/* Lists up to max Python threads. Returns how many, or -1 when the
 * interpreter is not (or no longer) running. */
int tg_py_threads(struct tg_py_rd *rd, struct tg_py_thread *out, int max);

/* One frame of a stack: the code object and the instruction being run. */
struct tg_py_frame {
	uintptr_t frame;    /* _PyInterpreterFrame * */
	uintptr_t code;     /* PyCodeObject * */
	int32_t lasti;      /* instruction offset in 2-byte code units */
	int entry;          /* 1: the first frame run by its call of the eval loop
			       (_PyEval_EvalFrameDefault): frames up to and including
			       it, innermost first, are that call's */
};

/* Walks the frame chain of tstate, innermost first, into out[0..max).
 * Returns the number of frames, or -1 when the chain is inconsistent (a
 * pointer that cannot be read, a frame whose code is not a code object, a
 * loop): the caller drops the sample. *truncated is set when the chain was
 * longer than max. */
int tg_py_walk(struct tg_py_rd *rd, uintptr_t tstate, struct tg_py_frame *out, int max,
	       int *truncated);

/* The same; with check_code 0 the frames' code objects are not checked to
 * be code objects (the caller checks them, e.g. through a cache). */
int tg_py_walk_ex(struct tg_py_rd *rd, uintptr_t tstate, struct tg_py_frame *out, int max,
		  int *truncated, int check_code);

/* Walks on: out[0..n) are the frames walked so far (n = 0: none, from the
 * innermost), *at the frame where a truncated walk stopped (set when
 * *truncated is); fills out[n..max) and returns the new count, or -1. The
 * chain must not have changed since (the calling thread's own). */
int tg_py_walk_more(struct tg_py_rd *rd, uintptr_t tstate, uintptr_t *at, struct tg_py_frame *out, int n,
		    int max, int *truncated, int check_code);

/* The instruction offset (2-byte code units) of a frame whose next
 * instruction is at instr, in code whose first instruction is co_code bytes
 * into the code object; 0 for a frame just created (instr not yet set).
 * Unsigned: instr may be garbage in a racing frame. */
static inline int32_t tg_py_lasti(uintptr_t code, uintptr_t instr, uint32_t co_code)
{
	uintptr_t off = instr - (code + co_code);
	return off < ((uintptr_t)2 << 24) ? (int32_t)(off / 2) : 0;
}

/* A walk of the calling thread's own frames, one frame at a time, with
 * plain loads and the layout's offsets read once: what the SQL taps use to
 * find a query's request and call site, which are most often a few frames
 * up (a dozen frames cost some 200 instructions this way). The chain is the
 * caller's own, so it cannot change during the walk. */
struct tg_py_own {
	uintptr_t f;            /* the next frame to read, 0 at the end */
	unsigned steps;         /* frames read, shims included */
	uint32_t off_code, off_prev, off_instr, off_owner, off_co_code;
	int32_t skip1, skip2;   /* owners of shim frames (C's, not Python code) */
	uintptr_t tag_mask;
};
#define TG_PY_OWN_STEPS 4096 /* a longer chain is a loop, or garbage */

/* Starts w at the innermost frame of tstate, the calling thread's own
 * (tg_py_my_thread_state). Returns 0, or -1 if its chain cannot be read. */
int tg_py_own_begin(uintptr_t tstate, struct tg_py_own *w);

/* The next Python frame (shims skipped) into *out (entry is not set).
 * Returns 1, 0 at the end of the chain, -1 on a frame that cannot be one. */
static inline int tg_py_own_next(struct tg_py_own *w, struct tg_py_frame *out)
{
	while (w->f) {
		uintptr_t f = w->f;
		if ((f & 7) || f < 4096 || ++w->steps > TG_PY_OWN_STEPS)
			return -1;
		const uint8_t *b = (const uint8_t *)f;
		uintptr_t code, prev;
		__builtin_memcpy(&code, b + w->off_code, sizeof code);
		__builtin_memcpy(&prev, b + w->off_prev, sizeof prev);
		int owner = (signed char)b[w->off_owner];
		code &= ~w->tag_mask;
		w->f = prev;
		if (owner == w->skip1 || owner == w->skip2 || !code)
			continue;
		uintptr_t instr;
		__builtin_memcpy(&instr, b + w->off_instr, sizeof instr);
		out->frame = f;
		out->code = code;
		out->lasti = tg_py_lasti(code, instr, w->off_co_code);
		out->entry = 0;
		return 1;
	}
	return 0;
}

/* The next frame's address, shim frames included, without reading more of
 * it than its link to the previous one: for the rest of a walk that only
 * looks frames up by address. Returns 0 at the end of the chain or on a
 * frame that cannot be one (then the walk is over). */
static inline uintptr_t tg_py_own_next_addr(struct tg_py_own *w)
{
	uintptr_t f = w->f;
	if (!f || (f & 7) || f < 4096 || ++w->steps > TG_PY_OWN_STEPS) {
		w->f = 0;
		return 0;
	}
	__builtin_memcpy(&w->f, (const uint8_t *)f + w->off_prev, sizeof w->f);
	return f;
}

/* What identifies a code object across time (address reuse): a hash of its
 * name, file and line table pointers and first line. Returns 0, -1 if the
 * object cannot be read or is not a code object. */
int tg_py_code_ident(struct tg_py_rd *rd, uintptr_t code, uint64_t *ident);

/* Names of a code object, as UTF-8 (capped, NUL-terminated), its first line
 * and up to table_cap bytes of its location table. Returns 0 or -1. */
struct tg_py_code_info {
	char qualname[256];
	char filename[512];
	int32_t firstlineno;
	uint32_t table_len;      /* bytes copied to table */
	uint32_t table_full_len; /* bytes in co_linetable */
};
int tg_py_code_info(struct tg_py_rd *rd, uintptr_t code, struct tg_py_code_info *ci,
		    uint8_t *table, size_t table_cap);

/* In a fork child: forget the calling thread's cached thread state. */
void tg_py_after_fork(void);

#endif
