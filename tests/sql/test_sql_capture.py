"""SQL and outbound-HTTP capture, end to end: real PostgreSQL 15, real drivers,
a real FastAPI app under `timeglass run`, 50 concurrent requests.

Every query the app runs carries its request number as a comment
(`/* r=N */`), so each check below is what a user would verify by hand:
the query is in the store exactly once, under the request that ran it,
with the right text, rows, error, call site and tap; N+1 loops are flagged;
TLS connections are seen; outbound calls are spans of their request.
"""

import os
import sqlite3

import pytest

from conftest import APGX_KINDS, APP, DRIVERS, HTTP_CLIENTS, KINDS, PARAM_DRIVERS, site_lines

GROUPS = [(d, t) for d, (_tap, ts) in DRIVERS.items() for t in ts]
PG = "postgresql"


def _marker(i):
    return "/* r=%d */" % i


def _queries_of(rec, i):
    m = _marker(i)
    return [q for q in rec.queries if q["sql"] and m in q["sql"]]


@pytest.mark.parametrize("driver,transport", GROUPS, ids=["%s-%s" % g for g in GROUPS])
def test_every_query_once_on_its_request(recorded, driver, transport):
    tap = DRIVERS[driver][0]
    sites = site_lines()
    problems = []
    plan = [p for p in recorded.plan if p[0] == driver and p[1] == transport]
    assert plan
    for _drv, _tr, kind, i in plan:
        path = "/%s/%s/%s/%d" % (driver, transport, kind, i)
        status, body = recorded.responses[path]
        assert status == 200, (path, body)
        req = recorded.request(path)
        qs = _queries_of(recorded, i)
        want = KINDS[kind]
        if len(qs) != want:
            problems.append("%s: %d queries captured, want %d" % (path, len(qs), want))
            continue
        line, func = sites["%s-%s" % (driver, kind)]
        for q in qs:
            if q["request_id"] != req["id"]:
                problems.append("%s: query %d on request %s, want %d (%s)" % (
                    path, q["id"], q["request_id"], req["id"], q["attribution"]))
            if q["tap"] != tap:
                problems.append("%s: tap %s, want %s" % (path, q["tap"], tap))
            if q["call_site"] != "%s:%d %s" % (APP, line, func):
                problems.append("%s: call site %r, want %s:%d %s" % (path, q["call_site"], APP.name, line, func))
            if kind == "fail":
                if q["error"] is None or (q["db_system"] == PG and not q["error"].startswith("42P01 ")) or (
                        q["db_system"] == "sqlite" and "no such table: missing_table" not in q["error"]):
                    problems.append("%s: error %r" % (path, q["error"]))
            else:
                if q["error"] is not None or q["rows"] != 1:
                    problems.append("%s: rows %r error %r" % (path, q["rows"], q["error"]))
            if q["n_plus_one"] != (1 if kind == "loop" else 0):
                problems.append("%s: n_plus_one %r" % (path, q["n_plus_one"]))
            expect_db = "tgtest" if q["db_system"] == PG else recorded.lite_db
            if q["database"] != expect_db:
                problems.append("%s: database %r" % (path, q["database"]))
        if req["queries"] < want:
            problems.append("%s: requests --json says %d queries" % (path, req["queries"]))
    assert not problems, "%d problems, first ones:\n%s" % (len(problems), "\n".join(problems[:20]))


