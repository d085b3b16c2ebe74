/*
 * lib/test-pprof.c - unit test of lib/pprof.c: the protobuf encoder's bytes
 * against the examples of the protobuf encoding guide, and a small profile
 * read back field by field, then gzipped and inflated again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "lib/pprof.h"
#include "lib/test-check.h"

/* Whether b holds exactly the n bytes of want; empties b. */
static int bytes_are(struct tg_pb *b, const char *want, size_t n)
{
	int ok = !b->failed && b->len == n && memcmp(b->buf, want, n) == 0;
	if (!ok) {
		fprintf(stderr, "  got %zu bytes:", b->len);
		for (size_t i = 0; i < b->len; i++)
			fprintf(stderr, " %02x", b->buf[i]);
		fputc('\n', stderr);
	}
	tg_pb_free(b);
	return ok;
}

#define BYTES_ARE(b, lit) bytes_are(b, lit, sizeof lit - 1)

static void test_encoder(void)
{
	struct tg_pb b = {0};
	tg_pb_varint(&b, 0);
	CHECK(BYTES_ARE(&b, "\x00"));
	tg_pb_varint(&b, 127);
	CHECK(BYTES_ARE(&b, "\x7f"));
	tg_pb_varint(&b, 128);
	CHECK(BYTES_ARE(&b, "\x80\x01"));
	tg_pb_varint(&b, 300);
	CHECK(BYTES_ARE(&b, "\xac\x02"));
	tg_pb_varint(&b, UINT64_MAX);
	CHECK(BYTES_ARE(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
	/* an int64 of -1 is ten bytes as well */
	tg_pb_uint(&b, 1, (uint64_t)(int64_t)-1);
	CHECK(BYTES_ARE(&b, "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));

	tg_pb_uint(&b, 1, 150); /* "Test1 a = 150" */
	CHECK(BYTES_ARE(&b, "\x08\x96\x01"));
	tg_pb_uint(&b, 1, 0); /* proto3: zero is left out */
	CHECK(b.len == 0);
	tg_pb_uint(&b, 16, 1); /* field numbers past 15 take two bytes of tag */
	CHECK(BYTES_ARE(&b, "\x80\x01\x01"));

	tg_pb_str(&b, 2, "testing");
	CHECK(BYTES_ARE(&b, "\x12\x07testing"));
	tg_pb_str(&b, 6, ""); /* an empty string keeps its place */
	CHECK(BYTES_ARE(&b, "\x32\x00"));

	uint64_t v[] = {3, 270, 86942};
	tg_pb_packed(&b, 4, v, 3);
	CHECK(BYTES_ARE(&b, "\x22\x06\x03\x8e\x02\x9e\xa7\x05"));
	tg_pb_packed(&b, 4, v, 0);
	CHECK(b.len == 0);

	struct tg_pb m = {0};
	tg_pb_uint(&m, 1, 150);
	tg_pb_msg(&b, 3, &m); /* "Test3 c = {a: 150}" */
	CHECK(BYTES_ARE(&b, "\x1a\x03\x08\x96\x01"));
	tg_pb_free(&m);

	/* a length of 200 bytes takes a two-byte varint */
	char big[200];
	memset(big, 'x', sizeof big);
	tg_pb_bytes(&b, 1, big, sizeof big);
	CHECK(b.len == 3 + sizeof big && b.buf[0] == 0x0a && b.buf[1] == 0xc8 && b.buf[2] == 0x01);
	tg_pb_free(&b);
}

/* ---- a small reader of the encoded profile ---- */

struct field {
	unsigned num, wire;
	uint64_t v;         /* varint */
	const uint8_t *p;   /* length-delimited */
	size_t n;
};

static uint64_t get_varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t c = *(*p)++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	failures++;
	return 0;
}

/* The next field of [*p, end); 0 at the end. */
static int next_field(const uint8_t **p, const uint8_t *end, struct field *f)
{
	if (*p >= end)
		return 0;
	uint64_t key = get_varint(p, end);
	f->num = (unsigned)(key >> 3);
	f->wire = (unsigned)(key & 7);
	if (f->wire == 0) {
		f->v = get_varint(p, end);
	} else if (f->wire == 2) {
		f->n = get_varint(p, end);
		f->p = *p;
		if (f->n > (size_t)(end - *p)) {
			failures++;
			return 0;
		}
		*p += f->n;
	} else {
		failures++;
		return 0;
	}
	return 1;
}

/* Value of varint field num in the message [p, p + n), 0 if absent. */
static uint64_t varint_of(const uint8_t *p, size_t n, unsigned num)
{
	struct field f;
	uint64_t v = 0;
	const uint8_t *end = p + n;
	while (next_field(&p, end, &f))
		if (f.num == num && f.wire == 0)
			v = f.v;
	return v;
}

static void test_profile(void)
{
	struct tg_pprof *p = tg_pprof_new();
	CHECK(p != NULL);
	if (!p)
		return;
	CHECK(tg_pprof_str(p, "") == 0);
	tg_pprof_sample_type(p, "samples", "count");
	tg_pprof_sample_type(p, "wall", "nanoseconds");
	tg_pprof_period(p, "wall", "nanoseconds", 1000000);
	tg_pprof_time(p, 1700000000000000000, 2000000000);
	tg_pprof_default_type(p, "samples");
	tg_pprof_comment(p, "a comment");
	uint64_t py = tg_pprof_mapping(p, "[python]", 1);
	uint64_t libc = tg_pprof_mapping(p, "/lib/libc.so.6", 0);
	CHECK(py == 1 && libc == 2 && tg_pprof_mapping(p, "[python]", 1) == 1);
	uint64_t main_fn = tg_pprof_function(p, "main", "app.py", 3);
	uint64_t work_fn = tg_pprof_function(p, "work", "app.py", 10);
	CHECK(main_fn == 1 && work_fn == 2 && tg_pprof_function(p, "main", "app.py", 3) == 1);
	CHECK(tg_pprof_function(p, "main", "other.py", 1) == 3); /* same name, other file */
	uint64_t l1 = tg_pprof_location(p, py, main_fn, 5);
	uint64_t l2 = tg_pprof_location(p, py, work_fn, 12);
	uint64_t l3 = tg_pprof_location(p, libc, tg_pprof_function(p, "read", "/lib/libc.so.6", 0), 0);
	CHECK(l1 == 1 && l2 == 2 && l3 == 3);
	uint64_t stack[] = {l3, l2, l1};
	int64_t values[] = {7, 7000000};
	struct tg_pprof_label labels[] = {{"route", "GET /items/{id}"}, {"request_id", NULL}, {"state", "running"}};
	tg_pprof_sample(p, stack, 3, values, labels, 3);
	int64_t values2[] = {2, 2000000};
	tg_pprof_sample(p, stack + 1, 2, values2, NULL, 0);

	struct tg_pb raw = {0};
	CHECK(tg_pprof_encode(p, &raw) == 0);

	/* Read it back. */
	const char *strs[32];
	size_t nstrs = 0, ntypes = 0, nsamples = 0, nmaps = 0, nlocs = 0, nfuncs = 0;
	uint64_t period = 0, time_nanos = 0, duration = 0, default_type = 0, ncomments = 0;
	const uint8_t *q = raw.buf, *end = raw.buf + raw.len;
	struct field f;
	struct {
		const uint8_t *p;
		size_t n;
	} samples[2] = {{0}};
	while (next_field(&q, end, &f)) {
		switch (f.num) {
		case 1: ntypes++; break;
		case 2:
			if (nsamples < 2)
				samples[nsamples] = (typeof(samples[0])){f.p, f.n};
			nsamples++;
			break;
		case 3: nmaps++; break;
		case 4: nlocs++; break;
		case 5: nfuncs++; break;
		case 6:
			if (nstrs < 32)
				strs[nstrs++] = strndup((const char *)f.p, f.n);
			break;
		case 9: time_nanos = f.v; break;
		case 10: duration = f.v; break;
		case 11: CHECK(varint_of(f.p, f.n, 1) != 0); break;
		case 12: period = f.v; break;
		case 13: ncomments = f.n; break; /* one varint index of one byte */
		case 14: default_type = f.v; break;
		default: CHECK(!"unexpected field");
		}
	}
	CHECK(ntypes == 2 && nsamples == 2 && nmaps == 2 && nlocs == 3 && nfuncs == 4);
	CHECK(nstrs > 0 && strcmp(strs[0], "") == 0);
	CHECK(period == 1000000 && time_nanos == 1700000000000000000ull && duration == 2000000000);
	CHECK(ncomments == 1);
	CHECK(default_type < nstrs && strcmp(strs[default_type], "samples") == 0);
	/* the first sample: locations 3, 2, 1 packed, values 7 and 7e6, two labels */
	if (nsamples == 2) {
		const uint8_t *s = samples[0].p, *se = s + samples[0].n;
		size_t nlabels = 0;
		while (next_field(&s, se, &f)) {
			if (f.num == 1)
				CHECK(f.wire == 2 && f.n == 3 && memcmp(f.p, "\x03\x02\x01", 3) == 0);
			else if (f.num == 2)
				CHECK(f.wire == 2 && f.n == 5 && memcmp(f.p, "\x07\xc0\x9f\xab\x03", 5) == 0);
			else if (f.num == 3) {
				uint64_t k = varint_of(f.p, f.n, 1), v = varint_of(f.p, f.n, 2);
				CHECK(k < nstrs && v < nstrs);
				if (k < nstrs && v < nstrs && nlabels++ == 0)
					CHECK(!strcmp(strs[k], "route") && !strcmp(strs[v], "GET /items/{id}"));
				else if (k < nstrs && v < nstrs)
					CHECK(!strcmp(strs[k], "state") && !strcmp(strs[v], "running"));
			}
		}
		CHECK(nlabels == 2); /* the NULL request_id is left out */
	}
	for (size_t i = 0; i < nstrs; i++)
		free((char *)strs[i]);

	/* Gzipped: a gzip stream that inflates to the same bytes. */
	FILE *tmp = tmpfile();
	CHECK(tmp && tg_pprof_write(p, tmp) == 0);
	if (tmp) {
		long n = ftell(tmp);
		rewind(tmp);
		unsigned char *gz = malloc((size_t)n), *back = malloc(raw.len + 16);
		CHECK(gz && back && fread(gz, 1, (size_t)n, tmp) == (size_t)n);
		CHECK(n > 18 && gz[0] == 0x1f && gz[1] == 0x8b);
		z_stream z = {0};
		CHECK(inflateInit2(&z, 15 + 16) == Z_OK);
		z.next_in = gz;
		z.avail_in = (uInt)n;
		z.next_out = back;
		z.avail_out = (uInt)(raw.len + 16);
		CHECK(inflate(&z, Z_FINISH) == Z_STREAM_END);
		CHECK(z.total_out == raw.len && memcmp(back, raw.buf, raw.len) == 0);
		inflateEnd(&z);
		free(gz);
		free(back);
		fclose(tmp);
	}
	tg_pb_free(&raw);
	tg_pprof_free(p);
}

/* Many strings: interning survives the table's growth. */
static void test_strings(void)
{
	struct tg_pprof *p = tg_pprof_new();
	CHECK(p != NULL);
	if (!p)
		return;
	char s[32];
	for (int i = 1; i <= 5000; i++) {
		snprintf(s, sizeof s, "name%d", i);
		CHECK(tg_pprof_str(p, s) == i);
	}
	for (int i = 5000; i >= 1; i -= 7) {
		snprintf(s, sizeof s, "name%d", i);
		CHECK(tg_pprof_str(p, s) == i);
	}
	CHECK(tg_pprof_str(p, "") == 0);
	tg_pprof_free(p);
}

int main(void)
{
	test_encoder();
	test_profile();
	test_strings();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
