/* test-openapi.c - operations of an OpenAPI document, generated values,
 * serialized requests, probe cases and the response checks. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openapi.h"
#include "probe.h"

static const char spec_text[] =
	"{\"openapi\":\"3.1.0\",\"paths\":{"
	"\"/items/{item_id}\":{\"get\":{\"parameters\":["
	"  {\"name\":\"item_id\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000}},"
	"  {\"name\":\"q\",\"in\":\"query\",\"schema\":{\"anyOf\":[{\"type\":\"string\",\"maxLength\":10},{\"type\":\"null\"}]}},"
	"  {\"name\":\"kind\",\"in\":\"query\",\"required\":true,\"schema\":{\"$ref\":\"#/components/schemas/Kind\"}}],"
	"  \"responses\":{\"200\":{\"content\":{\"application/json\":{\"schema\":{\"$ref\":\"#/components/schemas/Item\"}}}},"
	"               \"422\":{\"description\":\"x\"}}}},"
	"\"/items\":{\"post\":{\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":"
	"  {\"allOf\":[{\"$ref\":\"#/components/schemas/Item\"}]}}}},"
	"  \"responses\":{\"201\":{\"description\":\"x\"},\"4XX\":{\"description\":\"x\"}}}}},"
	"\"components\":{\"schemas\":{"
	"  \"Kind\":{\"type\":\"string\",\"enum\":[\"book\",\"film\"]},"
	"  \"Item\":{\"type\":\"object\",\"required\":[\"name\",\"price\"],\"properties\":{"
	"    \"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":50},"
	"    \"price\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
	"    \"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
	"    \"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{4}$\"},"
	"    \"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
	"    \"note\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}}}}}}";

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct lg_spec s;
	char err[256];
	assert(lg_spec_parse(spec_text, &s, err, sizeof err) == 0);
	assert(s.nops == 2);
	const struct lg_op *get = &s.ops[0], *post = &s.ops[1];
	assert(!strcmp(get->method, "GET") && !strcmp(get->route, "/items/{item_id}") && get->nparams == 3);
	assert(!strcmp(post->method, "POST") && post->body_schema && post->body_required);

	char *p = lg_gen_pattern("^[A-Z]{3}-\\d{4}$");
	assert(p && !strcmp(p, "AAA-0000"));
	free(p);
	p = lg_gen_pattern("^(foo|bar)+x?$");
	assert(p && !strcmp(p, "foo"));
	free(p);
	assert(!lg_gen_pattern("(?=x)"));

	cJSON *values = cJSON_Parse("{\"item_id\": 42}");
	struct lg_case valid;
	assert(lg_case_valid(&s, get, values, &valid) == 0);
	struct lg_wire w;
	assert(lg_wire_build(get, &valid, "/api", "h:1", "Authorization: Bearer t\r\n", "tag-1", "http://h:1", &w) == 0);
	printf("%s\n%s\n", w.data, w.curl);
	assert(!strncmp(w.data, "GET /api/items/42?kind=book HTTP/1.1\r\nHost: h:1\r\n", 49));
	assert(strstr(w.data, "Host: h:1\r\nX-TimeGlass-Bench: tag-1\r\n") && strstr(w.data, "Bearer t\r\n\r\n"));
	assert(!strstr(w.curl, "Bearer") && strstr(w.curl, "'http://h:1/api/items/42?kind=book'"));
	lg_wire_free(&w);

	struct lg_case body;
	assert(lg_case_valid(&s, post, NULL, &body) == 0);
	char *txt = cJSON_PrintUnformatted(body.body);
	printf("%s\n", txt);
	assert(strstr(txt, "\"sku\":\"AAA-0000\"") && strstr(txt, "\"id\":\"3fa85f64-5717-4562-b3fc-2c963f66afa6\""));
	free(txt);
	char where[200], why[200];
	const cJSON *item = lg_resolve(&s, cJSON_GetObjectItem(cJSON_GetObjectItem(s.root, "components")->child, "Item"));
	assert(lg_validate(&s, item, body.body, where, sizeof where, why, sizeof why) == 0);
	cJSON *bad = cJSON_Parse("{\"name\":\"x\",\"price\":1,\"tags\":[\"a\",3]}");
	assert(lg_validate(&s, item, bad, where, sizeof where, why, sizeof why) < 0);
	printf("%s: %s\n", where, why);
	assert(!strcmp(where, "$.tags[1]"));
	cJSON_Delete(bad);

	struct lg_cases cs = {0};
	assert(lg_probe_cases(&s, get, &valid, 500, &cs) > 0);
	int n = lg_probe_cases(&s, post, &body, 500, &cs);
	for (size_t i = 0; i < cs.n; i++)
		printf("  %c %s\n", cs.v[i].negative ? '-' : '~', cs.v[i].what);
	assert(n > 10);
	size_t neg = 0, edge = 0;
	int seen_missing = 0, seen_enum = 0, seen_range = 0, seen_nonascii = 0, seen_malformed = 0;
	for (size_t i = 0; i < cs.n; i++) {
		neg += cs.v[i].negative;
		edge += cs.v[i].boundary;
		seen_missing |= !!strstr(cs.v[i].what, "body field 'price' missing");
		seen_enum |= !!strstr(cs.v[i].what, "query parameter 'kind': a value outside the enum");
		seen_range |= !!strstr(cs.v[i].what, "path parameter 'item_id': 1001, above the maximum");
		seen_nonascii |= !!strstr(cs.v[i].what, "body field 'note': non-ASCII");
		seen_malformed |= !!strstr(cs.v[i].what, "malformed JSON");
	}
	printf("%zu cases: %zu negative, %zu boundary\n", cs.n, neg, edge);
	assert(seen_missing && seen_enum && seen_range && seen_nonascii && seen_malformed);

	struct lg_finding_detail f[LG_CHECK_COUNT];
	struct lg_case *negc = NULL;
	for (size_t i = 0; i < cs.n; i++)
		if (cs.v[i].negative) {
			negc = &cs.v[i];
			break;
		}
	assert(lg_check_response(&s, get, negc, 200, "application/json", "{\"name\":\"a\",\"price\":1}", 23, 0, f) == 1 &&
	       f[0].check == LG_ACCEPTED_INVALID);
	assert(lg_check_response(&s, get, &valid, 200, "application/json", "{\"name\":\"a\"}", 12, 0, f) == 1 &&
	       f[0].check == LG_RESPONSE_SCHEMA);
	assert(lg_check_response(&s, get, &valid, 404, "", NULL, 0, 0, f) == 1 && f[0].check == LG_UNDOCUMENTED_STATUS);
	assert(lg_check_response(&s, post, &valid, 404, "", NULL, 0, 0, f) == 0);   /* 4XX documented */
	assert(lg_check_response(&s, get, &valid, 500, "", NULL, 0, 0, f) == 1 && f[0].check == LG_SERVER_ERROR);
	lg_cases_free(&cs);
	lg_case_free(&valid);
	lg_case_free(&body);
	cJSON_Delete(values);
	lg_spec_free(&s);
	puts("ok");
	return 0;
}
