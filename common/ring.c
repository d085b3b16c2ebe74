/*
 * ring.c - the shared-memory MPSC ring of ring.h.
 *
 * Producers run inside the traced app on every tracked socket event, so the
 * reserve path is a handful of loads and one CAS. The consumer is the
 * collector; it trusts nothing it reads from the ring, because the app (and
 * so any bug or attacker in it) can scribble over the shared pages.
 */
#include "ring.h"

#include <string.h>

#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

int tg_ring_format(void *mem, size_t map_bytes)
{
	if (map_bytes <= TG_RING_HDR_BYTES)
		return -1;
	uint64_t data = map_bytes - TG_RING_HDR_BYTES;
	if (!is_pow2(data) || data < TG_RING_MIN_DATA || data > TG_RING_MAX_DATA)
		return -1;
	struct tg_ring_hdr *h = mem;
	memset(h, 0, sizeof *h);
	h->version = TG_RING_VERSION;
	h->hdr_bytes = TG_RING_HDR_BYTES;
	h->data_bytes = data;
	STORE_REL(&h->magic, TG_RING_MAGIC);
	return 0;
}

int tg_ring_attach(struct tg_ring *r, void *mem, size_t map_bytes)
{
	struct tg_ring_hdr *h = mem;
	if (map_bytes <= TG_RING_HDR_BYTES || LOAD_ACQ(&h->magic) != TG_RING_MAGIC ||
	    h->version != TG_RING_VERSION || h->hdr_bytes != TG_RING_HDR_BYTES)
		return -1;
	uint64_t data = h->data_bytes;
	if (!is_pow2(data) || data < TG_RING_MIN_DATA || data > TG_RING_MAX_DATA ||
	    data != map_bytes - TG_RING_HDR_BYTES)
		return -1;
	r->hdr = h;
	r->data = (uint8_t *)mem + TG_RING_HDR_BYTES;
	r->mask = data - 1;
	return 0;
}

static void count_loss(struct tg_ring_hdr *h, uint32_t size)
{
	__atomic_fetch_add(&h->lost_events, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->lost_bytes, size, __ATOMIC_RELAXED);
}

void *tg_ring_reserve(struct tg_ring *r, uint32_t size)
{
	struct tg_ring_hdr *h = r->hdr;
	uint64_t cap = r->mask + 1;

	size = (size + 7u) & ~7u;
	if (size < sizeof(struct tg_ev_hdr) || size > TG_RING_MAX_RECORD || size > cap / 4) {
		count_loss(h, size);
		return NULL;
	}
	uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t tail = LOAD_ACQ(&h->tail);
		/* A head read before this tail may be older than it: other
		 * producers wrote and the consumer read in between (this thread
		 * was preempted). Read head again, after tail: then head >= tail
		 * unless the ring is corrupt, and "full" means full. */
		if (head - tail > cap)
			head = LOAD_ACQ(&h->head);
		uint64_t pos = head & r->mask;
		uint64_t pad = pos + size > cap ? cap - pos : 0;
		uint64_t need = pad + size;
		if (head - tail > cap || head + need - tail > cap) {
			count_loss(h, size);
			return NULL;
		}
		if (__atomic_compare_exchange_n(&h->head, &head, head + need, 1, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			if (pad) {
				struct tg_ev_hdr *p = (struct tg_ev_hdr *)(r->data + pos);
				p->type = TG_EV_PAD;
				p->flags = 0;
				STORE_REL(&p->size, (uint32_t)pad);
			}
			return r->data + ((head + pad) & r->mask);
		}
	}
}

void tg_ring_commit(void *rec, uint32_t size, uint16_t type, uint16_t flags)
{
	struct tg_ev_hdr *e = rec;
	e->type = type;
	e->flags = flags;
	STORE_REL(&e->size, (size + 7u) & ~7u);
}

int tg_ring_write(struct tg_ring *r, const void *rec, uint32_t size, uint16_t type)
{
	uint8_t *dst = tg_ring_reserve(r, size);
	if (!dst)
		return -1;
	uint32_t padded = (size + 7u) & ~7u;
	memcpy(dst + sizeof(struct tg_ev_hdr), (const uint8_t *)rec + sizeof(struct tg_ev_hdr),
	       size - sizeof(struct tg_ev_hdr));
	if (padded > size)
		memset(dst + size, 0, padded - size);
	tg_ring_commit(dst, size, type, 0);
	return 0;
}

/* A record that breaks the protocol can only come from a corrupted ring:
 * give up on everything written so far rather than read out of bounds. */
static int valid_record(const struct tg_ring *r, uint64_t tail, uint64_t head, uint32_t size)
{
	uint64_t pos = tail & r->mask;
	return size >= sizeof(struct tg_ev_hdr) && (size & 7u) == 0 && size <= head - tail &&
	       pos + size <= r->mask + 1;
}

const struct tg_ev_hdr *tg_ring_peek(struct tg_ring *r, uint32_t *size_out)
{
	struct tg_ring_hdr *h = r->hdr;
	for (;;) {
		uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
		uint64_t head = LOAD_ACQ(&h->head);
		if (head == tail || head - tail > r->mask + 1)
			return NULL;
		struct tg_ev_hdr *e = (struct tg_ev_hdr *)(r->data + (tail & r->mask));
		uint32_t size = LOAD_ACQ(&e->size);
		if (size == 0)
			return NULL; /* reserved, not yet committed */
		if (!valid_record(r, tail, head, size)) {
			/* Drop everything up to head. Zero it first so that a
			 * later lap does not find stale sizes. */
			uint64_t n = head - tail;
			uint64_t pos = tail & r->mask;
			uint64_t first = n < r->mask + 1 - pos ? n : r->mask + 1 - pos;
			memset(r->data + pos, 0, first);
			memset(r->data, 0, n - first);
			count_loss(h, (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n));
			STORE_REL(&h->tail, head);
			return NULL;
		}
		if (e->type == TG_EV_PAD) {
			memset(e, 0, size);
			STORE_REL(&h->tail, tail + size);
			continue;
		}
		*size_out = size;
		return e;
	}
}

void tg_ring_release(struct tg_ring *r, const struct tg_ev_hdr *ev, uint32_t size)
{
	struct tg_ring_hdr *h = r->hdr;
	uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
	memset((void *)ev, 0, size);
	STORE_REL(&h->tail, tail + size);
}

uint64_t tg_ring_used(const struct tg_ring *r)
{
	uint64_t tail = LOAD_ACQ(&r->hdr->tail); /* first: a later head is never behind it */
	return LOAD_ACQ(&r->hdr->head) - tail;
}
