/*
 * lib/otlp.h - OpenTelemetry trace export of the store, in the OTLP/JSON
 * encoding (one ExportTraceServiceRequest per call), for
 * `timeglass export --format otlp-json` and for a streaming exporter that
 * sends the requests of a running run as they are stored.
 *
 * Per request one SERVER span; its SQL queries and outbound HTTP calls are
 * CLIENT spans below it. Ids are derived from a random key kept per run in
 * the store, so that two exports of the same rows agree; a request that came
 * with a valid W3C traceparent header joins that trace.
 *
 * The connection may be read-only; nothing is written. A request's children
 * are those stored when it is written: a streaming exporter that pages with
 * after_id should stay behind the requests whose queries may still arrive.
 * On failure, w may hold part of a document: the caller discards it.
 *
 * Mapping (OpenTelemetry semantic conventions), per process one
 * ResourceSpans (service.name, host.name, process.pid, telemetry.sdk.*) with
 * one scope "timeglass":
 *   request   SERVER span "METHOD route" (or path): http.*, url.path,
 *             url.query, client.address (the forwarded client, else the
 *             peer), network.peer.*, network.protocol.*, timeglass.request.id;
 *             ERROR for a 5xx; the exception as an "exception" event
 *   query     CLIENT span named by its first keyword: db.system(.name),
 *             db.query.text, db.namespace, db.response.returned_rows or
 *             db.response.status_code (SQLSTATE), code.*, timeglass.n_plus_one,
 *             .duplicate, .housekeeping, .query.id; ERROR if it failed
 *   call      CLIENT span "METHOD": url.full, server.*, http.*; ERROR if it
 *             failed or got a 4xx/5xx
 */
#ifndef TG_OTLP_H
#define TG_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "jsonw.h"

struct tg_otlp_opts {
	const char *service_name;   /* NULL: derived from the run's command (tg_otlp_default_service) */
	const char *host_name;      /* NULL: the run's stored hostname, else gethostname() */
};

/* Writes one ExportTraceServiceRequest (OTLP/JSON) to w: the requests of run run_id with
 * id > after_id, in id order, at most max_requests (<= 0: all), with their child spans.
 * request_id > 0 selects that one request only (run_id/after_id then ignored).
 * Sets *last_id to the last request id written (after_id if none), *nspans to the spans written.
 * Returns 0, or -1 with a message in err[errlen]. */
int tg_otlp_write(sqlite3 *db, const struct tg_otlp_opts *o, int64_t run_id, int64_t request_id,
                  int64_t after_id, int max_requests, struct jw *w, int64_t *last_id, long *nspans,
                  char *err, size_t errlen);

/* The service name derived from a run's command line (argv joined by
 * spaces, as stored in runs.command): the application module of
 * `uvicorn main:app` ("main"), else the base name of the program run
 * ("python3 app.py" gives "app"). Writes at most n bytes with the NUL to
 * out; "timeglass" when nothing better is found. Returns out. */
char *tg_otlp_default_service(const char *command, char *out, size_t n);

#endif
