/*
 * collector/scopes.c - request scopes in the collector (scopes.h).
 *
 * Scopes live in a ring in arrival order, the oldest going first; a hash
 * index (open addressing, linear probing, deletion by shifting back the
 * entries that follow, so no tombstones) finds one by token, and a list of
 * the ring slots not joined yet serves joins. Adding a scope and forgetting
 * the oldest are each a constant amount of work: nothing is moved or
 * rebuilt except when the ring grows. Memory is bounded: at most
 * SCOPES_MAX scopes are kept.
 */
#include "collector/scopes.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SCOPES_MAX 65536u       /* scopes kept per process (a power of two) */
#define SCOPES_FIRST 256u       /* the ring's first size (a power of two) */
#define DROP_AHEAD 4            /* see drop_oldest() */
#define ASGI_SLACK_NS (1000000LL) /* in-process: scope begun up to 1 ms before the request */

/* An entry of the index: the slot it stands for and its token's hash, so
 * that probing and deleting never read the ring (5 MiB when full). */
struct ix {
	uint32_t slot1; /* v slot + 1, 0 = free */
	uint32_t hash;  /* hash_token() of its token, its low 32 bits */
};

struct tg_scopes {
	struct tg_scope *v; /* the ring: cap slots, 0 or a power of two */
	size_t head, n, cap; /* the oldest scope is v[head], n of them */
	struct ix *index;   /* 2 * cap entries, by token hash */
	uint32_t *open;     /* slots of the scopes not joined yet (cap entries) */
	size_t nopen;
	int any;
};

struct tg_scopes *tg_scopes_new(void)
{
	return calloc(1, sizeof(struct tg_scopes));
}

void tg_scopes_free(struct tg_scopes *s)
{
	if (!s)
		return;
	free(s->v);
	free(s->index);
	free(s->open);
	free(s);
}

static size_t hash_token(uint64_t t)
{
	t ^= t >> 33;
	t *= 0xff51afd7ed558ccdull;
	t ^= t >> 33;
	return (size_t)t;
}

static size_t slot_of(const struct tg_scopes *s, size_t i)
{
	return (s->head + i) & (s->cap - 1);
}

/* 1 if ring slot k holds a scope. */
static int live(const struct tg_scopes *s, size_t k)
{
	return ((k - s->head) & (s->cap - 1)) < s->n;
}

static void index_put(struct tg_scopes *s, size_t k)
{
	uint32_t h = (uint32_t)hash_token(s->v[k].token);
	size_t m = 2 * s->cap - 1, j = h & m;
	while (s->index[j].slot1)
		j = (j + 1) & m;
	s->index[j] = (struct ix){(uint32_t)k + 1, h};
}

/* Takes slot k out of the index: the entries after it in its probe run
 * that would no longer be found past the hole move back into it. */
static void index_del(struct tg_scopes *s, size_t k)
{
	size_t m = 2 * s->cap - 1, j = hash_token(s->v[k].token) & m;
	while (s->index[j].slot1 != (uint32_t)k + 1) {
		if (!s->index[j].slot1)
			return; /* not there (cannot happen) */
		j = (j + 1) & m;
	}
	for (size_t i = (j + 1) & m;; i = (i + 1) & m) {
		struct ix e = s->index[i];
		if (!e.slot1)
			break;
		size_t h = e.hash & m;
		/* e stays where it is if its home h lies cyclically in (j, i] */
		if (j <= i ? (j < h && h <= i) : (j < h || h <= i))
			continue;
		s->index[j] = e;
		j = i;
	}
	s->index[j].slot1 = 0;
}

/* Doubles the ring (SCOPES_FIRST at first), its scopes moved to the start
 * in order; the index is rebuilt and the open list renumbered. -1 on
 * ENOMEM, leaving everything as it was. */
static int grow(struct tg_scopes *s)
{
	size_t ncap = s->cap ? s->cap * 2 : SCOPES_FIRST;
	struct tg_scope *nv = malloc(ncap * sizeof *nv);
	struct ix *ni = calloc(2 * ncap, sizeof *ni);
	uint32_t *no = malloc(ncap * sizeof *no);
	if (!nv || !ni || !no) {
		free(nv);
		free(ni);
		free(no);
		return -1;
	}
	for (size_t i = 0; i < s->n; i++)
		nv[i] = s->v[slot_of(s, i)];
	for (size_t k = 0; k < s->nopen; k++)
		no[k] = (uint32_t)((s->open[k] - s->head) & (s->cap - 1));
	free(s->v);
	free(s->index);
	free(s->open);
	s->v = nv;
	s->index = ni;
	s->open = no;
	s->cap = ncap;
	s->head = 0;
	for (size_t k = 0; k < s->n; k++)
		index_put(s, k);
	return 0;
}

/* Forgets the count oldest scopes. */
static void drop_oldest(struct tg_scopes *s, size_t count)
{
	int was_open = 0;
	for (size_t i = 0; i < count && s->n; i++) {
		/* The index entry of a scope dropped a few steps later, read
		 * ahead: one drop per scope added once the ring is full, and that
		 * entry, at a random place in a megabyte, is a cache miss. */
		if (s->n > DROP_AHEAD)
			__builtin_prefetch(&s->index[hash_token(s->v[slot_of(s, DROP_AHEAD)].token) & (2 * s->cap - 1)], 1);
		index_del(s, s->head);
		was_open |= !s->v[s->head].joined;
		s->head = (s->head + 1) & (s->cap - 1);
		s->n--;
	}
	if (!was_open)
		return;
	size_t j = 0;
	for (size_t k = 0; k < s->nopen; k++)
		if (live(s, s->open[k]))
			s->open[j++] = s->open[k];
	s->nopen = j;
}

