"""API tests of the dashboard (timeglass ui) against the fixture store:
JSON shapes, exact figures, pagination, filters, errors, security headers
and the Host check, XSS payloads, store states and live updates."""
import json
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.parse

import pytest

import fixture
from conftest import Server, free_port, ui_command

MS = fixture.MS
T0 = fixture.T0


def q(s):
    return urllib.parse.quote(s, safe="")


# ---- shapes and figures ----

def test_status(server, store):
    st = server.json("/api/status")
    schema = len(fixture.migrations())
    assert st["store"] == {"path": store, "state": "ok", "message": None, "schema": schema, "supported_schema": schema}
    assert st["runs"] == 2 and st["latest_run"] == 2 and st["live"] is True
    assert st["max_request_id"] == 102
    assert st["capabilities"] == {"queries": True, "samples": True}
    assert isinstance(st["now_unix_ns"], str) and int(st["now_unix_ns"]) > T0


def test_banner_line(server):
    assert server.banner == "timeglass: dashboard at http://127.0.0.1:%d/ (Ctrl-C to stop)\n" % server.port


def test_runs(server):
    runs = server.json("/api/runs")["runs"]
    assert [r["id"] for r in runs] == [2, 1]
    r1 = runs[1]
    assert r1["requests"] == 12 and r1["processes"] == 1 and r1["live"] is False
    assert r1["command"] == "uvicorn main:app" and r1["exit_status"] == 0
    # unix ns are exact strings; ms are doubles
    assert r1["started_unix_ns"] == str(T0 - 1000 * MS)
    assert r1["ended_unix_ns"] == str(T0 + 3000 * MS)
    assert abs(r1["started_ms"] - (T0 - 1000 * MS) / 1e6) < 1e-3
    assert runs[0]["live"] is True and runs[0]["ended_unix_ns"] is None and runs[0]["exit_status"] is None


def test_overview_figures(server):
    ov = server.json("/api/overview?run=1")
    s = ov["summary"]
    assert s["count"] == 12
    assert s["avg_ns"] == 6_500_000 and s["avg_ms"] == 6.5
    assert (s["p50_ns"], s["p90_ns"], s["p95_ns"], s["p99_ns"], s["max_ns"]) == (6 * MS, 11 * MS, 12 * MS, 12 * MS, 12 * MS)
    assert s["n_5xx"] == 2 and s["n_4xx"] == 2
    assert s["rate_5xx"] == pytest.approx(2 / 12) and s["rate_4xx"] == pytest.approx(2 / 12)
    assert s["first_start_unix_ns"] == str(T0)
    assert s["last_end_unix_ns"] == str(T0 + 1112 * MS)
    assert s["active_s"] == pytest.approx(1.112)
    assert s["rps"] == pytest.approx(12 / 1.112)
    assert s["endpoints"] == 5
    tl = ov["timeline"]
    assert tl["bucket_s"] == 1 and sum(tl["rps"]) * tl["bucket_s"] == 12
    assert sum(tl["n_5xx"]) == 2 and sum(tl["n_4xx"]) == 2
    assert len(tl["t"]) == len(tl["rps"]) == len(tl["avg_ms"]) == len(tl["max_ms"])
    p = ov["processes"]
    assert len(p) == 1 and p[0]["pid"] == 4242
    assert p[0]["cpu_avg_pct"] == pytest.approx(50.0)
    assert p[0]["rss_max_bytes"] == 110_000_000 and p[0]["rss_last_bytes"] == 110_000_000
    assert p[0]["series"]["cpu_pct"] == pytest.approx([50.0] * 10)
    assert ov["resources"] == {"cpu_avg_pct": pytest.approx(50.0), "rss_peak_bytes": 110_000_000}
    assert [(l["kind"], l["class"], l["records"], l["events"], l["bytes"]) for l in ov["losses"]] == [
        ("py_sample_budget", "sampling", 3, 1000, 0), ("py_sample_race", "sampling", 1, 4, 0),
        ("ring_full", "loss", 1, 7, 512)]
    assert ov["recording"]["lost_events"] == 7  # the lowered sampling rate is not a loss
    # 8 queries (one at startup, outside any request): 5.8 ms of the requests' 78 ms
    assert ov["queries"] == {"available": True, "count": 8, "total_ms": 8.8, "total_ns": 8_800_000, "in_requests": 7,
                             "in_requests_ms": 5.8, "in_requests_ns": 5_800_000, "db_share": pytest.approx(5.8 / 78),
                             "n_plus_one_requests": 1}
    assert ov["samples"] == {"available": True}
    assert ov["run"]["id"] == 1


def test_overview_defaults_to_newest_run(server):
    ov = server.json("/api/overview")
    assert ov["run"]["id"] == 2 and ov["run"]["live"] is True
    assert ov["summary"]["count"] == 2
    assert ov["processes"][0]["samples"] == 0


