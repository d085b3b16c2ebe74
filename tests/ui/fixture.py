#!/usr/bin/python3
"""The known store the dashboard tests run against (the newest schema).

    /usr/bin/python3 tests/ui/fixture.py PATH    # writes it (the e2e test does)

Run 1 (ended) holds twelve requests whose figures the tests check exactly,
with SQL queries, an outbound call and stack samples for some of them;
run 2 (newest, still recording) holds a few more, among them the XSS
payloads (also in SQL). Times are fixed (T0) so that every figure is
reproducible. build(path, schema=1) writes the same requests in a store of
schema 1, which has no queries, spans or samples tables yet; schema 3 has
them without the queries' kind and executions.

The schema upgrades are read from the migrations[] of lib/store.c, so the
tables are exactly those `timeglass run` creates.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gen_store import create_store, request_row, REQUEST_COLUMNS  # noqa: E402

T0 = 1_700_000_000_123_456_789  # a unix time in ns, beyond 2^53 on purpose
MS = 1_000_000
XSS_PATH = "/<script>alert(1)</script>"
XSS_HEADER = "</script><img src=x onerror=alert(1)>"

# Run 1: (offset from T0 in ms, method, path, route, status, duration ms, query)
RUN1 = [
    (0, "GET", "/items/1", "/items/{item_id}", 200, 1, None),
    (100, "GET", "/items/2", "/items/{item_id}", 200, 2, "q=a"),
    (200, "GET", "/items/3", "/items/{item_id}", 404, 3, None),
    (300, "POST", "/items", "/items", 201, 4, None),
    (400, "POST", "/items", "/items", 500, 5, None),
    (500, "GET", "/health", "/health", 200, 6, None),
    (600, "GET", "/health", "/health", 200, 7, None),
    (700, "GET", "/favicon.ico", None, 404, 8, None),
    (800, "GET", "/items/4", "/items/{item_id}", 200, 9, None),
    (900, "GET", "/items/5", "/items/{item_id}", 500, 10, None),
    (1000, "GET", "/items/6", "/items/{item_id}", 200, 11, None),
    (1100, "DELETE", "/items/7", "/items/{item_id}", 204, 12, None),
]
EXCEPTION = "Traceback (most recent call last):\n  File \"main.py\", line 9, in create\nValueError: <b>boom</b>\n"


XSS_SQL = "SELECT '</script><img src=x onerror=alert(1)>' AS x FROM orders WHERE note = '<b>hi</b>'"
STORE_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib", "store.c")


def migrations():
    """The SQL of each schema step of lib/store.c's migrations[] array."""
    src = open(STORE_C, encoding="utf-8").read()
    body = src[src.index("migrations[] = {") + len("migrations[] = {"):]
    out, cur, i = [], [], 0
    while i < len(body):
        c = body[i]
        if body.startswith("/*", i):
            i = body.index("*/", i) + 2
        elif c == '"':
            m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(body, i)
            cur.append(m.group(1).encode().decode("unicode_escape"))
            i = m.end()
        elif c == ",":
            out.append("".join(cur))
            cur = []
            i += 1
        elif c == "}":
            if cur:
                out.append("".join(cur))
            return out
        else:
            i += 1
    raise ValueError("no migrations[] in lib/store.c")


def upgrade(db, schema):
    """Applies the steps of lib/store.c from schema 1 up to schema."""
    steps = migrations()
    for v in range(1, schema):
        db.executescript(steps[v])
    db.execute("PRAGMA user_version = %d" % schema)


