/*
 * fingerprint.c - SQL fingerprints and redaction (fingerprint.h).
 *
 * Workload: the collector fingerprints every captured query, thousands per
 * second; one pass over the text, no allocation. The scanner knows enough
 * SQL lexing for PostgreSQL and SQLite: '...' strings with '' escapes,
 * E'...' strings with backslash escapes, "..." and `...` and [...] quoted
 * identifiers (kept as they are), $tag$...$tag$ dollar quoting, -- and
 * block comments, numbers (not inside identifiers) and placeholders.
 */
#include "fingerprint.h"

#include <ctype.h>
#include <string.h>

struct out {
	char *p;
	size_t len, cap;
};

static void put(struct out *o, char c)
{
	if (o->len + 1 < o->cap)
		o->p[o->len++] = c;
}

static void puts_(struct out *o, const char *s)
{
	while (*s)
		put(o, *s++);
}

static int ident_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c >= 0x80;
}

/* A space is written lazily, only between tokens that need one. */
static void space(struct out *o)
{
	if (o->len && o->p[o->len - 1] != ' ')
		put(o, ' ');
}

/* After writing a placeholder: folds "(?, ?, ?" + ")" into "(?+)". Called
 * when ')' is about to be written. */
static void fold_list(struct out *o)
{
	/* Walk back over "?", ", " / "," separators to an opening paren. */
	size_t i = o->len;
	int items = 0;
	for (;;) {
		while (i && o->p[i - 1] == ' ')
			i--;
		if (!i || o->p[i - 1] != '?')
			return;
		i--;
		items++;
		while (i && o->p[i - 1] == ' ')
			i--;
		if (i && o->p[i - 1] == '(')
			break;
		if (!i || o->p[i - 1] != ',')
			return;
		i--;
	}
	/* A single "(?)" stays as it is: it is not a list. */
	if (items < 2)
		return;
	o->len = i;
	puts_(o, "?+");
}

