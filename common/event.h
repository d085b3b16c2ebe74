/*
 * event.h - the binary records that the preload library appends to its
 * shared-memory ring and the collector reads back.
 *
 * Both sides are built from this one header, and a ring carries its layout
 * version in its header (TG_RING_VERSION), so a library and a collector of
 * different builds refuse each other instead of misreading bytes.
 *
 * Every record starts with struct tg_ev_hdr, is a multiple of 8 bytes long and
 * never straddles the end of the ring (see ring.h). Times are CLOCK_MONOTONIC
 * nanoseconds; the collector converts them to Unix time.
 */
#ifndef TG_EVENT_H
#define TG_EVENT_H

#include <stdint.h>

#define TG_RING_MAGIC 0x474e495253474c54ull /* "TLGSRING" */
#define TG_RING_VERSION 5u

/* Registration message a process sends over the collector's Unix socket,
 * together with its ring's memfd as SCM_RIGHTS. The collector learns the pid
 * from SO_PEERCRED and the command line from /proc. */
#define TG_HELLO_MAGIC 0x4f4c4c4548475400ull /* "\0TGHELLO" */
struct tg_hello {
	uint64_t magic;
	uint32_t version;    /* TG_RING_VERSION */
	int32_t pid;         /* getpid() of the sender */
	int32_t ppid;        /* getppid() of the sender */
	uint32_t flags;      /* TG_HELLO_* */
	uint64_t ring_bytes; /* size of the memfd, header page included */
	uint64_t mono_ns;    /* CLOCK_MONOTONIC at registration */
};
#define TG_HELLO_AFTER_FORK 1u /* registered from a fork child, not exec */

enum tg_ev_type {
	TG_EV_PAD = 1,     /* filler to the end of the ring: skip */
	TG_EV_REQUEST = 2, /* struct tg_ev_request: one finished HTTP request */
	TG_EV_MARK = 3,    /* struct tg_ev_mark: the Python side names a request */
	/* SQL and outbound calls: layouts in event_sql.h */
	TG_EV_QUERY = 4,
	TG_EV_HTTP_CALL = 5,
	TG_EV_REQ_SCOPE = 6, /* a thread or task enters/leaves a request (marker) */
	TG_EV_REQ_FIXUP = 7, /* struct tg_ev_req_fixup: a request emitted as complete was not */
	/* Python stacks: layouts in event_py.h */
	TG_EV_SAMPLE = 16,
	TG_EV_CODE = 17,
	TG_EV_PY_INFO = 18,
};

struct tg_ev_hdr {
	uint32_t size; /* bytes, header included, multiple of 8; written last: 0 = not committed */
	uint16_t type; /* enum tg_ev_type */
	uint16_t flags;
};

/* Why a request ended other than with a complete response. */
enum tg_req_error {
	TG_REQ_OK = 0,
	TG_REQ_CLIENT_CLOSED_MID_REQUEST = 1,     /* peer went away before the request was complete */
	TG_REQ_CLIENT_CLOSED_BEFORE_RESPONSE = 2, /* request complete, no response byte written */
	TG_REQ_CLOSED_MID_RESPONSE = 3,           /* response started, connection ended early */
	TG_REQ_MALFORMED = 4,                     /* bytes that are not HTTP/1.x: connection untracked */
	TG_REQ_TOO_MANY_PIPELINED = 5,            /* no memory to follow the pipelining: untracked */
	TG_REQ_SERVER_CLOSED_BEFORE_RESPONSE = 6, /* the app closed the socket without answering */
};

/* tg_ev_request.flags */
#define TG_REQF_HEAD 0x01              /* HEAD request (response has no body) */
#define TG_REQF_UPGRADE 0x02           /* 101 Switching Protocols: rest of connection ignored */
#define TG_REQF_TARGET_TRUNCATED 0x04  /* request target cut at the cap (after redaction) */
#define TG_REQF_HEADERS_TRUNCATED 0x08 /* header text longer than the cap */
#define TG_REQF_CHUNKED_REQ 0x10       /* request body was chunked */
#define TG_REQF_CHUNKED_RESP 0x20      /* response body was chunked */
#define TG_REQF_CONTINUE 0x40          /* server sent 100 Continue */
#define TG_REQF_ASGI 0x80              /* in-process request reported by the marker (no wire) */

