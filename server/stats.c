/*
 * stats.c - in-memory per-run aggregates (stats.h), loaded from the store
 * once and then extended with the rows added since.
 */
#include "stats.h"
#include "lib/readers.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "db.h"

#define STATS_MAX_RUNS 3

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tg_run_stats *cache[STATS_MAX_RUNS];
static uint64_t use_clock;

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static int durs_push(struct tg_durs *d, int64_t v)
{
	if (TG_GROW(d->v, d->n, d->cap, 64) < 0)
		return -1;
	d->v[d->n++] = v;
	return 0;
}

/* Sorts the new tail and merges it into the sorted head. */
static int durs_sort(struct tg_durs *d)
{
	if (d->sorted == d->n)
		return 0;
	size_t head = d->sorted, tail = d->n - head;
	qsort(d->v + head, tail, sizeof *d->v, cmp_i64);
	if (head > 0 && d->v[head - 1] > d->v[head]) {
		int64_t *t = malloc(tail * sizeof *t);
		if (!t)
			return -1;
		memcpy(t, d->v + head, tail * sizeof *t);
		/* Merge from the back: head is v[0..head), tail is t. */
		size_t i = head, j = tail, o = d->n;
		while (j > 0) {
			if (i > 0 && d->v[i - 1] > t[j - 1])
				d->v[--o] = d->v[--i];
			else
				d->v[--o] = t[--j];
		}
		free(t);
	}
	d->sorted = d->n;
	return 0;
}

int64_t tg_durs_percentile(struct tg_durs *d, double pct)
{
	if (d->n == 0 || durs_sort(d) < 0)
		return 0;
	double r = pct / 100.0 * (double)d->n;
	size_t rank = (size_t)r;
	if ((double)rank < r)
		rank++; /* ceil */
	if (rank < 1)
		rank = 1;
	if (rank > d->n)
		rank = d->n;
	return d->v[rank - 1];
}

