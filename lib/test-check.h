/*
 * lib/test-check.h - the check macro of lib/'s unit tests (test-*.c): a
 * failed condition prints "file:line: FAIL cond" on stderr and is counted
 * in failures; main() returns non-zero when any failed.
 */
#ifndef TG_TEST_CHECK_H
#define TG_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                  \
		}                                                                    \
	} while (0)

#endif
