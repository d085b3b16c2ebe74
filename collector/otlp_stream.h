/*
 * collector/otlp_stream.h - streams the spans of a running `timeglass run`
 * to an OpenTelemetry endpoint over OTLP/HTTP (JSON encoding, POST to
 * .../v1/traces), while the app runs.
 *
 * The exporter reads back what the collector committed: a thread of the
 * collector with its own read-only connection to the store (WAL lets it
 * read while the collector writes) wakes every second, encodes the
 * requests stored since its cursor (those at least a second old, so that
 * their queries and late route names are in) in batches with
 * tg_otlp_write() (lib/otlp.h) and POSTs each batch. Memory is one batch
 * and the cursor. The collector's write path never waits for it; a slow or
 * absent endpoint costs the thread's retries and nothing else.
 *
 * A batch the endpoint does not take is retried (connection errors, 429,
 * 502, 503, 504) with backoff - 0.5 s doubling to 4 s, five attempts - then
 * dropped; 413 (too large) sends the same requests again in smaller
 * batches; other answers drop it at once. The spans of a dropped batch are
 * counted: tg_otlp_stream_take_lost() hands them to the collector, which
 * writes them as losses of kind "otlp_export_failed", so the spans the run
 * has are always spans delivered + spans counted lost. At the run's end
 * the rest is sent within a few seconds; what cannot be is counted too.
 */
#ifndef TG_OTLP_STREAM_H
#define TG_OTLP_STREAM_H

#include <stdint.h>

#include <sqlite3.h>

#include "collector/http_post.h"

/* Where and how to stream, worked out by the supervisor before the run. */
struct tg_otlp_conf {
	char url[2048];      /* the traces URL, as POSTed to */
	struct tg_http_url target;
	char *headers;       /* "Name: value\r\n" lines to add, malloc'd, or NULL */
	char service[256];   /* service.name; "" = derived from the command (lib/otlp.h) */
	const char *from;    /* where the URL came from, for messages */
};

/* Reads the configuration: opt_endpoint (--otlp-endpoint: a base URL that
 * gets "/v1/traces", unless it ends with that already; "" = no streaming),
 * else $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is), else
 * $OTEL_EXPORTER_OTLP_ENDPOINT (+ "/v1/traces"); headers from
 * $OTEL_EXPORTER_OTLP_TRACES_HEADERS or $OTEL_EXPORTER_OTLP_HEADERS
 * ("k=v,k2=v2", values URL-decoded); the service name from opt_service
 * (--service-name) or $OTEL_SERVICE_NAME. The environment is only read.
 * Returns 1 (stream, c filled: free with tg_otlp_conf_free), 0 (no
 * endpoint; or an endpoint from the environment this exporter cannot use,
 * which is warned about), or -1 with tg_fail() set when opt_endpoint or
 * opt_service is unusable. */
int tg_otlp_conf_read(const char *opt_endpoint, const char *opt_service, struct tg_otlp_conf *c);

void tg_otlp_conf_free(struct tg_otlp_conf *c);

struct tg_otlp_stream;

/* Starts the exporter thread on run run_id of the store at db_path (which
 * exists), before the run has requests; db is the writer's connection,
 * read once here to skip the requests of older runs. c must stay valid
 * until tg_otlp_stream_finish. Returns NULL with tg_fail() set when the
 * thread cannot start. */
struct tg_otlp_stream *tg_otlp_stream_start(const struct tg_otlp_conf *c, const char *db_path, int64_t run_id,
					    sqlite3 *db);

/* Spans dropped since the last call (the caller stores them as a loss). */
int64_t tg_otlp_stream_take_lost(struct tg_otlp_stream *s);

/* Call once everything of the run is committed: sends the rest within
 * budget_ns (none when the last POST failed, or a POST under way is cut
 * short; sooner when the endpoint is found down), counts what was not
 * delivered as lost, ends the thread. Then read the totals and
 * tg_otlp_stream_take_lost() a last time, and free with
 * tg_otlp_stream_free(). */
void tg_otlp_stream_finish(struct tg_otlp_stream *s, int64_t budget_ns);

/* Spans delivered and spans lost over the whole run. */
void tg_otlp_stream_totals(struct tg_otlp_stream *s, int64_t *sent, int64_t *lost);

void tg_otlp_stream_free(struct tg_otlp_stream *s);

#endif
