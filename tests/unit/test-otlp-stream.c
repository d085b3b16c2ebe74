/*
 * test-otlp-stream.c - unit tests of the OTLP streaming configuration
 * (collector/otlp_stream.c) and of the URLs its HTTP client takes
 * (collector/http_post.c): which URL is POSTed to from the option or the
 * OpenTelemetry variables, the headers variable, what is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/http_post.h"
#include "collector/otlp_stream.h"
#include "lib/util.h"

static int failures;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);           \
			fprintf(stderr, __VA_ARGS__);                             \
			fputc('\n', stderr);                                      \
			failures++;                                               \
		}                                                                 \
	} while (0)

static void url(const char *in, const char *host, const char *port, const char *authority, const char *path)
{
	struct tg_http_url u;
	int rc = tg_http_url_parse(in, &u);
	if (!host) {
		CHECK(rc < 0, "%s: accepted", in);
		return;
	}
	CHECK(rc == 0, "%s: refused: %s", in, tg_error());
	if (rc)
		return;
	CHECK(!strcmp(u.host, host) && !strcmp(u.port, port) && !strcmp(u.authority, authority) &&
		      !strcmp(u.path, path),
	      "%s: got host %s port %s authority %s path %s", in, u.host, u.port, u.authority, u.path);
}

static void clear_env(void)
{
	static const char *const vars[] = {
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS",  "OTEL_SERVICE_NAME",           "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

/* tg_otlp_conf_read() gives want (the URL, or NULL: no streaming; "ERR": an error). */
static void conf(const char *opt, const char *want, const char *want_headers, const char *want_service)
{
	struct tg_otlp_conf c;
	int rc = tg_otlp_conf_read(opt, NULL, &c);
	if (want && !strcmp(want, "ERR")) {
		CHECK(rc < 0, "option %s: rc %d, want an error", opt ? opt : "(none)", rc);
		return;
	}
	CHECK(rc == (want != NULL), "option %s: rc %d (%s)", opt ? opt : "(none)", rc, rc < 0 ? tg_error() : "");
	if (rc == 1 && want) {
		CHECK(!strcmp(c.url, want), "url %s, want %s", c.url, want);
		CHECK(!strcmp(c.headers ? c.headers : "", want_headers ? want_headers : ""), "headers [%s], want [%s]",
		      c.headers ? c.headers : "", want_headers ? want_headers : "");
		CHECK(!strcmp(c.service, want_service ? want_service : ""), "service %s", c.service);
	}
	if (rc == 1)
		tg_otlp_conf_free(&c);
}

int main(void)
{
	url("http://127.0.0.1:4318/v1/traces", "127.0.0.1", "4318", "127.0.0.1:4318", "/v1/traces");
	url("http://collector", "collector", "80", "collector", "/");
	url("HTTP://otel.example:80?x=1#frag", "otel.example", "80", "otel.example:80", "/?x=1");
	url("http://[::1]:4318/v1/traces", "::1", "4318", "[::1]:4318", "/v1/traces");
	url("http://[fe80::1]/a", "fe80::1", "80", "[fe80::1]", "/a");
	url("https://collector:4318", NULL, NULL, NULL, NULL);
	url("grpc://collector:4317", NULL, NULL, NULL, NULL);
	url("http://:4318", NULL, NULL, NULL, NULL);
	url("http://host:0", NULL, NULL, NULL, NULL);
	url("http://host:65536", NULL, NULL, NULL, NULL);
	url("http://host:12ab", NULL, NULL, NULL, NULL);
	url("http://user:pw@host/", NULL, NULL, NULL, NULL);
	url("http://[::1/", NULL, NULL, NULL, NULL);

	clear_env();
	conf(NULL, NULL, NULL, NULL);
	conf("", NULL, NULL, NULL);
	conf("http://h:4318", "http://h:4318/v1/traces", NULL, NULL);
	conf("http://h:4318/", "http://h:4318/v1/traces", NULL, NULL);
	conf("http://h:4318/v1/traces", "http://h:4318/v1/traces", NULL, NULL);
	conf("https://h:4318", "ERR", NULL, NULL);

	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318", 1);
	conf(NULL, "http://base:4318/v1/traces", NULL, NULL);
	conf("", NULL, NULL, NULL); /* the option turns it off */
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom", 1);
	conf(NULL, "http://traces:4318/custom", NULL, NULL);
	conf("http://opt", "http://opt/v1/traces", NULL, NULL);
	setenv("OTEL_EXPORTER_OTLP_HEADERS", " api-key = a%20b%2Cc ,x=1,broken,bad key=2,host=h,y=%0d%0aZ: 1,", 1);
	setenv("OTEL_SERVICE_NAME", "shop", 1);
	conf(NULL, "http://traces:4318/custom", "api-key: a b,c\r\nx: 1\r\n", "shop");
	setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "t=1", 1);
	conf(NULL, "http://traces:4318/custom", "t: 1\r\n", "shop");
	/* an endpoint from the environment this client cannot use: a warning, no streaming */
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4318", 1);
	conf(NULL, NULL, NULL, NULL);
	setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317", 1);
	setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", 1);
	conf(NULL, NULL, NULL, NULL);
	conf("http://opt", "http://opt/v1/traces", "t: 1\r\n", "shop"); /* the option is OTLP/HTTP */
	setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf", 1);
	conf(NULL, "http://traces:4317", "t: 1\r\n", "shop");

	struct tg_otlp_conf c;
	CHECK(tg_otlp_conf_read("http://h", "", &c) < 0, "empty --service-name taken");
	CHECK(tg_otlp_conf_read("http://h", "api", &c) == 1 && !strcmp(c.service, "api"), "--service-name");
	tg_otlp_conf_free(&c);

	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
