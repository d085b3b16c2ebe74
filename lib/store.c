/*
 * lib/store.c - the SQLite store of store.h: open, migrate, prune, batched inserts.
 *
 * Workload: the collector inserts thousands of request rows per second in
 * batches of up to a few thousand rows per transaction; the dashboard and
 * the query commands read concurrently (WAL). The schema below is shared
 * with the Python middleware, which writes the same tables directly.
 */
#include "lib/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/grow.h"
#include "lib/jsonw.h"
#include "lib/readers.h"
#include "lib/util.h"

/*
 * Migrations: migrations[i] takes a store from schema i to schema i + 1.
 * Append only; never edit a step that has shipped.
 */
static const char *const migrations[] = {
	/* 0 -> 1: runs, processes, requests, process metrics, losses. */
	"CREATE TABLE runs ("
	"  id INTEGER PRIMARY KEY,"
	"  started_unix_ns INTEGER NOT NULL,"
	"  ended_unix_ns INTEGER,"
	"  command TEXT NOT NULL,"
	"  cwd TEXT,"
	"  hostname TEXT,"
	"  tg_version TEXT,"
	"  source TEXT NOT NULL DEFAULT 'run',"
	"  exit_status INTEGER);"
	"CREATE TABLE processes ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  pid INTEGER NOT NULL,"
	"  ppid INTEGER,"
	"  exe TEXT,"
	"  cmdline TEXT,"
	"  started_unix_ns INTEGER,"
	"  ended_unix_ns INTEGER,"
	"  after_fork INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX processes_run ON processes(run_id);"
	"CREATE TABLE requests ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
	"  pid INTEGER NOT NULL,"
	"  tid INTEGER,"
	"  conn_id INTEGER,"
	"  start_unix_ns INTEGER NOT NULL,"
	"  duration_ns INTEGER NOT NULL,"
	"  req_end_ns INTEGER,"    /* offset from start_unix_ns, ns */
	"  resp_start_ns INTEGER," /* offset from start_unix_ns, ns */
	"  method TEXT,"
	"  path TEXT,"
	"  query_string TEXT,"
	"  route TEXT,"
	"  http_version TEXT,"
	"  status INTEGER,"
	"  request_bytes INTEGER NOT NULL DEFAULT 0,"
	"  response_bytes INTEGER NOT NULL DEFAULT 0,"
	"  client_addr TEXT,"
	"  error TEXT,"
	"  flags INTEGER NOT NULL DEFAULT 0,"
	"  headers TEXT,"
	"  transport TEXT NOT NULL DEFAULT 'http',"
	"  exception TEXT);"
	"CREATE INDEX requests_run_start ON requests(run_id, start_unix_ns);"
	"CREATE INDEX requests_run_route ON requests(run_id, route, method);"
	"CREATE INDEX requests_run_status ON requests(run_id, status);"
	"CREATE INDEX requests_run_duration ON requests(run_id, duration_ns);"
	"CREATE INDEX requests_process ON requests(process_id);"
	"CREATE TABLE process_metrics ("
	"  process_id INTEGER NOT NULL REFERENCES processes(id) ON DELETE CASCADE,"
	"  ts_unix_ns INTEGER NOT NULL,"
	"  cpu_user_ns INTEGER NOT NULL,"
	"  cpu_sys_ns INTEGER NOT NULL,"
	"  rss_bytes INTEGER NOT NULL);"
	"CREATE INDEX process_metrics_process_ts ON process_metrics(process_id, ts_unix_ns);"
	"CREATE TABLE losses ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  process_id INTEGER,"
	"  ts_unix_ns INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  events INTEGER NOT NULL,"
	"  bytes INTEGER NOT NULL);"
	"CREATE INDEX losses_run ON losses(run_id);",

	/* 1 -> 2: SQL queries and outbound calls. request_id is NULL for work
	 * outside any request (startup, background jobs). */
	"CREATE TABLE queries ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
	"  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
	"  pid INTEGER NOT NULL,"
	"  tid INTEGER,"
	"  start_unix_ns INTEGER NOT NULL,"
	"  duration_ns INTEGER NOT NULL,"
	"  db_system TEXT NOT NULL,"      /* 'postgresql' | 'sqlite' */
	"  tap TEXT NOT NULL,"            /* 'libpq' | 'wire' | 'sqlite3' */
	"  database TEXT,"
	"  sql TEXT,"
	"  sql_truncated INTEGER NOT NULL DEFAULT 0,"
	"  fingerprint TEXT,"
	"  fingerprint_hash INTEGER,"
	"  params TEXT,"                  /* only with --capture-params */
	"  rows INTEGER,"
	"  error TEXT,"
	"  call_site TEXT,"               /* 'file:line function' of the app's own code */
	"  attribution TEXT,"             /* how request_id was found */
	"  duplicate INTEGER NOT NULL DEFAULT 0,"
	"  n_plus_one INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX queries_request ON queries(request_id);"
	"CREATE INDEX queries_run_start ON queries(run_id, start_unix_ns);"
	"CREATE INDEX queries_process ON queries(process_id);"
	"CREATE TABLE spans ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
	"  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
	"  pid INTEGER NOT NULL,"
	"  tid INTEGER,"
	"  kind TEXT NOT NULL,"           /* 'http_client' */
	"  start_unix_ns INTEGER NOT NULL,"
	"  duration_ns INTEGER NOT NULL,"
	"  method TEXT,"
	"  host TEXT,"
	"  path TEXT,"
	"  status INTEGER,"
	"  request_bytes INTEGER NOT NULL DEFAULT 0,"
	"  response_bytes INTEGER NOT NULL DEFAULT 0,"
	"  tls INTEGER NOT NULL DEFAULT 0,"
	"  error TEXT,"
	"  call_site TEXT,"
	"  attribution TEXT);"
	"CREATE INDEX spans_request ON spans(request_id);"
	"CREATE INDEX spans_process ON spans(process_id);",

	/* 2 -> 3: Python stack samples, deduplicated frames and stacks. */
	"CREATE TABLE frames ("
	"  id INTEGER PRIMARY KEY,"
	"  kind TEXT NOT NULL,"           /* 'python' | 'native' */
	"  name TEXT NOT NULL,"           /* qualified name */
	"  file TEXT,"
	"  line INTEGER,"
	"  UNIQUE (kind, name, file, line));"
	"CREATE TABLE stacks ("
	"  id INTEGER PRIMARY KEY,"
	"  hash INTEGER NOT NULL UNIQUE,"
	"  frames TEXT NOT NULL);"        /* frame ids, root first, comma-separated */
	"CREATE TABLE samples ("
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
	"  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
	"  tid INTEGER,"
	"  stack_id INTEGER NOT NULL REFERENCES stacks(id),"
	"  state TEXT NOT NULL,"          /* 'running' | 'waiting' */
	"  count INTEGER NOT NULL,"       /* samples of this stack in this state */
	"  cpu_ns INTEGER NOT NULL DEFAULT 0);"  /* thread CPU time they stand for */
	"CREATE INDEX samples_request ON samples(request_id);"
	"CREATE INDEX samples_run ON samples(run_id);"
	"CREATE INDEX samples_process ON samples(process_id);"
	"ALTER TABLE requests ADD COLUMN cpu_ns INTEGER;",
	/* 3 -> 4: the client a proxy forwarded the request for
	 * (X-Forwarded-For, Forwarded, X-Real-IP), beside the socket peer. */
	"ALTER TABLE requests ADD COLUMN forwarded_for TEXT;",
	/* 4 -> 5: what a query is - 'app' (the application's own statement)
	 * or 'housekeeping' (transaction control, session settings, pool
	 * resets, probes and type introspection that drivers run by
	 * themselves: never an N+1 or a duplicate) - and the executions a
	 * batch (executemany) stands for. Rows recorded before are sorted by
	 * their fingerprint's first words, the clear cases of the collector's
	 * rule, and lose the flags that housekeeping never gets. */
	"ALTER TABLE queries ADD COLUMN kind TEXT NOT NULL DEFAULT 'app';"
	"ALTER TABLE queries ADD COLUMN executions INTEGER NOT NULL DEFAULT 1;"
	"UPDATE queries SET kind = 'housekeeping', n_plus_one = 0, duplicate = 0 WHERE"
	"  fingerprint GLOB 'begin*' OR fingerprint GLOB 'start transaction*' OR fingerprint GLOB 'commit*'"
	"  OR fingerprint = 'end' OR fingerprint GLOB 'end *' OR fingerprint GLOB 'rollback*'"
	"  OR fingerprint GLOB 'abort*' OR fingerprint GLOB 'savepoint *' OR fingerprint GLOB 'release *'"
	"  OR fingerprint GLOB 'set *' OR fingerprint GLOB 'reset *' OR fingerprint GLOB 'show *'"
	"  OR fingerprint GLOB 'discard *' OR fingerprint GLOB 'deallocate *' OR fingerprint GLOB 'listen *'"
	"  OR fingerprint GLOB 'unlisten *' OR fingerprint GLOB 'close *' OR fingerprint GLOB 'pragma *'"
	"  OR fingerprint GLOB 'select pg_advisory_unlock_all()*' OR fingerprint GLOB 'with recursive typeinfo_tree(*'"
	"  OR fingerprint IN ('select ?', 'select version()', 'select pg_catalog.version()',"
	"  'select current_schema()');",
	/* 5 -> 6: OpenTelemetry export. A random key per run, from which the
	 * trace and span ids of its rows are derived (every run, old ones too,
	 * gets one; a trigger gives new runs theirs, whoever inserts them), and
	 * the W3C trace context a request arrived with (traceparent: trace id,
	 * 32 lowercase hex digits, and the caller's span id, 16). */
	"ALTER TABLE runs ADD COLUMN trace_key BLOB;"
	"UPDATE runs SET trace_key = randomblob(16);"
	"CREATE TRIGGER runs_trace_key AFTER INSERT ON runs WHEN NEW.trace_key IS NULL BEGIN"
	"  UPDATE runs SET trace_key = randomblob(16) WHERE id = NEW.id; END;"
	"ALTER TABLE requests ADD COLUMN trace_id TEXT;"
	"ALTER TABLE requests ADD COLUMN parent_span_id TEXT;",
	/* 6 -> 7: the scheduler's view of the process's own threads (not
	 * TimeGlass's), summed since each started: time on a CPU and time
	 * runnable but waiting on a run queue (/proc/PID/task/TID/schedstat).
	 * Their ratio is how much a busy machine stretched the process's CPU
	 * work; NULL where the kernel gives no schedstat. */
	"ALTER TABLE process_metrics ADD COLUMN sched_cpu_ns INTEGER;"
	"ALTER TABLE process_metrics ADD COLUMN run_delay_ns INTEGER;",
	/* 7 -> 8: the indexes by process of requests and queries go. They
	 * served only the delete cascading from a process; tg_store_prune()
	 * deletes a run's rows by run, and every request and query row
	 * written no longer updates them (some 10% of a request row's cost). */
	"DROP INDEX requests_process;"
	"DROP INDEX queries_process;",
	/* 8 -> 9: the queries' index by run keeps only the queries outside
	 * any request (startup, background jobs, tests' fixtures). A query of
	 * a request is found through its request (queries_request), which
	 * belongs to the same run; every query row written inside a request
	 * (nearly all of them) no longer updates a second index, some 15% of
	 * the collector's cost per query. */
	"DROP INDEX queries_run_start;"
	"CREATE INDEX queries_run_outside ON queries(run_id, start_unix_ns) WHERE request_id IS NULL;",
	/* 9 -> 10: the requests' index by duration goes. Each row landed in
	 * it at a random place, so every commit rewrote about one of its
	 * pages per request, more the larger the store: some 30% of the
	 * collector's cost per request at 10,000 requests/s. The dashboard
	 * sorts and filters by duration on the run's aggregates in memory
	 * (server/stats.c), which keep every request's duration. */
	"DROP INDEX requests_run_duration;",
	/* 10 -> 11: the requests' indexes by route and by status go too,
	 * some 20% of the instructions the collector spends per request
	 * (each row's entry found from the root, the route by string
	 * compares). The dashboard filters by route, method and status on
	 * the run's aggregates in memory, which keep every request's endpoint
	 * and status; only the requests without a status (a connection that
	 * ended before a response), rare, keep an index, for the list of
	 * them when the aggregates cannot say. */
	"DROP INDEX requests_run_route;"
	"DROP INDEX requests_run_status;"
	"CREATE INDEX requests_run_nostatus ON requests(run_id, start_unix_ns) WHERE status IS NULL;",
	/* 11 -> 12: queries are stored by set: one row of query_sets holds
	 * queries of one request (or outside any request) that the collector
	 * wrote one after the other from one thread to one database, in
	 * order: what they share as columns, each query's own fields as a
	 * JSON array in an array (enum query_field), their distinct texts
	 * (SQL, fingerprint, call site: a repeated query stores its texts
	 * once) as another, which the fields give by index, and the set's
	 * count, summed duration and N+1 count. A row of queries cost the
	 * collector some 10,000 instructions whatever it held (23 columns
	 * through SQLite's VM, their binds, two B-tree inserts): ten queries
	 * per request were three times the request's own cost. The queries
	 * view gives every reader the table it read before, column for
	 * column, and takes inserts (a set of one each). A set's id is its
	 * first query's: a set of n takes ids id .. id+n-1, so query ids stay
	 * those a table of queries would have given. The queries stored
	 * before become sets of one, their ids kept. */
	"CREATE TABLE query_sets ("
	"  id INTEGER PRIMARY KEY,"         /* the first query's id */
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
	"  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
	"  pid INTEGER NOT NULL,"
	"  tid INTEGER,"
	"  db_system TEXT NOT NULL,"
	"  tap TEXT NOT NULL,"
	"  database TEXT,"
	"  attribution TEXT,"
	"  start_unix_ns INTEGER NOT NULL," /* the first query's; each query's own is an offset from it */
	"  n INTEGER NOT NULL,"             /* queries in the set */
	"  duration_ns INTEGER NOT NULL,"   /* their sum */
	"  n_plus_one INTEGER NOT NULL,"    /* how many are flagged N+1 */
	/* queries: [[start offset, duration, sql, sql_truncated, fingerprint,
	 * fingerprint_hash, params, rows, error, call_site, duplicate,
	 * n_plus_one, kind, executions], ...], where sql, fingerprint and
	 * call_site are indexes in texts: ["text", ...] */
	"  queries TEXT NOT NULL,"
	"  texts TEXT NOT NULL);"
	"INSERT INTO query_sets (id, run_id, request_id, process_id, pid, tid, db_system, tap, database, attribution,"
	"  start_unix_ns, n, duration_ns, n_plus_one, queries, texts) SELECT id, run_id, request_id, process_id,"
	"  pid, tid, db_system, tap, database, attribution, start_unix_ns, 1, duration_ns, n_plus_one != 0,"
	"  json_array(json_array(0, duration_ns, CASE WHEN sql IS NOT NULL THEN 0 END, sql_truncated,"
	"  CASE WHEN fingerprint IS NOT NULL THEN 1 END, fingerprint_hash, params, rows, error,"
	"  CASE WHEN call_site IS NOT NULL THEN 2 END, duplicate, n_plus_one, kind, executions)),"
	"  json_array(sql, fingerprint, call_site) FROM queries ORDER BY id;"
	"DROP TABLE queries;"
	"CREATE INDEX query_sets_request ON query_sets(request_id);"
	"CREATE INDEX query_sets_run_outside ON query_sets(run_id, start_unix_ns) WHERE request_id IS NULL;"
	"CREATE VIEW queries (id, run_id, request_id, process_id, pid, tid, start_unix_ns, duration_ns, db_system,"
	"  tap, database, sql, sql_truncated, fingerprint, fingerprint_hash, params, rows, error, call_site,"
	"  attribution, duplicate, n_plus_one, kind, executions) AS"
	"  SELECT s.id + q.key, s.run_id, s.request_id, s.process_id, s.pid, s.tid,"
	"  s.start_unix_ns + json_extract(q.value, '$[0]'), json_extract(q.value, '$[1]'), s.db_system, s.tap,"
	"  s.database, json_extract(s.texts, '$[' || json_extract(q.value, '$[2]') || ']'),"
	"  json_extract(q.value, '$[3]'), json_extract(s.texts, '$[' || json_extract(q.value, '$[4]') || ']'),"
	"  json_extract(q.value, '$[5]'), json_extract(q.value, '$[6]'), json_extract(q.value, '$[7]'),"
	"  json_extract(q.value, '$[8]'), json_extract(s.texts, '$[' || json_extract(q.value, '$[9]') || ']'),"
	"  s.attribution, json_extract(q.value, '$[10]'), json_extract(q.value, '$[11]'),"
	"  json_extract(q.value, '$[12]'), json_extract(q.value, '$[13]')"
	"  FROM query_sets s, json_each(s.queries) q;"
	"CREATE TRIGGER queries_insert INSTEAD OF INSERT ON queries BEGIN"
	"  INSERT INTO query_sets (id, run_id, request_id, process_id, pid, tid, db_system, tap, database,"
	"  attribution, start_unix_ns, n, duration_ns, n_plus_one, queries, texts) VALUES (coalesce(NEW.id,"
	"  (SELECT id + n FROM query_sets ORDER BY id DESC LIMIT 1), 1), NEW.run_id, NEW.request_id,"
	"  NEW.process_id, NEW.pid, NEW.tid, NEW.db_system, NEW.tap, NEW.database, NEW.attribution,"
	"  NEW.start_unix_ns, 1, NEW.duration_ns, coalesce(NEW.n_plus_one, 0) != 0, json_array(json_array(0,"
	"  NEW.duration_ns, CASE WHEN NEW.sql IS NOT NULL THEN 0 END, coalesce(NEW.sql_truncated, 0),"
	"  CASE WHEN NEW.fingerprint IS NOT NULL THEN 1 END, NEW.fingerprint_hash, NEW.params, NEW.rows,"
	"  NEW.error, CASE WHEN NEW.call_site IS NOT NULL THEN 2 END, coalesce(NEW.duplicate, 0),"
	"  coalesce(NEW.n_plus_one, 0), coalesce(NEW.kind, 'app'), coalesce(NEW.executions, 1))),"
	"  json_array(NEW.sql, NEW.fingerprint, NEW.call_site));"
	"  END;",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == TG_STORE_SCHEMA,
	       "one migration step per schema version");