def test_sql_text_and_fingerprint(recorded):
    i = next(p[3] for p in recorded.plan if p[:3] == ("apg", "unix", "one"))
    (q,) = _queries_of(recorded, i)
    assert q["sql"] == "SELECT name FROM items WHERE id = $1 /* r=%d */" % i
    assert q["fingerprint"] == "select name from items where id = ?"
    i = next(p[3] for p in recorded.plan if p[:3] == ("pg2", "tcp", "one"))
    (q,) = _queries_of(recorded, i)
    assert q["sql"] == "SELECT name FROM items WHERE id = %d /* r=%d */" % (i % 100 + 1, i)
    assert q["fingerprint"] == "select name from items where id = ?"
    assert q["params"] is None  # not without --capture-params
    i = next(p[3] for p in recorded.plan if p[:3] == ("apg", "tcp", "one"))
    (q,) = _queries_of(recorded, i)
    assert q["params"] is None


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_asyncpg_cursor_prepare_transaction(recorded, transport):
    """asyncpg's cursors, prepared statements and transaction blocks: every
    statement on the request that ran it (uvloop writes from the loop)."""
    sites = site_lines()
    problems = []
    plan = [p for p in recorded.plan if p[0] == "apgx" and p[1] == transport]
    assert plan
    for _drv, _tr, kind, i in plan:
        path = "/apgx/%s/%s/%d" % (transport, kind, i)
        status, body = recorded.responses[path]
        assert status == 200, (path, body)
        req = recorded.request(path)
        marked, total = APGX_KINDS[kind]
        qs = _queries_of(recorded, i)
        # asyncpg's pool runs its reset query (RESET ALL ...) on release: of
        # the request too, but not counted here.
        on_req = [q for q in recorded.queries if q["request_id"] == req["id"] and "RESET ALL" not in (q["sql"] or "")]
        if len(qs) != marked or len(on_req) != total:
            problems.append("%s: %d marked queries (want %d), %d on the request (want %d): %r" % (
                path, len(qs), marked, len(on_req), total, [(q["sql"], q["request_id"]) for q in qs]))
            continue
        want_sites = {
            "cursor": ["apgx-cursor"],
            "prepare": ["apgx-prepare", "apgx-prepare2", "apgx-prepare3", "apgx-prepare4"],
            "txn": ["apgx-txn2"],
        }[kind]
        got = sorted(q["call_site"] or "" for q in qs)
        want = sorted("%s:%d %s" % ((APP,) + sites[w]) for w in want_sites)
        if got != want:
            problems.append("%s: call sites %r, want %r" % (path, got, want))
        for q in qs:
            if q["request_id"] != req["id"] or q["error"] is not None or q["tap"] != "wire":
                problems.append("%s: query %r" % (path, q))
        if kind == "prepare" and sorted((q["executions"], q["rows"]) for q in qs) != [(1, 1), (1, 1), (1, 1), (2, 2)]:
            problems.append("%s: (executions, rows) %r" % (path, [(q["executions"], q["rows"]) for q in qs]))
        if kind == "cursor" and qs[0]["rows"] != 3:
            problems.append("%s: cursor rows %r" % (path, qs[0]["rows"]))
        if kind in ("cursor", "txn"):
            texts = sorted((q["sql"] or "").strip().rstrip(";").upper() for q in on_req if q not in qs)
            if texts != ["BEGIN", "COMMIT"]:
                problems.append("%s: transaction statements %r" % (path, texts))
        if kind == "txn":
            line, func = sites["apgx-txn"]
            for q in on_req:
                if q not in qs and q["call_site"] != "%s:%d %s" % (APP, line, func):
                    problems.append("%s: %s call site %r" % (path, q["sql"], q["call_site"]))
    assert not problems, "%d problems, first ones:\n%s" % (len(problems), "\n".join(problems[:20]))


PARAMS_WANT = {
    # asyncpg: binary values, types from the server's ParameterDescription
    "apg": "$1=42, $2='it's', $3=true, $4=2.5",
    # psycopg 3: types in the Parse
    "pg3a": "$1=42, $2='it's', $3=true, $4=2.5",
    "pg3": "$1=42, $2='it's', $3=true, $4=2.5",
    # psycopg2 interpolates on the client: no parameters reach libpq
    "pg2": None,
    # sqlite3: the expanded statement
    "lite": "SELECT count(*) FROM items WHERE id = 42 AND name <> 'it''s' AND 1 AND id > 2.5 /* r=%d */",
}


