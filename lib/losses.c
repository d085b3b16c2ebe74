/*
 * lib/losses.c - the kinds of the losses table and the two lines every view
 * prints about them (see losses.h). The collector writes the kinds:
 * ring_full, untracked_conn, pipeline_overflow, ring_corrupt, store_error and
 * store_error_rows
 * (collector.c),
 * py_sample_race, py_sample_ring_full, py_sample_budget and py_sample_busy
 * (stacks.c), otlp_export_failed (otlp_stream.c, through collector.c).
 */
#include "lib/losses.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "lib/util.h"

static const struct tg_loss_kind kinds[] = {
	{"ring_full", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "ring full",
	 "records dropped because the ring was full: requests, queries, calls or samples are missing"},
	{"untracked_conn", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "untracked connections",
	 "connections not recorded (not HTTP/1.x, or no room to track them): their requests are missing"},
	{"pipeline_overflow", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "pipelined requests not kept",
	 "requests pipelined on one connection beyond the details kept per connection (1 MiB): answered or "
	 "ended, but not recorded"},
	{"ring_corrupt", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "corrupt records",
	 "records skipped because they were corrupt"},
	{"store_error", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "requests not stored",
	 "requests the store could not write (a full disk, an I/O error)"},
	{"store_error_rows", TG_LOSS_DATA, TG_TOTAL_LOST, 1, "records not stored",
	 "queries, calls, samples and metrics the store could not write (a full disk, an I/O error)"},
	{"py_sample_budget", TG_LOSS_SAMPLING, TG_TOTAL_TICKS_SKIPPED, 0, "sampling rate lowered",
	 "sampler ticks not taken: the sampler lowered its rate to stay within its CPU budget (not a loss)"},
	{"py_sample_race", TG_LOSS_SAMPLING, TG_TOTAL_SAMPLES_DROPPED, 0, "stack changed while read",
	 "stack samples dropped because the stack changed while it was read"},
	{"py_sample_busy", TG_LOSS_SAMPLING, TG_TOTAL_SAMPLES_DROPPED, 0, "another thread was sampling",
	 "samples a thread skipped because another thread was taking one"},
	{"py_sample_ring_full", TG_LOSS_SAMPLING, TG_TOTAL_SAMPLES_DROPPED, 0, "ring full, among the events lost",
	 "stack samples dropped because the ring was full (also counted in the ring full loss)"},
	{"otlp_export_failed", TG_LOSS_EXPORT, TG_TOTAL_NOT_EXPORTED, 0, "OTLP export failed",
	 "spans that could not be delivered to the OTLP endpoint (down, refusing them or too slow); the store "
	 "has them all"},
};

static const struct tg_loss_kind unknown = {
	"", TG_LOSS_DATA, TG_TOTAL_LOST, 1, NULL, "records of a kind this TimeGlass does not know were lost",
};

const struct tg_loss_kind *tg_loss_kind(const char *kind)
{
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (kind && !strcmp(kinds[i].kind, kind))
			return &kinds[i];
	return &unknown;
}

const char *tg_loss_class_name(enum tg_loss_class cls)
{
	return cls == TG_LOSS_DATA ? "loss" : cls == TG_LOSS_SAMPLING ? "sampling" : "export";
}

const char *tg_loss_total_name(enum tg_loss_total t)
{
	static const char *const names[TG_TOTAL_COUNT] = {"lost_events", "samples_dropped", "sample_ticks_skipped",
								    "spans_not_exported"};
	return t < TG_TOTAL_COUNT ? names[t] : "";
}

