/*
 * tls.c - the TLS taps: SSL_read, SSL_write, SSL_read_ex and SSL_write_ex
 * hand the plaintext of encrypted connections to the same stream parsers
 * as plain sockets (PostgreSQL wire protocol, HTTP/1.x client), so https
 * calls and PostgreSQL over TLS (sslmode=prefer/require over TCP) are seen.
 *
 * Streams are keyed by the SSL object, not by a socket: Python's ssl
 * module (asyncio, asyncpg, httpx) runs OpenSSL over memory BIOs, where no
 * fd exists. SSL_free ends the stream. The queries of libpq connections
 * that the libpq taps see (psycopg2) are not parsed here again: TLS inside
 * a libpq tap, or on a socket a libpq tap claimed, is skipped.
 *
 * Workload: a few TLS records per query or call. One spinlock-protected
 * table lookup per call; parsing happens outside the lock (an SSL object
 * is used by one thread at a time). libssl usually arrives with dlopen
 * (_ssl, libpq): real functions come from it on first use.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "taps.h"
#include "tg_preload.h"

#define TG_EXPORT __attribute__((visibility("default")))

typedef struct ssl_st SSL;

TG_EXPORT int SSL_read(SSL *ssl, void *buf, int num);
TG_EXPORT int SSL_write(SSL *ssl, const void *buf, int num);
TG_EXPORT int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes);
TG_EXPORT int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written);
TG_EXPORT void SSL_free(SSL *ssl);

static struct {
	int (*read)(SSL *, void *, int);
	int (*write)(SSL *, const void *, int);
	int (*read_ex)(SSL *, void *, size_t, size_t *);
	int (*write_ex)(SSL *, const void *, size_t, size_t *);
	void (*free_)(SSL *);
	int (*get_fd)(const SSL *);
} real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

#define LIB "libssl.so"

static void resolve(void)
{
	real.read = tg_lib_sym(LIB, "SSL_read", (void *)SSL_read);
	real.write = tg_lib_sym(LIB, "SSL_write", (void *)SSL_write);
	real.read_ex = tg_lib_sym(LIB, "SSL_read_ex", (void *)SSL_read_ex);
	real.write_ex = tg_lib_sym(LIB, "SSL_write_ex", (void *)SSL_write_ex);
	real.free_ = tg_lib_sym(LIB, "SSL_free", (void *)SSL_free);
	real.get_fd = tg_lib_sym(LIB, "SSL_get_fd", NULL);
}

static inline void need_real(void)
{
	pthread_once(&real_once, resolve);
}

/* ---- SSL object -> stream ---- */

#define SLOTS 4096u /* TLS connections followed at once */
#define DEAD ((struct tg_stream *)1) /* seen, not followed */

static struct slot {
	SSL *ssl;               /* NULL = never used; TOMB = free again */
	struct tg_stream *s;
} slots[SLOTS];
static int table_lock;
static unsigned nlive;
#define TOMB ((SSL *)1)