enum stmt_id {
	ST_REQUEST,
	ST_METRIC,
	ST_LOSS,
	ST_PROCESS_END,
	ST_REQUEST_FIXUP,
	ST_QUERY_SET,
	ST_SPAN,
	ST_FRAME_INS,
	ST_FRAME_GET,
	ST_STACK_INS,
	ST_STACK_GET,
	ST_SAMPLE,
	ST_REQUEST_CPU,
	ST_REQUEST_ROUTE,
	ST_REQUEST_EXCEPTION,
	ST_COUNT,
};

/* A set of queries (schema 12): each query's own fields, in this order, as
 * a JSON array (the queries view reads them by position). QF_START is the
 * offset from the set's start; QF_SQL, QF_FINGERPRINT and QF_CALL_SITE are
 * indexes in the set's texts (or null). */
enum query_field {
	QF_START, QF_DURATION, QF_SQL, QF_SQL_TRUNCATED, QF_FINGERPRINT, QF_FINGERPRINT_HASH, QF_PARAMS,
	QF_ROWS, QF_ERROR, QF_CALL_SITE, QF_DUPLICATE, QF_N_PLUS_ONE, QF_KIND, QF_EXECUTIONS, QUERY_FIELDS
};
/* A set is written when the next query belongs elsewhere (another request,
 * process, run, thread, database, tap or attribution), at the batch's
 * flush, or when it is this large (or has SET_TEXTS texts). */
