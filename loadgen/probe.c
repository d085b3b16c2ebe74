/*
 * probe.c - negative and boundary cases, response checks (see probe.h).
 */
#include "probe.h"
#include "common/grow.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const lg_check_names[LG_CHECK_COUNT] = {"server_error", "accepted_invalid", "undocumented_status",
						    "response_schema"};

#define NON_ASCII "Z\xc3\xbcrich \xe2\x80\x93 \xe6\x9d\xb1\xe4\xba\xac \xe2\x98\x83"   /* Zürich – 東京 ☃ */
#define BIG_INT 9007199254740993.0    /* 2^53 + 1 */
#define OVERSIZE_BYTES (1024 * 1024)

static const cJSON *get(const cJSON *o, const char *k)
{
	return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static struct lg_case *add(struct lg_cases *out, const struct lg_case *valid, size_t max, size_t *added)
{
	if (*added >= max)
		return NULL;
	if (TG_GROW(out->v, out->n, out->cap, 64) < 0)
		return NULL;
	struct lg_case *c = &out->v[out->n++];
	lg_case_copy(valid, c);
	c->negative = c->boundary = 0;
	(*added)++;
	return c;
}

/* The schema of a field, resolved and with a nullable anyOf collapsed to
 * its non-null branch; *nullable says whether null is allowed. */
static const cJSON *field_schema(const struct lg_spec *s, const cJSON *sch, int *nullable)
{
	*nullable = 0;
	for (int d = 0; d < 8; d++) {
		sch = lg_resolve(s, sch);
		if (!sch)
			return NULL;
		if (cJSON_IsTrue(get(sch, "nullable")))
			*nullable = 1;
		const cJSON *all = get(sch, "allOf");
		if (cJSON_IsArray(all) && cJSON_GetArraySize(all) == 1 && !get(sch, "properties") && !get(sch, "type")) {
			sch = cJSON_GetArrayItem(all, 0);
			continue;
		}
		const cJSON *alt = get(sch, "anyOf");
		if (!cJSON_IsArray(alt))
			alt = get(sch, "oneOf");
		if (!cJSON_IsArray(alt) || get(sch, "type"))
			return sch;
		const cJSON *b, *only = NULL;
		int n = 0;
		cJSON_ArrayForEach(b, alt)
		{
			const cJSON *rb = lg_resolve(s, b);
			const cJSON *t = get(rb, "type");
			if (cJSON_IsString(t) && !strcmp(t->valuestring, "null"))
				*nullable = 1;
			else {
				only = b;
				n++;
			}
		}
		if (n != 1)
			return NULL;   /* a real union: type mutations would be guesses */
		sch = only;
	}
	return sch;
}

/* Where a mutated value goes: a parameter or a top-level body property. */
struct slot {
	cJSON *(*container)(struct lg_case *c);
	const char *name;
	const char *label;       /* "query parameter 'q'", "body field 'name'" */
	int is_param, in_path, in_query_or_header;
};

static cJSON *params_of(struct lg_case *c)
{
	return c->params;
}

static cJSON *body_of(struct lg_case *c)
{
	return c->body;
}

static void set_value(struct lg_case *c, const struct slot *sl, cJSON *v)
{
	cJSON *o = sl->container(c);
	if (!o) {
		cJSON_Delete(v);
		return;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(o, sl->name);
	cJSON_AddItemToObject(o, sl->name, v);
}

static void remove_value(struct lg_case *c, const struct slot *sl)
{
	cJSON *o = sl->container(c);
	if (o)
		cJSON_DeleteItemFromObjectCaseSensitive(o, sl->name);
}

#define CASE(kind_neg, ...)                                                              \
	do {                                                                             \
		struct lg_case *c_ = add(out, valid, max, &added);                     \
		if (!c_)                                                                 \
			return (int)added;                                             \
		c_->negative = (kind_neg);                                               \
		c_->boundary = !(kind_neg);                                              \
		snprintf(c_->what, sizeof c_->what, __VA_ARGS__);                      \
		cur = c_;                                                                \
	} while (0)

/* A string of n copies of ch (malloc'd), or NULL without memory. */
static char *repeated(char ch, size_t n)
{
	char *v = calloc(n + 1, 1);
	if (v)
		memset(v, ch, n);
	return v;
}

/* The mutations of one field. */
static int field_cases(const struct lg_spec *s, const cJSON *raw_schema, int required, const struct slot *sl,
		       const struct lg_case *valid, size_t max, struct lg_cases *out, size_t added)
{
	struct lg_case *cur;
	int nullable;
	const cJSON *sch = field_schema(s, raw_schema, &nullable);
	const char *t = sch ? lg_schema_type(s, sch) : NULL;
	if (required && !sl->in_path) {
		CASE(1, "%s missing (required)", sl->label);
		remove_value(cur, sl);
	} else if (!required && !sl->in_path) {
		const cJSON *o = sl->container((struct lg_case *)valid);
		if (o && cJSON_GetObjectItemCaseSensitive(o, sl->name)) {
			CASE(0, "%s left out (optional)", sl->label);
			remove_value(cur, sl);
		}
	}
	if (!t)
		return (int)added;
	int integer = !strcmp(t, "integer"), number = integer || !strcmp(t, "number");
	/* wrong type */
	if (number) {
		CASE(1, "%s: a string where the schema says %s", sl->label, t);
		set_value(cur, sl, cJSON_CreateString("not-a-number"));
		if (integer) {
			CASE(1, "%s: a fraction where the schema says integer", sl->label);
			set_value(cur, sl, sl->is_param ? cJSON_CreateString("1.5") : cJSON_CreateNumber(1.5));
		}
	} else if (!strcmp(t, "boolean")) {
		CASE(1, "%s: not a boolean", sl->label);
		set_value(cur, sl, cJSON_CreateString("not-a-bool"));
	} else if (!sl->is_param && (!strcmp(t, "string"))) {
		CASE(1, "%s: an object where the schema says string", sl->label);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "x", 1);
		set_value(cur, sl, o);
	} else if (!sl->is_param && (!strcmp(t, "array") || !strcmp(t, "object"))) {
		CASE(1, "%s: a string where the schema says %s", sl->label, t);
		set_value(cur, sl, cJSON_CreateString("x"));
	}
	if (!sl->is_param && !nullable && !sl->in_path) {
		CASE(1, "%s: null, which the schema does not allow", sl->label);
		set_value(cur, sl, cJSON_CreateNull());
	}
	const cJSON *en = get(sch, "enum");
	if (cJSON_IsArray(en) && !strcmp(t, "string")) {
		CASE(1, "%s: a value outside the enum", sl->label);
		set_value(cur, sl, cJSON_CreateString("not-in-enum-zz"));
	}
	if (number) {
		const cJSON *mn = get(sch, "minimum"), *mx = get(sch, "maximum");
		const cJSON *xmn = get(sch, "exclusiveMinimum"), *xmx = get(sch, "exclusiveMaximum");
		double lo = -INFINITY, hi = INFINITY;
		int lo_ex = 0, hi_ex = 0;
		if (cJSON_IsNumber(mn))
			lo = mn->valuedouble, lo_ex = cJSON_IsTrue(xmn);
		if (cJSON_IsNumber(xmn))
			lo = xmn->valuedouble, lo_ex = 1;
		if (cJSON_IsNumber(mx))
			hi = mx->valuedouble, hi_ex = cJSON_IsTrue(xmx);
		if (cJSON_IsNumber(xmx))
			hi = xmx->valuedouble, hi_ex = 1;
		double step = integer ? 1 : 0.5;
		if (isfinite(lo)) {
			CASE(1, "%s: %g, below the minimum", sl->label, lo_ex ? lo : lo - step);
			set_value(cur, sl, cJSON_CreateNumber(lo_ex ? lo : lo - step));
		}
		if (isfinite(hi)) {
			CASE(1, "%s: %g, above the maximum", sl->label, hi_ex ? hi : hi + step);
			set_value(cur, sl, cJSON_CreateNumber(hi_ex ? hi : hi + step));
		}
		/* edge values the schema allows */
		const double edges[] = {0, -1, BIG_INT};
		for (size_t i = 0; i < 3; i++) {
			double v = edges[i];
			if (v < lo || (lo_ex && v == lo) || v > hi || (hi_ex && v == hi) || en)
				continue;
			CASE(0, "%s: %.0f (allowed by the schema)", sl->label, v);
			set_value(cur, sl, cJSON_CreateNumber(v));
		}
	}
	if (!strcmp(t, "string")) {
		const cJSON *maxl = get(sch, "maxLength"), *minl = get(sch, "minLength");
		int free_text = !get(sch, "pattern") && !get(sch, "format") && !en;
		if (cJSON_IsNumber(maxl) && maxl->valuedouble < 100000) {
			size_t n = (size_t)maxl->valuedouble + 1;
			char *v = repeated('a', n);
			if (v) {
				CASE(1, "%s: %zu characters, over maxLength", sl->label, n);
				set_value(cur, sl, cJSON_CreateString(v));
				free(v);
			}
		}
		if (cJSON_IsNumber(minl) && minl->valuedouble >= 1 && !sl->in_path) {
			CASE(1, "%s: empty, under minLength", sl->label);
			set_value(cur, sl, cJSON_CreateString(""));
		}
		if (get(sch, "pattern") || (get(sch, "format") && strstr("uuid email date date-time",
									  get(sch, "format")->valuestring ? get(sch, "format")->valuestring : "@"))) {
			CASE(1, "%s: a value breaking its %s", sl->label, get(sch, "pattern") ? "pattern" : "format");
			set_value(cur, sl, cJSON_CreateString("!!not valid!!"));
		}
		if (free_text) {
			size_t maxlen = cJSON_IsNumber(maxl) ? (size_t)maxl->valuedouble : SIZE_MAX;
			if ((!cJSON_IsNumber(minl) || minl->valuedouble < 1) && !sl->in_path) {
				CASE(0, "%s: empty string (allowed by the schema)", sl->label);
				set_value(cur, sl, cJSON_CreateString(""));
			}
			/* no raw non-ASCII bytes in header values */
			if (maxlen >= 20 && (!sl->is_param || sl->in_path || sl->in_query_or_header)) {
				CASE(0, "%s: non-ASCII text (allowed by the schema)", sl->label);
				set_value(cur, sl, cJSON_CreateString(NON_ASCII));
			}
			if (!cJSON_IsNumber(maxl) && !sl->is_param) {
				/* a long string where no maximum is documented */
				size_t n = 10000;
				char *v = repeated('x', n);
				if (v) {
					CASE(0, "%s: %zu characters (no maxLength documented)", sl->label, n);
					set_value(cur, sl, cJSON_CreateString(v));
					free(v);
				}
			}
		}
	}
	return (int)added;
}

int lg_probe_cases(const struct lg_spec *s, const struct lg_op *op, const struct lg_case *valid, size_t max,
		   struct lg_cases *out)
{
	size_t start = out->n;
	size_t added = 0;
	struct lg_case *cur;
	for (size_t i = 0; i < op->nparams; i++) {
		const struct lg_param *p = &op->params[i];
		if (p->in == LG_IN_COOKIE)
			continue;
		char label[200];
		snprintf(label, sizeof label, "%s parameter '%.80s'",
			 p->in == LG_IN_PATH ? "path" : p->in == LG_IN_QUERY ? "query" : "header", p->name);
		struct slot sl = {params_of, p->name, label, 1, p->in == LG_IN_PATH, p->in != LG_IN_PATH};
		if (p->in == LG_IN_HEADER)
			sl.in_query_or_header = 0;   /* no non-ASCII in header values */
		int r = field_cases(s, p->schema, p->required, &sl, valid, max, out, added);
		if (r < 0)
			return -1;
		added = (size_t)r;
	}
	if (op->body_schema) {
		int nullable;
		const cJSON *bs = field_schema(s, op->body_schema, &nullable);
		const char *bt = bs ? lg_schema_type(s, bs) : NULL;
		if (op->body_required) {
			CASE(1, "request body missing (required)");
			cJSON_Delete(cur->body);
			cur->body = NULL;
		}
		static const char malformed[] = "{\"unterminated\": ";
		CASE(1, "malformed JSON body");
		cur->raw_body = strdup(malformed);
		cur->raw_len = strlen(malformed);
		if (valid->body) {
			CASE(1, "JSON body sent as text/plain");
			cur->content_type = "text/plain";
			char *txt = cJSON_PrintUnformatted(valid->body);
			cur->raw_body = txt;
			cur->raw_len = txt ? strlen(txt) : 0;
		}
		if (bt && !strcmp(bt, "object")) {
			CASE(1, "request body: an array where the schema says object");
			cJSON_Delete(cur->body);
			cur->body = cJSON_CreateArray();
			/* the body's own fields */
			const cJSON *req = get(bs, "required");
			const cJSON *props = get(bs, "properties"), *p;
			cJSON_ArrayForEach(p, props)
			{
				int required = 0;
				const cJSON *r;
				cJSON_ArrayForEach(r, req) required |= cJSON_IsString(r) && !strcmp(r->valuestring, p->string);
				char label[200];
				snprintf(label, sizeof label, "body field '%.80s'", p->string);
				struct slot sl = {body_of, p->string, label, 0, 0, 0};
				int n = field_cases(s, p, required, &sl, valid, max, out, added);
				if (n < 0)
					return -1;
				added = (size_t)n;
			}
		}
		if (valid->body && added < max) {
			/* a valid body padded with whitespace to 1 MiB: allowed by the
			 * schema; a server may refuse it (413), not fail on it */
			char *txt = cJSON_PrintUnformatted(valid->body);
			if (txt) {
				size_t n = strlen(txt);
				char *big = malloc(OVERSIZE_BYTES + n + 1);
				if (big) {
					CASE(0, "request body of %d bytes (valid JSON padded with spaces)", OVERSIZE_BYTES + (int)n);
					memcpy(big, txt, n);
					memset(big + n, ' ', OVERSIZE_BYTES);
					big[n + OVERSIZE_BYTES] = '\0';
					cur->raw_body = big;
					cur->raw_len = n + OVERSIZE_BYTES;
				}
				free(txt);
			}
		}
	}
	return (int)(out->n - start);
}

void lg_cases_free(struct lg_cases *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		lg_case_free(&cs->v[i]);
	free(cs->v);
	memset(cs, 0, sizeof *cs);
}

int lg_check_response(const struct lg_spec *s, const struct lg_op *op, const struct lg_case *c, int status,
		      const char *content_type, const char *body, size_t body_len, int body_truncated,
		      struct lg_finding_detail out[LG_CHECK_COUNT])
{
	int n = 0;
	if (status <= 0)
		return 0;
	if (status >= 500) {
		out[n].check = LG_SERVER_ERROR;
		snprintf(out[n].detail, sizeof out[n].detail, "%d for %s", status, c->what);
		n++;
	}
	if (c->negative && status >= 200 && status < 300) {
		out[n].check = LG_ACCEPTED_INVALID;
		snprintf(out[n].detail, sizeof out[n].detail, "%d for input the schema forbids: %s", status, c->what);
		n++;
	}
	if (status < 500 && op->responses && !lg_status_documented(op, status)) {
		out[n].check = LG_UNDOCUMENTED_STATUS;
		snprintf(out[n].detail, sizeof out[n].detail, "%d is not among the documented statuses (%s)", status,
			 c->what);
		n++;
	}
	if (status >= 200 && status < 300 && body && !body_truncated &&
	    (!content_type[0] || strstr(content_type, "json"))) {
		const cJSON *sch = lg_response_schema(s, op, status);
		if (sch) {
			cJSON *v = cJSON_ParseWithLength(body, body_len);
			char where[200], why[200];
			if (!v) {
				out[n].check = LG_RESPONSE_SCHEMA;
				snprintf(out[n].detail, sizeof out[n].detail, "%d body is not JSON (%s)", status, c->what);
				n++;
			} else if (lg_validate(s, sch, v, where, sizeof where, why, sizeof why) < 0) {
				out[n].check = LG_RESPONSE_SCHEMA;
				snprintf(out[n].detail, sizeof out[n].detail, "%d body at %.150s: %.150s (%.80s)", status, where, why,
					 c->what);
				n++;
			}
			cJSON_Delete(v);
		}
	}
	return n;
}
