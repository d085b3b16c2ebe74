/*
 * lib/test-lib.c - unit test of lib/'s store readers and scorecard on a
 * small store written here: schema classification, the newest run, the
 * samples of each flame selection (order and filters, and split by request),
 * request flag names, the UTF-8 validator, and rp_load()/rp_score() on one
 * run; and that the writer's batches never spill a statement journal.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/jsonw.h"
#include "lib/readers.h"
#include "lib/report.h"
#include "lib/store.h"
#include "lib/test-check.h"
#include "lib/util.h"

static int64_t add_request(struct tg_store *s, int64_t run, const char *method, const char *path,
			   const char *route, int status, int64_t start, int64_t dur)
{
	struct tg_request_row r = {
		.run_id = run, .pid = 1, .tid = 1, .conn_id = 1,
		.start_unix_ns = start, .duration_ns = dur,
		.method = method, .method_len = strlen(method),
		.path = path, .path_len = strlen(path),
		.http_version = "HTTP/1.1", .status = status,
		.route = route, .route_len = route ? strlen(route) : 0,
	};
	CHECK(tg_store_request_add(s, &r) == 0);
	CHECK(tg_store_flush(s) == 0);
	return sqlite3_last_insert_rowid(tg_store_db(s));
}

/* Sums the counts of a selection's rows; checks they come heaviest first. */
static int64_t samples(sqlite3 *db, const struct tg_samples_sel *sel, int *rows)
{
	sqlite3_stmt *st = tg_samples_prepare(db, sel);
	CHECK(st != NULL);
	if (!st)
		return -1;
	int64_t total = 0, last = INT64_MAX;
	*rows = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t c = sqlite3_column_int64(st, 2);
		CHECK(c <= last);
		last = c;
		total += c;
		++*rows;
	}
	sqlite3_finalize(st);
	return total;
}

/* A new store dir/name (its path in path[0..cap)) open for writing, with
 * one run (*run). NULL (and a failed check) if it cannot be opened. */
static struct tg_store *store_with_run(const char *dir, const char *name, char *path, size_t cap, int64_t *run)
{
	snprintf(path, cap, "%s/%s", dir, name);
	struct tg_store *s = tg_store_open(path, TG_STORE_WRITE);
	CHECK(s != NULL);
	if (!s)
		return NULL;
	struct tg_run_info ri = {.started_unix_ns = 1, .command = "app", .hostname = "h", .tg_version = "0",
				 .source = "run"};
	*run = tg_store_run_begin(s, &ri);
	return s;
}

/* Closes writer s (writing what it holds) and opens its store at path
 * to read; NULL (a failed check) if it cannot. */
static struct tg_store *reopen_read(struct tg_store *s, const char *path)
{
	tg_store_close(s);
	s = tg_store_open(path, TG_STORE_READ);
	CHECK(s != NULL);
	return s;
}

/* Query rows go to the store eight to a statement: every row lands once,
 * in order, with its own texts (the caller's buffer is reused), whether it
 * went in a statement of eight, alone (texts too long to hold) or at the
 * commit or the close; the rows held count as pending. */
