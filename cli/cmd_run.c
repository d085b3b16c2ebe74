/*
 * cmd_run.c - `timeglass run`: the supervisor.
 *
 * It forks the collector (collector.c) first and waits for it to say
 * "ready": the store is open and the registration socket listens (old runs
 * are pruned after that, while the command starts). Only then does it start
 * the command (posix_spawn), with libtimeglass.so appended to LD_PRELOAD and
 * the socket path in TIMEGLASS_SOCK. While the command runs, the supervisor
 * forwards the signals a user or a process manager sends it; when the
 * command ends it hands its exit status to the collector over the lifeline,
 * closes it, waits for the collector to finish writing (up to 30 s; a pidfd
 * says the moment it ends) and exits with the command's status (128 + N if
 * killed by signal N).
 * If the collector dies, the command keeps running and its status is still
 * returned; when the command ends, the supervisor writes the run's end (time
 * and status) into the store itself, so the run does not look unfinished.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cmds.h"
#include "collector/collector.h"
#include "collector/otlp_stream.h"
#include "common/ring.h"
#include "lib/store.h"
#include "tg_config.h"
#include "lib/util.h"

#define DEFAULT_KEEP_RUNS 20
#define DEFAULT_RING_MB 8
#define COLLECTOR_WAIT_NS (30LL * 1000000000) /* after the command, wait this long for the collector */
#define LIB_NAME "libtimeglass.so"
#define RING_MAX_MB ((int)(TG_RING_MAX_DATA >> 20))

struct run_opts {
	const char *db;
	unsigned keep_runs;   /* 0 = keep all */
	unsigned ring_mb;     /* ring data size, MiB, power of two */
	int quiet;
	int no_bootstrap;     /* do not put the Python bootstrap on PYTHONPATH */
	const char *otlp_endpoint; /* --otlp-endpoint, NULL if not given */
	const char *service_name;  /* --service-name, NULL if not given */
};

void cmd_run_usage(FILE *f)
{
	fprintf(f, "Usage: timeglass run [OPTIONS] [--] CMD [ARGS...]\n"
		   "\n"
		   "Runs CMD and records every HTTP request it serves, its SQL queries and\n"
		   "outbound calls, sampled Python stacks, and the CPU and memory of its\n"
		   "processes, into the store. Exit status and signals pass through.\n"
		   "\n"
		   "Options:\n"
		   "  --db PATH         store to write (default: $TIMEGLASS_DB or .timeglass/timeglass.db)\n"
		   "  --keep-runs N     keep only the newest N runs in the store, 0 = all\n"
		   "                    (default %d, or $TIMEGLASS_KEEP_RUNS)\n"
		   "  --ring-size MB    shared-memory ring per process, a power of two\n"
		   "                    (default %d, or $TIMEGLASS_RING_SIZE)\n"
		   "  -q, --quiet       no start-up line (or $TIMEGLASS_QUIET=1)\n"
		   "  --no-bootstrap    do not inject the Python bootstrap that names routes\n"
		   "                    (or $TIMEGLASS_NO_BOOTSTRAP=1)\n"
		   "  --sample-rate HZ  Python stack samples per second and thread, 0 = off\n"
		   "                    (default 1000, or $TIMEGLASS_SAMPLE_HZ); lowered while the\n"
		   "                    sampler uses more than $TIMEGLASS_SAMPLE_BUDGET %% of a core\n"
		   "                    (default 5, 0 = no limit); while no thread runs, it dozes up\n"
		   "                    to $TIMEGLASS_SAMPLE_DOZE_MS ms (default 100, 0 = never)\n"
		   "                    until the app's next read\n"
		   "  --sample-mode MODE  how samples are taken (or $TIMEGLASS_SAMPLE_MODE):\n"
		   "                    timer: a sampler thread reads every thread's stack at the\n"
		   "                    rate; eval: each thread samples itself at its Python calls\n"
		   "                    and returns (eval-frame hook, no timer: far cheaper at high\n"
		   "                    rates, see README); auto (default): eval above 2000 Hz\n"
		   "  --native          add native (C) frames to the samples, under the Python\n"
		   "                    frames that called them (or $TIMEGLASS_NATIVE=1)\n"
		   "  --trace           exact trace: every Python function call of a request that\n"
		   "                    lasts at least the threshold becomes a 'function' span\n"
		   "                    (or $TIMEGLASS_TRACE=1); costs about 14 ns per Python call,\n"
		   "                    8-23%% of a small request (README: Exact-trace mode)\n"
		   "  --trace-threshold-us N  shortest call kept by --trace, microseconds\n"
		   "                    (default 100, or $TIMEGLASS_TRACE_US)\n"
		   "  --redact-param NAME  also redact the values of query parameters named NAME\n"
		   "                    (any case, repeatable; or $TIMEGLASS_REDACT_PARAMS, names\n"
		   "                    separated by commas), in request targets, Referer headers\n"
		   "                    and outbound call URLs; always redacted: password, passwd,\n"
		   "                    pwd, token, access_token, refresh_token, api_key, apikey,\n"
		   "                    key, secret, client_secret, auth, session, signature, sig,\n"
		   "                    code\n"
		   "  --capture-params  store SQL query parameters too (off by default; may hold\n"
		   "                    personal data) (or $TIMEGLASS_CAPTURE_PARAMS=1)\n"
		   "  --sql-max BYTES   SQL text kept per query (default 4096, or $TIMEGLASS_SQL_MAX)\n"
		   "  --n-plus-one N    flag a query shape run N times from one call site in one\n"
		   "                    request as N+1 (default 5, or $TIMEGLASS_N_PLUS_ONE)\n"
		   "  --otlp-endpoint URL  also stream the run's spans, while it runs, to an\n"
		   "                    OpenTelemetry endpoint over OTLP/HTTP (JSON): POSTs to\n"
		   "                    URL/v1/traces (plain http:// only; '' = off); default:\n"
		   "                    $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is), else\n"
		   "                    $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces; headers from\n"
		   "                    $OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2). Spans the\n"
		   "                    endpoint does not take are counted in the run's losses\n"
		   "  --service-name NAME  service.name of the streamed spans (default\n"
		   "                    $OTEL_SERVICE_NAME, else from the command)\n"
		   "  -h, --help        show this help\n"
		   "\n"
		   "Options end at the first argument that is not one, so both work:\n"
		   "  timeglass run -- uvicorn main:app\n"
		   "  timeglass run uvicorn main:app\n"
		   "\n"
		   "The $TIMEGLASS_* variables are checked as their options are; flags take\n"
		   "1/0, yes/no, true/false, on/off. An option overrides its variable.\n",
		DEFAULT_KEEP_RUNS, DEFAULT_RING_MB);
}

