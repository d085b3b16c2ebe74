/*
 * args.c - the command-line loop the timeglass commands share (see args.h).
 */
#include <stdlib.h>

#include "cli/args.h"
#include "lib/util.h"

int cli_next(struct cli_args *a)
{
	if (!a->started) {
		opterr = 0;
		optind = 1;
		a->started = 1;
	}
	for (;;) {
		int c = getopt_long(a->argc, a->argv, a->shortopts, a->longopts, NULL);
		switch (c) {
		case CLI_DB: *a->db = optarg; break;
		case CLI_RUN: *a->run = (int64_t)tg_number_or_die("--run", optarg, 1, INT64_MAX); break;
		case CLI_REQUEST: *a->request = (int64_t)tg_number_or_die("--request", optarg, 1, INT64_MAX); break;
		case CLI_JSON: *a->json = 1; break;
		case CLI_JSON_FILE: *a->json_file = optarg; break;
		case CLI_MARKDOWN: *a->markdown = optarg; break;
		case CLI_COVERAGE: *a->coverage = optarg; break;
		case 0: break; /* a flag, set by getopt_long */
		case 'h':
			a->usage(stdout);
			exit(0);
		case '?':
		case ':': tg_die_getopt(a->cmd, c, a->argv);
		default: return c;
		}
	}
}

void cli_no_operands(const struct cli_args *a)
{
	if (optind < a->argc)
		tg_die_usage(a->cmd, "unexpected argument '%.64s'", a->argv[optind]);
}
