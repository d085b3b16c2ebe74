/*
 * coverage_run.c - the test suite under coverage.py (see coverage_run.h).
 */
#include "cli/coverage_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"

#define OMIT "--omit=tests/*,test/*,*/test_*.py,*_test.py,*/conftest.py"   /* tests/ relative to the directory */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* Runs argv with COVERAGE_FILE set, output to /dev/null unless show; returns its exit status or -1. */
static int run_quiet(char *const argv[], const char *data, int show)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (data)
			setenv("COVERAGE_FILE", data, 1);
		if (!show && !freopen("/dev/null", "w", stdout))
			_exit(127);
		if (!show && !freopen("/dev/null", "w", stderr))
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int cov_prepare(char **cmd, const char *db, struct cov_run *c)
{
	memset(c, 0, sizeof *c);
	size_t argc = 0;
	while (cmd[argc])
		argc++;
	size_t rest;   /* index of the first argument of pytest */
	if (!strcmp(base_name(cmd[0]), "pytest") || !strcmp(base_name(cmd[0]), "pytest-3") ||
	    !strcmp(base_name(cmd[0]), "py.test")) {
		tg_strlcpy(c->python, "/usr/bin/python3", sizeof c->python);
		rest = 1;
	} else if (argc >= 3 && !strncmp(base_name(cmd[0]), "python", 6) && !strcmp(cmd[1], "-m") &&
		   !strcmp(cmd[2], "pytest")) {
		tg_strlcpy(c->python, cmd[0], sizeof c->python);
		rest = 3;
	} else {
		return tg_fail("--coverage-run wraps 'pytest ...' or 'PYTHON -m pytest ...', not '%.64s'", cmd[0]);
	}
	char *check[] = {c->python, (char *)"-c", (char *)"import coverage", NULL};
	if (run_quiet(check, NULL, 0) != 0)
		return tg_fail("coverage.py is not installed for %s (on Debian: apt install python3-coverage)",
			       c->python);
	const char *slash = strrchr(db, '/');
	snprintf(c->dir, sizeof c->dir, "%.*s%scoverage", slash ? (int)(slash - db) : 0, db, slash ? "/" : "");
	if (tg_mkdirs_for(c->dir) < 0 || (mkdir(c->dir, 0700) < 0 && errno != EEXIST))
		return tg_fail("cannot create %s: %s", c->dir, strerror(errno));
	snprintf(c->data, sizeof c->data, "%s/.coverage", c->dir);
	unlink(c->data);
	char json[1200];
	snprintf(json, sizeof json, "%s/coverage.json", c->dir);
	unlink(json);
	c->argv = calloc(argc + 10, sizeof *c->argv);
	if (!c->argv)
		return tg_fail("out of memory");
	size_t i = 0;
	c->argv[i++] = c->python;
	c->argv[i++] = (char *)"-m";
	c->argv[i++] = (char *)"coverage";
	c->argv[i++] = (char *)"run";
	c->argv[i++] = (char *)"--source=.";
	c->argv[i++] = (char *)OMIT;
	c->argv[i++] = (char *)"-m";
	c->argv[i++] = (char *)"pytest";
	for (size_t k = rest; k < argc; k++)
		c->argv[i++] = cmd[k];
	c->argv[i] = NULL;
	setenv("COVERAGE_FILE", c->data, 1);
	return 0;
}

int cov_finish(const struct cov_run *c)
{
	char json[1200];
	snprintf(json, sizeof json, "%s/coverage.json", c->dir);
	char *argv[] = {(char *)c->python, (char *)"-m", (char *)"coverage", (char *)"json", (char *)"-q",
			(char *)"-o", json, NULL};
	if (access(c->data, F_OK) != 0)
		return tg_fail("coverage.py wrote no data (%s): did the suite run?", c->data);
	if (run_quiet(argv, c->data, 0) != 0)
		return tg_fail("coverage json failed for %s", c->data);
	return 0;
}

void cov_free(struct cov_run *c)
{
	free(c->argv);
	c->argv = NULL;
}