def test_endpoints(server):
    body = server.json("/api/endpoints?run=1")
    eps = {(e["method"], e["route"]): e for e in body["endpoints"]}
    assert body["total"] == 5 and set(eps) == {
        ("GET", "/items/{item_id}"), ("DELETE", "/items/{item_id}"), ("POST", "/items"), ("GET", "/health"), ("GET", "/favicon.ico")}
    items = eps[("GET", "/items/{item_id}")]
    assert items["count"] == 6 and items["is_route"] is True
    assert (items["avg_ns"], items["p50_ns"], items["p90_ns"], items["p99_ns"], items["max_ns"]) == (6 * MS, 3 * MS, 11 * MS, 11 * MS, 11 * MS)
    assert items["n_4xx"] == 1 and items["n_5xx"] == 1 and items["rate_5xx"] == pytest.approx(1 / 6)
    assert items["rps"] == pytest.approx(6 / 1.112)
    fav = eps[("GET", "/favicon.ico")]
    assert fav["is_route"] is False and fav["count"] == 1 and fav["rate_4xx"] == 1.0
    # default sort: most requests first
    assert body["endpoints"][0]["route"] == "/items/{item_id}"


@pytest.mark.parametrize("sort,dir,first", [
    ("p99", "desc", ("DELETE", "/items/{item_id}")),
    ("p99", "asc", ("POST", "/items")),
    ("name", "asc", ("GET", "/favicon.ico")),
    ("5xx", "desc", ("POST", "/items")),
])
def test_endpoints_sort(server, sort, dir, first):
    eps = server.json("/api/endpoints?run=1&sort=%s&dir=%s" % (sort, dir))["endpoints"]
    assert (eps[0]["method"], eps[0]["route"]) == first


def ids(rows):
    return [r["id"] for r in rows]


def test_requests_list_and_keyset_pages(server):
    full = server.json("/api/requests?run=1")
    assert ids(full["rows"]) == list(range(12, 0, -1)) and full["next"] is None
    row = full["rows"][-1]
    assert row["start_unix_ns"] == str(T0) and row["duration_ns"] == MS and row["duration_ms"] == 1.0
    assert row["method"] == "GET" and row["path"] == "/items/1" and row["route"] == "/items/{item_id}"
    assert row["status"] == 200 and row["pid"] == 4242 and row["exception"] is False
    # keyset pages: 5 + 5 + 2, no gaps, no repeats
    seen, after = [], None
    while True:
        page = server.json("/api/requests?run=1&limit=5" + ("&after=" + q(after) if after else ""))
        seen += ids(page["rows"])
        after = page["next"]
        if not after:
            break
    assert seen == list(range(12, 0, -1))
    # by duration, ascending, paged
    seen, after = [], None
    while True:
        page = server.json("/api/requests?run=1&limit=4&sort=duration&dir=asc" + ("&after=" + q(after) if after else ""))
        seen += [r["duration_ns"] for r in page["rows"]]
        after = page["next"]
        if not after:
            break
    assert seen == [k * MS for k in range(1, 13)]


@pytest.mark.parametrize("query,expect", [
    ("status=5xx", [10, 5]),
    ("status=4xx", [8, 3]),
    ("status=204", [12]),
    ("route=" + q("/items/{item_id}"), [12, 11, 10, 9, 3, 2, 1]),
    ("route=" + q("/items/{item_id}") + "&method=GET", [11, 10, 9, 3, 2, 1]),
    ("path=" + q("/favicon.ico"), [8]),
    ("method=POST", [5, 4]),
    ("min_ms=10", [12, 11, 10]),
    ("min_ms=9.5&status=2xx", [12, 11]),
    ("q=HEAL", [7, 6]),
    ("q=" + q("%"), []),
    ("from=%d&to=%d" % (T0 + 200 * MS, T0 + 500 * MS), [5, 4, 3]),
    ("status=none", []),
])
def test_requests_filters(server, query, expect):
    assert ids(server.json("/api/requests?run=1&" + query)["rows"]) == expect


def test_requests_newer_than(server):
    assert ids(server.json("/api/requests?run=1&newer_than=9")["rows"]) == [12, 11, 10]


@pytest.mark.parametrize("query", ["sort=size", "dir=up", "status=9xx", "min_ms=abc", "limit=0", "limit=100000",
                                   "after=garbage", "run=abc", "from=12x"])
def test_requests_bad_params(server, query):
    body = server.json("/api/requests?" + query, expect=400)
    assert body["error"]["status"] == 400 and body["error"]["code"] == "bad_param" and body["error"]["message"]


def test_unknown_run(server):
    body = server.json("/api/overview?run=99", expect=404)
    assert body["error"]["code"] == "no_such_run"


def test_request_detail(server):
    d = server.json("/api/requests/5")
    r = d["request"]
    assert r["id"] == 5 and r["run_id"] == 1 and r["method"] == "POST" and r["path"] == "/items"
    assert r["status"] == 500 and r["route"] == "/items" and r["start_unix_ns"] == str(T0 + 400 * MS)
    assert r["exception"] == fixture.EXCEPTION and r["process_exe"] == "/usr/bin/python3.11"
    assert r["request_bytes"] == 104 and r["response_bytes"] == 1004 and r["client_addr"] == "127.0.0.1:50000"
    for col in ("tid", "conn_id", "http_version", "flags", "transport", "headers", "error", "query_string"):
        assert col in r
    assert d["headers"] == [["host", "127.0.0.1:8000"], ["user-agent", "curl/7.88.1"], ["authorization", "[redacted]"]]
    assert d["timing"] == {"total_ns": 5 * MS, "available": True, "wire_in_ns": 500_000, "app_ns": 3_500_000, "wire_out_ns": 1_000_000}
    assert d["queries"] == {"available": True, "count": 1, "total_ms": 1.0, "total_ns": MS}
    assert d["spans"] == {"available": True, "count": 0, "total_ms": 0.0, "total_ns": 0}
    assert d["samples"] == {"available": True, "count": 0}