static void test_query_rows(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "q.db", path, sizeof path, &run);
	if (!s)
		return;
	int64_t req = add_request(s, run, "GET", "/q", NULL, 200, 10, 5);
	enum { N = 30, LONG = 20, LONG_LEN = 70000 };
	char *sql = malloc(LONG_LEN + 1), site[32];
	CHECK(sql != NULL);
	if (!sql)
		return;
	for (int i = 0; i < N; i++) {
		size_t n = i == LONG ? LONG_LEN : (size_t)snprintf(sql, 64, "SELECT %d FROM t%d", i, i);
		if (i == LONG)
			memset(sql, 'x', n);
		snprintf(site, sizeof site, "app.py:%d f", i);
		char kind[16];
		snprintf(kind, sizeof kind, "%s", i % 3 ? "app" : "housekeeping");
		struct tg_query_row q = {
			.run_id = run, .request_id = i % 4 ? req : 0, .pid = 1, .tid = 1,
			.start_unix_ns = 100 + i, .duration_ns = i,
			.db_system = "sqlite", .tap = "sqlite3",
			.sql = sql, .sql_len = n, .fingerprint = sql, .fingerprint_len = n,
			.call_site = site, .call_site_len = strlen(site),
			.attribution = "scope", .kind = kind, .executions = i + 1,
		};
		CHECK(tg_store_query_add(s, &q) == 0);
		memset(sql, '?', 64); /* the store kept its own copy */
		memset(site, '?', sizeof site - 1);
		memset(kind, '?', sizeof kind - 1);
		if (i == 12)
			CHECK(tg_store_pending(s) >= 5); /* held rows count */
		if (i == 24)
			CHECK(tg_store_flush(s) == 0);
	}
	s = reopen_read(s, path); /* writes the last five */
	if (!s) {
		free(sql);
		return;
	}
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(tg_store_db(s),
				 "SELECT request_id, sql, fingerprint, call_site, kind, executions, start_unix_ns"
				 " FROM queries ORDER BY id", -1, &st, NULL) == SQLITE_OK);
	int i = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char want[64], want_site[32];
		snprintf(want, sizeof want, "SELECT %d FROM t%d", i, i);
		snprintf(want_site, sizeof want_site, "app.py:%d f", i);
		const char *got = (const char *)sqlite3_column_text(st, 1);
		CHECK(sqlite3_column_int64(st, 6) == 100 + i);
		CHECK(sqlite3_column_int64(st, 0) == (i % 4 ? req : 0));
		if (i == LONG)
			CHECK(sqlite3_column_bytes(st, 1) == LONG_LEN && got[0] == 'x' && got[LONG_LEN - 1] == 'x');
		else
			CHECK(strcmp(got, want) == 0 && strcmp((const char *)sqlite3_column_text(st, 2), want) == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 3), want_site) == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 4), i % 3 ? "app" : "housekeeping") == 0);
		CHECK(sqlite3_column_int64(st, 5) == i + 1);
		i++;
	}
	CHECK(i == N);
	sqlite3_finalize(st);
	tg_store_close(s);
	free(sql);
}

/* A query's texts and numbers come back from the queries view as they went
 * in: every byte value, quotes, backslashes, control characters and
 * multi-byte UTF-8 as such, invalid UTF-8 as U+FFFD byte by byte (what
 * tg_utf8_repair() gives), 64-bit extremes, and NULL kept apart from 0 and
 * from "". Each query differs in thread and database from the one before:
 * a set each. */
