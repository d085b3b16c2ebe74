/* test-hdr.c - the latency histogram: bucket bounds, relative error,
 * percentiles against exact ranks, merge. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "hdr.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

int main(void)
{
	/* every value lies within its bucket, and the bucket is narrow */
	for (uint64_t v = 1; v < ((uint64_t)1 << 40); v = v * 3 / 2 + 1) {
		size_t i = lg_hdr_index(v);
		assert(i < LG_HDR_BUCKETS);
		assert(lg_hdr_lowest(i) <= v && v <= lg_hdr_highest(i));
		assert((double)(lg_hdr_highest(i) - lg_hdr_lowest(i)) <= (double)v * 0.001 + 1);
	}
	/* adjacent buckets touch */
	for (size_t i = 1; i < LG_HDR_BUCKETS; i++)
		assert(lg_hdr_lowest(i) == lg_hdr_highest(i - 1) + 1);

	struct lg_hdr *h = lg_hdr_new(), *a = lg_hdr_new(), *b = lg_hdr_new();
	assert(h && a && b);
	assert(lg_hdr_percentile(h, 50) == 0);
	enum { N = 100000 };
	uint64_t *vals = malloc(N * sizeof *vals);
	srand(7);
	for (int i = 0; i < N; i++) {
		/* log-uniform between 20 us and 2 s */
		double e = 4.3 + 4.0 * rand() / (double)RAND_MAX;
		vals[i] = (uint64_t)__builtin_exp10(e);
		lg_hdr_record(h, vals[i]);
		lg_hdr_record(i % 2 ? a : b, vals[i]);
	}
	qsort(vals, N, sizeof *vals, cmp_u64);
	const double ps[] = {50, 90, 99, 99.9, 100};
	for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
		uint64_t exact = vals[(size_t)(ps[k] / 100.0 * N + 0.5) - 1];
		uint64_t got = lg_hdr_percentile(h, ps[k]);
		double rel = ((double)got - (double)exact) / (double)exact;
		printf("p%g exact %llu got %llu (%+.4f%%)\n", ps[k], (unsigned long long)exact, (unsigned long long)got,
		       100 * rel);
		assert(rel >= 0 && rel <= 0.001);
	}
	assert(lg_hdr_percentile(h, 100) == vals[N - 1]);
	assert(h->min == vals[0] && h->max == vals[N - 1]);
	lg_hdr_merge(a, b);
	assert(a->count == h->count && a->max == h->max && a->min == h->min);
	for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
		assert(lg_hdr_percentile(a, ps[k]) == lg_hdr_percentile(h, ps[k]));
	/* out of range lands in the last bucket, max stays exact */
	lg_hdr_record(h, UINT64_MAX / 2);
	assert(h->max == UINT64_MAX / 2 && lg_hdr_percentile(h, 100) == UINT64_MAX / 2);
	free(vals);
	free(h);
	free(a);
	free(b);
	puts("ok");
	return 0;
}
