/*
 * args.h - the command-line loop the timeglass commands share: getopt_long
 * over the command's arguments, -h/--help, the usage errors for an unknown
 * option or a missing value, and the options several commands take alike
 * (--db PATH, --run ID, --request ID, --json; --json FILE, --markdown FILE,
 * --coverage FILE).
 *
 * A command lists its own options with codes from CLI_OWN on (or, for a
 * flag, getopt_long's flag and val: {"all", no_argument, &o->all, 1}) and
 * the shared ones with their CLI_OPT_* macros, ends the list with
 * CLI_OPT_HELP_END, and reads its own options with cli_next():
 *
 *	struct cli_args a = {"flame", cmd_flame_usage, ":h", opts, argc, argv, .db = &o->db};
 *	while ((c = cli_next(&a)) != -1)
 *		switch (c) { ... }
 *	cli_no_operands(&a);
 */
#ifndef TG_CLI_ARGS_H
#define TG_CLI_ARGS_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

/* getopt_long codes of the shared options; a command's own start at CLI_OWN. */
enum { CLI_DB = 256, CLI_RUN, CLI_REQUEST, CLI_JSON, CLI_JSON_FILE, CLI_MARKDOWN, CLI_COVERAGE, CLI_OWN };

#define CLI_OPT_DB {"db", required_argument, NULL, CLI_DB}
#define CLI_OPT_RUN {"run", required_argument, NULL, CLI_RUN}
#define CLI_OPT_REQUEST {"request", required_argument, NULL, CLI_REQUEST}
#define CLI_OPT_JSON {"json", no_argument, NULL, CLI_JSON}
#define CLI_OPT_JSON_FILE {"json", required_argument, NULL, CLI_JSON_FILE}
#define CLI_OPT_MARKDOWN {"markdown", required_argument, NULL, CLI_MARKDOWN}
#define CLI_OPT_COVERAGE {"coverage", required_argument, NULL, CLI_COVERAGE}
#define CLI_OPT_HELP_END {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}

struct cli_args {
	const char *cmd;          /* the command's name, for its usage errors */
	void (*usage)(FILE *f);   /* prints its --help */
	const char *shortopts;    /* getopt_long's, starting with ':' or "+:" */
	const struct option *longopts;
	int argc;
	char **argv;
	/* Where the shared options go (a command lists only those it points
	 * somewhere): --json sets its flag to 1, --json FILE names a file. */
	const char **db;
	int64_t *run, *request;
	int *json;
	const char **json_file, **markdown, **coverage;
	int started;
};

/* The getopt_long code of the next option of the command's own, or -1 after
 * the last option (optind then indexes the first operand). Takes the shared
 * options and the flags itself (an ID is a number from 1 on), prints the help on
 * stdout and exits 0 on -h/--help, and dies with the usage error on an
 * unknown option or a missing value. */
int cli_next(struct cli_args *a);

/* Dies with "unexpected argument" unless every argument was an option. */
void cli_no_operands(const struct cli_args *a);

#endif
