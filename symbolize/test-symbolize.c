/*
 * test-symbolize.c - unit test of symbolize.c on this very process: a libc
 * function, a function of this executable, an address in no mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "symbolize.h"

int test_marker_function(int x);

__attribute__((noinline)) int test_marker_function(int x)
{
	return x * 3 + 1;
}

static int fails;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "FAIL: %s\n", what);
		fails++;
	}
}

int main(void)
{
	struct tg_sym_proc *p = tg_sym_proc_new(getpid());
	const char *func, *file;
	uint64_t off;

	/* Inside a library function (.dynsym at least). */
	uintptr_t a = (uintptr_t)&deflateEnd + 1;
	check(tg_sym_lookup(p, a, &func, &file, &off) == 0, "deflateEnd is mapped");
	check(func && strcmp(func, "deflateEnd") == 0, "deflateEnd is named");
	check(file && strstr(file, "libz"), "deflateEnd is in libz");

	/* A function of the test itself (.symtab). */
	a = (uintptr_t)&test_marker_function + 2;
	check(tg_sym_lookup(p, a, &func, &file, &off) == 0, "own function is mapped");
	check(func && strcmp(func, "test_marker_function") == 0, "own function is named");

	/* Nothing there. */
	check(tg_sym_lookup(p, 16, &func, &file, &off) < 0, "address 16 is in no mapping");
	check(test_marker_function(1) == 4, "marker");

	tg_sym_proc_free(p);
	tg_sym_cleanup();
	if (!fails)
		printf("ok\n");
	return fails ? 1 : 0;
}
