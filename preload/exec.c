/*
 * exec.c - keeps a traced process's children traced across exec.
 *
 * A program that execs with an environment of its own making (Python's
 * subprocess with env=..., os.execve, posix_spawn with envp) would drop
 * LD_PRELOAD and TIMEGLASS_SOCK and run untraced. These wrappers pass the
 * caller's environment through with our variables added when missing (the
 * socket, the ring size, the secret query parameters), and our
 * library appended to an LD_PRELOAD that lacks it (never replacing it).
 *
 * They may run in a vfork child, so they allocate only on the stack and call
 * nothing but the real exec function.
 */
#include <dlfcn.h>
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))
#define ENV_MAX 4096  /* entries we pass through; beyond that, unchanged */
#define LINE_MAX_ 4096 /* longest LD_PRELOAD= line we rewrite */

static char lib_path[1024];       /* this library's file, from dladdr */
static char sock_line[160];       /* "TIMEGLASS_SOCK=..." */
static char ring_line[64];        /* "TIMEGLASS_RING_KB=..." or empty */
static char redact_line[4224];    /* "TIMEGLASS_REDACT_PARAMS=..." or empty */

static int (*real_execve)(const char *, char *const[], char *const[]);
static int (*real_execvpe)(const char *, char *const[], char *const[]);
static int (*real_fexecve)(int, char *const[], char *const[]);
typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
			char *const[], char *const[]);
static spawn_fn real_posix_spawn, real_posix_spawnp;

/* Called once from the constructor; sock is TIMEGLASS_SOCK or "". */
void tg_exec_init(const char *sock);
void tg_exec_init(const char *sock)
{
	Dl_info info;
	if (dladdr((void *)&tg_exec_init, &info) && info.dli_fname &&
	    strlen(info.dli_fname) < sizeof lib_path)
		strcpy(lib_path, info.dli_fname);
	if (sock[0] && strlen(sock) + 16 < sizeof sock_line) {
		strcpy(sock_line, "TIMEGLASS_SOCK=");
		strcat(sock_line, sock);
	}
	const char *ring = getenv("TIMEGLASS_RING_KB");
	if (ring && strlen(ring) + 19 < sizeof ring_line) {
		strcpy(ring_line, "TIMEGLASS_RING_KB=");
		strcat(ring_line, ring);
	}
	/* Privacy settings follow the process, like the socket. */
	const char *redact = getenv("TIMEGLASS_REDACT_PARAMS");
	if (redact && *redact && strlen(redact) + 25 < sizeof redact_line) {
		strcpy(redact_line, "TIMEGLASS_REDACT_PARAMS=");
		strcat(redact_line, redact);
	}
	real_execve = dlsym(RTLD_NEXT, "execve");
	real_execvpe = dlsym(RTLD_NEXT, "execvpe");
	real_fexecve = dlsym(RTLD_NEXT, "fexecve");
	real_posix_spawn = dlsym(RTLD_NEXT, "posix_spawn");
	real_posix_spawnp = dlsym(RTLD_NEXT, "posix_spawnp");
}

static int has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* Does the colon/space separated LD_PRELOAD value already load us? */
static int preload_has_lib(const char *v)
{
	size_t n = strlen(lib_path);
	for (const char *p = v; (p = strstr(p, lib_path)); p += n) {
		int starts = p == v || p[-1] == ':' || p[-1] == ' ';
		int ends = p[n] == 0 || p[n] == ':' || p[n] == ' ';
		if (starts && ends)
			return 1;
	}
	return 0;
}

/*
 * Fills out[] with envp plus our variables. `line` is caller stack space for
 * a rewritten LD_PRELOAD entry. Returns out, or envp itself when nothing needs
 * to change (or it cannot be changed safely).
 */
static char *const *merge_env(char *const envp[], char **out, size_t cap, char *line)
{
	if (!tg_proc.enabled || !lib_path[0] || !envp)
		return envp;
	size_t n = 0;
	int have_sock = 0, have_ring = !ring_line[0], have_redact = !redact_line[0], have_preload = 0;
	for (; envp[n]; n++) {
		if (n + 5 >= cap)
			return envp;
		const char *e = envp[n];
		out[n] = (char *)e;
		if (has_prefix(e, "TIMEGLASS_SOCK=")) {
			have_sock = 1;
		} else if (has_prefix(e, "TIMEGLASS_RING_KB=")) {
			have_ring = 1;
		} else if (has_prefix(e, "TIMEGLASS_REDACT_PARAMS=")) {
			have_redact = 1;
		} else if (has_prefix(e, "LD_PRELOAD=")) {
			have_preload = 1;
			if (!preload_has_lib(e + 11)) {
				size_t len = strlen(e);
				if (len + 1 + strlen(lib_path) + 1 > LINE_MAX_)
					return envp;
				memcpy(line, e, len);
				line[len] = ':';
				strcpy(line + len + 1, lib_path);
				out[n] = line;
			}
		}
	}
	if (!have_preload) {
		strcpy(line, "LD_PRELOAD=");
		strcat(line, lib_path);
		out[n++] = line;
	}
	if (!have_sock && sock_line[0])
		out[n++] = sock_line;
	if (!have_ring)
		out[n++] = ring_line;
	if (!have_redact)
		out[n++] = redact_line;
	out[n] = NULL;
	return out;
}

#define WITH_ENV(envp, merged)                                                               \
	char *env_buf_[ENV_MAX];                                                             \
	char line_buf_[LINE_MAX_];                                                           \
	char *const *merged = merge_env(envp, env_buf_, ENV_MAX, line_buf_)

TG_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	if (!real_execve)
		real_execve = dlsym(RTLD_NEXT, "execve");
	WITH_ENV(envp, env);
	return real_execve(path, argv, env);
}

TG_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	if (!real_execvpe)
		real_execvpe = dlsym(RTLD_NEXT, "execvpe");
	WITH_ENV(envp, env);
	return real_execvpe(file, argv, env);
}

TG_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	if (!real_fexecve)
		real_fexecve = dlsym(RTLD_NEXT, "fexecve");
	WITH_ENV(envp, env);
	return real_fexecve(fd, argv, env);
}

/* posix_spawn() or posix_spawnp(): the real function *real (looked up as
 * name on first use) with envp merged. */
static int spawn(spawn_fn *real, const char *name, pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		 const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	if (!*real)
		*real = dlsym(RTLD_NEXT, name);
	WITH_ENV(envp, env);
	return (*real)(pid, path, fa, attr, argv, env);
}

TG_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn(&real_posix_spawn, "posix_spawn", pid, path, fa, attr, argv, envp);
}

TG_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn(&real_posix_spawnp, "posix_spawnp", pid, file, fa, attr, argv, envp);
}