static void lock(void)
{
	while (__atomic_exchange_n(&table_lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void unlock(void)
{
	__atomic_store_n(&table_lock, 0, __ATOMIC_RELEASE);
}

static unsigned slot_of(const SSL *ssl)
{
	return (unsigned)(((uintptr_t)ssl >> 4) * 2654435761u) & (SLOTS - 1);
}

/* The stream of ssl; creates one (or DEAD) when create is 1 (a write) or
 * 2 (a read: not a stream we can follow from its middle). */
static struct tg_stream *stream_of(SSL *ssl, int create)
{
	struct tg_stream *found = NULL;
	lock();
	unsigned i = slot_of(ssl), tomb = SLOTS;
	for (unsigned n = 0; n < SLOTS; n++, i = (i + 1) & (SLOTS - 1)) {
		if (slots[i].ssl == ssl) {
			found = slots[i].s;
			unlock();
			return found;
		}
		if (slots[i].ssl == TOMB && tomb == SLOTS)
			tomb = i;
		if (!slots[i].ssl)
			break;
	}
	if (tomb == SLOTS && !slots[i].ssl)
		tomb = i;
	if (tomb == SLOTS || nlive >= SLOTS - SLOTS / 8) {
		unlock();
		return DEAD;
	}
	unlock();
	/* Allocate outside the lock, then insert (ssl is used by this thread only). */
	struct tg_stream *s = create == 1 ? tg_stream_new(1, NULL, (uint64_t)(uintptr_t)ssl) : DEAD;
	if (!s)
		s = DEAD;
	lock();
	slots[tomb].ssl = ssl;
	slots[tomb].s = s;
	nlive++;
	unlock();
	return s;
}

static struct tg_stream *stream_take(SSL *ssl)
{
	struct tg_stream *s = NULL;
	lock();
	unsigned i = slot_of(ssl);
	for (unsigned n = 0; n < SLOTS; n++, i = (i + 1) & (SLOTS - 1)) {
		if (slots[i].ssl == ssl) {
			s = slots[i].s;
			slots[i].ssl = TOMB;
			slots[i].s = NULL;
			nlive--;
			break;
		}
		if (!slots[i].ssl)
			break;
	}
	unlock();
	return s;
}

static void stream_set_dead(SSL *ssl)
{
	lock();
	unsigned i = slot_of(ssl);
	for (unsigned n = 0; n < SLOTS; n++, i = (i + 1) & (SLOTS - 1)) {
		if (slots[i].ssl == ssl) {
			slots[i].s = DEAD;
			break;
		}
		if (!slots[i].ssl)
			break;
	}
	unlock();
}

/* 1 when ssl's bytes are for the libpq taps. */
static int libpq_owned(SSL *ssl)
{
	if (tg_in_libpq)
		return 1;
	int fd = real.get_fd ? real.get_fd(ssl) : -1;
	return fd >= 0 && tg_out_is_libpq(fd);
}

/* The app moved n plaintext bytes over ssl (dir 0 written, 1 read).
 * Writes are timed from before the call (t0: over a socket BIO the bytes
 * leave, and the answer may come, before it returns), reads after it. */
static void on_plain(SSL *ssl, int dir, const void *buf, size_t n, uint64_t t0)
{
	if (!tg_proc.enabled || tg_tap_depth || !n || !ssl)
		return;
	int saved = errno;
	int libpq = libpq_owned(ssl);
	struct tg_stream *s = stream_of(ssl, dir == 0 && !libpq ? 1 : 2);
	if (s != DEAD && libpq) { /* claimed by the libpq taps after its startup */
		stream_set_dead(ssl);
		tg_stream_forget(s);
	} else if (s != DEAD) {
		uint64_t now = dir == 0 && t0 ? t0 : tg_now_ns();
		tg_tap_depth++;
		if (tg_stream_feed(s, dir, buf, n, now)) {
			stream_set_dead(ssl);
			tg_stream_free(s, now);
		}
		tg_tap_depth--;
	}
	errno = saved;
}

int SSL_read(SSL *ssl, void *buf, int num)
{
	need_real();
	if (!real.read)
		return -1;
	int r = real.read(ssl, buf, num);
	if (r > 0)
		on_plain(ssl, 1, buf, (size_t)r, 0);
	return r;
}

int SSL_write(SSL *ssl, const void *buf, int num)
{
	need_real();
	if (!real.write)
		return -1;
	uint64_t t0 = tg_proc.enabled ? tg_now_ns() : 0;
	int r = real.write(ssl, buf, num);
	if (r > 0)
		on_plain(ssl, 0, buf, (size_t)r, t0);
	return r;
}

int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
{
	need_real();
	if (!real.read_ex)
		return 0;
	int r = real.read_ex(ssl, buf, num, readbytes);
	if (r == 1 && readbytes)
		on_plain(ssl, 1, buf, *readbytes, 0);
	return r;
}

int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
{
	need_real();
	if (!real.write_ex)
		return 0;
	uint64_t t0 = tg_proc.enabled ? tg_now_ns() : 0;
	int r = real.write_ex(ssl, buf, num, written);
	if (r == 1 && written)
		on_plain(ssl, 0, buf, *written, t0);
	return r;
}

void SSL_free(SSL *ssl)
{
	need_real();
	if (ssl && __atomic_load_n(&nlive, __ATOMIC_RELAXED)) {
		int saved = errno;
		struct tg_stream *s = stream_take(ssl);
		if (s && s != DEAD) {
			tg_tap_depth++;
			tg_stream_free(s, tg_now_ns());
			tg_tap_depth--;
		}
		errno = saved;
	}
	if (real.free_)
		real.free_(ssl);
}
