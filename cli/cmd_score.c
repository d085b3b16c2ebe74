/*
 * cmd_score.c - `timeglass score`: the scorecard of one run. Each benchmark
 * of the TimeGlass promise (latency average/p90/p99, throughput, CPU,
 * memory, database time, 5xx rate, bad-input handling, test coverage) with
 * its figure, a grade A-F from fixed thresholds, and the evidence behind it.
 * The figures come from report.h, shared with `timeglass ci` and the
 * dashboard.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/report.h"
#include "lib/store.h"
#include "lib/util.h"

void cmd_score_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass score [OPTIONS]\n"
		   "\n"
		   "Prints the scorecard of a run: each benchmark's figure, its grade and the\n"
		   "evidence behind it (the routes and requests that produced the figure).\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH        store to read (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --run ID         run to score (default: the latest)\n"
		   "  --coverage FILE  coverage.py data file (default ./.coverage; its percentage\n"
		   "                   comes from coverage.json beside it, from `coverage json`)\n"
		   "  --json           one JSON object instead of a table\n"
		   "  -h, --help       show this help\n"
		   "\n"
		   "Grades (A best; a benchmark without data is not graded):\n");
	rp_score_thresholds(f);
	fprintf(f, "\n"
		   "Latency and throughput are over the run's requests; throughput divides them by\n"
		   "the span from the first request's start to the last one's end. CPU is the CPU\n"
		   "time of the run's processes per request, memory the largest RSS of one process.\n"
		   "Bad-input handling is the share of error responses that are 4xx, not 5xx.\n"
		   "\n"
		   "The card ends with the run's data losses (records the recording missed:\n"
		   "figures may be short) and, apart, what the stack sampler did not take by\n"
		   "design (a rate lowered under its CPU budget, samples dropped on a race):\n"
		   "information, not a loss.\n");
}

int cmd_score(int argc, char **argv)
{
	enum { OPT_DB = 256, OPT_RUN, OPT_COV, OPT_JSON };
	static const struct option opts[] = {
		{"db", required_argument, NULL, OPT_DB},
		{"run", required_argument, NULL, OPT_RUN},
		{"coverage", required_argument, NULL, OPT_COV},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *db = NULL, *coverage = NULL;
	int64_t run = 0;
	int json = 0;
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DB: db = optarg; break;
		case OPT_RUN: run = (int64_t)tg_number_or_die("--run", optarg, 1, INT64_MAX); break;
		case OPT_COV: coverage = optarg; break;
		case OPT_JSON: json = 1; break;
		case 'h':
			cmd_score_usage(stdout);
			return 0;
		default: tg_die_getopt("score", c, argv);
		}
	}
	if (optind < argc)
		tg_die_usage("score", "unexpected argument '%.64s'", argv[optind]);
	db = tg_default_db(db);

	struct tg_store *s = tg_store_open(db, TG_STORE_READ);
	if (!s)
		tg_die("%s", tg_error());
	struct rp_report r;
	if (rp_load(tg_store_db(s), run, NULL, &r) < 0)
		tg_die("%s", tg_error());
	tg_store_close(s);
	struct rp_coverage cov;
	rp_coverage_read(coverage, &cov);
	struct rp_score_item items[RP_BENCH_COUNT];
	rp_score(&r, &cov, items);

	if (json) {
		struct jw w;
		jw_init(&w, stdout);
		jw_obj_open(&w);
		jw_key(&w, "run_id");
		jw_i64(&w, r.run_id);
		jw_key(&w, "requests");
		jw_u64(&w, r.nreqs);
		jw_key(&w, "scorecard");
		rp_score_json(&w, items);
		jw_key(&w, "losses");
		rp_losses_json(&w, &r.losses);
		jw_obj_close(&w);
		jw_newline(&w);
	} else {
		printf("Scorecard of run %" PRId64 " (%zu requests)\n\n", r.run_id, r.nreqs);
		printf("%-26s %-5s %s\n", "BENCHMARK", "GRADE", "FIGURE");
		for (int i = 0; i < RP_BENCH_COUNT; i++) {
			const struct rp_score_item *it = &items[i];
			printf("%-26s %-5c %s\n", it->name, it->grade, it->figure);
			if (!it->measured || !it->nevidence)
				printf("%-32s %s\n", "", it->note);
			for (size_t e = 0; e < it->nevidence; e++) {
				printf("%-32s - ", "");
				/* evidence holds wire text (paths): no control characters to the terminal */
				for (const char *p = it->evidence[e]; *p; p++)
					putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
				putchar('\n');
			}
		}
		char buf[512];
		printf("\nRecording: %s\n", tg_losses_text(&r.losses, buf, sizeof buf));
		if (*tg_losses_sampling_text(&r.losses, buf, sizeof buf))
			printf("Sampling: %s\n", buf);
	}
	rp_free(&r);
	return 0;
}
