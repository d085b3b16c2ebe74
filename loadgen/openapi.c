/*
 * openapi.c - OpenAPI operations, value generation, serialization and
 * response validation (see openapi.h).
 */
#include "openapi.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/grow.h"

#define MAX_DEPTH 8           /* nesting of generated values and of validation */

/* ---- growable string ---------------------------------------------------- */

struct sb {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_addn(struct sb *b, const char *s, size_t n)
{
	if (!b->oom && TG_RESERVE(b->p, b->len + n + 1, b->cap, 256) < 0)
		b->oom = 1;
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(struct sb *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof buf) {
		char *big = malloc((size_t)n + 1);
		if (!big) {
			b->oom = 1;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		sb_addn(b, big, (size_t)n);
		free(big);
		return;
	}
	if (n > 0)
		sb_addn(b, buf, (size_t)n);
}

/* ---- the document ------------------------------------------------------- */

const cJSON *lg_resolve(const struct lg_spec *s, const cJSON *schema)
{
	for (int hops = 0; schema && hops < 32; hops++) {
		const cJSON *ref = cJSON_GetObjectItemCaseSensitive(schema, "$ref");
		if (!cJSON_IsString(ref))
			return schema;
		const char *r = ref->valuestring;
		if (r[0] != '#')
			return NULL;
		const cJSON *node = s->root;
		r++;
		while (*r == '/' && node) {
			r++;
			char seg[256];
			size_t n = 0;
			while (*r && *r != '/' && n + 1 < sizeof seg) {
				if (r[0] == '~' && r[1] == '1') {
					seg[n++] = '/';
					r += 2;
				} else if (r[0] == '~' && r[1] == '0') {
					seg[n++] = '~';
					r += 2;
				} else {
					seg[n++] = *r++;
				}
			}
			seg[n] = '\0';
			node = cJSON_GetObjectItemCaseSensitive(node, seg);
		}
		schema = node;
	}
	return schema;
}

static const cJSON *get(const cJSON *o, const char *k)
{
	return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static int is_null_schema(const struct lg_spec *s, const cJSON *sch)
{
	sch = lg_resolve(s, sch);
	const cJSON *t = get(sch, "type");
	return cJSON_IsString(t) && !strcmp(t->valuestring, "null");
}

/* The first non-null branch of anyOf/oneOf, or NULL. */
static const cJSON *first_branch(const struct lg_spec *s, const cJSON *sch)
{
	const cJSON *alt = get(sch, "anyOf");
	if (!cJSON_IsArray(alt))
		alt = get(sch, "oneOf");
	if (!cJSON_IsArray(alt))
		return NULL;
	const cJSON *b;
	cJSON_ArrayForEach(b, alt)
	{
		if (!is_null_schema(s, b))
			return lg_resolve(s, b);
	}
	return NULL;
}

const char *lg_schema_type(const struct lg_spec *s, const cJSON *sch)
{
	for (int d = 0; d < MAX_DEPTH; d++) {
		sch = lg_resolve(s, sch);
		if (!sch)
			return NULL;
		const cJSON *t = get(sch, "type");
		if (cJSON_IsString(t))
			return t->valuestring;
		if (cJSON_IsArray(t)) {
			const cJSON *e;
			cJSON_ArrayForEach(e, t)
			{
				if (cJSON_IsString(e) && strcmp(e->valuestring, "null"))
					return e->valuestring;
			}
		}
		const cJSON *b = first_branch(s, sch);
		if (!b) {
			const cJSON *all = get(sch, "allOf");
			if (cJSON_IsArray(all) && cJSON_GetArraySize(all) == 1)
				b = cJSON_GetArrayItem(all, 0);
		}
		if (!b)
			return get(sch, "properties") ? "object" : NULL;
		sch = b;
	}
	return NULL;
}

static const char *methods[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};

static void add_params(const struct lg_spec *s, const cJSON *list, struct lg_op *op)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, list)
	{
		p = lg_resolve(s, p);
		const cJSON *name = get(p, "name"), *in = get(p, "in");
		if (!cJSON_IsString(name) || !cJSON_IsString(in))
			continue;
		enum lg_in where;
		if (!strcmp(in->valuestring, "path"))
			where = LG_IN_PATH;
		else if (!strcmp(in->valuestring, "query"))
			where = LG_IN_QUERY;
		else if (!strcmp(in->valuestring, "header"))
			where = LG_IN_HEADER;
		else if (!strcmp(in->valuestring, "cookie"))
			where = LG_IN_COOKIE;
		else
			continue;
		/* an operation's parameter overrides the path item's of the same name and place */
		size_t i;
		for (i = 0; i < op->nparams; i++)
			if (op->params[i].in == where && !strcmp(op->params[i].name, name->valuestring))
				break;
		if (i == op->nparams) {
			struct lg_param *np = realloc(op->params, (op->nparams + 1) * sizeof *np);
			if (!np)
				return;
			op->params = np;
			op->nparams++;
		}
		op->params[i].name = name->valuestring;
		op->params[i].in = where;
		op->params[i].required = where == LG_IN_PATH || cJSON_IsTrue(get(p, "required"));
		op->params[i].schema = get(p, "schema");
	}
}

int lg_spec_parse(const char *text, struct lg_spec *s, char *err, size_t errcap)
{
	memset(s, 0, sizeof *s);
	s->root = cJSON_Parse(text);
	if (!s->root) {
		snprintf(err, errcap, "the OpenAPI document is not JSON");
		return -1;
	}
	const cJSON *paths = get(s->root, "paths");
	if (!cJSON_IsObject(paths)) {
		snprintf(err, errcap, "the OpenAPI document has no \"paths\"");
		lg_spec_free(s);
		return -1;
	}
	const cJSON *item;
	cJSON_ArrayForEach(item, paths)
	{
		const cJSON *pi = lg_resolve(s, item);
		if (!cJSON_IsObject(pi) || !item->string || item->string[0] != '/')
			continue;
		for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
			const cJSON *o = get(pi, methods[m]);
			if (!cJSON_IsObject(o))
				continue;
			struct lg_op *ops = realloc(s->ops, (s->nops + 1) * sizeof *ops);
			if (!ops) {
				snprintf(err, errcap, "out of memory");
				lg_spec_free(s);
				return -1;
			}
			s->ops = ops;
			struct lg_op *op = &s->ops[s->nops++];
			memset(op, 0, sizeof *op);
			for (size_t k = 0; methods[m][k]; k++)
				op->method[k] = (char)toupper((unsigned char)methods[m][k]);
			op->route = item->string;
			const cJSON *id = get(o, "operationId");
			op->op_id = cJSON_IsString(id) ? id->valuestring : NULL;
			add_params(s, get(pi, "parameters"), op);
			add_params(s, get(o, "parameters"), op);
			const cJSON *rb = lg_resolve(s, get(o, "requestBody"));
			if (rb) {
				op->body_required = cJSON_IsTrue(get(rb, "required"));
				const cJSON *content = get(rb, "content"), *ct;
				const cJSON *json = NULL;
				cJSON_ArrayForEach(ct, content)
				{
					if (ct->string && (!strncasecmp(ct->string, "application/json", 16) ||
							   strstr(ct->string, "+json"))) {
						json = ct;
						break;
					}
				}
				if (json)
					op->body_schema = get(json, "schema");
				if (!op->body_schema)
					op->body_form = content != NULL;
				if (json && !op->body_schema)
					op->body_schema = json;   /* any JSON: {} */
			}
			op->responses = get(o, "responses");
		}
	}
	return 0;
}

