/*
 * lib/pprof.c - stack samples as a gzipped pprof profile (profile.proto):
 * a small protobuf encoder, a profile builder with interned strings,
 * functions and mappings, and the reader that fills one from the store for
 * `timeglass flame --format pprof`. Profiles hold thousands of stacks at
 * most, so everything is built in memory and written at the end.
 */
#include "lib/pprof.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/grow.h"
#include "lib/util.h"

/* ---- protobuf encoder ---------------------------------------------------- */

enum { WIRE_VARINT = 0, WIRE_LEN = 2 };

void tg_pb_free(struct tg_pb *b)
{
	free(b->buf);
	*b = (struct tg_pb){0};
}

/* Room for n more bytes; 0, or -1 (b->failed set). */
static int reserve(struct tg_pb *b, size_t n)
{
	if (b->failed)
		return -1;
	if (TG_RESERVE(b->buf, b->len + n, b->cap, 256) < 0) {
		b->failed = 1;
		return -1;
	}
	return 0;
}

void tg_pb_varint(struct tg_pb *b, uint64_t v)
{
	if (reserve(b, 10) < 0)
		return;
	while (v >= 0x80) {
		b->buf[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->buf[b->len++] = (uint8_t)v;
}

static void tag(struct tg_pb *b, unsigned field, unsigned wire)
{
	tg_pb_varint(b, (uint64_t)field << 3 | wire);
}

void tg_pb_uint(struct tg_pb *b, unsigned field, uint64_t v)
{
	if (!v)
		return;
	tag(b, field, WIRE_VARINT);
	tg_pb_varint(b, v);
}

void tg_pb_bytes(struct tg_pb *b, unsigned field, const void *p, size_t n)
{
	tag(b, field, WIRE_LEN);
	tg_pb_varint(b, n);
	if (n && reserve(b, n) == 0) {
		memcpy(b->buf + b->len, p, n);
		b->len += n;
	}
}

void tg_pb_str(struct tg_pb *b, unsigned field, const char *s)
{
	tg_pb_bytes(b, field, s, strlen(s));
}

void tg_pb_msg(struct tg_pb *b, unsigned field, const struct tg_pb *m)
{
	if (m->failed)
		b->failed = 1;
	tg_pb_bytes(b, field, m->buf, m->len);
}

void tg_pb_packed(struct tg_pb *b, unsigned field, const uint64_t *v, size_t n)
{
	if (!n)
		return;
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t x = v[i];
		do {
			len++;
			x >>= 7;
		} while (x);
	}
	tag(b, field, WIRE_LEN);
	tg_pb_varint(b, len);
	for (size_t i = 0; i < n; i++)
		tg_pb_varint(b, v[i]);
}

/* ---- a profile ------------------------------------------------------------ */

/* uint64 key -> nonzero uint64 value, open addressing; 0 = absent. */
struct idmap {
	uint64_t *keys, *vals;
	size_t cap, n;
};

/* The value slot of key (0 in it when absent), NULL when out of memory. */
static uint64_t *idmap_slot(struct idmap *m, uint64_t key)
{
	if (2 * (m->n + 1) > m->cap) {
		struct idmap g = {.cap = m->cap ? 2 * m->cap : 64};
		g.keys = calloc(g.cap, sizeof *g.keys);
		g.vals = calloc(g.cap, sizeof *g.vals);
		if (!g.keys || !g.vals) {
			free(g.keys);
			free(g.vals);
			return NULL;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->vals[i]) {
				*idmap_slot(&g, m->keys[i]) = m->vals[i];
				g.n++;
			}
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	size_t j = tg_mix64(key) & (m->cap - 1);
	while (m->vals[j] && m->keys[j] != key)
		j = (j + 1) & (m->cap - 1);
	m->keys[j] = key;
	return &m->vals[j];
}

struct tg_pprof {
	char **strs; /* the string table */
	size_t nstrs, strs_cap;
	struct idmap str_of;      /* hash of a string -> first index + 1 with that hash */
	uint64_t *str_next;       /* index + 1 of the next string with the same hash, per index */
	struct idmap funcs, maps; /* (name, file) indexes / file index -> id */
	uint64_t nfuncs, nmaps, nlocs;
	size_t ntypes; /* sample types: values per sample */
	struct tg_pb types, samples, mappings, locations, functions, comments;
	int64_t period_type, period_unit, period, time_nanos, duration_nanos, default_type;
	int failed;
};

struct tg_pprof *tg_pprof_new(void)
{
	struct tg_pprof *p = calloc(1, sizeof *p);
	if (p && tg_pprof_str(p, "") != 0) {
		tg_pprof_free(p);
		return NULL;
	}
	return p;
}

void tg_pprof_free(struct tg_pprof *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nstrs; i++)
		free(p->strs[i]);
	free(p->strs);
	free(p->str_next);
	free(p->str_of.keys);
	free(p->str_of.vals);
	free(p->funcs.keys);
	free(p->funcs.vals);
	free(p->maps.keys);
	free(p->maps.vals);
	struct tg_pb *bufs[] = {&p->types, &p->samples, &p->mappings, &p->locations, &p->functions, &p->comments};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		tg_pb_free(bufs[i]);
	free(p);
}

int64_t tg_pprof_str(struct tg_pprof *p, const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (const char *c = s; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ull;
	uint64_t *head = idmap_slot(&p->str_of, h);
	if (!head) {
		p->failed = 1;
		return 0;
	}
	for (uint64_t i = *head; i; i = p->str_next[i - 1])
		if (strcmp(p->strs[i - 1], s) == 0)
			return (int64_t)(i - 1);
	if (p->nstrs == p->strs_cap) {
		size_t cap = p->strs_cap ? 2 * p->strs_cap : 256;
		char **ns = realloc(p->strs, cap * sizeof *ns);
		if (ns)
			p->strs = ns;
		uint64_t *nn = realloc(p->str_next, cap * sizeof *nn);
		if (nn)
			p->str_next = nn;
		if (!ns || !nn) {
			p->failed = 1;
			return 0;
		}
		p->strs_cap = cap;
	}
	char *copy = strdup(s);
	if (!copy) {
		p->failed = 1;
		return 0;
	}
	if (!*head)
		p->str_of.n++;
	p->strs[p->nstrs] = copy;
	p->str_next[p->nstrs] = *head;
	*head = ++p->nstrs;
	return (int64_t)(p->nstrs - 1);
}

/* A ValueType message {type, unit} as field `field` of b. */
static void value_type(struct tg_pprof *p, struct tg_pb *b, unsigned field, const char *type, const char *unit)
{
	struct tg_pb m = {0};
	tg_pb_uint(&m, 1, (uint64_t)tg_pprof_str(p, type));
	tg_pb_uint(&m, 2, (uint64_t)tg_pprof_str(p, unit));
	tg_pb_msg(b, field, &m);
	tg_pb_free(&m);
}

void tg_pprof_sample_type(struct tg_pprof *p, const char *type, const char *unit)
{
	if (p->ntypes == TG_PPROF_MAX_TYPES) {
		p->failed = 1;
		return;
	}
	p->ntypes++;
	value_type(p, &p->types, 1, type, unit);
}

void tg_pprof_period(struct tg_pprof *p, const char *type, const char *unit, int64_t period)
{
	p->period_type = tg_pprof_str(p, type);
	p->period_unit = tg_pprof_str(p, unit);
	p->period = period;
}

void tg_pprof_time(struct tg_pprof *p, int64_t time_nanos, int64_t duration_nanos)
{
	p->time_nanos = time_nanos;
	p->duration_nanos = duration_nanos;
}

void tg_pprof_default_type(struct tg_pprof *p, const char *type)
{
	p->default_type = tg_pprof_str(p, type);
}

void tg_pprof_comment(struct tg_pprof *p, const char *text)
{
	tg_pb_varint(&p->comments, (uint64_t)tg_pprof_str(p, text));
}

/* The id of key in m, the next of *count on first use (*created set then);
 * 0 when out of memory. */
static uint64_t intern_id(struct tg_pprof *p, struct idmap *m, uint64_t key, uint64_t *count, int *created)
{
	uint64_t *id = idmap_slot(m, key);
	*created = 0;
	if (!id) {
		p->failed = 1;
		return 0;
	}
	if (!*id) {
		*id = ++*count;
		m->n++;
		*created = 1;
	}
	return *id;
}

uint64_t tg_pprof_mapping(struct tg_pprof *p, const char *file, int has_lines)
{
	int64_t name = tg_pprof_str(p, file);
	int created;
	uint64_t id = intern_id(p, &p->maps, (uint64_t)name, &p->nmaps, &created);
	if (!created)
		return id;
	struct tg_pb m = {0};
	tg_pb_uint(&m, 1, id);
	tg_pb_uint(&m, 5, (uint64_t)name);
	tg_pb_uint(&m, 7, 1); /* has_functions */
	tg_pb_uint(&m, 8, (uint64_t)has_lines); /* has_filenames */
	tg_pb_uint(&m, 9, (uint64_t)has_lines); /* has_line_numbers */
	tg_pb_msg(&p->mappings, 3, &m);
	tg_pb_free(&m);
	return id;
}

uint64_t tg_pprof_function(struct tg_pprof *p, const char *name, const char *file, int64_t start_line)
{
	int64_t n = tg_pprof_str(p, name), f = tg_pprof_str(p, file);
	int created;
	uint64_t id = intern_id(p, &p->funcs, (uint64_t)n << 32 | (uint64_t)f, &p->nfuncs, &created);
	if (!created)
		return id;
	struct tg_pb m = {0};
	tg_pb_uint(&m, 1, id);
	tg_pb_uint(&m, 2, (uint64_t)n);
	tg_pb_uint(&m, 3, (uint64_t)n); /* system_name: the same */
	tg_pb_uint(&m, 4, (uint64_t)f);
	tg_pb_uint(&m, 5, (uint64_t)start_line);
	tg_pb_msg(&p->functions, 5, &m);
	tg_pb_free(&m);
	return id;
}

uint64_t tg_pprof_location(struct tg_pprof *p, uint64_t mapping, uint64_t function, int64_t line)
{
	struct tg_pb l = {0}, m = {0};
	tg_pb_uint(&l, 1, function);
	tg_pb_uint(&l, 2, (uint64_t)line);
	tg_pb_uint(&m, 1, ++p->nlocs);
	tg_pb_uint(&m, 2, mapping);
	tg_pb_msg(&m, 4, &l);
	tg_pb_msg(&p->locations, 4, &m);
	tg_pb_free(&l);
	tg_pb_free(&m);
	return p->nlocs;
}

void tg_pprof_sample(struct tg_pprof *p, const uint64_t *locs, size_t n, const int64_t *values,
		     const struct tg_pprof_label *labels, size_t nl)
{
	uint64_t v[TG_PPROF_MAX_TYPES];
	for (size_t i = 0; i < p->ntypes; i++)
		v[i] = (uint64_t)values[i];
	struct tg_pb m = {0};
	tg_pb_packed(&m, 1, locs, n);
	tg_pb_packed(&m, 2, v, p->ntypes);
	for (size_t i = 0; i < nl; i++) {
		if (!labels[i].str)
			continue;
		struct tg_pb l = {0};
		tg_pb_uint(&l, 1, (uint64_t)tg_pprof_str(p, labels[i].key));
		tg_pb_uint(&l, 2, (uint64_t)tg_pprof_str(p, labels[i].str));
		tg_pb_msg(&m, 3, &l);
		tg_pb_free(&l);
	}
	tg_pb_msg(&p->samples, 2, &m);
	tg_pb_free(&m);
}

/* Appends the bytes of src to b. */
static void append(struct tg_pb *b, const struct tg_pb *src)
{
	if (src->failed)
		b->failed = 1;
	if (src->len && reserve(b, src->len) == 0) {
		memcpy(b->buf + b->len, src->buf, src->len);
		b->len += src->len;
	}
}

int tg_pprof_encode(struct tg_pprof *p, struct tg_pb *out)
{
	append(out, &p->types);
	append(out, &p->samples);
	append(out, &p->mappings);
	append(out, &p->locations);
	append(out, &p->functions);
	for (size_t i = 0; i < p->nstrs; i++)
		tg_pb_str(out, 6, p->strs[i]);
	tg_pb_uint(out, 9, (uint64_t)p->time_nanos);
	tg_pb_uint(out, 10, (uint64_t)p->duration_nanos);
	if (p->period_type || p->period_unit) {
		struct tg_pb m = {0};
		tg_pb_uint(&m, 1, (uint64_t)p->period_type);
		tg_pb_uint(&m, 2, (uint64_t)p->period_unit);
		tg_pb_msg(out, 11, &m);
		tg_pb_free(&m);
	}
	tg_pb_uint(out, 12, (uint64_t)p->period);
	if (p->comments.len)
		tg_pb_msg(out, 13, &p->comments); /* packed: the varints as one field */
	tg_pb_uint(out, 14, (uint64_t)p->default_type);
	if (p->failed || out->failed)
		return tg_fail("out of memory encoding a pprof profile");
	return 0;
}

int tg_pprof_write(struct tg_pprof *p, FILE *f)
{
	struct tg_pb raw = {0};
	if (tg_pprof_encode(p, &raw) < 0) {
		tg_pb_free(&raw);
		return -1;
	}
	z_stream z = {0};
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16 /* gzip */, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		tg_pb_free(&raw);
		return tg_fail("zlib: cannot start compressing");
	}
	z.next_in = raw.buf;
	z.avail_in = (uInt)raw.len;
	int rc = 0, zr;
	do {
		unsigned char chunk[16384];
		z.next_out = chunk;
		z.avail_out = sizeof chunk;
		zr = deflate(&z, Z_FINISH);
		size_t n = sizeof chunk - z.avail_out;
		if (zr == Z_STREAM_ERROR || (n && fwrite(chunk, 1, n, f) != n)) {
			rc = tg_fail("cannot write the profile: %s", zr == Z_STREAM_ERROR ? "zlib error" : "write error");
			break;
		}
	} while (zr != Z_STREAM_END);
	deflateEnd(&z);
	tg_pb_free(&raw);
	return rc;
}

/* ---- from the store -------------------------------------------------------- */

#define DEFAULT_PERIOD_NS 1000000 /* timeglass run's default rate, 1 kHz */

int64_t tg_pprof_sample_period(sqlite3 *db, int64_t run)
{
	/* A main thread (tid = pid) lives as long as its process and is
	 * sampled running or waiting at every tick. */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT sum(n), sum(life) FROM (SELECT p.ended_unix_ns - p.started_unix_ns AS life,"
			       " (SELECT sum(s.count) FROM samples s WHERE s.process_id = p.id AND s.tid = p.pid) AS n"
			       " FROM processes p WHERE p.run_id = ?1 AND p.ended_unix_ns > p.started_unix_ns)"
			       " WHERE n > 0",
			       -1, &st, NULL) != SQLITE_OK)
		return tg_fail("reading processes: %s", sqlite3_errmsg(db));
	sqlite3_bind_int64(st, 1, run);
	int64_t period = -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		int64_t n = sqlite3_column_int64(st, 0), life = sqlite3_column_int64(st, 1);
		period = n > 0 && life > 0 ? life / n : DEFAULT_PERIOD_NS;
	} else
		tg_fail("reading processes: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return period;
}

