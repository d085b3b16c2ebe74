/*
 * lib/budget.c - the reader of budget.h: a line-oriented parser of the TOML
 * subset that [tool.timeglass] budgets use. Anything outside the budget's
 * own tables is skipped unparsed (a pyproject.toml holds many other tools'
 * settings, with arrays and multi-line strings this parser never needs).
 */
#include "lib/budget.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

#define LINE_MAX_BYTES 4096

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Parses one key (bare, "basic" or 'literal') at *p into out; advances *p.
 * Returns 0 or -1. */
static int parse_key(char **p, char *out, size_t cap)
{
	char *s = *p;
	size_t n = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '"' || *s == '\'') {
		char q = *s++;
		while (*s && *s != q) {
			if (q == '"' && *s == '\\' && s[1])
				s++;
			if (n + 1 < cap)
				out[n++] = *s;
			s++;
		}
		if (*s != q)
			return -1;
		s++;
	} else {
		while (isalnum((unsigned char)*s) || *s == '_' || *s == '-') {
			if (n + 1 < cap)
				out[n++] = *s;
			s++;
		}
		if (!n)
			return -1;
	}
	out[n] = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	*p = s;
	return 0;
}

/* Removes a comment that starts outside quotes. */
static void strip_comment(char *s)
{
	char q = 0;
	for (; *s; s++) {
		if (q) {
			if (*s == '\\' && q == '"' && s[1])
				s++;
			else if (*s == q)
				q = 0;
		} else if (*s == '"' || *s == '\'') {
			q = *s;
		} else if (*s == '#') {
			*s = '\0';
			return;
		}
	}
}

enum section { SEC_OTHER, SEC_GLOBAL, SEC_ROUTE };

static struct bg_limits *route_limits(struct budget *b, const char *key)
{
	for (size_t i = 0; i < b->nroutes; i++)
		if (!strcmp(b->routes[i].key, key))
			return &b->routes[i].lim;
	void *p = realloc(b->routes, (b->nroutes + 1) * sizeof *b->routes);
	if (!p)
		return NULL;
	b->routes = p;
	struct bg_route *r = &b->routes[b->nroutes];
	memset(r, 0, sizeof *r);
	r->key = strdup(key);
	if (!r->key)
		return NULL;
	b->nroutes++;
	return &r->lim;
}

/* Parses "[a.b."c d"]" into its keys. Returns the key count or -1. */
static int parse_header(char *s, char keys[4][256])
{
	int n = 0;
	for (;;) {
		if (n == 4 || parse_key(&s, keys[n], sizeof keys[n]) < 0)
			return -1;
		n++;
		if (*s == '.') {
			s++;
			continue;
		}
		return *s == ']' && !*trim(s + 1) ? n : -1;
	}
}

static enum section classify(char keys[4][256], int n, int pyproject, const char **route)
{
	int base = 0;
	if (pyproject) {
		if (n < 2 || strcmp(keys[0], "tool") || strcmp(keys[1], "timeglass"))
			return SEC_OTHER;
		base = 2;
	}
	if (n == base)
		return SEC_GLOBAL;
	if (n == base + 2 && !strcmp(keys[base], "routes")) {
		*route = keys[base + 1];
		return SEC_ROUTE;
	}
	return SEC_OTHER;
}

