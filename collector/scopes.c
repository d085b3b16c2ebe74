/*
 * collector/scopes.c - request scopes in the collector (scopes.h).
 *
 * Scopes live in an array in arrival order; a hash index (open addressing,
 * rebuilt whenever the array is compacted) finds one by token, and a list
 * of the indices not joined yet serves joins. Memory is bounded: at most
 * SCOPES_MAX scopes are kept, the older half going first.
 */
#include "collector/scopes.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SCOPES_MAX 65536u       /* scopes kept per process */
#define ASGI_SLACK_NS (1000000LL) /* in-process: scope begun up to 1 ms before the request */

struct tg_scopes {
	struct tg_scope *v;
	size_t n, cap;
	uint32_t *index;  /* token hash -> v index + 1, 0 = free */
	size_t index_cap; /* 0 or a power of two, at least 2n */
	uint32_t *open;   /* v indices of scopes not joined yet */
	size_t nopen, open_cap;
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

static void index_put(struct tg_scopes *s, size_t i)
{
	size_t m = s->index_cap - 1, j = hash_token(s->v[i].token) & m;
	while (s->index[j])
		j = (j + 1) & m;
	s->index[j] = (uint32_t)i + 1;
}

/* Rebuilds the index and the open list for v[0..n). -1 on ENOMEM (then
 * lookups find nothing until the next rebuild). */
static int rebuild(struct tg_scopes *s)
{
	size_t want = 64;
	while (want < s->n * 2 + 2)
		want <<= 1;
	if (want != s->index_cap) {
		uint32_t *ni = realloc(s->index, want * sizeof *ni);
		if (!ni) {
			s->index_cap = 0;
			return -1;
		}
		s->index = ni;
		s->index_cap = want;
	}
	memset(s->index, 0, s->index_cap * sizeof *s->index);
	s->nopen = 0;
	for (size_t i = 0; i < s->n; i++) {
		index_put(s, i);
		if (!s->v[i].joined)
			s->open[s->nopen++] = (uint32_t)i;
	}
	return 0;
}

/* Keeps the scopes for which keep(scope) is true, in order. */
static void compact(struct tg_scopes *s, int64_t now_ns, int64_t keep_ns, size_t drop_first)
{
	size_t j = 0;
	for (size_t i = drop_first; i < s->n; i++)
		if (keep_ns <= 0 || now_ns - s->v[i].seen_ns <= keep_ns)
			s->v[j++] = s->v[i];
	s->n = j;
	rebuild(s);
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
		compact(s, now_ns, 0, SCOPES_MAX / 2);
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		struct tg_scope *nv = realloc(s->v, ncap * sizeof *nv);
		if (!nv)
			return 0;
		uint32_t *no = realloc(s->open, ncap * sizeof *no);
		if (!no) {
			s->v = nv;
			return 0;
		}
		s->v = nv;
		s->open = no;
		s->cap = ncap;
	}
	size_t i = s->n++;
	struct tg_scope *sc = &s->v[i];
	*sc = (struct tg_scope){.token = e->token, .tid = e->tid, .begin_ns = e->ts_ns, .conn_id = e->conn_id,
				.family = e->client_family, .port = e->client_port, .seen_ns = now_ns};
	memcpy(sc->addr, e->client_addr, sizeof sc->addr);
	s->open[s->nopen++] = (uint32_t)i;
	if (s->n * 2 + 2 > s->index_cap)
		rebuild(s);
	else
		index_put(s, i);
	return 0;
}

static struct tg_scope *find(const struct tg_scopes *s, uint64_t token)
{
	if (!token || !s->index_cap)
		return NULL;
	size_t m = s->index_cap - 1;
	for (size_t j = hash_token(token) & m; s->index[j]; j = (j + 1) & m) {
		struct tg_scope *sc = &s->v[s->index[j] - 1];
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
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].joined && s->v[i].request_id > kept)
			s->v[i].request_id = 0;
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
	/* Scopes are in arrival order: the expired ones are a prefix. It goes
	 * once it is an eighth of the table, so that the index is rebuilt
	 * now and then, not at every tick of a steady stream. */
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (now_ns - s->v[mid].seen_ns > keep_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo && lo >= s->n / 8)
		compact(s, now_ns, 0, lo);
}
