/*
 * collector/collector.c - the collector process: registration, ring draining, /proc
 * sampling and batched writes into the store (see collector.h).
 *
 * Workload: a handful to a few hundred traced processes, thousands of
 * requests per second. One thread, one poll() loop over the listening
 * socket, the process connections and the lifeline; every 100 ms the
 * processes are sampled, and every 100 ms (300 ms while busy) the rings
 * drained, the loss counters read and the batch committed (sooner when a
 * ring is a quarter full or 20,000 rows wait).
 *
 * Nothing read from a ring is trusted: the pages are shared with the traced
 * app, which may scribble over them or even shrink the memfd. Records are
 * copied out before they are checked (the app cannot change them under the
 * check), every length is checked against the record, and ring accesses run
 * under a SIGBUS guard; a bad record or ring is dropped and counted as a
 * loss, never a crash.
 */
#include "collector/collector.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/event.h"
#include "common/event_py.h"
#include "collector/record.h"
#include "common/ring.h"
#include "collector/otlp_stream.h"
#include "collector/schedstat.h"
#include "collector/scopes.h"
#include "collector/sql.h"
#include "collector/stacks.h"
#include "lib/store.h"
#include "tg_config.h"
#include "lib/util.h"

#define DRAIN_NS (10 * 1000000LL)     /* how often the rings are looked at */
/* While the rings fill slowly (less than 1/256 of a ring between two looks,
 * QUIET_LOOKS looks in a row: an app waiting for work, whose sampler sends
 * a few samples a second), they are looked at every QUIET_DRAIN_NS
 * instead: a look is a wakeup, some 20 us of CPU on a VM, and a hundred a
 * second were most of an idle run's collector. An app at full speed
 * writes some 5 MB/s: 250 KB in one quiet interval, a quarter of the
 * smallest ring (--ring-size 1), which the next look sees filling; the
 * first look that finds more brings the 10 ms looks back. */
#define QUIET_DRAIN_NS (50 * 1000000LL)
#define QUIET_LOOKS 3
#define TICK_NS (100 * 1000000LL)     /* process sampling period */
#define STORE_TICK_NS (300 * 1000000LL) /* the rings' period: drain, settle, commit (see the main loop) */
/* Process metrics sampled between store ticks wait for the next batch,
 * this many at most (a store locked by another program for longer loses
 * the newest). */
#define METRICS_HELD 16
#define BATCH_ROWS 20000u             /* commit sooner when this many rows wait */
#define DRAIN_MAX_RECORDS 20000       /* per ring per pass, so that poll() stays responsive */
/* A drain that has worked YIELD_NS since it began or last yielded lets
 * other runnable threads have the CPU (sched_yield(), looked at every
 * YIELD_CHECK records). At 10,000 requests/s a tick's drain is some 15 ms
 * of work; on a machine with as many busy threads as cores (the app, a
 * load generator) it took the app's CPU in one piece, and requests that
 * arrived meanwhile waited for it: the app's p99 latency was 1.7x its own
 * against 1.3x with the drain in slices. The collector keeps its fair
 * share of CPU (a yield does not lower its priority), so rings drain as
 * fast over time. */
#define YIELD_NS (1000000LL)
#define YIELD_CHECK 32
#define CMDLINE_MAX 4096              /* bytes of /proc/PID/cmdline kept */
#define FINAL_HELLO_WAIT_NS (500 * 1000000LL) /* at the end, wait this long for half-sent hellos */

#define SCOPE_KEEP_NS (120LL * 1000000000) /* scopes (and marks waiting for theirs) kept this long */

/* A mark (route template, exception) waiting for its request record, which
 * arrives when the response is complete: the request of its scope token,
 * or, without a token, the one of the same client. */
struct pending_mark {
	struct tg_mark m; /* m.text points to text below */
	char *text;       /* malloc'd copy */
	int64_t seen_ns;  /* collector time of arrival */
};

#define MARKS_MAX 4096 /* pending marks per process; the oldest go beyond that */

struct proc {
	int fd;                    /* connection, -1 once closed */
	pid_t pid;                 /* from SO_PEERCRED */
	int registered;            /* hello accepted, ring mapped */
	unsigned char hello[sizeof(struct tg_hello)];
	size_t hello_got;          /* bytes of hello received so far */
	int memfd;                 /* ring memfd received with the hello, -1 if none yet */
	int64_t process_id;        /* processes.id, 0 if the insert failed */
	void *map;                 /* ring mapping (MAP_SHARED), NULL if none */
	size_t map_bytes;
	struct tg_ring ring;
	int ring_ok;               /* 0 once the ring proved corrupt (or truncated) */
	uint64_t seen_head;        /* the ring's head at the last look (QUIET_LOOKS) */
	uint64_t seen_lost_events; /* loss counters already stored */
	uint64_t seen_lost_bytes;
	uint64_t seen_untracked;
	uint64_t seen_lost_requests;
	uint64_t bad_events;       /* records dropped by our checks, not yet stored */
	uint64_t bad_bytes;
	struct pending_mark *marks; /* marks waiting for their request, oldest first */
	size_t nmarks, marks_cap;
	struct tg_scopes *scopes;  /* request scopes: which request each token stands for (scopes.h) */
	struct tg_sql_proc *sql;   /* queries and outbound calls waiting for their request (sql.h) */
	struct tg_stacks_proc *stacks; /* Python stack samples waiting for their request (stacks.h) */
	struct tg_sched sched;     /* its threads' run-queue delay (schedstat.h) */
	struct metric {            /* sampled, not yet written (see METRICS_HELD) */
		int64_t ts_unix_ns, cpu_user_ns, cpu_sys_ns, rss_bytes, sched_cpu_ns, run_delay_ns;
	} metrics[METRICS_HELD];
	unsigned nmetrics;
};

#define STORE_WAIT_MS 50                         /* per round, for a locked store */
#define RESUME_CHECK_NS (2LL * 1000000000)        /* a full disk is looked at again this often */
#define FINAL_LOCK_WAIT_NS (20LL * 1000000000LL) /* at exit, for a locked store */
#define OTLP_FINAL_NS (5LL * 1000000000)          /* at exit, for the last OTLP sends */

