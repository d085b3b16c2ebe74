/*
 * lib/test-otlp.c - unit test of the OTLP/JSON export (lib/otlp.c) on a small
 * store written here: every run gets its own trace key; spans are grouped
 * per process; paging with after_id/max_requests (the streaming exporter's
 * way) gives the same spans as one export; ids are stable; a stored
 * traceparent is joined; a SQLSTATE is read from a PostgreSQL error; bad ids
 * fail with a message; the default service name of common command lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/jsonw.h"
#include "lib/otlp.h"
#include "lib/store.h"
#include "lib/test-check.h"

/* One tg_otlp_write into a malloc'd string (NULL on failure: err set). */
static char *write_otlp(sqlite3 *db, const struct tg_otlp_opts *o, int64_t run, int64_t request, int64_t after,
			int max, int64_t *last, long *nspans, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct jw w;
	jw_init(&w, f);
	int rc = tg_otlp_write(db, o, run, request, after, max, &w, last, nspans, err, errlen);
	fclose(f);
	if (rc < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static int64_t add_request(struct tg_store *s, int64_t run, int pid, const char *path, int status)
{
	struct tg_request_row r = {
		.run_id = run, .pid = pid, .tid = 1, .conn_id = 1,
		.start_unix_ns = 1700000000000000000 + pid, .duration_ns = 5000000,
		.method = "GET", .method_len = 3, .path = path, .path_len = strlen(path),
		.http_version = "HTTP/1.1", .status = status, .client_addr = "127.0.0.1:5555",
	};
	if (!strcmp(path, "/traced")) {
		strcpy(r.trace_id, "0af7651916cd43dd8448eb211c80319c");
		strcpy(r.parent_span_id, "b7ad6b7169203331");
	}
	CHECK(tg_store_request_add(s, &r) == 0);
	CHECK(tg_store_flush(s) == 0);
	return tg_store_last_id(s);
}

static void add_query(struct tg_store *s, int64_t run, int64_t request, const char *sql, const char *error)
{
	struct tg_query_row q = {
		.run_id = run, .request_id = request, .pid = 10, .tid = 1,
		.start_unix_ns = 1700000000001000000, .duration_ns = 1000,
		.db_system = "postgresql", .tap = "libpq", .database = "shop", .database_len = 4,
		.sql = sql, .sql_len = strlen(sql), .rows = 1, .has_rows = !error,
		.error = error, .error_len = error ? strlen(error) : 0,
		.call_site = "/srv/app/main.py:42 read_order", .call_site_len = 30, .attribution = "scope",
		.executions = 1,
	};
	CHECK(tg_store_query_add(s, &q) == 0);
	CHECK(tg_store_flush(s) == 0);
}

/* Every "spanId":"..." of s, concatenated in order. */
static void span_ids(const char *s, char *out, size_t cap)
{
	out[0] = '\0';
	for (const char *p = s; (p = strstr(p, "\"spanId\":\"")) != NULL; p += 10)
		strncat(out, p + 10, cap - strlen(out) - 1 < 16 ? cap - strlen(out) - 1 : 16);
}

static void test_default_service(void)
{
	static const char *const t[][2] = {
		{"python3 -m uvicorn main:app --port 8000", "main"},
		{"gunicorn -k uvicorn.workers.UvicornWorker app.main:app --bind 127.0.0.1:8000", "app.main"},
		{"uvicorn --factory shop.api:create_app", "shop.api"},
		{"/usr/bin/python3 /srv/api/server.py --port 1", "server"},
		{"env PORT=1 python3.12 worker.py", "worker"},
		{"hypercorn 127.0.0.1:8000", "hypercorn"},
		{"", "timeglass"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char out[64];
		tg_otlp_default_service(t[i][0], out, sizeof out);
		if (strcmp(out, t[i][1])) {
			fprintf(stderr, "service of '%s': '%s', want '%s'\n", t[i][0], out, t[i][1]);
			failures++;
		}
	}
}

/* A new store in a new directory dir (a mkdtemp template). */
static struct tg_store *new_store(char *dir)
{
	char path[256];
	if (!mkdtemp(dir))
		return NULL;
	snprintf(path, sizeof path, "%s/s.db", dir);
	return tg_store_open(path, TG_STORE_WRITE);
}

int main(void)
{
	char dir[] = "/tmp/tg-test-otlp.XXXXXX";
	struct tg_store *s = new_store(dir);
	if (!s) {
		perror("test store");
		return 1;
	}
	sqlite3 *db = tg_store_db(s);
	struct tg_run_info ri = {.started_unix_ns = 1, .command = "python3 -m uvicorn shop:app", .hostname = "h1"};
	int64_t run = tg_store_run_begin(s, &ri), run2 = tg_store_run_begin(s, &ri);
	CHECK(run > 0 && run2 > run);

	/* Each run has a key of its own. */
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(db, "SELECT count(DISTINCT trace_key) FROM runs WHERE length(trace_key) = 16", -1,
				 &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2);
	sqlite3_finalize(st);

	int64_t r1 = add_request(s, run, 10, "/a", 200);
	int64_t r2 = add_request(s, run, 20, "/b", 503);
	int64_t r3 = add_request(s, run, 10, "/traced", 200);
	add_query(s, run, r1, "SELECT 1", NULL);
	add_query(s, run, r3, "SELECT * FROM nope", "42P01 relation \"nope\" does not exist");
	int64_t other = add_request(s, run2, 10, "/a", 200);

	char err[256];
	int64_t last;
	long nspans;
	char *all = write_otlp(db, NULL, run, 0, 0, 0, &last, &nspans, err, sizeof err);
	CHECK(all != NULL);
	if (!all)
		return 1;
	CHECK(r1 < r2 && r2 < r3 && last == r3 && nspans == 5);
	CHECK(count(all, "\"process.pid\"") == 2 && count(all, "\"kind\":2") == 3 && count(all, "\"kind\":3") == 2);
	CHECK(count(all, "\"service.name\",\"value\":{\"stringValue\":\"shop\"}") == 2);
	CHECK(count(all, "\"host.name\",\"value\":{\"stringValue\":\"h1\"}") == 2);
	/* pid 10's requests (r1, r3) come together, before pid 20's. */
	const char *a = strstr(all, "\"/a\""), *b = strstr(all, "\"/b\""), *t = strstr(all, "\"/traced\"");
	CHECK(a && b && t && a < t && t < b);
	CHECK(strstr(all, "\"traceId\":\"0af7651916cd43dd8448eb211c80319c\"") != NULL);
	CHECK(count(all, "\"parentSpanId\":\"b7ad6b7169203331\"") == 1);
	CHECK(strstr(all, "\"db.response.status_code\",\"value\":{\"stringValue\":\"42P01\"}") != NULL);
	CHECK(strstr(all, "\"code.lineno\",\"value\":{\"intValue\":\"42\"}") != NULL);
	CHECK(count(all, "\"status\":{") == 2); /* the 503 and the failed query */

	/* Stable, and the same when paged one request at a time. */
	char *again = write_otlp(db, NULL, run, 0, 0, 0, &last, &nspans, err, sizeof err);
	CHECK(again && !strcmp(all, again));
	free(again);
	char ids_all[1024], ids_paged[1024] = "", ids_part[1024];
	span_ids(all, ids_all, sizeof ids_all);
	int64_t after = 0;
	int pages = 0;
	for (;;) {
		char *page = write_otlp(db, NULL, run, 0, after, 1, &last, &nspans, err, sizeof err);
		CHECK(page != NULL);
		if (!page || last == after) {
			CHECK(page && nspans == 0 && !strcmp(page, "{\"resourceSpans\":[]}"));
			free(page);
			break;
		}
		CHECK(last > after);
		after = last;
		span_ids(page, ids_part, sizeof ids_part);
		strncat(ids_paged, ids_part, sizeof ids_paged - strlen(ids_paged) - 1);
		free(page);
		pages++;
	}
	CHECK(pages == 3);
	/* Same ids; the whole export orders pid 10 first, pages go by id. */
	CHECK(strlen(ids_all) == strlen(ids_paged));
	for (size_t i = 0; i + 16 <= strlen(ids_paged); i += 16) {
		char one[17];
		memcpy(one, ids_paged + i, 16);
		one[16] = '\0';
		CHECK(strstr(ids_all, one) != NULL);
	}

	/* One request; another run's same row ids differ (its own key). */
	struct tg_otlp_opts o = {.service_name = "svc", .host_name = "h2"};
	char *one = write_otlp(db, &o, 0, r1, 0, 0, &last, &nspans, err, sizeof err);
	CHECK(one && last == r1 && nspans == 2 && strstr(one, "\"stringValue\":\"svc\"") && strstr(one, "\"h2\""));
	char ids_one[64];
	span_ids(one ? one : "", ids_one, sizeof ids_one);
	CHECK(strlen(ids_one) == 32 && strstr(ids_all, ids_one) != NULL);
	free(one);
	char *foreign = write_otlp(db, NULL, 0, other, 0, 0, &last, &nspans, err, sizeof err);
	char ids_foreign[64];
	span_ids(foreign ? foreign : "", ids_foreign, sizeof ids_foreign);
	CHECK(foreign && strlen(ids_foreign) == 16 && !strstr(ids_all, ids_foreign));
	free(foreign);

	CHECK(write_otlp(db, NULL, 0, 999, 0, 0, &last, &nspans, err, sizeof err) == NULL &&
	      strstr(err, "no request 999"));
	CHECK(write_otlp(db, NULL, 999, 0, 0, 0, &last, &nspans, err, sizeof err) == NULL && strstr(err, "no run 999"));
	free(all);
	test_default_service();

	tg_store_close(s);
	static const char *const files[] = {"s.db", "s.db-wal", "s.db-shm", "s.db-reserve"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char file[300];
		snprintf(file, sizeof file, "%s/%s", dir, files[i]);
		unlink(file);
	}
	if (rmdir(dir) != 0)
		perror(dir);
	printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
	return failures != 0;
}
