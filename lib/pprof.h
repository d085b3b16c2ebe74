/*
 * lib/pprof.h - stack samples as a pprof profile: the gzipped profile.proto
 * message (github.com/google/pprof, proto/profile.proto) that `go tool
 * pprof`, Pyroscope and Grafana read.
 *
 * Three layers, each usable alone:
 *  - tg_pb_*: a protobuf encoder into a growable buffer (varints,
 *    length-delimited fields, packed repeated integers);
 *  - tg_pprof_*: a profile being built (string table, mappings, functions,
 *    locations, samples with labels), encoded and gzipped at the end;
 *  - tg_pprof_write_samples(): the samples of a flame selection
 *    (lib/readers.h) read from the store into one profile.
 *
 * Functions that can fail return -1 with one line in tg_error() (lib/util.h).
 * Out of memory while building is remembered and reported by the final
 * encode or write, so the calls in between need no checks.
 */
#ifndef TG_PPROF_H
#define TG_PPROF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#include "lib/readers.h"

/* ---- protobuf encoder ---------------------------------------------------- */

/* Encoded bytes; zero-initialize, release with tg_pb_free(). */
struct tg_pb {
	uint8_t *buf;
	size_t len, cap;
	int failed; /* out of memory: what followed was dropped */
};

void tg_pb_free(struct tg_pb *b);

/* A base-128 varint, least significant group first. */
void tg_pb_varint(struct tg_pb *b, uint64_t v);

/* Field `field` of wire type varint (uint64, int64 as two's complement,
 * bool). As proto3 encodes them, zero is left out. */
void tg_pb_uint(struct tg_pb *b, unsigned field, uint64_t v);

/* Field `field` of wire type length-delimited: bytes, string, or an
 * embedded message encoded in another buffer. Always written, even empty
 * (repeated strings keep their place). */
void tg_pb_bytes(struct tg_pb *b, unsigned field, const void *p, size_t n);
void tg_pb_str(struct tg_pb *b, unsigned field, const char *s);
void tg_pb_msg(struct tg_pb *b, unsigned field, const struct tg_pb *m);

/* A packed repeated integer field (one length-delimited run of varints);
 * nothing when n is 0. */
void tg_pb_packed(struct tg_pb *b, unsigned field, const uint64_t *v, size_t n);

/* ---- a profile ------------------------------------------------------------ */

struct tg_pprof;

struct tg_pprof_label {
	const char *key, *str;
};

/* An empty profile whose string table holds "" at index 0; NULL when out of
 * memory. */
struct tg_pprof *tg_pprof_new(void);
void tg_pprof_free(struct tg_pprof *p);

/* Index of s in the string table, added on first use. */
int64_t tg_pprof_str(struct tg_pprof *p, const char *s);

#define TG_PPROF_MAX_TYPES 8

/* Appends a sample type (one value of every sample, in this order), at
 * most TG_PPROF_MAX_TYPES. */
void tg_pprof_sample_type(struct tg_pprof *p, const char *type, const char *unit);

/* The sampling period, its type and unit; when the profile was taken
 * (Unix ns) and for how long; the sample type shown by default; a comment
 * (one line, added after those before). */
void tg_pprof_period(struct tg_pprof *p, const char *type, const char *unit, int64_t period);
void tg_pprof_time(struct tg_pprof *p, int64_t time_nanos, int64_t duration_nanos);
void tg_pprof_default_type(struct tg_pprof *p, const char *type);
void tg_pprof_comment(struct tg_pprof *p, const char *text);

/* The mapping id of the binary or library `file` (one per file name), or
 * of the code it stands for ("[python]"); ids count from 1. */
uint64_t tg_pprof_mapping(struct tg_pprof *p, const char *file, int has_lines);

/* The function id of name in file (one per pair; file "" for none). */
uint64_t tg_pprof_function(struct tg_pprof *p, const char *name, const char *file, int64_t start_line);

/* A new location (id returned) in mapping, one line of function. */
uint64_t tg_pprof_location(struct tg_pprof *p, uint64_t mapping, uint64_t function, int64_t line);

/* Appends a sample: n location ids, leaf first; one value per sample type;
 * nl string labels (NULL str: left out). */
void tg_pprof_sample(struct tg_pprof *p, const uint64_t *locs, size_t n, const int64_t *values,
		     const struct tg_pprof_label *labels, size_t nl);

/* The profile.proto Profile message, uncompressed, into *out (zeroed by the
 * caller). Returns 0, or -1 when out of memory at any point. */
int tg_pprof_encode(struct tg_pprof *p, struct tg_pb *out);

/* Writes the message gzipped to f (what `go tool pprof` reads). Returns 0,
 * or -1 (out of memory, zlib or write error). */
int tg_pprof_write(struct tg_pprof *p, FILE *f);

/* ---- from the store -------------------------------------------------------- */

/*
 * Writes the samples of sel (the rows `timeglass flame` shows, same counts
 * per stack; a "(waiting)" leaf when sel->state is NULL) to f as a gzipped
 * profile: values samples/count, wall/nanoseconds (samples times the
 * period) and cpu/nanoseconds (the thread CPU time they stand for); period
 * wall/nanoseconds, from the rate the run's samples were taken at; time and
 * duration of the run or the request; string labels route ("METHOD
 * template", as --route takes it) and request_id on samples of a request,
 * thread (kernel tid) and state (running, waiting) on all. Python frames
 * share one mapping "[python]", native frames one per library. Returns 0,
 * or -1 with tg_error() set.
 */
int tg_pprof_write_samples(sqlite3 *db, const struct tg_samples_sel *sel, FILE *f);

/* The sampling period (ns) of run's stack samples, measured: the samples
 * of each process's main thread over the process's lifetime. The default
 * rate's period (1 ms) when the run has no finished process with samples;
 * -1 on a SQLite error. */
int64_t tg_pprof_sample_period(sqlite3 *db, int64_t run);

#endif
