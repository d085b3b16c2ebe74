/*
 * ui.c - `timeglass ui` (ui.h): options, the store check at start, the
 * server's life, and opening the browser.
 */
#include "ui.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "server.h"

#define DEFAULT_PORT 7411 /* away from uvicorn's 8000 and the usual dev ports */
#define DEFAULT_DB ".timeglass/timeglass.db"

extern char **environ;

static const char usage[] =
	"usage: timeglass ui [--db PATH] [--port N] [--host ADDR] [--no-open]\n"
	"\n"
	"Serves the dashboard of a store on http://127.0.0.1:7411/.\n"
	"\n"
	"  --db PATH     the store (default: $TIMEGLASS_DB, else ./" DEFAULT_DB ")\n"
	"  --port N      port to listen on (default 7411; 0 picks a free one)\n"
	"  --host ADDR   address to listen on (default 127.0.0.1); any other address\n"
	"                exposes the recorded requests to the network\n"
	"  --no-open     do not open a browser\n";

/* Prints one line `timeglass: MESSAGE` on stderr. Returns 2, the status of
 * bad usage and unusable stores. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("timeglass: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 2;
}

/* 1 for addresses only this machine can reach. */
static int is_loopback(const char *host)
{
	return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

/* path made absolute against the current directory (for messages and so
 * that the page shows which store it reads). Returns malloc'd text. */
static char *absolute(const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return strdup(path);
	while (strncmp(path, "./", 2) == 0)
		path += 2;
	size_t n = strlen(cwd) + strlen(path) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s/%s", cwd, path);
	return s;
}

/* Starts xdg-open on url when there is a display; never waits for it. */
static pid_t open_browser(const char *url)
{
	if (!getenv("DISPLAY") && !getenv("WAYLAND_DISPLAY"))
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	char *argv[] = { "xdg-open", (char *)url, NULL };
	if (posix_spawnp(&pid, "xdg-open", &fa, NULL, argv, environ) != 0)
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

int tg_cmd_ui(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "no-open", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db_opt = NULL, *host = "127.0.0.1";
	long port = DEFAULT_PORT;
	int no_open = 0, c;
	optind = 0; /* getopt may have run before in this process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			db_opt = optarg;
			break;
		case 'p': {
			char *end;
			errno = 0;
			port = strtol(optarg, &end, 10);
			if (errno || *end || !*optarg || optarg[0] == '-' || port < 0 || port > 65535)
				return fail("ui: bad port '%s' (expected 0 to 65535)", optarg);
			break;
		}
		case 'H':
			host = optarg;
			break;
		case 'n':
			no_open = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case ':':
			return fail("ui: option '%s' needs a value; see: timeglass ui --help", argv[optind - 1]);
		default:
			return fail("ui: unknown option '%s'; see: timeglass ui --help", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail("ui: unexpected argument '%s'; see: timeglass ui --help", argv[optind]);
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (!*host || strspn(host, "0123456789abcdefABCDEF.:") != strlen(host))
		return fail("ui: bad --host '%s' (expected an IP address such as 127.0.0.1 or ::1)", host);

	const char *env_db = getenv("TIMEGLASS_DB");
	const char *db_given = db_opt ? db_opt : env_db && *env_db ? env_db : DEFAULT_DB;
	char *db_path = absolute(db_given);
	if (!db_path)
		return fail("out of memory%s", "");

	/* A missing store is fine (the page waits for it); one this build
	 * cannot read is an error now, not a puzzle in the browser. */
	struct tg_db db;
	tg_db_acquire(db_path, &db);
	tg_db_close_thread();
	if (db.state == TG_DB_NEWER || db.state == TG_DB_BAD) {
		fail("%s", db.message);
		free(db_path);
		return 2;
	}

	/* Block the stop signals before civetweb starts its threads, so that
	 * they all inherit the mask and only sigwait() below sees them. */
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, &old);

	char err[512];
	struct tg_server_config cfg = { .db_path = db_path, .host = host, .port = (int)port };
	struct tg_server *srv = tg_server_start(&cfg, err, sizeof err);
	if (!srv) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		free(db_path);
		if (strstr(err, "in use") || strstr(err, "bind"))
			return fail("%s (is another dashboard running? pick another port with --port)", err);
		return fail("%s", err);
	}
	if (!is_loopback(host))
		fprintf(stderr,
			"timeglass: warning: listening on %s: anyone who can reach this address sees the recorded "
			"requests, without a password\n",
			host);
	char url[320];
	int ipv6 = strchr(host, ':') != NULL;
	const char *shown = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(host, "::") == 0 ? "::1" : host;
	ipv6 = strchr(shown, ':') != NULL;
	snprintf(url, sizeof url, "http://%s%s%s:%d/", ipv6 ? "[" : "", shown, ipv6 ? "]" : "", tg_server_port(srv));
	printf("timeglass: dashboard at %s (Ctrl-C to stop)\n", url);
	if (db.state == TG_DB_MISSING)
		printf("timeglass: no store at %s yet; the page shows it once `timeglass run` records\n", db_path);
	fflush(stdout);
	pid_t browser = no_open ? -1 : open_browser(url);

	int sig;
	while (sigwait(&stop, &sig) != 0)
		;
	tg_server_stop(srv);
	if (browser > 0)
		waitpid(browser, NULL, WNOHANG);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	free(db_path);
	return 0;
}