void lg_spec_free(struct lg_spec *s)
{
	for (size_t i = 0; i < s->nops; i++)
		free(s->ops[i].params);
	free(s->ops);
	cJSON_Delete(s->root);
	memset(s, 0, sizeof *s);
}

/* ---- patterns ----------------------------------------------------------- */

struct pat {
	const char *p;
	struct sb out;
	int bad;
};

static void pat_alt(struct pat *x, int depth);

/* One atom: its text appended count times. */
static void pat_atom(struct pat *x, int depth, char *atom, size_t *alen)
{
	const char *p = x->p;
	*alen = 0;
	if (*p == '(') {
		x->p++;
		if (x->p[0] == '?') {
			if (x->p[1] == ':')
				x->p += 2;
			else {
				x->bad = 1;
				return;
			}
		}
		struct sb saved = x->out;
		x->out = (struct sb){0};
		pat_alt(x, depth + 1);
		if (*x->p != ')')
			x->bad = 1;
		else
			x->p++;
		size_t n = x->out.len < 255 ? x->out.len : 255;
		if (x->out.p)
			memcpy(atom, x->out.p, n);
		*alen = n;
		free(x->out.p);
		x->out = saved;
		return;
	}
	if (*p == '[') {
		p++;
		int neg = *p == '^';
		if (neg)
			p++;
		char first = 0;
		int first_set = 0;
		const char *start = p;
		while (*p && (*p != ']' || p == start)) {
			char c = *p;
			if (c == '\\' && p[1]) {
				p++;
				c = *p == 'd' ? '0' : *p == 'w' ? 'a' : *p == 's' ? ' ' : *p;
			}
			if (!first_set) {
				first = c;
				first_set = 1;
			}
			p++;
		}
		if (*p != ']') {
			x->bad = 1;
			return;
		}
		x->p = p + 1;
		atom[0] = neg ? (first == 'a' ? 'b' : 'a') : first;
		*alen = 1;
		return;
	}
	if (*p == '\\') {
		p++;
		switch (*p) {
		case 'd': atom[0] = '0'; break;
		case 'w': atom[0] = 'a'; break;
		case 's': atom[0] = ' '; break;
		case 'D': case 'W': case 'S': atom[0] = '-'; break;
		case '\0': x->bad = 1; return;
		default:
			if (isalnum((unsigned char)*p) && !strchr("tnr", *p)) {
				x->bad = 1;   /* \b, \p{...}, back-references */
				return;
			}
			atom[0] = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p;
		}
		x->p = p + 1;
		*alen = 1;
		return;
	}
	if (*p == '.') {
		atom[0] = 'a';
		*alen = 1;
		x->p = p + 1;
		return;
	}
	if (strchr("*+?{", *p)) {
		x->bad = 1;
		return;
	}
	atom[0] = *p;
	*alen = 1;
	x->p = p + 1;
}

