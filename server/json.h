/*
 * json.h - cJSON helpers shared by the dashboard's API handlers.
 *
 * Number convention of the API (see API.md): integers are written as exact
 * decimal JSON numbers (never through a double), except absolute times in
 * nanoseconds since the epoch (*_unix_ns), which exceed 2^53 and are JSON
 * strings; fields ending in _ms are doubles for display. Strings captured
 * from the application (paths, headers, SQL) may hold any bytes: they are
 * written as valid UTF-8, each invalid byte replaced by U+FFFD.
 */
#ifndef TG_SERVER_JSON_H
#define TG_SERVER_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

/* Adds name: v as an exact integer. Returns the item or NULL (no memory). */
cJSON *tg_json_add_int(cJSON *obj, const char *name, int64_t v);

/* Adds name: "v" (decimal string) for a time in unix ns. */
cJSON *tg_json_add_ns(cJSON *obj, const char *name, int64_t v);

/* Adds name: v as a double (ms, rates); non-finite values become null. */
cJSON *tg_json_add_num(cJSON *obj, const char *name, double v);

/* Adds name: the len bytes at s as a UTF-8 string (NULL s: null). */
cJSON *tg_json_add_bytes(cJSON *obj, const char *name, const char *s, size_t len);

/* Adds name: column col of the current row of st: integer columns as exact
 * integers, text and blobs as strings, NULL as null. */
cJSON *tg_json_add_col(cJSON *obj, const char *name, sqlite3_stmt *st, int col);

/* tg_json_add_col() for the columns first, first + 1, ... named by the
 * NULL-terminated names, in that order. */
void tg_json_add_cols(cJSON *obj, sqlite3_stmt *st, int first, const char *const *names);

/* Adds base_ms (a double, for display) and base_ns (exact) for a duration
 * in ns. */
void tg_json_add_dur(cJSON *obj, const char *base, int64_t ns);

/* An exact integer array item, for arrays. */
cJSON *tg_json_int(int64_t v);

/* A double for arrays (null when not finite). */
cJSON *tg_json_num(double v);

#endif