struct collector {
	struct tg_store *store;
	int64_t run_id;
	int64_t mono_to_unix;      /* CLOCK_REALTIME - CLOCK_MONOTONIC, ns, measured once */
	int64_t start_mono;        /* CLOCK_MONOTONIC at start, ns */
	int lifeline;
	int store_locked;          /* the last round found the store locked */
	int listen_fd;
	char dir[PATH_MAX];        /* private run directory */
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct proc **procs;
	size_t nprocs, cap;
	char life_buf[64];         /* bytes received on the lifeline */
	size_t life_got;
	int exit_status;           /* from "exit N", -1 until known */
	int store_warned;          /* one warning line for store errors */
	uint64_t store_lost;       /* rows lost to store errors, not yet recorded */
	uint64_t rollbacks;        /* the store's rolled-back batches already seen to */
	uint64_t store_lost_requests; /* requests among them */
	uint64_t lost_total, lost_requests_total; /* all of the run's, for the last word */
	int64_t next_resume_ns;    /* disk full: when to look for free space again */
	long clk_tck, page_size;
	unsigned n_plus_one;       /* N+1 threshold ($TIMEGLASS_N_PLUS_ONE, default 5) */
	int accept_paused;         /* out of fds: stop polling the listener until the next tick */
	struct tg_otlp_stream *otlp; /* the OTLP exporter thread, or NULL */
	int64_t otlp_unsent;       /* spans it dropped, not yet in the losses table */
	int64_t yield_at;          /* when the drain under way next lets other threads run */
	int64_t seen_ns;           /* when the records being drained were seen: the clock read as a
				    * ring's drain begins and every YIELD_CHECK records, not for each
				    * record (four reads a request were 1-3% of the collector's CPU) */
};

/* SIGBUS guard around every access to a ring's pages. */
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t in_ring;

static void on_sigbus(int sig)
{
	if (in_ring)
		siglongjmp(bus_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static const int forwarded_signals[] = TG_FORWARDED_SIGNALS;
static int64_t held_since[sizeof forwarded_signals / sizeof forwarded_signals[0]];

/* Clears the group signals that have waited long enough for the supervisor
 * to see them: one that came TG_GROUP_SIGNAL_HOLD_MS ago or more. A signal
 * sent to the group again while one waits merges with it (and is seen). */
static void held_signals(int64_t now)
{
	sigset_t pending;
	if (sigpending(&pending) < 0)
		return;
	for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++) {
		int sig = forwarded_signals[i];
		if (!sigismember(&pending, sig)) {
			held_since[i] = 0;
		} else if (!held_since[i]) {
			held_since[i] = now;
		} else if (now - held_since[i] >= TG_GROUP_SIGNAL_HOLD_MS * 1000000LL) {
			sigset_t one;
			sigemptyset(&one);
			sigaddset(&one, sig);
			struct timespec zero = {0, 0};
			sigtimedwait(&one, NULL, &zero);
			held_since[i] = 0;
		}
	}
}

static void set_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* Signals to the process group reach the collector too; it ends when
	 * the lifeline closes, not before. It holds them pending for the
	 * supervisor to see (collector.h), and clears them later (held_signals). */
	sigset_t held;
	sigemptyset(&held);
	for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
		sigaddset(&held, forwarded_signals[i]);
	pthread_sigmask(SIG_BLOCK, &held, NULL); /* before any thread: they inherit it */
	sa.sa_handler = on_sigbus;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
}

/* ---- store errors ------------------------------------------------------ */

/* Takes note of rows the store lost (n, requests of them); warns once. */
static void lost_rows(struct collector *c, uint64_t n, uint64_t requests)
{
	if (!n)
		return;
	c->store_lost += n;
	c->store_lost_requests += requests;
	c->lost_total += n;
	c->lost_requests_total += requests;
	if (!c->store_warned) {
		c->store_warned = 1;
		if (tg_store_full(c->store))
			tg_warn("the disk of %s is full: what does not fit is counted as lost until space frees up",
				tg_store_path(c->store));
		else
			tg_warn("cannot write to the store (%s); dropping data", tg_error());
	}
}

/* A batch was rolled back: the requests it held are gone, and SQLite will
 * give their ids to other requests. The scopes joined to them and the
 * queries' thread fallback let go of those ids (the stacks module sees to
 * its own on its next record). */
static void check_rollback(struct collector *c)
{
	int64_t kept;
	uint64_t n = tg_store_rollbacks(c->store, NULL, &kept);
	if (n == c->rollbacks)
		return;
	c->rollbacks = n;
	for (size_t i = 0; i < c->nprocs; i++) {
		struct proc *p = c->procs[i];
		if (p->scopes)
			tg_scopes_lost_after(p->scopes, kept);
		if (p->sql)
			tg_sql_lost_after(p->sql, kept);
	}
}

static void note_store_errors(struct collector *c)
{
	uint64_t requests, n = tg_store_take_lost(c->store, &requests);
	lost_rows(c, n, requests);
	check_rollback(c);
}

/* Writes the store's losses (requests, and other rows) as loss rows. */
static void write_store_losses(struct collector *c)
{
	if (!c->store_lost || tg_store_full(c->store))
		return; /* kept until the store takes rows again */
	uint64_t requests = c->store_lost_requests, others = c->store_lost - requests;
	int64_t now = tg_realtime_ns();
	if ((!requests || tg_store_loss_add(c->store, c->run_id, 0, now, "store_error", (int64_t)requests, 0) == 0) &&
	    (!others || tg_store_loss_add(c->store, c->run_id, 0, now, "store_error_rows", (int64_t)others, 0) == 0))
		c->store_lost = c->store_lost_requests = 0;
}

static void flush(struct collector *c)
{
	c->otlp_unsent += tg_otlp_stream_take_lost(c->otlp);
	if (c->otlp_unsent && !tg_store_full(c->store) &&
	    tg_store_loss_add(c->store, c->run_id, 0, tg_realtime_ns(), "otlp_export_failed", c->otlp_unsent, 0) == 0)
		c->otlp_unsent = 0; /* else kept for the next round */
	write_store_losses(c);
	tg_store_flush(c->store);
	note_store_errors(c);
}

/* The disk is full: every RESUME_CHECK_NS, look whether it has room again. */
static void check_resume(struct collector *c, int64_t now)
{
	if (!tg_store_full(c->store) || now < c->next_resume_ns)
		return;
	c->next_resume_ns = now + RESUME_CHECK_NS;
	if (tg_store_resume(c->store)) {
		tg_warn("the store has room again: recording resumes (%" PRIu64 " requests and %" PRIu64
			" other records were not stored)",
			c->lost_requests_total, c->lost_total - c->lost_requests_total);
		c->store_warned = 0;
	}
}

/* ---- rings ------------------------------------------------------------- */

static void add_loss(struct collector *c, struct proc *p, const char *kind, uint64_t events, uint64_t bytes)
{
	if (!events)
		return;
	tg_store_loss_add(c->store, c->run_id, p->process_id, tg_realtime_ns(), kind,
			  (int64_t)(events > INT64_MAX ? INT64_MAX : events), (int64_t)(bytes > INT64_MAX ? INT64_MAX : bytes));
	note_store_errors(c);
}

