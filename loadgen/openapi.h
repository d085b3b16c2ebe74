/*
 * openapi.h - an OpenAPI 3.x document (as FastAPI serves it at
 * /openapi.json) read for `timeglass bench`: its operations, valid values
 * generated from their schemas, requests serialized from those values, and
 * a small JSON Schema validator for responses.
 *
 * Values: a value from the --values file by parameter or property name
 * first, then the schema's example(s), default, const or first enum value,
 * then one made from the type and its constraints (minimum/maximum,
 * lengths, simple patterns, formats uuid, email, date, date-time, uri, ...).
 * $ref (local, "#/..."), allOf (merged), anyOf/oneOf (the first non-null
 * branch) and OpenAPI 3.0 nullable / 3.1 type lists are understood.
 *
 * Strings returned are malloc'd unless said otherwise; schema pointers point
 * into the document and live as long as it.
 */
#ifndef LG_OPENAPI_H
#define LG_OPENAPI_H

#include <stddef.h>

#include <cjson/cJSON.h>

enum lg_in { LG_IN_PATH, LG_IN_QUERY, LG_IN_HEADER, LG_IN_COOKIE };

struct lg_param {
	const char *name;
	enum lg_in in;
	int required;
	const cJSON *schema;      /* may be NULL (no schema: a string) */
};

struct lg_op {
	char method[8];           /* upper case */
	const char *route;        /* the path template, "/items/{item_id}" */
	const char *op_id;        /* operationId or NULL */
	struct lg_param *params;
	size_t nparams;
	const cJSON *body_schema; /* JSON request body, NULL when none */
	int body_required;
	int body_form;            /* the body is form data only (not generated) */
	const cJSON *responses;   /* the operation's responses object, may be NULL */
};

struct lg_spec {
	cJSON *root;
	struct lg_op *ops;
	size_t nops;
};

/* Parses text as an OpenAPI 3 document. Returns 0 or -1 (err filled). */
int lg_spec_parse(const char *text, struct lg_spec *s, char *err, size_t errcap);
void lg_spec_free(struct lg_spec *s);

/* Follows $ref chains (local references only); NULL for NULL or a dangling
 * reference. */
const cJSON *lg_resolve(const struct lg_spec *s, const cJSON *schema);

/* The schema's type: "string", "integer", ... or NULL when it has none. A
 * nullable branch or a "null" in a type list is skipped; anyOf/oneOf look at
 * the first non-null branch. */
const char *lg_schema_type(const struct lg_spec *s, const cJSON *schema);

/* A valid value for schema (NULL schema: a string). name: the parameter or
 * property name, looked up in values (an object, may be NULL). Never NULL
 * unless out of memory. */
cJSON *lg_gen_value(const struct lg_spec *s, const cJSON *schema, const char *name, const cJSON *values);

/* A string matching the simple regular expression re (literals, classes,
 * \d \w \s, groups with alternatives, ?, *, +, {n,m}); NULL when re uses
 * something else. */
char *lg_gen_pattern(const char *re);

/* One request of an operation, as values before serialization. */
struct lg_case {
	cJSON *params;            /* object: parameter name -> value; absent = not sent */
	cJSON *body;              /* JSON body or NULL */
	char *raw_body;           /* when set, sent instead of body (malformed JSON ...) */
	size_t raw_len;
	const char *content_type; /* NULL: application/json when there is a body */
	int negative;             /* the schema forbids this input: a 4xx is expected */
	int boundary;             /* an edge value the schema allows */
	char what[200];           /* what the case does, for people */
};

/* The valid base case of op: required parameters, optional ones with a
 * value of their own (values file, example, default), the full body. */
int lg_case_valid(const struct lg_spec *s, const struct lg_op *op, const cJSON *values, struct lg_case *c);
/* Deep copy of c (what is copied too). */
int lg_case_copy(const struct lg_case *src, struct lg_case *dst);
void lg_case_free(struct lg_case *c);

struct lg_wire {
	char *data;               /* the request bytes */
	size_t len;
	char *target;             /* path and query as sent */
	char *curl;               /* a curl command line that sends the same request */
};

/* Serializes a case into request bytes. base: the URL's path prefix;
 * hostport: the Host header; extra: "K: V\r\n" lines sent on every request
 * (may be ""); tag: value of the X-TimeGlass-Bench header or NULL; url: the
 * target's http://host:port for the curl line. Returns 0 or -1 (memory). */
int lg_wire_build(const struct lg_op *op, const struct lg_case *c, const char *base, const char *hostport,
		  const char *extra, const char *tag, const char *url, struct lg_wire *w);
void lg_wire_free(struct lg_wire *w);

/* 1 if the operation documents status (exactly, as "4XX", or "default"). */
int lg_status_documented(const struct lg_op *op, int status);

/* The JSON schema documented for status (exact or range), NULL when none. */
const cJSON *lg_response_schema(const struct lg_spec *s, const struct lg_op *op, int status);

/* Validates value against schema: type, nullable, enum, const, required,
 * properties, items, allOf/anyOf/oneOf, $ref. Returns 0 when it matches,
 * -1 with where ("$.items[0].price") and why filled. */
int lg_validate(const struct lg_spec *s, const cJSON *schema, const cJSON *value, char *where, size_t wcap,
		char *why, size_t ycap);

#endif
