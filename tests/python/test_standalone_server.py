"""TimeGlassMiddleware alone under plain uvicorn: real sockets, real HTTP.

The store must hold exactly the requests sent, with route templates,
statuses and the exception text of a 500; streaming responses, background
tasks, websockets and lifespan must behave as they do without it.
"""

import os
import stat
import sqlite3

import httpx
import pytest

from tgpy import child_env, read_rows, uvicorn_args
from timeglass import _store


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store" / "timeglass.db"


def client(url):
    # No keep-alive: uvicorn closes a connection after an unhandled exception.
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def run_traffic(url):
    with client(url) as c:
        sent = []

        def get(path, expect):
            r = c.get(path)
            assert r.status_code == expect, (path, r.status_code, r.text)
            sent.append(("GET", path))
            return r

        get("/items/1?q=x", 200)
        get("/items/22", 200)
        get("/sync/alice", 200)
        get("/boom/first", 500)
        get("/sub/plain/bob", 200)
        get("/nothing-here", 404)
        r = c.post("/items", content=b"x" * 1000)
        assert r.json() == {"received": 1000}
        sent.append(("POST", "/items"))
        return sent


def test_records_exactly_the_requests_sent(server, store, tmp_path):
    env = child_env({"TIMEGLASS_DB": str(store)})
    with server(uvicorn_args(), env) as s:
        sent = run_traffic(s.url)
    assert s.proc.returncode == 0, s.output()

    rows = read_rows(store)
    assert [(r["method"], r["path"] + ("?" + r["query_string"] if r["query_string"] else ""))
            for r in rows] == sent
    by_path = {r["path"]: r for r in rows}
    assert by_path["/items/1"]["route"] == "/items/{item_id}"
    assert by_path["/items/1"]["query_string"] == "q=x"
    assert by_path["/items/22"]["route"] == "/items/{item_id}"
    assert by_path["/sync/alice"]["route"] == "/sync/{name}"
    assert by_path["/sub/plain/bob"]["route"] == "/sub/plain/{name}"
    assert by_path["/nothing-here"]["route"] is None
    assert by_path["/nothing-here"]["status"] == 404
    assert by_path["/items"]["route"] == "/items"
    assert by_path["/items"]["request_bytes"] == 1000

    boom = by_path["/boom/first"]
    assert boom["status"] == 500
    assert boom["route"] == "/boom/{kind}"
    assert boom["exception"].startswith("ValueError: boom: first\n")
    assert "Traceback" in boom["exception"] and "in boom" in boom["exception"]

    for r in rows:
        assert r["transport"] == "http"
        assert r["flags"] == 0
        assert r["http_version"] == "HTTP/1.1"
        assert r["client_addr"].startswith("127.0.0.1:")
        assert r["duration_ns"] > 0
        assert r["pid"] == s.proc.pid
        assert r["exception"] is None or r["status"] == 500
        # The 500 itself is written by ServerErrorMiddleware, outside ours.
        assert r["response_bytes"] > 0 or r["status"] == 500

    runs = read_rows(store, "SELECT * FROM runs")
    assert len(runs) == 1
    assert runs[0]["source"] == "middleware"
    assert runs[0]["ended_unix_ns"] >= runs[0]["started_unix_ns"]
    assert "uvicorn" in runs[0]["command"]
    procs = read_rows(store, "SELECT * FROM processes")
    assert [p["pid"] for p in procs] == [s.proc.pid]
    assert {r["process_id"] for r in rows} == {procs[0]["id"]}
    assert {r["run_id"] for r in rows} == {runs[0]["id"]}