/* Stores increases of the ring's loss counters and of our own drop count.
 * Must run under the SIGBUS guard (reads the ring header). */
static void read_losses(struct collector *c, struct proc *p)
{
	struct tg_ring_hdr *h = p->ring.hdr;
	uint64_t ev = __atomic_load_n(&h->lost_events, __ATOMIC_RELAXED);
	uint64_t by = __atomic_load_n(&h->lost_bytes, __ATOMIC_RELAXED);
	uint64_t un = __atomic_load_n(&h->untracked_conns, __ATOMIC_RELAXED);
	uint64_t lr = __atomic_load_n(&h->lost_requests, __ATOMIC_RELAXED);
	/* Counters only grow; if the app reset them, start over from there. */
	if (ev > p->seen_lost_events)
		add_loss(c, p, "ring_full", ev - p->seen_lost_events, by > p->seen_lost_bytes ? by - p->seen_lost_bytes : 0);
	if (un > p->seen_untracked)
		add_loss(c, p, "untracked_conn", un - p->seen_untracked, 0);
	if (lr > p->seen_lost_requests)
		add_loss(c, p, "pipeline_overflow", lr - p->seen_lost_requests, 0);
	p->seen_lost_events = ev;
	p->seen_lost_bytes = by;
	p->seen_untracked = un;
	p->seen_lost_requests = lr;
	if (p->bad_events) {
		add_loss(c, p, "ring_corrupt", p->bad_events, p->bad_bytes);
		p->bad_events = p->bad_bytes = 0;
	}
}

static void marks_free(struct proc *p)
{
	for (size_t i = 0; i < p->nmarks; i++)
		free(p->marks[i].text);
	free(p->marks);
	p->marks = NULL;
	p->nmarks = p->marks_cap = 0;
}

/* Keeps a copy of a mark until the request it names is stored. */
static void mark_add(struct proc *p, const struct tg_mark *m, int64_t now)
{
	if (p->nmarks == MARKS_MAX) {
		free(p->marks[0].text);
		memmove(p->marks, p->marks + 1, (p->nmarks - 1) * sizeof *p->marks);
		p->nmarks--;
	}
	if (p->nmarks == p->marks_cap) {
		size_t ncap = p->marks_cap ? p->marks_cap * 2 : 16;
		struct pending_mark *nm = realloc(p->marks, ncap * sizeof *nm);
		if (!nm)
			return;
		p->marks = nm;
		p->marks_cap = ncap;
	}
	char *text = malloc(m->text_len ? m->text_len : 1);
	if (!text)
		return;
	memcpy(text, m->text, m->text_len);
	struct pending_mark *pm = &p->marks[p->nmarks++];
	pm->m = *m;
	pm->m.text = text;
	pm->text = text;
	pm->seen_ns = now;
}

static void mark_to_row(const struct tg_mark *m, struct tg_request_row *row)
{
	if (m->kind == TG_MARK_ROUTE) {
		row->route = m->text;
		row->route_len = m->text_len;
	} else if (m->kind == TG_MARK_EXCEPTION) {
		row->exception = m->text;
		row->exception_len = m->text_len;
	}
}

/* Gives row the route and exception of its marks - those of its scope
 * token, and (older markers) those of its client that fall in its time
 * span - and returns how many marks are consumed or stale (those are
 * flagged by zeroing their kind; the caller compacts after storing the row,
 * which still points to their text). */
static size_t marks_apply(struct proc *p, const struct tg_ev_request *r, uint64_t token,
			  struct tg_request_row *row)
{
	size_t used = 0;
	for (size_t i = 0; i < p->nmarks; i++) {
		struct tg_mark *m = &p->marks[i].m;
		if (m->token) {
			if (m->token == token && m->kind) {
				mark_to_row(m, row);
				m->kind = 0;
				used++;
			}
			continue;
		}
		if (!tg_mark_matches(m, r))
			continue;
		/* A later mark names the client's next request; but the
		 * marker reports an in-process request after its end, on the
		 * same thread, right before the request record itself. */
		if (m->ts_ns > r->end_ns && !(r->flags & TG_REQF_ASGI))
			continue;
		if (m->ts_ns >= r->start_ns)
			mark_to_row(m, row);
		m->kind = 0; /* used, or older than this request: stale */
		used++;
	}
	return used;
}

/* Drops consumed marks, and (now != 0) marks that waited longer than any
 * scope is kept. */
static void marks_compact(struct proc *p, int64_t now)
{
	size_t j = 0;
	for (size_t i = 0; i < p->nmarks; i++) {
		if (p->marks[i].m.kind && (!now || now - p->marks[i].seen_ns <= SCOPE_KEEP_NS))
			p->marks[j++] = p->marks[i];
		else
			free(p->marks[i].text);
	}
	p->nmarks = j;
}

static struct tg_sql_ctx sql_ctx(const struct collector *c, const struct proc *p)
{
	return (struct tg_sql_ctx){.store = c->store, .run_id = c->run_id, .process_id = p->process_id,
				   .pid = p->pid, .mono_to_unix = c->mono_to_unix, .n_plus_one = c->n_plus_one,
				   .scopes = p->scopes};
}

static struct tg_stacks_ctx stacks_ctx(const struct collector *c, const struct proc *p)
{
	return (struct tg_stacks_ctx){.store = c->store, .run_id = c->run_id, .process_id = p->process_id,
				      .pid = p->pid, .mono_to_unix = c->mono_to_unix, .scopes = p->scopes};
}

/* Python samples, code objects and sampler counters (stacks.c). */
static void stacks_record(struct collector *c, struct proc *p, const void *rec, uint32_t size)
{
	struct tg_stacks_ctx xc = stacks_ctx(c, p);
	if (!p->stacks)
		p->stacks = tg_stacks_proc_new();
	if (p->stacks && tg_stacks_record(&xc, p->stacks, rec, size, c->seen_ns) < 0) {
		p->bad_events++;
		p->bad_bytes += size;
	}
	note_store_errors(c);
	if (tg_store_pending(c->store) >= BATCH_ROWS)
		flush(c);
}

