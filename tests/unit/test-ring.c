/*
 * test-ring.c - unit tests of the shared-memory MPSC ring (common/ring.c).
 *
 * Checks, with real threads: every record written is either read back intact
 * and in per-producer order, or counted as lost — never both, never neither;
 * records of every size wrap around the end of the ring; a full ring drops
 * instead of blocking, and only when it is full (a producer preempted between
 * its loads of head and tail must not see a ring that has moved on as full);
 * a corrupted ring is dropped by the consumer without reading out of bounds.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/ring.h"

static int failures, checks;

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		checks++;                                                                    \
		if (!(cond)) {                                                               \
			failures++;                                                          \
			printf("not ok - %s:%d: ", __FILE__, __LINE__);                     \
			printf(__VA_ARGS__);                                                 \
			printf("\n");                                                        \
		}                                                                            \
	} while (0)

struct rec {
	struct tg_ev_hdr h;
	uint32_t producer;
	uint32_t len; /* payload bytes after this struct */
	uint64_t seq;
	/* payload: bytes (seq + i) & 0xff */
};

static void *map_ring(size_t data_bytes, struct tg_ring *r)
{
	size_t bytes = TG_RING_HDR_BYTES + data_bytes;
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || tg_ring_format(m, bytes) < 0 || tg_ring_attach(r, m, bytes) < 0) {
		printf("Bail out! cannot map a ring\n");
		exit(1);
	}
	return m;
}

static int write_rec(struct tg_ring *r, uint32_t producer, uint64_t seq, uint32_t len)
{
	uint32_t size = (uint32_t)sizeof(struct rec) + len;
	uint8_t *p = tg_ring_reserve(r, size);
	if (!p)
		return -1;
	struct rec *x = (struct rec *)p;
	x->producer = producer;
	x->len = len;
	x->seq = seq;
	for (uint32_t i = 0; i < len; i++)
		p[sizeof *x + i] = (uint8_t)(seq + i);
	tg_ring_commit(p, size, 2, 0);
	return 0;
}

/* Returns 1 if the record is intact. */
static int check_rec(const struct tg_ev_hdr *e)
{
	const struct rec *x = (const struct rec *)e;
	if (e->type != 2 || e->size < sizeof *x || e->size < sizeof *x + x->len)
		return 0;
	const uint8_t *p = (const uint8_t *)e + sizeof *x;
	for (uint32_t i = 0; i < x->len; i++)
		if (p[i] != (uint8_t)(x->seq + i))
			return 0;
	return 1;
}

static void test_basic(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(TG_RING_MIN_DATA, &r);
	CHECK(tg_ring_peek(&r, &sz) == NULL, "empty ring yields nothing");
	for (uint64_t s = 0; s < 100000; s++) {
		uint32_t len = (uint32_t)(s * 37 % 1500);
		CHECK(write_rec(&r, 0, s, len) == 0, "write %llu", (unsigned long long)s);
		const struct tg_ev_hdr *e = tg_ring_peek(&r, &sz);
		CHECK(e && check_rec(e) && ((const struct rec *)e)->seq == s, "read back %llu",
		      (unsigned long long)s);
		if (e)
			tg_ring_release(&r, e, sz);
		if (failures)
			return;
	}
	CHECK(tg_ring_used(&r) == 0, "ring drained");
	CHECK(r.hdr->lost_events == 0, "nothing lost");
}

static void test_full_drops(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(TG_RING_MIN_DATA, &r);
	int written = 0, dropped = 0;
	for (int i = 0; i < 1000; i++) {
		if (write_rec(&r, 0, (uint64_t)i, 200) == 0)
			written++;
		else
			dropped++;
	}
	CHECK(dropped > 0 && written > 0, "a full ring drops (%d written, %d dropped)", written,
	      dropped);
	CHECK(r.hdr->lost_events == (uint64_t)dropped, "losses counted: %llu vs %d",
	      (unsigned long long)r.hdr->lost_events, dropped);
	int got = 0;
	const struct tg_ev_hdr *e;
	while ((e = tg_ring_peek(&r, &sz))) {
		CHECK(check_rec(e) && ((const struct rec *)e)->seq == (uint64_t)got, "in order");
		got++;
		tg_ring_release(&r, e, sz);
	}
	CHECK(got == written, "read %d of %d", got, written);
	CHECK(tg_ring_reserve(&r, TG_RING_MAX_RECORD + 8) == NULL, "oversized record refused");
}

static void test_uncommitted_blocks_consumer(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(TG_RING_MIN_DATA, &r);
	uint8_t *p = tg_ring_reserve(&r, 64);
	CHECK(write_rec(&r, 0, 1, 8) == 0, "second write");
	CHECK(tg_ring_peek(&r, &sz) == NULL, "uncommitted record hides later ones");
	tg_ring_commit(p, 64, 3, 0);
	const struct tg_ev_hdr *e = tg_ring_peek(&r, &sz);
	CHECK(e && e->type == 3, "committed record visible");
	tg_ring_release(&r, e, sz);
	e = tg_ring_peek(&r, &sz);
	CHECK(e && check_rec(e), "then the next");
	tg_ring_release(&r, e, sz);
}

