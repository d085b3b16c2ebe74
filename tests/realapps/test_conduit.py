"""A RealWorld-style API (tests/realapps/conduit) under `timeglass run`,
half of its traffic through nginx, with concurrent clients: what TimeGlass
says about each request is checked against what the client sent and got
and against PostgreSQL's log.

The app has what such backends have: routers included with prefixes and a
route at path "", an admin sub-app mounted at /admin, a pooled asyncpg
connection per request from a dependency plus more acquisitions inside
(the current user, concurrent lookups), asyncio.gather and TaskGroup
fan-out, Starlette's BaseHTTPMiddleware (the rest of the app runs in a task
of its own), sync routes in the threadpool on a psycopg2 pool, a background
task, and two bugs that answer 500.
"""
import collections
import http.client
import json
import random
import sqlite3
import threading

import pytest

from conftest import HERE, App, Nginx, create_database, pg_statements

APP_DIR = HERE / "conduit"
CLIENTS = 8
ROUNDS = 6  # each client sends every kind of request this many times, shuffled
REQUEST_ID = __import__("re").compile(r"request_id='([^']+)'")

# kind -> (method, path, expected route, expected status, app statements)
KINDS = {
    "list": ("GET", "/api/v1/articles?limit=5", "/api/v1/articles", 200, 1),
    "feed": ("GET", "/api/v1/articles/feed", "/api/v1/articles/feed", 200, 6),
    "authors": ("GET", "/api/v1/articles/with-authors", "/api/v1/articles/with-authors", 200, 9),
    "article": ("GET", "/api/v1/articles/article-{n}", "/api/v1/articles/{slug}", 200, 1),
    "missing": ("GET", "/api/v1/articles/nope-{n}", "/api/v1/articles/{slug}", 404, 1),
    "comments": ("GET", "/api/v1/articles/article-{n}/comments", "/api/v1/articles/{slug}/comments", 200, 3),
    "favorite": ("POST", "/api/v1/articles/article-{n}/favorite", "/api/v1/articles/{slug}/favorite", 200, 3),
    "profile": ("GET", "/api/v1/profiles/{n}", "/api/v1/profiles/{user_id}", 200, 1),
    "report": ("GET", "/api/v1/profiles/{n}/report", "/api/v1/profiles/{user_id}/report", 500, 1),
    "health": ("GET", "/api/v1/system/health", "/api/v1/system/health", 200, 1),
    "stats": ("GET", "/api/v1/system/stats", "/api/v1/system/stats", 200, 2),
    "audit": ("POST", "/api/v1/system/audit", "/api/v1/system/audit", 200, 1),
    "job": ("GET", "/admin/jobs/{n}", "/admin/jobs/{job_id}", 200, 0),
    "retry": ("POST", "/admin/jobs/{n}/retry", "/admin/jobs/{job_id}/retry", 500, 0),
}


def route_matches(stored, expected):
    """A path parameter with a convertor may be shown with it ({user_id:int})."""
    return stored is not None and __import__("re").sub(r"\{(\w+):\w+\}", r"{\1}", stored) == expected


class Sent:
    def __init__(self, rid, kind, method, path, via, xff):
        self.rid, self.kind, self.method, self.path, self.via, self.xff = rid, kind, method, path, via, xff
        self.status = None


def drive(app_port, proxy_port):
    """CLIENTS threads, each with a keep-alive connection to the app and one
    to the proxy, sending every kind ROUNDS times in random order. Returns
    the requests sent, with the status each got."""
    sent = []
    lock = threading.Lock()
    errors = []

    def client(c):
        rnd = random.Random(c)
        conns = {"direct": http.client.HTTPConnection("127.0.0.1", app_port, timeout=60),
                 "proxy": http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=60)}
        plan = [k for k in KINDS for _ in range(ROUNDS)]
        rnd.shuffle(plan)
        kind = via = None
        try:
            for i, kind in enumerate(plan):
                method, path, _, _, _ = KINDS[kind]
                via = "proxy" if (i + c) % 2 else "direct"
                rid = "c%d-%d-%s" % (c, i, kind)
                xff = "203.0.113.%d" % (c + 1) if via == "proxy" else None
                s = Sent(rid, kind, method, path.format(n=1 + rnd.randrange(20)), via, xff)
                headers = {"X-Request-Id": rid, "Authorization": "Token tok%d" % (1 + c)}
                if xff:
                    headers["X-Forwarded-For"] = xff
                conn = conns[via]
                try:
                    conn.request(method, s.path, body=b"" if method == "POST" else None, headers=headers)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # The server closed the idle keep-alive connection as the
                    # request went out (it never read it): a new connection,
                    # as HTTP clients do.
                    conn.close()
                    conn.request(method, s.path, body=b"" if method == "POST" else None, headers=headers)
                    resp = conn.getresponse()
                resp.read()
                s.status = resp.status
                if resp.status == 500 and via == "direct":
                    conn.close()  # uvicorn closes a connection whose app raised: start a new one
                with lock:
                    sent.append(s)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%s via %s: %r" % (kind, via, e))
        finally:
            for conn in conns.values():
                conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return sent