static void pat_seq(struct pat *x, int depth)
{
	while (!x->bad && *x->p && *x->p != '|' && *x->p != ')') {
		if (*x->p == '^' || *x->p == '$') {
			x->p++;
			continue;
		}
		char atom[256];
		size_t alen;
		pat_atom(x, depth, atom, &alen);
		if (x->bad)
			return;
		long count = 1;
		if (*x->p == '?' || *x->p == '*') {
			count = 0;
			x->p++;
		} else if (*x->p == '+') {
			x->p++;
		} else if (*x->p == '{') {
			char *end;
			count = strtol(x->p + 1, &end, 10);
			if (end == x->p + 1 || count < 0 || count > 1000) {
				x->bad = 1;
				return;
			}
			while (*end && *end != '}')
				end++;
			if (*end != '}') {
				x->bad = 1;
				return;
			}
			x->p = end + 1;
		}
		if (*x->p == '?')   /* lazy */
			x->p++;
		for (long i = 0; i < count; i++)
			sb_addn(&x->out, atom, alen);
	}
}

static void pat_alt(struct pat *x, int depth)
{
	if (depth > 16) {
		x->bad = 1;
		return;
	}
	pat_seq(x, depth);
	/* later alternatives are parsed and dropped */
	while (!x->bad && *x->p == '|') {
		x->p++;
		struct sb saved = x->out;
		x->out = (struct sb){0};
		pat_seq(x, depth);
		free(x->out.p);
		x->out = saved;
	}
}

char *lg_gen_pattern(const char *re)
{
	struct pat x = {.p = re};
	pat_alt(&x, 0);
	if (x.bad || *x.p || x.out.oom) {
		free(x.out.p);
		return NULL;
	}
	return x.out.p ? x.out.p : strdup("");
}

/* ---- values ------------------------------------------------------------- */

static double num_or(const cJSON *o, const char *k, double dflt, int *has)
{
	const cJSON *v = get(o, k);
	if (cJSON_IsNumber(v)) {
		if (has)
			*has = 1;
		return v->valuedouble;
	}
	return dflt;
}

/* The range [lo, hi] a number schema allows (exclusive bounds of 3.0 and 3.1). */
static void num_range(const cJSON *sch, int integer, double *lo, double *hi, int *has_lo, int *has_hi)
{
	*has_lo = *has_hi = 0;
	*lo = num_or(sch, "minimum", -INFINITY, has_lo);
	*hi = num_or(sch, "maximum", INFINITY, has_hi);
	double step = integer ? 1 : 1e-6;
	const cJSON *xl = get(sch, "exclusiveMinimum"), *xh = get(sch, "exclusiveMaximum");
	if (cJSON_IsTrue(xl))
		*lo += step;
	else if (cJSON_IsNumber(xl)) {
		*lo = xl->valuedouble + step;
		*has_lo = 1;
	}
	if (cJSON_IsTrue(xh))
		*hi -= step;
	else if (cJSON_IsNumber(xh)) {
		*hi = xh->valuedouble - step;
		*has_hi = 1;
	}
	if (integer) {
		*lo = ceil(*lo);
		*hi = floor(*hi);
	}
}

