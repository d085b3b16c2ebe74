/*
 * cli/ci.h - the parts of `timeglass ci` (cli/cmd_ci.c) that live in files
 * of their own.
 */
#ifndef TG_CLI_CI_H
#define TG_CLI_CI_H

/* Runs `timeglass run --db DB --quiet -- CMD...` (cmd: NULL-terminated)
 * with the pytest plugin's environment and TIMEGLASS_TEST_EVENTS=events.
 * Returns CMD's status (128 + signal when killed); dies when it cannot
 * fork. */
int ci_run_suite(const char *db, char **cmd, const char *events);

#endif
