/*
 * lib/jsonw.h - a small streaming JSON writer for command output and, later, the
 * dashboard's API.
 *
 * Values go straight to a stdio stream (use open_memstream() for a buffer).
 * Integers are printed exactly from 64-bit integers, never through double.
 * Strings are byte strings that may hold anything the traced app saw on the
 * wire: control characters, quotes and backslashes are escaped, valid UTF-8
 * passes through and every byte of invalid UTF-8 becomes U+FFFD, so the
 * output is always valid JSON in valid UTF-8.
 *
 * The writer tracks nesting (up to JW_MAX_DEPTH) to place commas; it does not
 * check that keys and values alternate properly: the caller writes keys
 * inside objects only.
 */
#ifndef TG_JSONW_H
#define TG_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 32

struct jw {
	FILE *f;
	unsigned depth;      /* open objects/arrays */
	uint64_t has_items;  /* bit d: level d already holds an item (comma needed) */
	int after_key;       /* a key was just written: the next value needs no comma */
};

void jw_init(struct jw *w, FILE *f);

void jw_obj_open(struct jw *w);
void jw_obj_close(struct jw *w);
void jw_arr_open(struct jw *w);
void jw_arr_close(struct jw *w);

/* An object key; `k` is a NUL-terminated string (escaped like any string). */
void jw_key(struct jw *w, const char *k);

/* A string of n bytes; s == NULL writes null. */
void jw_str(struct jw *w, const char *s, size_t n);
/* A NUL-terminated string; NULL writes null. */
void jw_cstr(struct jw *w, const char *s);
void jw_i64(struct jw *w, int64_t v);
void jw_u64(struct jw *w, uint64_t v);
void jw_bool(struct jw *w, int v);
/* A value written as is: the caller guarantees it is valid JSON (a number). */
void jw_raw(struct jw *w, const char *text);
void jw_null(struct jw *w);

/* Ends a top-level value with a newline (JSON lines). */
void jw_newline(struct jw *w);

/* Writes only the escaped body of a string (no quotes) to f. */
void jw_escape(FILE *f, const char *s, size_t n);

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes left): 1..4, or 0
 * if invalid. Rejects overlong forms, surrogates and code points above
 * U+10FFFF. The one validator of captured text, also the dashboard's. */
size_t tg_utf8_len(const unsigned char *s, size_t n);

/* Bytes of s[0..n) that start a valid UTF-8 text: n when all of it is. */
size_t tg_utf8_valid_prefix(const char *s, size_t n);

/* A malloc'ed copy of s[0..n) as valid UTF-8, each byte that starts no
 * valid sequence replaced by U+FFFD, NUL-terminated; its length in *out_n.
 * NULL when out of memory. */
char *tg_utf8_repair(const char *s, size_t n, size_t *out_n);

#endif