#define SET_QUERIES 4096
#define SET_BYTES (256 * 1024)
/* A set's id is the first of its queries': the one after the last set's
 * queries. The store gives it (tg_store.next_set_id) once a set has been
 * written in the batch: from then on, until its commit, no other writer
 * can add one. */
#define SET_ID "coalesce(?, (SELECT id + n FROM query_sets ORDER BY id DESC LIMIT 1), 1)"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_REQUEST] = "INSERT INTO requests (run_id, process_id, pid, tid, conn_id, start_unix_ns,"
		       " duration_ns, req_end_ns, resp_start_ns, method, path, query_string, http_version,"
		       " status, request_bytes, response_bytes, client_addr, error, flags, headers, transport,"
		       " route, exception, forwarded_for, trace_id, parent_span_id)"
		       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	[ST_METRIC] = ("INSERT INTO process_metrics (process_id, ts_unix_ns, cpu_user_ns, cpu_sys_ns, rss_bytes,"
		       " sched_cpu_ns, run_delay_ns) VALUES (?,?,?,?,?,?,?)"),
	[ST_LOSS] = "INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes) VALUES (?,?,?,?,?,?)",
	[ST_PROCESS_END] = "UPDATE processes SET ended_unix_ns = ? WHERE id = ?",
	[ST_REQUEST_FIXUP] = "UPDATE requests SET error = ?, response_bytes = max(response_bytes - ?, 0)"
			     " WHERE run_id = ? AND pid = ? AND conn_id = ? AND start_unix_ns = ?",
	[ST_FRAME_INS] = "INSERT OR IGNORE INTO frames (kind, name, file, line) VALUES (?,?,?,?)",
	[ST_FRAME_GET] = "SELECT id FROM frames WHERE kind = ? AND name = ? AND file = ? AND line = ?",
	[ST_STACK_INS] = "INSERT OR IGNORE INTO stacks (hash, frames) VALUES (?,?)",
	[ST_STACK_GET] = "SELECT id, frames FROM stacks WHERE hash = ?",
	[ST_SAMPLE] = "INSERT INTO samples (run_id, request_id, process_id, tid, stack_id, state, count, cpu_ns)"
		      " VALUES (?,?,?,?,?,?,?,?)",
	[ST_REQUEST_CPU] = "UPDATE requests SET cpu_ns = coalesce(cpu_ns, 0) + ? WHERE id = ?",
	[ST_REQUEST_ROUTE] = "UPDATE requests SET route = ? WHERE id = ? AND route IS NULL",
	[ST_REQUEST_EXCEPTION] = "UPDATE requests SET exception = ? WHERE id = ?",
	[ST_QUERY_SET] = "INSERT INTO query_sets (id, run_id, request_id, process_id, pid, tid, db_system, tap,"
			 " database, attribution, start_unix_ns, n, duration_ns, n_plus_one, queries, texts)"
			 " VALUES (" SET_ID ",?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	[ST_SPAN] = "INSERT INTO spans (run_id, request_id, process_id, pid, tid, kind, start_unix_ns, duration_ns,"
		    " method, host, path, status, request_bytes, response_bytes, tls, error, call_site, attribution)"
		    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
};

/* A full disk: the store keeps this much free beside it (a file it removes
 * to write the run's last rows), and writes again once this much is free. */
#define RESERVE_BYTES (256 * 1024)

/* The writer's page cache: the indexes of a table of millions of requests
 * stay in memory, so that an insert does not read them back from the file
 * (SQLite's default is 2 MiB). */
#define WRITE_CACHE_KIB 16384
#define TG_STR_(x) #x
#define TG_STR(x) TG_STR_(x)
#define RESUME_FREE_BYTES (1024 * 1024)

/* With this much free on its disk at the start, the writer's WAL is
 * checkpointed at BIG_WAL_BYTES and cut back to that size: at 10,000
 * requests/s a checkpoint then comes about every second commit rather
 * than after each (copying each page once for all the commits that
 * rewrote it, and two fdatasync()s fewer), 5-10% of the collector's CPU
 * per request. Below it, or once the disk was full, SMALL_WAL_BYTES
 * (small_wal()). */
#define BIG_WAL_FREE_BYTES (64LL * 1024 * 1024)
#define BIG_WAL_BYTES (4LL * 1024 * 1024)
#define SMALL_WAL_BYTES (1LL * 1024 * 1024)

/* The page size of a store this program creates (an existing store keeps
 * its own). SQLite writes a commit's pages to the WAL with two write()s
 * each, header and page, and a checkpoint copies them back one write()
 * each: at 10,000 requests/s a commit's new rows fill some 18 pages of
 * SQLite's default 4 KiB, against 5 of 16 KiB, and those system calls
 * were a tenth of the collector's CPU per request. */
#define NEW_STORE_PAGE_BYTES 16384

/* A name of TimeGlass's own (struct tg_query_row), kept. */
#define SET_NAME_BYTES 32
/* A set's distinct texts (each query's SQL, fingerprint and call site are
 * an index among them), and the slots of their hash table. */
#define SET_TEXTS 256
#define SET_TEXT_SLOTS 1024

/* A growing text (JSON, or the texts a set compares with). */
struct jbuf {
	char *p;
	size_t len, cap;
};

/* A text of the set, as it came (for compares), at raw.p + off. */
struct set_text {
	size_t off, len;
	uint64_t hash;
};

/* Queries held to be written as one row of query_sets: what they share,
 * their own fields as JSON (json) and their distinct texts (texts). */
struct query_set {
	int64_t run_id, request_id, process_id; /* request_id, process_id 0 = NULL */
	int32_t pid;
	int64_t tid;
	char db_system[SET_NAME_BYTES], tap[SET_NAME_BYTES], attribution[SET_NAME_BYTES];
	int has_attribution;
	int has_database;
	char *database; /* its database_len bytes when has_database */
	size_t database_len, database_cap;
	int64_t start_unix_ns, duration_ns;
	unsigned n, n_plus_one;
	struct jbuf json;  /* "[[...],[...]" as the queries come; "]" ends it */
	struct jbuf texts; /* "[\"...\",\"...\"" likewise */
	struct set_text text[SET_TEXTS];
	unsigned n_texts;
	uint16_t slot[SET_TEXT_SLOTS]; /* text index + 1, 0 = free */
	struct jbuf raw;               /* the texts as they came, one after the other */
};

struct tg_store {
	sqlite3 *db;
	char *path;
	enum tg_store_mode mode;
	sqlite3_stmt *stmt[ST_COUNT]; /* prepared on first use */
	int in_batch;                 /* a batch transaction is open */
	unsigned pending;             /* rows added in the open batch */
	unsigned pending_requests;    /* requests among them */
	int adding_request;           /* the batch statement being run inserts a request */
	unsigned stmt_rows;           /* rows the batch statement being run inserts */
	struct query_set set;         /* the queries held for one ST_QUERY_SET */
	int64_t next_set_id;          /* the next set's id in the open batch, 0 = not known */
	uint64_t lost;                /* rows lost to SQLite errors, see tg_store_take_lost() */
	uint64_t lost_requests;       /* requests among them */
	int full;                     /* the disk is full: rows are counted as lost, not written */
	uint64_t rollbacks;           /* batches rolled back (tg_store_rollbacks()) */
	int64_t stacks_kept;          /* highest stacks.id committed (or there at open) */
	int64_t stacks_max;           /* highest stacks.id given, committed or not */
	int64_t requests_kept;        /* the same for requests.id */
	int64_t requests_max;
	char *reserve;                /* the reserve file (write mode), NULL if none */
};

sqlite3 *tg_store_db(struct tg_store *s)
{
	return s->db;
}

const char *tg_store_path(const struct tg_store *s)
{
	return s->path;
}

unsigned tg_store_pending(const struct tg_store *s)
{
	return s->pending + s->set.n;
}

uint64_t tg_store_take_lost(struct tg_store *s, uint64_t *requests)
{
	uint64_t n = s->lost;
	if (requests)
		*requests = s->lost_requests;
	s->lost = s->lost_requests = 0;
	return n;
}

/* n rows did not reach the store, requests of them among them. */
static void lose(struct tg_store *s, uint64_t n, uint64_t requests)
{
	s->lost += n;
	s->lost_requests += requests;
}

void tg_store_count_lost(struct tg_store *s, uint64_t n)
{
	lose(s, n, 0);
}

uint64_t tg_store_rollbacks(const struct tg_store *s, int64_t *stacks_kept, int64_t *requests_kept)
{
	if (stacks_kept)
		*stacks_kept = s->stacks_kept;
	if (requests_kept)
		*requests_kept = s->requests_kept;
	return s->rollbacks;
}

/* The open batch was rolled back: its ids are free again. */
static void rolled_back(struct tg_store *s)
{
	s->rollbacks++;
	s->stacks_max = s->stacks_kept;
	s->requests_max = s->requests_kept;
}

static int exec(struct tg_store *s, const char *sql);
static int query_int(struct tg_store *s, const char *sql, int64_t *out);

/* The WAL checkpointed once it holds about bytes (in the store's pages)
 * and cut back to bytes after a checkpoint made it longer. -1 on error. */
