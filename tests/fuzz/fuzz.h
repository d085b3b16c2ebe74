/*
 * fuzz.h - what the fuzz targets of this folder share: the invariant check,
 * the FNV-1a digest of emitted records, the generators' xorshift, and the
 * interface of the standalone replay driver (replay.c).
 *
 * Each target defines FUZZ_NAME (its name in messages) before including
 * this header, and LLVMFuzzerTestOneInput(). Built with -DTG_FUZZ_REPLAY, it
 * also defines fuzz_iterations and fuzz_generate() for replay.c, which
 * provides main().
 */
#ifndef TG_FUZZ_H
#define TG_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts, which libFuzzer reports as a crash, when cond does not hold. */
#define REQUIRE(cond)                                                                          \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, FUZZ_NAME ": invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                     \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* FNV-1a over p[0..n), continuing from h. */
static inline uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* The next number of the xorshift64 sequence in *state (never 0). */
static inline uint64_t fuzz_xorshift(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

#ifdef TG_FUZZ_REPLAY
/* Defined by each target for replay.c. */

/* Generated inputs to run when the command line names no count. */
extern const long fuzz_iterations;

/* Makes the next generated input; *data stays valid until the next call. */
size_t fuzz_generate(const uint8_t **data);

/* Optional (weak): a few words about the whole replay for its last line. */
const char *fuzz_summary(void) __attribute__((weak));
#endif

#endif
