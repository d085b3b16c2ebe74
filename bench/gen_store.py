#!/usr/bin/python3
"""Generates a TimeGlass store (schema v1) full of realistic requests, for
benchmarking and trying out the dashboard without recording a real app.

    /usr/bin/python3 bench/gen_store.py [--requests N] [--db PATH] [--seed S] [--queries Q]

Default: 1,000,000 requests over about 20 minutes of a FastAPI-like app with
two worker processes (routes, statuses and lognormal latencies per route),
process metrics every 100 ms, and a few data-loss records. Rows go in with
executemany in large transactions; indexes are built at the end. With
--newest, the store is brought to the newest schema; with --queries Q too,
and each request gets Q SQL queries on average (some N+1 loops, some
outside requests).

SCHEMA_TABLES and SCHEMA_INDEXES mirror the schema-1 migration in
lib/store.c; tests/ui builds its fixture stores with them too.
"""
import argparse
import json
import math
import os
import random
import sqlite3
import sys
import time

SCHEMA_VERSION = 1
NEW_STORE_PAGE_BYTES = 16384  # lib/store.c's NEW_STORE_PAGE_BYTES

SCHEMA_TABLES = """
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  started_unix_ns INTEGER NOT NULL,
  ended_unix_ns INTEGER,
  command TEXT NOT NULL,
  cwd TEXT,
  hostname TEXT,
  tg_version TEXT,
  source TEXT NOT NULL DEFAULT 'run',
  exit_status INTEGER);
CREATE TABLE processes (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  pid INTEGER NOT NULL,
  ppid INTEGER,
  exe TEXT,
  cmdline TEXT,
  started_unix_ns INTEGER,
  ended_unix_ns INTEGER,
  after_fork INTEGER NOT NULL DEFAULT 0);
CREATE TABLE requests (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,
  pid INTEGER NOT NULL,
  tid INTEGER,
  conn_id INTEGER,
  start_unix_ns INTEGER NOT NULL,
  duration_ns INTEGER NOT NULL,
  req_end_ns INTEGER,
  resp_start_ns INTEGER,
  method TEXT,
  path TEXT,
  query_string TEXT,
  route TEXT,
  http_version TEXT,
  status INTEGER,
  request_bytes INTEGER NOT NULL DEFAULT 0,
  response_bytes INTEGER NOT NULL DEFAULT 0,
  client_addr TEXT,
  error TEXT,
  flags INTEGER NOT NULL DEFAULT 0,
  headers TEXT,
  transport TEXT NOT NULL DEFAULT 'http',
  exception TEXT);
CREATE TABLE process_metrics (
  process_id INTEGER NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
  ts_unix_ns INTEGER NOT NULL,
  cpu_user_ns INTEGER NOT NULL,
  cpu_sys_ns INTEGER NOT NULL,
  rss_bytes INTEGER NOT NULL);
CREATE TABLE losses (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  process_id INTEGER,
  ts_unix_ns INTEGER NOT NULL,
  kind TEXT NOT NULL,
  events INTEGER NOT NULL,
  bytes INTEGER NOT NULL);
"""

SCHEMA_INDEXES = """
CREATE INDEX processes_run ON processes(run_id);
CREATE INDEX requests_run_start ON requests(run_id, start_unix_ns);
CREATE INDEX requests_run_route ON requests(run_id, route, method);
CREATE INDEX requests_run_status ON requests(run_id, status);
CREATE INDEX requests_run_duration ON requests(run_id, duration_ns);
CREATE INDEX requests_process ON requests(process_id);
CREATE INDEX process_metrics_process_ts ON process_metrics(process_id, ts_unix_ns);
CREATE INDEX losses_run ON losses(run_id);
"""

REQUEST_COLUMNS = (
    "id, run_id, process_id, pid, tid, conn_id, start_unix_ns, duration_ns, req_end_ns, resp_start_ns,"
    " method, path, query_string, route, http_version, status, request_bytes, response_bytes, client_addr,"
    " error, flags, headers, transport, exception")


