/*
 * ring.h - a multi-producer, single-consumer byte ring in shared memory.
 *
 * Every traced process owns one ring (a memfd of TG_RING_HDR_BYTES + a
 * power-of-two data area) that all its threads append records to and that the
 * collector, another process, drains. Producers never block and never wait
 * for the consumer: when the ring is full the record is dropped and counted in
 * lost_events/lost_bytes, which the collector stores as a loss.
 *
 * Protocol. `head` and `tail` are absolute byte positions (they only grow).
 * A producer reserves [head, head+n) with a CAS on head, writes the record
 * body, then publishes the header's `size` with a release store. A record never
 * straddles the end of the data area: a producer that would cross it first
 * reserves the remainder and fills it with a TG_EV_PAD record. The consumer
 * reads the header at tail with an acquire load; size 0 means the producer has
 * not committed yet, so it stops there. After using a record it zeroes the
 * record's bytes (so stale bytes never look committed on the next lap) and
 * advances tail with a release store.
 */
#ifndef TG_RING_H
#define TG_RING_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define TG_RING_HDR_BYTES 4096u
#define TG_RING_MIN_DATA (64u * 1024u)
#define TG_RING_MAX_DATA (1u << 30)
#define TG_RING_MAX_RECORD (64u * 1024u) /* bytes; larger records are refused */

struct tg_ring_hdr {
	uint64_t magic;          /* TG_RING_MAGIC */
	uint32_t version;        /* TG_RING_VERSION */
	uint32_t hdr_bytes;      /* TG_RING_HDR_BYTES */
	uint64_t data_bytes;     /* size of the data area, a power of two */
	uint8_t pad0[64 - 24];
	uint64_t head;           /* producers' next byte (atomic), own cache line */
	uint8_t pad1[56];
	uint64_t tail;           /* consumer's next byte (atomic), own cache line */
	uint8_t pad2[56];
	uint64_t lost_events;    /* records dropped because the ring was full (atomic) */
	uint64_t lost_bytes;     /* their size in bytes (atomic) */
	uint64_t untracked_conns; /* connections given up on (not HTTP, no memory) (atomic) */
	uint64_t lost_requests;  /* requests followed without details, so not recorded (atomic) */
};

struct tg_ring {
	struct tg_ring_hdr *hdr;
	uint8_t *data;
	uint64_t mask; /* data_bytes - 1 */
};

/* Formats a fresh ring in `mem` (map_bytes long, header page included).
 * Returns 0, or -1 if map_bytes is not header + power of two in range. */
int tg_ring_format(void *mem, size_t map_bytes);

/* Attaches to a ring formatted by anyone. Returns 0, or -1 if the header is
 * not a ring of this version or its size does not fit map_bytes. */
int tg_ring_attach(struct tg_ring *r, void *mem, size_t map_bytes);

/* Producer: reserves space for a record of `size` bytes (rounded up to 8),
 * header included. Returns a pointer to write the record at, or NULL if the
 * ring is full (the loss is counted). Finish with tg_ring_commit(). */
void *tg_ring_reserve(struct tg_ring *r, uint32_t size);

/* Producer: publishes a reserved record; `type` and `flags` go to its header. */
void tg_ring_commit(void *rec, uint32_t size, uint16_t type, uint16_t flags);

/* Convenience: reserve, copy `size` bytes of `rec` (its header is filled in
 * here), commit. Returns 0 or -1 when the record was dropped. */
int tg_ring_write(struct tg_ring *r, const void *rec, uint32_t size, uint16_t type);

/* Consumer: the next committed record, or NULL if none is ready. PAD records
 * are skipped internally. *size gets the record's size as checked here (the
 * header lives in memory the producer can still write: use this copy, not
 * ev->size). The record stays valid until tg_ring_release(). */
const struct tg_ev_hdr *tg_ring_peek(struct tg_ring *r, uint32_t *size);

/* Consumer: frees the record returned by the last tg_ring_peek(), whose
 * checked size was `size`. */
void tg_ring_release(struct tg_ring *r, const struct tg_ev_hdr *ev, uint32_t size);

/* Bytes written but not yet consumed (committed or not). */
uint64_t tg_ring_used(const struct tg_ring *r);

#endif