size_t tg_durs_count_ge(struct tg_durs *d, int64_t v)
{
	if (d->n == 0 || durs_sort(d) < 0)
		return d->n; /* unknown: as if all matched */
	size_t lo = 0, hi = d->n; /* first index with v[i] >= v */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->v[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return d->n - lo;
}

static void ep_free(struct tg_endpoint_stats *e)
{
	free(e->method);
	free(e->name);
	free(e->durs.v);
}

static void run_free(struct tg_run_stats *s)
{
	if (!s)
		return;
	free(s->start_ns);
	free(s->dur_ns);
	free(s->status);
	free(s->id_off);
	free(s->ep);
	free(s->path);
	free(s->zones);
	for (size_t i = 0; i < s->n_paths; i++)
		free(s->paths[i]);
	free(s->paths);
	free(s->path_table);
	ep_free(&s->all);
	for (size_t i = 0; i < s->n_eps; i++)
		ep_free(&s->eps[i]);
	free(s->eps);
	free(s->table);
	free(s->timeline.b);
	for (size_t i = 0; i < s->n_pm; i++)
		free(s->pm[i].v);
	free(s->pm);
	free(s->queries.n_plus_one.v);
	free(s);
}

#define FNV_START 1469598103934665603ULL

/* FNV-1a of s, going on from h */
static uint64_t fnv(uint64_t h, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h;
}

static uint64_t hash_key(const char *method, const char *name)
{
	return fnv((fnv(FNV_START, method) ^ 0x1f) * 1099511628211ULL, name);
}

static int table_grow(struct tg_run_stats *s)
{
	size_t size = s->table_size ? s->table_size * 2 : 256;
	uint32_t *t = calloc(size, sizeof *t);
	if (!t)
		return -1;
	for (size_t i = 0; i < s->n_eps; i++) {
		size_t h = hash_key(s->eps[i].method, s->eps[i].name) & (size - 1);
		while (t[h])
			h = (h + 1) & (size - 1);
		t[h] = (uint32_t)i + 1;
	}
	free(s->table);
	s->table = t;
	s->table_size = size;
	return 0;
}

static struct tg_endpoint_stats *ep_new(struct tg_run_stats *s, const char *method, const char *name,
					int is_route, int is_other)
{
	if (TG_GROW(s->eps, s->n_eps, s->cap_eps, 32) < 0)
		return NULL;
	struct tg_endpoint_stats *e = &s->eps[s->n_eps];
	memset(e, 0, sizeof *e);
	e->method = strdup(method);
	e->name = strdup(name);
	if (!e->method || !e->name) {
		ep_free(e);
		return NULL;
	}
	e->is_route = is_route;
	e->is_other = is_other;
	s->n_eps++;
	return e;
}

/* The slot of (method, name) in the hash table: the endpoint's index + 1
 * there, or 0 where it would go. */
static size_t ep_slot(const struct tg_run_stats *s, const char *method, const char *name, int is_route)
{
	size_t mask = s->table_size - 1, h = hash_key(method, name) & mask;
	for (; s->table[h]; h = (h + 1) & mask) {
		const struct tg_endpoint_stats *e = &s->eps[s->table[h] - 1];
		if (!e->is_other && e->is_route == is_route && strcmp(e->name, name) == 0 &&
		    strcmp(e->method, method) == 0)
			break;
	}
	return h;
}

/* The endpoint for (method, name), created on first sight. */
static struct tg_endpoint_stats *ep_find(struct tg_run_stats *s, const char *method, const char *name,
					 int is_route)
{
	if ((s->n_eps + 1) * 2 > s->table_size && table_grow(s) < 0)
		return NULL;
	size_t h = ep_slot(s, method, name, is_route);
	if (s->table[h])
		return &s->eps[s->table[h] - 1];
	if (s->n_eps >= TG_STATS_MAX_ENDPOINTS) {
		/* Over the cap: one shared bucket, found by a linear look once. */
		s->other_routed |= is_route;
		for (size_t i = s->n_eps; i-- > 0;)
			if (s->eps[i].is_other)
				return &s->eps[i];
		return ep_new(s, "", "(other)", 0, 1);
	}
	struct tg_endpoint_stats *e = ep_new(s, method, name, is_route, 0);
	if (e)
		s->table[h] = (uint32_t)s->n_eps;
	return e;
}

static int ep_add(struct tg_endpoint_stats *e, int64_t start, int64_t dur, int status)
{
	if (durs_push(&e->durs, dur) < 0)
		return -1;
	if (e->count == 0 || start < e->first_ns)
		e->first_ns = start;
	if (e->count == 0 || start + dur > e->last_ns)
		e->last_ns = start + dur;
	e->count++;
	e->sum_ns += dur;
	if (dur > e->max_ns)
		e->max_ns = dur;
	if (status >= 500 && status <= 599)
		e->n5xx++;
	else if (status >= 400 && status <= 499)
		e->n4xx++;
	return 0;
}

/* The index of path in s->paths, added on first sight; 0 for no path,
 * and for a path over the caps (s->paths_full then set). -1 when out of
 * memory. */
static long path_intern(struct tg_run_stats *s, const char *path)
{
	if (s->n_paths == 0) { /* paths[0]: no path */
		if (TG_GROW(s->paths, s->n_paths, s->cap_paths, 1024) < 0)
			return -1;
		s->paths[s->n_paths++] = NULL;
	}
	if (!path)
		return 0;
	if ((s->n_paths + 1) * 2 > s->path_table_size) {
		if (s->n_paths > TG_STATS_MAX_PATHS)
			goto full;
		size_t size = s->path_table_size ? s->path_table_size * 2 : 1024;
		uint32_t *t = calloc(size, sizeof *t);
		if (!t)
			return -1;
		for (size_t i = 1; i < s->n_paths; i++) {
			size_t h = fnv(FNV_START, s->paths[i]) & (size - 1);
			while (t[h])
				h = (h + 1) & (size - 1);
			t[h] = (uint32_t)i;
		}
		free(s->path_table);
		s->path_table = t;
		s->path_table_size = size;
	}
	size_t mask = s->path_table_size - 1, h = fnv(FNV_START, path) & mask;
	for (; s->path_table[h]; h = (h + 1) & mask)
		if (strcmp(s->paths[s->path_table[h]], path) == 0)
			return s->path_table[h];
	size_t len = strlen(path);
	if (s->n_paths > TG_STATS_MAX_PATHS || s->path_bytes + len > TG_STATS_MAX_PATH_BYTES)
		goto full;
	char *copy = strdup(path);
	if (!copy || TG_GROW(s->paths, s->n_paths, s->cap_paths, 1024) < 0) {
		free(copy);
		return -1;
	}
	s->paths[s->n_paths] = copy;
	s->path_table[h] = (uint32_t)s->n_paths;
	s->path_bytes += len;
	return (long)s->n_paths++;
full:
	s->paths_full = 1;
	return 0;
}

static int run_push(struct tg_run_stats *s, int64_t id, size_t ep, long path, int64_t start, int64_t dur,
		    int status)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		if (tg_resize(&s->start_ns, cap, sizeof *s->start_ns) < 0 ||
		    tg_resize(&s->dur_ns, cap, sizeof *s->dur_ns) < 0 ||
		    tg_resize(&s->status, cap, sizeof *s->status) < 0 ||
		    tg_resize(&s->id_off, cap, sizeof *s->id_off) < 0 || tg_resize(&s->ep, cap, sizeof *s->ep) < 0 ||
		    tg_resize(&s->path, cap, sizeof *s->path) < 0)
			return -1;
		s->cap = cap;
	}
	if (s->n == 0)
		s->first_id = id;
	if (id - s->first_id > INT32_MAX || id - s->first_id < INT32_MIN)
		s->ids_far = 1; /* a store of billions of rows */
	if (s->n == 0 || start < s->min_start_ns)
		s->min_start_ns = start;
	if (s->n == 0 || start + dur > s->max_end_ns)
		s->max_end_ns = start + dur;
	size_t z = s->n / TG_STATS_ZONE;
	if (z == s->cap_zones) {
		size_t cap = s->cap_zones ? s->cap_zones * 2 : 16;
		if (tg_resize(&s->zones, cap, sizeof *s->zones) < 0)
			return -1;
		s->cap_zones = cap;
	}
	struct tg_stats_zone *zn = &s->zones[z];
	if (s->n % TG_STATS_ZONE == 0) {
		*zn = (struct tg_stats_zone){start, start, dur, dur};
	} else {
		zn->min_start = start < zn->min_start ? start : zn->min_start;
		zn->max_start = start > zn->max_start ? start : zn->max_start;
		zn->min_dur = dur < zn->min_dur ? dur : zn->min_dur;
		zn->max_dur = dur > zn->max_dur ? dur : zn->max_dur;
	}
	s->start_ns[s->n] = start;
	s->dur_ns[s->n] = dur;
	s->status[s->n] = (int16_t)(status > 0 && status < 1000 ? status : 0);
	s->id_off[s->n] = (int32_t)(id - s->first_id);
	s->ep[s->n] = (uint16_t)ep; /* fewer than TG_STATS_MAX_ENDPOINTS + 1 */
	s->path[s->n] = (uint32_t)path;
	s->n++;
	return 0;
}