static void store_record(struct collector *c, struct proc *p, const void *rec, uint32_t size)
{
	const struct tg_ev_hdr *h = rec;
	if (h->type == TG_EV_SAMPLE || h->type == TG_EV_CODE || h->type == TG_EV_PY_INFO || h->type == TG_EV_PY_FUNC) {
		stacks_record(c, p, rec, size);
		return;
	}
	if (h->type == TG_EV_REQ_SCOPE) {
		if (!p->scopes)
			p->scopes = tg_scopes_new();
		if (!p->scopes || tg_scopes_record(p->scopes, rec, size, c->seen_ns) < 0) {
			p->bad_events++;
			p->bad_bytes += size;
		}
		return;
	}
	if (h->type == TG_EV_QUERY || h->type == TG_EV_HTTP_CALL) {
		struct tg_sql_ctx sc = sql_ctx(c, p);
		if (!p->sql)
			p->sql = tg_sql_proc_new();
		if (!p->sql || tg_sql_record(&sc, p->sql, rec, size, c->seen_ns) < 0) {
			p->bad_events++;
			p->bad_bytes += size;
		}
		note_store_errors(c);
		if (tg_store_pending(c->store) >= BATCH_ROWS)
			flush(c);
		return;
	}
	if (h->type == TG_EV_MARK) {
		struct tg_mark m;
		if (tg_decode_mark(rec, size, &m) < 0) {
			p->bad_events++;
			p->bad_bytes += size;
			return;
		}
		/* Its request already stored (an exception marked after the
		 * response, say by a mounted app's own error handler)? */
		const struct tg_scope *sc = m.token && p->scopes ? tg_scopes_find(p->scopes, m.token) : NULL;
		if (sc && sc->joined) {
			if (sc->request_id)
				tg_store_request_mark(c->store, sc->request_id, m.kind == TG_MARK_EXCEPTION, m.text,
						      m.text_len);
			note_store_errors(c);
			return;
		}
		mark_add(p, &m, c->seen_ns);
		return;
	}
	if (h->type == TG_EV_REQ_FIXUP) {
		const struct tg_ev_req_fixup *f = rec;
		const char *err = size >= sizeof *f ? tg_req_error_text(f->error) : NULL;
		if (!err || f->conn_id > INT64_MAX || f->start_ns > INT64_MAX || f->unsent_bytes > INT64_MAX) {
			p->bad_events++;
			p->bad_bytes += size;
		} else {
			tg_store_request_fixup(c->store, c->run_id, p->pid, (int64_t)f->conn_id,
					       (int64_t)f->start_ns + c->mono_to_unix, err, (int64_t)f->unsent_bytes);
			note_store_errors(c);
		}
		return;
	}
	if (h->type != TG_EV_REQUEST)
		return; /* a kind of record this collector does not store */
	struct tg_request_row row;
	char addr[TG_ADDR_MAX];
	if (tg_decode_request(rec, size, c->mono_to_unix, &row, addr) < 0) {
		p->bad_events++;
		p->bad_bytes += size;
		return;
	}
	row.run_id = c->run_id;
	row.process_id = p->process_id;
	row.pid = p->pid;
	const struct tg_ev_request *req = rec;
	/* Which scope was begun for it: its marks, queries and samples. The
	 * row's id is known only once it is inserted, so the join takes it
	 * then. */
	uint64_t token = 0;
	struct tg_scope *scope = p->scopes ? tg_scopes_match(p->scopes, req) : NULL;
	if (scope)
		token = scope->token;
	size_t used = p->nmarks ? marks_apply(p, req, token, &row) : 0;
	int stored = tg_store_request_add(c->store, &row) == 0;
	int64_t request_id = stored ? tg_store_last_id(c->store) : 0;
	if (scope)
		tg_scopes_joined(p->scopes, scope, request_id);
	if (p->sql) {
		struct tg_sql_ctx sc = sql_ctx(c, p);
		tg_sql_request(&sc, p->sql, req, request_id, token);
	}
	if (p->stacks) {
		struct tg_stacks_ctx xc = stacks_ctx(c, p);
		tg_stacks_request(&xc, p->stacks, req, request_id);
	}
	if (used)
		marks_compact(p, 0);
	note_store_errors(c);
	if (tg_store_pending(c->store) >= BATCH_ROWS)
		flush(c);
}

/* See YIELD_NS. */
static void maybe_yield(struct collector *c)
{
	c->seen_ns = tg_monotonic_ns();
	if (c->seen_ns < c->yield_at)
		return;
	sched_yield();
	c->seen_ns = tg_monotonic_ns();
	c->yield_at = c->seen_ns + YIELD_NS;
}

/* Drains up to DRAIN_MAX_RECORDS records of p's ring (and, with losses,
 * stores its loss counters). A ring that faults or breaks the protocol is
 * given up on. Returns the number of records consumed. */
static int service_ring(struct collector *c, struct proc *p, int losses)
{
	/* 8-aligned copy of the record being decoded. */
	static uint64_t recbuf[TG_RING_MAX_RECORD / 8];

	if (!p->ring_ok)
		return 0;
	if (sigsetjmp(bus_jmp, 0)) {
		in_ring = 0;
		p->ring_ok = 0;
		p->bad_events++;
		tg_warn("the ring of process %d became unreadable (memfd shrunk?); not recording it any more",
			(int)p->pid);
		add_loss(c, p, "ring_corrupt", p->bad_events, p->bad_bytes);
		p->bad_events = p->bad_bytes = 0;
		return 0;
	}
	in_ring = 1;
	uint64_t cap = p->ring.mask + 1;
	c->seen_ns = tg_monotonic_ns();
	int n;
	for (n = 0; n < DRAIN_MAX_RECORDS; n++) {
		uint32_t size;
		const struct tg_ev_hdr *e = tg_ring_peek(&p->ring, &size);
		if (!e) {
			if (tg_ring_used(&p->ring) > cap) {
				/* head or tail overwritten: nothing more can be trusted. */
				p->ring_ok = 0;
				p->bad_events++;
			}
			break;
		}
		if (size > TG_RING_MAX_RECORD) {
			/* No producer writes such a record: the ring is scribbled on. */
			p->ring_ok = 0;
			p->bad_events++;
			break;
		}
		memcpy(recbuf, e, size);
		tg_ring_release(&p->ring, e, size);
		in_ring = 0;
		store_record(c, p, recbuf, size);
		if (n % YIELD_CHECK == YIELD_CHECK - 1)
			maybe_yield(c);
		in_ring = 1;
	}
	if (losses)
		read_losses(c, p);
	in_ring = 0;
	return n;
}

/* ---- processes --------------------------------------------------------- */

static struct proc *proc_new(struct collector *c, int fd, pid_t pid)
{
	if (c->nprocs == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		struct proc **np = realloc(c->procs, ncap * sizeof *np);
		if (!np)
			return NULL;
		c->procs = np;
		c->cap = ncap;
	}
	struct proc *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->fd = fd;
	p->pid = pid;
	p->memfd = -1;
	c->procs[c->nprocs++] = p;
	return p;
}