static void test_query_texts(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "qt.db", path, sizeof path, &run);
	if (!s)
		return;
	int64_t req = add_request(s, run, "GET", "/t", NULL, 200, 10, 5);
	enum { N = 12 };
	char texts[N][300];
	size_t lens[N];
	for (int i = 0; i < N; i++) {
		size_t n = 0;
		if (i == 0) { /* every byte value but NUL, in order */
			for (int c = 1; c < 256; c++)
				texts[i][n++] = (char)c;
		} else {
			static const char *const samples[] = {
				"SELECT \"a\" FROM t WHERE b = '\\' AND c = '\t\n\r\x01\x1f\x7f'",
				"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", /* 2-, 3-, 4-byte sequences */
				"bad \xc3 \xff\xfe \xed\xa0\x80 \xf4\x90\x80\x80 end", /* truncated, surrogate, too high */
				"", "12345678abcdefgh\"2345678\\", "x", "\xe2\x82", "ab\"", "\\", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f",
				"/* ok */ SELECT 1 -- comment",
			};
			n = strlen(samples[i - 1]);
			memcpy(texts[i], samples[i - 1], n);
		}
		lens[i] = n;
	}
	for (int i = 0; i < N; i++) {
		struct tg_query_row q = {
			.run_id = run, .request_id = i < 6 ? req : 0, .process_id = 0, .pid = i < 9 ? 7 : 8,
			.tid = i == 3 ? INT64_MAX : -i, .start_unix_ns = 1000 + i, .duration_ns = i * 3,
			.db_system = "postgresql", .tap = "wire", .database = i == 1 ? NULL : texts[i],
			.database_len = lens[i], .sql = texts[i], .sql_len = lens[i], .fingerprint = i == 2 ? NULL : texts[i],
			.fingerprint_len = lens[i], .fingerprint_hash = i == 4 ? INT64_MIN : i == 5 ? INT64_MAX : -i,
			.params = i == 6 ? "" : NULL, .params_len = 0, .rows = i == 7 ? 0 : -i, .has_rows = i != 8,
			.error = texts[i], .error_len = lens[i], .call_site = texts[i], .call_site_len = lens[i],
			.attribution = "thread", .duplicate = i & 1, .n_plus_one = (i >> 1) & 1, .kind = NULL,
			.executions = i == 9 ? 0 : i + 1, .sql_truncated = i == 10,
		};
		CHECK(tg_store_query_add(s, &q) == 0);
	}
	s = reopen_read(s, path);
	if (!s)
		return;
	sqlite3 *db = tg_store_db(s);
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(db,
				 "SELECT id, request_id, pid, tid, start_unix_ns, duration_ns, db_system, tap, database, sql,"
				 " fingerprint, fingerprint_hash, params, rows, error, call_site, attribution, duplicate,"
				 " n_plus_one, kind, executions, sql_truncated, typeof(tid), typeof(sql)"
				 " FROM queries ORDER BY id", -1, &st, NULL) == SQLITE_OK);
	int i = 0;
	int64_t first = 0;
	while (sqlite3_step(st) == SQLITE_ROW && i < N) {
		size_t m = 0;
		char *want = tg_utf8_repair(texts[i], lens[i], &m);
		CHECK(want != NULL);
		if (!want)
			break;
		if (i == 0)
			first = sqlite3_column_int64(st, 0);
		CHECK(sqlite3_column_int64(st, 0) == first + i); /* ids one after the other */
		CHECK(sqlite3_column_int64(st, 1) == (i < 6 ? req : 0));
		CHECK(sqlite3_column_type(st, 1) == (i < 6 ? SQLITE_INTEGER : SQLITE_NULL));
		CHECK(sqlite3_column_int(st, 2) == (i < 9 ? 7 : 8));
		CHECK(sqlite3_column_int64(st, 3) == (i == 3 ? INT64_MAX : -i));
		CHECK(sqlite3_column_int64(st, 4) == 1000 + i && sqlite3_column_int64(st, 5) == i * 3);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 6), "postgresql") == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 7), "wire") == 0);
		for (int col = 8; col <= 15; col++) {
			if (col == 11 || col == 12 || col == 13)
				continue;
			int null = (col == 8 && i == 1) || (col == 10 && i == 2);
			CHECK((sqlite3_column_type(st, col) == SQLITE_NULL) == null);
			if (null)
				continue;
			const void *got = sqlite3_column_blob(st, col);
			int ok = (size_t)sqlite3_column_bytes(st, col) == m && (m == 0 || memcmp(got, want, m) == 0);
			CHECK(ok);
			if (!ok)
				fprintf(stderr, "query %d column %d: %d bytes, want %zu\n", i, col,
					sqlite3_column_bytes(st, col), m);
		}
		CHECK(sqlite3_column_int64(st, 11) == (i == 4 ? INT64_MIN : i == 5 ? INT64_MAX : -i));
		CHECK((sqlite3_column_type(st, 12) == SQLITE_NULL) == (i != 6));
		CHECK((sqlite3_column_type(st, 13) == SQLITE_NULL) == (i == 8));
		if (i != 8)
			CHECK(sqlite3_column_int64(st, 13) == (i == 7 ? 0 : -i));
		CHECK(strcmp((const char *)sqlite3_column_text(st, 16), "thread") == 0);
		CHECK(sqlite3_column_int(st, 17) == (i & 1) && sqlite3_column_int(st, 18) == ((i >> 1) & 1));
		CHECK(strcmp((const char *)sqlite3_column_text(st, 19), "app") == 0);
		CHECK(sqlite3_column_int64(st, 20) == (i == 9 ? 1 : i + 1));
		CHECK(sqlite3_column_int(st, 21) == (i == 10));
		CHECK(strcmp((const char *)sqlite3_column_text(st, 22), "integer") == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 23), "text") == 0);
		free(want);
		i++;
	}
	CHECK(i == N);
	sqlite3_finalize(st);
	/* every query differs in tid and database from the one before: a set each */
	CHECK(sqlite3_prepare_v2(db, "SELECT count(*), sum(n), sum(queries LIKE '[[0,%') FROM query_sets", -1, &st,
				 NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == N && sqlite3_column_int(st, 1) == N &&
	      sqlite3_column_int(st, 2) == N);
	sqlite3_finalize(st);
	tg_store_close(s);
}

/* Numbers of every length come back from the queries view as they went
 * in: 10^k - 1, 10^k and their negatives for every k, in the fields a set
 * writes as JSON numbers (one set: the same thread and database). */