/* Reads the run's requests with id > last_id. */
static int load_new(sqlite3 *db, struct tg_run_stats *s, const char **err)
{
	/* Later loads read the rowid range (+run_id keeps the planner off the
	 * run index, which cannot seek on the id). The first reads the table
	 * in rowid order too when the run holds an eighth of its rows or
	 * more: walking the run's index looks each row up by rowid, more than
	 * half of the time of that load (31 s for ten million requests),
	 * where reading the table in order passes over the other runs' rows
	 * at a fraction of that cost each. */
	int by_index = 0;
	if (s->last_id == 0) {
		char q[128];
		snprintf(q, sizeof q, "SELECT count(*) FROM requests WHERE run_id = %" PRId64, s->run_id);
		int64_t mine = tg_db_int(db, q, 0);
		int64_t all = tg_db_int(db, "SELECT max(rowid) FROM requests", 0);
		by_index = s->small_run = mine < all / 8;
	}
	const char *sql = by_index
		? "SELECT id, start_unix_ns, duration_ns, status, route, path, method FROM requests"
		  " WHERE run_id = ?1 AND id > ?2"
		: "SELECT id, start_unix_ns, duration_ns, status, route, path, method FROM requests"
		  " WHERE +run_id = ?1 AND id > ?2";
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		*err = sqlite3_errmsg(db);
		return -1;
	}
	sqlite3_bind_int64(st, 1, s->run_id);
	sqlite3_bind_int64(st, 2, s->last_id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		int64_t start = sqlite3_column_int64(st, 1);
		int64_t dur = sqlite3_column_int64(st, 2);
		int status = sqlite3_column_int(st, 3);
		const char *route = (const char *)sqlite3_column_text(st, 4);
		const char *path = (const char *)sqlite3_column_text(st, 5);
		const char *method = (const char *)sqlite3_column_text(st, 6);
		if (dur < 0)
			dur = 0;
		long pix;
		struct tg_endpoint_stats *e =
			ep_find(s, method ? method : "", route ? route : path ? path : "", route != NULL);
		if (!e || ep_add(e, start, dur, status) < 0 || ep_add(&s->all, start, dur, status) < 0 ||
		    (pix = path_intern(s, path)) < 0 || run_push(s, id, (size_t)(e - s->eps), pix, start, dur, status) < 0) {
			*err = "out of memory";
			sqlite3_finalize(st);
			return -1;
		}
		if (id > s->last_id)
			s->last_id = id;
	}
	if (rc != SQLITE_DONE)
		*err = sqlite3_errmsg(db);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Drops s, which may be half-loaded, so that the next call starts afresh;
 * unlocks the stats and returns NULL. */