size_t tg_sql_fingerprint(const char *sql, size_t n, char *outbuf, size_t cap)
{
	struct out o = {.p = outbuf, .cap = cap};
	if (!cap)
		return 0;
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)sql[i];
		if (isspace(c)) {
			space(&o);
			i++;
			continue;
		}
		if (c == '-' && i + 1 < n && sql[i + 1] == '-') { /* comment to end of line */
			while (i < n && sql[i] != '\n')
				i++;
			continue;
		}
		if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
			i += 2;
			while (i + 1 < n && !(sql[i] == '*' && sql[i + 1] == '/'))
				i++;
			i = i + 2 <= n ? i + 2 : n;
			continue;
		}
		if (c == '\'' || ((c == 'e' || c == 'E') && i + 1 < n && sql[i + 1] == '\'' &&
				  (i == 0 || !ident_char((unsigned char)sql[i - 1])))) {
			int backslash = c != '\'';
			i += backslash ? 2 : 1;
			while (i < n) {
				if (backslash && sql[i] == '\\' && i + 1 < n) {
					i += 2;
					continue;
				}
				if (sql[i] == '\'') {
					if (i + 1 < n && sql[i + 1] == '\'') {
						i += 2;
						continue;
					}
					i++;
					break;
				}
				i++;
			}
			put(&o, '?');
			continue;
		}
		if (c == '"' || c == '`' || c == '[') { /* quoted identifier: kept */
			char close = c == '[' ? ']' : (char)c;
			put(&o, (char)c);
			i++;
			while (i < n && sql[i] != close)
				put(&o, sql[i++]);
			if (i < n)
				put(&o, sql[i++]);
			continue;
		}
		if (c == '$' && i + 1 < n && isdigit((unsigned char)sql[i + 1])) { /* $1 */
			i++;
			while (i < n && isdigit((unsigned char)sql[i]))
				i++;
			put(&o, '?');
			continue;
		}
		if (c == '$') { /* $tag$ ... $tag$ */
			size_t j = i + 1;
			while (j < n && (isalnum((unsigned char)sql[j]) || sql[j] == '_'))
				j++;
			if (j < n && sql[j] == '$') {
				size_t tag = j + 1 - i;
				size_t k = j + 1;
				while (k + tag <= n && memcmp(sql + k, sql + i, tag) != 0)
					k++;
				i = k + tag <= n ? k + tag : n;
				put(&o, '?');
				continue;
			}
		}
		if (c == '%' && i + 1 < n && (sql[i + 1] == 's' || sql[i + 1] == 'b' || sql[i + 1] == 't')) {
			i += 2;
			put(&o, '?');
			continue;
		}
		if (c == '%' && i + 1 < n && sql[i + 1] == '(') { /* %(name)s */
			size_t j = i + 2;
			while (j < n && sql[j] != ')')
				j++;
			if (j + 1 < n) {
				i = j + 2;
				put(&o, '?');
				continue;
			}
		}
		if (c == ':' && i + 1 < n && (isalpha((unsigned char)sql[i + 1]) || sql[i + 1] == '_') &&
		    !(i > 0 && sql[i - 1] == ':')) { /* :name (not a :: cast) */
			i++;
			while (i < n && ident_char((unsigned char)sql[i]))
				i++;
			put(&o, '?');
			continue;
		}
		if (c == '?') {
			i++;
			while (i < n && isdigit((unsigned char)sql[i])) /* ?NNN */
				i++;
			put(&o, '?');
			continue;
		}
		if (isdigit(c) || (c == '.' && i + 1 < n && isdigit((unsigned char)sql[i + 1]))) {
			/* A number unless it ends an identifier (t1, col2). */
			if (o.len && ident_char((unsigned char)o.p[o.len - 1])) {
				put(&o, (char)c);
				i++;
				continue;
			}
			/* A leading minus sign belongs to the literal. */
			if (o.len && o.p[o.len - 1] == '-' &&
			    (o.len < 2 || strchr(" (,=<>", o.p[o.len - 2])))
				o.len--;
			while (i < n && (isalnum((unsigned char)sql[i]) || sql[i] == '.' ||
					 ((sql[i] == '+' || sql[i] == '-') && (sql[i - 1] == 'e' || sql[i - 1] == 'E'))))
				i++;
			put(&o, '?');
			continue;
		}
		if (ident_char(c)) {
			while (i < n && ident_char((unsigned char)sql[i]))
				put(&o, (char)tolower((unsigned char)sql[i++]));
			continue;
		}
		if (c == ')') {
			while (o.len && o.p[o.len - 1] == ' ')
				o.len--;
			fold_list(&o);
			put(&o, ')');
			i++;
			continue;
		}
		if (c == ',' || c == '(') {
			while (o.len && o.p[o.len - 1] == ' ')
				o.len--;
			put(&o, (char)c);
			if (c == ',')
				put(&o, ' ');
			i++;
			continue;
		}
		if (c == ';' && i + 1 >= n) { /* trailing semicolon */
			i++;
			continue;
		}
		put(&o, (char)c);
		i++;
	}
	while (o.len && (o.p[o.len - 1] == ' ' || o.p[o.len - 1] == ';'))
		o.len--;
	o.p[o.len] = '\0';
	return o.len;
}

int64_t tg_hash64(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return (int64_t)h;
}

size_t tg_sql_redact(const char *sql, size_t n, char *outbuf, size_t cap)
{
	struct out o = {.p = outbuf, .cap = cap};
	if (!cap)
		return 0;
	size_t i = 0;
	while (i < n) {
		if ((sql[i] == 'p' || sql[i] == 'P') && i + 8 <= n && strncasecmp(sql + i, "password", 8) == 0 &&
		    (i == 0 || !ident_char((unsigned char)sql[i - 1])) &&
		    (i + 8 == n || !ident_char((unsigned char)sql[i + 8]))) {
			for (size_t k = 0; k < 8; k++)
				put(&o, sql[i + k]);
			i += 8;
			while (i < n && isspace((unsigned char)sql[i]))
				put(&o, sql[i++]);
			if (i < n && (sql[i] == '\'' || ((sql[i] == 'e' || sql[i] == 'E') && i + 1 < n &&
							 sql[i + 1] == '\''))) {
				int backslash = sql[i] != '\'';
				i += backslash ? 2 : 1;
				while (i < n) {
					if (backslash && sql[i] == '\\' && i + 1 < n) {
						i += 2;
						continue;
					}
					if (sql[i] == '\'') {
						if (i + 1 < n && sql[i + 1] == '\'') {
							i += 2;
							continue;
						}
						i++;
						break;
					}
					i++;
				}
				puts_(&o, "'[redacted]'");
			}
			continue;
		}
		if (sql[i] == '\'' || sql[i] == '"') { /* a literal or quoted name: copied as is */
			char q = sql[i];
			put(&o, sql[i++]);
			while (i < n && sql[i] != q)
				put(&o, sql[i++]);
			if (i < n)
				put(&o, sql[i++]);
			continue;
		}
		put(&o, sql[i++]);
	}
	o.p[o.len] = '\0';
	return o.len;
}