def test_request_detail_missing(server):
    for path in ("/api/requests/9999", "/api/requests/abc"):
        body = server.json(path, expect=404)
        assert body["error"]["code"] == "not_found"


def test_unknown_api_and_page(server):
    assert server.json("/api/nope", expect=404)["error"]["code"] == "not_found"
    assert server.json("/nope.html", expect=404)["error"]["code"] == "not_found"


# ---- security ----

CSP_PARTS = ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"]


@pytest.mark.parametrize("path", ["/", "/assets/app.js", "/assets/app.css", "/api/status", "/api/nope"])
def test_security_headers(server, path):
    status, h, body = server.get(path)
    assert status in (200, 404)
    for part in CSP_PARTS:
        assert part in h["content-security-policy"]
    assert "unsafe-inline" not in h["content-security-policy"] and "unsafe-eval" not in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert not [k for k in h if k.startswith("access-control-")]


def test_page_and_assets(server):
    status, h, body = server.get("/")
    assert status == 200 and h["content-type"].startswith("text/html")
    html = body.decode()
    assert '<script type="module" src="/assets/app.js"></script>' in html
    assert "<script>" not in html and " on" + "click=" not in html  # no inline code
    status, h, js = server.get("/assets/app.js")
    assert status == 200 and h["content-type"].startswith("text/javascript") and len(js) > 10000
    etag = h["etag"]
    status, _, _ = server.get("/assets/app.js", headers={"If-None-Match": etag})
    assert status == 304


@pytest.mark.parametrize("host,ok", [
    ("127.0.0.1:{p}", True), ("localhost:{p}", True), ("LOCALHOST:{p}", True), ("[::1]:{p}", True),
    ("evil.example", False), ("evil.example:{p}", False), ("localhost", False), ("127.0.0.1:1", False),
    ("localhost.evil.example:{p}", False), ("", False), (None, False),
])
def test_host_header(server, host, ok):
    status, h, body = server.get("/api/status", host=False if host is None else host.format(p=server.port))
    if ok:
        assert status == 200
    else:
        assert status == 403
        assert json.loads(body)["error"]["code"] == "forbidden_host"


def test_methods(server):
    status, h, body = server.get("/api/status", method="POST")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, h, body = server.get("/api/status", method="HEAD")
    assert status == 200 and body == b""


def test_xss_payloads_are_plain_json_strings(server):
    rows = server.json("/api/requests?run=2")["rows"]
    xss = [r for r in rows if r["id"] == 101][0]
    assert xss["path"] == fixture.XSS_PATH
    d = server.json("/api/requests/101")
    assert ["x-evil", fixture.XSS_HEADER] in d["headers"]
    status, h, body = server.get("/api/requests/101")
    assert h["content-type"] == "application/json"


