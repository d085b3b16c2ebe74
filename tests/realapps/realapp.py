"""What the real-app tests share: the traffic (concurrent keep-alive clients,
half through nginx), the recorded run read back, and the checks every app
gets (one row per request, routes, the socket peer and forwarded client,
exceptions, each statement on its own request, the statements equal to
PostgreSQL's log, samples that are the request's own work).

An app's test declares its kinds of request:
    kind -> Kind(method, path, route, status, statements, body=None)
where path may hold {n} (a number the client picks) and statements counts
the app's own statements, those that carry the request id.
"""
import collections
import http.client
import json
import random
import re
import sqlite3
import threading

import tgtest

REQUEST_ID = re.compile(r"request_id='([^']+)'")
OURS = ("timeglass/middleware.py", "timeglass/_autopatch.py", "timeglass/_native.py",
        "timeglass/bootstrap/sitecustomize.py")


class Kind:
    def __init__(self, method, path, route, status, statements, body=None, headers=None):
        self.method, self.path, self.route, self.status = method, path, route, status
        self.statements, self.body, self.headers = statements, body, headers or {}


class Sent:
    def __init__(self, rid, kind, method, path, via, xff):
        self.rid, self.kind, self.method, self.path, self.via, self.xff = rid, kind, method, path, via, xff
        self.status = None


def route_matches(stored, expected):
    """A path parameter with a convertor may be shown with it ({user_id:int})."""
    return stored is not None and re.sub(r"\{(\w+):\w+\}", r"{\1}", stored) == expected


def drive(app_port, proxy_port, kinds, clients, rounds, headers_of, n_of):
    """clients threads, each with a keep-alive connection to the app and one
    to the proxy, sending every kind `rounds` times in random order;
    headers_of(c) are client c's own headers, n_of(c, kind, rnd) the number
    for {n} in a path. Returns the requests sent, with the status each got."""
    sent = []
    lock = threading.Lock()
    errors = []

    def client(c):
        rnd = random.Random(c)
        conns = {"direct": http.client.HTTPConnection("127.0.0.1", app_port, timeout=60),
                 "proxy": http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=60)}
        plan = [k for k in kinds for _ in range(rounds)]
        rnd.shuffle(plan)
        kind = via = None
        try:
            for i, kind in enumerate(plan):
                k = kinds[kind]
                via = "proxy" if (i + c) % 2 else "direct"
                rid = "c%d-%d-%s" % (c, i, kind)
                xff = "203.0.113.%d" % (c + 1) if via == "proxy" else None
                s = Sent(rid, kind, k.method, k.path.format(n=n_of(c, kind, rnd)), via, xff)
                headers = dict(headers_of(c), **k.headers)
                headers["X-Request-Id"] = rid
                if xff:
                    headers["X-Forwarded-For"] = xff
                body = None
                if k.body is not None:
                    body = json.dumps(k.body).encode()
                    headers["Content-Type"] = "application/json"
                elif k.method in ("POST", "PUT"):
                    body = b""
                conn = conns[via]
                try:
                    conn.request(k.method, s.path, body=body, headers=headers)
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # The server closed the idle keep-alive connection as the
                    # request went out (it never read it): a new connection,
                    # as HTTP clients do.
                    conn.close()
                    conn.request(k.method, s.path, body=body, headers=headers)
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

    tgtest.run_threads(client, clients)
    assert not errors, errors
    return sent


