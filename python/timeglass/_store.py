"""The SQLite store as the middleware writes it when no collector is running.

The schema is the collector's (lib/store.c): the statements below are the
same text, so a store created here and one created by `timeglass run` are
indistinguishable, and either program can add runs to a store the other made.

Writers migrate a store forward under BEGIN IMMEDIATE, refuse one written by
a newer TimeGlass, and use WAL with a 5 s busy timeout, like the collector.
"""

import logging
import os
import sqlite3
import stat

SCHEMA_VERSION = 12
DEFAULT_PATH = os.path.join(".timeglass", "timeglass.db")

BUSY_TIMEOUT_S = 5.0
NEW_STORE_PAGE_BYTES = 16384  # lib/store.c's NEW_STORE_PAGE_BYTES

_log = logging.getLogger("timeglass")

# migrations[i] takes a store from schema i to i + 1 (lib/store.c, same text).
MIGRATIONS = (
    # 0 -> 1: runs, processes, requests, process metrics, losses.
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
    "  req_end_ns INTEGER,"    # offset from start_unix_ns, ns
    "  resp_start_ns INTEGER," # offset from start_unix_ns, ns
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

    # 1 -> 2: SQL queries and outbound calls. request_id is NULL for work outside any request (startup, background jobs).
    "CREATE TABLE queries ("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
    "  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
    "  pid INTEGER NOT NULL,"
    "  tid INTEGER,"
    "  start_unix_ns INTEGER NOT NULL,"
    "  duration_ns INTEGER NOT NULL,"
    "  db_system TEXT NOT NULL,"      # 'postgresql' | 'sqlite'
    "  tap TEXT NOT NULL,"            # 'libpq' | 'wire' | 'sqlite3'
    "  database TEXT,"
    "  sql TEXT,"
    "  sql_truncated INTEGER NOT NULL DEFAULT 0,"
    "  fingerprint TEXT,"
    "  fingerprint_hash INTEGER,"
    "  params TEXT,"                  # only with --capture-params
    "  rows INTEGER,"
    "  error TEXT,"
    "  call_site TEXT,"               # 'file:line function' of the app's own code
    "  attribution TEXT,"             # how request_id was found
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
    "  kind TEXT NOT NULL,"           # 'http_client'
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

    # 2 -> 3: Python stack samples, deduplicated frames and stacks.
    "CREATE TABLE frames ("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"           # 'python' | 'native'
    "  name TEXT NOT NULL,"           # qualified name
    "  file TEXT,"
    "  line INTEGER,"
    "  UNIQUE (kind, name, file, line));"
    "CREATE TABLE stacks ("
    "  id INTEGER PRIMARY KEY,"
    "  hash INTEGER NOT NULL UNIQUE,"
    "  frames TEXT NOT NULL);"        # frame ids, root first, comma-separated
    "CREATE TABLE samples ("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
    "  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
    "  tid INTEGER,"
    "  stack_id INTEGER NOT NULL REFERENCES stacks(id),"
    "  state TEXT NOT NULL,"          # 'running' | 'waiting'
    "  count INTEGER NOT NULL,"       # samples of this stack in this state
    "  cpu_ns INTEGER NOT NULL DEFAULT 0);"  # thread CPU time they stand for
    "CREATE INDEX samples_request ON samples(request_id);"
    "CREATE INDEX samples_run ON samples(run_id);"
    "CREATE INDEX samples_process ON samples(process_id);"
    "ALTER TABLE requests ADD COLUMN cpu_ns INTEGER;",
    # 3 -> 4: the client a proxy forwarded the request for (X-Forwarded-For, Forwarded, X-Real-IP), beside the socket peer.
    "ALTER TABLE requests ADD COLUMN forwarded_for TEXT;",
    # 4 -> 5: what a query is - 'app' (the application's own statement) or 'housekeeping' (transaction control, session settings, pool resets, probes and type introspection that drivers run by themselves: never an N+1 or a duplicate) - and the executions a batch (executemany) stands for. Rows recorded before are sorted by their fingerprint's first words, the clear cases of the collector's rule, and lose the flags that housekeeping never gets.
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
    # 5 -> 6: OpenTelemetry export. A random key per run, from which the trace and span ids of its rows are derived (every run, old ones too, gets one; a trigger gives new runs theirs, whoever inserts them), and the W3C trace context a request arrived with (traceparent: trace id, 32 lowercase hex digits, and the caller's span id, 16).
    "ALTER TABLE runs ADD COLUMN trace_key BLOB;"
    "UPDATE runs SET trace_key = randomblob(16);"
    "CREATE TRIGGER runs_trace_key AFTER INSERT ON runs WHEN NEW.trace_key IS NULL BEGIN"
    "  UPDATE runs SET trace_key = randomblob(16) WHERE id = NEW.id; END;"
    "ALTER TABLE requests ADD COLUMN trace_id TEXT;"
    "ALTER TABLE requests ADD COLUMN parent_span_id TEXT;",
    # 6 -> 7: the scheduler's view of the process's own threads (not TimeGlass's), summed since each started: time on a CPU and time runnable but waiting on a run queue (/proc/PID/task/TID/schedstat). Their ratio is how much a busy machine stretched the process's CPU work; NULL where the kernel gives no schedstat.
    "ALTER TABLE process_metrics ADD COLUMN sched_cpu_ns INTEGER;"
    "ALTER TABLE process_metrics ADD COLUMN run_delay_ns INTEGER;",
    # 7 -> 8: the indexes by process of requests and queries go. They served only the delete cascading from a process; tg_store_prune() deletes a run's rows by run, and every request and query row written no longer updates them (some 10% of a request row's cost).
    "DROP INDEX requests_process;"
    "DROP INDEX queries_process;",
    # 8 -> 9: the queries' index by run keeps only the queries outside any request (startup, background jobs, tests' fixtures). A query of a request is found through its request (queries_request), which belongs to the same run; every query row written inside a request (nearly all of them) no longer updates a second index, some 15% of the collector's cost per query.
    "DROP INDEX queries_run_start;"
    "CREATE INDEX queries_run_outside ON queries(run_id, start_unix_ns) WHERE request_id IS NULL;",
    # 9 -> 10: the requests' index by duration goes. Each row landed in it at a random place, so every commit rewrote about one of its pages per request, more the larger the store: some 30% of the collector's cost per request at 10,000 requests/s. The dashboard sorts and filters by duration on the run's aggregates in memory (server/stats.c), which keep every request's duration.
    "DROP INDEX requests_run_duration;",
    # 10 -> 11: the requests' indexes by route and by status go too, some 20% of the instructions the collector spends per request (each row's entry found from the root, the route by string compares). The dashboard filters by route, method and status on the run's aggregates in memory, which keep every request's endpoint and status; only the requests without a status (a connection that ended before a response), rare, keep an index, for the list of them when the aggregates cannot say.
    "DROP INDEX requests_run_route;"
    "DROP INDEX requests_run_status;"
    "CREATE INDEX requests_run_nostatus ON requests(run_id, start_unix_ns) WHERE status IS NULL;",
    # 11 -> 12: queries are stored by set: one row of query_sets holds queries of one request (or outside any request) that the collector wrote one after the other from one thread to one database, in order: what they share as columns, each query's own fields as a JSON array in an array (enum query_field), their distinct texts (SQL, fingerprint, call site: a repeated query stores its texts once) as another, which the fields give by index, and the set's count, summed duration and N+1 count. A row of queries cost the collector some 10,000 instructions whatever it held (23 columns through SQLite's VM, their binds, two B-tree inserts): ten queries per request were three times the request's own cost. The queries view gives every reader the table it read before, column for column, and takes inserts (a set of one each). A set's id is its first query's: a set of n takes ids id .. id+n-1, so query ids stay those a table of queries would have given. The queries stored before become sets of one, their ids kept.
    "CREATE TABLE query_sets ("
    "  id INTEGER PRIMARY KEY,"         # the first query's id
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  request_id INTEGER REFERENCES requests(id) ON DELETE CASCADE,"
    "  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,"
    "  pid INTEGER NOT NULL,"
    "  tid INTEGER,"
    "  db_system TEXT NOT NULL,"
    "  tap TEXT NOT NULL,"
    "  database TEXT,"
    "  attribution TEXT,"
    "  start_unix_ns INTEGER NOT NULL," # the first query's; each query's own is an offset from it
    "  n INTEGER NOT NULL,"             # queries in the set
    "  duration_ns INTEGER NOT NULL,"   # their sum
    "  n_plus_one INTEGER NOT NULL,"    # how many are flagged N+1
    # queries: [[start offset, duration, sql, sql_truncated, fingerprint, fingerprint_hash, params, rows, error, call_site, duplicate, n_plus_one, kind, executions], ...], where sql, fingerprint and call_site are indexes in texts: ["text", ...]
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
)
assert len(MIGRATIONS) == SCHEMA_VERSION