static int wal_limit(struct tg_store *s, int64_t bytes)
{
	int64_t page = 0, dummy;
	if (query_int(s, "PRAGMA page_size", &page) < 0)
		return -1;
	char sql[128];
	snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint = %lld",
		 (long long)(page > 0 && bytes / page > 0 ? bytes / page : 1));
	if (exec(s, sql) < 0)
		return -1;
	snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %lld", (long long)bytes);
	return query_int(s, sql, &dummy);
}

/* The WAL on a disk with little room: checkpointed at SMALL_WAL_BYTES
 * (not BIG_WAL_BYTES) and cut back to that size after a checkpoint made
 * it longer, so that the disk the store needs beyond its own data stays
 * small (on a 2 MiB disk, 4 MiB of WAL pages filled it before the first
 * request was stored). Errors leave the settings as they were. */
static void small_wal(struct tg_store *s)
{
	wal_limit(s, SMALL_WAL_BYTES);
}

/* After an error: SQLITE_FULL (or ENOSPC underneath) puts the store in
 * full mode, where rows are counted as lost without trying SQLite until
 * tg_store_resume() finds room again. */
static void check_full(struct tg_store *s)
{
	if (sqlite3_errcode(s->db) == SQLITE_FULL || errno == ENOSPC) {
		s->full = 1;
		small_wal(s); /* the disk stays tight after a resume */
	}
}

int tg_store_full(const struct tg_store *s)
{
	return s->full;
}

/* Free bytes on the store's file system, or -1. */
static int64_t free_bytes(const struct tg_store *s)
{
	struct statvfs v;
	if (statvfs(s->path, &v) < 0)
		return -1;
	return (int64_t)v.f_bavail * (int64_t)v.f_frsize;
}

int tg_store_resume(struct tg_store *s)
{
	if (!s->full)
		return 1;
	int64_t free = free_bytes(s);
	if (free < RESUME_FREE_BYTES)
		return 0;
	s->full = 0;
	return 1;
}

int tg_store_last_resort(struct tg_store *s)
{
	if (s->reserve)
		unlink(s->reserve);
	free(s->reserve);
	s->reserve = NULL;
	if (s->in_batch)
		tg_store_flush(s);
	s->full = 0;
	return 0;
}

/* The reserve file: RESERVE_BYTES of the disk kept for the run's end and
 * its loss counts, given back by tg_store_last_resort(). */
static void make_reserve(struct tg_store *s)
{
	size_t n = strlen(s->path) + sizeof "-reserve";
	if (!(s->reserve = malloc(n)))
		return;
	snprintf(s->reserve, n, "%s-reserve", s->path);
	int fd = open(s->reserve, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || posix_fallocate(fd, 0, RESERVE_BYTES) != 0) {
		if (fd >= 0) {
			close(fd);
			unlink(s->reserve);
		}
		free(s->reserve);
		s->reserve = NULL;
		return;
	}
	close(fd);
}

/* Records "PATH: sqlite message" as the error. */
static int fail_db(struct tg_store *s, const char *what)
{
	return tg_fail("%s: %s%s%s", s->path, what ? what : "", what ? ": " : "", sqlite3_errmsg(s->db));
}

static int exec(struct tg_store *s, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		tg_fail("%s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Reads a single integer result of sql into *out. */
static int query_int(struct tg_store *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail_db(s, NULL);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*out = 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fail_db(s, NULL);
	return 0;
}

/* Explains the first failure on a file that may not be a database at all. */
static int fail_open(struct tg_store *s)
{
	int rc = sqlite3_errcode(s->db);
	if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
		return tg_fail("%s is not a TimeGlass store (%s)", s->path, sqlite3_errmsg(s->db));
	return fail_db(s, NULL);
}

enum tg_schema_class tg_store_classify(sqlite3 *db, int64_t *version)
{
	sqlite3_stmt *st;
	*version = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return TG_SCHEMA_ERROR;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return TG_SCHEMA_ERROR;
	if (*version > TG_STORE_SCHEMA)
		return TG_SCHEMA_NEWER;
	if (*version == TG_STORE_SCHEMA)
		return TG_SCHEMA_CURRENT;
	if (*version != 0)
		return TG_SCHEMA_OLDER; /* (a negative version too, as it always was) */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL) != SQLITE_OK)
		return TG_SCHEMA_ERROR;
	rc = sqlite3_step(st);
	int64_t tables = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (tables < 0)
		return TG_SCHEMA_ERROR;
	return tables ? TG_SCHEMA_FOREIGN : TG_SCHEMA_EMPTY;
}

/* Checks the schema version; in write mode brings the store up to date. */
static int migrate(struct tg_store *s)
{
	int64_t version;
	enum tg_schema_class cls = tg_store_classify(s->db, &version);
	switch (cls) {
	case TG_SCHEMA_ERROR:
		return fail_open(s);
	case TG_SCHEMA_NEWER:
		return tg_fail("%s was written by a newer TimeGlass (schema %lld, this one reads up to %d)", s->path,
			       (long long)version, TG_STORE_SCHEMA);
	case TG_SCHEMA_FOREIGN:
		return tg_fail("%s is not a TimeGlass store (it holds other tables)", s->path);
	case TG_SCHEMA_CURRENT:
		return 0;
	case TG_SCHEMA_EMPTY:
	case TG_SCHEMA_OLDER:
		break;
	}
	if (s->mode == TG_STORE_READ) {
		if (version == 0)
			return tg_fail("%s holds no TimeGlass data yet; record some with: timeglass run -- CMD",
				       s->path);
		return tg_fail("%s uses an older schema (%lld); open it once with timeglass run to upgrade it",
			       s->path, (long long)version);
	}
	/* Before the first table: on a store with tables already (one another
	 * writer just created, say) it changes nothing. */
	if (cls == TG_SCHEMA_EMPTY && exec(s, "PRAGMA page_size = " TG_STR(NEW_STORE_PAGE_BYTES)) < 0)
		return -1;
	for (;;) {
		/* IMMEDIATE: two writers racing on a new store serialize here. */
		if (exec(s, "BEGIN IMMEDIATE") < 0)
			return -1;
		if (query_int(s, "PRAGMA user_version", &version) < 0)
			goto fail;
		if (version >= TG_STORE_SCHEMA) {
			exec(s, "COMMIT");
			return 0;
		}
		if (exec(s, migrations[version]) < 0)
			goto fail;
		char sql[64];
		snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", (long long)version + 1);
		if (exec(s, sql) < 0 || exec(s, "COMMIT") < 0)
			goto fail;
	}
fail:;
	char saved[TG_ERR_MAX];
	tg_strlcpy(saved, tg_error(), sizeof saved);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return tg_fail("%s (while upgrading the schema)", saved);
}

/* Creates the file (and its directories) with private permissions. */
static int create_file(const char *path)
{
	mode_t old = umask(077);
	int rc = tg_mkdirs_for(path);
	if (rc == 0) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			rc = tg_fail("cannot create store %s: %s", path, strerror(errno));
		else
			close(fd);
	}
	umask(old);
	return rc;
}

/* An existing store is written: it holds captured requests (paths, query
 * strings, headers, SQL), so the file and its -wal and -shm are made
 * private to their owner (group and other bits dropped), and so is the
 * directory when it is TimeGlass's own .timeglass, with one warning line.
 * Returns 0, or -1 when a file cannot be made private (someone else owns
 * it): the store is refused rather than written readable by others. */
static int make_private(const char *path)
{
	static const char *const suffix[] = { "", "-wal", "-shm" };
	char f[PATH_MAX + 8];
	struct stat st;
	int was = -1;
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		snprintf(f, sizeof f, "%s%s", path, suffix[i]);
		if (stat(f, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 077))
			continue;
		if (chmod(f, st.st_mode & 0700) < 0)
			return tg_fail("store %s is open to other users (mode %04o) and cannot be made private: %s;"
				       " run: chmod go-rwx %s*",
				       f, (unsigned)(st.st_mode & 07777), strerror(errno), path);
		if (was < 0)
			was = (int)(st.st_mode & 07777);
	}
	char dir[PATH_MAX];
	tg_strlcpy(dir, path, sizeof dir);
	char *slash = strrchr(dir, '/');
	int dir_was = -1;
	if (slash) {
		*slash = '\0';
		char *up = strrchr(dir, '/');
		if (strcmp(up ? up + 1 : dir, ".timeglass") == 0 && stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
		    (st.st_mode & 077) && chmod(dir, st.st_mode & 0700) == 0)
			dir_was = (int)(st.st_mode & 07777);
	}
	if (was >= 0)
		tg_warn("store %s was open to other users (mode %04o); made it private (%04o)%s: it holds "
			"captured requests",
			path, (unsigned)was, (unsigned)was & 0700, dir_was >= 0 ? ", and its directory" : "");
	else if (dir_was >= 0)
		tg_warn("the directory of store %s was open to other users (mode %04o); made it private (%04o): "
			"the store holds captured requests",
			path, (unsigned)dir_was, (unsigned)dir_was & 0700);
	return 0;
}