static unsigned ring_mb_or_die(const char *what, const char *s)
{
	uint64_t v = tg_number_or_die(what, s, 1, RING_MAX_MB);
	if (v & (v - 1))
		tg_die("bad number for %s: '%.64s' (want a power of two: 1, 2, 4, ... %d)", what, s,
		       RING_MAX_MB);
	return (unsigned)v;
}

/* ---- the environment ---------------------------------------------------- */

/* Flag spellings every reader (this program, the preload library, the
 * Python side) takes; anything else is refused here. */
static const char *const flag_false[] = { "", "0", "no", "false", "off" };
static const char *const flag_true[] = { "1", "yes", "true", "on" };

static int flag_value(const char *v)
{
	for (size_t i = 0; i < sizeof flag_false / sizeof flag_false[0]; i++)
		if (strcasecmp(v, flag_false[i]) == 0)
			return 0;
	for (size_t i = 0; i < sizeof flag_true / sizeof flag_true[0]; i++)
		if (strcasecmp(v, flag_true[i]) == 0)
			return 1;
	return -1;
}

/* Checks the TIMEGLASS_* variables this command reads, or passes to the
 * collector, the app's preload library, its Python bootstrap and the
 * middleware, as the matching options are checked: a bad value ends the
 * command with its message and status 2 before anything starts. Values
 * are passed on in one spelling (decimal, "1"/"0"), so that every reader
 * agrees. Runs before the options (which then set the variables they stand
 * for), as the checks of TIMEGLASS_KEEP_RUNS and TIMEGLASS_RING_SIZE do:
 * a bad variable is an error whatever the command line says. */
