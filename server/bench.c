/*
 * bench.c - GET /api/bench?run=ID: the report `timeglass bench` wrote for a
 * run (its --json document: scorecard, operations with their latency
 * histograms, findings with request ids), for the dashboard's Bench view.
 *
 * The reports live beside the store, in bench/run-ID.json (the store itself
 * is opened read-only by everyone but the recorder). Without ?run, the
 * report of the newest run that has one. 404 "no_bench" when there is none.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "lib/util.h"

#define BENCH_MAX (32 << 20)

static void bench_dir(const char *db, char *out, size_t cap)
{
	const char *slash = strrchr(db, '/');
	snprintf(out, cap, "%.*s%sbench", slash ? (int)(slash - db) : 0, db, slash ? "/" : "");
}

/* The newest run id with a report in dir, 0 when none. */
static long long newest(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	long long best = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		long long id;
		char tail[8];
		if (sscanf(e->d_name, "run-%lld.%7s", &id, tail) == 2 && !strcmp(tail, "json") && id > best)
			best = id;
	}
	closedir(d);
	return best;
}

int tg_api_bench(struct tg_req *r)
{
	char dir[1024], buf[32];
	bench_dir(r->db_path, dir, sizeof dir);
	long long run = 0;
	if (tg_query_param(r, "run", buf, sizeof buf) > 0) {
		char *end;
		run = strtoll(buf, &end, 10);
		if (*end || run <= 0)
			return tg_send_error(r, 400, "bad_param", "run must be a positive integer");
	} else {
		run = newest(dir);
	}
	if (!run)
		return tg_send_error(r, 404, "no_bench", "no run has a timeglass bench report");
	char path[1200];
	snprintf(path, sizeof path, "%s/run-%lld.json", dir, run);
	char *text = malloc(BENCH_MAX + 1);
	if (!text)
		return tg_send_error(r, 500, "internal", "out of memory");
	ssize_t n = tg_read_small_file(path, text, BENCH_MAX + 1);
	if (n <= 0) {
		free(text);
		return tg_send_error(r, 404, "no_bench", "run %lld has no timeglass bench report", run);
	}
	cJSON *doc = cJSON_ParseWithLength(text, (size_t)n);
	free(text);
	if (!doc)
		return tg_send_error(r, 500, "bad_report", "the bench report of run %lld is not JSON", run);
	return tg_send_json(r, 200, doc);
}