static void test_query_numbers(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "qn.db", path, sizeof path, &run);
	if (!s)
		return;
	int64_t req = add_request(s, run, "GET", "/n", NULL, 200, 10, 5);
	int64_t vals[80];
	int n = 0;
	for (int64_t p = 1, k = 0; k <= 18; k++, p *= 10) {
		vals[n++] = p - 1;
		vals[n++] = p;
		vals[n++] = -(p - 1);
		vals[n++] = -p;
	}
	vals[n++] = INT64_MAX;
	vals[n++] = INT64_MIN;
	for (int i = 0; i < n; i++) {
		struct tg_query_row q = {
			.run_id = run, .request_id = req, .pid = 7, .tid = 1, .start_unix_ns = 1000 + vals[i] / 4,
			.duration_ns = vals[i], .db_system = "sqlite", .tap = "sqlite3", .sql = "SELECT 1", .sql_len = 8,
			.fingerprint = "SELECT ?", .fingerprint_len = 8, .fingerprint_hash = vals[i], .rows = vals[i],
			.has_rows = 1, .attribution = "scope", .executions = vals[i] > 0 ? vals[i] : 1,
		};
		CHECK(tg_store_query_add(s, &q) == 0);
	}
	s = reopen_read(s, path);
	if (!s)
		return;
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT start_unix_ns, duration_ns, fingerprint_hash, rows, executions"
				 " FROM queries ORDER BY id", -1, &st, NULL) == SQLITE_OK);
	int i = 0;
	while (sqlite3_step(st) == SQLITE_ROW && i < n) {
		int ok = sqlite3_column_int64(st, 0) == 1000 + vals[i] / 4 && sqlite3_column_int64(st, 1) == vals[i] &&
			 sqlite3_column_int64(st, 2) == vals[i] && sqlite3_column_int64(st, 3) == vals[i] &&
			 sqlite3_column_int64(st, 4) == (vals[i] > 0 ? vals[i] : 1);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "query %d: %lld came back as %lld\n", i, (long long)vals[i],
				(long long)sqlite3_column_int64(st, 1));
		i++;
	}
	CHECK(i == n);
	sqlite3_finalize(st);
	tg_store_close(s);
}

/* Empty texts, first thing in a new store, are texts: "" twice, not NULL. */
static void test_query_empty_texts(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "qe.db", path, sizeof path, &run);
	if (!s)
		return;
	for (int i = 0; i < 2; i++) {
		struct tg_query_row q = {
			.run_id = run, .pid = 1, .start_unix_ns = 1 + i, .db_system = "sqlite", .tap = "sqlite3",
			.sql = "", .fingerprint = "", .call_site = "", .database = "", .attribution = "none",
		};
		CHECK(tg_store_query_add(s, &q) == 0);
	}
	s = reopen_read(s, path);
	if (!s)
		return;
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT count(*), sum(sql = '' AND fingerprint = '' AND call_site = ''"
				 " AND database = ''), (SELECT texts FROM query_sets) FROM queries", -1, &st, NULL) ==
	      SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2 && sqlite3_column_int(st, 1) == 2 &&
	      strcmp((const char *)sqlite3_column_text(st, 2), "[\"\"]") == 0);
	sqlite3_finalize(st);
	tg_store_close(s);
}

/* Queries that follow one another join one set while they share its
 * columns (request, process, thread, database, tap, attribution); each
 * change starts a set, with the queries' count, summed duration, N+1 count
 * and start offsets kept. */
