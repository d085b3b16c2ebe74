/*
 * env.c - the TIMEGLASS_* settings the library reads from its environment.
 *
 * `timeglass run` checks them as it checks its options and passes them on
 * in one spelling, but an app may start without it, or change its own
 * environment before it starts a child: a value the matching option would
 * refuse must not make the library misbehave (a negative rate read as a
 * huge one, "no" read as yes). Such a value is clamped into range, or
 * ignored for the default, and said once per variable on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tg_preload.h"

/* Says it once per variable and process image (a fork child inherits what
 * its parent said). Keeps errno; writes with the raw system call, past our
 * own hooks. */
static void say_once(const char *name, const char *value, const char *what, const char *using)
{
	static char said[16][32];
	static unsigned n_said;
	static int busy;
	if (__atomic_exchange_n(&busy, 1, __ATOMIC_ACQUIRE))
		return; /* another thread is saying something: rare, and only a warning */
	for (unsigned i = 0; i < n_said; i++)
		if (strcmp(said[i], name) == 0) {
			__atomic_store_n(&busy, 0, __ATOMIC_RELEASE);
			return;
		}
	if (n_said < sizeof said / sizeof said[0])
		snprintf(said[n_said++], sizeof said[0], "%s", name);
	__atomic_store_n(&busy, 0, __ATOMIC_RELEASE);
	char v[40], line[256];
	size_t k = 0;
	for (const char *p = value; *p && k + 1 < sizeof v; p++)
		v[k++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	v[k] = '\0';
	int len = snprintf(line, sizeof line, "timeglass: %s='%s'%s is not %s; using %s\n", name, v,
			   value[k] ? "..." : "", what, using);
	if (len > (int)sizeof line - 1)
		len = (int)sizeof line - 1;
	int saved = errno;
	syscall(SYS_write, 2, line, (size_t)len);
	errno = saved;
}

/* A plain decimal integer (digits only), or -1. */
static int parse_decimal(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (~0ull - 9) / 10)
			v = ~0ull / 2; /* saturates: far above any range here */
		else
			v = v * 10 + (unsigned)(*s - '0');
	}
	*out = v;
	return 0;
}

unsigned long tg_getenv_uint(const char *name, unsigned long def, unsigned long min, unsigned long max)
{
	const char *s = getenv(name);
	unsigned long long v;
	char what[64], using[32];
	if (!s || !*s)
		return def;
	snprintf(what, sizeof what, "an integer %lu..%lu", min, max);
	if (parse_decimal(s, &v) < 0) {
		snprintf(using, sizeof using, "%lu", def);
		say_once(name, s, what, using);
		return def;
	}
	if (v < min || v > max) {
		unsigned long c = v < min ? min : max;
		snprintf(using, sizeof using, "%lu", c);
		say_once(name, s, what, using);
		return c;
	}
	return (unsigned long)v;
}

int tg_getenv_flag(const char *name, int def)
{
	static const char *const off[] = { "0", "no", "false", "off" }, *const on[] = { "1", "yes", "true", "on" };
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, off[i]) == 0)
			return 0;
		if (strcasecmp(s, on[i]) == 0)
			return 1;
	}
	say_once(name, s, "1 or 0", def ? "1" : "0");
	return def;
}

double tg_getenv_percent(const char *name, double def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	/* digits with at most one decimal point, read by hand: the app's
	 * locale may want a decimal comma */
	double v = 0, scale = 0;
	int digits = 0, bad = 0;
	for (const char *p = s; *p && !bad; p++) {
		if (*p >= '0' && *p <= '9') {
			digits++;
			if (scale == 0) {
				v = v * 10 + (*p - '0');
			} else {
				v += (*p - '0') * scale;
				scale /= 10;
			}
		} else if (*p == '.' && scale == 0) {
			scale = 0.1;
		} else {
			bad = 1;
		}
	}
	if (bad || !digits) {
		char using[32];
		snprintf(using, sizeof using, "%g", def);
		say_once(name, s, "a percentage 0..100", using);
		return def;
	}
	if (v > 100) {
		say_once(name, s, "a percentage 0..100", "100");
		return 100;
	}
	return v;
}