def create_store(path, indexes=True, page_size=NEW_STORE_PAGE_BYTES):
    """Creates an empty schema-1 store at path (replacing any file there),
    in pages of page_size bytes (the collector's by default)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = %d" % page_size)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA_TABLES)
    if indexes:
        db.executescript(SCHEMA_INDEXES)
    db.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
    return db


def request_row(**kw):
    """A requests row as a tuple in REQUEST_COLUMNS order, with defaults."""
    d = dict(id=None, run_id=1, process_id=None, pid=1000, tid=1000, conn_id=1, start_unix_ns=0,
             duration_ns=1000000, req_end_ns=None, resp_start_ns=None, method="GET", path="/",
             query_string=None, route=None, http_version="HTTP/1.1", status=200, request_bytes=100,
             response_bytes=200, client_addr="127.0.0.1:50000", error=None, flags=0, headers=None,
             transport="http", exception=None)
    d.update(kw)
    return tuple(d[c.strip()] for c in REQUEST_COLUMNS.split(","))


# (method, route or None, path maker, weight, median ms, sigma, {status: probability})
ROUTES = [
    ("GET", "/items/{item_id}", lambda r: "/items/%d" % r.randint(1, 50000), 30, 4.0, 0.6, {404: 0.03, 500: 0.002}),
    ("GET", "/items", lambda r: "/items", 14, 12.0, 0.7, {500: 0.001}),
    ("POST", "/items", lambda r: "/items", 6, 18.0, 0.6, {422: 0.05, 500: 0.004}),
    ("PUT", "/items/{item_id}", lambda r: "/items/%d" % r.randint(1, 50000), 3, 16.0, 0.6, {404: 0.02, 422: 0.03}),
    ("DELETE", "/items/{item_id}", lambda r: "/items/%d" % r.randint(1, 50000), 1, 9.0, 0.5, {404: 0.05}),
    ("GET", "/users/{user_id}/orders", lambda r: "/users/%d/orders" % r.randint(1, 5000), 10, 35.0, 0.9, {500: 0.01}),
    ("POST", "/orders", lambda r: "/orders", 4, 60.0, 0.8, {400: 0.02, 500: 0.02}),
    ("GET", "/search", lambda r: "/search", 8, 80.0, 1.1, {400: 0.01, 504: 0.002}),
    ("POST", "/auth/login", lambda r: "/auth/login", 3, 120.0, 0.3, {401: 0.15}),
    ("GET", "/reports/daily", lambda r: "/reports/daily", 1, 450.0, 0.7, {500: 0.03}),
    ("GET", "/health", lambda r: "/health", 12, 0.4, 0.3, {}),
    ("GET", None, lambda r: "/favicon.ico", 2, 0.3, 0.3, {404: 1.0}),
    ("GET", None, lambda r: r.choice(["/static/app.js", "/static/app.css", "/static/logo.png"]), 4, 1.2, 0.5, {304: 0.4}),
]

EXCEPTION = ('Traceback (most recent call last):\n  File "/app/main.py", line 88, in create_order\n'
             '    total = sum(line.price * line.qty for line in order.lines)\n'
             "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'\n")


def generate(db, n, seed, t0_ns, span_s, workers=2):
    rnd = random.Random(seed)
    db.execute("BEGIN")
    db.execute("INSERT INTO runs (id, started_unix_ns, ended_unix_ns, command, cwd, hostname, tg_version, source, exit_status)"
               " VALUES (1, ?, ?, 'uvicorn main:app --workers 2', '/srv/app', 'devbox', '0.1.0', 'run', 0)",
               (t0_ns - 1_500_000_000, t0_ns + int(span_s * 1e9) + 2_000_000_000))
    pids = [4242 + i for i in range(workers + 1)]
    for i, pid in enumerate(pids):
        db.execute("INSERT INTO processes (id, run_id, pid, ppid, exe, cmdline, started_unix_ns, ended_unix_ns, after_fork)"
                   " VALUES (?, 1, ?, ?, '/usr/bin/python3.11', ?, ?, ?, ?)",
                   (i + 1, pid, 4000 if i == 0 else pids[0],
                    "uvicorn main:app --workers 2" if i == 0 else "python3 -c from multiprocessing.spawn import spawn_main",
                    t0_ns - 1_000_000_000, t0_ns + int(span_s * 1e9) + 1_000_000_000, 0))
    weights = [r[3] for r in ROUTES]
    total_w = float(sum(weights))
    cum = []
    acc = 0.0
    for w in weights:
        acc += w / total_w
        cum.append(acc)
    batch = []
    t = 0.0
    mean_gap = span_s / n
    for i in range(n):
        # Load varies slowly (a daily-ish wave) and with bursts.
        phase = (i / n) * 6.283
        t += rnd.expovariate(1.0) * mean_gap * (1.0 + 0.6 * math.sin(phase))
        x = rnd.random()
        k = 0
        while cum[k] < x:
            k += 1
        method, route, mk, _, median, sigma, errs = ROUTES[k]
        path = mk(rnd)
        status = 201 if method == "POST" else 204 if method == "DELETE" else 200
        y = rnd.random()
        for code, p in errs.items():
            if y < p:
                status = code
                break
            y -= p
        dur_ms = rnd.lognormvariate(math.log(median), sigma)
        if status >= 500:
            dur_ms *= 2.5
        dur = max(20_000, int(dur_ms * 1e6))
        wire_in = min(dur // 4, int(rnd.uniform(15_000, 250_000)))
        wire_out = min(dur // 4, int(rnd.uniform(10_000, 200_000)))
        w = rnd.randrange(workers) + 1
        query = "q=%s&limit=%d" % (rnd.choice(["shoes", "red+hat", "lamp", "desk"]), rnd.choice([10, 20, 50])) if route == "/search" else None
        headers = ("host: 127.0.0.1:8000\nuser-agent: %s\naccept: application/json\n%s"
                   % (rnd.choice(["python-httpx/0.27.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "curl/7.88.1"]),
                      "authorization: [redacted]\n" if rnd.random() < 0.3 else ""))
        # One request in 2003 has no response: the client went away first
        # (chosen by its place, so that the other rows stay as they were).
        gone = i % 2003 == 1000
        batch.append((i + 1, 1, w + 1, pids[w], pids[w] + rnd.randrange(4), i // 3 + 1,
                      t0_ns + int(t * 1e9), dur, wire_in, dur - wire_out, method, path, query, route, "HTTP/1.1",
                      None if gone else status,
                      rnd.randint(120, 600) if method in ("GET", "DELETE") else rnd.randint(300, 4000),
                      rnd.randint(80, 20000), "127.0.0.1:%d" % rnd.randint(40000, 60000),
                      "connection closed before the response" if gone else None, 0, headers, "http",
                      EXCEPTION if status == 500 and route == "/orders" and not gone else None))
        if len(batch) >= 50000:
            db.executemany("INSERT INTO requests (%s) VALUES (%s)" % (REQUEST_COLUMNS, ",".join("?" * 24)), batch)
            batch.clear()
    if batch:
        db.executemany("INSERT INTO requests (%s) VALUES (%s)" % (REQUEST_COLUMNS, ",".join("?" * 24)), batch)
    # Process metrics every 100 ms: cumulative CPU, RSS that grows slowly.
    metrics = []
    steps = int(span_s * 10) + 10
    for pidx in range(workers + 1):
        cpu_u = cpu_s = 0
        rss = 60_000_000 + pidx * 5_000_000
        busy = 0.05 if pidx == 0 else 0.45
        for s in range(steps):
            load = busy * (1.0 + 0.6 * math.sin(s / steps * 6.283)) * rnd.uniform(0.7, 1.3)
            cpu_u += int(100_000_000 * load * 0.8)
            cpu_s += int(100_000_000 * load * 0.2)
            rss += rnd.randint(-200_000, 260_000) if pidx else rnd.randint(-5000, 5000)
            metrics.append((pidx + 1, t0_ns + s * 100_000_000, cpu_u, cpu_s, rss))
    db.executemany("INSERT INTO process_metrics VALUES (?,?,?,?,?)", metrics)
    db.execute("INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes) VALUES (1, 2, ?, 'ring_full', 412, 98304)",
               (t0_ns + int(span_s * 0.6e9),))
    db.execute("COMMIT")


def upgrade(db):
    """Upgrades the store to the newest schema (lib/store.c's migrations)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ui"))
    import fixture  # the migrations parser the dashboard tests use
    fixture.upgrade(db, len(fixture.migrations()))


def add_queries(db, per_request, seed):
    """Upgrades the store to the newest schema (lib/store.c's migrations)
    and gives run 1 SQL queries: per_request on average per request (0 to
    2 x per_request), one in 20 requests with an N+1 loop, and one query
    in 50 outside any request (a background job's). They are written as
    the collector writes them: one query set per request, its queries in
    order and its distinct texts once, and a set of one for each query
    outside any request."""
    upgrade(db)
    rnd = random.Random(seed + 1)
    sql = ("INSERT INTO query_sets (id, run_id, request_id, process_id, pid, tid, db_system, tap, database,"
           " attribution, start_unix_ns, n, duration_ns, n_plus_one, queries, texts)"
           " VALUES (?, 1, ?, ?, ?, NULL, 'postgresql', 'wire', 'shop', NULL, ?, ?, ?, ?, ?, ?)")
    texts = [("SELECT * FROM items WHERE id = $1", "select * from items where id = ?"),
             ("SELECT count(*) FROM orders WHERE user_id = $1", "select count(*) from orders where user_id = ?"),
             ("UPDATE carts SET updated = now() WHERE id = $1", "update carts set updated = now() where id = ?")]
    next_id = (db.execute("SELECT max(id + n) FROM query_sets").fetchone()[0] or 1)
    batch = []

    def add_set(rid, proc, pid, queries):
        # queries: (start, duration, sql, fingerprint, n_plus_one); each is written as [start offset,
        # duration, sql, sql_truncated, fingerprint, fingerprint_hash, params, rows, error, call_site,
        # duplicate, n_plus_one, kind, executions] with its texts as indexes (lib/store.c, enum query_field)
        nonlocal next_id
        start0 = queries[0][0]
        known, out = {}, []

        def text(t):
            return known.setdefault(t, len(known))
        for start, dur, text_sql, fp, npo in queries:
            out.append([start - start0, dur, text(text_sql), 0, text(fp), None, None, 1, None, None, 0, npo,
                        "app", 1])
        batch.append((next_id, rid, proc, pid, start0, len(queries), sum(q[1] for q in queries),
                      sum(q[4] for q in queries), json.dumps(out, separators=(",", ":")),
                      json.dumps(list(known), separators=(",", ":"))))
        next_id += len(queries)

    db.execute("BEGIN")
    for rid, proc, pid, start, dur in db.execute(
            "SELECT id, process_id, pid, start_unix_ns, duration_ns FROM requests WHERE run_id = 1 ORDER BY id"
    ).fetchall():
        n = rnd.randint(0, 2 * per_request)
        loop = rnd.random() < 0.05 and n > 0
        mine = []
        for k in range(n):
            text_sql, fp = texts[0] if loop else rnd.choice(texts)
            outside = rnd.random() < 0.02
            q = (start + dur * k // (n + 1), max(1000, dur // (2 * n + 2)), text_sql, fp,
                 1 if loop and not outside else 0)
            if outside:
                add_set(None, proc, pid, [q])
            else:
                mine.append(q)
        if mine:
            add_set(rid, proc, pid, mine)
        if len(batch) >= 20000:
            db.executemany(sql, batch)
            batch.clear()
    db.executemany(sql, batch)
    db.execute("COMMIT")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--db", default="bench/results/ui-store.db")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--span", type=float, default=None, help="seconds the requests cover (default: N/800)")
    ap.add_argument("--queries", type=int, default=0, metavar="Q",
                    help="SQL queries per request on average (the store then has the newest schema)")
    ap.add_argument("--newest", action="store_true",
                    help="bring the store to the newest schema (lib/store.c's migrations), as --queries does")
    ap.add_argument("--page-size", type=int, default=NEW_STORE_PAGE_BYTES,
                    help="SQLite page size in bytes (default %d, as timeglass run creates a store)"
                    % NEW_STORE_PAGE_BYTES)
    args = ap.parse_args()
    span = args.span or max(10.0, args.requests / 800.0)
    t_start = time.time()
    db = create_store(args.db, indexes=False, page_size=args.page_size)
    db.execute("PRAGMA synchronous = OFF")
    t0_ns = int((time.time() - span - 60) * 1e9)
    generate(db, args.requests, args.seed, t0_ns, span)
    db.executescript(SCHEMA_INDEXES)
    if args.queries > 0:
        add_queries(db, args.queries, args.seed)
    elif args.newest:
        upgrade(db)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print("%s: %d requests in %.1f s" % (args.db, args.requests, time.time() - t_start), file=sys.stderr)


if __name__ == "__main__":
    main()