static void write_metrics(struct collector *c, struct proc *p);

/* Last drain, losses, end time; then the process's resources go. */
static void proc_finish(struct collector *c, struct proc *p)
{
	if (p->registered) {
		while (service_ring(c, p, 0) == DRAIN_MAX_RECORDS)
			;
		service_ring(c, p, 1);
		if (p->bad_events) { /* left over by a ring given up on */
			add_loss(c, p, "ring_corrupt", p->bad_events, p->bad_bytes);
			p->bad_events = p->bad_bytes = 0;
		}
		if (p->sql) { /* what still waits for a request is written now */
			struct tg_sql_ctx sc = sql_ctx(c, p);
			tg_sql_settle(&sc, p->sql, tg_monotonic_ns(), 1);
			note_store_errors(c);
		}
		if (p->stacks) { /* samples still waiting for a request */
			struct tg_stacks_ctx xc = stacks_ctx(c, p);
			tg_stacks_settle(&xc, p->stacks, tg_monotonic_ns(), 1);
			note_store_errors(c);
		}
		write_metrics(c, p);
		if (p->process_id) {
			tg_store_process_end(c->store, p->process_id, tg_realtime_ns());
			note_store_errors(c);
		}
	}
	marks_free(p);
	tg_scopes_free(p->scopes);
	p->scopes = NULL;
	tg_sql_proc_free(p->sql);
	p->sql = NULL;
	tg_stacks_proc_free(p->stacks);
	p->stacks = NULL;
	tg_sched_clear(&p->sched);
	if (p->map)
		munmap(p->map, p->map_bytes);
	p->map = NULL;
	p->registered = 0;
	p->ring_ok = 0;
	if (p->memfd >= 0)
		close(p->memfd);
	p->memfd = -1;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

/* Drops finished entries from the table. */
static void procs_compact(struct collector *c)
{
	size_t j = 0;
	for (size_t i = 0; i < c->nprocs; i++) {
		if (c->procs[i]->fd >= 0)
			c->procs[j++] = c->procs[i];
		else
			free(c->procs[i]);
	}
	c->nprocs = j;
}

/* The command line of pid, NULs turned into spaces, capped. NULL if gone. */
static char *read_cmdline(pid_t pid)
{
	char path[64], buf[CMDLINE_MAX + 1];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	ssize_t n = tg_read_small_file(path, buf, sizeof buf);
	if (n <= 0)
		return NULL;
	while (n > 0 && buf[n - 1] == '\0')
		n--;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return strdup(buf);
}

/* Parses /proc/PID/stat: ppid, utime and stime (clock ticks). -1 if gone. */
static int read_stat(pid_t pid, char *state_out, int *ppid, uint64_t *utime, uint64_t *stime)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (tg_read_small_file(path, buf, sizeof buf) <= 0)
		return -1;
	char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
	if (!p)
		return -1;
	/* After ")": state(3) ppid(4) ... utime(14) stime(15). */
	unsigned long long v[13];
	char state;
	if (sscanf(p + 1, " %c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &state, &v[0], &v[1],
		   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]) != 13)
		return -1;
	*state_out = state;
	*ppid = (int)v[0];
	*utime = v[10];
	*stime = v[11];
	return 0;
}

static void sample(struct collector *c, struct proc *p, int64_t now_unix)
{
	if (!p->registered || !p->process_id)
		return;
	int ppid;
	char state;
	uint64_t ut, st;
	char path[64], buf[256];
	if (read_stat(p->pid, &state, &ppid, &ut, &st) < 0)
		return;
	snprintf(path, sizeof path, "/proc/%d/statm", (int)p->pid);
	unsigned long long size_pages, rss_pages;
	if (tg_read_small_file(path, buf, sizeof buf) <= 0 || sscanf(buf, "%llu %llu", &size_pages, &rss_pages) != 2)
		return;
	/* A process that is exiting (or a zombie) has no memory left to
	 * report: such a sample would be a false drop to zero. */
	if (rss_pages == 0 || state == 'Z' || state == 'X')
		return;
	int64_t ns_per_tick = 1000000000LL / c->clk_tck, sched_cpu = -1, run_delay = -1;
	if (tg_sched_read(&p->sched, p->pid, &sched_cpu, &run_delay) < 0)
		sched_cpu = run_delay = -1;
	if (p->nmetrics < METRICS_HELD)
		p->metrics[p->nmetrics++] = (struct metric){
			.ts_unix_ns = now_unix, .cpu_user_ns = (int64_t)ut * ns_per_tick,
			.cpu_sys_ns = (int64_t)st * ns_per_tick, .rss_bytes = (int64_t)rss_pages * c->page_size,
			.sched_cpu_ns = sched_cpu, .run_delay_ns = run_delay};
}

/* Writes the metrics p sampled since the last batch into the open one. */
static void write_metrics(struct collector *c, struct proc *p)
{
	for (unsigned i = 0; i < p->nmetrics; i++) {
		const struct metric *m = &p->metrics[i];
		tg_store_metric_add(c->store, p->process_id, m->ts_unix_ns, m->cpu_user_ns, m->cpu_sys_ns,
				    m->rss_bytes, m->sched_cpu_ns, m->run_delay_ns);
	}
	if (p->nmetrics)
		note_store_errors(c);
	p->nmetrics = 0;
}

static int is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/* The hello is complete: check it, map the ring, add the processes row.
 * Returns 0, or -1 if the registration is refused (the caller closes). */