static void check_env(void)
{
	static const struct {
		const char *name;
		uint64_t min, max;
	} numbers[] = {
		{ "TIMEGLASS_SAMPLE_HZ", 0, 100000 },   /* --sample-rate */
		{ "TIMEGLASS_SAMPLE_DOZE_MS", 0, 10000 }, /* the sampler's longest doze */
		{ "TIMEGLASS_TRACE_US", 0, 60000000 },  /* --trace-threshold-us */
		{ "TIMEGLASS_SQL_MAX", 16, 32768 },     /* --sql-max */
		{ "TIMEGLASS_N_PLUS_ONE", 2, 1000000 }, /* --n-plus-one */
		{ "TIMEGLASS_PIPELINE_KB", 1, 1u << 20 }, /* pipelined requests' details kept per connection */
	};
	static const char *const flags[] = {
		"TIMEGLASS_QUIET", "TIMEGLASS_NO_BOOTSTRAP", "TIMEGLASS_NATIVE", "TIMEGLASS_TRACE",
		"TIMEGLASS_CAPTURE_PARAMS", "TIMEGLASS_NO_SQL", "TIMEGLASS_DISABLE", "TIMEGLASS_NO_SPEEDUPS",
	};
	const char *v;
	char buf[32];
	for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
		if (!(v = getenv(numbers[i].name)) || !*v)
			continue;
		snprintf(buf, sizeof buf, "%llu",
			 (unsigned long long)tg_number_or_die(numbers[i].name, v, numbers[i].min, numbers[i].max));
		setenv(numbers[i].name, buf, 1);
	}
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
		if (!(v = getenv(flags[i])) || !*v)
			continue;
		int on = flag_value(v);
		if (on < 0)
			tg_die("bad value for %s: '%.64s' (want 1 or 0; also yes/no, true/false, on/off)", flags[i], v);
		setenv(flags[i], on ? "1" : "0", 1);
	}
	if ((v = getenv("TIMEGLASS_SAMPLE_MODE")) && *v && strcmp(v, "auto") != 0 && strcmp(v, "timer") != 0 &&
	    strcmp(v, "eval") != 0)
		tg_die_usage("run", "TIMEGLASS_SAMPLE_MODE: '%.32s' is not one of auto, timer, eval", v);
	if ((v = getenv("TIMEGLASS_SAMPLE_BUDGET")) && *v) {
		/* a percentage of one core: digits, one optional decimal point */
		char *end;
		errno = 0;
		double pct = strtod(v, &end);
		if (errno || *end || strspn(v, "0123456789.") != strlen(v) || !(pct >= 0 && pct <= 100))
			tg_die("bad number for TIMEGLASS_SAMPLE_BUDGET: '%.64s' (want a percentage 0..100, 0 = no limit)", v);
	}
	/* directories: the bootstrap's (a sitecustomize.py), the extension's */
	static const char *const dirs[] = { "TIMEGLASS_BOOTSTRAP_DIR", "TIMEGLASS_PYEXT_DIR" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		struct stat st;
		char file[PATH_MAX + 32];
		if (!(v = getenv(dirs[i])) || !*v)
			continue;
		if (stat(v, &st) < 0)
			tg_die("%s=%s: %s", dirs[i], v, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			tg_die("%s=%s: %s", dirs[i], v, strerror(ENOTDIR));
		snprintf(file, sizeof file, "%s/sitecustomize.py", v);
		if (i == 0 && access(file, R_OK) < 0)
			tg_die("%s=%s: no sitecustomize.py there (the directory of timeglass/bootstrap)", dirs[i], v);
	}
}

/* --redact-param NAME: appended to $TIMEGLASS_REDACT_PARAMS (names the user
 * set there stay), which the library in the app reads. The library takes up
 * to 64 names of up to 63 bytes. */
static void add_redact_param(const char *name)
{
	const char *old = getenv("TIMEGLASS_REDACT_PARAMS");
	size_t len = strlen(name);
	if (!len || len > 63 || strchr(name, ','))
		tg_die_usage("run", "--redact-param: '%.64s' is not a parameter name (1 to 63 bytes, no comma)",
			     name);
	size_t oldlen = old ? strlen(old) : 0;
	char *v = malloc(oldlen + len + 2);
	if (!v)
		tg_die("out of memory");
	if (oldlen)
		snprintf(v, oldlen + len + 2, "%s,%s", old, name);
	else
		memcpy(v, name, len + 1);
	setenv("TIMEGLASS_REDACT_PARAMS", v, 1);
	free(v);
}

/* Sets the environment variable name to the number of option opt (arg, in
 * [min, max]) for the app's processes; dies on a bad number. */
