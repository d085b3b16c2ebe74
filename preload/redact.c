/*
 * redact.c - secret query parameters: which names are secret, and the
 * redaction of their values in a URL or request target (contract in
 * http1.h).
 *
 * Runs inside the app for the target of every request that has a query (and
 * for URL-valued headers such as Referer), so it works in place, allocates
 * nothing and looks at each byte of the query a small constant number of
 * times. A name is compared after percent-decoding ("%70assword" is
 * "password"), in any case, with the whole name: substrings would catch
 * innocent names ("monkey", "zipcode", "author").
 */
#include <string.h>

#include "http1.h"

#define MARK TG_HTTP_REDACTED
#define MARK_LEN (sizeof(MARK) - 1)

static char extra[TG_HTTP_EXTRA_PARAMS][TG_HTTP_PARAM_NAME_MAX + 1];
static uint8_t extra_len[TG_HTTP_EXTRA_PARAMS];
static int n_extra;

/* Decodes name[0..len) (%XX escapes, '+' as space) lower-cased into out,
 * which holds TG_HTTP_PARAM_NAME_MAX bytes. Returns the decoded length, or
 * -1 if it does not fit (then it matches no name). */
static int decode_name(const char *name, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = (uint8_t)name[i];
		if (ch == '%' && i + 2 < len && tg_hexval((uint8_t)name[i + 1]) >= 0 &&
		    tg_hexval((uint8_t)name[i + 2]) >= 0) {
			ch = (uint8_t)(tg_hexval((uint8_t)name[i + 1]) << 4 | tg_hexval((uint8_t)name[i + 2]));
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (o == TG_HTTP_PARAM_NAME_MAX)
			return -1;
		out[o++] = (char)((ch >= 'A' && ch <= 'Z') ? ch | 0x20 : ch);
	}
	return (int)o;
}

/* Bit n set: an added name is n bytes long (decoded). */
static uint64_t extra_lengths;

#define IS(lit) (memcmp(b, lit, sizeof(lit) - 1) == 0)

/* 1 if b[0..n) (lower-cased, decoded) is one of the names always secret:
 * a switch on the length, then fixed-size compares. */
static int default_secret(const char *b, int n)
{
	switch (n) {
	case 3:
		return IS("pwd") || IS("key") || IS("sig");
	case 4:
		return IS("auth") || IS("code");
	case 5:
		return IS("token");
	case 6:
		return IS("passwd") || IS("apikey") || IS("secret");
	case 7:
		return IS("api_key") || IS("session");
	case 8:
		return IS("password");
	case 9:
		return IS("signature");
	case 12:
		return IS("access_token");
	case 13:
		return IS("refresh_token") || IS("client_secret");
	}
	return 0;
}

#undef IS

int tg_http_secret_param(const char *name, size_t len)
{
	char buf[TG_HTTP_PARAM_NAME_MAX];
	int n = (int)len;
	if (!name || !len || len > 3 * TG_HTTP_PARAM_NAME_MAX)
		return 0;
	/* Most names are plain: lower-cased as they are, in one pass that
	 * notices escapes (and '+'), which need decoding first. */
	size_t i = 0;
	if (len <= TG_HTTP_PARAM_NAME_MAX) {
		for (; i < len; i++) {
			uint8_t ch = (uint8_t)name[i];
			if (ch == '%' || ch == '+')
				break;
			buf[i] = (char)((ch >= 'A' && ch <= 'Z') ? ch | 0x20 : ch);
		}
	}
	if (i < len) {
		n = decode_name(name, len, buf);
		if (n <= 0)
			return 0;
	}
	if (default_secret(buf, n))
		return 1;
	if (!(extra_lengths >> n & 1))
		return 0;
	for (int k = 0; k < n_extra; k++)
		if (extra_len[k] == n && memcmp(extra[k], buf, (size_t)n) == 0)
			return 1;
	return 0;
}

int tg_http_redact_params(const char *list)
{
	int added = 0;
	if (!list)
		return 0;
	while (*list) {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);
		const char *p = list;
		list += len + (end ? 1 : 0);
		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (!len || n_extra == TG_HTTP_EXTRA_PARAMS)
			continue;
		int n = decode_name(p, len, extra[n_extra]);
		if (n <= 0)
			continue;
		extra_len[n_extra++] = (uint8_t)n;
		extra_lengths |= 1ull << n;
		added++;
	}
	return added;
}

/* Bytes that end a name (C_EQ) or a parameter (C_SEP) in a query. */
enum { C_NONE, C_EQ, C_SEP };
static const uint8_t cls[256] = { ['='] = C_EQ, ['&'] = C_SEP, [';'] = C_SEP, ['#'] = C_SEP };

size_t tg_http_redact_url(char *s, size_t len, size_t cap, int *cut)
{
	const char *q = memchr(s, '?', len);
	const char *h = memchr(s, '#', q ? (size_t)(q - s) : len);
	if (h)
		q = h;
	if (!q)
		return len;
	size_t i = (size_t)(q - s) + 1;
	while (i < len) {
		size_t n = i;
		while (n < len && !cls[(uint8_t)s[n]])
			n++;
		if (n == len || s[n] != '=') {
			i = n + 1; /* a name without a value */
			continue;
		}
		size_t v = n + 1, e = v;
		while (e < len && cls[(uint8_t)s[e]] != C_SEP)
			e++;
		if (tg_http_secret_param(s + i, n - i) &&
		    !(e - v == MARK_LEN && memcmp(s + v, MARK, MARK_LEN) == 0)) {
			size_t tail = len - e; /* bytes after the value */
			if (v + MARK_LEN > cap) {
				/* Not even the marker fits: the text ends at the '='. */
				memcpy(s + v, MARK, cap - v);
				*cut = 1;
				return cap;
			}
			size_t keep = tail;
			if (v + MARK_LEN + keep > cap) {
				keep = cap - v - MARK_LEN;
				*cut = 1;
			}
			memmove(s + v + MARK_LEN, s + e, keep);
			memcpy(s + v, MARK, MARK_LEN);
			len = v + MARK_LEN + keep;
			e = v + MARK_LEN;
		}
		i = e + 1;
	}
	return len;
}