/* What tg_pprof_write_samples() works with. */
struct reader {
	sqlite3 *db;
	struct tg_pprof *p;
	sqlite3_stmt *frame; /* kind, name, file, line of frame ?1 */
	struct idmap loc_of; /* frame id -> location id */
	uint64_t python;     /* the mapping of Python code */
};

/* The location of frame id (one per frame), "?" when the store has none. */
static uint64_t frame_location(struct reader *r, int64_t id)
{
	uint64_t *loc = idmap_slot(&r->loc_of, (uint64_t)id);
	if (!loc) {
		r->p->failed = 1;
		return 0;
	}
	if (*loc)
		return *loc;
	r->loc_of.n++;
	sqlite3_reset(r->frame);
	sqlite3_bind_int64(r->frame, 1, id);
	if (sqlite3_step(r->frame) != SQLITE_ROW) {
		*loc = tg_pprof_location(r->p, r->python, tg_pprof_function(r->p, "?", "", 0), 0);
		return *loc;
	}
	const char *kind = (const char *)sqlite3_column_text(r->frame, 0);
	const char *name = (const char *)sqlite3_column_text(r->frame, 1);
	const char *file = (const char *)sqlite3_column_text(r->frame, 2);
	int64_t line = sqlite3_column_int64(r->frame, 3);
	name = name ? name : "?";
	file = file ? file : "";
	if (kind && strcmp(kind, "native") == 0 && *file) {
		uint64_t lib = tg_pprof_mapping(r->p, file, 0);
		*loc = tg_pprof_location(r->p, lib, tg_pprof_function(r->p, name, file, 0), 0);
	} else
		*loc = tg_pprof_location(r->p, r->python, tg_pprof_function(r->p, name, file, 0), line);
	return *loc;
}