static cJSON *gen(const struct lg_spec *s, const cJSON *sch, const char *name, const cJSON *values, int depth);

static cJSON *gen_string(const cJSON *sch)
{
	const cJSON *fmt = get(sch, "format"), *pat = get(sch, "pattern");
	int has;
	long minl = (long)num_or(sch, "minLength", 0, &has), maxl = (long)num_or(sch, "maxLength", -1, &has);
	char *v = NULL;
	if (cJSON_IsString(pat))
		v = lg_gen_pattern(pat->valuestring);
	if (!v && cJSON_IsString(fmt)) {
		const char *f = fmt->valuestring;
		const char *x = !strcmp(f, "uuid")        ? "3fa85f64-5717-4562-b3fc-2c963f66afa6"
				: !strcmp(f, "email")     ? "user@example.com"
				: !strcmp(f, "date-time") ? "2024-01-02T03:04:05Z"
				: !strcmp(f, "date")      ? "2024-01-02"
				: !strcmp(f, "time")      ? "03:04:05"
				: !strncmp(f, "uri", 3) || !strcmp(f, "url") ? "https://example.com/"
				: !strcmp(f, "ipv4")      ? "192.0.2.1"
				: !strcmp(f, "ipv6")      ? "2001:db8::1"
				: !strcmp(f, "hostname")  ? "example.com"
				: !strcmp(f, "duration")  ? "P1D"
				: !strcmp(f, "binary") || !strcmp(f, "byte") ? "YWJj"
				: NULL;
		if (x)
			v = strdup(x);
	}
	if (!v) {
		v = strdup("string");
		if (!v)
			return NULL;
		size_t len = strlen(v);
		if (maxl >= 0 && (long)len > maxl)
			v[maxl] = '\0';
		if ((long)len < minl) {
			char *w = realloc(v, (size_t)minl + 1);
			if (!w) {
				free(v);
				return NULL;
			}
			v = w;
			memset(v + len, 'a', (size_t)minl - len);
			v[minl] = '\0';
		}
	}
	cJSON *j = cJSON_CreateString(v);
	free(v);
	return j;
}

static cJSON *gen_number(const cJSON *sch, int integer)
{
	double lo, hi;
	int hl, hh;
	num_range(sch, integer, &lo, &hi, &hl, &hh);
	double v = 1;
	if (v < lo)
		v = lo;
	if (v > hi)
		v = hi;
	const cJSON *mult = get(sch, "multipleOf");
	if (cJSON_IsNumber(mult) && mult->valuedouble > 0) {
		double m = mult->valuedouble;
		v = ceil(v / m) * m;
		if (v > hi)
			v -= m;
	}
	return cJSON_CreateNumber(v);
}

static cJSON *gen_object(const struct lg_spec *s, const cJSON *sch, const cJSON *values, int depth)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *props = get(sch, "properties"), *p;
	cJSON_ArrayForEach(p, props)
	{
		cJSON *v = gen(s, p, p->string, values, depth + 1);
		if (v)
			cJSON_AddItemToObject(o, p->string, v);
	}
	return o;
}