static int proc_register(struct collector *c, struct proc *p)
{
	struct tg_hello h;
	memcpy(&h, p->hello, sizeof h);
	uint64_t data = h.ring_bytes - TG_RING_HDR_BYTES;
	struct stat st;
	if (h.magic != TG_HELLO_MAGIC || h.version != TG_RING_VERSION) {
		tg_warn("process %d speaks another TimeGlass version (ring %u, this one %u); not recording it",
			(int)p->pid, h.magic == TG_HELLO_MAGIC ? h.version : 0, TG_RING_VERSION);
		return -1;
	}
	if (p->memfd < 0 || h.ring_bytes <= TG_RING_HDR_BYTES || !is_pow2(data) || data < TG_RING_MIN_DATA ||
	    data > TG_RING_MAX_DATA || fstat(p->memfd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < h.ring_bytes) {
		tg_warn("process %d sent a bad registration; not recording it", (int)p->pid);
		return -1;
	}
	p->map = mmap(NULL, h.ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
	close(p->memfd);
	p->memfd = -1;
	if (p->map == MAP_FAILED) {
		p->map = NULL;
		tg_warn("cannot map the ring of process %d: %s", (int)p->pid, strerror(errno));
		return -1;
	}
	p->map_bytes = h.ring_bytes;
	int ok;
	if (sigsetjmp(bus_jmp, 0)) {
		ok = -1;
	} else {
		in_ring = 1;
		ok = tg_ring_attach(&p->ring, p->map, p->map_bytes);
		in_ring = 0;
	}
	in_ring = 0;
	if (ok < 0) {
		tg_warn("process %d sent a ring this collector cannot read; not recording it", (int)p->pid);
		return -1;
	}
	p->registered = 1;
	p->ring_ok = 1;

	char exe_path[64], exe[PATH_MAX];
	snprintf(exe_path, sizeof exe_path, "/proc/%d/exe", (int)p->pid);
	ssize_t n = readlink(exe_path, exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = '\0';
	char *cmdline = read_cmdline(p->pid);
	int ppid;
	uint64_t ut, stt;
	char state;
	if (read_stat(p->pid, &state, &ppid, &ut, &stt) < 0)
		ppid = h.ppid;
	int64_t now_mono = tg_monotonic_ns();
	/* The hello's clock is the app's word: use it only when plausible. */
	int64_t started = (h.mono_ns > 0 && (int64_t)h.mono_ns <= now_mono &&
			   (int64_t)h.mono_ns > c->start_mono - 86400LL * 1000000000LL)
				  ? (int64_t)h.mono_ns + c->mono_to_unix
				  : now_mono + c->mono_to_unix;
	struct tg_process_info pi = {
		.run_id = c->run_id,
		.pid = p->pid,
		.ppid = ppid,
		.exe = n > 0 ? exe : NULL,
		.cmdline = cmdline,
		.started_unix_ns = started,
		.after_fork = (h.flags & TG_HELLO_AFTER_FORK) != 0,
	};
	int64_t id = tg_store_process_add(c->store, &pi);
	free(cmdline);
	if (id < 0) {
		uint64_t requests, rows = tg_store_take_lost(c->store, &requests);
		lost_rows(c, rows + 1, requests);
		id = 0; /* still drain, so the app's ring does not fill up */
	}
	p->process_id = id;
	/* Losses counted before registration belong to this process too. */
	return 0;
}

/* Reads what the connection has: the hello (and its memfd) first, then
 * nothing is expected but EOF. Returns 0, or -1 when the connection ended
 * or must be dropped. */
static int proc_read(struct collector *c, struct proc *p)
{
	for (;;) {
		unsigned char scratch[256];
		unsigned char *dst = scratch;
		size_t want = sizeof scratch;
		if (p->hello_got < sizeof p->hello) {
			dst = p->hello + p->hello_got;
			want = sizeof p->hello - p->hello_got;
		}
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 8)];
		} ctl;
		struct iovec iov = {.iov_base = dst, .iov_len = want};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof ctl.buf};
		ssize_t r = recvmsg(p->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* Keep the first fd that comes with the hello; close any other. */
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); r >= 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
				if (p->memfd < 0 && !p->registered && dst != scratch)
					p->memfd = fd;
				else
					close(fd);
			}
		}
		if (r <= 0)
			return -1; /* EOF or error */
		if (dst == scratch)
			continue; /* nothing else is expected after the hello: ignore */
		p->hello_got += (size_t)r;
		if (p->hello_got == sizeof p->hello && proc_register(c, p) < 0)
			return -1;
	}
}

static void accept_all(struct collector *c)
{
	for (;;) {
		int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (!c->accept_paused)
					tg_warn("cannot accept a traced process: %s", strerror(errno));
				c->accept_paused = 1;
			}
			return;
		}
		struct ucred cred;
		socklen_t len = sizeof cred;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || !proc_new(c, fd, cred.pid)) {
			close(fd);
			continue;
		}
	}
}

/* ---- lifeline ---------------------------------------------------------- */

/* Reads the supervisor's message. Returns 1 on EOF (time to finish). */
static int lifeline_read(struct collector *c)
{
	for (;;) {
		char buf[64];
		ssize_t r = read(c->lifeline, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r <= 0)
			break;
		size_t room = sizeof c->life_buf - 1 - c->life_got;
		size_t n = (size_t)r < room ? (size_t)r : room;
		memcpy(c->life_buf + c->life_got, buf, n);
		c->life_got += n;
	}
	c->life_buf[c->life_got] = '\0';
	int st;
	if (sscanf(c->life_buf, "exit %d", &st) == 1 && st >= 0 && st <= 255 + 128)
		c->exit_status = st;
	return 1;
}

static void say(int fd, const char *line)
{
	size_t n = strlen(line), off = 0;
	while (off < n) {
		ssize_t w = write(fd, line + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

/* ---- set-up ------------------------------------------------------------ */

/* The traced command as one line, arguments that need it single-quoted. */
static char *join_command(char *const *argv)
{
	size_t cap = 1;
	for (char *const *a = argv; *a; a++)
		cap += strlen(*a) * 4 + 3;
	char *s = malloc(cap), *o = s;
	if (!s)
		return NULL;
	for (char *const *a = argv; *a; a++) {
		if (a != argv)
			*o++ = ' ';
		int plain = **a != '\0';
		for (const char *p = *a; *p; p++)
			if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%", *p))
				plain = 0;
		if (plain) {
			o = stpcpy(o, *a);
			continue;
		}
		*o++ = '\'';
		for (const char *p = *a; *p; p++) {
			if (*p == '\'')
				o = stpcpy(o, "'\\''");
			else
				*o++ = *p;
		}
		*o++ = '\'';
	}
	*o = '\0';
	return s;
}

/* Private run directory with the registration socket. */
static int make_socket(struct collector *c)
{
	const char *base = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	if (!base || base[0] != '/' || stat(base, &st) < 0 || !S_ISDIR(st.st_mode) || access(base, W_OK | X_OK) < 0)
		base = "/tmp";
	if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/timeglass-XXXXXX", base) >= sizeof c->dir ||
	    !mkdtemp(c->dir)) {
		c->dir[0] = '\0';
		return tg_fail("cannot create a run directory in %s: %s", base, strerror(errno));
	}
	if ((size_t)snprintf(c->sock, sizeof c->sock, "%s/collector.sock", c->dir) >= sizeof c->sock || strchr(c->dir, '\n'))
		return tg_fail("run directory path too long: %s", c->dir);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->listen_fd < 0)
		return tg_fail("cannot create a socket: %s", strerror(errno));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, c->sock, strlen(c->sock) + 1);
	if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(c->listen_fd, SOMAXCONN) < 0)
		return tg_fail("cannot listen on %s: %s", c->sock, strerror(errno));
	return 0;
}

