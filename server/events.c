/*
 * events.c - /api/events, the live-update stream (Server-Sent Events).
 *
 * One poller thread reads a small summary of the store (state, runs, newest
 * run and whether it records, highest request id) every 500 ms while any
 * stream is open, and publishes it; each stream sends it as a "state" event
 * when it changed, and a comment line every 15 s keeps proxies and the
 * browser from timing the stream out. The page re-reads what it shows when
 * an event arrives. However many streams are open, the store is read once
 * per period.
 *
 * A stream holds one civetweb worker thread until the browser goes away or
 * the server stops. At most TG_EVENTS_MAX_STREAMS streams are served at once,
 * and the server runs that many workers on top of those it keeps for the
 * API (server.c), so streams never take the API's workers. One stream more
 * is answered 503 "too_many_streams" with Retry-After, and closed. A stream
 * watches its socket: when the client goes away, its worker is free again
 * within TICK_MS.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "server.h"

#define TICK_MS 100
#define EVENT_EVERY_MS 500
#define PING_EVERY_MS 15000
#define PROBE_EVERY_MS 1000 /* without the socket: a comment this often finds a closed client */
#define RETRY_AFTER_S "10"

#define STATE_MAX 256

/* The poller and what it published. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;  /* a stream opened, or stop */
	pthread_t thread;
	int running, stop;
	char *db_path;
	char state[STATE_MAX]; /* the newest summary, JSON; "" until the first */
	unsigned long gen;     /* bumped whenever state changes */
} poller = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static atomic_int open_streams;

/* Writes the current state as JSON into buf. */
static void state_json(const char *db_path, char *buf, size_t n)
{
	struct tg_db db;
	tg_db_acquire(db_path, &db);
	struct tg_store_summary s = { 0 };
	int ok = db.state == TG_DB_OK && sqlite3_exec(db.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
	if (ok) {
		ok = tg_store_summary(db.db, &s) == 0;
		sqlite3_exec(db.db, "COMMIT", NULL, NULL, NULL);
	}
	snprintf(buf, n,
		 "{\"state\":\"%s\",\"runs\":%lld,\"latest_run\":%lld,\"live\":%s,\"max_request_id\":%lld}",
		 ok || db.state != TG_DB_OK ? tg_db_state_name(db.state) : "bad", (long long)s.runs,
		 (long long)s.latest_run, s.latest_live ? "true" : "false", (long long)s.max_request_id);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* The poller: reads the state every EVENT_EVERY_MS while streams are open,
 * sleeps while none is. */
static void *poll_store(void *arg)
{
	(void)arg;
	char cur[STATE_MAX];
	pthread_mutex_lock(&poller.lock);
	while (!poller.stop) {
		if (atomic_load(&open_streams) == 0) {
			pthread_cond_wait(&poller.wake, &poller.lock);
			continue;
		}
		pthread_mutex_unlock(&poller.lock);
		state_json(poller.db_path, cur, sizeof cur);
		pthread_mutex_lock(&poller.lock);
		if (strcmp(cur, poller.state) != 0) {
			memcpy(poller.state, cur, sizeof cur);
			poller.gen++;
		}
		struct timespec until;
		deadline_in(&until, EVENT_EVERY_MS);
		while (!poller.stop && pthread_cond_timedwait(&poller.wake, &poller.lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&poller.lock);
	tg_db_close_thread();
	return NULL;
}

int tg_events_start(const char *db_path)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&poller.wake);
	pthread_cond_init(&poller.wake, &ca);
	pthread_condattr_destroy(&ca);
	poller.stop = 0;
	poller.state[0] = '\0';
	poller.gen = 0;
	if (!(poller.db_path = strdup(db_path)))
		return -1;
	if (pthread_create(&poller.thread, NULL, poll_store, NULL) != 0) {
		free(poller.db_path);
		poller.db_path = NULL;
		return -1;
	}
	poller.running = 1;
	return 0;
}

void tg_events_stop(void)
{
	if (!poller.running)
		return;
	pthread_mutex_lock(&poller.lock);
	poller.stop = 1;
	pthread_cond_broadcast(&poller.wake);
	pthread_mutex_unlock(&poller.lock);
	pthread_join(poller.thread, NULL);
	poller.running = 0;
	free(poller.db_path);
	poller.db_path = NULL;
}

int tg_events_open_streams(void)
{
	return atomic_load(&open_streams);
}

/* Copies the published state into buf when its generation is not *gen.
 * Returns 1 when it did (and updates *gen), else 0. */
static int published(unsigned long *gen, char *buf, size_t n)
{
	int fresh = 0;
	pthread_mutex_lock(&poller.lock);
	if (poller.gen != *gen && poller.state[0]) {
		snprintf(buf, n, "%s", poller.state);
		*gen = poller.gen;
		fresh = 1;
	}
	pthread_mutex_unlock(&poller.lock);
	return fresh;
}

/* Parses civetweb's text form of the client address into a socket address
 * with port. Returns its length, or 0. */
static socklen_t peer_address(const struct mg_request_info *ri, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ri->remote_addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)ri->remote_port);
		return sizeof *in4;
	}
	if (inet_pton(AF_INET6, ri->remote_addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)ri->remote_port);
		return sizeof *in6;
	}
	return 0;
}