static int parse_value(const char *v, const char *key, struct bg_limits *l, int global, const char *where)
{
	char *end;
	if (!strcmp(key, "allow_n_plus_one")) {
		if (strcmp(v, "true") && strcmp(v, "false"))
			return tg_fail("%s: allow_n_plus_one must be true or false", where);
		l->allow_n_plus_one = !strcmp(v, "true");
		l->set |= BG_N_PLUS_ONE;
		return 0;
	}
	errno = 0;
	double d = strtod(v, &end);
	if (end == v || *trim(end) || errno || d < 0)
		return tg_fail("%s: %s must be a number >= 0, not '%.40s'", where, key, v);
	if (!strcmp(key, "p95_ms")) {
		l->p95_ms = d;
		l->set |= BG_P95;
	} else if (!strcmp(key, "max_queries_per_request") || !strcmp(key, "max_5xx")) {
		if (d != (double)(int64_t)d)
			return tg_fail("%s: %s must be a whole number", where, key);
		if (key[4] == 'q') {
			l->max_queries = (int64_t)d;
			l->set |= BG_QUERIES;
		} else {
			l->max_5xx = (int64_t)d;
			l->set |= BG_5XX;
		}
	} else if (!strcmp(key, "time_tolerance") && global) {
		l->time_tolerance = d;
		l->set |= BG_TOLERANCE;
	} else {
		return tg_fail("%s: unknown budget key '%.60s' (known: p95_ms, max_queries_per_request, "
			       "allow_n_plus_one, max_5xx%s)",
			       where, key, global ? ", time_tolerance" : "");
	}
	return 0;
}

int bg_read(const char *path, int pyproject, int must_exist, struct budget *b)
{
	memset(b, 0, sizeof *b);
	tg_strlcpy(b->source, path, sizeof b->source);
	FILE *f = fopen(path, "r");
	if (!f) {
		if (!must_exist && errno == ENOENT)
			return 0;
		return tg_fail("cannot read budget file %s: %s", path, strerror(errno));
	}
	char line[LINE_MAX_BYTES], where[600];
	enum section sec = pyproject ? SEC_OTHER : SEC_GLOBAL;
	struct bg_limits *cur = pyproject ? NULL : &b->global;
	int ret = 0;
	for (unsigned lineno = 1; ret == 0 && fgets(line, sizeof line, f); lineno++) {
		snprintf(where, sizeof where, "%s:%u", path, lineno);
		strip_comment(line);
		char *s = trim(line);
		if (!*s)
			continue;
		if (*s == '[') {
			char keys[4][256];
			const char *route = NULL;
			int n = s[1] == '[' ? -2 : parse_header(s + 1, keys); /* [[arrays]] are never ours */
			sec = n < 0 ? SEC_OTHER : classify(keys, n, pyproject, &route);
			if (n == -1 && strstr(s, "timeglass"))
				ret = tg_fail("%s: cannot parse table header %.80s", where, s);
			cur = sec == SEC_GLOBAL ? &b->global : sec == SEC_ROUTE ? route_limits(b, route) : NULL;
			if (sec == SEC_ROUTE && !cur)
				ret = tg_fail("out of memory");
			if (sec != SEC_OTHER)
				b->found = 1;
			continue;
		}
		if (sec == SEC_OTHER)
			continue;
		char key[256];
		char *p = s;
		if (parse_key(&p, key, sizeof key) < 0 || *p != '=') {
			ret = tg_fail("%s: expected key = value", where);
			break;
		}
		ret = parse_value(trim(p + 1), key, cur, sec == SEC_GLOBAL, where);
		b->found = 1;
	}
	fclose(f);
	return ret;
}

struct bg_limits bg_for_route(const struct budget *b, const char *key)
{
	struct bg_limits l = b->global;
	l.set &= ~(unsigned)BG_5XX; /* the top-level max_5xx counts the whole run */
	for (size_t i = 0; i < b->nroutes; i++) {
		if (strcmp(b->routes[i].key, key))
			continue;
		const struct bg_limits *r = &b->routes[i].lim;
		if (r->set & BG_P95)
			l.p95_ms = r->p95_ms;
		if (r->set & BG_QUERIES)
			l.max_queries = r->max_queries;
		if (r->set & BG_N_PLUS_ONE)
			l.allow_n_plus_one = r->allow_n_plus_one;
		if (r->set & BG_5XX)
			l.max_5xx = r->max_5xx;
		l.set |= r->set;
	}
	return l;
}

void bg_free(struct budget *b)
{
	for (size_t i = 0; i < b->nroutes; i++)
		free(b->routes[i].key);
	free(b->routes);
	memset(b, 0, sizeof *b);
}