static void test_query_sets(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "qs.db", path, sizeof path, &run);
	if (!s)
		return;
	int64_t req = add_request(s, run, "GET", "/s", NULL, 200, 10, 5);
	static const struct {
		int outside, pid, tid, npo;
		const char *database, *tap, *attribution;
	} qs[] = {
		{0, 7, 1, 1, "shop", "wire", "scope"}, {0, 7, 1, 1, "shop", "wire", "scope"},
		{0, 7, 1, 0, "shop", "wire", "scope"}, /* 3 together */
		{0, 7, 2, 0, "shop", "wire", "scope"},     /* another thread */
		{0, 7, 2, 0, NULL, "wire", "scope"},       /* no database */
		{0, 7, 2, 0, "shop2", "wire", "scope"},    /* another database */
		{0, 7, 2, 0, "shop2", "libpq", "scope"},   /* another tap */
		{0, 7, 2, 0, "shop2", "libpq", NULL},      /* no attribution */
		{1, 7, 2, 1, "shop2", "libpq", NULL},      /* outside the request */
		{1, 7, 2, 0, "shop2", "libpq", NULL},      /* 2 together */
		{1, 8, 2, 0, "shop2", "libpq", NULL},      /* another process */
	};
	enum { N = sizeof qs / sizeof qs[0] };
	for (int i = 0; i < N; i++) {
		struct tg_query_row q = {
			.run_id = run, .request_id = qs[i].outside ? 0 : req, .pid = qs[i].pid, .tid = qs[i].tid,
			.start_unix_ns = 5000 - 10 * i * (i % 2 ? -1 : 1), .duration_ns = 100 + i,
			.db_system = "postgresql", .tap = qs[i].tap, .database = qs[i].database,
			.database_len = qs[i].database ? strlen(qs[i].database) : 0,
			.sql = i % 2 ? "SELECT 2" : "SELECT 1", .sql_len = 8,
			.attribution = qs[i].attribution, .n_plus_one = qs[i].npo, .has_rows = 1, .rows = 1,
		};
		CHECK(tg_store_query_add(s, &q) == 0);
	}
	s = reopen_read(s, path);
	if (!s)
		return;
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT group_concat(n || ':' || duration_ns || ':' || n_plus_one, ' ')"
				 " FROM (SELECT * FROM query_sets ORDER BY id)", -1, &st, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW);
	const char *sets = (const char *)sqlite3_column_text(st, 0);
	static const char want[] = "3:303:2 1:103:0 1:104:0 1:105:0 1:106:0 1:107:0 2:217:1 1:110:0";
	CHECK(sets && strcmp(sets, want) == 0);
	if (sets && strcmp(sets, want) != 0)
		fprintf(stderr, "sets: %s\n", sets);
	sqlite3_finalize(st);
	/* each query as it went in, through the view */
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT request_id, pid, tid, start_unix_ns, duration_ns, database, tap,"
				 " attribution, n_plus_one, sql FROM queries ORDER BY id", -1, &st, NULL) == SQLITE_OK);
	int i = 0;
	while (sqlite3_step(st) == SQLITE_ROW && i < N) {
		CHECK(sqlite3_column_int64(st, 0) == (qs[i].outside ? 0 : req));
		CHECK(sqlite3_column_int(st, 1) == qs[i].pid && sqlite3_column_int(st, 2) == qs[i].tid);
		CHECK(sqlite3_column_int64(st, 3) == 5000 - 10 * i * (i % 2 ? -1 : 1));
		CHECK(sqlite3_column_int64(st, 4) == 100 + i);
		const char *db = (const char *)sqlite3_column_text(st, 5), *att = (const char *)sqlite3_column_text(st, 7);
		CHECK(qs[i].database ? db && strcmp(db, qs[i].database) == 0 : db == NULL);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 6), qs[i].tap) == 0);
		CHECK(qs[i].attribution ? att && strcmp(att, qs[i].attribution) == 0 : att == NULL);
		CHECK(sqlite3_column_int(st, 8) == qs[i].npo);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 9), i % 2 ? "SELECT 2" : "SELECT 1") == 0);
		i++;
	}
	CHECK(i == N);
	sqlite3_finalize(st);
	/* a text repeated in a set is stored once */
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT texts FROM query_sets ORDER BY id LIMIT 1", -1, &st, NULL) ==
	      SQLITE_OK);
	CHECK(sqlite3_step(st) == SQLITE_ROW &&
	      strcmp((const char *)sqlite3_column_text(st, 0), "[\"SELECT 1\",\"SELECT 2\"]") == 0);
	sqlite3_finalize(st);
	tg_store_close(s);

	/* 300 queries of one request with two new texts each: a set holds up
	 * to 256 texts, so they take three sets, and come back in order */
	s = tg_store_open(path, TG_STORE_WRITE);
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t req2 = add_request(s, run, "GET", "/many", NULL, 200, 20, 5);
	enum { MANY = 300 };
	for (int k = 0; k < MANY; k++) {
		char sql[32], fp[32];
		snprintf(sql, sizeof sql, "SELECT %d", k);
		snprintf(fp, sizeof fp, "select %d -- fp", k);
		struct tg_query_row q = {
			.run_id = run, .request_id = req2, .pid = 7, .tid = 1, .start_unix_ns = 9000 + k,
			.duration_ns = 1, .db_system = "sqlite", .tap = "sqlite3", .sql = sql, .sql_len = strlen(sql),
			.fingerprint = fp, .fingerprint_len = strlen(fp), .call_site = "app.py:1 f", .call_site_len = 10,
		};
		CHECK(tg_store_query_add(s, &q) == 0);
	}
	s = reopen_read(s, path);
	if (!s)
		return;
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT count(*), sum(n), max(json_array_length(texts))"
				 " FROM query_sets WHERE request_id = ?", -1, &st, NULL) == SQLITE_OK);
	sqlite3_bind_int64(st, 1, req2);
	CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 3 && sqlite3_column_int(st, 1) == MANY &&
	      sqlite3_column_int(st, 2) <= 256);
	sqlite3_finalize(st);
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT sql, fingerprint, call_site, start_unix_ns FROM queries"
				 " WHERE request_id = ? ORDER BY id", -1, &st, NULL) == SQLITE_OK);
	sqlite3_bind_int64(st, 1, req2);
	int k = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char sql[32], fp[32];
		snprintf(sql, sizeof sql, "SELECT %d", k);
		snprintf(fp, sizeof fp, "select %d -- fp", k);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 0), sql) == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 1), fp) == 0);
		CHECK(strcmp((const char *)sqlite3_column_text(st, 2), "app.py:1 f") == 0);
		CHECK(sqlite3_column_int64(st, 3) == 9000 + k);
		k++;
	}
	CHECK(k == MANY);
	sqlite3_finalize(st);
	tg_store_close(s);
}

