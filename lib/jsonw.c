/*
 * lib/jsonw.c - the streaming JSON writer of jsonw.h.
 */
#include "lib/jsonw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void jw_init(struct jw *w, FILE *f)
{
	memset(w, 0, sizeof *w);
	w->f = f;
}

/* Comma before a value or key where one is due. */
static void sep(struct jw *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	uint64_t bit = 1ull << (w->depth < 63 ? w->depth : 63);
	if (w->depth && (w->has_items & bit))
		putc_unlocked(',', w->f);
	w->has_items |= bit;
}

static void open_level(struct jw *w, char c)
{
	sep(w);
	putc_unlocked(c, w->f);
	if (w->depth < JW_MAX_DEPTH)
		w->depth++;
	w->has_items &= ~(1ull << w->depth);
}

static void close_level(struct jw *w, char c)
{
	putc_unlocked(c, w->f);
	if (w->depth)
		w->depth--;
	w->after_key = 0;
}

void jw_obj_open(struct jw *w)
{
	open_level(w, '{');
}

void jw_obj_close(struct jw *w)
{
	close_level(w, '}');
}

void jw_arr_open(struct jw *w)
{
	open_level(w, '[');
}

void jw_arr_close(struct jw *w)
{
	close_level(w, ']');
}

size_t tg_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0; /* overlong */
		if (c == 0xed && s[1] >= 0xa0)
			return 0; /* surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0; /* overlong */
		if (c == 0xf4 && s[1] >= 0x90)
			return 0; /* above U+10FFFF */
		return 4;
	}
	return 0;
}

size_t tg_utf8_valid_prefix(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	const uint64_t high = 0x8080808080808080ull;
	size_t i = 0;
	/* Sixteen ASCII bytes at a time, then the last eight (overlapping):
	 * most captured text is ASCII, and then that is all it costs. */
	for (; i + 16 <= n; i += 16) {
		uint64_t a, b;
		memcpy(&a, s + i, 8);
		memcpy(&b, s + i + 8, 8);
		if ((a | b) & high)
			goto slow;
	}
	if (n >= 8) { /* fewer than 16 left: the next eight and the last eight */
		uint64_t a, b;
		memcpy(&a, s + (n - i > 8 ? i : n - 8), 8);
		memcpy(&b, s + n - 8, 8);
		if (!((a | b) & high))
			return n;
	}
slow:
	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t len = tg_utf8_len(s + i, n - i);
		if (!len)
			return i;
		i += len;
	}
	return n;
}

char *tg_utf8_repair(const char *str, size_t n, size_t *out_n)
{
	const unsigned char *s = (const unsigned char *)str;
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	size_t o = 0, i = 0;
	while (i < n) {
		size_t len = s[i] < 0x80 ? 1 : tg_utf8_len(s + i, n - i);
		if (len) {
			memcpy(out + o, s + i, len);
			o += len;
			i += len;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	*out_n = o;
	return out;
}

void jw_escape(FILE *f, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			putc_unlocked((char)c, f);
			i++;
			continue;
		}
		switch (c) {
		case '"': fputs("\\\"", f); i++; continue;
		case '\\': fputs("\\\\", f); i++; continue;
		case '\n': fputs("\\n", f); i++; continue;
		case '\r': fputs("\\r", f); i++; continue;
		case '\t': fputs("\\t", f); i++; continue;
		case '\b': fputs("\\b", f); i++; continue;
		case '\f': fputs("\\f", f); i++; continue;
		default: break;
		}
		if (c < 0x20 || c == 0x7f) {
			fputs("\\u00", f);
			putc_unlocked(hex[c >> 4], f);
			putc_unlocked(hex[c & 15], f);
			i++;
			continue;
		}
		size_t len = tg_utf8_len(s + i, n - i);
		if (!len) {
			fputs("\\ufffd", f);
			i++;
		} else if (len == 3 && c == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			/* U+2028/U+2029: valid JSON, but not valid JavaScript source. */
			fputs(s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", f);
			i += 3;
		} else {
			fwrite(s + i, 1, len, f);
			i += len;
		}
	}
}

void jw_key(struct jw *w, const char *k)
{
	sep(w);
	putc_unlocked('"', w->f);
	jw_escape(w->f, k, strlen(k));
	fputs("\":", w->f);
	w->after_key = 1;
}

void jw_str(struct jw *w, const char *s, size_t n)
{
	if (!s) {
		jw_null(w);
		return;
	}
	sep(w);
	putc_unlocked('"', w->f);
	jw_escape(w->f, s, n);
	putc_unlocked('"', w->f);
}

void jw_cstr(struct jw *w, const char *s)
{
	jw_str(w, s, s ? strlen(s) : 0);
}

void jw_i64(struct jw *w, int64_t v)
{
	sep(w);
	fprintf(w->f, "%" PRId64, v);
}

void jw_raw(struct jw *w, const char *text)
{
	sep(w);
	fputs(text, w->f);
}

void jw_u64(struct jw *w, uint64_t v)
{
	sep(w);
	fprintf(w->f, "%" PRIu64, v);
}

void jw_bool(struct jw *w, int v)
{
	sep(w);
	fputs(v ? "true" : "false", w->f);
}

void jw_null(struct jw *w)
{
	sep(w);
	fputs("null", w->f);
}

void jw_newline(struct jw *w)
{
	putc_unlocked('\n', w->f);
	w->has_items &= ~1ull; /* next top-level value starts a new line, no comma */
}