static struct tg_run_stats *drop_and_unlock(struct tg_run_stats *s)
{
	for (int i = 0; i < STATS_MAX_RUNS; i++)
		if (cache[i] == s)
			cache[i] = NULL;
	run_free(s);
	pthread_mutex_unlock(&stats_lock);
	return NULL;
}

/* The start of run run_id (unix ns) into *started, which tells a run
 * from the one of a store that replaced it. Returns 1, 0 when there is no
 * such run, -1 on a SQLite error (*err set). */
static int run_started(sqlite3 *db, int64_t run_id, int64_t *started, const char **err)
{
	sqlite3_stmt *st = tg_prepare_id(db, "SELECT started_unix_ns FROM runs WHERE id = ?1", run_id, "reading the run");
	if (!st) {
		*err = sqlite3_errmsg(db);
		return -1;
	}
	int found = sqlite3_step(st) == SQLITE_ROW;
	if (found)
		*started = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return found;
}

struct tg_run_stats *tg_stats_acquire(sqlite3 *db, int64_t run_id, const char **err)
{
	*err = NULL;
	int64_t started = 0;
	int found = run_started(db, run_id, &started, err);
	if (found < 0)
		return NULL;
	if (!found) {
		*err = "no such run";
		return NULL;
	}

	pthread_mutex_lock(&stats_lock);
	struct tg_run_stats *s = NULL;
	int slot = -1;
	for (int i = 0; i < STATS_MAX_RUNS; i++) {
		if (cache[i] && cache[i]->run_id == run_id) {
			if (cache[i]->run_started_ns == started) {
				s = cache[i];
			} else {
				run_free(cache[i]); /* the store was replaced */
				cache[i] = NULL;
				slot = i;
			}
			break;
		}
	}
	if (!s) {
		if (slot < 0) {
			slot = 0;
			for (int i = 0; i < STATS_MAX_RUNS; i++) {
				if (!cache[i]) {
					slot = i;
					break;
				}
				if (cache[i]->last_used < cache[slot]->last_used)
					slot = i;
			}
			run_free(cache[slot]);
			cache[slot] = NULL;
		}
		s = calloc(1, sizeof *s);
		if (!s) {
			pthread_mutex_unlock(&stats_lock);
			*err = "out of memory";
			return NULL;
		}
		s->run_id = run_id;
		s->run_started_ns = started;
		cache[slot] = s;
	}
	s->last_used = ++use_clock;
	if (load_new(db, s, err) < 0)
		return drop_and_unlock(s);
	return s;
}

