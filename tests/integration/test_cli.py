"""The command line: version, runs listing, and bad usage (exit 2, one line on stderr)."""

import json
import shutil
import sqlite3

import pytest

from rawhttp import build_request, exchange
from tgtest import PYTHON, read_requests, run_cli


def test_version(timeglass_bin):
    proc = run_cli("--version")
    assert proc.stdout.strip() == "timeglass 0.1.0"


def assert_usage_error(*args):
    proc = run_cli(*args, check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, "timeglass %s exited %d, expected 2\n%s" % (args, proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("timeglass: "), "stderr: %r" % proc.stderr
    return lines[0]


def test_bad_usage(timeglass_bin, tmp_path):
    missing = tmp_path / "missing.db"
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an SQLite database\n" * 100)
    assert_usage_error("--no-such-option")
    assert_usage_error("no-such-command")
    assert_usage_error("run")
    assert_usage_error("run", "--db", str(tmp_path / "x.db"))
    assert_usage_error("run", "--db", str(tmp_path / "x.db"), "--")
    assert_usage_error("run", "--bogus", "--", PYTHON, "-c", "pass")
    assert_usage_error("run", "--keep-runs", "not-a-number", "--", PYTHON, "-c", "pass")
    assert_usage_error("run", "--sample-mode", "sometimes", "--", PYTHON, "-c", "pass")
    assert_usage_error("flame", "--db", str(missing), "--all", "--format", "table")
    assert_usage_error("requests", "--db", str(missing))
    assert not missing.exists(), "reading must not create a store"
    assert_usage_error("requests", "--db", str(corrupt))
    assert_usage_error("runs", "--db", str(corrupt), "--json")
    assert_usage_error("requests", "--db", str(missing), "--limit", "x")
    assert_usage_error("requests", "--unknown-flag")


def test_newer_schema_is_refused(traced, tmp_path):
    with traced() as server:
        exchange(server.port, build_request("GET", "/"))
    newer = tmp_path / "newer.db"
    shutil.copy(server.db, newer)
    db = sqlite3.connect(str(newer))
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        db.close()
        pytest.fail("the store's schema version is not in PRAGMA user_version; update this test")
    db.execute("PRAGMA user_version = %d" % (version + 100))
    db.commit()
    db.close()
    line = assert_usage_error("requests", "--db", str(newer))
    assert "newer" in line or "version" in line, line


def test_runs_and_run_selection(traced, store):
    counts = [3, 5]
    for n in counts:
        with traced(db=store) as server:
            for i in range(n):
                assert exchange(server.port, build_request("GET", "/items/%d" % i))[0].status == 200
    proc = run_cli("runs", "--db", store, "--json")
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(runs) == 2, proc.stdout
    ids = sorted(r["id"] for r in runs)
    latest, _ = read_requests(store)
    assert len(latest) == counts[-1]
    assert {r["run_id"] for r in latest} == {ids[-1]}
    first, _ = read_requests(store, run=ids[0])
    assert len(first) == counts[0] and {r["run_id"] for r in first} == {ids[0]}
    limited = run_cli("requests", "--db", store, "--json", "--limit", "2").stdout.splitlines()
    assert len(limited) == 2
    human = run_cli("requests", "--db", store).stdout
    assert "/items/4" in human, human
    human_runs = run_cli("runs", "--db", store).stdout
    assert human_runs.strip(), "`timeglass runs` prints the runs"


SHOP_APP = '''
"""A small shop API: an items router under /api whose endpoint gets its
database session from a dependency, and a route that can fail."""
import sqlite3

from fastapi import APIRouter, Depends, FastAPI

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
DB.executemany("INSERT INTO items (id, name) VALUES (?, ?)", [(i, "item%d" % i) for i in range(1, 6)])
DB.commit()


def get_db():
    yield DB


router = APIRouter(prefix="/api")


@router.get("/items/{item_id}")
def read_item(item_id: int, db=Depends(get_db)):
    row = db.execute("SELECT id, name FROM items WHERE id = ?", (item_id,)).fetchone()
    checksum = sum(i * i for i in range(300000))  # some CPU for the sampler to see
    return {"id": row[0], "name": row[1], "checksum": checksum}


@router.get("/ratio/{a}/{b}")
def ratio(a: int, b: int):
    return {"ratio": a / b}


app = FastAPI()
app.include_router(router)
'''

# `timeglass requests --json` fields before the exception type was added: a contract.
REQUEST_FIELDS = {"id", "run_id", "process_id", "pid", "tid", "conn_id", "start_unix_ns", "duration_ns", "req_end_ns",
                  "resp_start_ns", "method", "path", "query_string", "route", "http_version", "status",
                  "request_bytes", "response_bytes", "client_addr", "error", "flags", "headers", "transport",
                  "exception", "queries", "http_calls"}


def test_flame_route_names_what_was_recorded(traced, tmp_path):
    """`flame --route` with a raw path or an unknown route exits 2 and says
    which recorded routes match (or which there are) instead of printing 0
    samples; `requests` shows each request's route and the type of the
    exception behind a 500."""
    import urllib.error
    import urllib.request

    from tgtest import free_port, timeglass_env

    (tmp_path / "shop.py").write_text(SHOP_APP)
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "shop:app", "--app-dir", str(tmp_path), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    # The sampler's CPU budget off: with the sanitized library a tick costs
    # more than 5% of a core, and the budget then skipped the ticks in which
    # read_item ran (py_sample_budget losses), leaving nothing to flame.
    env = timeglass_env({"TIMEGLASS_SAMPLE_BUDGET": "0"})
    with traced(argv=argv, port=port, env=env) as server:
        for item in (5, 5, 2):
            with urllib.request.urlopen("http://127.0.0.1:%d/api/items/%d" % (port, item), timeout=10) as r:
                assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen("http://127.0.0.1:%d/api/ratio/1/0" % port, timeout=10)
        assert err.value.code == 500
    db = server.db

    def flame_error(route):
        proc = run_cli("flame", "--db", db, "--route", route, "--format", "top", check=False)
        assert proc.returncode == 2 and proc.stdout == "", proc
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        return lines[0]

    assert flame_error("GET /api/items/5") == (
        "timeglass: no route 'GET /api/items/5' was recorded in run 1; its path matches: "
        "GET /api/items/{item_id} (3 requests, 2 with this path)")
    assert flame_error("GET /api/items/7") == (  # never requested: the template matches
        "timeglass: no route 'GET /api/items/7' was recorded in run 1; its path matches: "
        "GET /api/items/{item_id} (3 requests)")
    assert flame_error("GET /api/orders") == (
        "timeglass: no route 'GET /api/orders' was recorded in run 1, nor one that matches it; recorded routes: "
        "GET /api/items/{item_id} (3 requests), GET /api/ratio/{a}/{b} (1 request)")
    line = flame_error("/api/ratio/3/4")  # no method: a usage error, with the matches
    assert "recorded routes matching '/api/ratio/3/4': GET /api/ratio/{a}/{b} (1 request)" in line, line
    assert ("Exit status: 0; 2 for bad usage, an unusable store, or a run, request or\nroute that was not recorded"
            in run_cli("flame", "--help").stdout)

    top = run_cli("flame", "--db", db, "--route", "GET /api/items/{item_id}", "--format", "top")
    samples = int(top.stdout.splitlines()[-1].split()[0])
    assert samples > 0 and "read_item" in top.stdout, top.stdout

    table = run_cli("requests", "--db", db).stdout.splitlines()
    assert table[0].split() == ["ID", "TIME", "PID", "METHOD", "PATH", "ROUTE", "STATUS", "DURATION", "IN", "OUT",
                                "ERROR"]
    rows = [line.split() for line in table[1:]]
    assert [(r[4], r[5], r[6]) for r in rows] == [
        ("/api/items/5", "/api/items/{item_id}", "200"), ("/api/items/5", "/api/items/{item_id}", "200"),
        ("/api/items/2", "/api/items/{item_id}", "200"), ("/api/ratio/1/0", "/api/ratio/{a}/{b}", "500")]
    # DURATION takes two fields ("1.20 ms"); ERROR is empty but on the 500
    assert rows[3][-1] == "ZeroDivisionError" and len(rows[3]) == 12 and all(len(r) == 11 for r in rows[:3])

    recs, _ = read_requests(db)
    assert all(set(r) >= REQUEST_FIELDS for r in recs)
    assert [r["exception_type"] for r in recs] == [None, None, None, "ZeroDivisionError"]
    assert recs[3]["exception"].startswith("ZeroDivisionError: division by zero")
