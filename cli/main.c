/*
 * main.c - the timeglass command: dispatches the command table below,
 * prints the overall help and the version.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"
#ifdef TG_HAVE_SERVER
#include "server/ui.h"
#endif
#include "tg_config.h"
#include "lib/util.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	void (*usage)(FILE *f);
	const char *summary;
};

static void cmd_ui_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass ui [--db PATH] [--port N] [--host ADDR] [--no-open]\n"
		   "\n"
		   "Serves the dashboard on http://127.0.0.1:7411/ (live while a run is recorded).\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH    store to show (default .timeglass/timeglass.db, or TIMEGLASS_DB)\n"
		   "  --port N     port to listen on (default 7411)\n"
		   "  --host ADDR  address to bind (default 127.0.0.1; others print a warning)\n"
		   "  --no-open    do not try to open a browser\n");
}

static int cmd_ui(int argc, char **argv)
{
#ifdef TG_HAVE_SERVER
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			cmd_ui_usage(stdout);
			return 0;
		}
	}
	return tg_cmd_ui(argc, argv);
#else
	(void)argc;
	(void)argv;
	fprintf(stderr, "timeglass: this build has no dashboard (it needs civetweb, cJSON, esbuild and "
			"web/node_modules at build time)\n");
	return TG_EXIT_USAGE;
#endif
}

/* One row per command: its name, cmd_NAME() and cmd_NAME_usage(). */
#define COMMAND(name, summary) {#name, cmd_##name, cmd_##name##_usage, summary}

static const struct command commands[] = {
	COMMAND(run, "run a command and record its requests, SQL queries and stacks"),
	COMMAND(ui, "serve the dashboard (http://127.0.0.1:7411/)"),
	COMMAND(requests, "print the recorded requests of a run"),
	COMMAND(runs, "list the recorded runs"),
	COMMAND(ci, "profile a test suite, check budgets and baselines"),
	COMMAND(score, "grade a run on the TimeGlass benchmarks"),
	COMMAND(bench, "benchmark an app from its OpenAPI document: probe, load, scorecard"),
	COMMAND(queries, "print the recorded SQL queries of a run or request"),
	COMMAND(spans, "print the recorded outbound HTTP calls of a run or request"),
	COMMAND(flame, "print sampled Python stacks as a flame graph (folded, speedscope)"),
	COMMAND(export, "write a run as a Chrome trace (Perfetto) or speedscope file"),
};

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: timeglass COMMAND [OPTIONS]\n"
		   "\n"
		   "Profiles HTTP (ASGI/WSGI) apps with no code change.\n"
		   "\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "  %-10s %s\n", "help", "show help for a command");
	fprintf(f, "\n"
		   "Options:\n"
		   "  -h, --help     show this help\n"
		   "  -V, --version  print the version\n"
		   "\n"
		   "Example:\n"
		   "  timeglass run -- uvicorn main:app\n"
		   "  timeglass requests\n"
		   "\n"
		   "The store is .timeglass/timeglass.db in the current directory unless\n"
		   "--db or TIMEGLASS_DB says otherwise. See: timeglass COMMAND --help\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return TG_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(name, "-V") || !strcmp(name, "--version")) {
		printf("timeglass %s\n", TG_VERSION);
		return 0;
	}
	if (!strcmp(name, "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		const struct command *c = find(argv[2]);
		if (!c)
			tg_die_usage(NULL, "unknown command '%.64s'", argv[2]);
		c->usage(stdout);
		return 0;
	}
	const struct command *c = find(name);
	if (!c) {
		if (name[0] == '-')
			tg_die_usage(NULL, "unknown option '%.64s'", name);
		tg_die_usage(NULL, "unknown command '%.64s'", name);
	}
	return c->run(argc - 1, argv + 1);
}