struct tg_run_stats *tg_stats_peek(sqlite3 *db, int64_t run_id)
{
	if (pthread_mutex_trylock(&stats_lock) != 0)
		return NULL;
	struct tg_run_stats *s = NULL;
	for (int i = 0; i < STATS_MAX_RUNS; i++)
		if (cache[i] && cache[i]->run_id == run_id && cache[i]->n > 0)
			s = cache[i];
	int64_t started = 0;
	const char *err;
	if (!s || run_started(db, run_id, &started, &err) != 1 || s->run_started_ns != started) {
		/* Not loaded, or the store was replaced: tg_stats_acquire()
		 * deals with that. */
		pthread_mutex_unlock(&stats_lock);
		return NULL;
	}
	if (load_new(db, s, &err) < 0)
		return drop_and_unlock(s);
	s->last_used = ++use_clock;
	return s;
}

void tg_stats_release(void)
{
	pthread_mutex_unlock(&stats_lock);
}

const struct tg_proc_metrics *tg_stats_metrics(sqlite3 *db, struct tg_run_stats *s, int64_t process_id,
					       const char **err)
{
	struct tg_proc_metrics *m = NULL;
	for (size_t i = 0; i < s->n_pm; i++)
		if (s->pm[i].process_id == process_id)
			m = &s->pm[i];
	if (!m) {
		if (TG_GROW(s->pm, s->n_pm, s->cap_pm, 8) < 0) {
			*err = "out of memory";
			return NULL;
		}
		m = &s->pm[s->n_pm++];
		memset(m, 0, sizeof *m);
		m->process_id = process_id;
	}
	/* A process's samples are written in time order, each later than the
	 * last (the collector's monotonic clock): read those after the newest
	 * held. */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT ts_unix_ns, cpu_user_ns + cpu_sys_ns, rss_bytes FROM process_metrics"
			       " WHERE process_id = ?1 AND ts_unix_ns > ?2 ORDER BY ts_unix_ns",
			       -1, &st, NULL) != SQLITE_OK) {
		*err = sqlite3_errmsg(db);
		return NULL;
	}
	sqlite3_bind_int64(st, 1, process_id);
	sqlite3_bind_int64(st, 2, m->n ? m->v[m->n - 1].ts : INT64_MIN);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (TG_GROW(m->v, m->n, m->cap, 256) < 0) {
			sqlite3_finalize(st);
			*err = "out of memory";
			return NULL;
		}
		m->v[m->n++] = (struct tg_metric){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
						  sqlite3_column_int64(st, 2)};
	}
	if (rc != SQLITE_DONE)
		*err = sqlite3_errmsg(db);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? m : NULL;
}

/* A request with an N+1 query, and the endpoint it counts for (its index
 * in eps, or -1 for none). */
struct flagged {
	int64_t request_id;
	long ep;
};

static int cmp_flagged(const void *a, const void *b)
{
	const struct flagged *x = a, *y = b;
	return (x->request_id > y->request_id) - (x->request_id < y->request_id);
}

/* Whether the run's set of requests with an N+1 query (sorted) holds id. */
static int ids_has(struct tg_durs *set, int64_t id)
{
	size_t ge = tg_durs_count_ge(set, id);
	return ge && set->v[set->n - ge] == id;
}

/* Counts the requests of f (n, sorted here) not counted before, for the
 * run and for their endpoint, and adds them to the run's set. */