class StoreError(Exception):
    """A store that cannot be used; the message is one line and names the path."""


def default_path():
    """TIMEGLASS_DB, else .timeglass/timeglass.db in the current directory."""
    return os.environ.get("TIMEGLASS_DB") or DEFAULT_PATH


def _create_file(path):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _make_private(path):
    """The rule of lib/store.c (make_private): an existing store holds
    captured requests, so the file, its -wal and -shm lose their group and
    other bits, and so does TimeGlass's own .timeglass directory, with one
    warning; a file that cannot be changed (another owner) refuses the
    store."""
    was = None
    for f in (path, path + "-wal", path + "-shm"):
        try:
            st = os.stat(f)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o077:
            continue
        try:
            os.chmod(f, st.st_mode & 0o700)
        except OSError as e:
            raise StoreError("store %s is open to other users (mode %04o) and cannot be made private: %s; "
                             "run: chmod go-rwx %s*" % (f, st.st_mode & 0o7777, e.strerror or e, path)) from None
        if was is None:
            was = st.st_mode & 0o7777
    directory = os.path.dirname(path)
    dir_was = None
    if os.path.basename(directory) == ".timeglass":
        try:
            st = os.stat(directory)
            if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
                os.chmod(directory, st.st_mode & 0o700)
                dir_was = st.st_mode & 0o7777
        except OSError:
            pass
    if was is not None:
        _log.warning("timeglass: store %s was open to other users (mode %04o); made it private (%04o)%s: "
                     "it holds captured requests", path, was, was & 0o700, ", and its directory" if dir_was else "")
    elif dir_was is not None:
        _log.warning("timeglass: the directory of store %s was open to other users (mode %04o); made it "
                     "private (%04o): the store holds captured requests", path, dir_was, dir_was & 0o700)