/* How many of this process's open files are SQLite temporary files (a
 * statement journal spilled to disk: "etilqs_..." under the temp dir). */
static int temp_files_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char link[sizeof "/proc/self/fd/" + sizeof e->d_name], target[512];
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(link, target, sizeof target - 1);
		if (k > 0) {
			target[k] = '\0';
			n += strstr(target, "etilqs_") != NULL;
		}
	}
	closedir(d);
	return n;
}

/* A batch's rows of every kind go in without a statement journal: an
 * INSERT of several rows that could abort half-way would make SQLite copy
 * every page it touches aside first, with 16 KiB pages into a temporary
 * file, several times the bytes of the rows themselves. main() sets the
 * journal to spill at its first byte, so any such journal shows here as an
 * open file until the batch is committed. */
static void test_no_statement_journal(const char *dir)
{
	char path[256];
	int64_t run;
	struct tg_store *s = store_with_run(dir, "j.db", path, sizeof path, &run);
	if (!s)
		return;
	int64_t f = tg_store_frame_id(s, "python", "main", "app.py", 1);
	char frames[32];
	snprintf(frames, sizeof frames, "%lld", (long long)f);
	int64_t stack = tg_store_stack_id(s, 7, frames);
	CHECK(tg_store_flush(s) == 0);
	CHECK(tg_store_begin(s, 1000) == 0);
	for (int r = 0; r < 200; r++) {
		struct tg_request_row rq = {
			.run_id = run, .pid = 1, .tid = 1, .conn_id = 1, .start_unix_ns = 1000 + r, .duration_ns = 5,
			.method = "GET", .method_len = 3, .path = "/q", .path_len = 2, .http_version = "HTTP/1.1",
			.status = 200,
		};
		CHECK(tg_store_request_add(s, &rq) == 0);
		int64_t req = sqlite3_last_insert_rowid(tg_store_db(s));
		for (int i = 0; i < 10; i++) {
			struct tg_query_row q = {
				.run_id = run, .request_id = req, .pid = 1, .tid = 1, .start_unix_ns = 1000 + r,
				.duration_ns = 1, .db_system = "sqlite", .tap = "sqlite3",
				.sql = "SELECT count(*) FROM notes", .sql_len = 26,
				.fingerprint = "select count(*) from notes", .fingerprint_len = 26,
				.attribution = "scope",
			};
			CHECK(tg_store_query_add(s, &q) == 0);
		}
		struct tg_sample_row sm = {.run_id = run, .request_id = req, .stack_id = stack, .state = "running",
					   .count = 1, .cpu_ns = 1000};
		CHECK(tg_store_sample_add(s, &sm) == 0);
		CHECK(tg_store_request_cpu_add(s, req, 1000) == 0);
	}
	CHECK(temp_files_open() == 0);
	CHECK(tg_store_flush(s) == 0);
	int64_t n = 0;
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(tg_store_db(s), "SELECT count(*) FROM queries", -1, &st, NULL) == SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	CHECK(n == 2000);
	tg_store_close(s);
}