int tg_losses_read(sqlite3 *db, int64_t run_id, struct tg_losses *l)
{
	memset(l, 0, sizeof *l);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT kind, count(*), coalesce(sum(events), 0), coalesce(sum(bytes), 0) FROM losses"
			       " WHERE run_id = ? GROUP BY kind ORDER BY kind",
			       -1, &st, NULL) != SQLITE_OK) {
		/* a store too old or too damaged for a losses table has no losses to show */
		if (sqlite3_errcode(db) == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "no such table"))
			return 0;
		return tg_fail("reading losses: %s", sqlite3_errmsg(db));
	}
	sqlite3_bind_int64(st, 1, run_id);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && TG_GROW(l->rows, l->n, cap, 8) == 0) {
		struct tg_loss_row *r = &l->rows[l->n++];
		const char *kind = (const char *)sqlite3_column_text(st, 0);
		tg_strlcpy(r->kind, kind ? kind : "?", sizeof r->kind);
		r->k = tg_loss_kind(r->kind);
		r->records = sqlite3_column_int64(st, 1);
		r->events = sqlite3_column_int64(st, 2);
		r->bytes = sqlite3_column_int64(st, 3);
		l->total[r->k->total] += r->events;
		if (r->k->hides_requests)
			l->lost_requests += r->events;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) /* a row without memory for it, or an error */
		return rc == SQLITE_ROW ? tg_fail("out of memory") : tg_fail("reading losses: %s", sqlite3_errmsg(db));
	return 0;
}

void tg_losses_free(struct tg_losses *l)
{
	free(l->rows);
	memset(l, 0, sizeof *l);
}

/* Appends the labels of the rows adding to total t, comma-separated, each
 * with its events ("ring full: 5, store errors: 2") unless it is the only
 * one ("ring full"). Returns the new length of buf. */
static size_t list_kinds(const struct tg_losses *l, enum tg_loss_total t, char *buf, size_t cap, size_t used)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += l->rows[i].k->total == t && l->rows[i].events > 0;
	int first = 1;
	for (size_t i = 0; i < l->n && used < cap; i++) {
		const struct tg_loss_row *r = &l->rows[i];
		if (r->k->total != t || r->events <= 0)
			continue;
		const char *label = r->k->label ? r->k->label : r->kind;
		if (n == 1)
			used += (size_t)snprintf(buf + used, cap - used, "%s", label);
		else
			used += (size_t)snprintf(buf + used, cap - used, "%s%s: %" PRId64, first ? "" : ", ", label,
						 r->events);
		first = 0;
	}
	return used < cap ? used : cap - 1;
}

const char *tg_losses_text(const struct tg_losses *l, char *buf, size_t cap)
{
	if (!cap)
		return buf;
	int64_t lost = l->total[TG_TOTAL_LOST];
	if (lost <= 0) {
		snprintf(buf, cap, "no data lost");
		return buf;
	}
	size_t used = (size_t)snprintf(buf, cap, "%" PRId64 " events lost (", lost);
	if (used >= cap)
		return buf;
	used = list_kinds(l, TG_TOTAL_LOST, buf, cap, used);
	snprintf(buf + used, cap - used, "): requests, queries, calls or samples may be missing");
	return buf;
}

const char *tg_losses_sampling_text(const struct tg_losses *l, char *buf, size_t cap)
{
	if (!cap)
		return buf;
	buf[0] = '\0';
	int64_t ticks = l->total[TG_TOTAL_TICKS_SKIPPED], dropped = l->total[TG_TOTAL_SAMPLES_DROPPED];
	size_t used = 0;
	if (ticks > 0)
		used = (size_t)snprintf(buf, cap, "sampling rate lowered under the CPU budget (%" PRId64
					" sampler ticks not taken)", ticks);
	if (dropped > 0 && used < cap) {
		used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64 " stack samples dropped (", used ? "; " : "",
					 dropped);
		if (used < cap)
			used = list_kinds(l, TG_TOTAL_SAMPLES_DROPPED, buf, cap, used);
		if (used < cap)
			used += (size_t)snprintf(buf + used, cap - used, ")");
	}
	if (used && used < cap)
		snprintf(buf + used, cap - used, "; flame graphs have fewer samples%s",
			 l->total[TG_TOTAL_LOST] > 0 ? "" : ", nothing else is missing");
	return buf;
}
