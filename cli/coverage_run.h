/*
 * coverage_run.h - `timeglass ci --coverage-run`: the test command run
 * under coverage.py (Debian's python3-coverage) for the app's own code, so
 * that the scorecard's coverage benchmark is measured by TimeGlass too.
 *
 * The command is rewritten: `pytest ARGS` and `PYTHON -m pytest ARGS`
 * become `PYTHON -m coverage run --source=. --omit=<tests> -m pytest ARGS`,
 * with the data file in a directory of TimeGlass's own (COVERAGE_FILE);
 * afterwards `coverage json` writes coverage.json beside it, where the
 * scorecard reads the percentage (report.h, rp_coverage_read).
 */
#ifndef TG_COVERAGE_RUN_H
#define TG_COVERAGE_RUN_H

struct cov_run {
	char python[512];       /* the interpreter that runs the suite */
	char dir[1024];         /* directory of the data file and coverage.json */
	char data[1100];        /* the data file */
	char **argv;            /* the rewritten command (NULL-terminated, malloc'd) */
};

/* Prepares the run of cmd next to the store db. Returns 0, or -1 with a
 * message in tg_error() when the command is not a pytest run this can wrap
 * or coverage.py is missing for its interpreter. */
int cov_prepare(char **cmd, const char *db, struct cov_run *c);

/* After the suite: writes coverage.json. Returns 0 or -1 (tg_error()). */
int cov_finish(const struct cov_run *c);

void cov_free(struct cov_run *c);

#endif