def test_invalid_utf8_is_replaced(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE requests SET path = CAST(X'2fff6f6b00' AS TEXT) WHERE id = 1")
    con.commit()
    con.close()
    s = make_server(db)
    row = [r for r in s.json("/api/requests?run=1")["rows"] if r["id"] == 1][0]
    assert row["path"] == "/\ufffdok"


# ---- store states ----

def test_missing_store_then_appears(tmp_path, make_server):
    db = str(tmp_path / "sub" / "timeglass.db")
    s = make_server(db)
    st = s.json("/api/status")
    assert st["store"]["state"] == "missing" and st["runs"] == 0 and st["latest_run"] is None
    assert "No recordings yet: run `timeglass run -- uvicorn main:app`" in st["store"]["message"]
    for path in ("/api/runs", "/api/overview", "/api/requests", "/api/endpoints"):
        err = s.json(path, expect=503)["error"]
        assert err["code"] == "store_missing" and "No recordings yet" in err["message"]
    os.makedirs(os.path.dirname(db))
    fixture.build(db)
    assert s.json("/api/status")["store"]["state"] == "ok"
    assert len(s.json("/api/runs")["runs"]) == 2


def test_empty_store_and_no_runs(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    sqlite3.connect(db).close()  # a zero-byte file: the collector is creating it
    s = make_server(db)
    assert s.json("/api/status")["store"]["state"] == "empty"
    fixture.create_store(db).close()  # schema, no runs yet
    assert s.json("/api/status")["store"]["state"] == "ok"
    assert s.json("/api/overview", expect=404)["error"]["code"] == "no_runs"
    assert s.json("/api/runs")["runs"] == []


def run_ui(args, timeout=10):
    return subprocess.run(ui_command() + args, capture_output=True, text=True, timeout=timeout)


def test_newer_schema_is_refused(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    err = s.json("/api/overview", expect=503)["error"]
    assert err["code"] == "store_newer" and "newer TimeGlass" in err["message"]
    st = s.json("/api/status")
    assert st["store"]["state"] == "newer" and st["store"]["schema"] == 99
    # at start: one line, status 2
    r = run_ui(["--db", db, "--port", "0", "--no-open"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("timeglass: ")
    assert "newer TimeGlass" in r.stderr


def test_corrupt_store_is_refused(tmp_path):
    db = str(tmp_path / "t.db")
    with open(db, "wb") as f:
        f.write(b"this is not a database at all" * 200)
    r = run_ui(["--db", db, "--port", "0", "--no-open"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("timeglass: ")
    assert "not a readable TimeGlass store" in r.stderr


@pytest.mark.parametrize("args,text", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--port", "70000"], "bad port"),
    (["--port"], "needs a value"),
    (["extra"], "unexpected argument"),
    (["--host", "evil.example"], "bad --host"),
])
def test_bad_usage(tmp_path, args, text):
    r = run_ui(["--db", str(tmp_path / "x.db"), "--no-open"] + args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("timeglass: ") and text in r.stderr


def test_port_busy(server, tmp_path):
    r = run_ui(["--db", str(tmp_path / "x.db"), "--port", str(server.port), "--no-open"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("timeglass: cannot listen")


def test_env_store_and_help(tmp_path):
    r = run_ui(["--help"])
    assert r.returncode == 0 and "--port N" in r.stdout


def test_other_host_warns(store, make_server):
    s = make_server(store, ["--host", "0.0.0.0"])
    assert "warning" in s.proc.stderr.readline()
    assert s.get("/api/status")[0] == 200
    assert s.get("/api/status", host="evil.example:%d" % s.port)[0] == 403


# ---- concurrency and live updates ----

def test_reads_while_collector_writes(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    w = sqlite3.connect(db, isolation_level=None, timeout=10)
    w.execute("PRAGMA journal_mode = WAL")
    w.execute("BEGIN IMMEDIATE")
    fixture.insert_request(w, id=200, run_id=2, start_unix_ns=T0 + 20_000 * MS, duration_ns=MS)
    t = time.time()
    assert s.json("/api/status")["max_request_id"] == 102  # the uncommitted row is not seen
    assert len(s.json("/api/requests?run=2")["rows"]) == 2
    assert time.time() - t < 2
    w.execute("COMMIT")
    assert s.json("/api/status")["max_request_id"] == 200
    assert s.json("/api/overview?run=2")["summary"]["count"] == 3  # stats extend incrementally
    w.close()


def test_overview_kept_up_to_date_equals_a_fresh_one(tmp_path, make_server):
    """The overview keeps its timeline and CPU/memory series between calls
    and adds only what was written since: after each batch it must equal
    the overview of a server that reads the store afresh, including when a
    late request starts before the first (the timeline's origin moves) and
    when the run grows long enough for wider buckets. Its query totals are
    kept the same way: SQL outside requests counts in the run's total only,
    and a request with N+1 queries written in two batches counts once."""
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    t2 = T0 + 10_000 * MS
    w = sqlite3.connect(db, isolation_level=None, timeout=10)
    w.execute("PRAGMA journal_mode = WAL")
    batches = [
        # more requests in the same buckets, and the process's first metrics
        [dict(off=30, dur=4, status=200), dict(off=900, dur=120, status=404)],
        # a request that started before the run's first one
        [dict(off=-2500, dur=2, status=503)],
        # one far later: wider buckets
        [dict(off=7200_000, dur=9, status=200)],
        # and more into the last bucket
        [dict(off=7200_500, dur=1, status=201), dict(off=7201_000, dur=30, status=500)],
    ]
    rid, k = 1000, 0
    npo_before, = w.execute("SELECT count(DISTINCT CASE WHEN n_plus_one THEN request_id END) FROM queries"
                            " WHERE run_id = 2").fetchone()
    before = s.json("/api/overview?run=2")
    assert before["summary"]["count"] == 2
    for n, batch in enumerate(batches):
        w.execute("BEGIN IMMEDIATE")
        for r in batch:
            rid += 1
            fixture.insert_request(w, id=rid, run_id=2, process_id=2, pid=5000, start_unix_ns=t2 + r["off"] * MS,
                                   duration_ns=r["dur"] * MS, status=r["status"], route="/orders", path="/orders")
        for _ in range(3):
            k += 1
            w.execute("INSERT INTO process_metrics (process_id, ts_unix_ns, cpu_user_ns, cpu_sys_ns, rss_bytes)"
                      " VALUES (2, ?, ?, 0, ?)", (t2 + k * 500 * MS, k * 100 * MS, (200 + k) * 1_000_000))
        # Queries: N+1 ones of this batch's first request and of request
        # 1001 again (written in every batch), and one outside requests.
        for req, npo in ((1001, 1), (rid - len(batch) + 1, 1), (rid, 0), (None, 0)):
            w.execute("INSERT INTO queries (run_id, request_id, process_id, pid, start_unix_ns, duration_ns,"
                      " db_system, tap, sql, fingerprint, n_plus_one) VALUES (2, ?, 2, 5000, ?, ?, 'sqlite',"
                      " 'sqlite3', 'SELECT 1', 'select ?', ?)", (req, t2 + n * MS, (n + 1) * 250_000, npo))
        w.execute("COMMIT")
        kept = s.json("/api/overview?run=2")
        fresh = make_server(db).json("/api/overview?run=2")
        assert kept == fresh, "batch %d" % n
        assert kept["summary"]["count"] == 2 + sum(len(b) for b in batches[:n + 1])
        assert len(kept["processes"][0]["series"]["t"]) > 0
        count, in_req, npo_reqs = w.execute(
            "SELECT count(*), count(request_id), count(DISTINCT CASE WHEN n_plus_one THEN request_id END)"
            " FROM queries WHERE run_id = 2").fetchone()
        assert (kept["queries"]["count"], kept["queries"]["in_requests"],
                kept["queries"]["n_plus_one_requests"]) == (count, in_req, npo_reqs), "batch %d" % n
        assert npo_reqs == npo_before + 1 + n, "request 1001 counts once, then one more per batch"
        # The endpoints table keeps its SQL figures the same way.
        kept_eps = s.json("/api/endpoints?run=2")
        assert kept_eps == make_server(db).json("/api/endpoints?run=2"), "batch %d" % n
        orders, = [e for e in kept_eps["endpoints"] if (e["method"], e["route"]) == ("GET", "/orders")]
        assert (orders["queries"], orders["n_plus_one"]) == w.execute(
            "SELECT count(*), count(DISTINCT CASE WHEN q.n_plus_one THEN r.id END) FROM queries q"
            " JOIN requests r ON r.id = q.request_id WHERE r.run_id = 2 AND r.method = 'GET' AND r.route = '/orders'"
        ).fetchone()
        assert orders["n_plus_one"] >= 1 + n
    assert kept["timeline"]["bucket_s"] > before["timeline"]["bucket_s"]
    w.close()


def read_events(port, n, timeout=6):
    """The first n "state" events of /api/events."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n" % port)
    buf, events = b"", []
    deadline = time.time() + timeout
    while len(events) < n and time.time() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))
    sock.close()
    return buf, events


def test_events_stream(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    result = {}

    def reader():
        result["events"] = read_events(s.port, 2)[1]
    th = threading.Thread(target=reader)
    th.start()
    time.sleep(0.8)
    w = sqlite3.connect(db)
    fixture.insert_request(w, id=300, run_id=2, start_unix_ns=T0 + 20_000 * MS, duration_ns=MS)
    w.commit()
    w.close()
    th.join()
    ev = result["events"]
    assert ev[0] == {"state": "ok", "runs": 2, "latest_run": 2, "live": True, "max_request_id": 102}
    assert ev[1]["max_request_id"] == 300


def test_events_headers(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % server.port)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    sock.close()
    head = data.split(b"\r\n\r\n")[0].decode().lower()
    assert "content-type: text/event-stream" in head and "content-security-policy" in head


# ---- SQL queries, outbound calls and flame graphs ----

def test_request_queries(server):
    d = server.json("/api/requests/9/queries")
    assert d["request"] == 9 and d["available"] is True
    rows = d["rows"]
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["start_offset_ms"] for r in rows] == [1.0, 3.5, 4.0, 4.5, 5.5]
    assert [r["duration_ns"] for r in rows] == [2 * MS, 500_000, 500_000, 500_000, MS]
    assert [r["n_plus_one"] for r in rows] == [False, True, True, True, False]
    assert [r["duplicate"] for r in rows] == [False, False, False, False, True]
    first = rows[0]
    assert first == {
        "id": 1, "start_unix_ns": str(T0 + 801 * MS), "start_offset_ms": 1.0, "duration_ms": 2.0, "duration_ns": 2 * MS,
        "db_system": "postgresql", "tap": "libpq", "database": "shop", "sql": "SELECT * FROM items WHERE id = 4",
        "sql_truncated": False, "fingerprint": fixture.Q_ITEM, "rows": 1, "error": None,
        "call_site": "app/main.py:21 get_item", "duplicate": False, "n_plus_one": False, "kind": "app",
        "executions": 1}
    s = d["summary"]
    assert s["count"] == 5 and s["total_ns"] == 4_500_000 and s["total_ms"] == 4.5
    assert s["duplicates"] == 1 and s["n_plus_one_queries"] == 3 and s["housekeeping"] == 0
    assert s["n_plus_one"] == [{"fingerprint": fixture.Q_TAGS, "count": 3, "total_ms": 1.5, "total_ns": 1_500_000}]


def test_request_queries_housekeeping_and_batch(server):
    d = server.json("/api/requests/102/queries")
    rows = d["rows"]
    assert [(r["sql"], r["kind"], r["executions"], r["rows"]) for r in rows] == [
        ("BEGIN", "housekeeping", 1, None),
        ("INSERT INTO orders (item_id, qty) VALUES (1, 2)", "app", 500, 500),
        ("COMMIT", "housekeeping", 1, None)]
    assert not any(r["n_plus_one"] or r["duplicate"] for r in rows)
    s = d["summary"]
    assert s["count"] == 3 and s["housekeeping"] == 2 and s["n_plus_one"] == []


def test_request_queries_of_schema_3_store(tmp_path, make_server):
    """A store written before queries had a kind: every query is the app's,
    run once."""
    db = str(tmp_path / "v3.db")
    fixture.build(db, schema=3)
    d = make_server(db).json("/api/requests/9/queries")
    assert [(r["kind"], r["executions"]) for r in d["rows"]] == [("app", 1)] * 5
    assert d["summary"]["housekeeping"] == 0


def test_request_queries_error_and_none(server):
    d = server.json("/api/requests/5/queries")
    assert len(d["rows"]) == 1 and d["rows"][0]["error"].startswith("duplicate key") and d["rows"][0]["rows"] is None
    d = server.json("/api/requests/6/queries")
    assert d["rows"] == [] and d["summary"]["count"] == 0 and d["summary"]["n_plus_one"] == []
    assert server.json("/api/requests/9999/queries", expect=404)["error"]["code"] == "not_found"
    assert server.json("/api/requests/9/nope", expect=404)["error"]["code"] == "not_found"


def test_request_spans(server):
    d = server.json("/api/requests/9/spans")
    assert d["available"] is True and len(d["rows"]) == 1
    sp = d["rows"][0]
    assert sp["start_offset_ms"] == 6.0 and sp["duration_ns"] == 2 * MS and sp["status"] == 200
    assert (sp["method"], sp["host"], sp["path"], sp["tls"]) == ("GET", "prices.example.com", "/v1/prices/4", True)
    assert server.json("/api/requests/1/spans")["rows"] == []


def test_request_detail_counts(server):
    d = server.json("/api/requests/9")
    assert d["queries"] == {"available": True, "count": 5, "total_ms": 4.5, "total_ns": 4_500_000}
    assert d["spans"]["count"] == 1 and d["samples"] == {"available": True, "count": 14}


def tree_sum_ok(node):
    """Each node's value is at least the sum of its children's."""
    kids = sum(c["value"] for c in node["children"])
    return node["value"] >= kids and all(tree_sum_ok(c) for c in node["children"])


def flat(node, depth=0):
    yield depth, node["name"], node["value"]
    for c in node["children"]:
        yield from flat(c, depth + 1)


def test_flame_request(server):
    d = server.json("/api/flame?request=9")
    assert d["available"] is True and d["total"] == 14 and d["running"] == 11 and d["waiting"] == 3
    assert d["total"] == sum(c for rid, _, _, c in fixture.SAMPLES if rid == 9)
    t = d["tree"]
    assert t["name"] == "all" and t["value"] == 14 and tree_sum_ok(t)
    assert list(flat(t)) == [
        (0, "all", 14), (1, "run", 14), (2, "get_item", 14), (3, "load_item", 8), (4, "execute", 8),
        (5, "(waiting)", 3), (3, "render", 4), (4, "dumps", 4)]
    run = t["children"][0]
    assert (run["file"], run["line"]) == ("uvicorn/server.py", 61)
    assert d["nodes"] == 8 and d["capped"] is False
    # one state: no "(waiting)" leaf
    d = server.json("/api/flame?request=9&state=waiting")
    assert d["total"] == 3 and list(flat(d["tree"]))[-1] == (4, "execute", 3)
    assert server.json("/api/flame?request=9&state=running")["total"] == 11


def test_flame_route(server):
    d = server.json("/api/flame?route=%s&run=1" % q("GET /items/{item_id}"))
    assert d["route"] == "GET /items/{item_id}" and d["run"] == 1
    assert d["total"] == 20  # request 9 (14) and request 1 (6); not the sample outside requests
    names = {n: v for _, n, v in flat(d["tree"])}
    assert names["load_item"] == 14 and names["get_item"] == 20
    assert server.json("/api/flame?route=%s&run=1" % q("GET /health"))["total"] == 0
    assert server.json("/api/flame?request=1")["total"] == 6


def side_samples(run, route=None):
    """Sample count of a route in a run of the fixture, or of the whole run."""
    reqs = {i + 1: (m, r or p) for i, (_, m, p, r, *_rest) in enumerate(fixture.RUN1)}
    if route is None:
        return sum(c for *_, c in fixture.SAMPLES) if run == 1 else 0
    return sum(c for rid, _, _, c in fixture.SAMPLES if rid and " ".join(reqs[rid]) == route)


def diff_flat(node, depth=0):
    yield depth, node["name"], node["value_a"], node["value_b"]
    for c in node["children"]:
        yield from diff_flat(c, depth + 1)


def test_flame_diff_routes(server):
    a, b = "GET /items/{item_id}", "POST /items"
    d = server.json("/api/flame/diff?a_route=%s&a_run=1&b_route=%s&b_run=1" % (q(a), q(b)))
    assert d["available"] is True and d["a"] == {"route": a, "run": 1} and d["b"] == {"route": b, "run": 1}
    assert d["total_a"] == side_samples(1, a) == 20 and d["total_b"] == side_samples(1, b) == 7
    assert (d["running_a"], d["waiting_a"], d["running_b"], d["waiting_b"]) == (17, 3, 5, 2)
    t = d["tree"]
    assert (t["name"], t["value_a"], t["value_b"]) == ("all", 20, 7) and "value" not in t

    def sums_ok(n):
        return all(sum(c[k] for c in n["children"]) <= n[k] for k in ("value_a", "value_b")) and \
            all(sums_ok(c) for c in n["children"])
    assert sums_ok(t)
    nodes = {(depth, name): (va, vb) for depth, name, va, vb in diff_flat(t)}
    assert nodes[(2, "get_item")] == (20, 7)
    assert nodes[(3, "load_item")] == (14, 0)
    assert nodes[(5, "(waiting)")] == (3, 0) and nodes[(3, "(waiting)")] == (0, 2)
    assert nodes[(3, "render")] == (4, 5) and nodes[(4, "dumps")] == (4, 5)
    # heaviest (both sides together) first
    assert [c["name"] for c in t["children"][0]["children"][0]["children"]][:2] == ["load_item", "render"]
    # one state
    d = server.json("/api/flame/diff?a_route=%s&a_run=1&b_route=%s&b_run=1&state=running" % (q(a), q(b)))
    assert (d["total_a"], d["total_b"]) == (17, 5)


def test_flame_diff_whole_run(server):
    d = server.json("/api/flame/diff?a_run=1&b_route=%s&b_run=1" % q("POST /items"))
    assert d["a"] == {"route": None, "run": 1}
    assert d["total_a"] == side_samples(1) == sum(c for *_, c in fixture.SAMPLES) and d["total_b"] == 7
    assert d["tree"]["value_a"] == d["total_a"]
    # run 2 has no samples; no run = the newest (2)
    d = server.json("/api/flame/diff?a_run=1&b_run=2")
    assert (d["total_a"], d["total_b"]) == (side_samples(1), 0)
    assert server.json("/api/flame/diff")["b"] == {"route": None, "run": 2}


# Refused queries of the flame endpoints: path -> [(query or None, error code, status)]
BAD_FLAME_QUERIES = {
    "/api/flame/diff": [
        ("a_run=x", "bad_param", 400),
        ("b_route=nospace", "bad_param", 400),
        ("a_run=1&b_run=99", "no_such_run", 404),
        ("a_run=1&state=sleeping", "bad_param", 400),
    ],
    "/api/flame/other": [(None, "not_found", 404)],
    "/api/flame": [
        ("", "bad_param", 400),
        ("request=x", "bad_param", 400),
        ("request=1&route=GET%20/x", "bad_param", 400),
        ("route=nospace", "bad_param", 400),
        ("request=1&state=sleeping", "bad_param", 400),
        ("request=9999", "not_found", 404),
        ("route=GET%20/x&run=99", "no_such_run", 404),
    ],
}


@pytest.mark.parametrize("path,code,status", [(path if query is None else "%s?%s" % (path, query), code, status)
                                              for path, rows in BAD_FLAME_QUERIES.items()
                                              for query, code, status in rows])
def test_flame_bad_params(server, path, code, status):
    assert server.json(path, expect=status)["error"]["code"] == code


def test_endpoints_sql_figures(server):
    eps = {(e["method"], e["route"]): e for e in server.json("/api/endpoints?run=1")["endpoints"]}
    items = eps[("GET", "/items/{item_id}")]
    # 6 queries over 6 requests; 4.8 ms of SQL in 36 ms of requests; request 9 has an N+1
    assert items["queries"] == 6 and items["queries_per_request"] == 1.0
    assert items["db_ns"] == 4_800_000 and items["db_ms_share"] == pytest.approx(4.8 / 36)
    assert items["n_plus_one"] == 1
    post = eps[("POST", "/items")]
    assert post["queries_per_request"] == 0.5 and post["db_ms_share"] == pytest.approx(1 / 9) and post["n_plus_one"] == 0
    health = eps[("GET", "/health")]
    assert (health["queries"], health["queries_per_request"], health["db_ms_share"], health["n_plus_one"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("sort,dir,order", [
    # queries per request: items 1.0, POST /items 0.5, the rest 0 (ties by name)
    ("queries", "desc", [("GET", "/items/{item_id}"), ("POST", "/items")]),
    # share of time in SQL: items 4.8/36, POST 1/9
    ("db", "desc", [("GET", "/items/{item_id}"), ("POST", "/items")]),
    ("db", "asc", [("GET", "/favicon.ico"), ("GET", "/health")]),
    ("n_plus_one", "desc", [("GET", "/items/{item_id}")]),
])
def test_endpoints_sort_by_sql_figures(server, sort, dir, order):
    eps = server.json("/api/endpoints?run=1&sort=%s&dir=%s" % (sort, dir))["endpoints"]
    assert [(e["method"], e["route"]) for e in eps[:len(order)]] == order
    if dir == "asc":
        assert (eps[-1]["method"], eps[-1]["route"]) == ("GET", "/items/{item_id}")


def test_older_store_says_not_captured(tmp_path, make_server):
    db = str(tmp_path / "old.db")
    fixture.build(db, schema=1)
    s = make_server(db)
    assert s.json("/api/status")["capabilities"] == {"queries": False, "samples": False}
    ov = s.json("/api/overview?run=1")
    assert ov["queries"] == {"available": False} and ov["samples"] == {"available": False}
    d = s.json("/api/requests/9")
    assert d["queries"] == {"available": False} and d["spans"] == {"available": False}
    assert d["samples"] == {"available": False}
    assert s.json("/api/requests/9/queries") == {"request": 9, "available": False}
    assert s.json("/api/requests/9/spans") == {"request": 9, "available": False}
    assert s.json("/api/flame?request=9") == {"request": 9, "state": "all", "available": False}
    assert "queries_per_request" not in s.json("/api/endpoints?run=1")["endpoints"][0]


def test_flame_node_cap(tmp_path, make_server):
    db = str(tmp_path / "wide.db")
    fixture.build(db)
    w = sqlite3.connect(db)
    # 6000 distinct leaves under one frame: the lightest go to "(other)"
    w.executemany("INSERT INTO frames (id, kind, name, file, line) VALUES (?, 'python', ?, 'wide.py', ?)",
                  [(1000 + i, "leaf_%d" % i, i) for i in range(6000)])
    w.executemany("INSERT INTO stacks (id, hash, frames) VALUES (?, ?, ?)",
                  [(1000 + i, 50000 + i, "1,%d" % (1000 + i)) for i in range(6000)])
    w.executemany("INSERT INTO samples (run_id, request_id, process_id, stack_id, state, count) VALUES (1, 3, 1, ?, 'running', ?)",
                  [(1000 + i, 1 + (i % 3)) for i in range(6000)])
    w.commit()
    w.close()
    d = make_server(db).json("/api/flame?request=3")
    expect = sum(1 + (i % 3) for i in range(6000))
    assert d["total"] == expect and d["tree"]["value"] == expect and d["capped"] is True
    assert d["nodes"] <= 5002
    run = d["tree"]["children"][0]
    assert run["value"] == expect and tree_sum_ok(d["tree"])
    other = [c for c in run["children"] if c["name"] == "(other)"]
    assert len(other) == 1 and other[0]["value"] > 0
    assert sum(c["value"] for c in run["children"]) == expect


def test_xss_sql_is_plain_json(server):
    d = server.json("/api/requests/101/queries")
    assert d["rows"][0]["sql"] == fixture.XSS_SQL


# ---- losses: one definition in every view ----

def timeglass_cli():
    for build in ("build", "build-ui"):
        exe = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), build,
                           "cli", "timeglass")
        if os.access(exe, os.X_OK):
            return exe
    pytest.skip("no build/cli/timeglass")


def test_losses_agree_across_views(server, store, tmp_path):
    """Run 1 lost 7 records on a full ring; its sampler also lowered its rate
    under the CPU budget (1000 ticks not taken) and dropped 4 samples on a
    race. Every view counts 7 lost events, and shows the sampling apart, as
    information: the dashboard's overview, runs and score, and `timeglass
    runs`, `requests`, `score` and `ci`."""
    tg = timeglass_cli()

    def cli(*args):
        proc = subprocess.run([tg, *args, "--db", store], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, NO_COLOR="1"), cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        return proc

    totals = {"lost_events": 7, "samples_dropped": 4, "sample_ticks_skipped": 1000}
    lost_text = "7 events lost (ring full): requests, queries, calls or samples may be missing"
    sampling_text = ("sampling rate lowered under the CPU budget (1000 sampler ticks not taken); 4 stack samples"
                     " dropped (stack changed while read); flame graphs have fewer samples")

    # the dashboard
    ov = server.json("/api/overview?run=1")
    rec = ov["recording"]
    assert {k: rec[k] for k in totals} == totals
    assert rec["text"] == lost_text and rec["sampling_text"] == sampling_text
    assert {l["kind"]: l["class"] for l in ov["losses"]} == {
        "ring_full": "loss", "py_sample_budget": "sampling", "py_sample_race": "sampling"}
    budget = next(l for l in ov["losses"] if l["kind"] == "py_sample_budget")
    assert "CPU budget" in budget["description"] and "not a loss" in budget["description"]
    run1 = next(r for r in server.json("/api/runs")["runs"] if r["id"] == 1)
    assert {k: run1[k] for k in totals} == totals
    assert {k: ov["run"][k] for k in totals} == totals
    api_score = server.json("/api/score?run=1")
    assert api_score["losses"] == rec

    # the command line
    runs = [json.loads(line) for line in cli("runs", "--json").stdout.splitlines()]
    r1 = next(r for r in runs if r["id"] == 1)
    assert {k: r1[k] for k in totals} == totals
    table = cli("runs").stdout
    assert re.search(r"^ID +STARTED +DURATION +REQUESTS +EXIT +LOST +COMMAND$", table, re.M), table
    # id, started (date and time), duration, requests, exit status, LOST, command
    assert re.search(r"^1 +\S+ \S+ +[\d.]+ \w+ +12 +0 +7 uvicorn main:app$", table, re.M), table
    warning = cli("requests", "--run", "1").stderr
    assert warning == "timeglass: warning: run 1 lost 7 events (ring full); some requests are missing\n"
    score = json.loads(cli("score", "--run", "1", "--json").stdout)
    assert score["losses"] == rec
    text = cli("score", "--run", "1").stdout
    assert "Recording: %s\nSampling: %s" % (lost_text, sampling_text) in text
    ci = cli("ci", "--run", "1", "--budget", "/dev/null", "--json", "-")
    report = json.loads(ci.stdout)
    assert report["losses"] == rec
    assert "Recording: %s\nSampling: %s" % (lost_text, sampling_text) in ci.stderr
    md = tmp_path / "r.md"
    cli("ci", "--run", "1", "--budget", "/dev/null", "--markdown", str(md))
    assert "- Recording: %s." % lost_text in md.read_text()

    # the same store without the ring loss: sampling alone is no loss anywhere
    clean = str(tmp_path / "clean.db")
    src = sqlite3.connect(store)
    dst = sqlite3.connect(clean)
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM losses WHERE kind = 'ring_full'")
    dst.commit()
    dst.close()
    s2 = Server(clean)
    try:
        ov2 = s2.json("/api/overview?run=1")
    finally:
        s2.stop()
    assert ov2["recording"]["lost_events"] == 0 and ov2["recording"]["text"] == "no data lost"
    assert ov2["recording"]["sampling_text"].endswith("flame graphs have fewer samples, nothing else is missing")
    for args in (("runs", "--json"),):
        r1 = next(json.loads(line) for line in subprocess.run(
            [tg, *args, "--db", clean], capture_output=True, text=True, check=True).stdout.splitlines()
            if json.loads(line)["id"] == 1)
        assert r1["lost_events"] == 0 and r1["sample_ticks_skipped"] == 1000
    proc = subprocess.run([tg, "requests", "--run", "1", "--db", clean], capture_output=True, text=True, check=True)
    assert proc.stderr == ""
    out = subprocess.run([tg, "score", "--run", "1", "--db", clean], capture_output=True, text=True, check=True,
                         cwd=str(tmp_path)).stdout
    assert "Recording: no data lost\n" in out