# Frames (id, name, file, line) and stacks (id, frame ids root first) of the samples.
FRAMES = [
    (1, "run", "uvicorn/server.py", 61),
    (2, "get_item", "app/main.py", 20),
    (3, "load_item", "app/db.py", 10),
    (4, "execute", "sqlalchemy/engine/base.py", 1412),
    (5, "render", "app/main.py", 31),
    (6, "dumps", "json/__init__.py", 231),
]
STACKS = [(1, "1,2,3,4"), (2, "1,2,5,6"), (3, "1,2"), (4, "1,2,3")]
# Samples: (request id or None, stack, state, count)
SAMPLES = [
    (9, 1, "running", 5), (9, 1, "waiting", 3), (9, 2, "running", 4), (9, 3, "running", 2),
    (1, 4, "running", 6),
    (4, 2, "running", 5), (4, 3, "waiting", 2),
    (None, 3, "running", 1),
]
# Queries: (request id or None, offset ms from the request start, duration us, sql, fingerprint, rows,
# error, call site, duplicate, n_plus_one)
Q_ITEM = "SELECT * FROM items WHERE id = ?"
Q_TAGS = "SELECT * FROM tags WHERE item_id = ?"
QUERIES = [
    (9, 1.0, 2000, "SELECT * FROM items WHERE id = 4", Q_ITEM, 1, None, "app/main.py:21 get_item", 0, 0),
    (9, 3.5, 500, "SELECT * FROM tags WHERE item_id = 1", Q_TAGS, 2, None, "app/main.py:24 get_item", 0, 1),
    (9, 4.0, 500, "SELECT * FROM tags WHERE item_id = 2", Q_TAGS, 0, None, "app/main.py:24 get_item", 0, 1),
    (9, 4.5, 500, "SELECT * FROM tags WHERE item_id = 3", Q_TAGS, 1, None, "app/main.py:24 get_item", 0, 1),
    (9, 5.5, 1000, "SELECT * FROM items WHERE id = 4", Q_ITEM, 1, None, "app/main.py:27 get_item", 1, 0),
    (1, 0.2, 300, "SELECT * FROM items WHERE id = 1", Q_ITEM, 1, None, "app/main.py:21 get_item", 0, 0),
    (5, 1.0, 1000, "INSERT INTO items (name) VALUES ($1)", "INSERT INTO items (name) VALUES (?)", None,
     'duplicate key value violates unique constraint "items_name_key"', "app/main.py:9 create", 0, 0),
    (None, -500.0, 3000, "CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, name text)", None, None, None, None, 0, 0),
]


# Request 102 (run 2): an import in a transaction: BEGIN and COMMIT are
# housekeeping, the executemany of 500 rows over psycopg2 one batch query.
# (offset ms, duration us, sql, fingerprint, rows, kind, executions)
QUERIES_102 = [
    (0.5, 50, "BEGIN", "begin", None, "housekeeping", 1),
    (1.0, 4000, "INSERT INTO orders (item_id, qty) VALUES (1, 2)", "insert into orders(item_id, qty) values(?+)",
     500, "app", 500),
    (5.2, 80, "COMMIT", "commit", None, "housekeeping", 1),
]


def insert_profile(db, schema):
    """Queries, one outbound call and stack samples of run 1; XSS SQL in run 2."""
    starts = dict(db.execute("SELECT id, start_unix_ns FROM requests"))
    for k, (rid, off, dur_us, sql, fp, rows, err, site, dup, npo) in enumerate(QUERIES):
        base = starts[rid] if rid else T0
        db.execute("INSERT INTO queries (id, run_id, request_id, process_id, pid, tid, start_unix_ns, duration_ns,"
                   " db_system, tap, database, sql, fingerprint, rows, error, call_site, attribution, duplicate, n_plus_one)"
                   " VALUES (?, 1, ?, 1, 4242, 4243, ?, ?, 'postgresql', 'libpq', 'shop', ?, ?, ?, ?, ?, 'scope', ?, ?)",
                   (k + 1, rid, base + int(off * MS), dur_us * 1000, sql, fp, rows, err, site, dup, npo))
    db.execute("INSERT INTO queries (id, run_id, request_id, process_id, pid, start_unix_ns, duration_ns, db_system, tap,"
               " sql, fingerprint, rows) VALUES (100, 2, 101, 2, 5000, ?, 400000, 'sqlite', 'sqlite3', ?, ?, 0)",
               (starts[101] + MS, XSS_SQL, XSS_SQL))
    if schema >= 5:
        for k, (off, dur_us, sql, fp, rows, kind, executions) in enumerate(QUERIES_102):
            db.execute("INSERT INTO queries (id, run_id, request_id, process_id, pid, start_unix_ns, duration_ns,"
                       " db_system, tap, database, sql, fingerprint, rows, call_site, attribution, kind, executions)"
                       " VALUES (?, 2, 102, 2, 5000, ?, ?, 'postgresql', 'libpq', 'shop', ?, ?, ?,"
                       " 'app/orders.py:40 import_orders', 'scope', ?, ?)",
                       (110 + k, starts[102] + int(off * MS), dur_us * 1000, sql, fp, rows, kind, executions))
    db.execute("INSERT INTO spans (id, run_id, request_id, process_id, pid, tid, kind, start_unix_ns, duration_ns, method,"
               " host, path, status, request_bytes, response_bytes, tls, call_site)"
               " VALUES (1, 1, 9, 1, 4242, 4243, 'http_client', ?, ?, 'GET', 'prices.example.com', '/v1/prices/4', 200,"
               " 120, 512, 1, 'app/main.py:29 get_item')", (starts[9] + 6 * MS, 2 * MS))
    db.executemany("INSERT INTO frames (id, kind, name, file, line) VALUES (?, 'python', ?, ?, ?)", FRAMES)
    db.executemany("INSERT INTO stacks (id, hash, frames) VALUES (?, ?, ?)", [(i, 1000 + i, f) for i, f in STACKS])
    db.executemany("INSERT INTO samples (run_id, request_id, process_id, tid, stack_id, state, count, cpu_ns)"
                   " VALUES (1, ?, 1, 4243, ?, ?, ?, 0)", SAMPLES)


