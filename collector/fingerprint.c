/*
 * collector/fingerprint.c - SQL fingerprints and redaction (fingerprint.h).
 *
 * Workload: the collector fingerprints every captured query, thousands per
 * second; one pass over the text, no allocation. The scanner knows enough
 * SQL lexing for PostgreSQL and SQLite: '...' strings with '' escapes,
 * E'...' strings with backslash escapes, "..." and `...` and [...] quoted
 * identifiers (kept as they are), $tag$...$tag$ dollar quoting, -- and
 * block comments, numbers (not inside identifiers) and placeholders.
 */
#include "collector/fingerprint.h"

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

/* The index just past the string literal that starts at sql[i]: '...' with
 * '' for a quote, or E'...' (e'...') where a backslash also escapes the next
 * byte; n when the literal is not closed. */
static size_t skip_string(const char *sql, size_t n, size_t i)
{
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
			return i + 1;
		}
		i++;
	}
	return i;
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
			i = skip_string(sql, n, i);
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

/* ---- housekeeping ---------------------------------------------------- */

/* A token of a fingerprint: a word (identifier characters and dots) or
 * one other character. */
struct tok {
	const char *p;
	size_t n;
};

static int word_char(unsigned char c)
{
	return ident_char(c) || c == '.';
}

/* The tokens of s[0..n) into t (cap), skipping spaces; returns the count
 * (cap + 1 when there were more). */
static size_t tokens(const char *s, size_t n, struct tok *t, size_t cap)
{
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		if (s[i] == ' ') {
			i++;
			continue;
		}
		size_t j = i + 1;
		if (word_char((unsigned char)s[i]))
			while (j < n && word_char((unsigned char)s[j]))
				j++;
		if (k == cap)
			return cap + 1;
		t[k++] = (struct tok){s + i, j - i};
		i = j;
	}
	return k;
}

static int is(const struct tok *t, const char *w)
{
	return t->n == strlen(w) && memcmp(t->p, w, t->n) == 0;
}

static int starts(const struct tok *t, const char *w)
{
	return t->n >= strlen(w) && memcmp(t->p, w, strlen(w)) == 0;
}

/* The statement s[0..n) with every token after the first equal to text. */
static int rest_is(const char *s, size_t n, const char *text)
{
	while (n && *s == ' ')
		s++, n--;
	while (n && s[n - 1] == ' ')
		n--;
	return n == strlen(text) && memcmp(s, text, n) == 0;
}

/* A query of the system catalogs that reads pg_type: every relation after
 * FROM or JOIN is a subquery, a pg_ catalog or a name the statement's own
 * WITH defines. */
static int type_introspection(const struct tok *t, size_t nt)
{
	int reads_type = 0;
	for (size_t i = 0; i < nt; i++)
		if (is(&t[i], "pg_type") || is(&t[i], "pg_catalog.pg_type"))
			reads_type = 1;
	if (!reads_type)
		return 0;
	for (size_t i = 0; i + 1 < nt; i++) {
		if (!is(&t[i], "from") && !is(&t[i], "join"))
			continue;
		const struct tok *r = &t[i + 1];
		if (is(r, "(") || starts(r, "pg_") || starts(r, "pg_catalog."))
			continue;
		int cte = 0;
		for (size_t j = 0; j + 1 < nt && !cte; j++) {
			if (!is(&t[j], "with"))
				continue;
			const struct tok *name = &t[j + 1];
			if (is(name, "recursive") && j + 2 < nt)
				name = &t[j + 2];
			cte = name->n == r->n && memcmp(name->p, r->p, r->n) == 0;
		}
		if (!cte)
			return 0;
	}
	return 1;
}

/* One statement (no ';'). */
static int housekeeping_one(const char *s, size_t n)
{
	static struct tok t[4096];
	size_t nt = tokens(s, n, t, sizeof t / sizeof t[0]);
	if (nt == 0 || nt > sizeof t / sizeof t[0])
		return 0;
	static const char *const verbs[] = {
		"begin", "commit", "end", "rollback", "abort", "savepoint", "release", "set", "reset",
		"show", "discard", "deallocate", "listen", "unlisten", "close", "pragma",
	};
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (is(&t[0], verbs[i]))
			return 1;
	if (is(&t[0], "start"))
		return nt > 1 && is(&t[1], "transaction");
	if (is(&t[0], "select")) {
		/* Probes: a constant, the server's version, the schema, a
		 * setting; asyncpg's pool reset. */
		const char *rest = t[0].p + t[0].n;
		size_t rn = n - (size_t)(rest - s);
		static const char *const probes[] = {
			"?", "version()", "pg_catalog.version()", "current_schema()", "pg_catalog.current_schema()",
			"current_setting(?)", "pg_catalog.current_setting(?)", "pg_advisory_unlock_all()",
			"pg_catalog.pg_advisory_unlock_all()",
		};
		for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
			if (rest_is(rest, rn, probes[i]))
				return 1;
	}
	if (is(&t[0], "select") || is(&t[0], "with"))
		return type_introspection(t, nt);
	return 0;
}

int tg_sql_housekeeping(const char *fp, size_t n)
{
	int any = 0;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		int quoted = 0;
		while (j < n && (quoted || fp[j] != ';')) {
			if (fp[j] == '"')
				quoted = !quoted;
			j++;
		}
		size_t a = i, b = j;
		while (a < b && fp[a] == ' ')
			a++;
		if (a < b) {
			if (!housekeeping_one(fp + a, b - a))
				return 0;
			any = 1;
		}
		i = j + 1;
	}
	return any;
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

int64_t tg_hash_mem(const void *p, size_t n, uint64_t seed)
{
	const unsigned char *s = p;
	uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
	for (; n >= 8; s += 8, n -= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	uint64_t w = 0;
	memcpy(&w, s, n);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 32;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 29;
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
				i = skip_string(sql, n, i);
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