static cJSON *gen(const struct lg_spec *s, const cJSON *sch, const char *name, const cJSON *values, int depth)
{
	if (name && values) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(values, name);
		if (v)
			return cJSON_Duplicate(v, 1);
	}
	sch = lg_resolve(s, sch);
	if (!sch || depth > MAX_DEPTH)
		return cJSON_CreateString("string");
	const cJSON *x;
	if ((x = get(sch, "example")) && !cJSON_IsNull(x))
		return cJSON_Duplicate(x, 1);
	if (cJSON_IsArray(x = get(sch, "examples")) && cJSON_GetArraySize(x) > 0)
		return cJSON_Duplicate(cJSON_GetArrayItem(x, 0), 1);
	if ((x = get(sch, "const")))
		return cJSON_Duplicate(x, 1);
	if ((x = get(sch, "default")) && !cJSON_IsNull(x))
		return cJSON_Duplicate(x, 1);
	if (cJSON_IsArray(x = get(sch, "enum"))) {
		const cJSON *e;
		cJSON_ArrayForEach(e, x)
		{
			if (!cJSON_IsNull(e))
				return cJSON_Duplicate(e, 1);
		}
	}
	const cJSON *all = get(sch, "allOf");
	if (cJSON_IsArray(all)) {
		cJSON *merged = NULL;
		const cJSON *b;
		cJSON_ArrayForEach(b, all)
		{
			cJSON *v = gen(s, b, NULL, values, depth + 1);
			if (!merged) {
				merged = v;
			} else if (cJSON_IsObject(merged) && cJSON_IsObject(v)) {
				while (v->child) {
					cJSON *it = cJSON_DetachItemViaPointer(v, v->child);
					cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
					cJSON_AddItemToObject(merged, it->string, it);
				}
				cJSON_Delete(v);
			} else {
				cJSON_Delete(v);
			}
		}
		if (get(sch, "properties") && cJSON_IsObject(merged)) {
			cJSON *own = gen_object(s, sch, values, depth);
			while (own && own->child) {
				cJSON *it = cJSON_DetachItemViaPointer(own, own->child);
				cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
				cJSON_AddItemToObject(merged, it->string, it);
			}
			cJSON_Delete(own);
		}
		if (merged)
			return merged;
	}
	const char *t = lg_schema_type(s, sch);
	const cJSON *br = first_branch(s, sch);
	if (br && !get(sch, "type"))
		return gen(s, br, NULL, values, depth + 1);
	if (!t)
		return cJSON_CreateString("string");
	if (!strcmp(t, "string"))
		return gen_string(sch);
	if (!strcmp(t, "integer"))
		return gen_number(sch, 1);
	if (!strcmp(t, "number"))
		return gen_number(sch, 0);
	if (!strcmp(t, "boolean"))
		return cJSON_CreateBool(1);
	if (!strcmp(t, "null"))
		return cJSON_CreateNull();
	if (!strcmp(t, "array")) {
		cJSON *a = cJSON_CreateArray();
		int has;
		long n = (long)num_or(sch, "minItems", 1, &has);
		if (n < 1)
			n = 1;
		if (n > 16)
			n = 16;
		for (long i = 0; i < n; i++)
			cJSON_AddItemToArray(a, gen(s, get(sch, "items"), NULL, values, depth + 1));
		return a;
	}
	if (!strcmp(t, "object"))
		return gen_object(s, sch, values, depth);
	return cJSON_CreateString("string");
}

cJSON *lg_gen_value(const struct lg_spec *s, const cJSON *schema, const char *name, const cJSON *values)
{
	return gen(s, schema, name, values, 0);
}

/* ---- cases -------------------------------------------------------------- */

static int has_own_value(const struct lg_spec *s, const cJSON *sch, const char *name, const cJSON *values)
{
	if (values && name && cJSON_GetObjectItemCaseSensitive(values, name))
		return 1;
	sch = lg_resolve(s, sch);
	return get(sch, "example") || get(sch, "examples") || get(sch, "default");
}

int lg_case_valid(const struct lg_spec *s, const struct lg_op *op, const cJSON *values, struct lg_case *c)
{
	memset(c, 0, sizeof *c);
	c->params = cJSON_CreateObject();
	if (!c->params)
		return -1;
	for (size_t i = 0; i < op->nparams; i++) {
		const struct lg_param *p = &op->params[i];
		if (!p->required && !has_own_value(s, p->schema, p->name, values))
			continue;
		cJSON *v = lg_gen_value(s, p->schema, p->name, values);
		if (v)
			cJSON_AddItemToObject(c->params, p->name, v);
	}
	if (op->body_schema)
		c->body = lg_gen_value(s, op->body_schema, NULL, values);
	snprintf(c->what, sizeof c->what, "valid request");
	return 0;
}

int lg_case_copy(const struct lg_case *src, struct lg_case *dst)
{
	*dst = *src;
	dst->params = src->params ? cJSON_Duplicate(src->params, 1) : NULL;
	dst->body = src->body ? cJSON_Duplicate(src->body, 1) : NULL;
	dst->raw_body = NULL;
	if (src->raw_body) {
		dst->raw_body = malloc(src->raw_len + 1);
		if (dst->raw_body) {
			memcpy(dst->raw_body, src->raw_body, src->raw_len);
			dst->raw_body[src->raw_len] = '\0';
		}
	}
	return 0;
}