def insert_request(db, **kw):
    db.execute("INSERT INTO requests (%s) VALUES (%s)" % (REQUEST_COLUMNS, ",".join("?" * 24)), request_row(**kw))


RUNS_INSERT = ("INSERT INTO runs (id, started_unix_ns, ended_unix_ns, command, cwd, hostname, tg_version,"
               " source, exit_status) VALUES ")


def build(path, run2_live=True, schema=None):
    schema = schema or len(migrations())  # the newest schema by default
    db = create_store(path)
    if schema > 1:
        upgrade(db, schema)
    db.execute("BEGIN")
    db.execute(RUNS_INSERT + "(1, ?, ?, 'uvicorn main:app', '/srv/app', 'devbox', '0.1.0', 'run', 0)",
               (T0 - 1000 * MS, T0 + 3000 * MS))
    db.execute("INSERT INTO processes VALUES (1, 1, 4242, 4000, '/usr/bin/python3.11', 'uvicorn main:app', ?, ?, 0)",
               (T0 - 900 * MS, T0 + 2900 * MS))
    for i, (off, method, path_, route, status, dur, query) in enumerate(RUN1):
        start = T0 + off * MS
        insert_request(db, id=i + 1, run_id=1, process_id=1, pid=4242, tid=4243, conn_id=i // 2 + 1,
                       start_unix_ns=start, duration_ns=dur * MS, req_end_ns=dur * MS // 10,
                       resp_start_ns=dur * MS - dur * MS // 5, method=method, path=path_, query_string=query,
                       route=route, status=status, request_bytes=100 + i, response_bytes=1000 + i,
                       headers="host: 127.0.0.1:8000\nuser-agent: curl/7.88.1\nauthorization: [redacted]\n",
                       exception=EXCEPTION if status == 500 and method == "POST" else None)
    # 11 samples 100 ms apart: 50 ms of CPU per 100 ms (50%), RSS 100..110 MB.
    for k in range(11):
        db.execute("INSERT INTO process_metrics (process_id, ts_unix_ns, cpu_user_ns, cpu_sys_ns, rss_bytes)"
                   " VALUES (1, ?, ?, ?, ?)",
                   (T0 + k * 100 * MS, k * 40 * MS, k * 10 * MS, (100 + k) * 1_000_000))
    db.execute("INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes) VALUES (1, 1, ?, 'ring_full', 7, 512)",
               (T0 + 500 * MS,))
    # The sampler lowered its rate under its CPU budget (1000 ticks not taken, by design: not a
    # loss) and dropped 4 samples whose stack changed while read.
    for k, ticks in enumerate((400, 350, 250)):
        db.execute("INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes)"
                   " VALUES (1, 1, ?, 'py_sample_budget', ?, 0)", (T0 + (k + 1) * 1000 * MS, ticks))
    db.execute("INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes)"
               " VALUES (1, 1, ?, 'py_sample_race', 4, 0)", (T0 + 1000 * MS,))

    # Run 2: the newest; recording when run2_live.
    t2 = T0 + 10_000 * MS
    db.execute(RUNS_INSERT + "(2, ?, ?, 'uvicorn main:app --reload', '/srv/app', 'devbox', '0.1.0', 'run', NULL)",
               (t2, None if run2_live else t2 + 5000 * MS))
    db.execute("INSERT INTO processes VALUES (2, 2, 5000, 4999, '/usr/bin/python3.11', 'uvicorn main:app --reload', ?, NULL, 0)", (t2,))
    insert_request(db, id=101, run_id=2, process_id=2, pid=5000, start_unix_ns=t2 + 10 * MS, duration_ns=3 * MS,
                   req_end_ns=100_000, resp_start_ns=2_500_000, method="GET", path=XSS_PATH, route=None, status=200,
                   headers="host: 127.0.0.1:8000\nx-evil: %s\nuser-agent: Mozilla/5.0\n" % XSS_HEADER,
                   query_string="a=<img src=x onerror=alert(2)>")
    insert_request(db, id=102, run_id=2, process_id=2, pid=5000, start_unix_ns=t2 + 20 * MS, duration_ns=7 * MS,
                   method="POST", path="/orders", route="/orders", status=500, exception=EXCEPTION,
                   headers="host: 127.0.0.1:8000\n")
    if schema >= 3:
        insert_profile(db, schema)
    db.execute("COMMIT")
    db.close()


if __name__ == "__main__":
    build(sys.argv[1])