int tg_scopes_record(struct tg_scopes *s, const void *rec, uint32_t size, int64_t now_ns)
{
	const struct tg_ev_scope *e = rec;
	if (size < sizeof *e)
		return -1;
	if (e->kind == TG_SCOPE_END)
		return 0; /* the BEGIN record carries everything a join needs */
	if (e->kind != TG_SCOPE_BEGIN || !e->token)
		return -1;
	s->any = 1;
	if (s->n == SCOPES_MAX)
		drop_oldest(s, 1);
	if (s->n == s->cap && grow(s) < 0)
		return 0;
	size_t k = slot_of(s, s->n++);
	struct tg_scope *sc = &s->v[k];
	*sc = (struct tg_scope){.token = e->token, .tid = e->tid, .begin_ns = e->ts_ns, .conn_id = e->conn_id,
				.family = e->client_family, .port = e->client_port, .seen_ns = now_ns};
	memcpy(sc->addr, e->client_addr, sizeof sc->addr);
	s->open[s->nopen++] = (uint32_t)k;
	index_put(s, k);
	return 0;
}

static struct tg_scope *find(const struct tg_scopes *s, uint64_t token)
{
	if (!token || !s->cap)
		return NULL;
	uint32_t h = (uint32_t)hash_token(token);
	size_t m = 2 * s->cap - 1;
	for (size_t j = h & m; s->index[j].slot1; j = (j + 1) & m) {
		if (s->index[j].hash != h)
			continue;
		struct tg_scope *sc = &s->v[s->index[j].slot1 - 1];
		if (sc->token == token)
			return sc;
	}
	return NULL;
}

const struct tg_scope *tg_scopes_find(const struct tg_scopes *s, uint64_t token)
{
	return find(s, token);
}

/* 1 if scope sc was begun for request r. */
static int matches(const struct tg_scope *sc, const struct tg_ev_request *r)
{
	if (r->flags & TG_REQF_ASGI) /* the marker takes the request's start just after the scope's */
		return sc->tid == r->tid && sc->begin_ns + ASGI_SLACK_NS >= r->start_ns &&
		       sc->begin_ns <= r->end_ns;
	if (sc->begin_ns < r->start_ns || sc->begin_ns > r->end_ns)
		return 0;
	/* The app began the request's scope before answering it: a scope
	 * begun after the response's first byte is the next request's on the
	 * connection (uvicorn starts it as the last bytes of this one are
	 * still being written, when the socket's buffer was full). */
	if (r->resp_start_ns && sc->begin_ns > r->resp_start_ns)
		return 0;
	if (sc->conn_id)
		return sc->conn_id == r->conn_id;
	if (sc->family != r->client_family || sc->port != r->client_port)
		return 0;
	size_t alen = sc->family == AF_INET ? 4 : 16;
	return memcmp(sc->addr, r->client_addr, alen) == 0;
}

struct tg_scope *tg_scopes_match(struct tg_scopes *s, const struct tg_ev_request *r)
{
	/* The matching scope begun closest to the request's start (pipelined
	 * requests of one connection are in flight together: the earlier
	 * scope is the earlier request's). */
	struct tg_scope *best = NULL;
	uint64_t best_d = UINT64_MAX;
	for (size_t k = 0; k < s->nopen; k++) {
		struct tg_scope *sc = &s->v[s->open[k]];
		if (!matches(sc, r))
			continue;
		uint64_t d = sc->begin_ns > r->start_ns ? sc->begin_ns - r->start_ns : r->start_ns - sc->begin_ns;
		if (d < best_d) {
			best_d = d;
			best = sc;
		}
	}
	return best;
}

void tg_scopes_joined(struct tg_scopes *s, struct tg_scope *sc, int64_t request_id)
{
	uint32_t i = (uint32_t)(sc - s->v);
	sc->joined = 1;
	sc->request_id = request_id;
	for (size_t k = 0; k < s->nopen; k++)
		if (s->open[k] == i) {
			s->open[k] = s->open[--s->nopen];
			break;
		}
}

void tg_scopes_lost_after(struct tg_scopes *s, int64_t kept)
{
	for (size_t i = 0; i < s->n; i++) {
		struct tg_scope *sc = &s->v[slot_of(s, i)];
		if (sc->joined && sc->request_id > kept)
			sc->request_id = 0;
	}
}

int64_t tg_scopes_open_since(const struct tg_scopes *s, int64_t app_now, int64_t wait_ns)
{
	int64_t since = INT64_MAX;
	for (size_t k = 0; k < s->nopen; k++) {
		int64_t b = (int64_t)s->v[s->open[k]].begin_ns;
		if (app_now - b < wait_ns && b < since)
			since = b;
	}
	return since;
}

int tg_scopes_any(const struct tg_scopes *s)
{
	return s->any;
}

void tg_scopes_forget(struct tg_scopes *s, int64_t now_ns, int64_t keep_ns)
{
	/* Scopes are in arrival order: the expired ones are the oldest. */
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (now_ns - s->v[slot_of(s, mid)].seen_ns > keep_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	drop_oldest(s, lo);
}