void lg_case_free(struct lg_case *c)
{
	cJSON_Delete(c->params);
	cJSON_Delete(c->body);
	free(c->raw_body);
	memset(c, 0, sizeof *c);
}

/* ---- serialization ------------------------------------------------------ */

static void pct_encode(struct sb *b, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p) || (keep_slash && *p == '/')) {
			sb_addn(b, (const char *)p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			sb_addn(b, e, 3);
		}
	}
}

/* The text of a scalar parameter value (malloc'd). */
static char *scalar_text(const cJSON *v)
{
	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (cJSON_IsBool(v))
		return strdup(cJSON_IsTrue(v) ? "true" : "false");
	if (cJSON_IsNull(v))
		return strdup("");
	if (cJSON_IsNumber(v)) {
		char buf[64];
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) < 1e18)
			snprintf(buf, sizeof buf, "%.0f", d);
		else
			snprintf(buf, sizeof buf, "%.17g", d);
		return strdup(buf);
	}
	return cJSON_PrintUnformatted(v);
}

static void shell_quote(struct sb *b, const char *s, size_t n)
{
	sb_add(b, "'");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\'')
			sb_add(b, "'\\''");
		else
			sb_addn(b, s + i, 1);
	}
	sb_add(b, "'");
}

/* Appends one value of query parameter name to target: sep ('?' or '&'),
 * then name=value, percent-encoded; the next sep is '&'. */
static void add_query_item(struct sb *target, char *sep, const char *name, const cJSON *v)
{
	char *txt = scalar_text(v);
	sb_addn(target, sep, 1);
	pct_encode(target, name, 0);
	sb_add(target, "=");
	if (txt)
		pct_encode(target, txt, 0);
	free(txt);
	*sep = '&';
}

void lg_wire_free(struct lg_wire *w)
{
	free(w->data);
	free(w->target);
	free(w->curl);
	memset(w, 0, sizeof *w);
}