def _scalar(conn, sql):
    row = conn.execute(sql).fetchone()
    return row[0] if row else 0


def _migrate(conn, path):
    try:
        version = _scalar(conn, "PRAGMA user_version")
        tables = _scalar(conn, "SELECT count(*) FROM sqlite_master")
    except sqlite3.DatabaseError as e:
        raise StoreError("%s is not a TimeGlass store (%s)" % (path, e)) from None
    if version > SCHEMA_VERSION:
        raise StoreError("%s was written by a newer TimeGlass (schema %d, this one reads up to %d)"
                         % (path, version, SCHEMA_VERSION))
    if version == 0 and tables > 0:
        raise StoreError("%s is not a TimeGlass store (it holds other tables)" % path)
    if version == 0:
        # A new store gets the collector's page size (lib/store.c); once it
        # has tables (another writer's, just made) this changes nothing.
        conn.execute("PRAGMA page_size = %d" % NEW_STORE_PAGE_BYTES)
    while version < SCHEMA_VERSION:
        # IMMEDIATE: two writers racing on a new store serialize here.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _scalar(conn, "PRAGMA user_version")
            if version < SCHEMA_VERSION:
                _exec_script(conn, MIGRATIONS[version])
                version += 1
                conn.execute("PRAGMA user_version = %d" % version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _exec_script(conn, script):
    """Runs each statement of script inside the caller's transaction. A
    statement ends at the ';' where SQLite says it is complete (a trigger's
    body holds several)."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                conn.execute(statement)
            statement = ""


def open_store(path):
    """Opens (creating and migrating as needed) the store at path for writing.

    Returns a sqlite3 connection in autocommit mode, usable from any thread
    under the caller's lock. Raises StoreError with a one-line reason.
    """
    try:
        if not os.path.exists(path):
            _create_file(path)
        elif not os.path.isfile(path):
            raise StoreError("%s is not a TimeGlass store (not a regular file)" % path)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
    except OSError as e:
        raise StoreError("cannot create store %s: %s" % (path, e.strerror or e)) from None
    except sqlite3.Error as e:
        raise StoreError("%s: cannot open: %s" % (path, e)) from None
    try:
        _migrate(conn, path)
        _make_private(path)  # once it is known to be ours; a new one too (in an existing .timeglass)
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # The recorder inserts up to 100 rows with one statement, which SQLite
        # must be able to undo alone (a NOT NULL column, a foreign key): it
        # copies every page the statement touches aside first, and past 64 KiB
        # (four 16 KiB pages) into a temporary file. In memory, that copy
        # costs no disk writes.
        conn.execute("PRAGMA temp_store = MEMORY")
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as e:
        conn.close()
        raise StoreError("%s: %s" % (path, e)) from None
    return conn
