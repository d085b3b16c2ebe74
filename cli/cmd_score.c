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

#include "cli/args.h"
#include "cli/cmds.h"
#include "lib/jsonw.h"
#include "lib/report.h"
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
	static const struct option opts[] = {CLI_OPT_DB, CLI_OPT_RUN, CLI_OPT_COVERAGE, CLI_OPT_JSON, CLI_OPT_HELP_END};
	const char *db = NULL, *coverage = NULL;
	int64_t run = 0;
	int json = 0;
	struct cli_args a = {"score", cmd_score_usage, ":h", opts, argc, argv,
			     .db = &db, .run = &run, .json = &json, .coverage = &coverage};
	while (cli_next(&a) != -1)
		; /* score has no options of its own */
	cli_no_operands(&a);
	db = tg_default_db(db);

	struct rp_report r;
	if (rp_load_path(db, run, NULL, &r) < 0)
		tg_die("%s", tg_error());
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
