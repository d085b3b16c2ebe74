/*
 * collector/record.h - turns the preload library's binary records (common/event.h)
 * into store rows, and names their enums for people and JSON.
 *
 * The decoder takes a private copy of a record (never the shared ring
 * itself) and checks every length and value before using it.
 */
#ifndef TG_RECORD_H
#define TG_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "lib/store.h"

#define TG_ADDR_MAX 64 /* bytes for "[v6 address]:port" and its NUL */

/* Fills row from the request record rec (size bytes, 8-aligned copy).
 * mono_to_unix converts its CLOCK_MONOTONIC times to Unix time. Strings in
 * row point into rec, except client_addr (written to addr) and constant
 * texts. run_id, process_id and pid are left for the caller. Returns 0, or
 * -1 if the record is malformed (lengths beyond the record, impossible
 * times or enum values). */
int tg_decode_request(const void *rec, uint32_t size, int64_t mono_to_unix, struct tg_request_row *row,
		      char addr[TG_ADDR_MAX]);

/* A mark record (the marker naming a wire request), decoded. text points
 * into the record. */
struct tg_mark {
	unsigned kind;          /* enum tg_mark_kind */
	uint32_t tid;           /* thread that ran the marker */
	uint64_t ts_ns;         /* CLOCK_MONOTONIC */
	uint8_t family;         /* AF_INET, AF_INET6 or 0 */
	uint16_t port;
	uint8_t addr[16];
	uint64_t token;         /* request scope token, 0 if none */
	const char *text;
	size_t text_len;
};

#define TG_FORWARDED_MAX 128 /* bytes of a forwarded client address kept */

/* The client a proxy forwarded a request for, from its header text
 * ("Name: value\n" lines): the first address of X-Forwarded-For, else the
 * first for= of Forwarded, else X-Real-IP; *out NULL if none. Points into
 * headers. */
void tg_forwarded_for(const char *headers, size_t n, const char **out, size_t *out_len);

/* Decodes a TG_EV_MARK record (size bytes, private copy). Returns 0 or -1
 * when malformed. */
int tg_decode_mark(const void *rec, uint32_t size, struct tg_mark *m);

/* 1 if mark m names request record request_rec (already validated by
 * tg_decode_request): the same client for a wire request, the same thread
 * for an in-process (ASGI) one, which has no socket to go by. */
int tg_mark_matches(const struct tg_mark *m, const void *request_rec);

/* Splits a request target into path and query. Origin form "/p?q" gives
 * "/p" and "q"; absolute form "http://host/p?q" gives "/p" and "q"; anything
 * else is the path as is. *query is NULL when there is no '?'. */
void tg_split_target(const char *t, size_t n, const char **path, size_t *path_len, const char **query,
		     size_t *query_len);

/* Text of an enum tg_req_error value; NULL for TG_REQ_OK or unknown. */
const char *tg_req_error_text(unsigned error);

#endif