static void setenv_number(const char *name, const char *opt, const char *arg, uint64_t min, uint64_t max)
{
	char v[32];
	snprintf(v, sizeof v, "%llu", (unsigned long long)tg_number_or_die(opt, arg, min, max));
	setenv(name, v, 1);
}

static void parse(int argc, char **argv, struct run_opts *o, int *cmd_index)
{
	enum { OPT_KEEP = CLI_OWN, OPT_RING, OPT_SAMPLE_RATE, OPT_CAPTURE_PARAMS, OPT_SQL_MAX, OPT_N_PLUS_ONE,
	       OPT_NATIVE, OPT_TRACE, OPT_TRACE_US, OPT_SAMPLE_MODE, OPT_REDACT_PARAM, OPT_OTLP_ENDPOINT, OPT_SERVICE_NAME };
	const struct option longopts[] = {
		CLI_OPT_DB,
		{"keep-runs", required_argument, NULL, OPT_KEEP},
		{"ring-size", required_argument, NULL, OPT_RING},
		{"quiet", no_argument, NULL, 'q'},
		{"no-bootstrap", no_argument, &o->no_bootstrap, 1},
		{"sample-rate", required_argument, NULL, OPT_SAMPLE_RATE},
		{"sample-mode", required_argument, NULL, OPT_SAMPLE_MODE},
		{"capture-params", no_argument, NULL, OPT_CAPTURE_PARAMS},
		{"redact-param", required_argument, NULL, OPT_REDACT_PARAM},
		{"sql-max", required_argument, NULL, OPT_SQL_MAX},
		{"n-plus-one", required_argument, NULL, OPT_N_PLUS_ONE},
		{"native", no_argument, NULL, OPT_NATIVE},
		{"trace", no_argument, NULL, OPT_TRACE},
		{"trace-threshold-us", required_argument, NULL, OPT_TRACE_US},
		{"otlp-endpoint", required_argument, NULL, OPT_OTLP_ENDPOINT},
		{"service-name", required_argument, NULL, OPT_SERVICE_NAME},
		CLI_OPT_HELP_END,
	};
	const char *env;
	o->keep_runs = DEFAULT_KEEP_RUNS;
	o->ring_mb = DEFAULT_RING_MB;
	if ((env = getenv("TIMEGLASS_KEEP_RUNS")) && *env)
		o->keep_runs = (unsigned)tg_number_or_die("TIMEGLASS_KEEP_RUNS", env, 0, 1000000);
	if ((env = getenv("TIMEGLASS_RING_SIZE")) && *env)
		o->ring_mb = ring_mb_or_die("TIMEGLASS_RING_SIZE", env);
	check_env();
	o->quiet = tg_env_flag("TIMEGLASS_QUIET");
	o->no_bootstrap = tg_env_flag("TIMEGLASS_NO_BOOTSTRAP");

	struct cli_args a = {"run", cmd_run_usage, "+:qh", longopts, argc, argv, .db = &o->db};
	int c;
	while ((c = cli_next(&a)) != -1) {
		switch (c) {
		case OPT_KEEP: o->keep_runs = (unsigned)tg_number_or_die("--keep-runs", optarg, 0, 1000000); break;
		case OPT_RING: o->ring_mb = ring_mb_or_die("--ring-size", optarg); break;
		case 'q': o->quiet = 1; break;
		/* The sampler in the app reads it from the environment. */
		case OPT_SAMPLE_RATE: setenv_number("TIMEGLASS_SAMPLE_HZ", "--sample-rate", optarg, 0, 100000); break;
		/* The sampler and the Python bootstrap read these from the environment. */
		case OPT_SAMPLE_MODE:
			if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "timer") != 0 && strcmp(optarg, "eval") != 0)
				tg_die_usage("run", "--sample-mode: '%.32s' is not one of auto, timer, eval", optarg);
			setenv("TIMEGLASS_SAMPLE_MODE", optarg, 1);
			break;
		case OPT_NATIVE:
#ifndef TG_HAVE_NATIVE
			tg_warn("--native: this build has no native unwinding (libunwind, libelf); ignored");
#endif
			setenv("TIMEGLASS_NATIVE", "1", 1);
			break;
		case OPT_TRACE: setenv("TIMEGLASS_TRACE", "1", 1); break;
		case OPT_TRACE_US:
			setenv_number("TIMEGLASS_TRACE_US", "--trace-threshold-us", optarg, 0, 60000000);
			break;
		/* The SQL taps (app) and the collector read these from the environment. */
		case OPT_CAPTURE_PARAMS: setenv("TIMEGLASS_CAPTURE_PARAMS", "1", 1); break;
		case OPT_SQL_MAX: setenv_number("TIMEGLASS_SQL_MAX", "--sql-max", optarg, 16, 32768); break;
		case OPT_N_PLUS_ONE: setenv_number("TIMEGLASS_N_PLUS_ONE", "--n-plus-one", optarg, 2, 1000000); break;
		case OPT_REDACT_PARAM: add_redact_param(optarg); break;
		/* Read by the collector, not passed to the app through its environment. */
		case OPT_OTLP_ENDPOINT: o->otlp_endpoint = optarg; break;
		case OPT_SERVICE_NAME: o->service_name = optarg; break;
		}
	}
	if (optind >= argc)
		tg_die_usage("run", "no command to run");
	o->db = tg_default_db(o->db);
	*cmd_index = optind;
}