int lg_wire_build(const struct lg_op *op, const struct lg_case *c, const char *base, const char *hostport,
		  const char *extra, const char *tag, const char *url, struct lg_wire *w)
{
	memset(w, 0, sizeof *w);
	struct sb target = {0}, hdr = {0}, req = {0}, curl = {0};
	sb_add(&target, base);
	/* path: template with parameters substituted */
	for (const char *p = op->route; *p;) {
		if (*p == '{') {
			const char *e = strchr(p, '}');
			if (e) {
				char name[256];
				size_t n = (size_t)(e - p - 1) < sizeof name - 1 ? (size_t)(e - p - 1) : sizeof name - 1;
				memcpy(name, p + 1, n);
				name[n] = '\0';
				/* {path:path} style converters: the name ends at ':' */
				char *colon = strchr(name, ':');
				if (colon)
					*colon = '\0';
				const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, name);
				char *txt = v ? scalar_text(v) : strdup("");
				if (txt)
					pct_encode(&target, txt, colon != NULL);
				free(txt);
				p = e + 1;
				continue;
			}
		}
		sb_addn(&target, p, 1);
		p++;
	}
	char sep = '?';
	for (size_t i = 0; i < op->nparams; i++) {
		const struct lg_param *pa = &op->params[i];
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->params, pa->name);
		if (!v || pa->in == LG_IN_PATH)
			continue;
		if (pa->in == LG_IN_QUERY) {
			const cJSON *items = cJSON_IsArray(v) ? v : NULL, *it;
			if (items) {
				cJSON_ArrayForEach(it, items)
					add_query_item(&target, &sep, pa->name, it);
				continue;
			}
			add_query_item(&target, &sep, pa->name, v);
		} else if (pa->in == LG_IN_HEADER || pa->in == LG_IN_COOKIE) {
			char *txt = scalar_text(v);
			if (txt) {
				/* no line breaks into the header block */
				for (char *q = txt; *q; q++)
					if (*q == '\r' || *q == '\n')
						*q = ' ';
				if (pa->in == LG_IN_HEADER)
					sb_printf(&hdr, "%s: %s\r\n", pa->name, txt);
				else
					sb_printf(&hdr, "Cookie: %s=%s\r\n", pa->name, txt);
			}
			free(txt);
		}
	}
	char *body = NULL;
	size_t body_len = 0;
	int has_body = 0;
	if (c->raw_body) {
		body = c->raw_body;
		body_len = c->raw_len;
		has_body = 1;
	} else if (c->body) {
		body = cJSON_PrintUnformatted(c->body);
		body_len = body ? strlen(body) : 0;
		has_body = body != NULL;
	}
	sb_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n", op->method, target.p, hostport);
	/* early, where the recorder's capped header text still holds it */
	if (tag)
		sb_printf(&req, "X-TimeGlass-Bench: %s\r\n", tag);
	sb_add(&req, "User-Agent: timeglass-bench\r\nAccept: */*\r\n");
	sb_add(&req, extra);
	if (hdr.p)
		sb_add(&req, hdr.p);
	const char *ct = c->content_type ? c->content_type : "application/json";
	if (has_body)
		sb_printf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n", ct, body_len);
	else if (strcmp(op->method, "GET") && strcmp(op->method, "HEAD") && strcmp(op->method, "DELETE") &&
		 strcmp(op->method, "OPTIONS"))
		sb_add(&req, "Content-Length: 0\r\n");
	sb_add(&req, "\r\n");
	if (has_body)
		sb_addn(&req, body, body_len);

	sb_printf(&curl, "curl -sS -X %s ", op->method);
	char *u = malloc(strlen(url) + target.len + 1);
	if (u) {
		strcpy(u, url);
		strcat(u, target.p);
		shell_quote(&curl, u, strlen(u));
		free(u);
	}
	/* the extra headers (they may hold a token) are left out of the curl line */
	if (hdr.p) {
		for (char *line = hdr.p; *line;) {
			char *e = strstr(line, "\r\n");
			if (!e)
				break;
			sb_add(&curl, " -H ");
			shell_quote(&curl, line, (size_t)(e - line));
			line = e + 2;
		}
	}
	if (has_body) {
		char cth[160];
		snprintf(cth, sizeof cth, "Content-Type: %s", ct);
		sb_add(&curl, " -H ");
		shell_quote(&curl, cth, strlen(cth));
		if (body_len > 4096) {
			sb_printf(&curl, " --data-binary @body.json  # %zu-byte body", body_len);
		} else {
			sb_add(&curl, " --data-binary ");
			shell_quote(&curl, body, body_len);
		}
	}
	if (body != c->raw_body)
		free(body);
	free(hdr.p);
	w->data = req.p;
	w->len = req.len;
	w->target = target.p;
	w->curl = curl.p;
	if (req.oom || target.oom || curl.oom || !req.p || !target.p) {
		lg_wire_free(w);
		return -1;
	}
	return 0;
}

/* ---- responses ---------------------------------------------------------- */

static const cJSON *status_entry(const struct lg_op *op, int status, int allow_default)
{
	if (!op->responses)
		return NULL;
	char code[16], range[16];
	snprintf(code, sizeof code, "%d", status);
	snprintf(range, sizeof range, "%dXX", status / 100);
	const cJSON *r;
	cJSON_ArrayForEach(r, op->responses)
	{
		if (r->string && !strcmp(r->string, code))
			return r;
	}
	cJSON_ArrayForEach(r, op->responses)
	{
		if (r->string && !strcasecmp(r->string, range))
			return r;
	}
	return allow_default ? get(op->responses, "default") : NULL;
}

int lg_status_documented(const struct lg_op *op, int status)
{
	return status_entry(op, status, 1) != NULL;
}

const cJSON *lg_response_schema(const struct lg_spec *s, const struct lg_op *op, int status)
{
	const cJSON *r = lg_resolve(s, status_entry(op, status, 0));
	const cJSON *content = get(r, "content"), *ct;
	cJSON_ArrayForEach(ct, content)
	{
		if (ct->string && (!strncasecmp(ct->string, "application/json", 16) || strstr(ct->string, "+json"))) {
			const cJSON *sch = get(ct, "schema");
			/* an empty schema ({}) says nothing */
			const cJSON *rs = lg_resolve(s, sch);
			return rs && rs->child ? sch : NULL;
		}
	}
	return NULL;
}

static int type_ok(const char *t, const cJSON *v)
{
	if (!strcmp(t, "string"))
		return cJSON_IsString(v);
	if (!strcmp(t, "integer"))
		return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
	if (!strcmp(t, "number"))
		return cJSON_IsNumber(v);
	if (!strcmp(t, "boolean"))
		return cJSON_IsBool(v);
	if (!strcmp(t, "null"))
		return cJSON_IsNull(v);
	if (!strcmp(t, "array"))
		return cJSON_IsArray(v);
	if (!strcmp(t, "object"))
		return cJSON_IsObject(v);
	return 1;
}

