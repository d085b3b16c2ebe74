/*
 * lib/util.h - small helpers shared by the collector, the server and the commands:
 * the one error convention, strict number parsing, paths and clocks.
 *
 * Error convention. A function that can fail returns -1 (or NULL) after
 * calling tg_fail(), which records one line of text (no "timeglass: " prefix,
 * no newline) in a per-thread buffer; the caller either adds context with
 * tg_fail() again or reports it. A command reports a fatal error with
 * tg_die(), which prints `timeglass: MESSAGE` on stderr and exits with status
 * 2. There is exactly one line per failure, never a chain.
 */
#ifndef TG_UTIL_H
#define TG_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TG_EXIT_USAGE 2 /* status for bad usage and unusable stores */
#define TG_ERR_MAX 512  /* bytes of an error line, NUL included */

/* Records an error line (printf-style) for tg_error(). Returns -1. The
 * format may use tg_error() itself as an argument to add context. */
int tg_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last line recorded by tg_fail() in this thread ("" if none). */
const char *tg_error(void);

/* Prints `timeglass: MESSAGE` on stderr and exits with TG_EXIT_USAGE. */
__attribute__((noreturn, format(printf, 1, 2))) void tg_die(const char *fmt, ...);

/* Same, for wrong command-line usage: adds "; see: timeglass CMD --help". */
__attribute__((noreturn, format(printf, 2, 3))) void tg_die_usage(const char *cmd, const char *fmt, ...);

/* Dies with the usage error for what getopt_long() just returned ('?' for
 * an unknown option, ':' for a missing value; optstring must start with
 * ':' or "+:"). */
__attribute__((noreturn)) void tg_die_getopt(const char *cmd, int ret, char **argv);

/* Prints `timeglass: warning: MESSAGE` on stderr. */
void tg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a decimal integer in [min, max] with nothing around it (no sign, no
 * spaces, no suffix). Returns 0, or -1 with tg_fail() set. */
int tg_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Same as tg_parse_u64, but dies with "bad number for WHAT: 'S' (...)" on failure. */
uint64_t tg_number_or_die(const char *what, const char *s, uint64_t min, uint64_t max);

/* Boolean environment value: unset, "", "0", "no", "false", "off" are false. */
int tg_env_flag(const char *name);

/* The store path: `opt` if given, else $TIMEGLASS_DB, else
 * ./.timeglass/timeglass.db. Never NULL; static storage or `opt`. */
const char *tg_default_db(const char *opt);

/* Creates every missing directory leading to the file `path` with mode 0700.
 * Returns 0, or -1 with tg_fail() set. */
int tg_mkdirs_for(const char *path);

/* Copies at most cap-1 bytes of src and a NUL into dst; returns dst. */
char *tg_strlcpy(char *dst, const char *src, size_t cap);

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME) and CLOCK_MONOTONIC. */
int64_t tg_realtime_ns(void);
int64_t tg_monotonic_ns(void);

/* Writes v in decimal at out (at most 20 bytes, no NUL) and returns how
 * many: for hot paths, where snprintf's some 700 instructions a number
 * show. */
size_t tg_fmt_u64(char *out, uint64_t v);

/* Formats a duration for people: "850 ns", "12.3 us", "1.23 ms", "4.56 s".
 * Returns buf. */
char *tg_fmt_duration(char *buf, size_t cap, int64_t ns);

/* Reads a whole small file (at most cap-1 bytes) into buf, NUL-terminated.
 * Returns the byte count or -1 (errno set). */
ssize_t tg_read_small_file(const char *path, char *buf, size_t cap);

/* A 64-bit mixer (MurmurHash3's finalizer) for the hash tables of the
 * collector and the dashboard: every input bit affects every output bit. */
static inline uint64_t tg_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

#endif
