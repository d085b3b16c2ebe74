"""End to end under `timeglass run`: the preload library records requests
from the wire and the Python side only names them (route template,
exception). Needs build/cli/timeglass and build/preload/libtimeglass.so.

`timeglass run` does not put the bootstrap on PYTHONPATH by itself yet, so
these tests set PYTHONPATH=python/timeglass/bootstrap:python the way it will.
"""

import json
import sqlite3
import subprocess

import httpx
import pytest

from tgpy import PYTHON, TIMEGLASS, child_env, require_c_build, uvicorn_args


@pytest.fixture(autouse=True)
def built():
    require_c_build()


def run_env(bootstrap=True, **extra):
    return child_env(extra, bootstrap=bootstrap)


def timeglass_prefix(db):
    return [str(TIMEGLASS), "run", "--db", str(db), "--quiet", "--"]


def requests_of(db):
    proc = subprocess.run([str(TIMEGLASS), "requests", "--db", str(db), "--json", "--limit", "100000"],
                          capture_output=True, text=True, timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return sorted(rows, key=lambda r: (r["start_unix_ns"], r["id"]))


def is_phantom(row):
    """A row for bytes that were never an HTTP request.

    Known collector/preload issue, independent of the Python side: after a
    client closes a non-keep-alive connection, a 1-byte "malformed HTTP
    request" sometimes appears on that connection. test_no_phantom_rows
    tracks it; the other tests look past it.
    """
    return row["method"] is None and row["error"] == "malformed HTTP request"


def no_keepalive(url):
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def drive(server, app, env, db):
    with server(uvicorn_args(app), env, prefix=timeglass_prefix(db)) as s:
        with no_keepalive(s.url) as c:
            assert c.get("/items/1").status_code == 200
            assert c.get("/items/2").status_code == 200
            assert c.get("/boom" if app.startswith("app_plain") else "/boom/x").status_code == 500
    assert s.proc.returncode == 0, s.output()
    rows = requests_of(db)
    return rows, s


def require_marks(rows):
    assert any(r["route"] is not None for r in rows), rows


def test_bootstrap_names_requests_of_an_app_without_middleware(server, tmp_path):
    db = tmp_path / "run.db"
    rows, s = drive(server, "app_plain:app", run_env(), db)
    assert [(r["method"], r["path"], r["status"], r["transport"]) for r in rows] == [
        ("GET", "/items/1", 200, "http"), ("GET", "/items/2", 200, "http"),
        ("GET", "/boom", 500, "http")]
    require_marks(rows)
    assert [r["route"] for r in rows] == ["/items/{item_id}", "/items/{item_id}", "/boom"]
    assert rows[2]["exception"].startswith("RuntimeError: plain boom\n")
    assert not (tmp_path / ".timeglass").exists()


def test_middleware_and_bootstrap_give_one_row_per_request(server, tmp_path):
    db = tmp_path / "run.db"
    rows, s = drive(server, "app_with_middleware:app", run_env(), db)
    assert [r["path"] for r in rows] == ["/items/1", "/items/2", "/boom/x"]
    require_marks(rows)
    assert [r["route"] for r in rows] == ["/items/{item_id}", "/items/{item_id}", "/boom/{kind}"]
    assert rows[2]["exception"].startswith("ValueError: boom: x\n")
    assert rows[2]["exception"].count("Traceback") == 1
    # The middleware did not write a store of its own.
    assert not (tmp_path / ".timeglass").exists()
    conn = sqlite3.connect(str(db))
    assert [r[0] for r in conn.execute("SELECT source FROM runs")] == ["run"]
    conn.close()


def test_middleware_alone_marks_without_bootstrap(server, tmp_path):
    db = tmp_path / "run.db"
    rows, s = drive(server, "app_with_middleware:app", run_env(bootstrap=False), db)
    assert [r["path"] for r in rows] == ["/items/1", "/items/2", "/boom/x"]
    require_marks(rows)
    assert [r["route"] for r in rows] == ["/items/{item_id}", "/items/{item_id}", "/boom/{kind}"]
    assert not (tmp_path / ".timeglass").exists()


def test_no_bootstrap_env_turns_marks_off(server, tmp_path):
    db = tmp_path / "run.db"
    rows, s = drive(server, "app_plain:app", run_env(TIMEGLASS_NO_BOOTSTRAP="1"), db)
    assert [r["path"] for r in rows] == ["/items/1", "/items/2", "/boom"]
    assert [r["route"] for r in rows] == [None, None, None]


def record_testclient(tmp_path, env):
    """Runs GET /items/5?x=1 and GET /boom of app_plain through Starlette's
    TestClient under `timeglass run` (env: the script's environment); returns
    the rows recorded."""
    script = tmp_path / "client.py"
    script.write_text(
        "from fastapi.testclient import TestClient\n"
        "import app_plain\n"
        "c = TestClient(app_plain.app, raise_server_exceptions=False)\n"
        "assert c.get('/items/5?x=1').status_code == 200\n"
        "assert c.get('/boom').status_code == 500\n")
    db = tmp_path / "run.db"
    proc = subprocess.run(timeglass_prefix(db) + [PYTHON, str(script)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    return requests_of(db)


def test_testclient_requests_are_recorded_in_process(tmp_path):
    rows = record_testclient(tmp_path, run_env())
    assert [(r["method"], r["path"], r["query_string"], r["status"], r["transport"]) for r in rows] == [
        ("GET", "/items/5", "x=1", 200, "asgi"), ("GET", "/boom", None, 500, "asgi")]
    assert [r["route"] for r in rows] == ["/items/{item_id}", "/boom"]
    assert rows[1]["exception"].startswith("RuntimeError: plain boom\n")


def test_no_phantom_rows(server, tmp_path):
    db = tmp_path / "run.db"
    with server(uvicorn_args("app_plain:app"), run_env(TIMEGLASS_NO_BOOTSTRAP="1"),
                prefix=timeglass_prefix(db)) as s:
        for _ in range(5):
            with no_keepalive(s.url) as c:
                for path in ("/items/1", "/items/2", "/items/3", "/boom"):
                    c.get(path)
    rows = requests_of(db)
    phantoms = [r for r in rows if is_phantom(r)]
    assert not phantoms, phantoms
    assert len(rows) == 20
