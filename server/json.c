/*
 * json.c - the cJSON helpers of json.h: exact integers, unix-ns strings and
 * UTF-8-safe strings for the dashboard API.
 */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonw.h"

cJSON *tg_json_int(int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, v);
	return cJSON_CreateRaw(buf);
}

cJSON *tg_json_num(double v)
{
	return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* Adds item under name; frees it when that fails. */
static cJSON *add(cJSON *obj, const char *name, cJSON *item)
{
	if (!item)
		return NULL;
	if (!cJSON_AddItemToObject(obj, name, item)) {
		cJSON_Delete(item);
		return NULL;
	}
	return item;
}

cJSON *tg_json_add_int(cJSON *obj, const char *name, int64_t v)
{
	return add(obj, name, tg_json_int(v));
}

cJSON *tg_json_add_ns(cJSON *obj, const char *name, int64_t v)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, v);
	return add(obj, name, cJSON_CreateString(buf));
}

cJSON *tg_json_add_num(cJSON *obj, const char *name, double v)
{
	return add(obj, name, tg_json_num(v));
}

void tg_json_add_dur(cJSON *obj, const char *base, int64_t ns)
{
	char k[48];
	snprintf(k, sizeof k, "%s_ms", base);
	tg_json_add_num(obj, k, (double)ns / 1e6);
	snprintf(k, sizeof k, "%s_ns", base);
	tg_json_add_int(obj, k, ns);
}

cJSON *tg_json_add_bytes(cJSON *obj, const char *name, const char *s, size_t len)
{
	if (!s)
		return add(obj, name, cJSON_CreateNull());
	/* Worst case: every byte becomes the 3-byte U+FFFD; NUL bytes are
	 * dropped (cJSON strings are NUL-terminated). */
	char *buf = malloc(len * 3 + 1);
	if (!buf)
		return NULL;
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t l = p[i] ? tg_utf8_len(p + i, len - i) : 1;
		if (!p[i]) {
			i++;
		} else if (l == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(buf + o, p + i, l);
			o += l;
			i += l;
		}
	}
	buf[o] = 0;
	cJSON *item = add(obj, name, cJSON_CreateString(buf));
	free(buf);
	return item;
}

cJSON *tg_json_add_col(cJSON *obj, const char *name, sqlite3_stmt *st, int col)
{
	switch (sqlite3_column_type(st, col)) {
	case SQLITE_NULL:
		return add(obj, name, cJSON_CreateNull());
	case SQLITE_INTEGER:
		return tg_json_add_int(obj, name, sqlite3_column_int64(st, col));
	case SQLITE_FLOAT:
		return tg_json_add_num(obj, name, sqlite3_column_double(st, col));
	default: {
		const char *s = (const char *)sqlite3_column_text(st, col);
		return tg_json_add_bytes(obj, name, s ? s : "", (size_t)sqlite3_column_bytes(st, col));
	}
	}
}

void tg_json_add_cols(cJSON *obj, sqlite3_stmt *st, int first, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		tg_json_add_col(obj, names[i], st, first + i);
}