static int count_flagged(struct tg_run_stats *s, struct flagged *f, size_t n)
{
	struct tg_durs *set = &s->queries.n_plus_one;
	if (n == 0)
		return 0;
	qsort(f, n, sizeof *f, cmp_flagged);
	size_t fresh = 0; /* f[0..fresh): the new ones, kept in place */
	for (size_t i = 0; i < n; i++) {
		if ((i > 0 && f[i].request_id == f[i - 1].request_id) || ids_has(set, f[i].request_id))
			continue;
		if (f[i].ep >= 0)
			s->eps[f[i].ep].n_plus_one++;
		f[fresh++] = f[i];
	}
	for (size_t i = 0; i < fresh; i++)
		if (durs_push(set, f[i].request_id) < 0)
			return -1;
	return durs_sort(set);
}

const struct tg_query_totals *tg_stats_queries(sqlite3 *db, struct tg_run_stats *s, const char **err)
{
	struct tg_query_totals *q = &s->queries;
	/* As load_new(): the rowid range, except the first time for a small
	 * run, which is read through its indexes: the query sets of its
	 * requests by request, the others through the index of the sets
	 * outside any request (sets have no index of every set by run). A set
	 * holds the queries of one request, their count, summed duration and
	 * N+1 count, which is all this needs: the queries themselves are not
	 * read. A query counts for the endpoint its request was counted in
	 * (the request is loaded already: the same read, and requests are
	 * written before their queries). */
	const char *sql = !tg_has_table(db, "query_sets")
		/* a store written before schema 12: a row per query */
		? "SELECT q.id, q.request_id, q.duration_ns, q.n_plus_one, r.id, r.method, r.route, r.path, 1"
		  " FROM queries q LEFT JOIN requests r ON r.id = q.request_id AND r.run_id = ?1"
		  " WHERE +q.run_id = ?1 AND q.id > ?2"
		: q->last_id == 0 && s->small_run
		? "SELECT q.id, q.request_id, q.duration_ns, q.n_plus_one, r.id, r.method, r.route, r.path, q.n"
		  " FROM requests r JOIN query_sets q ON q.request_id = r.id WHERE r.run_id = ?1 AND q.id > ?2"
		  " UNION ALL SELECT q.id, NULL, q.duration_ns, q.n_plus_one, NULL, NULL, NULL, NULL, q.n"
		  " FROM query_sets q INDEXED BY query_sets_run_outside"
		  " WHERE q.run_id = ?1 AND q.request_id IS NULL AND q.id > ?2"
		: "SELECT q.id, q.request_id, q.duration_ns, q.n_plus_one, r.id, r.method, r.route, r.path, q.n"
		  " FROM query_sets q LEFT JOIN requests r ON r.id = q.request_id AND r.run_id = ?1"
		  " WHERE +q.run_id = ?1 AND q.id > ?2";
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		*err = sqlite3_errmsg(db);
		return NULL;
	}
	sqlite3_bind_int64(st, 1, s->run_id);
	sqlite3_bind_int64(st, 2, q->last_id);
	struct flagged *f = NULL;
	size_t nf = 0, capf = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), dur = sqlite3_column_int64(st, 2);
		int64_t n = sqlite3_column_int64(st, 8);
		q->count += n;
		q->sum_ns += dur;
		if (id > q->last_id)
			q->last_id = id;
		if (sqlite3_column_type(st, 1) == SQLITE_NULL)
			continue;
		q->in_requests += n;
		q->in_requests_ns += dur;
		long ep = -1;
		if (sqlite3_column_type(st, 4) != SQLITE_NULL && s->table_size) {
			const char *method = (const char *)sqlite3_column_text(st, 5);
			const char *route = (const char *)sqlite3_column_text(st, 6);
			const char *path = (const char *)sqlite3_column_text(st, 7);
			size_t h = ep_slot(s, method ? method : "", route ? route : path ? path : "", route != NULL);
			if (s->table[h]) {
				ep = (long)s->table[h] - 1;
				s->eps[ep].queries += n;
				s->eps[ep].db_ns += dur;
			}
		}
		if (sqlite3_column_int(st, 3)) {
			if (TG_GROW(f, nf, capf, 64) < 0) {
				rc = SQLITE_NOMEM;
				break;
			}
			f[nf++] = (struct flagged){sqlite3_column_int64(st, 1), ep};
		}
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE && count_flagged(s, f, nf) < 0)
		rc = SQLITE_NOMEM;
	free(f);
	if (rc != SQLITE_DONE) {
		*err = rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db);
		/* Half summed: start again next time, endpoints too. */
		free(q->n_plus_one.v);
		memset(q, 0, sizeof *q);
		for (size_t i = 0; i < s->n_eps; i++)
			s->eps[i].queries = s->eps[i].db_ns = 0, s->eps[i].n_plus_one = 0;
		return NULL;
	}
	return q;
}