/* When the selection was taken: the request's time, else the run's. Sets
 * *run too. Returns 0 or -1. */
static int selection_time(sqlite3 *db, const struct tg_samples_sel *sel, int64_t *run, int64_t *t0, int64_t *dur)
{
	const char *sql = sel->of == TG_SAMPLES_REQUEST
				  ? "SELECT run_id, start_unix_ns, duration_ns FROM requests WHERE id = ?1"
				  : "SELECT id, started_unix_ns, coalesce(ended_unix_ns - started_unix_ns, 0) FROM runs"
				    " WHERE id = ?1";
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return tg_fail("reading the run: %s", sqlite3_errmsg(db));
	sqlite3_bind_int64(st, 1, sel->id);
	int found = sqlite3_step(st) == SQLITE_ROW;
	if (found) {
		*run = sqlite3_column_int64(st, 0);
		*t0 = sqlite3_column_int64(st, 1);
		*dur = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	return found ? 0 : tg_fail("no %s %lld", sel->of == TG_SAMPLES_REQUEST ? "request" : "run", (long long)sel->id);
}

/* One sample per row of the detail query; 0 or -1. */
static int add_samples(struct reader *r, sqlite3_stmt *st, const struct tg_samples_sel *sel, int64_t period)
{
	uint64_t *locs = NULL;
	size_t cap = 0;
	uint64_t waiting = 0; /* location of the "(waiting)" leaf */
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *frames = (const char *)sqlite3_column_text(st, 0);
		const char *state = (const char *)sqlite3_column_text(st, 1);
		int64_t count = sqlite3_column_int64(st, 2);
		int64_t values[3] = {count, count * period, sqlite3_column_int64(st, 3)};
		char rid[24], tid[24];
		snprintf(rid, sizeof rid, "%lld", (long long)sqlite3_column_int64(st, 4));
		snprintf(tid, sizeof tid, "%lld", (long long)sqlite3_column_int64(st, 6));
		int in_request = sqlite3_column_type(st, 4) != SQLITE_NULL;
		struct tg_pprof_label labels[] = {
			{"route", (const char *)sqlite3_column_text(st, 5)},
			{"request_id", in_request ? rid : NULL},
			{"thread", sqlite3_column_int64(st, 6) ? tid : NULL},
			{"state", state},
		};
		/* frames: ids root first; the profile wants the leaf first */
		size_t n = 0;
		int is_waiting = !sel->state && state && strcmp(state, "waiting") == 0;
		for (const char *c = frames; c && *c;) {
			char *end;
			long long id = strtoll(c, &end, 10);
			if (end == c)
				break; /* not a frame id */
			if (n + 2 > cap) {
				cap = cap ? 2 * cap : 64;
				uint64_t *nl = realloc(locs, cap * sizeof *nl);
				if (!nl) {
					free(locs);
					return tg_fail("out of memory reading samples");
				}
				locs = nl;
			}
			locs[n++] = frame_location(r, id);
			c = *end == ',' ? end + 1 : end;
		}
		for (size_t i = 0; i < n / 2; i++) {
			uint64_t t = locs[i];
			locs[i] = locs[n - 1 - i];
			locs[n - 1 - i] = t;
		}
		if (is_waiting) {
			if (!waiting)
				waiting = tg_pprof_location(r->p, r->python, tg_pprof_function(r->p, "(waiting)", "", 0), 0);
			memmove(locs + 1, locs, n * sizeof *locs);
			locs[0] = waiting;
			n++;
		}
		tg_pprof_sample(r->p, locs, n, values, labels, sizeof labels / sizeof labels[0]);
	}
	free(locs);
	if (rc != SQLITE_DONE)
		return tg_fail("reading samples: %s", sqlite3_errmsg(r->db));
	return 0;
}