static void test_corrupt(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(TG_RING_MIN_DATA, &r);
	for (int i = 0; i < 10; i++)
		write_rec(&r, 0, (uint64_t)i, 16);
	/* Scribble a size that points past the head. */
	struct tg_ev_hdr *e = (struct tg_ev_hdr *)r.data;
	e->size = 1u << 20;
	CHECK(tg_ring_peek(&r, &sz) == NULL, "corrupt record not returned");
	CHECK(tg_ring_used(&r) == 0, "corrupt contents dropped");
	CHECK(write_rec(&r, 0, 99, 16) == 0, "ring usable after corruption");
	const struct tg_ev_hdr *g = tg_ring_peek(&r, &sz);
	CHECK(g && check_rec(g) && ((const struct rec *)g)->seq == 99, "new record intact");
	struct tg_ring bad;
	char junk[8192] = {0};
	CHECK(tg_ring_attach(&bad, junk, sizeof junk) < 0, "attach refuses a non-ring");
}

#define PRODUCERS 4
#define PER_PRODUCER 200000

struct mt {
	struct tg_ring *r;
	uint32_t id;
	uint64_t dropped;
	volatile int *done;
};

static void *producer(void *arg)
{
	struct mt *m = arg;
	for (uint64_t s = 0; s < PER_PRODUCER; s++)
		if (write_rec(m->r, m->id, s, (uint32_t)((s * 13 + m->id) % 300)) < 0)
			m->dropped++;
	return NULL;
}

static void test_threads(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(1u << 20, &r);
	pthread_t t[PRODUCERS];
	struct mt m[PRODUCERS];
	volatile int done = 0;
	for (uint32_t i = 0; i < PRODUCERS; i++) {
		m[i] = (struct mt){.r = &r, .id = i, .done = &done};
		pthread_create(&t[i], NULL, producer, &m[i]);
	}
	uint64_t next[PRODUCERS] = {0}, got[PRODUCERS] = {0};
	int bad = 0, finished = 0, joined[PRODUCERS] = {0};
	for (;;) {
		const struct tg_ev_hdr *e = tg_ring_peek(&r, &sz);
		if (!e) {
			if (finished)
				break;
			/* Done once every producer has returned and nothing is left. */
			int alive = 0;
			for (int i = 0; i < PRODUCERS; i++) {
				if (!joined[i] && pthread_tryjoin_np(t[i], NULL) == 0)
					joined[i] = 1;
				alive += !joined[i];
			}
			if (!alive)
				finished = 1; /* one more pass drains the rest */
			continue;
		}
		const struct rec *x = (const struct rec *)e;
		if (!check_rec(e) || x->producer >= PRODUCERS || x->seq < next[x->producer])
			bad++;
		else {
			next[x->producer] = x->seq + 1;
			got[x->producer]++;
		}
		tg_ring_release(&r, e, sz);
	}
	uint64_t total_got = 0, total_dropped = 0;
	for (int i = 0; i < PRODUCERS; i++) {
		total_got += got[i];
		total_dropped += m[i].dropped;
	}
	CHECK(bad == 0, "%d records corrupt or out of order", bad);
	CHECK(total_got + total_dropped == (uint64_t)PRODUCERS * PER_PRODUCER,
	      "got %llu + dropped %llu != sent %d", (unsigned long long)total_got,
	      (unsigned long long)total_dropped, PRODUCERS * PER_PRODUCER);
	CHECK(r.hdr->lost_events == total_dropped, "loss counter matches drops");
}

/* Producers that never let the ring pass half full: any drop is a false
 * "full". A small ring wraps often, and more threads than cores get
 * preempted between reading the ring's head and its tail. */
#define THROTTLED 4
#define PER_THROTTLED 300000

static void *throttled_producer(void *arg)
{
	struct mt *m = arg;
	struct tg_ring_hdr *h = m->r->hdr;
	uint64_t half = (m->r->mask + 1) / 2;
	for (uint64_t s = 0; s < PER_THROTTLED; s++) {
		while (__atomic_load_n(&h->head, __ATOMIC_ACQUIRE) -
			       __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE) >
		       half)
			sched_yield();
		if (write_rec(m->r, m->id, s, (uint32_t)(s % 64)) < 0)
			m->dropped++;
	}
	__atomic_store_n(m->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_no_false_full(void)
{
	uint32_t sz = 0;
	struct tg_ring r;
	map_ring(TG_RING_MIN_DATA, &r);
	pthread_t t[THROTTLED];
	struct mt m[THROTTLED];
	volatile int done[THROTTLED] = {0};
	for (uint32_t i = 0; i < THROTTLED; i++) {
		m[i] = (struct mt){.r = &r, .id = i, .done = &done[i]};
		pthread_create(&t[i], NULL, throttled_producer, &m[i]);
	}
	uint64_t got = 0;
	for (;;) {
		const struct tg_ev_hdr *e = tg_ring_peek(&r, &sz);
		if (e) {
			got += check_rec(e);
			tg_ring_release(&r, e, sz);
			continue;
		}
		int alive = 0;
		for (int i = 0; i < THROTTLED; i++)
			alive += !__atomic_load_n(&done[i], __ATOMIC_ACQUIRE);
		if (!alive && !tg_ring_peek(&r, &sz))
			break;
	}
	uint64_t dropped = 0;
	for (int i = 0; i < THROTTLED; i++) {
		pthread_join(t[i], NULL);
		dropped += m[i].dropped;
	}
	CHECK(dropped == 0, "%llu records dropped from a ring never more than half full",
	      (unsigned long long)dropped);
	CHECK(got == (uint64_t)THROTTLED * PER_THROTTLED, "got %llu of %d", (unsigned long long)got,
	      THROTTLED * PER_THROTTLED);
}

int main(void)
{
	test_basic();
	test_full_drops();
	test_uncommitted_blocks_consumer();
	test_corrupt();
	test_threads();
	test_no_false_full();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
