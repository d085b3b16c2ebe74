/*
 * hdr.c - log-linear latency histogram (see hdr.h).
 *
 * Bucket layout: values below LG_HDR_SUB have a bucket each; above, the
 * power of two [2^(10+s), 2^(11+s)) is cut into LG_HDR_SUB/2 buckets of
 * width 2^s.
 */
#include "hdr.h"

#include <stdlib.h>
#include <string.h>

struct lg_hdr *lg_hdr_new(void)
{
	struct lg_hdr *h = calloc(1, sizeof *h);
	if (h)
		h->min = UINT64_MAX;
	return h;
}

void lg_hdr_reset(struct lg_hdr *h)
{
	memset(h, 0, sizeof *h);
	h->min = UINT64_MAX;
}

size_t lg_hdr_index(uint64_t v)
{
	if (v < LG_HDR_SUB)
		return (size_t)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 10;   /* v >> shift is in [1024, 2048) */
	if (shift > LG_HDR_MAX_SHIFT)
		return LG_HDR_BUCKETS - 1;
	return LG_HDR_SUB + (size_t)(shift - 1) * (LG_HDR_SUB / 2) + (size_t)((v >> shift) - LG_HDR_SUB / 2);
}

uint64_t lg_hdr_lowest(size_t idx)
{
	if (idx < LG_HDR_SUB)
		return idx;
	size_t k = idx - LG_HDR_SUB;
	unsigned shift = (unsigned)(k / (LG_HDR_SUB / 2)) + 1;
	return ((uint64_t)(k % (LG_HDR_SUB / 2)) + LG_HDR_SUB / 2) << shift;
}

uint64_t lg_hdr_highest(size_t idx)
{
	if (idx < LG_HDR_SUB)
		return idx;
	unsigned shift = (unsigned)((idx - LG_HDR_SUB) / (LG_HDR_SUB / 2)) + 1;
	return lg_hdr_lowest(idx) + ((uint64_t)1 << shift) - 1;
}

void lg_hdr_record_n(struct lg_hdr *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	h->counts[lg_hdr_index(v)] += n;
	h->count += n;
	h->sum += (double)v * (double)n;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void lg_hdr_record(struct lg_hdr *h, uint64_t v)
{
	lg_hdr_record_n(h, v, 1);
}

void lg_hdr_merge(struct lg_hdr *dst, const struct lg_hdr *src)
{
	if (!src->count)
		return;
	for (size_t i = 0; i < LG_HDR_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t lg_hdr_percentile(const struct lg_hdr *h, double p)
{
	if (!h->count)
		return 0;
	if (p > 100)
		p = 100;
	/* nearest rank, at least 1 */
	uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	uint64_t seen = 0;
	for (size_t i = 0; i < LG_HDR_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = i == LG_HDR_BUCKETS - 1 ? h->max : lg_hdr_highest(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

double lg_hdr_mean(const struct lg_hdr *h)
{
	return h->count ? h->sum / (double)h->count : 0.0;
}
