/*
 * hdr.h - latency histogram in the manner of HdrHistogram: log-linear
 * buckets with 3 significant decimal digits (relative error under 0.1 %)
 * from 1 ns to 2^40 ns (about 18 minutes), constant time to record, fixed
 * memory (about 270 KiB). Used by the load generator of `timeglass bench`,
 * one histogram per operation, recorded from one thread.
 */
#ifndef LG_HDR_H
#define LG_HDR_H

#include <stddef.h>
#include <stdint.h>

#define LG_HDR_SUB 2048                 /* linear sub-buckets of each power of two */
#define LG_HDR_MAX_SHIFT 30             /* values up to 2^(11+30) ns */
#define LG_HDR_BUCKETS (LG_HDR_SUB + LG_HDR_MAX_SHIFT * (LG_HDR_SUB / 2))

struct lg_hdr {
	uint64_t count;             /* values recorded */
	uint64_t min, max;          /* exact, ns */
	double sum;                 /* ns, for the mean */
	uint64_t counts[LG_HDR_BUCKETS];
};

/* A zeroed histogram; NULL when out of memory. Free with free(). */
struct lg_hdr *lg_hdr_new(void);
void lg_hdr_reset(struct lg_hdr *h);

/* Records v ns (values above the range land in the last bucket). */
void lg_hdr_record(struct lg_hdr *h, uint64_t v);
/* Records v n times. */
void lg_hdr_record_n(struct lg_hdr *h, uint64_t v, uint64_t n);

/* Adds the counts of src to dst. */
void lg_hdr_merge(struct lg_hdr *dst, const struct lg_hdr *src);

/* The value at percentile p (0 < p <= 100): the highest value equivalent to
 * the bucket holding that rank, never above the exact max. 0 when empty. */
uint64_t lg_hdr_percentile(const struct lg_hdr *h, double p);
double lg_hdr_mean(const struct lg_hdr *h);

/* Bucket index of v and the lowest/highest value of a bucket (for tests and
 * for writing the histogram out). */
size_t lg_hdr_index(uint64_t v);
uint64_t lg_hdr_lowest(size_t idx);
uint64_t lg_hdr_highest(size_t idx);

#endif