static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* The socket of this request's connection, to watch it for the client
 * going away: civetweb does not hand it out, so it is the one descriptor
 * whose peer is the client's address and port and whose own port is the
 * server's (a TCP connection is unique by those; the worker holds it open
 * while the handler runs). Only polled and peeked at, never read or
 * written. Returns -1 when there is none or more than one. */
static int request_socket(const struct mg_request_info *ri)
{
	struct sockaddr_storage want, got;
	if (!peer_address(ri, &want))
		return -1;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int found = -1, n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end || end == e->d_name || fd == dirfd(d))
			continue;
		socklen_t len = sizeof got;
		if (getpeername((int)fd, (struct sockaddr *)&got, &len) < 0 || !same_endpoint(&want, &got))
			continue;
		if (local_port((int)fd) != ri->server_port)
			continue;
		found = (int)fd;
		n++;
	}
	closedir(d);
	return n == 1 ? found : -1;
}

/* Waits up to TICK_MS for the client to go away. Returns 1 when it did
 * (closed, reset, or it sent bytes: nothing may follow a stream request),
 * else 0. Without the socket (fd < 0) it only sleeps. */
static int client_gone(int fd)
{
	if (fd < 0) {
		struct timespec ts = { 0, TICK_MS * 1000000L };
		nanosleep(&ts, NULL);
		return 0;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
	int n = poll(&p, 1, TICK_MS);
	if (n <= 0)
		return 0;
	if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return 1;
	return (p.revents & POLLIN) != 0;
}

/* The stream itself, once its slot is taken. */
static void serve_stream(struct tg_req *r)
{
	/* No length: the stream ends with the connection, which is closed then. */
	mg_disable_connection_keep_alive(r->conn);
	if (tg_send_headers(r, 200, "text/event-stream", -1, "no-store", NULL) < 0 || r->head)
		return;
	static const char hello[] = "retry: 2000\n\n";
	if (mg_write(r->conn, hello, sizeof hello - 1) <= 0)
		return;
	int fd = request_socket(r->ri);
	/* Wake the poller (it sleeps while no stream is open); the first event
	 * is read here, not waited for. */
	pthread_mutex_lock(&poller.lock);
	pthread_cond_signal(&poller.wake);
	unsigned long gen = poller.gen;
	pthread_mutex_unlock(&poller.lock);
	char last[STATE_MAX], msg[STATE_MAX + 64];
	state_json(r->db_path, last, sizeof last);
	int len = snprintf(msg, sizeof msg, "event: state\ndata: %s\n\n", last);
	if (mg_write(r->conn, msg, (size_t)len) <= 0)
		return;
	int since_write = 0;
	while (!tg_server_stopping(r->srv) && !client_gone(fd)) {
		char cur[STATE_MAX];
		since_write += TICK_MS;
		if (published(&gen, cur, sizeof cur) && strcmp(cur, last) != 0) {
			len = snprintf(msg, sizeof msg, "event: state\ndata: %s\n\n", cur);
			if (mg_write(r->conn, msg, (size_t)len) <= 0)
				break;
			memcpy(last, cur, sizeof last);
			since_write = 0;
		} else if (since_write >= (fd < 0 ? PROBE_EVERY_MS : PING_EVERY_MS)) {
			if (mg_write(r->conn, ": ping\n\n", 8) <= 0)
				break;
			since_write = 0;
		}
	}
}

int tg_api_events(struct tg_req *r)
{
	if (atomic_fetch_add(&open_streams, 1) >= TG_EVENTS_MAX_STREAMS) {
		atomic_fetch_sub(&open_streams, 1);
		mg_disable_connection_keep_alive(r->conn);
		r->retry_after = RETRY_AFTER_S;
		return tg_send_error(r, 503, "too_many_streams",
				     "this server serves at most %d live-update streams at once; retry later",
				     TG_EVENTS_MAX_STREAMS);
	}
	serve_stream(r);
	atomic_fetch_sub(&open_streams, 1);
	return 200;
}