struct tg_store *tg_store_open(const char *path, enum tg_store_mode mode)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno != ENOENT || mode == TG_STORE_READ) {
			if (errno == ENOENT)
				tg_fail("no store at %s; record one with: timeglass run -- CMD", path);
			else
				tg_fail("cannot open store %s: %s", path, strerror(errno));
			return NULL;
		}
		if (create_file(path) < 0)
			return NULL;
	} else if (!S_ISREG(st.st_mode)) {
		tg_fail("%s is not a TimeGlass store (not a regular file)", path);
		return NULL;
	} else if (mode == TG_STORE_WRITE && access(path, W_OK) < 0) {
		tg_fail("cannot write store %s: %s", path, strerror(errno));
		return NULL;
	}

	struct tg_store *s = calloc(1, sizeof *s);
	if (!s || !(s->path = strdup(path))) {
		free(s);
		tg_fail("out of memory");
		return NULL;
	}
	s->mode = mode;
	int flags = (mode == TG_STORE_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
	/* A writer (the collector, a process of its own) does not need
	 * SQLite's memory statistics, which take a global mutex around every
	 * allocation. Only possible before SQLite's first use in the process;
	 * later it fails, harmlessly. */
	if (mode == TG_STORE_WRITE)
		sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	mode_t old = umask(077); /* -wal and -shm files */
	int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
	umask(old);
	if (rc != SQLITE_OK) {
		if (s->db)
			fail_db(s, "cannot open");
		else
			tg_fail("%s: cannot open: out of memory", path);
		goto fail;
	}
	sqlite3_extended_result_codes(s->db, 0);
	sqlite3_busy_timeout(s->db, 5000);
	if (migrate(s) < 0)
		goto fail;
	/* once it is known to be ours (a newer store is left as it is); the
	 * -wal and -shm the open made are seen to as well */
	if (mode == TG_STORE_WRITE && make_private(path) < 0)
		goto fail;
	if (mode == TG_STORE_WRITE) {
		int64_t dummy;
		if (query_int(s, "PRAGMA journal_mode = WAL", &dummy) < 0 ||
		    exec(s, "PRAGMA synchronous = NORMAL") < 0 ||
		    exec(s, "PRAGMA cache_size = -" TG_STR(WRITE_CACHE_KIB)) < 0)
			goto fail;
		int64_t fb = free_bytes(s);
		if (fb >= 0 && fb < BIG_WAL_FREE_BYTES)
			small_wal(s);
		else if (wal_limit(s, BIG_WAL_BYTES) < 0)
			goto fail;
		make_reserve(s);
		if (query_int(s, "SELECT coalesce(max(id), 0) FROM stacks", &s->stacks_kept) < 0)
			s->stacks_kept = 0;
		if (query_int(s, "SELECT coalesce(max(id), 0) FROM requests", &s->requests_kept) < 0)
			s->requests_kept = 0;
		s->stacks_max = s->stacks_kept;
		s->requests_max = s->requests_kept;
	} else if (exec(s, "PRAGMA query_only = ON") < 0) {
		goto fail;
	}
	/* The collector's rows point only to rows it wrote before (its run,
	 * its processes, its requests): checking each reference again costs a
	 * lookup per foreign key and row, so the writer leaves foreign keys
	 * off; tg_store_prune() deletes a run's rows table by table. It
	 * deletes nothing else, so the zeroing of freed space (secure_delete,
	 * on in Debian's SQLite) is left to tg_store_prune() too: the insert
	 * path does not pay for it. */
	if (exec(s, mode == TG_STORE_WRITE ? "PRAGMA foreign_keys = OFF; PRAGMA secure_delete = OFF"
					    : "PRAGMA foreign_keys = ON") < 0)
		goto fail;
	return s;
fail:
	sqlite3_close(s->db);
	free(s->path);
	free(s);
	return NULL;
}

void tg_store_close(struct tg_store *s)
{
	if (!s)
		return;
	if (s->in_batch || s->set.n)
		tg_store_flush(s);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	free(s->set.json.p);
	free(s->set.texts.p);
	free(s->set.raw.p);
	free(s->set.database);
	sqlite3_close(s->db);
	if (s->reserve)
		unlink(s->reserve);
	free(s->reserve);
	free(s->path);
	free(s);
}

/*
 * Statements run once, outside the batch (runs, processes, pruning): a
 * failure to prepare or to step one is recorded as "PATH: what: message".
 */

/* NULL on error. */
static sqlite3_stmt *prepare_once(struct tg_store *s, const char *sql, const char *what)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		fail_db(s, what);
		return NULL;
	}
	return st;
}

/* Steps st to completion and finalizes it: 0, or -1 on error. */
static int step_once(struct tg_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail_db(s, what);
}

static int prune(struct tg_store *s, unsigned keep);

int tg_store_prune(struct tg_store *s, unsigned keep)
{
	if (keep == 0)
		return 0;
	/* The writer runs without secure delete (see tg_store_open()): what
	 * a prune frees is overwritten with zeros. */
	if (tg_store_flush(s) < 0 || exec(s, "PRAGMA secure_delete = ON") < 0)
		return -1;
	int n = prune(s, keep);
	if (s->mode == TG_STORE_WRITE && exec(s, "PRAGMA secure_delete = OFF") < 0)
		return -1;
	return n;
}

/* A run's rows, table by table, through the indexes each table has by run
 * (or, for the metrics, by process; for the queries of a request, by
 * request: schema 9 indexes by run only the queries outside any request):
 * with foreign keys on, deleting its processes would look up every table
 * by process_id for the cascade, and requests and queries have no such
 * index (schema 8). Queries go before their requests. Shared frames and
 * stacks stay. The writer runs with foreign keys off, so nothing cascades
 * behind these statements; a reader's connection never deletes. */
static const char prune_sql[] =
	"CREATE TEMP TABLE IF NOT EXISTS prune_runs (id INTEGER PRIMARY KEY);"
	"DELETE FROM temp.prune_runs;"
	"INSERT INTO temp.prune_runs SELECT id FROM runs WHERE id NOT IN"
	" (SELECT id FROM runs ORDER BY id DESC LIMIT ?1);"
	"DELETE FROM samples WHERE run_id IN temp.prune_runs;"
	"DELETE FROM spans WHERE run_id IN temp.prune_runs;"
	"DELETE FROM query_sets WHERE request_id IN (SELECT id FROM requests WHERE run_id IN temp.prune_runs);"
	"DELETE FROM query_sets INDEXED BY query_sets_run_outside WHERE run_id IN temp.prune_runs AND request_id IS NULL;"
	"DELETE FROM requests WHERE run_id IN temp.prune_runs;"
	"DELETE FROM process_metrics WHERE process_id IN"
	" (SELECT id FROM processes WHERE run_id IN temp.prune_runs);"
	"DELETE FROM losses WHERE run_id IN temp.prune_runs;"
	"DELETE FROM processes WHERE run_id IN temp.prune_runs;"
	"DELETE FROM runs WHERE id IN temp.prune_runs;";

static int prune(struct tg_store *s, unsigned keep)
{
	static const char what[] = "cannot delete old runs";
	if (exec(s, "BEGIN IMMEDIATE") < 0)
		return -1;
	int n = 0;
	for (const char *sql = prune_sql; *sql;) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(s->db, sql, -1, &st, &sql) != SQLITE_OK) {
			fail_db(s, what);
			goto fail;
		}
		if (!st)
			continue;
		if (sqlite3_bind_parameter_count(st) > 0)
			sqlite3_bind_int64(st, 1, keep);
		if (step_once(s, st, what) < 0)
			goto fail;
		n = sqlite3_changes(s->db); /* the last statement's: the runs deleted */
	}
	if (exec(s, "COMMIT") < 0)
		goto fail;
	return n;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Text is bound without a copy (SQLITE_STATIC): every statement is stepped
 * right after its values are bound, while the caller's strings live, and
 * its bindings are cleared before it is bound again.
 *
 * Captured text is bytes from the network, a driver or another process's
 * memory: what is not valid UTF-8 is stored with U+FFFD in place of each
 * byte that starts no valid sequence, so that every reader of the store
 * (Python's sqlite3 among them) can read it as text. */
static void bind_text_or_null(sqlite3_stmt *st, int i, const char *p, size_t n)
{
	if (!p) {
		sqlite3_bind_null(st, i);
		return;
	}
	if (tg_utf8_valid_prefix(p, n) == n) {
		sqlite3_bind_text(st, i, p, (int)n, SQLITE_STATIC);
		return;
	}
	size_t m = 0;
	char *fixed = tg_utf8_repair(p, n, &m);
	if (fixed)
		sqlite3_bind_text64(st, i, fixed, m, free, SQLITE_UTF8);
	else
		sqlite3_bind_null(st, i);
}

static void bind_cstr(sqlite3_stmt *st, int i, const char *p)
{
	bind_text_or_null(st, i, p, p ? strlen(p) : 0);
}

/* Binds v, or NULL when the row has none (!has). */
static void bind_int_if(sqlite3_stmt *st, int i, int has, int64_t v)
{
	if (has)
		sqlite3_bind_int64(st, i, v);
	else
		sqlite3_bind_null(st, i);
}

/* Binds v, or NULL for 0 (ids and fields where 0 stands for none). */
static void bind_int_or_null(sqlite3_stmt *st, int i, int64_t v)
{
	bind_int_if(st, i, v != 0, v);
}

int64_t tg_store_run_begin(struct tg_store *s, const struct tg_run_info *ri)
{
	static const char what[] = "cannot add a run";
	if (tg_store_flush(s) < 0)
		return -1;
	sqlite3_stmt *st = prepare_once(s,
					"INSERT INTO runs (started_unix_ns, command, cwd, hostname, tg_version, source)"
					" VALUES (?,?,?,?,?,?)",
					what);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, ri->started_unix_ns);
	bind_cstr(st, 2, ri->command ? ri->command : "");
	bind_cstr(st, 3, ri->cwd);
	bind_cstr(st, 4, ri->hostname);
	bind_cstr(st, 5, ri->tg_version);
	bind_cstr(st, 6, ri->source ? ri->source : "run");
	return step_once(s, st, what) < 0 ? -1 : sqlite3_last_insert_rowid(s->db);
}