int main(void)
{
	/* Before SQLite starts: a statement journal goes to a file at once
	 * (test_no_statement_journal()). */
	CHECK(sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, 0) == SQLITE_OK);
	char dir[] = "/tmp/tg-test-lib.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char path[256];
	snprintf(path, sizeof path, "%s/s.db", dir);

	struct tg_store *s = tg_store_open(path, TG_STORE_WRITE);
	CHECK(s != NULL);
	if (!s)
		return 1;
	sqlite3 *db = tg_store_db(s);
	int64_t version;
	CHECK(tg_store_classify(db, &version) == TG_SCHEMA_CURRENT && version == TG_STORE_SCHEMA);
	CHECK(tg_latest_run(db) == 0);

	struct tg_run_info ri = {.started_unix_ns = 1000000000, .command = "app", .hostname = "h",
				 .tg_version = "0", .source = "run"};
	int64_t run1 = tg_store_run_begin(s, &ri);
	int64_t run2 = tg_store_run_begin(s, &ri);
	CHECK(run1 > 0 && run2 > run1);
	CHECK(tg_latest_run(db) == run2);

	int64_t base = 2000000000;
	int64_t a = add_request(s, run2, "GET", "/items/1", "/items/{id}", 200, base, 2000000);
	int64_t b = add_request(s, run2, "GET", "/items/2", "/items/{id}", 500, base + 10000000, 4000000);
	int64_t c = add_request(s, run2, "GET", "/health", NULL, 200, base + 20000000, 1000000);
	CHECK(a > 0 && b > a && c > b);

	int64_t f1 = tg_store_frame_id(s, "python", "main", "app.py", 1);
	int64_t f2 = tg_store_frame_id(s, "python", "work", "app.py", 9);
	char frames[64];
	snprintf(frames, sizeof frames, "%lld", (long long)f1);
	int64_t s1 = tg_store_stack_id(s, 11, frames);
	snprintf(frames, sizeof frames, "%lld,%lld", (long long)f1, (long long)f2);
	int64_t s2 = tg_store_stack_id(s, 22, frames);
	CHECK(s1 > 0 && s2 > 0);
	struct tg_sample_row rows[] = {
		{.run_id = run2, .request_id = a, .stack_id = s1, .state = "running", .count = 3},
		{.run_id = run2, .request_id = a, .stack_id = s2, .state = "waiting", .count = 5},
		{.run_id = run2, .request_id = b, .stack_id = s2, .state = "running", .count = 7},
		{.run_id = run2, .request_id = c, .stack_id = s1, .state = "running", .count = 1},
		{.run_id = run2, .request_id = 0, .stack_id = s1, .state = "running", .count = 2},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		CHECK(tg_store_sample_add(s, &rows[i]) == 0);
	CHECK(tg_store_flush(s) == 0);

	int n;
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_REQUEST, .id = a}, &n) == 8 && n == 2);
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_REQUEST, .id = a, .state = "waiting"}, &n) == 5 &&
	      n == 1);
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_ROUTE, .id = run2, .method = "GET",
						  .route = "/items/{id}"}, &n) == 15);
	/* no route recorded: the path stands for it */
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_ROUTE, .id = run2, .method = "GET",
						  .route = "/health"}, &n) == 1);
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_RUN, .id = run2}, &n) == 18);
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_OUTSIDE, .id = run2}, &n) == 2 && n == 1);
	CHECK(samples(db, &(struct tg_samples_sel){.of = TG_SAMPLES_RUN, .id = run1}, &n) == 0 && n == 0);

	/* split by request (pprof): one row per request, each with its route
	 * ("METHOD template", the path without one), the counts unchanged */
	sqlite3_stmt *st = tg_samples_detail_prepare(db, &(struct tg_samples_sel){.of = TG_SAMPLES_RUN, .id = run2});
	CHECK(st != NULL);
	int64_t detail_total = 0, detail_rows = 0;
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		int64_t rid = sqlite3_column_int64(st, 4);
		const char *route = (const char *)sqlite3_column_text(st, 5);
		detail_total += sqlite3_column_int64(st, 2);
		detail_rows++;
		if (rid == a || rid == b)
			CHECK(route && strcmp(route, "GET /items/{id}") == 0);
		else if (rid == c)
			CHECK(route && strcmp(route, "GET /health") == 0);
		else
			CHECK(sqlite3_column_type(st, 4) == SQLITE_NULL && !route);
	}
	sqlite3_finalize(st);
	CHECK(detail_total == 18 && detail_rows == 5);

	/* the scorecard of run 2 */
	struct rp_report rep;
	CHECK(rp_load(db, 0, NULL, &rep) == 0);
	CHECK(rep.run_id == run2 && rep.nreqs == 3 && rep.nroutes == 2);
	struct rp_coverage cov;
	memset(&cov, 0, sizeof cov);
	struct rp_score_item items[RP_BENCH_COUNT];
	rp_score(&rep, &cov, items);
	int graded = 0;
	for (size_t i = 0; i < RP_BENCH_COUNT; i++) {
		CHECK(items[i].key && items[i].name);
		CHECK(items[i].grade == '-' || (items[i].grade >= 'A' && items[i].grade <= 'F'));
		graded += items[i].measured;
	}
	CHECK(graded > 0);
	rp_free(&rep);
	tg_store_close(s);

	/* schema classes of the other kinds of file */
	sqlite3 *other;
	snprintf(path, sizeof path, "%s/other.db", dir);
	CHECK(sqlite3_open(path, &other) == SQLITE_OK);
	CHECK(tg_store_classify(other, &version) == TG_SCHEMA_EMPTY && version == 0);
	sqlite3_exec(other, "CREATE TABLE t (x)", NULL, NULL, NULL);
	CHECK(tg_store_classify(other, &version) == TG_SCHEMA_FOREIGN);
	sqlite3_exec(other, "PRAGMA user_version = 2", NULL, NULL, NULL);
	CHECK(tg_store_classify(other, &version) == TG_SCHEMA_OLDER && version == 2);
	sqlite3_exec(other, "PRAGMA user_version = 999", NULL, NULL, NULL);
	CHECK(tg_store_classify(other, &version) == TG_SCHEMA_NEWER && version == 999);
	sqlite3_close(other);
	CHECK(tg_store_open(path, TG_STORE_READ) == NULL && strstr(tg_error(), "newer TimeGlass"));

	test_query_rows(dir);
	test_query_texts(dir);
	test_query_empty_texts(dir);
	test_query_numbers(dir);
	test_query_sets(dir);
	test_no_statement_journal(dir);

	/* names and text */
	CHECK(strcmp(tg_req_flag_name(0), "head") == 0 && strcmp(tg_req_flag_name(7), "asgi") == 0);
	CHECK(tg_req_flag_name(TG_REQ_FLAG_BITS) == NULL);
	{
		char num[21];
		static const struct { uint64_t v; const char *s; } nums[] = {
			{0, "0"}, {7, "7"}, {10, "10"}, {65535, "65535"}, {1000000007, "1000000007"},
			{UINT64_MAX, "18446744073709551615"},
		};
		for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
			size_t len = tg_fmt_u64(num, nums[i].v);
			num[len] = '\0';
			CHECK(len == strlen(nums[i].s) && strcmp(num, nums[i].s) == 0);
		}
	}
	CHECK(tg_utf8_len((const unsigned char *)"a", 1) == 1);
	CHECK(tg_utf8_len((const unsigned char *)"\xc3\xa9", 2) == 2);
	CHECK(tg_utf8_len((const unsigned char *)"\xc0\x80", 2) == 0);         /* overlong */
	CHECK(tg_utf8_len((const unsigned char *)"\xed\xa0\x80", 3) == 0);     /* surrogate */
	CHECK(tg_utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4) == 0); /* above U+10FFFF */
	CHECK(tg_utf8_len((const unsigned char *)"\xf0\x9f\x98\x80", 4) == 4);
	CHECK(tg_utf8_len((const unsigned char *)"\xe2\x82", 2) == 0);         /* cut short */
	CHECK(tg_utf8_valid_prefix("plain ascii text, longer than eight", 35) == 35);
	CHECK(tg_utf8_valid_prefix("caf\xc3\xa9 ok", 8) == 8);
	CHECK(tg_utf8_valid_prefix("abcdefgh\xf5xyz", 12) == 8);
	CHECK(tg_utf8_valid_prefix("ab\xe2\x82", 4) == 2);
	/* Every length and place around the 16- and 8-byte steps. */
	for (size_t len = 1; len <= 40; len++)
		for (size_t at = 0; at < len; at++) {
			char t[48];
			memset(t, 'a', sizeof t);
			t[at] = (char)0xff;
			CHECK(tg_utf8_valid_prefix(t, len) == at);
			if (at + 1 < len) {
				t[at] = (char)0xc3;
				t[at + 1] = (char)0xa9;
				CHECK(tg_utf8_valid_prefix(t, len) == len);
			}
		}
	{
		size_t m = 0;
		char *r = tg_utf8_repair("a\xff" "b\xc3\xa9\xed\xa0\x80", 8, &m);
		CHECK(r && m == 16 && strcmp(r, "a\xef\xbf\xbd" "b\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") == 0);
		CHECK(r && tg_utf8_valid_prefix(r, m) == m);
		free(r);
	}
	CHECK(tg_mix64(1) != tg_mix64(2));

	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
