/*
 * collector/http_post.h - a small blocking HTTP/1.1 client that POSTs one
 * body and reads the answer's status line: what the OTLP exporter thread
 * (otlp_stream.c) needs to hand a batch of spans to a collector.
 *
 * Plain http:// over TCP only (IPv4, IPv6, host names). One connection per
 * request ("Connection: close"): a few requests a second, so no pooling and
 * no stale keep-alive connections to recover from. Every wait (name
 * lookup, connect, send, receive) is bounded by a deadline, which another
 * thread may bring forward while the request is under way.
 */
#ifndef TG_HTTP_POST_H
#define TG_HTTP_POST_H

#include <stddef.h>
#include <stdint.h>

struct tg_http_url {
	char host[256];     /* name or address, IPv6 without its brackets */
	char port[8];       /* "80" unless the URL names one */
	char authority[272]; /* HOST[:PORT] as the URL has it, for the Host header */
	char path[2048];    /* "/" at least, with the query if any */
};

/* Parses http://HOST[:PORT][/PATH[?QUERY]]. Returns 0, or -1 with
 * tg_fail() set (https and other schemes are refused with their own
 * message). */
int tg_http_url_parse(const char *url, struct tg_http_url *u);

/* POSTs body (len bytes, type content_type) to u, with headers ("Name:
 * value\r\n" lines, or NULL) added. *deadline_ns is a CLOCK_MONOTONIC time
 * read atomically all along (another thread may lower it); the request
 * gives up when it passes. Returns the status of the answer (100..599), or
 * -1 with tg_fail() set when no answer came (name not resolved, connection
 * refused or reset, timeout). */
int tg_http_post(const struct tg_http_url *u, const char *headers, const char *content_type, const void *body,
		 size_t len, const int64_t *deadline_ns);

#endif
