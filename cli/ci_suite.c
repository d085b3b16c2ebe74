/*
 * cli/ci_suite.c - the suite runner of `timeglass ci` (ci.h): the test
 * command runs under `timeglass run` (this same binary) with the pytest
 * plugin on its path and TIMEGLASS_TEST_EVENTS naming the events file.
 */
#include "cli/ci.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"
#include "tg_config.h"

/* The directory holding the timeglass Python package (for the pytest
 * plugin), or NULL when none is found (an installed package's entry point
 * loads the plugin on its own then). */
static const char *python_dir(void)
{
	static char out[PATH_MAX];
	char cand[PATH_MAX + 64], exe[PATH_MAX], plugin[PATH_MAX + 96];
	const char *env = getenv("TIMEGLASS_BOOTSTRAP_DIR");
	const char *cands[3] = {NULL, NULL, NULL};
	if (env && *env) {
		snprintf(cand, sizeof cand, "%s/../..", env);
		cands[0] = cand;
	}
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		snprintf(plugin, sizeof plugin, "%s/../preload/libtimeglass.so", exe);
		if (access(plugin, R_OK) == 0)
			cands[1] = TG_SOURCE_DIR "/python";
	}
	cands[2] = TG_PY_BOOTSTRAP_DIR "/../..";
	for (int i = 0; i < 3; i++) {
		if (!cands[i])
			continue;
		snprintf(plugin, sizeof plugin, "%s/timeglass/pytest_plugin.py", cands[i]);
		if (access(plugin, R_OK) == 0 && realpath(cands[i], out))
			return out;
	}
	return NULL;
}

/* Whether dir holds an installed timeglass distribution (its dist-info
 * declares the pytest11 entry point). */
static int has_entry_point(const char *dir)
{
	char pat[PATH_MAX + 64];
	snprintf(pat, sizeof pat, "%s/timeglass-*.dist-info/entry_points.txt", dir);
	glob_t g;
	int found = glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0;
	if (found)
		globfree(&g);
	return found;
}

static void prepend_env(const char *name, const char *value, const char *sep)
{
	const char *old = getenv(name);
	if (!old || !*old) {
		setenv(name, value, 1);
		return;
	}
	if (strstr(old, value))
		return;
	size_t n = strlen(old) + strlen(value) + 2;
	char *v = malloc(n);
	if (!v)
		return;
	snprintf(v, n, "%s%s%s", value, sep, old);
	setenv(name, v, 1);
	free(v);
}

int ci_run_suite(const char *db, char **cmd, const char *events)
{
	size_t argc = 0;
	while (cmd[argc])
		argc++;
	char **argv = calloc(argc + 7, sizeof *argv);
	if (!argv)
		tg_die("out of memory");
	size_t i = 0;
	argv[i++] = (char *)"timeglass";
	argv[i++] = (char *)"run";
	argv[i++] = (char *)"--db";
	argv[i++] = (char *)db;
	argv[i++] = (char *)"--quiet";
	argv[i++] = (char *)"--";
	for (size_t k = 0; k < argc; k++)
		argv[i++] = cmd[k];
	argv[i] = NULL;

	fflush(NULL);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGINT, &ign, &old_int); /* the supervisor handles Ctrl-C and ends the run */
	sigaction(SIGQUIT, &ign, &old_quit);
	pid_t pid = fork();
	if (pid < 0)
		tg_die("fork: %s", strerror(errno));
	if (pid == 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		setenv("TIMEGLASS_TEST_EVENTS", events, 1);
		const char *py = python_dir();
		if (py) {
			prepend_env("PYTHONPATH", py, ":");
			/* An installed package's pytest11 entry point loads the plugin
			 * itself; naming it again in PYTEST_PLUGINS would register the
			 * module twice, which pytest refuses. */
			if (!has_entry_point(py))
				prepend_env("PYTEST_PLUGINS", "timeglass.pytest_plugin", ",");
		}
		execv("/proc/self/exe", argv);
		fprintf(stderr, "timeglass: cannot run timeglass run: %s\n", strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	free(argv);
	return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
}
