/*
 * collector/stacks.h - the collector's side of the Python stack sampler: decoding
 * TG_EV_CODE, TG_EV_SAMPLE and TG_EV_PY_INFO records, resolving (code,
 * instruction) pairs to function, file and line, deduplicating frames and
 * stacks, attributing samples to requests and writing aggregated counts.
 *
 * Native frames (--native): named through symbolize/ and merged with the
 * Python frames: each native call of the eval loop (_PyEval_EvalFrameDefault)
 * is replaced by the Python frames it ran, innermost first; Python frames
 * left over (the native stack was cut short) go on the root side.
 *
 * Attribution, in order: the request scope token the sample carries (the
 * process's scope table, scopes.h, knows its request); without one, the
 * only request of the process in flight on the sample's thread at its time;
 * without the marker, a running sample of another thread goes to the only
 * request of the process in flight at all; else none ("no request").
 * Samples wait for their request's record (written when the response
 * completes) for up to a few seconds, then are written aggregated per
 * (request, stack, state).
 */
#ifndef TG_STACKS_H
#define TG_STACKS_H

#include <stdint.h>

#include "common/event.h"
#include "collector/scopes.h"
#include "lib/store.h"

struct tg_stacks_ctx {
	struct tg_store *store;
	int64_t run_id;
	int64_t process_id;   /* 0 = NULL */
	int64_t mono_to_unix; /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns */
	int pid;              /* the app process: its maps name native frames */
	const struct tg_scopes *scopes; /* the process's request scopes */
};

struct tg_stacks_proc;

/* Per-process state; NULL on ENOMEM. */
struct tg_stacks_proc *tg_stacks_proc_new(void);

/* Frees the state; call tg_stacks_settle(..., final 1) first. NULL is fine. */
void tg_stacks_proc_free(struct tg_stacks_proc *p);

/* Takes a TG_EV_CODE, TG_EV_SAMPLE, TG_EV_PY_INFO or TG_EV_PY_FUNC record
 * (private copy, size bytes). Returns 0, or -1 when it is malformed. */
int tg_stacks_record(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const void *rec, uint32_t size,
		     int64_t now_ns);

/* A request record r was stored as row request_id (0 if it was not). */
void tg_stacks_request(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_request *r,
		       int64_t request_id);

/* Attributes and writes the samples that waited long enough (final: all). */
void tg_stacks_settle(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, int64_t now_ns, int final);

#endif