static void remove_socket(struct collector *c)
{
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	c->listen_fd = -1;
	if (c->sock[0])
		unlink(c->sock);
	if (c->dir[0])
		rmdir(c->dir);
}

static int start(struct collector *c, const struct tg_collector_opts *o)
{
	c->store = tg_store_open(o->db_path, TG_STORE_WRITE);
	if (!c->store)
		return -1;
	char host[256] = "", cwd[PATH_MAX];
	gethostname(host, sizeof host - 1);
	char *cmd = join_command(o->argv);
	struct tg_run_info ri = {
		.started_unix_ns = tg_realtime_ns(),
		.command = cmd ? cmd : "",
		.cwd = getcwd(cwd, sizeof cwd),
		.hostname = host,
		.tg_version = TG_VERSION,
		.source = "run",
	};
	c->run_id = tg_store_run_begin(c->store, &ri);
	free(cmd);
	if (c->run_id < 0)
		return -1;
	return make_socket(c);
}

/* ---- main loop --------------------------------------------------------- */

/* Whether a ring holds a quarter of its size or more, not yet drained. A
 * ring that faults says yes: service_ring() then finds out and gives up on
 * it. *moved: whether a ring took 1/256 of its size or more since the last
 * look (QUIET_LOOKS). */
static int rings_filling(struct collector *c, int *moved)
{
	if (sigsetjmp(bus_jmp, 0)) {
		in_ring = 0;
		*moved = 1;
		return 1;
	}
	int yes = 0;
	*moved = 0;
	in_ring = 1;
	for (size_t i = 0; i < c->nprocs; i++) {
		struct proc *p = c->procs[i];
		if (!p->registered || !p->ring_ok)
			continue;
		uint64_t head = __atomic_load_n(&p->ring.hdr->head, __ATOMIC_RELAXED);
		*moved |= head - p->seen_head >= (p->ring.mask + 1) / 256;
		p->seen_head = head;
		yes |= tg_ring_used(&p->ring) >= (p->ring.mask + 1) / 4;
	}
	in_ring = 0;
	return yes;
}

static void drain_all(struct collector *c, int losses)
{
	c->yield_at = tg_monotonic_ns() + YIELD_NS;
	for (size_t i = 0; i < c->nprocs; i++)
		if (c->procs[i]->registered)
			service_ring(c, c->procs[i], losses);
}

/* One poll() round: waits at most timeout_ms. Returns 1 when the lifeline closed. */
static int poll_once(struct collector *c, int timeout_ms, struct pollfd **pfd, size_t *pfd_cap)
{
	size_t need = c->nprocs + 2;
	if (need > *pfd_cap) {
		struct pollfd *np = realloc(*pfd, need * sizeof *np);
		if (!np)
			return 0;
		*pfd = np;
		*pfd_cap = need;
	}
	struct pollfd *f = *pfd;
	f[0] = (struct pollfd){.fd = c->lifeline, .events = POLLIN};
	f[1] = (struct pollfd){.fd = c->accept_paused ? -1 : c->listen_fd, .events = POLLIN};
	size_t nprocs = c->nprocs;
	for (size_t i = 0; i < nprocs; i++)
		f[i + 2] = (struct pollfd){.fd = c->procs[i]->fd, .events = POLLIN};
	int n = poll(f, need, timeout_ms);
	if (n <= 0)
		return 0;
	int done = 0;
	if (f[0].revents && lifeline_read(c))
		done = 1;
	int dead = 0;
	for (size_t i = 0; i < nprocs; i++) {
		if (!f[i + 2].revents)
			continue;
		struct proc *p = c->procs[i];
		if (proc_read(c, p) < 0) {
			proc_finish(c, p);
			dead = 1;
		}
	}
	if (dead)
		procs_compact(c);
	if (f[1].revents)
		accept_all(c);
	return done;
}

/* The command has ended (or the supervisor is gone): take in the processes
 * still queued on the socket, drain everything, close the run. A process
 * that connected but has not sent its whole hello yet gets a short grace. */
static void finish(struct collector *c, struct pollfd **pfd, size_t *pfd_cap)
{
	int64_t deadline = tg_monotonic_ns() + FINAL_HELLO_WAIT_NS;
	for (;;) {
		accept_all(c);
		int waiting = 0;
		for (size_t i = 0; i < c->nprocs; i++) {
			struct proc *p = c->procs[i];
			if (p->registered)
				continue;
			if (proc_read(c, p) < 0)
				proc_finish(c, p);
			else if (!p->registered)
				waiting = 1;
		}
		procs_compact(c);
		if (!waiting || tg_monotonic_ns() >= deadline)
			break;
		poll_once(c, 10, pfd, pfd_cap);
	}
	/* Still locked? Wait a while rather than drop what the rings hold. */
	for (int64_t until = tg_monotonic_ns() + FINAL_LOCK_WAIT_NS;
	     tg_store_begin(c->store, STORE_WAIT_MS) < 0 && tg_monotonic_ns() < until;)
		;
	for (size_t i = 0; i < c->nprocs; i++)
		proc_finish(c, c->procs[i]);
	procs_compact(c);
	tg_store_flush(c->store);
	note_store_errors(c);
	/* A full disk: the reserve makes room for the losses and the run's end. */
	if (tg_store_full(c->store) && !tg_store_resume(c->store))
		tg_store_last_resort(c->store);
	flush(c);
	if (c->otlp) {
		/* Everything is committed: the exporter sends the rest. */
		int64_t sent, unsent;
		tg_otlp_stream_finish(c->otlp, OTLP_FINAL_NS);
		flush(c);
		tg_otlp_stream_totals(c->otlp, &sent, &unsent);
		if (unsent)
			tg_warn("OTLP export: %" PRId64 " of %" PRId64 " spans were not delivered (counted in the "
				"run's losses)", unsent, sent + unsent);
		tg_otlp_stream_free(c->otlp);
		c->otlp = NULL;
	}
	int ended = tg_store_run_end(c->store, c->run_id, tg_realtime_ns(), c->exit_status) == 0;
	if (!ended && !c->store_warned)
		tg_warn("%s", tg_error());
	if (c->lost_total)
		tg_warn("%" PRIu64 " requests and %" PRIu64 " other records were not stored%s", c->lost_requests_total,
			c->lost_total - c->lost_requests_total,
			c->store_lost ? " (and the store could not take these figures either)" : "");
}