int tg_pprof_write_samples(sqlite3 *db, const struct tg_samples_sel *sel, FILE *f)
{
	int64_t run = 0, t0 = 0, dur = 0;
	if (selection_time(db, sel, &run, &t0, &dur) < 0)
		return -1;
	int64_t period = tg_pprof_sample_period(db, run);
	if (period < 0)
		return -1;
	struct reader r = {.db = db, .p = tg_pprof_new()};
	if (!r.p)
		return tg_fail("out of memory");
	int rc = -1;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT kind, name, file, line FROM frames WHERE id = ?1", -1, &r.frame, NULL) !=
	    SQLITE_OK) {
		tg_fail("reading frames: %s", sqlite3_errmsg(db));
		goto out;
	}
	tg_pprof_sample_type(r.p, "samples", "count");
	tg_pprof_sample_type(r.p, "wall", "nanoseconds");
	tg_pprof_sample_type(r.p, "cpu", "nanoseconds");
	tg_pprof_default_type(r.p, "samples");
	tg_pprof_period(r.p, "wall", "nanoseconds", period);
	tg_pprof_time(r.p, t0, dur);
	char what[600];
	switch (sel->of) {
	case TG_SAMPLES_REQUEST: snprintf(what, sizeof what, "timeglass request %lld", (long long)sel->id); break;
	case TG_SAMPLES_ROUTE:
		snprintf(what, sizeof what, "timeglass run %lld, route %s %s", (long long)run, sel->method, sel->route);
		break;
	case TG_SAMPLES_RUN: snprintf(what, sizeof what, "timeglass run %lld", (long long)run); break;
	case TG_SAMPLES_OUTSIDE:
		snprintf(what, sizeof what, "timeglass run %lld, outside requests", (long long)run);
		break;
	}
	tg_pprof_comment(r.p, what);
	if (sel->state) {
		snprintf(what, sizeof what, "state %s", sel->state);
		tg_pprof_comment(r.p, what);
	}
	r.python = tg_pprof_mapping(r.p, "[python]", 1);
	st = tg_samples_detail_prepare(db, sel);
	if (st && add_samples(&r, st, sel, period) == 0)
		rc = tg_pprof_write(r.p, f);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(r.frame);
	free(r.loc_of.keys);
	free(r.loc_of.vals);
	tg_pprof_free(r.p);
	return rc;
}
