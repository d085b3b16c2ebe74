/*
 * net.h - the target of `timeglass bench`: URL parsing, address
 * resolution, the loopback rule, and one request/response exchange on a
 * fresh connection with a deadline (used by discovery and the probe; the
 * load phase has its own event loop in load.h).
 *
 * Functions that can fail return -1 with a message in err (LG_ERR_MAX).
 */
#ifndef LG_NET_H
#define LG_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resp.h"

#define LG_ERR_MAX 256

struct lg_target {
	char host[256];          /* as written in the URL (brackets stripped) */
	char hostport[300];      /* for the Host header: host[:port] as written */
	uint16_t port;
	char base[512];          /* path prefix of the URL without the trailing '/', "" for none */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int loopback;            /* the resolved address is a loopback address */
};

/* Parses "http://host[:port][/base]" and resolves host. https is refused
 * (the generator speaks plain HTTP/1.1). */
int lg_target_parse(const char *url, struct lg_target *t, char err[LG_ERR_MAX]);

/* 1 if the address is loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
int lg_addr_is_loopback(const struct sockaddr *sa);

struct lg_exchange {
	struct lg_resp resp;     /* the response; its body kept up to body_cap */
	int64_t latency_ns;      /* from the connect to the response's last byte */
	int64_t sent_unix_ns;    /* wall clock when the request was sent */
	uint16_t local_port;     /* the client's port (the server's peer port) */
	int error;               /* 0, or errno-style: ETIMEDOUT, ECONNRESET, EPROTO ... */
};

/* Sends req (len bytes) on a new connection and reads one response within
 * timeout_ms. A transport failure is not a -1: it is x->error, with
 * resp.status 0. head: the request is HEAD. Free x->resp with lg_resp_free. */
void lg_exchange(const struct lg_target *t, const char *req, size_t len, int head, int timeout_ms,
		 size_t body_cap, struct lg_exchange *x);

/* Tries to connect within timeout_ms; 0 when the target accepts. */
int lg_wait_listening(const struct lg_target *t, int timeout_ms);

int64_t lg_mono_ns(void);
int64_t lg_wall_ns(void);

#endif