/* Resolves path to an absolute, existing file in out. Returns 0 or -1. */
static int existing(const char *path, char out[PATH_MAX])
{
	return realpath(path, out) && access(out, R_OK) == 0 ? 0 : -1;
}

/* Resolves the first match of dir + pattern into out. Returns 0 or -1. */
static int glob_first(const char *dir, const char *pattern, char out[PATH_MAX])
{
	char pat[PATH_MAX + 128];
	glob_t g;
	snprintf(pat, sizeof pat, "%s%s", dir, pattern);
	int rc = -1;
	if (glob(pat, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && rc < 0; i++)
			rc = existing(g.gl_pathv[i], out);
		globfree(&g);
	}
	return rc;
}

/* The directory of this program into exe. Returns 0, or -1 when
 * /proc/self/exe cannot be read. */
static int exe_dir(char exe[PATH_MAX])
{
	ssize_t n = readlink("/proc/self/exe", exe, PATH_MAX - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	return 0;
}

/* Finds the directory of the Python bootstrap (a sitecustomize that names
 * routes): $TIMEGLASS_BOOTSTRAP_DIR, the source tree of a build tree's
 * binary, a virtualenv's site-packages, the install directory. Returns 0,
 * or -1 when there is none (the run goes on without it). */
static int find_bootstrap(char out[PATH_MAX])
{
	const char *env = getenv("TIMEGLASS_BOOTSTRAP_DIR");
	if (env && *env)
		return existing(env, out);
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	if (exe_dir(exe) == 0) {
		snprintf(cand, sizeof cand, "%s/../preload/" LIB_NAME, exe);
		if (access(cand, R_OK) == 0 && existing(TG_SOURCE_DIR "/python/timeglass/bootstrap", out) == 0)
			return 0;
		if (glob_first(exe, "/../lib/python3*/site-packages/timeglass/bootstrap", out) == 0)
			return 0;
	}
	return existing(TG_PY_BOOTSTRAP_DIR, out);
}

/* The build directory of the timeglass._speedups extension when this is a
 * build tree's binary (installed, it is inside the package). Returns 0 or -1. */
static int find_build_pyext(char out[PATH_MAX])
{
	char exe[PATH_MAX], so[PATH_MAX];
	if (exe_dir(exe) < 0 || glob_first(exe, "/../python/_speedups*.so", so) < 0)
		return -1;
	char *slash = strrchr(so, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	memcpy(out, so, (size_t)(slash - so) + 1);
	return 0;
}

/* Finds libtimeglass.so: $TIMEGLASS_LIB, next to a build tree's binary,
 * next to the binary, then the install directory. Dies if none exists. */
static void find_lib(char out[PATH_MAX])
{
	const char *env = getenv("TIMEGLASS_LIB");
	if (env && *env) {
		if (existing(env, out) < 0)
			tg_die("TIMEGLASS_LIB=%s: %s", env, strerror(errno ? errno : ENOENT));
		return;
	}
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	if (exe_dir(exe) == 0) {
		snprintf(cand, sizeof cand, "%s/../preload/" LIB_NAME, exe);
		if (existing(cand, out) == 0)
			return;
		snprintf(cand, sizeof cand, "%s/" LIB_NAME, exe);
		if (existing(cand, out) == 0)
			return;
		/* pip install: the wheel puts it beside the Python packages. */
		if (glob_first(exe, "/../lib/python3*/site-packages/.timeglass.mesonpy.libs/timeglass/" LIB_NAME,
			       out) == 0)
			return;
	}
	if (existing(TG_PKGLIBDIR "/" LIB_NAME, out) == 0)
		return;
	tg_die("cannot find " LIB_NAME " (looked next to this program and in " TG_PKGLIBDIR "); set TIMEGLASS_LIB");
}

/* ---- signals ----------------------------------------------------------- */

static const int forwarded[] = TG_FORWARDED_SIGNALS;
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static volatile pid_t cmd_pid; /* the command while it runs, else 0 */
static char coll_status[40];   /* /proc/PID/status of the collector while it runs, else "" */

/* Whether sig waits in the collector's pending set: then it was sent to the
 * whole process group, the command included (collector.h). Async-signal-safe. */
static int sent_to_group(int sig)
{
	if (!coll_status[0])
		return 0;
	int fd = open(coll_status, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[2048];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strstr(buf, "\nShdPnd:");
	if (!p)
		return 0;
	p += 9;
	while (*p == ' ' || *p == '\t')
		p++;
	/* 16 hex digits (64 signals), signal 1 in the lowest bit. */
	const char *end = p;
	while ((*end >= '0' && *end <= '9') || (*end >= 'a' && *end <= 'f'))
		end++;
	int bit = sig - 1, digit = (int)(end - p) - 1 - bit / 4;
	if (digit < 0)
		return 0;
	int v = p[digit] <= '9' ? p[digit] - '0' : p[digit] - 'a' + 10;
	return (v >> (bit % 4)) & 1;
}

static void forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	/* Ctrl-C / Ctrl-\ from the terminal reached the command already, and so
	 * did a signal to the process group. */
	int from_tty = (sig == SIGINT || sig == SIGQUIT) && si && si->si_code > 0;
	if (!from_tty && cmd_pid > 0 && !sent_to_group(sig))
		kill(cmd_pid, sig);
	errno = saved;
}

static void block_forwarded(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < NFORWARDED; i++)
		sigaddset(&set, forwarded[i]);
	sigprocmask(SIG_BLOCK, &set, old);
}

static void install_forwarders(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NFORWARDED; i++)
		sigaction(forwarded[i], &sa, NULL);
}

