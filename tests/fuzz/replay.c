/*
 * replay.c - the standalone driver of a fuzz target built with
 * -DTG_FUZZ_REPLAY, where libFuzzer is not used.
 *
 *   NAME-replay [FILE|DIR|N]...
 *
 * Runs each file named, and each file of each directory named (a seed
 * corpus), through LLVMFuzzerTestOneInput(), then N inputs of the target's
 * deterministic generator (the numeric argument, default fuzz_iterations).
 * A broken invariant aborts; a path that cannot be read makes the exit
 * status 1.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUZZ_NAME "replay"
#include "fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0, k;
	do {
		if (n == cap) {
			cap = cap ? 2 * cap : 4096;
			uint8_t *p = realloc(buf, cap);
			if (!p)
				abort();
			buf = p;
		}
		k = fread(buf + n, 1, cap - n, f);
		n += k;
	} while (k > 0);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

static int run_path(const char *name, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	DIR *d = opendir(path);
	struct dirent *e;
	int bad = 0, files = 0;
	if (!d) {
		perror(path);
		return 1;
	}
	while ((e = readdir(d))) {
		char full[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(full, sizeof full, "%s/%s", path, e->d_name);
		bad |= run_file(full);
		files++;
	}
	closedir(d);
	printf("%s: %d files from %s\n", name, files, path);
	return bad;
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	long iterations = fuzz_iterations;
	int bad = 0;
	for (int a = 1; a < argc; a++) {
		char *end;
		long v = strtol(argv[a], &end, 10);
		if (*argv[a] && !*end)
			iterations = v;
		else
			bad |= run_path(name, argv[a]);
	}
	for (long it = 0; it < iterations; it++) {
		const uint8_t *data;
		size_t n = fuzz_generate(&data);
		LLVMFuzzerTestOneInput(data, n);
	}
	printf("%s: %ld generated inputs, %s%s%s\n", name, iterations, fuzz_summary ? fuzz_summary() : "",
	       fuzz_summary ? ", " : "", bad ? "FAILED" : "no invariant broken");
	return bad;
}