int tg_collector_main(const struct tg_collector_opts *o)
{
	struct collector c = {
		.lifeline = o->lifeline,
		.listen_fd = -1,
		.exit_status = -1,
		.clk_tck = sysconf(_SC_CLK_TCK),
		.page_size = sysconf(_SC_PAGESIZE),
	};
	prctl(PR_SET_NAME, "tg-collector", 0, 0, 0);
	set_signals();
	/* Do not hold the user's terminal or pipes open; warnings use stderr. */
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		if (devnull > STDOUT_FILENO)
			close(devnull);
	}
	if (c.clk_tck <= 0)
		c.clk_tck = 100;
	const char *np1 = getenv("TIMEGLASS_N_PLUS_ONE");
	c.n_plus_one = np1 && *np1 ? (unsigned)strtoul(np1, NULL, 10) : 5;
	if (c.n_plus_one < 2)
		c.n_plus_one = 2;
	if (c.page_size <= 0)
		c.page_size = 4096;
	int64_t m0 = tg_monotonic_ns(), rt = tg_realtime_ns(), m1 = tg_monotonic_ns();
	c.start_mono = m0 + (m1 - m0) / 2;
	c.mono_to_unix = rt - c.start_mono;

	if (start(&c, o) < 0) {
		char line[TG_ERR_MAX + 16];
		snprintf(line, sizeof line, "error %s\n", tg_error());
		say(c.lifeline, line);
		remove_socket(&c);
		tg_store_close(c.store);
		return TG_EXIT_USAGE;
	}
	if (o->otlp && !(c.otlp = tg_otlp_stream_start(o->otlp, o->db_path, c.run_id, tg_store_db(c.store))))
		tg_warn("%s; not streaming spans", tg_error());
	char line[PATH_MAX + 64];
	snprintf(line, sizeof line, "ready %" PRId64 " %s\n", c.run_id, c.sock);
	say(c.lifeline, line);
	fcntl(c.lifeline, F_SETFL, fcntl(c.lifeline, F_GETFL) | O_NONBLOCK);
	/* Old runs go after "ready": the command starts meanwhile (its
	 * registration waits on the socket, its records in its ring). */
	if (tg_store_prune(c.store, o->keep_runs) < 0)
		tg_warn("%s", tg_error()); /* old runs stay; recording still works */

	struct pollfd *pfd = NULL;
	size_t pfd_cap = 0;
	int64_t now = tg_monotonic_ns();
	int64_t next_drain = now + DRAIN_NS, next_tick = now + TICK_NS, next_store = next_tick;
	unsigned quiet = 0; /* looks in a row that found no new record */
	int done = 0;
	while (!done) {
		int64_t wait_ns = (next_drain < next_tick ? next_drain : next_tick) - now;
		int timeout = wait_ns <= 0 ? 0 : (int)((wait_ns + 999999) / 1000000);
		done = poll_once(&c, timeout, &pfd, &pfd_cap);
		now = tg_monotonic_ns();
		if (now < next_drain && now < next_tick)
			continue;
		held_signals(now);
		int tick = now >= next_tick;
		int store_tick = tick && now >= next_store;
		int moved;
		int filling = rings_filling(&c, &moved) && !store_tick;
		quiet = moved ? 0 : quiet + 1;
		next_drain = now + (quiet >= QUIET_LOOKS ? QUIET_DRAIN_NS : DRAIN_NS);
		/* The rings are drained into the store every STORE_TICK_NS,
		 * and at a round in between only when one of them is a quarter
		 * full: a commit rewrites the last page of each table and index
		 * its batch touches, so one transaction per store tick rather
		 * than per round writes those pages once for thirty rounds'
		 * rows. Under load that is CPU (at 10,000 requests/s, 5.15 us
		 * of collector CPU per request against 6.05 with a 100 ms tick:
		 * bench/README.md, A longer tick while busy); at low rates and
		 * idle it is the disk: with 16 KiB pages, ten commits a second
		 * of a few rows each wrote 1.6 MB/s at 10 requests/s and 1 MB/s
		 * for an idle app. Readers see a row at most 300 ms after it
		 * was recorded. The ticks in between only sample the
		 * processes, so that their metrics keep their 100 ms period;
		 * those rows go with the next batch.
		 * The write lock is held only while a batch is written, so
		 * that other writers of the store (another run's collector,
		 * the standalone middleware, a user's sqlite3 shell) get their
		 * turn.
		 * Another program holds it: leave the data in the rings (the app
		 * never waits; a ring that fills drops and counts) and try again
		 * next round. */
		if (tick && !store_tick && !filling) {
			/* Between store ticks only the processes are sampled:
			 * their metrics keep the 100 ms period and wait for the
			 * next batch, with no commit of their own. */
			int64_t now_unix = now + c.mono_to_unix;
			for (size_t i = 0; i < c.nprocs; i++)
				sample(&c, c.procs[i], now_unix);
			c.accept_paused = 0;
			next_tick = now + TICK_NS;
			continue;
		}
		if (!tick && !filling)
			continue;
		if (tg_store_begin(c.store, STORE_WAIT_MS) < 0) {
			if (!c.store_locked)
				tg_warn("%s is locked by another program; holding data until it is free",
					tg_store_path(c.store));
			c.store_locked = 1;
			continue;
		}
		c.store_locked = 0;
		if (store_tick || filling)
			drain_all(&c, store_tick);
		if (tick) {
			check_resume(&c, now);
			int64_t now_unix = now + c.mono_to_unix;
			for (size_t i = 0; i < c.nprocs; i++) {
				sample(&c, c.procs[i], now_unix);
				write_metrics(&c, c.procs[i]);
				if (!store_tick)
					continue;
				if (c.procs[i]->sql) {
					struct tg_sql_ctx sc = sql_ctx(&c, c.procs[i]);
					tg_sql_settle(&sc, c.procs[i]->sql, now, 0);
				}
				if (c.procs[i]->stacks) {
					struct tg_stacks_ctx xc = stacks_ctx(&c, c.procs[i]);
					tg_stacks_settle(&xc, c.procs[i]->stacks, now, 0);
				}
				if (c.procs[i]->scopes)
					tg_scopes_forget(c.procs[i]->scopes, now, SCOPE_KEEP_NS);
				if (c.procs[i]->nmarks)
					marks_compact(c.procs[i], now);
			}
			c.accept_paused = 0;
		}
		if (tick)
			next_tick = now + TICK_NS;
		if (store_tick)
			next_store = now + STORE_TICK_NS;
		flush(&c);
	}
	finish(&c, &pfd, &pfd_cap);
	free(pfd);
	free(c.procs);
	remove_socket(&c);
	tg_store_close(c.store);
	close(c.lifeline);
	return 0;
}