/* ---- the command ------------------------------------------------------- */

/* The command's environment, set in this process (which reads none of
 * these variables afterwards) for the command to inherit: the bootstrap on
 * PYTHONPATH, the library in LD_PRELOAD, the socket and the ring size. */
static void command_env(const char *lib, const char *sock, unsigned ring_mb, int no_bootstrap)
{
	char boot[PATH_MAX];
	if (no_bootstrap) {
		setenv("TIMEGLASS_NO_BOOTSTRAP", "1", 1);
	} else if (find_bootstrap(boot) == 0) {
		const char *pp = getenv("PYTHONPATH");
		if (!pp || !*pp) {
			setenv("PYTHONPATH", boot, 1);
		} else if (!strstr(pp, boot)) {
			size_t n = strlen(pp) + strlen(boot) + 2;
			char *v = malloc(n);
			if (v) {
				snprintf(v, n, "%s:%s", boot, pp);
				setenv("PYTHONPATH", v, 1);
				free(v);
			}
		}
		char pyext[PATH_MAX];
		if (!getenv("TIMEGLASS_PYEXT_DIR") && find_build_pyext(pyext) == 0)
			setenv("TIMEGLASS_PYEXT_DIR", pyext, 1);
	}
	const char *old = getenv("LD_PRELOAD");
	if (old && *old) {
		if (!strstr(old, lib)) {
			size_t n = strlen(old) + strlen(lib) + 2;
			char *v = malloc(n);
			if (v) {
				snprintf(v, n, "%s:%s", old, lib);
				setenv("LD_PRELOAD", v, 1);
				free(v);
			}
		}
	} else {
		setenv("LD_PRELOAD", lib, 1);
	}
	char kb[32];
	snprintf(kb, sizeof kb, "%u", ring_mb * 1024u);
	setenv("TIMEGLASS_SOCK", sock, 1);
	setenv("TIMEGLASS_RING_KB", kb, 1);
}

/* The command could not be run: says so; its status is 127 (not found)
 * or 126, as a shell's. */