def test_store_is_private_and_versioned(server, store):
    with server(uvicorn_args(), child_env({"TIMEGLASS_DB": str(store)})) as s:
        httpx.get(s.url + "/items/1", timeout=10)
    assert stat.S_IMODE(os.stat(store.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    conn = sqlite3.connect(str(store))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == _store.SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_default_store_is_in_the_working_directory(server, tmp_path):
    workdir = tmp_path / "project"
    workdir.mkdir()
    with server(uvicorn_args(), child_env(), cwd=workdir) as s:
        httpx.get(s.url + "/items/5", timeout=10)
    rows = read_rows(workdir / ".timeglass" / "timeglass.db")
    assert [(r["path"], r["route"]) for r in rows] == [("/items/5", "/items/{item_id}")]


def test_rows_are_written_while_the_server_runs(server, store):
    """The writer thread commits within a fraction of a second, not at exit."""
    import time

    with server(uvicorn_args(), child_env({"TIMEGLASS_DB": str(store)})) as s:
        httpx.get(s.url + "/items/3", timeout=10)
        deadline = time.monotonic() + 5
        rows = []
        while time.monotonic() < deadline and not rows:
            time.sleep(0.05)
            if store.exists():
                try:
                    rows = read_rows(store)
                except sqlite3.OperationalError:
                    pass
        assert [r["path"] for r in rows] == ["/items/3"]


def test_streaming_background_and_lifespan_unaffected(server, store, tmp_path):
    events = tmp_path / "events.txt"
    env = child_env({"TIMEGLASS_DB": str(store), "TG_TEST_EVENTS": str(events)})
    with server(uvicorn_args(), env) as s:
        with client(s.url) as c:
            with c.stream("GET", "/stream", params={"chunks": 5}) as r:
                chunks = r.read().decode().splitlines()
            assert chunks == ["chunk %d" % i for i in range(5)]
            assert c.get("/background").json() == {"scheduled": True}
    assert events.read_text().splitlines() == ["startup", "background done", "shutdown"]
    rows = {r["path"]: r for r in read_rows(store)}
    streamed = rows["/stream"]
    assert streamed["status"] == 200 and streamed["route"] == "/stream"
    assert streamed["response_bytes"] == sum(len("chunk %d\n" % i) for i in range(5))
    assert streamed["duration_ns"] >= 40_000_000  # five 10 ms sleeps
    assert streamed["resp_start_ns"] is not None and streamed["resp_start_ns"] < streamed["duration_ns"]
    assert rows["/background"]["status"] == 200


def test_websocket_unaffected(server, store):
    pytest.importorskip("wsproto")
    from wsclient import WebSocketClient

    with server(uvicorn_args("app_with_middleware:app", "--ws", "wsproto"),
                child_env({"TIMEGLASS_DB": str(store)})) as s:
        ws = WebSocketClient(s.port, "/ws")
        ws.send("hello")
        assert ws.receive() == "echo hello"
        ws.send("bye")
        assert ws.receive() is None
        ws.close()
        httpx.get(s.url + "/items/9", timeout=10)
    # Websocket sessions are not request rows; the HTTP request after it is.
    assert [r["path"] for r in read_rows(store)] == ["/items/9"]


def test_reload_worker_records(server, store, tmp_path):
    """With --reload the worker process (not the reloader) records."""
    app_dir = tmp_path / "reloadapp"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(
        "from fastapi import FastAPI\n"
        "from timeglass import TimeGlassMiddleware\n"
        "app = FastAPI()\n"
        "app.add_middleware(TimeGlassMiddleware)\n"
        "@app.get('/hello/{who}')\n"
        "async def hello(who: str):\n"
        "    return {'hello': who}\n")
    env = child_env({"TIMEGLASS_DB": str(store)})
    args = ["-m", "uvicorn", "main:app", "--reload", "--reload-dir", str(app_dir),
            "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
    with server(args, env, cwd=app_dir) as s:
        for who in ("a", "b"):
            assert httpx.get(s.url + "/hello/" + who, timeout=10).status_code == 200
    rows = read_rows(store)
    assert [(r["path"], r["route"]) for r in rows] == [("/hello/a", "/hello/{who}"),
                                                      ("/hello/b", "/hello/{who}")]
    procs = read_rows(store, "SELECT * FROM processes")
    assert len(procs) == 1
    assert procs[0]["pid"] != s.proc.pid and procs[0]["ppid"] == s.proc.pid
    assert len(read_rows(store, "SELECT * FROM runs")) == 1


def test_secret_query_values_never_stored(server, store):
    """The middleware alone redacts secret query parameters as the preload
    library does: the secrets are nowhere in the store's files."""
    with server(uvicorn_args(), child_env({"TIMEGLASS_DB": str(store)})) as s:
        r = httpx.get(s.url + "/items/1?q=ok&password=SECRET789&Token=SECRET000&%70wd=SECRET111", timeout=10)
        assert r.status_code == 200
    rows = read_rows(store)
    assert [r["query_string"] for r in rows] == ["q=ok&password=[redacted]&Token=[redacted]&%70wd=[redacted]"]
    for path in store.parent.iterdir():
        assert b"SECRET" not in path.read_bytes(), path
