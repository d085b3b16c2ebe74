/*
 * common/lines.h - CPython 3.11+ location tables (co_linetable): instruction offset
 * to source line. Pure functions, used by the collector to resolve samples
 * and by the preload library for call sites.
 */
#ifndef TG_LINES_H
#define TG_LINES_H

#include <stddef.h>
#include <stdint.h>

/* Line of the instruction at code unit lasti (2-byte units from the first
 * instruction) of a code object whose first line is firstlineno and whose
 * co_linetable bytes are table[0..len). Returns the line, or firstlineno
 * when the table has no line for it (or is truncated before it), or -1 when
 * lasti lies in a "no location" entry. Never reads past len. */
int tg_py_addr2line(const uint8_t *table, size_t len, int firstlineno, int lasti);

#endif
