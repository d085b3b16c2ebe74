"""timeglass export: a recorded run as a Chrome trace and as speedscope."""

import json
import sqlite3
import urllib.request

from tgtest import run_cli


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.status, r.read()


def test_chrome_trace_has_every_request_and_query(traced, tmp_path):
    with traced() as server:
        for i in range(5):
            assert get(server.port, "/items/%d?q=x" % i)[0] == 200
        assert get(server.port, "/notes")[0] == 200  # runs sqlite3 queries
    rows = server.requests()
    assert len(rows) == 6
    out = tmp_path / "trace.json"
    run_cli("export", "--db", server.db, "--format", "chrome-trace", "-o", out)
    doc = json.loads(out.read_text())
    events = doc["traceEvents"]
    reqs = [e for e in events if e.get("cat") == "request"]
    assert sorted(e["args"]["request_id"] for e in reqs) == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    for e in reqs:
        r = by_id[e["args"]["request_id"]]
        assert e["ph"] == "X" and e["pid"] == r["pid"] and e["tid"] == r["tid"]
        assert abs(e["dur"] * 1000 - r["duration_ns"]) < 1000  # microseconds, exact to the ns
        assert e["args"]["path"] == r["path"] and e["args"]["status"] == r["status"]
    assert {e["name"] for e in reqs} >= {"GET /items/{item_id}", "GET /notes"}
    notes = next(r for r in rows if r["path"] == "/notes")
    sql = [e for e in events if e.get("cat") == "sql" and e["args"]["request_id"] == notes["id"]]
    assert sql and all("SELECT" in e["args"]["sql"].upper() or e["args"]["sql"] for e in sql)
    # Every query of the run, those outside any request (the app's
    # start-up) too, in start order.
    with sqlite3.connect(server.db) as conn:
        stored = conn.execute("SELECT request_id, sql FROM queries ORDER BY start_unix_ns, id").fetchall()
    assert any(rid is None for rid, _ in stored)
    exported = [e for e in events if e.get("cat") == "sql"]
    assert [(e["args"]["request_id"], e["args"]["sql"]) for e in exported] == stored
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in events)

    one = tmp_path / "one.json"
    run_cli("export", "--db", server.db, "--request", notes["id"], "-o", one)
    only = [e for e in json.loads(one.read_text())["traceEvents"] if e.get("cat") == "request"]
    assert [e["args"]["request_id"] for e in only] == [notes["id"]]


def test_speedscope_and_bad_format(traced, tmp_path):
    with traced() as server:
        for _ in range(3):
            assert get(server.port, "/sync")[0] == 200
    out = tmp_path / "s.json"
    run_cli("export", "--db", server.db, "--format", "speedscope", "-o", out)
    doc = json.loads(out.read_text())
    assert doc["$schema"].endswith("file-format-schema.json") and doc["profiles"]
    bad = run_cli("export", "--db", server.db, "--format", "pprof-ish", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("timeglass: ") and bad.stderr.count("\n") == 1
