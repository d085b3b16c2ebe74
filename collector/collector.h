/*
 * collector/collector.h - the collector process of `timeglass run`.
 *
 * The supervisor forks it before starting the traced command. It owns the
 * store for the whole run: it registers every traced process (Unix socket,
 * ring memfd passed with SCM_RIGHTS), drains their shared-memory rings into
 * SQLite, samples their CPU and memory, and records what was lost.
 *
 * Lifeline protocol over one stream socket shared with the supervisor:
 *   collector -> supervisor: "ready RUN_ID SOCKET_PATH\n" or "error MESSAGE\n"
 *   supervisor -> collector: "exit STATUS\n" once the command has ended, then
 *                            closes; EOF (also when the supervisor dies) makes
 *                            the collector drain everything and exit.
 */
#ifndef TG_COLLECTOR_H
#define TG_COLLECTOR_H

struct tg_otlp_conf;

struct tg_collector_opts {
	const char *db_path;  /* store to write */
	unsigned keep_runs;   /* retention: runs kept, 0 = all */
	char *const *argv;    /* the traced command, for the runs row */
	int lifeline;         /* the collector's end of the lifeline socket */
	const struct tg_otlp_conf *otlp; /* stream spans there (otlp_stream.h), or NULL */
};

/* Runs the collector until the lifeline closes. Returns the process exit
 * status: 0, or 2 if it could not start (the error went to the lifeline). */
int tg_collector_main(const struct tg_collector_opts *o);

#endif
