"""Example FastAPI application for trying TimeGlass.

Run it plainly:

    /usr/bin/python3 -m uvicorn app:app --app-dir examples --port 8000

or under TimeGlass:

    build/cli/timeglass run -- /usr/bin/python3 -m uvicorn app:app --app-dir examples --port 8000

Each endpoint exercises one thing a profiler has to get right: fast async
handlers, path and query parameters, sync handlers run in the threadpool,
slow handlers, validation errors (422), unhandled exceptions (500),
streaming (chunked) responses, request bodies, large bodies, SQLite queries,
a route of a router included with prefixes (/api/v1/users/{user_id}) and a
websocket.

The notes database is a SQLite file in a temporary directory (override with
the TIMEGLASS_EXAMPLE_DB environment variable); it is created when the
application module is loaded, so every worker process finds it ready.

Works with FastAPI 0.92 (Debian 12) and later releases: it uses no API that
changed between pydantic 1 and 2.
"""

import asyncio
import os
import sqlite3
import tempfile
import threading
import time
from typing import Optional

from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel


def _notes_db_path() -> str:
    path = os.environ.get("TIMEGLASS_EXAMPLE_DB")
    if path:
        return path
    directory = os.path.join(tempfile.gettempdir(), "timeglass-example-%d" % os.getuid())
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, "notes.db")


NOTES_DB = _notes_db_path()


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(NOTES_DB, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def init_db() -> None:
    """Create the notes table if it does not exist yet (safe in many workers)."""
    with _connect() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS notes ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " text TEXT NOT NULL,"
            " created REAL NOT NULL)"
        )
    conn.close()


init_db()

app = FastAPI(title="TimeGlass example")

_sync_lock = threading.Lock()
_sync_calls = 0


class NoteIn(BaseModel):
    text: str


@app.api_route("/", methods=["GET", "HEAD"])
async def root():
    return {"app": "timeglass-example", "ok": True}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.get("/sync")
def sync_endpoint():
    """A plain `def` endpoint: FastAPI runs it in its threadpool."""
    global _sync_calls
    total = 0
    for i in range(20000):
        total += i * i
    with _sync_lock:
        _sync_calls += 1
        calls = _sync_calls
    return {"sum": total, "calls": calls, "thread": threading.current_thread().name}


@app.get("/slow")
async def slow(ms: int = 200):
    if ms < 0 or ms > 60000:
        raise HTTPException(status_code=400, detail="ms must be between 0 and 60000")
    await asyncio.sleep(ms / 1000.0)
    return {"slept_ms": ms}


@app.get("/validate")
async def validate(n: int):
    return {"n": n, "square": n * n}


@app.get("/boom")
async def boom():
    raise RuntimeError("boom: an unhandled error on purpose")


@app.get("/stream")
async def stream(chunks: int = 5, delay_ms: int = 10):
    chunks = max(0, min(chunks, 1000))

    async def generate():
        for i in range(chunks):
            yield ("chunk %d of %d\n" % (i + 1, chunks)).encode()
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000.0)

    return StreamingResponse(generate(), media_type="text/plain")


@app.get("/blob")
async def blob(size: int = 1024):
    """`size` bytes of application/octet-stream (for large-response tests)."""
    if size < 0 or size > 64 * 1024 * 1024:
        raise HTTPException(status_code=400, detail="size out of range")
    return Response(content=b"x" * size, media_type="application/octet-stream")


@app.get("/notes")
def list_notes(limit: int = 20):
    conn = _connect()
    try:
        rows = conn.execute(
            "SELECT id, text, created FROM notes ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        conn.close()
    return {"notes": [dict(r) for r in rows]}


_bench_conn = None


@app.get("/queries10")
async def ten_queries():
    """Ten simple SQLite queries on the event loop: the SQL-capture benchmark."""
    global _bench_conn
    if _bench_conn is None:
        _bench_conn = sqlite3.connect(NOTES_DB, timeout=10, check_same_thread=False)
    total = 0
    for k in range(10):
        total += _bench_conn.execute("SELECT count(*) + ? FROM notes", (k,)).fetchone()[0]
    return {"total": total}


@app.post("/notes", status_code=201)
def create_note(note: NoteIn):
    conn = _connect()
    try:
        with conn:
            cur = conn.execute(
                "INSERT INTO notes (text, created) VALUES (?, ?)", (note.text, time.time())
            )
            note_id = cur.lastrowid
    finally:
        conn.close()
    return {"id": note_id, "text": note.text}


@app.post("/upload")
async def upload(request: Request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"length": size}


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_text(message)
    except WebSocketDisconnect:
        pass


# Routes of routers included with prefixes, the way projects split an API
# into modules: GET /api/v1/users/{user_id}.
users = APIRouter(prefix="/users", tags=["users"])


@users.get("/{user_id}")
async def read_user(user_id: int):
    return {"user_id": user_id}


api_v1 = APIRouter(prefix="/api/v1")
api_v1.include_router(users)
app.include_router(api_v1)
