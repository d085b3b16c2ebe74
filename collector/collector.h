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

/* The signals `timeglass run` passes on to the command. The collector keeps
 * them blocked, not ignored: one sent to the whole process group (kill
 * -INT -PGID, systemd's stop, a terminal's Ctrl-C) waits in its pending set
 * for a moment (TG_GROUP_SIGNAL_HOLD_MS), which tells the supervisor that
 * the command had it too and must not get it a second time (a second
 * SIGINT makes uvicorn skip its graceful shutdown). */
#define TG_FORWARDED_SIGNALS {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH}
#define TG_GROUP_SIGNAL_HOLD_MS 200

/* Runs the collector until the lifeline closes. Returns the process exit
 * status: 0, or 2 if it could not start (the error went to the lifeline). */
int tg_collector_main(const struct tg_collector_opts *o);

#endif
