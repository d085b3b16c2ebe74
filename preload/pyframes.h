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

#endif