def test_params_captured_with_capture_params(recorded_params):
    rec = recorded_params
    problems = []
    for drv, i in rec.plan:
        path = "%s/%d" % (PARAM_DRIVERS[drv], i)
        status, body = rec.responses[path]
        assert status == 200 and body["n"] == 1, (path, body)
        req = rec.request(path)
        qs = _queries_of(rec, i)
        if len(qs) != 1 or qs[0]["request_id"] != req["id"]:
            problems.append("%s: queries %r" % (path, qs))
            continue
        got = qs[0]["params"]
        want = PARAMS_WANT[drv]
        if want is not None and "%d" in want:
            want = want % i
        if got != want:
            problems.append("%s: params %r, want %r" % (path, got, want))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ["/sslinfo-sync/pg2", "/sslinfo-sync/pg3", "/sslinfo/pg3a", "/sslinfo/apg"])
def test_tls_connections_are_captured(recorded, path):
    status, body = recorded.responses[path]
    assert status == 200 and body["ssl"] is True, body
    req = recorded.request(path)
    qs = [q for q in recorded.queries if q["request_id"] == req["id"] and "pg_stat_ssl" in (q["sql"] or "")]
    assert len(qs) == 1, qs
    assert qs[0]["rows"] == 1


@pytest.mark.parametrize("client", HTTP_CLIENTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_outbound_http_calls_are_spans(recorded, client, scheme):
    port = recorded.echo_ports[1 if scheme == "https" else 0]
    problems = []
    for _h, cl, sc, i in [p for p in recorded.plan if p[0] == "http" and p[1] == client and p[2] == scheme]:
        path = "/http/%s/%s/%d" % (client, scheme, i)
        status, body = recorded.responses[path]
        assert status == 200 and body["status"] == 200, body
        req = recorded.request(path)
        spans = [s for s in recorded.spans if s["request_id"] == req["id"]]
        if len(spans) != 1 or req["http_calls"] != 1:
            problems.append("%s: %d spans (requests says %s)" % (path, len(spans), req["http_calls"]))
            continue
        s = spans[0]
        want = ("GET", "127.0.0.1:%d" % port, "/echo/%d" % i, 200, 1 if scheme == "https" else 0)
        got = (s["method"], s["host"], s["path"], s["status"], s["tls"])
        if got != want:
            problems.append("%s: span %r, want %r" % (path, got, want))
        if s["response_bytes"] <= 0 or s["request_bytes"] <= 0 or s["duration_ns"] <= 0:
            problems.append("%s: span sizes %r" % (path, s))
    assert not problems, "%d problems:\n%s" % (len(problems), "\n".join(problems[:20]))


def test_app_sqlite_untouched_and_store_not_captured(recorded):
    with sqlite3.connect(recorded.lite_db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*), sum(id) FROM items").fetchone() == (100, 5050)
    for q in recorded.queries:
        assert not (q["database"] or "").endswith("timeglass.db"), q
    for path, (status, body) in recorded.responses.items():
        if path.startswith("/lite") and "/one/" in path:
            i = int(path.rsplit("/", 1)[1])
            assert body == {"rows": ["item-%d" % (i % 100 + 1)]}


def test_password_never_stored(recorded):
    from pgharness import PASSWORD
    for suffix in ("", "-wal"):
        p = recorded.db + suffix
        if os.path.exists(p):
            with open(p, "rb") as f:
                assert PASSWORD.encode() not in f.read()


def test_no_sanitizer_reports(recorded):
    """With an ASan/UBSan library (TIMEGLASS_TEST_LIB), the app reported nothing."""
    from tgtest import SANITIZER_MARK
    bad = [ln for ln in recorded.stderr.splitlines() if SANITIZER_MARK.search(ln)]
    assert not bad, "\n".join(bad[:20])
