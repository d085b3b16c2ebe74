"""Requests served in-process (Starlette's TestClient, httpx's ASGITransport)
in standalone mode: recorded with transport "asgi", the same fields as wire
requests, and the application behaves exactly as without the middleware."""

import asyncio

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route
from starlette.responses import PlainTextResponse

import timeglass
from timeglass import TimeGlassMiddleware

from tgpy import read_rows

FLAG_HEAD, FLAG_ASGI = 0x01, 0x80


def make_app(db, **options):
    app = FastAPI()
    app.add_middleware(TimeGlassMiddleware, db=str(db), **options)
    done = []

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    @app.api_route("/head", methods=["GET", "HEAD"])
    async def head():
        return {"ok": True}

    @app.get("/fail")
    async def fail():
        raise KeyError("missing")

    @app.get("/stream")
    async def stream():
        async def body():
            for i in range(3):
                yield b"%d" % i
        return StreamingResponse(body())

    @app.get("/bg")
    async def bg(tasks: BackgroundTasks):
        tasks.add_task(done.append, "bg")
        return "scheduled"

    async def plain(request):
        return PlainTextResponse("p")

    app.router.routes.append(Mount("/static", app=PlainTextResponse("static")))
    app.router.routes.append(Mount("/m", routes=[Route("/x/{y:int}", plain)]))
    app.state.done = done
    return app


def test_testclient_requests_are_recorded(tmp_path):
    db = tmp_path / "t.db"
    app = make_app(db)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/items/3?x=1").json() == {"item_id": 3}
        assert c.head("/head").status_code == 200
        assert c.get("/fail").status_code == 500
        assert c.get("/stream").text == "012"
        assert c.get("/bg").status_code == 200
        assert c.get("/static/a/b.css").text == "static"
        assert c.get("/m/x/5").text == "p"
        assert c.post("/items/3").status_code == 405
    assert app.state.done == ["bg"]  # the background task ran
    rows = read_rows(db)
    got = [(r["method"], r["path"], r["query_string"], r["route"], r["status"]) for r in rows]
    assert got == [
        ("GET", "/items/3", "x=1", "/items/{item_id}", 200),
        ("HEAD", "/head", None, "/head", 200),
        ("GET", "/fail", None, "/fail", 500),
        ("GET", "/stream", None, "/stream", 200),
        ("GET", "/bg", None, "/bg", 200),
        ("GET", "/static/a/b.css", None, "/static/{path}", 200),
        ("GET", "/m/x/5", None, "/m/x/{y:int}", 200),
        ("POST", "/items/3", None, "/items/{item_id}", 405),
    ]
    for r in rows:
        assert r["transport"] == "asgi"
        assert r["flags"] & FLAG_ASGI
        assert r["client_addr"] == "testclient:50000"
    assert rows[1]["flags"] == FLAG_HEAD | FLAG_ASGI
    assert rows[2]["exception"].startswith("KeyError: 'missing'\n")
    assert rows[3]["response_bytes"] == 3
    run = read_rows(db, "SELECT * FROM runs")
    assert len(run) == 1 and run[0]["ended_unix_ns"]  # lifespan shutdown finished the run


def test_exception_propagates_unchanged(tmp_path):
    app = make_app(tmp_path / "t.db")
    with pytest.raises(KeyError):
        TestClient(app).get("/fail")
    timeglass.flush()
    assert [r["status"] for r in read_rows(tmp_path / "t.db")] == [500]


def test_httpx_asgi_transport(tmp_path):
    db = tmp_path / "h.db"
    app = make_app(db)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            r = await c.get("/items/8")
            assert r.json() == {"item_id": 8}

    asyncio.run(go())
    timeglass.flush()
    rows = read_rows(db)
    assert [(r["path"], r["route"], r["transport"]) for r in rows] == [
        ("/items/8", "/items/{item_id}", "asgi")]


def test_disabled_records_nothing(tmp_path, monkeypatch):
    db = tmp_path / "off.db"
    with TestClient(make_app(db, enabled=False)) as c:
        assert c.get("/items/1").status_code == 200
    monkeypatch.setenv("TIMEGLASS_DISABLE", "1")
    with TestClient(make_app(db)) as c:
        assert c.get("/items/1").status_code == 200
    timeglass.flush()
    assert not db.exists()


def test_newer_store_is_left_alone(tmp_path, caplog):
    import sqlite3

    db = tmp_path / "new.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE future (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with caplog.at_level("WARNING", logger="timeglass"):
        with TestClient(make_app(db)) as c:
            for _ in range(3):
                assert c.get("/items/1").status_code == 200
        timeglass.flush()
    warnings = [r.getMessage() for r in caplog.records if r.name == "timeglass"]
    assert len(warnings) == 1 and "newer TimeGlass" in warnings[0] and "\n" not in warnings[0]
    conn = sqlite3.connect(str(db))
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["future"]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


def test_foreign_database_is_left_alone(tmp_path, caplog):
    import sqlite3

    db = tmp_path / "other.db"
    conn = sqlite3.connect(str(db))
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    with caplog.at_level("WARNING", logger="timeglass"):
        with TestClient(make_app(db)) as c:
            assert c.get("/items/1").status_code == 200
        timeglass.flush()
    assert any("not a TimeGlass store" in r.getMessage() for r in caplog.records)
    conn = sqlite3.connect(str(db))
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["mine"]


def test_non_http_scopes_pass_straight_through(tmp_path):
    seen = []

    async def inner(scope, receive, send):
        seen.append((scope["type"], receive, send))

    mw = TimeGlassMiddleware(inner, db=str(tmp_path / "x.db"))

    async def receive():
        return {}

    async def send(message):
        pass

    asyncio.run(mw({"type": "websocket", "path": "/ws", "headers": []}, receive, send))
    assert seen == [("websocket", receive, send)]