static int cannot_run(const char *cmd, int e)
{
	fprintf(stderr, "timeglass: cannot run '%.200s': %s\n", cmd, strerror(e));
	return e == ENOENT ? 127 : 126;
}

/* Starts the command with its environment (command_env) and the signal
 * mask mask. posix_spawnp() starts it without copying this process (a
 * fork's copy of the page tables is the larger part of starting a child
 * here); a file that is not an executable (ENOEXEC: a script without #!)
 * goes through fork() and execvp(), which runs it with the shell. Returns
 * its pid; 0 when it could not be run (said, and its status in *status);
 * -1 when no process could be made (errno). */
static pid_t start_command(char **argv, const sigset_t *mask, int *status)
{
	posix_spawnattr_t attr;
	pid_t pid;
	int e = posix_spawnattr_init(&attr);
	if (e == 0) {
		posix_spawnattr_setsigmask(&attr, mask);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
		e = posix_spawnp(&pid, argv[0], NULL, &attr, argv, environ);
		posix_spawnattr_destroy(&attr);
		if (e == 0)
			return pid;
		if (e == ENOENT || e == EACCES || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG) {
			*status = cannot_run(argv[0], e);
			return 0;
		}
	}
	pid = fork();
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, mask, NULL);
		execvp(argv[0], argv);
		_exit(cannot_run(argv[0], errno));
	}
	return pid;
}

static int status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 1;
}

/* The collector died: say so once, and remove the run directory it left. */
static void collector_lost(int st, const char *sock)
{
	char dir[PATH_MAX];
	tg_strlcpy(dir, sock, sizeof dir);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		unlink(sock);
		*slash = '\0';
		rmdir(dir);
	}
	if (WIFSIGNALED(st))
		tg_warn("the collector was killed by signal %d; the rest of this run is not recorded", WTERMSIG(st));
	else
		tg_warn("the collector exited early (status %d); the rest of this run is not recorded", status_code(st));
}

/* The collector died before writing the run's end: write it from here, the
 * time the command ended and its status, unless the store has an end
 * already. A store that went away is not created again. Problems are one
 * warning; the command's status is returned regardless. */
static void end_run_without_collector(const char *db, int64_t run_id, int64_t ended_unix_ns, int status)
{
	if (access(db, F_OK) < 0)
		return;
	struct tg_store *s = tg_store_open(db, TG_STORE_WRITE);
	sqlite3_stmt *st = NULL;
	int open_end = 0;
	if (s && sqlite3_prepare_v2(tg_store_db(s), "SELECT ended_unix_ns IS NULL FROM runs WHERE id = ?", -1, &st,
				    NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, run_id);
		open_end = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
	}
	sqlite3_finalize(st);
	if (!s || (open_end && tg_store_run_end(s, run_id, ended_unix_ns, status) < 0))
		tg_warn("cannot record the end of run %" PRId64 ": %s", run_id, tg_error());
	tg_store_close(s);
}

/* Writes s to the lifeline; a dead collector is not an error (no SIGPIPE). */
static void write_all(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* A descriptor that becomes readable when process pid ends (pidfd_open,
 * Linux 5.3), or -1 where there is none. */
static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0); /* close-on-exec */
#else
	(void)pid;
	return -1;
#endif
}

/* Waits for the collector (coll) to end, up to COLLECTOR_WAIT_NS. With a
 * pidfd, poll() returns the moment it ends; without one, waitpid() is
 * polled every millisecond. Returns coll (its status in *st), 0 when it
 * is still running at the limit, -1 on an error. */
static pid_t wait_collector(pid_t coll, int pidfd, int *st)
{
	int64_t deadline = tg_monotonic_ns() + COLLECTOR_WAIT_NS;
	for (;;) {
		pid_t w = waitpid(coll, st, WNOHANG);
		if (w == coll)
			return w;
		if (w < 0 && errno != EINTR)
			return -1;
		int64_t left = deadline - tg_monotonic_ns();
		if (left <= 0)
			return 0;
		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			int ms = (int)((left + 999999) / 1000000);
			if (poll(&p, 1, ms) < 0 && errno != EINTR)
				pidfd = -1; /* poll by the clock from here on */
		} else {
			struct timespec step = {0, 1000000};
			nanosleep(&step, NULL);
		}
	}
}