int tg_store_run_end(struct tg_store *s, int64_t run_id, int64_t ended_unix_ns, int exit_status)
{
	static const char what[] = "cannot finish the run";
	if (tg_store_flush(s) < 0)
		return -1;
	sqlite3_stmt *st = prepare_once(s, "UPDATE runs SET ended_unix_ns = ?, exit_status = ? WHERE id = ?", what);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, ended_unix_ns);
	bind_int_if(st, 2, exit_status >= 0, exit_status);
	sqlite3_bind_int64(st, 3, run_id);
	return step_once(s, st, what);
}

int64_t tg_store_process_add(struct tg_store *s, const struct tg_process_info *pi)
{
	static const char what[] = "cannot add a process";
	/* Committed at once, outside the batch: a failed batch must not take
	 * away the row its requests point to. */
	tg_store_flush(s);
	sqlite3_stmt *st = prepare_once(s,
					"INSERT INTO processes (run_id, pid, ppid, exe, cmdline, started_unix_ns, after_fork)"
					" VALUES (?,?,?,?,?,?,?)",
					what);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, pi->run_id);
	sqlite3_bind_int(st, 2, pi->pid);
	sqlite3_bind_int(st, 3, pi->ppid);
	bind_cstr(st, 4, pi->exe);
	bind_cstr(st, 5, pi->cmdline);
	sqlite3_bind_int64(st, 6, pi->started_unix_ns);
	sqlite3_bind_int(st, 7, pi->after_fork ? 1 : 0);
	return step_once(s, st, what) < 0 ? -1 : sqlite3_last_insert_rowid(s->db);
}

sqlite3_stmt *tg_store_prepare_or_die(struct tg_store *s, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		tg_die("%s: %s", s->path, sqlite3_errmsg(s->db));
	return st;
}

int64_t tg_store_latest_run(struct tg_store *s)
{
	int64_t id = tg_latest_run(s->db);
	if (id < 0)
		tg_die("%s: %s", s->path, sqlite3_errmsg(s->db));
	return id;
}

int tg_store_begin(struct tg_store *s, int wait_ms)
{
	if (s->in_batch || s->full)
		return 0; /* full: rows are counted as they come, without SQLite */
	sqlite3_busy_timeout(s->db, wait_ms);
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	sqlite3_busy_timeout(s->db, 5000);
	if (rc != SQLITE_OK)
		return -1;
	s->in_batch = 1;
	s->pending = 0;
	s->next_set_id = 0;
	return 0;
}

/* The prepared statement `id`, reset, inside an open batch, for `rows`
 * rows (1, or a set's queries for ST_QUERY_SET); NULL on error (and when the disk
 * is full: the rows are counted as lost). A loss row that cannot be
 * written is not itself counted: the collector keeps its figure. */
static sqlite3_stmt *batch_stmt_rows(struct tg_store *s, enum stmt_id id, unsigned rows)
{
	int counted = id != ST_LOSS;
	s->adding_request = id == ST_REQUEST;
	s->stmt_rows = rows;
	if (s->full) {
		if (counted)
			lose(s, rows, s->adding_request);
		return NULL;
	}
	if (!s->stmt[id] && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[id],
					       NULL) != SQLITE_OK) {
		fail_db(s, NULL);
		if (counted)
			lose(s, rows, s->adding_request);
		return NULL;
	}
	if (!s->in_batch) {
		if (exec(s, "BEGIN") < 0) {
			check_full(s);
			if (counted)
				lose(s, rows, s->adding_request);
			return NULL;
		}
		s->in_batch = 1;
		s->pending = s->pending_requests = 0;
		s->next_set_id = 0;
	}
	sqlite3_reset(s->stmt[id]);
	/* The row statements bind every parameter each time: clearing first
	 * would be work thrown away. */
	if (id != ST_REQUEST && id != ST_QUERY_SET && id != ST_SAMPLE)
		sqlite3_clear_bindings(s->stmt[id]);
	return s->stmt[id];
}

static sqlite3_stmt *batch_stmt(struct tg_store *s, enum stmt_id id)
{
	return batch_stmt_rows(s, id, 1);
}

static int batch_step(struct tg_store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	unsigned counted = st != s->stmt[ST_LOSS] ? s->stmt_rows : 0;
	if (rc == SQLITE_DONE) {
		s->pending += counted;
		s->pending_requests += s->adding_request;
		return 0;
	}
	fail_db(s, NULL);
	if (rc == SQLITE_FULL)
		s->full = 1;
	if (counted)
		lose(s, counted, s->adding_request);
	if (sqlite3_get_autocommit(s->db)) {
		/* SQLite rolled the whole batch back (disk full, I/O error). */
		lose(s, s->pending, s->pending_requests);
		rolled_back(s);
		s->in_batch = 0;
		s->pending = s->pending_requests = 0;
	}
	return -1;
}

int tg_store_process_end(struct tg_store *s, int64_t process_id, int64_t ended_unix_ns)
{
	sqlite3_stmt *st = batch_stmt(s, ST_PROCESS_END);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, ended_unix_ns);
	sqlite3_bind_int64(st, 2, process_id);
	return batch_step(s, st);
}

int tg_store_request_fixup(struct tg_store *s, int64_t run_id, int32_t pid, int64_t conn_id,
			   int64_t start_unix_ns, const char *error, int64_t unsent_bytes)
{
	sqlite3_stmt *st = batch_stmt(s, ST_REQUEST_FIXUP);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, error, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, unsent_bytes);
	sqlite3_bind_int64(st, 3, run_id);
	sqlite3_bind_int(st, 4, pid);
	sqlite3_bind_int64(st, 5, conn_id);
	sqlite3_bind_int64(st, 6, start_unix_ns);
	return batch_step(s, st);
}

int tg_store_request_add(struct tg_store *s, const struct tg_request_row *r)
{
	sqlite3_stmt *st = batch_stmt(s, ST_REQUEST);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, r->run_id);
	bind_int_or_null(st, 2, r->process_id);
	sqlite3_bind_int(st, 3, r->pid);
	sqlite3_bind_int64(st, 4, r->tid);
	sqlite3_bind_int64(st, 5, r->conn_id);
	sqlite3_bind_int64(st, 6, r->start_unix_ns);
	sqlite3_bind_int64(st, 7, r->duration_ns);
	bind_int_if(st, 8, r->has_req_end, r->req_end_ns);
	bind_int_if(st, 9, r->has_resp_start, r->resp_start_ns);
	bind_text_or_null(st, 10, r->method, r->method_len);
	bind_text_or_null(st, 11, r->path, r->path_len);
	bind_text_or_null(st, 12, r->query, r->query_len);
	bind_cstr(st, 13, r->http_version);
	bind_int_or_null(st, 14, r->status);
	sqlite3_bind_int64(st, 15, r->request_bytes);
	sqlite3_bind_int64(st, 16, r->response_bytes);
	bind_cstr(st, 17, r->client_addr);
	bind_cstr(st, 18, r->error);
	sqlite3_bind_int64(st, 19, r->flags);
	bind_text_or_null(st, 20, r->headers, r->headers_len);
	bind_cstr(st, 21, r->transport ? r->transport : "http");
	bind_text_or_null(st, 22, r->route, r->route_len);
	bind_text_or_null(st, 23, r->exception, r->exception_len);
	bind_text_or_null(st, 24, r->forwarded_for, r->forwarded_for_len);
	bind_cstr(st, 25, r->trace_id[0] ? r->trace_id : NULL);
	bind_cstr(st, 26, r->parent_span_id[0] ? r->parent_span_id : NULL);
	if (batch_step(s, st) < 0)
		return -1;
	int64_t id = sqlite3_last_insert_rowid(s->db);
	if (id > s->requests_max)
		s->requests_max = id;
	return 0;
}

int64_t tg_store_last_id(struct tg_store *s)
{
	return sqlite3_last_insert_rowid(s->db);
}

/* The columns spans begin with. */
static void bind_origin(sqlite3_stmt *st, int o, int64_t run_id, int64_t request_id, int64_t process_id,
			int32_t pid, int64_t tid)
{
	sqlite3_bind_int64(st, o + 1, run_id);
	bind_int_or_null(st, o + 2, request_id);
	bind_int_or_null(st, o + 3, process_id);
	sqlite3_bind_int(st, o + 4, pid);
	sqlite3_bind_int64(st, o + 5, tid);
}

/* Room for `more` bytes after b's text (a buffer there, even for none);
 * -1 out of memory. */
static int jb_room(struct jbuf *b, size_t more)
{
	return TG_RESERVE(b->p, b->len + (b->p || more ? more : 1), b->cap, 4096);
}

/* Appends to b (room was made). */
static void put(struct jbuf *b, const char *p, size_t n)
{
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put_i64(struct jbuf *b, int64_t v)
{
	static const char pairs[] = "00010203040506070809101112131415161718192021222324"
				    "25262728293031323334353637383940414243444546474849"
				    "50515253545556575859606162636465666768697071727374"
				    "75767778798081828384858687888990919293949596979899";
	char *d = b->p + b->len;
	/* Most of a set's numbers are flags, counts and text indexes. */
	if ((uint64_t)v < 10) {
		*d = (char)('0' + v);
		b->len++;
		return;
	}
	uint64_t u = (uint64_t)v;
	if (v < 0) {
		*d++ = '-';
		u = -u;
	}
	static const uint64_t pow10[19] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull,
					   10000000ull, 100000000ull, 1000000000ull, 10000000000ull,
					   100000000000ull, 1000000000000ull, 10000000000000ull,
					   100000000000000ull, 1000000000000000ull, 10000000000000000ull,
					   100000000000000000ull, 1000000000000000000ull};
	unsigned n = 1; /* digits: at most 19 (|INT64_MIN| < 10^19) */
	while (n < 19 && u >= pow10[n])
		n++;
	char *p = d + n;
	b->len = (size_t)(p - b->p);
	while (u >= 100) {
		p -= 2;
		memcpy(p, pairs + 2 * (u % 100), 2);
		u /= 100;
	}
	if (u >= 10)
		memcpy(p - 2, pairs + 2 * u, 2);
	else
		p[-1] = (char)('0' + u);
}