@pytest.fixture(scope="module")
def run(pg, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conduit")
    dsn = create_database(pg, "conduit", APP_DIR / "schema.sql")
    # No sampler CPU budget: the flame-graph checks count samples against the rate.
    app = App(tmp, APP_DIR, "app.main:app", {"CONDUIT_DSN": dsn, "TIMEGLASS_SAMPLE_BUDGET": "0"})
    proxy = Nginx(tmp, app.port)
    try:
        sent = drive(app.port, proxy.port)
    finally:
        proxy.stop()
        rc = app.stop()
    assert rc == 0, app.output()[-4000:]
    db = sqlite3.connect(app.db)
    db.row_factory = sqlite3.Row
    return Run(db, sent, pg_statements(pg.log, "conduit"), app.output())


class Run:
    def __init__(self, db, sent, pg_log, output):
        self.db, self.sent, self.pg_log, self.output = db, sent, pg_log, output
        self.rows = {}     # request id -> the row of the request that was answered
        self.retried = []  # rows of attempts nginx gave up on and sent again
        for r in db.execute("SELECT * FROM requests WHERE transport = 'http'"):
            m = __import__("re").search(r"(?im)^x-request-id: (\S+)$", r["headers"] or "")
            assert m, r["headers"]
            if r["error"] is not None:
                self.retried.append((m.group(1), r))
                continue
            assert m.group(1) not in self.rows, "request %s stored twice" % m.group(1)
            self.rows[m.group(1)] = r
        self.queries = db.execute("SELECT * FROM queries").fetchall()


def answered(run):
    """The requests sent that reached the app and got its answer: all but
    those nginx answered 502 itself (see test_every_request_stored_once)."""
    return [s for s in run.sent if not (s.via == "proxy" and s.status == 502)]


def test_every_request_stored_once(run):
    """One answered row per request the app answered. After a 500, uvicorn
    drops the connection; a request nginx had already sent on it is read
    and never answered. That attempt is stored too, as the server closing
    before its response; nginx sends a GET again on a new connection, and
    answers a POST with 502 itself."""
    assert len(run.sent) == CLIENTS * ROUNDS * len(KINDS)
    assert sorted(run.rows) == sorted(s.rid for s in answered(run))
    by_id = {s.rid: s for s in run.sent}
    for rid, r in run.retried:
        s = by_id[rid]
        assert s.via == "proxy" and r["error"] == "server closed before response", (rid, r["error"])
        assert r["status"] is None and r["response_bytes"] == 0
    # The POSTs nginx gave up on (502): read by the app and dropped, or
    # refused by the closed socket before the app read them.
    gave_up = [s for s in run.sent if s.rid not in run.rows]
    assert all(s.method == "POST" and s.status == 502 for s in gave_up), [(s.rid, s.status) for s in gave_up]


def test_routes_and_statuses(run):
    wrong = []
    for s in answered(run):
        r = run.rows[s.rid]
        _, _, route, status, _ = KINDS[s.kind]
        assert s.status == status, (s.kind, s.status)
        if r["status"] != status or not route_matches(r["route"], route) or r["method"] != s.method:
            wrong.append((s.kind, s.via, r["method"], r["status"], r["route"]))
    assert not wrong, wrong[:10]


def test_proxied_requests_keep_their_socket_peer_and_forwarded_client(run):
    for s in answered(run):
        r = run.rows[s.rid]
        assert r["client_addr"].startswith("127.0.0.1:"), r["client_addr"]
        assert r["forwarded_for"] == s.xff, (s.via, r["forwarded_for"], s.xff)


def test_exceptions_recorded_without_timeglass_frames(run):
    for s in answered(run):
        r = run.rows[s.rid]
        if s.kind == "report":
            assert r["exception"] and r["exception"].startswith("ZeroDivisionError"), r["exception"]
        elif s.kind == "retry":
            assert r["exception"] and r["exception"].startswith("RuntimeError: retry queue"), r["exception"]
        else:
            assert r["exception"] is None, (s.kind, r["exception"])
        text = r["exception"] or ""
        assert "timeglass/" not in text and "serve_native" not in text, text


def test_queries_land_on_their_request(run):
    """Every app statement carries its request's id: it must be stored on that
    request, whichever task, pooled connection or thread ran it. (An attempt
    the app started and whose connection uvicorn then dropped is a request
    of its own, with the statements it ran.)"""
    rows_of = collections.defaultdict(set)
    for rid, r in list(run.rows.items()) + run.retried:
        rows_of[rid].add(r["id"])
    per_request = collections.Counter()
    wrong = []
    for q in run.queries:
        m = REQUEST_ID.search(q["sql"] or "")
        if not m:
            continue
        rid = m.group(1)
        per_request[rid] += 1
        if q["request_id"] not in rows_of[rid]:
            wrong.append((rid, q["request_id"], q["attribution"], q["sql"][:60]))
    assert not wrong, "%d of %d app statements on another request (or none): %s" % (
        len(wrong), sum(per_request.values()), wrong[:8])
    retried = {rid for rid, _ in run.retried}
    for s in answered(run):
        if s.rid not in retried:
            assert per_request[s.rid] == KINDS[s.kind][4], (s.kind, per_request[s.rid])


def test_statements_match_postgresql_log(run):
    """Per request, the statements TimeGlass recorded are those PostgreSQL ran."""
    logged = collections.defaultdict(collections.Counter)
    for _, text in run.pg_log:
        m = REQUEST_ID.search(text)
        if m:
            logged[m.group(1)][" ".join(text.split())] += 1
    recorded = collections.defaultdict(collections.Counter)
    for q in run.queries:
        m = REQUEST_ID.search(q["sql"] or "")
        if m:
            recorded[m.group(1)][" ".join(q["sql"].split())] += 1
    assert sum(map(len, logged.values())) > 0, "PostgreSQL logged no statement: logging not on?"
    diff = [(rid, logged[rid], recorded[rid]) for rid in set(logged) | set(recorded)
            if logged[rid] != recorded[rid]]
    assert not diff, diff[:5]
    # And nothing else: every statement PostgreSQL ran for the app, pool
    # housekeeping and transactions included, was recorded.
    total = run.db.execute("SELECT count(*) FROM queries WHERE db_system = 'postgresql'").fetchone()[0]
    assert total == len(run.pg_log), (total, len(run.pg_log))


def stack_frames(run, stack_id):
    ids = [int(i) for i in run.db.execute("SELECT frames FROM stacks WHERE id = ?", (stack_id,)).fetchone()[0].split(",")]
    names = {r[0]: (r[1], r[2]) for r in run.db.execute(
        "SELECT id, name, file FROM frames WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)}
    return [names[i] for i in ids]  # root first


def test_samples_of_requests_are_their_work(run):
    """No frame of TimeGlass in any stack; no sample of an idle worker thread
    (parked on its queue, running nothing of the app) counted in a request."""
    idle = []
    total = 0
    for s in run.db.execute("SELECT stack_id, sum(count) AS n FROM samples WHERE request_id IS NOT NULL"
                            " GROUP BY stack_id"):
        frames = stack_frames(run, s["stack_id"])
        total += s["n"]
        files = [f for _, f in frames]
        assert not any(f.endswith(("timeglass/middleware.py", "timeglass/_autopatch.py")) for f in files), frames
        in_app = any("/conduit/app/" in f for f in files)
        worker = any(name in ("run", "_worker") and ("anyio" in f or "concurrent/futures" in f)
                     for name, f in frames)
        if worker and not in_app:
            idle.append((s["n"], [n for n, _ in frames][-4:]))
    assert total > 0, "no samples attributed to requests"
    assert not idle, idle[:5]
    # The sync route's 20 ms of work in its worker thread is in its own
    # request's flame graph (at 1 kHz, a score of samples each).
    with_work = 0
    stats = [run.rows[s.rid]["id"] for s in answered(run) if s.kind == "stats"]
    for rid in stats:
        stacks = run.db.execute("SELECT stack_id FROM samples WHERE request_id = ?", (rid,)).fetchall()
        with_work += any(any(n.endswith(".run") and f.endswith("/system.py") for n, f in stack_frames(run, st[0]))
                         for st in stacks)
    assert with_work >= 0.8 * len(stats), (with_work, len(stats))