/* Reads the collector's first line ("ready ..." or "error ..."), the only
 * thing it ever writes on the lifeline: read in as large pieces as come. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	char *nl = NULL;
	while (n + 1 < cap && !nl) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		nl = memchr(buf + n, '\n', (size_t)r);
		n += (size_t)r;
	}
	if (nl)
		n = (size_t)(nl - buf);
	buf[n] = '\0';
	return (int)n;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = {0};
	int ci;
	parse(argc, argv, &o, &ci);
	char lib[PATH_MAX];
	find_lib(lib);
	struct tg_otlp_conf otlp;
	int streaming = tg_otlp_conf_read(o.otlp_endpoint, o.service_name, &otlp);
	if (streaming < 0)
		tg_die_usage("run", "%s", tg_error());

	int life[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, life) < 0)
		tg_die("cannot create a socket pair: %s", strerror(errno));
	fflush(NULL);
	pid_t coll = fork();
	if (coll < 0)
		tg_die("cannot start the collector: %s", strerror(errno));
	if (coll == 0) {
		close(life[0]);
		struct tg_collector_opts co = {
			.db_path = o.db,
			.keep_runs = o.keep_runs,
			.argv = argv + ci,
			.lifeline = life[1],
			.otlp = streaming ? &otlp : NULL,
		};
		_exit(tg_collector_main(&co));
	}
	close(life[1]);
	int lifeline = life[0];
	/* Opened now, while the collector is surely this process's child. */
	int pidfd = open_pidfd(coll);

	char line[PATH_MAX + 600];
	read_line(lifeline, line, sizeof line);
	int64_t run_id;
	int off = 0;
	if (sscanf(line, "ready %" SCNd64 " %n", &run_id, &off) != 1 || off == 0) {
		int st;
		while (waitpid(coll, &st, 0) < 0 && errno == EINTR)
			;
		if (!strncmp(line, "error ", 6))
			tg_die("%s", line + 6);
		tg_die("the collector did not start");
	}
	const char *sock = line + off;
	if (!o.quiet)
		fprintf(stderr, "timeglass: recording run %" PRId64 " into %s; see it with: timeglass requests (or timeglass ui)\n",
			run_id, o.db);
	if (!o.quiet && streaming)
		fprintf(stderr, "timeglass: streaming its spans over OTLP/HTTP to %s (from %s)\n", otlp.url, otlp.from);

	sigset_t old_mask;
	block_forwarded(&old_mask);
	fflush(NULL);
	command_env(lib, sock, o.ring_mb, o.no_bootstrap);
	int status = 1, coll_alive = 1, coll_died = 0;
	pid_t pid = start_command(argv + ci, &old_mask, &status);
	if (pid < 0) {
		tg_warn("cannot start '%s': %s", argv[ci], strerror(errno));
		write_all(lifeline, "exit 2\n");
		close(lifeline);
		waitpid(coll, NULL, 0);
		return TG_EXIT_USAGE;
	}
	cmd_pid = pid;
	snprintf(coll_status, sizeof coll_status, "/proc/%d/status", (int)coll);
	install_forwarders();
	sigprocmask(SIG_SETMASK, &old_mask, NULL);

	/* Wait for the command; notice the collector dying meanwhile. */
	for (; pid > 0;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: cannot happen while pid runs */
		}
		if (w == coll && (WIFEXITED(st) || WIFSIGNALED(st))) {
			coll_status[0] = '\0'; /* its pid may be anyone's now */
			coll_alive = 0;
			coll_died = 1;
			collector_lost(st, sock);
		} else if (w == pid && (WIFEXITED(st) || WIFSIGNALED(st))) {
			status = status_code(st);
			break;
		}
	}
	cmd_pid = 0;
	int64_t ended_unix_ns = tg_realtime_ns();

	char msg[32];
	snprintf(msg, sizeof msg, "exit %d\n", status);
	write_all(lifeline, msg);
	close(lifeline);
	if (coll_alive) {
		int st;
		pid_t w = wait_collector(coll, pidfd, &st);
		if (w == coll) {
			if (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0)) {
				coll_died = 1;
				collector_lost(st, sock);
			}
		} else if (w == 0) {
			tg_warn("the collector is still writing after 30 s; it finishes in the background");
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (coll_died)
		end_run_without_collector(o.db, run_id, ended_unix_ns, status);
	return status;
}