class Run:
    """The store of a run, and what was sent to it."""

    def __init__(self, db_path, sent, pg_log, kinds):
        self.db = sqlite3.connect(db_path)
        self.db.row_factory = sqlite3.Row
        self.sent, self.pg_log, self.kinds = sent, pg_log, kinds
        self.rows = {}     # request id -> the row of the request that was answered
        self.retried = []  # (request id, row) of attempts the app started on a dropped connection
        for r in self.db.execute("SELECT * FROM requests WHERE transport = 'http'"):
            m = re.search(r"(?im)^x-request-id: (\S+)$", r["headers"] or "")
            assert m, r["headers"]
            if r["error"] is not None:
                self.retried.append((m.group(1), r))
                continue
            assert m.group(1) not in self.rows, "request %s stored twice" % m.group(1)
            self.rows[m.group(1)] = r
        self.queries = self.db.execute("SELECT * FROM queries").fetchall()

    def answered(self):
        """The requests sent that reached the app and got its answer: all but
        those nginx answered 502 itself (see check_stored_once)."""
        return [s for s in self.sent if not (s.via == "proxy" and s.status == 502)]

    def stack_frames(self, stack_id):
        ids = [int(i) for i in self.db.execute("SELECT frames FROM stacks WHERE id = ?",
                                               (stack_id,)).fetchone()[0].split(",")]
        names = {r[0]: (r[1], r[2]) for r in self.db.execute(
            "SELECT id, name, file FROM frames WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)}
        return [names[i] for i in ids]  # root first


def check_stored_once(run, expected_total):
    """One answered row per request the app answered. After a 500, uvicorn
    drops the connection; a request nginx had already sent on it is read
    and never answered. That attempt is stored too, as the server closing
    before its response; nginx sends a GET again on a new connection, and
    answers a POST with 502 itself."""
    assert len(run.sent) == expected_total
    assert sorted(run.rows) == sorted(s.rid for s in run.answered())
    by_id = {s.rid: s for s in run.sent}
    for rid, r in run.retried:
        assert by_id[rid].via == "proxy" and r["error"] == "server closed before response", (rid, r["error"])
        assert r["status"] is None and r["response_bytes"] == 0
    # The POSTs nginx gave up on (502): read by the app and dropped, or
    # refused by the closed socket before the app read them.
    gave_up = [s for s in run.sent if s.rid not in run.rows]
    assert all(s.method == "POST" and s.status == 502 for s in gave_up), [(s.rid, s.status) for s in gave_up]


def check_routes_and_statuses(run):
    wrong = []
    for s in run.answered():
        r, k = run.rows[s.rid], run.kinds[s.kind]
        assert s.status == k.status, (s.kind, s.status)
        if r["status"] != k.status or not route_matches(r["route"], k.route) or r["method"] != s.method:
            wrong.append((s.kind, s.via, r["method"], r["status"], r["route"]))
    assert not wrong, wrong[:10]


def check_peer_and_forwarded_client(run):
    for s in run.answered():
        r = run.rows[s.rid]
        assert r["client_addr"].startswith("127.0.0.1:"), r["client_addr"]
        assert r["forwarded_for"] == s.xff, (s.via, r["forwarded_for"], s.xff)


def check_exceptions(run, expected):
    """expected: kind -> the start of its exception text."""
    for s in run.answered():
        text = run.rows[s.rid]["exception"]
        if s.kind in expected:
            assert text and text.startswith(expected[s.kind]), (s.kind, text)
        else:
            assert text is None, (s.kind, text)
        assert not any(f in (text or "") for f in OURS) and "serve_native" not in (text or ""), text


def check_statements_on_their_request(run):
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
    for s in run.answered():
        if s.rid not in retried:
            assert per_request[s.rid] == run.kinds[s.kind].statements, (s.kind, per_request[s.rid])


def check_postgresql_log(run):
    """Per request, the statements TimeGlass recorded are those PostgreSQL ran;
    and every statement PostgreSQL ran for the app (pool housekeeping and
    transactions included) was recorded."""
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
    total = run.db.execute("SELECT count(*) FROM queries WHERE db_system = 'postgresql'").fetchone()[0]
    assert total == len(run.pg_log), (total, len(run.pg_log))


def idle_worker(frames):
    """True for the stack of a worker thread parked on its job queue (root
    first): anyio's WorkerThread.run in Queue.get. (A stack that ends in
    WorkerThread.run is the worker starting or finishing a job in the
    timeglass wrapper, whose frame is left out: the request's own time.)"""
    names = [n for n, _ in frames]
    for i, (name, f) in enumerate(frames):
        if name == "WorkerThread.run" and "anyio" in f:
            return i + 1 < len(names) and names[i + 1] == "Queue.get"
    return False


def check_samples(run):
    """No frame of TimeGlass in any stack; no sample of an idle worker thread
    counted in a request. Returns the samples counted in requests."""
    idle = []
    total = 0
    for s in run.db.execute("SELECT stack_id, sum(count) AS n FROM samples WHERE request_id IS NOT NULL"
                            " GROUP BY stack_id"):
        frames = run.stack_frames(s["stack_id"])
        total += s["n"]
        assert not any(f.endswith(OURS) for _, f in frames), frames
        if idle_worker(frames):
            idle.append((s["n"], [n for n, _ in frames][-4:]))
    assert not idle, idle[:5]
    return total