/*
 * One finished request. Followed by method_len bytes of method, target_len
 * bytes of request target (path?query as sent, secret query values redacted,
 * capped) and headers_len bytes of request header text ("Name: value\n"
 * lines, secrets redacted, capped),
 * then zero padding to a multiple of 8. Strings are not NUL-terminated.
 */
struct tg_ev_request {
	struct tg_ev_hdr h;
	uint32_t tid;            /* thread that read the request's first byte */
	uint16_t status;         /* final status code, 0 if none was seen */
	uint16_t error;          /* enum tg_req_error */
	uint64_t conn_id;        /* per-process connection number, from 1 */
	uint64_t start_ns;       /* first request byte read */
	uint64_t req_end_ns;     /* last request byte read, 0 if never complete */
	uint64_t resp_start_ns;  /* first response byte written, 0 if none */
	uint64_t end_ns;         /* last response byte written, or when it failed */
	uint64_t request_bytes;  /* request line + headers + body as read */
	uint64_t response_bytes; /* interim and final responses as written */
	uint8_t http_minor;      /* 0 or 1 for HTTP/1.0 or HTTP/1.1 */
	uint8_t flags;           /* TG_REQF_* */
	uint8_t client_family;   /* AF_INET, AF_INET6, AF_UNIX or 0 */
	uint8_t pad0;
	uint16_t client_port;    /* host byte order */
	uint16_t method_len;
	uint16_t target_len;
	uint16_t headers_len;
	uint16_t route_len;      /* route template, after the headers; 0 on the wire path */
	uint16_t pad1;
	uint8_t client_addr[16]; /* 4 bytes for AF_INET, 16 for AF_INET6 */
	/* The W3C trace context the request arrived with (a valid traceparent
	 * header): the trace id and the caller's span id; all zero if none. */
	uint8_t trace_id[16];
	uint8_t parent_span_id[8];
	/* char data[] follows */
};

/*
 * Responses are parsed before they are written, so a request is in the ring
 * before its client can have the response. When the connection then ends
 * with some of those bytes never taken by the kernel, this record corrects
 * the last request emitted on it: error and unsent byte count.
 */
struct tg_ev_req_fixup {
	struct tg_ev_hdr h;
	uint32_t tid;
	uint16_t error;        /* enum tg_req_error, TG_REQ_CLOSED_MID_RESPONSE */
	uint16_t pad0;
	uint64_t conn_id;
	uint64_t start_ns;     /* start_ns of the request to correct */
	uint64_t unsent_bytes; /* response bytes counted but never sent */
	uint64_t ts_ns;        /* CLOCK_MONOTONIC when the connection ended */
};

/* What a TG_EV_MARK says about the wire request it names. */
enum tg_mark_kind {
	TG_MARK_ROUTE = 1,     /* text = route template, e.g. "/items/{item_id}" */
	TG_MARK_EXCEPTION = 2, /* text = exception type, message and traceback (capped) */
};

/*
 * The marker (Python middleware or bootstrap) names a request in flight on
 * this process. With a scope token (the request's TG_EV_REQ_SCOPE), the
 * collector joins it to the request that scope was joined to, even when it
 * arrives after the request record; without one (older markers), to the
 * TG_EV_REQUEST of the same client that was in flight at ts_ns. Followed by
 * text_len bytes of text.
 */
struct tg_ev_mark {
	struct tg_ev_hdr h;
	uint32_t tid;
	uint16_t kind;          /* enum tg_mark_kind */
	uint16_t text_len;
	uint64_t ts_ns;         /* CLOCK_MONOTONIC when the marker ran */
	uint8_t client_family;  /* AF_INET, AF_INET6, or 0 if unknown */
	uint8_t pad0;
	uint16_t client_port;   /* host byte order */
	uint32_t pad1;
	uint8_t client_addr[16];
	uint64_t token;         /* request scope token, 0 if none */
	/* char text[] follows */
};

#endif