/* ---- the requests list from the aggregates ---- */

struct list_ent {
	int64_t key, id;
};

/* a comes before b in the list's order */
static int ent_before(struct list_ent a, struct list_ent b, int desc)
{
	if (a.key != b.key)
		return desc ? a.key > b.key : a.key < b.key;
	return desc ? a.id > b.id : a.id < b.id;
}

/* The heap keeps the first cap entries seen so far; its root is the last
 * of them (every parent comes after its children). */
static void heap_down(struct list_ent *h, size_t n, size_t i, int desc)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && ent_before(h[m], h[l], desc))
			m = l;
		if (r < n && ent_before(h[m], h[r], desc))
			m = r;
		if (m == i)
			return;
		struct list_ent t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_up(struct list_ent *h, size_t i, int desc)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ent_before(h[p], h[i], desc))
			return;
		struct list_ent t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

/* Zones of a newest-first list read newest first (tg_stats_list()). */
#define BACK_ZONES 16

long tg_stats_list(const struct tg_run_stats *s, const struct tg_stats_filter *f, int64_t *ids, int64_t *keys,
		   size_t cap)
{
	if (s->ids_far)
		return -1;
	if (cap == 0 || f->to == INT64_MIN)
		return 0;
	struct list_ent *h = malloc(cap * sizeof *h);
	if (!h)
		return -1;
	size_t n = 0;
	struct list_ent after = {f->after_key, f->after_id};
	/* The arrays in locals: the heap's stores must not make the compiler
	 * load them again per row. */
	const uint8_t *ep_ok = f->ep_ok, *path_ok = f->path_ok;
	const uint16_t *ep = s->ep;
	const uint32_t *path = s->path;
	const int16_t *status = s->status;
	const int64_t *dur_ns = s->dur_ns, *start_ns = s->start_ns;
	const int32_t *id_off = s->id_off;
	unsigned lo = (unsigned)f->status_lo, span = (unsigned)(f->status_hi - f->status_lo);
	int any_status = f->status_hi == 0 && !f->status_none; /* none: lo = span = 0 */
	int64_t min_dur = f->min_dur, from = f->from, to = f->to;
	int by_dur = f->by_duration, desc = f->desc;
	const int64_t *key = by_dur ? dur_ns : start_ns;
	/* The sort key's range a row must be in, inclusive: its filter's, the
	 * cursor's side, and once the heap holds cap entries, the side of its
	 * last one (a tie there is settled by id, below). */
	int64_t klo = by_dur ? (min_dur > 0 ? min_dur : INT64_MIN) : from;
	int64_t khi = by_dur ? INT64_MAX : to - 1;
	if (f->after && desc && after.key < khi)
		khi = after.key;
	if (f->after && !desc && after.key > klo)
		klo = after.key;
	/* By zones: one whose bounds rule its rows out is skipped unread
	 * (once the heap is full, most are: its last entry's key bounds the
	 * rest). Newest first, the newest BACK_ZONES zones come first, newest
	 * to oldest (rows are loaded in about the order they started: the page
	 * is mostly there), then the others oldest to newest (a scan the other
	 * way round takes a quarter longer: the memory's prefetch). Within a zone the first filter picks its
	 * rows without a branch (most rows fail it, at random: a branch per row
	 * would mostly be mispredicted), then the others look at those only. */
	enum { CHUNK = TG_STATS_ZONE };
	uint32_t cand[CHUNK];
	size_t rows = s->n, zones = (rows + CHUNK - 1) / CHUNK;
	size_t back = !by_dur && desc ? (zones < BACK_ZONES ? zones : BACK_ZONES) : 0;
	for (size_t zi = 0; zi < zones && klo <= khi; zi++) {
		size_t zc = zi < back ? zones - 1 - zi : zi - back;
		const struct tg_stats_zone *z = &s->zones[zc];
		if (z->max_dur < min_dur || z->max_start < from || z->min_start >= to)
			continue;
		if (by_dur ? z->max_dur < klo || z->min_dur > khi : z->max_start < klo || z->min_start > khi)
			continue;
		size_t base = zc * CHUNK, end = rows - base < CHUNK ? rows : base + CHUNK, k = 0;
		uint64_t kspan = (uint64_t)khi - (uint64_t)klo;
		int by_ep = 0; /* the endpoint picked the candidates: not checked again */
		/* The key's bound picks when the page is full, unless newest
		 * first past the newest zones: there most rows are newer than
		 * the page's last, and the other filters pick fewer. */
		int key_picks = n == cap && !(!by_dur && desc && zi >= back);
		if (key_picks || (!ep_ok && !path_ok && any_status && min_dur <= 0))
			for (size_t i = base; i < end; i++) {
				cand[k] = (uint32_t)(i - base);
				k += (uint64_t)key[i] - (uint64_t)klo <= kspan;
			}
		else if ((by_ep = ep_ok != NULL))
			for (size_t i = base; i < end; i++) {
				cand[k] = (uint32_t)(i - base);
				k += ep_ok[ep[i]] != 0;
			}
		else if (path_ok)
			for (size_t i = base; i < end; i++) {
				cand[k] = (uint32_t)(i - base);
				k += path_ok[path[i]] != 0;
			}
		else if (!any_status)
			for (size_t i = base; i < end; i++) {
				cand[k] = (uint32_t)(i - base);
				k += (unsigned)status[i] - lo <= span;
			}
		else
			for (size_t i = base; i < end; i++) {
				cand[k] = (uint32_t)(i - base);
				k += dur_ns[i] >= min_dur;
			}
		for (size_t j = 0; j < k; j++) {
			size_t i = base + cand[j];
			if (ep_ok && !by_ep && !ep_ok[ep[i]])
				continue;
			if (path_ok && !path_ok[path[i]])
				continue;
			if (!any_status && (unsigned)status[i] - lo > span)
				continue;
			int64_t dur = dur_ns[i];
			if (dur < min_dur)
				continue;
			int64_t start = start_ns[i];
			if (start < from || start >= to)
				continue;
			int64_t kv = by_dur ? dur : start;
			if (kv < klo || kv > khi)
				continue;
			struct list_ent e = {kv, s->first_id + id_off[i]};
			if (f->after && !ent_before(after, e, desc))
				continue;
			if (n < cap) {
				h[n] = e;
				heap_up(h, n++, desc);
			} else if (ent_before(e, h[0], desc)) {
				h[0] = e;
				heap_down(h, n, 0, desc);
			} else {
				continue;
			}
			if (n == cap) {
				if (desc && h[0].key > klo)
					klo = h[0].key;
				if (!desc && h[0].key < khi)
					khi = h[0].key;
			}
		}
	}
	/* In order: take the last out of the heap, one at a time. */
	for (size_t k = n; k-- > 0;) {
		ids[k] = h[0].id;
		keys[k] = h[0].key;
		h[0] = h[k];
		heap_down(h, k, 0, desc);
	}
	free(h);
	return (long)n;
}