/* A JSON string of one of TimeGlass's own names (a kind: ASCII letters,
 * digits and underscores). */
static void put_name(struct jbuf *b, const char *p, size_t n)
{
	char *d = b->p + b->len;
	*d = '"';
	memcpy(d + 1, p, n);
	d[n + 1] = '"';
	b->len += n + 2;
}

/* Bytes a JSON string holds as they are: printable ASCII but for the quote
 * and the backslash. */
#define PLAIN(c) ((c) >= 0x20 && (c) < 0x7f && (c) != '"' && (c) != '\\')
#define PLAIN4(c) PLAIN(c), PLAIN((c) + 1), PLAIN((c) + 2), PLAIN((c) + 3)
#define PLAIN16(c) PLAIN4(c), PLAIN4((c) + 4), PLAIN4((c) + 8), PLAIN4((c) + 12)
#define PLAIN64(c) PLAIN16(c), PLAIN16((c) + 16), PLAIN16((c) + 32), PLAIN16((c) + 48)
static const unsigned char json_plain[256] = {PLAIN64(0), PLAIN64(64), PLAIN64(128), PLAIN64(192)};

/* Whether all eight bytes of w are plain (json_plain): none below 0x20,
 * above 0x7e, a quote or a backslash. */
static inline int json_plain8(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
	uint64_t bad = (w - ones * 0x20) | (w + ones * 0x01) | (quote - ones) | (backslash - ones);
	/* w + 1 sets a byte's high bit for 0x7f and above; the other terms set
	 * it for a byte below 0x20, equal to a quote or a backslash (borrows
	 * can only mark more bytes, never hide one); bytes of 0x80 and above
	 * are caught by the | w. */
	return ((bad | w) & highs) == 0;
}

/* A JSON string of p[0..n): quotes, backslashes and control characters
 * escaped, each byte of invalid UTF-8 as U+FFFD (what binding the text
 * repaired did before). Room for 6 bytes per byte and the quotes was made.
 * Runs of plain bytes are copied whole: SQL texts are mostly that. */
static void put_str(struct jbuf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)p;
	char *d = b->p + b->len;
	*d++ = '"';
	for (size_t i = 0; i < n;) {
		size_t j = i;
		/* eight bytes at a time while none needs escaping */
		while (j + 8 <= n) {
			uint64_t w;
			memcpy(&w, u + j, 8);
			if (!json_plain8(w))
				break;
			j += 8;
		}
		while (j < n && json_plain[u[j]])
			j++;
		memcpy(d, u + i, j - i);
		d += j - i;
		if (j == n)
			break;
		unsigned char c = u[j];
		i = j + 1;
		if (c == '"' || c == '\\') {
			*d++ = '\\';
			*d++ = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(d, "\\u00", 4);
			d[4] = hex[c >> 4];
			d[5] = hex[c & 15];
			d += 6;
		} else {
			size_t len = tg_utf8_len(u + j, n - j);
			if (len) {
				memcpy(d, u + j, len);
				d += len;
				i = j + len;
			} else {
				memcpy(d, "\\ufffd", 6);
				d += 6;
			}
		}
	}
	*d++ = '"';
	b->len = (size_t)(d - b->p);
}

/* Whether name a (NUL-terminated, or NULL) is the kept name k. */
static int same_name(const char *k, int has, const char *a)
{
	return a ? has && strcmp(k, a) == 0 : !has;
}

/* Keeps name a (truncated to SET_NAME_BYTES - 1: TimeGlass's own names
 * are shorter). */
static void keep_name(char *k, const char *a)
{
	tg_strlcpy(k, a ? a : "", SET_NAME_BYTES);
}

/* Whether query q can join the set: it shares what the set's columns
 * hold, and its three texts fit among the set's. */
static int set_takes(const struct query_set *set, const struct tg_query_row *q)
{
	return set->request_id == q->request_id && set->run_id == q->run_id && set->process_id == q->process_id &&
	       set->pid == q->pid && set->tid == q->tid && same_name(set->db_system, 1, q->db_system) &&
	       same_name(set->tap, 1, q->tap) && same_name(set->attribution, set->has_attribution, q->attribution) &&
	       (q->database ? set->has_database && set->database_len == q->database_len &&
				      memcmp(set->database, q->database, q->database_len) == 0
			    : !set->has_database) &&
	       set->n < SET_QUERIES && set->json.len + set->texts.len < SET_BYTES && set->n_texts + 3 <= SET_TEXTS;
}

/* Opens the set with query q's shared fields. -1 out of memory. */
static int set_open(struct query_set *set, const struct tg_query_row *q)
{
	if (q->database && q->database_len + 1 > set->database_cap) {
		char *p = realloc(set->database, q->database_len + 1);
		if (!p)
			return -1;
		set->database = p;
		set->database_cap = q->database_len + 1;
	}
	set->run_id = q->run_id;
	set->request_id = q->request_id;
	set->process_id = q->process_id;
	set->pid = q->pid;
	set->tid = q->tid;
	keep_name(set->db_system, q->db_system);
	keep_name(set->tap, q->tap);
	keep_name(set->attribution, q->attribution);
	set->has_attribution = q->attribution != NULL;
	set->has_database = q->database != NULL;
	set->database_len = q->database ? q->database_len : 0;
	if (q->database)
		memcpy(set->database, q->database, q->database_len);
	set->start_unix_ns = q->start_unix_ns;
	set->duration_ns = 0;
	set->n_plus_one = 0;
	set->json.len = set->texts.len = set->raw.len = 0;
	set->n_texts = 0;
	memset(set->slot, 0, sizeof set->slot);
	return 0;
}

static uint64_t text_hash(const char *p, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	uint64_t w = 0;
	memcpy(&w, p + i, n - i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 29);
}

/* Writes the index among the set's texts of p[0..n), or null: a text seen
 * in the set before has its index; another is added (set_takes() checked
 * there is room for it). -1 out of memory. */
static int put_text(struct query_set *set, const char *p, size_t n)
{
	if (!p) {
		put(&set->json, "null", 4);
		return 0;
	}
	uint64_t h = text_hash(p, n);
	size_t k = h & (SET_TEXT_SLOTS - 1);
	for (; set->slot[k]; k = (k + 1) & (SET_TEXT_SLOTS - 1)) {
		const struct set_text *t = &set->text[set->slot[k] - 1];
		if (t->hash == h && t->len == n && memcmp(set->raw.p + t->off, p, n) == 0) {
			put_i64(&set->json, set->slot[k] - 1);
			return 0;
		}
	}
	if (jb_room(&set->texts, 6 * n + 3) < 0 || jb_room(&set->raw, n) < 0)
		return -1;
	unsigned i = set->n_texts++;
	set->text[i] = (struct set_text){set->raw.len, n, h};
	put(&set->raw, p, n);
	set->slot[k] = (uint16_t)(i + 1);
	put(&set->texts, i ? "," : "[", 1);
	put_str(&set->texts, p, n);
	put_i64(&set->json, i);
	return 0;
}

/* Appends query q to the set (opened). -1 out of memory. */
static int set_append(struct query_set *set, const struct tg_query_row *q)
{
	const char *kind = q->kind ? q->kind : "app";
	size_t lkind = strlen(kind);
	size_t room = 2 + QUERY_FIELDS * 24 + (q->params ? 6 * q->params_len + 2 : 4) +
		      (q->error ? 6 * q->error_len + 2 : 4) + lkind + 2 + 2;
	if (jb_room(&set->json, room) < 0)
		return -1;
	size_t mark = set->json.len;
	put(&set->json, set->n ? ",[" : "[[", 2);
	/* in enum query_field's order */
	put_i64(&set->json, q->start_unix_ns - set->start_unix_ns);
	put(&set->json, ",", 1);
	put_i64(&set->json, q->duration_ns);
	put(&set->json, ",", 1);
	if (put_text(set, q->sql, q->sql_len) < 0)
		goto fail;
	put(&set->json, q->sql_truncated ? ",1," : ",0,", 3);
	if (put_text(set, q->fingerprint, q->fingerprint_len) < 0)
		goto fail;
	put(&set->json, ",", 1);
	put_i64(&set->json, q->fingerprint_hash);
	put(&set->json, ",", 1);
	if (q->params)
		put_str(&set->json, q->params, q->params_len);
	else
		put(&set->json, "null", 4);
	put(&set->json, ",", 1);
	if (q->has_rows)
		put_i64(&set->json, q->rows);
	else
		put(&set->json, "null", 4);
	put(&set->json, ",", 1);
	if (q->error)
		put_str(&set->json, q->error, q->error_len);
	else
		put(&set->json, "null", 4);
	put(&set->json, ",", 1);
	if (put_text(set, q->call_site, q->call_site_len) < 0)
		goto fail;
	put(&set->json, q->duplicate ? ",1" : ",0", 2);
	put(&set->json, q->n_plus_one ? ",1," : ",0,", 3);
	put_name(&set->json, kind, lkind);
	put(&set->json, ",", 1);
	put_i64(&set->json, q->executions > 0 ? q->executions : 1);
	put(&set->json, "]", 1);
	set->n++;
	set->duration_ns += q->duration_ns;
	set->n_plus_one += q->n_plus_one != 0;
	return 0;
fail:
	set->json.len = mark; /* a text it added stays, unused */
	return -1;
}

