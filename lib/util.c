/*
 * lib/util.c - helpers of util.h: error lines, number parsing, paths, clocks.
 */
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static __thread char err_line[TG_ERR_MAX];

int tg_fail(const char *fmt, ...)
{
	char tmp[TG_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap); /* tmp: fmt may print err_line itself */
	va_end(ap);
	memcpy(err_line, tmp, sizeof tmp);
	return -1;
}

const char *tg_error(void)
{
	return err_line;
}

__attribute__((format(printf, 2, 0))) static void vprint_line(const char *prefix, const char *fmt, va_list ap,
								const char *suffix)
{
	char msg[TG_ERR_MAX + 128];
	vsnprintf(msg, sizeof msg, fmt, ap);
	/* One line, whatever the message carries. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "timeglass: %s%s%s\n", prefix, msg, suffix);
	fflush(stderr);
}

void tg_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint_line("", fmt, ap, "");
	va_end(ap);
	exit(TG_EXIT_USAGE);
}

void tg_die_usage(const char *cmd, const char *fmt, ...)
{
	char suffix[64];
	snprintf(suffix, sizeof suffix, "; see: timeglass %s%s--help", cmd ? cmd : "", cmd ? " " : "");
	va_list ap;
	va_start(ap, fmt);
	vprint_line("", fmt, ap, suffix);
	va_end(ap);
	exit(TG_EXIT_USAGE);
}

void tg_die_getopt(const char *cmd, int ret, char **argv)
{
	char opt[80];
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	if (optopt > 0 && optopt < 128 && (arg[0] != '-' || arg[1] != '-'))
		snprintf(opt, sizeof opt, "-%c", optopt);
	else
		snprintf(opt, sizeof opt, "%.64s", arg);
	char *eq = strchr(opt, '=');
	if (eq)
		*eq = '\0';
	if (ret == ':')
		tg_die_usage(cmd, "option '%s' needs a value", opt);
	tg_die_usage(cmd, "unknown option '%s'", opt);
}

void tg_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint_line("warning: ", fmt, ap, "");
	va_end(ap);
}

int tg_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s)
		return tg_fail("empty number");
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return tg_fail("not a number");
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return tg_fail("too large");
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return tg_fail("want %llu..%llu", (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

uint64_t tg_number_or_die(const char *what, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;
	if (tg_parse_u64(s, min, max, &v) < 0)
		tg_die("bad number for %s: '%.64s' (%s %llu..%llu)", what, s ? s : "", "want an integer",
		       (unsigned long long)min, (unsigned long long)max);
	return v;
}

int tg_env_flag(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	return strcmp(v, "0") && strcasecmp(v, "no") && strcasecmp(v, "false") && strcasecmp(v, "off");
}

const char *tg_default_db(const char *opt)
{
	if (opt && *opt)
		return opt;
	const char *env = getenv("TIMEGLASS_DB");
	if (env && *env)
		return env;
	return ".timeglass/timeglass.db";
}

int tg_mkdirs_for(const char *path)
{
	char buf[4096];
	if (strlen(path) >= sizeof buf)
		return tg_fail("path too long: %.80s...", path);
	tg_strlcpy(buf, path, sizeof buf);
	char *slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0; /* file in the current directory or in / */
	*slash = '\0';
	struct stat st;
	if (stat(buf, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return tg_fail("cannot create store in %s: %s", buf, strerror(ENOTDIR));
		return 0;
	}
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return tg_fail("cannot create directory %s: %s", buf, strerror(errno));
		if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
			return tg_fail("cannot create directory %s: %s", buf, strerror(ENOTDIR));
		*p = c;
		if (!c)
			break;
	}
	return 0;
}

char *tg_strlcpy(char *dst, const char *src, size_t cap)
{
	if (!cap)
		return dst;
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
	return dst;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tg_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t tg_monotonic_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

size_t tg_fmt_u64(char *out, uint64_t v)
{
	char digits[20];
	size_t n = 0;
	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = digits[n - 1 - i];
	return n;
}

/* Three significant digits without exponent notation: 1.23, 12.3, 123. */
static void fmt3(char *buf, size_t cap, double v, const char *unit)
{
	int decimals = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
	snprintf(buf, cap, "%.*f %s", decimals, v, unit);
}

char *tg_fmt_duration(char *buf, size_t cap, int64_t ns)
{
	double v = (double)ns;
	if (ns < 0)
		snprintf(buf, cap, "-");
	else if (ns < 1000)
		snprintf(buf, cap, "%lld ns", (long long)ns);
	else if (ns < 999500)
		fmt3(buf, cap, v / 1e3, "us");
	else if (ns < 999500000)
		fmt3(buf, cap, v / 1e6, "ms");
	else
		fmt3(buf, cap, v / 1e9, "s");
	return buf;
}

ssize_t tg_read_small_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	buf[n] = '\0';
	return (ssize_t)n;
}