static const char *kind(const cJSON *v)
{
	return cJSON_IsString(v) ? "a string" : cJSON_IsNumber(v) ? "a number" : cJSON_IsBool(v) ? "a boolean"
	       : cJSON_IsNull(v) ? "null" : cJSON_IsArray(v) ? "an array" : cJSON_IsObject(v) ? "an object" : "?";
}

static int validate(const struct lg_spec *s, const cJSON *sch, const cJSON *v, struct sb *where, char *why,
		    size_t ycap, int depth)
{
	sch = lg_resolve(s, sch);
	if (!sch || depth > 32)
		return 0;
	if (cJSON_IsNull(v) && cJSON_IsTrue(get(sch, "nullable")))
		return 0;
	const cJSON *t = get(sch, "type");
	if (cJSON_IsString(t) && !type_ok(t->valuestring, v)) {
		snprintf(why, ycap, "%s where the schema says %s", kind(v), t->valuestring);
		return -1;
	}
	if (cJSON_IsArray(t)) {
		int ok = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, t) ok |= cJSON_IsString(e) && type_ok(e->valuestring, v);
		if (!ok) {
			snprintf(why, ycap, "%s where the schema allows other types", kind(v));
			return -1;
		}
	}
	const cJSON *en = get(sch, "enum");
	if (cJSON_IsArray(en)) {
		int ok = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, en) ok |= cJSON_Compare(e, v, 1);
		if (!ok) {
			snprintf(why, ycap, "a value outside the enum");
			return -1;
		}
	}
	const cJSON *all = get(sch, "allOf"), *b;
	cJSON_ArrayForEach(b, all)
	{
		if (validate(s, b, v, where, why, ycap, depth + 1) < 0)
			return -1;
	}
	const cJSON *alt = get(sch, "anyOf");
	if (!alt)
		alt = get(sch, "oneOf");
	if (cJSON_IsArray(alt) && cJSON_GetArraySize(alt) > 0) {
		int ok = 0;
		size_t wl = where->len;
		char tmp[200];
		cJSON_ArrayForEach(b, alt)
		{
			if (validate(s, b, v, where, tmp, sizeof tmp, depth + 1) == 0) {
				ok = 1;
				break;
			}
			where->len = wl;
			if (where->p)
				where->p[wl] = '\0';
		}
		if (!ok) {
			snprintf(why, ycap, "matches none of the alternatives (%s)", tmp);
			return -1;
		}
	}
	if (cJSON_IsObject(v)) {
		const cJSON *req = get(sch, "required"), *r;
		cJSON_ArrayForEach(r, req)
		{
			if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(v, r->valuestring)) {
				snprintf(why, ycap, "required property '%.80s' is missing", r->valuestring);
				return -1;
			}
		}
		const cJSON *props = get(sch, "properties"), *p;
		cJSON_ArrayForEach(p, props)
		{
			const cJSON *pv = cJSON_GetObjectItemCaseSensitive(v, p->string);
			if (!pv)
				continue;
			size_t wl = where->len;
			sb_printf(where, ".%s", p->string);
			if (validate(s, p, pv, where, why, ycap, depth + 1) < 0)
				return -1;
			where->len = wl;
			if (where->p)
				where->p[wl] = '\0';
		}
	}
	if (cJSON_IsArray(v)) {
		const cJSON *items = get(sch, "items"), *it;
		if (items) {
			int i = 0;
			cJSON_ArrayForEach(it, v)
			{
				size_t wl = where->len;
				sb_printf(where, "[%d]", i);
				if (validate(s, items, it, where, why, ycap, depth + 1) < 0)
					return -1;
				where->len = wl;
				if (where->p)
					where->p[wl] = '\0';
				if (++i >= 1000)
					break;
			}
		}
	}
	return 0;
}

int lg_validate(const struct lg_spec *s, const cJSON *schema, const cJSON *value, char *where, size_t wcap,
		char *why, size_t ycap)
{
	struct sb w = {0};
	sb_add(&w, "$");
	why[0] = '\0';
	int rc = validate(s, schema, value, &w, why, ycap, 0);
	snprintf(where, wcap, "%s", w.p ? w.p : "$");
	free(w.p);
	return rc;
}
