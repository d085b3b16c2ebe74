/*
 * lib/losses.h - what each kind of row in the losses table means, decided once
 * for every view: `timeglass runs` (LOST), `timeglass requests` (its
 * warning), `timeglass score` and `timeglass ci` (their recording line and
 * JSON), and the dashboard (GET /api/overview, /api/runs, /api/score).
 *
 * Two classes:
 *  - a loss: activity of the app that the recording misses. Records dropped
 *    on a full ring (requests, queries, calls or samples), connections not
 *    tracked, pipelined requests not kept, corrupt records, rows the store
 *    could not write. Figures may
 *    be short; views show it as a warning. Kinds this build does not know
 *    (written by a newer recorder) count as losses.
 *  - sampling: the stack sampler took fewer samples than its rate, by
 *    design: it lowered its rate to stay within its CPU budget (ticks not
 *    taken), or dropped a sample whose stack changed while it was read, or
 *    skipped one while another thread was sampling. Requests, queries and
 *    calls are complete; flame graphs have fewer samples. Views show it as
 *    information, never as a loss. (Samples dropped on a full ring are in
 *    both: the ring_full loss counts every record the ring refused.)
 *  - export: spans that `timeglass run --otlp-endpoint` could not deliver
 *    to its endpoint. The store has them all; views show them apart, never
 *    as data missing from the store.
 *
 * The store's reader connection may be read-only; nothing is written.
 */
#ifndef TG_LOSSES_H
#define TG_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

enum tg_loss_class {
	TG_LOSS_DATA,     /* recorded activity is missing */
	TG_LOSS_SAMPLING, /* fewer stack samples, by design */
	TG_LOSS_EXPORT,   /* the store is complete; a copy sent elsewhere is not */
};

/* Which run total a kind's events add to. */
enum tg_loss_total {
	TG_TOTAL_LOST,            /* events lost (class TG_LOSS_DATA) */
	TG_TOTAL_SAMPLES_DROPPED, /* stack samples taken but not kept */
	TG_TOTAL_TICKS_SKIPPED,   /* sampler ticks not taken under the CPU budget */
	TG_TOTAL_NOT_EXPORTED,    /* spans the OTLP stream did not deliver */
	TG_TOTAL_COUNT,
};

struct tg_loss_kind {
	const char *kind;           /* as written in losses.kind */
	enum tg_loss_class cls;
	enum tg_loss_total total;
	int hides_requests;         /* requests (with their queries) may be missing */
	const char *label;          /* short, for lists: "ring full" */
	const char *what;           /* one sentence for people */
};

/* The description of kind; an unknown kind gets a generic counted loss
 * entry (whose kind is "" : print the row's own kind). Never NULL. */
const struct tg_loss_kind *tg_loss_kind(const char *kind);

/* "loss", "sampling" or "export" (JSON and the dashboard). */
const char *tg_loss_class_name(enum tg_loss_class cls);

/* JSON names of the run totals: "lost_events", "samples_dropped",
 * "sample_ticks_skipped", "spans_not_exported". */
const char *tg_loss_total_name(enum tg_loss_total t);

/* One kind's rows of a run, summed. */
struct tg_loss_row {
	char kind[64];
	const struct tg_loss_kind *k;
	int64_t records, events, bytes;
};

struct tg_losses {
	struct tg_loss_row *rows;   /* ordered by kind */
	size_t n;
	int64_t total[TG_TOTAL_COUNT];
	int64_t lost_requests;      /* lost events of kinds that hide requests */
};

/* Reads the losses of run_id into l (rows and totals). A store without a
 * losses table has none. Returns 0, or -1 with tg_fail() set; free with
 * tg_losses_free() either way. */
int tg_losses_read(sqlite3 *db, int64_t run_id, struct tg_losses *l);

void tg_losses_free(struct tg_losses *l);

/* One line about the losses, without a final period: "no data lost", or
 * "7 events lost (ring full: 5, store errors: 2): requests, queries, calls
 * or samples may be missing" ("(ring full)" when one kind). Returns buf. */
const char *tg_losses_text(const struct tg_losses *l, char *buf, size_t cap);

/* One line about sampling, or "" when the sampler took every sample:
 * "sampling rate lowered under the CPU budget (2094 sampler ticks not
 * taken); 16 stack samples dropped (stack changed while read); flame
 * graphs have fewer samples, nothing else is missing". Returns buf. */
const char *tg_losses_sampling_text(const struct tg_losses *l, char *buf, size_t cap);

#endif