/* Writes the queries held as one row of query_sets (a row it cannot write
 * counts its queries as lost). */
static int write_set(struct tg_store *s)
{
	struct query_set *set = &s->set;
	unsigned n = set->n;
	if (!n)
		return 0;
	set->n = 0;
	if (jb_room(&set->json, 1) < 0 || jb_room(&set->texts, 2) < 0) {
		lose(s, n, 0);
		return -1;
	}
	put(&set->json, "]", 1);
	put(&set->texts, set->n_texts ? "]" : "[]", set->n_texts ? 1 : 2);
	sqlite3_stmt *st = batch_stmt_rows(s, ST_QUERY_SET, n);
	if (!st)
		return -1;
	bind_int_or_null(st, 1, s->next_set_id);
	sqlite3_bind_int64(st, 2, set->run_id);
	bind_int_or_null(st, 3, set->request_id);
	bind_int_or_null(st, 4, set->process_id);
	sqlite3_bind_int(st, 5, set->pid);
	sqlite3_bind_int64(st, 6, set->tid);
	sqlite3_bind_text(st, 7, set->db_system, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, set->tap, -1, SQLITE_STATIC);
	bind_text_or_null(st, 9, set->has_database ? set->database : NULL, set->database_len);
	bind_text_or_null(st, 10, set->has_attribution ? set->attribution : NULL, strlen(set->attribution));
	sqlite3_bind_int64(st, 11, set->start_unix_ns);
	sqlite3_bind_int(st, 12, (int)n);
	sqlite3_bind_int64(st, 13, set->duration_ns);
	sqlite3_bind_int(st, 14, (int)set->n_plus_one);
	sqlite3_bind_text(st, 15, set->json.p, (int)set->json.len, SQLITE_STATIC);
	sqlite3_bind_text(st, 16, set->texts.p, (int)set->texts.len, SQLITE_STATIC);
	if (batch_step(s, st) < 0) {
		s->next_set_id = 0;
		return -1;
	}
	s->next_set_id = sqlite3_last_insert_rowid(s->db) + n;
	return 0;
}

/* Holds the query in the set being built: the queries of one request (or
 * outside any request) from one thread to one database come one after the
 * other, and are written together when the next belongs elsewhere, the
 * set is large, or the batch is flushed (tg_store_flush() writes it before
 * it commits). */
int tg_store_query_add(struct tg_store *s, const struct tg_query_row *q)
{
	struct query_set *set = &s->set;
	int rc = 0;
	if (set->n && !set_takes(set, q))
		rc = write_set(s);
	if ((!set->n && set_open(set, q) < 0) || set_append(set, q) < 0) {
		lose(s, 1, 0);
		return -1;
	}
	return rc;
}

int tg_store_span_add(struct tg_store *s, const struct tg_span_row *r)
{
	sqlite3_stmt *st = batch_stmt(s, ST_SPAN);
	if (!st)
		return -1;
	bind_origin(st, 0, r->run_id, r->request_id, r->process_id, r->pid, r->tid);
	bind_cstr(st, 6, r->kind ? r->kind : "http_client");
	sqlite3_bind_int64(st, 7, r->start_unix_ns);
	sqlite3_bind_int64(st, 8, r->duration_ns);
	bind_text_or_null(st, 9, r->method, r->method_len);
	bind_text_or_null(st, 10, r->host, r->host_len);
	bind_text_or_null(st, 11, r->path, r->path_len);
	bind_int_or_null(st, 12, r->status);
	sqlite3_bind_int64(st, 13, r->request_bytes);
	sqlite3_bind_int64(st, 14, r->response_bytes);
	sqlite3_bind_int(st, 15, r->tls ? 1 : 0);
	bind_text_or_null(st, 16, r->error, r->error_len);
	bind_text_or_null(st, 17, r->call_site, r->call_site_len);
	bind_cstr(st, 18, r->attribution);
	return batch_step(s, st);
}

int tg_store_metric_add(struct tg_store *s, int64_t process_id, int64_t ts_unix_ns, int64_t cpu_user_ns,
			int64_t cpu_sys_ns, int64_t rss_bytes, int64_t sched_cpu_ns, int64_t run_delay_ns)
{
	sqlite3_stmt *st = batch_stmt(s, ST_METRIC);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, process_id);
	sqlite3_bind_int64(st, 2, ts_unix_ns);
	sqlite3_bind_int64(st, 3, cpu_user_ns);
	sqlite3_bind_int64(st, 4, cpu_sys_ns);
	sqlite3_bind_int64(st, 5, rss_bytes);
	if (sched_cpu_ns >= 0 && run_delay_ns >= 0) {
		sqlite3_bind_int64(st, 6, sched_cpu_ns);
		sqlite3_bind_int64(st, 7, run_delay_ns);
	} else {
		sqlite3_bind_null(st, 6);
		sqlite3_bind_null(st, 7);
	}
	return batch_step(s, st);
}

int tg_store_loss_add(struct tg_store *s, int64_t run_id, int64_t process_id, int64_t ts_unix_ns,
		      const char *kind, int64_t events, int64_t bytes)
{
	sqlite3_stmt *st = batch_stmt(s, ST_LOSS);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, run_id);
	bind_int_or_null(st, 2, process_id);
	sqlite3_bind_int64(st, 3, ts_unix_ns);
	bind_cstr(st, 4, kind);
	sqlite3_bind_int64(st, 5, events);
	sqlite3_bind_int64(st, 6, bytes);
	return batch_step(s, st);
}

int tg_store_flush(struct tg_store *s)
{
	write_set(s); /* a set it cannot write is counted as lost */
	if (!s->in_batch)
		return 0;
	int rc = exec(s, "COMMIT");
	if (rc < 0) {
		check_full(s);
		lose(s, s->pending, s->pending_requests);
		if (sqlite3_get_autocommit(s->db) == 0)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		rolled_back(s);
	} else {
		s->stacks_kept = s->stacks_max;
		s->requests_kept = s->requests_max;
	}
	s->in_batch = 0;
	s->pending = s->pending_requests = 0;
	return rc;
}

/* ---- stack samples (stacks.c) ---- */

/* Runs a SELECT statement of the batch that returns an id in column 0 (and,
 * for stacks, the frame list in column 1, compared with want). */
static int64_t select_id(struct tg_store *s, sqlite3_stmt *st, const char *want)
{
	int64_t id = 0;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *f = want ? sqlite3_column_text(st, 1) : NULL;
		if (!want || (f && strcmp((const char *)f, want) == 0))
			id = sqlite3_column_int64(st, 0);
		else
			id = -1; /* hash collision with a different stack */
	} else if (rc != SQLITE_DONE) {
		fail_db(s, NULL);
	}
	sqlite3_reset(st);
	return id;
}

static void bind_frame(sqlite3_stmt *st, const char *kind, const char *name, const char *file, int line)
{
	bind_cstr(st, 1, kind);
	bind_cstr(st, 2, name);
	bind_cstr(st, 3, file ? file : "");
	sqlite3_bind_int(st, 4, line);
}

int64_t tg_store_frame_id(struct tg_store *s, const char *kind, const char *name, const char *file, int line)
{
	sqlite3_stmt *st = batch_stmt(s, ST_FRAME_GET);
	if (!st)
		return 0;
	bind_frame(st, kind, name, file, line);
	int64_t id = select_id(s, st, NULL);
	if (id > 0)
		return id;
	if (!(st = batch_stmt(s, ST_FRAME_INS)))
		return 0;
	bind_frame(st, kind, name, file, line);
	return batch_step(s, st) < 0 ? 0 : sqlite3_last_insert_rowid(s->db);
}

int64_t tg_store_stack_id(struct tg_store *s, int64_t hash, const char *frames)
{
	sqlite3_stmt *st = batch_stmt(s, ST_STACK_GET);
	if (!st)
		return 0;
	sqlite3_bind_int64(st, 1, hash);
	int64_t id = select_id(s, st, frames);
	if (id != 0)
		return id; /* found, or -1: collision */
	if (!(st = batch_stmt(s, ST_STACK_INS)))
		return 0;
	sqlite3_bind_int64(st, 1, hash);
	bind_cstr(st, 2, frames);
	if (batch_step(s, st) < 0)
		return 0;
	id = sqlite3_last_insert_rowid(s->db);
	if (id > s->stacks_max)
		s->stacks_max = id;
	return id;
}

int tg_store_sample_add(struct tg_store *s, const struct tg_sample_row *r)
{
	sqlite3_stmt *st = batch_stmt(s, ST_SAMPLE);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, r->run_id);
	bind_int_or_null(st, 2, r->request_id);
	bind_int_or_null(st, 3, r->process_id);
	bind_int_or_null(st, 4, r->tid);
	sqlite3_bind_int64(st, 5, r->stack_id);
	bind_cstr(st, 6, r->state);
	sqlite3_bind_int64(st, 7, r->count);
	sqlite3_bind_int64(st, 8, r->cpu_ns);
	return batch_step(s, st);
}

int tg_store_request_mark(struct tg_store *s, int64_t request_id, int exception, const char *text, size_t len)
{
	sqlite3_stmt *st = batch_stmt(s, exception ? ST_REQUEST_EXCEPTION : ST_REQUEST_ROUTE);
	if (!st)
		return -1;
	bind_text_or_null(st, 1, text, len);
	sqlite3_bind_int64(st, 2, request_id);
	return batch_step(s, st);
}

int tg_store_request_cpu_add(struct tg_store *s, int64_t request_id, int64_t cpu_ns)
{
	sqlite3_stmt *st = batch_stmt(s, ST_REQUEST_CPU);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, cpu_ns);
	sqlite3_bind_int64(st, 2, request_id);
	return batch_step(s, st);
}
