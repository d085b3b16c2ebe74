/*
 * symbolize.h - names of native instruction addresses of a live process, for
 * the collector (`timeglass run --native`).
 *
 * An address is mapped to its file and file offset through /proc/PID/maps
 * (read on first use, read again on a miss at most once a second), then to
 * the function symbol that contains it: .symtab of the file, else of its
 * separate debug file (build-id: /usr/lib/debug/.build-id/xx/rest.debug;
 * .gnu_debuglink: next to the file, in .debug/ there, under /usr/lib/debug),
 * else .dynsym. Files are read once with libelf and their symbols kept
 * (shared by every process). Not thread-safe: the collector's thread only.
 */
#ifndef TG_SYMBOLIZE_H
#define TG_SYMBOLIZE_H

#include <stdint.h>
#include <sys/types.h>

struct tg_sym_proc;

/* Per-process state; NULL on ENOMEM. */
struct tg_sym_proc *tg_sym_proc_new(pid_t pid);
void tg_sym_proc_free(struct tg_sym_proc *p);

/* What addr is: *func the function's name (or NULL when no symbol covers
 * it), *file the mapped file's path (NULL when addr is in no file
 * mapping), *off addr's offset in that file. Strings stay valid until
 * tg_sym_cleanup(). Returns 0, -1 when addr is in no known mapping. */
int tg_sym_lookup(struct tg_sym_proc *p, uint64_t addr, const char **func, const char **file, uint64_t *off);

/* Frees the per-file symbol tables (at collector exit). */
void tg_sym_cleanup(void);

#endif
