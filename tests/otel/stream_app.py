"""A FastAPI app laid out like real ones, for the OTLP streaming tests:
routers included under prefixes, and a sqlite3 connection per request from
a dependency that closes it afterwards. The database is $STREAM_APP_DB."""

import os
import sqlite3

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel

DB = os.environ.get("STREAM_APP_DB", "stream_app.db")


def init_db():
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, owner INTEGER, title TEXT)")
    if not conn.execute("SELECT count(*) FROM users").fetchone()[0]:
        conn.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(i, "user%d" % i) for i in range(1, 21)])
        conn.executemany("INSERT INTO items (owner, title) VALUES (?, ?)",
                         [(1 + i % 20, "item%d" % i) for i in range(100)])
    conn.commit()
    conn.close()


def get_db():
    conn = sqlite3.connect(DB, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


class ItemIn(BaseModel):
    owner: int
    title: str


users = APIRouter(prefix="/users", tags=["users"])
items = APIRouter(prefix="/items", tags=["items"])


@users.get("/{user_id}")
def get_user(user_id: int, db: sqlite3.Connection = Depends(get_db)):
    row = db.execute("SELECT id, name FROM users WHERE id = ?", (user_id,)).fetchone()
    if not row:
        raise HTTPException(status_code=404, detail="no such user")
    return {"id": row[0], "name": row[1]}


@users.get("/{user_id}/items")
def user_items(user_id: int, db: sqlite3.Connection = Depends(get_db)):
    if not db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone():
        raise HTTPException(status_code=404, detail="no such user")
    rows = db.execute("SELECT id, title FROM items WHERE owner = ? ORDER BY id", (user_id,)).fetchall()
    return [{"id": r[0], "title": r[1]} for r in rows]


@items.post("/", status_code=201)
def create_item(item: ItemIn, db: sqlite3.Connection = Depends(get_db)):
    cur = db.execute("INSERT INTO items (owner, title) VALUES (?, ?)", (item.owner, item.title))
    db.commit()
    return {"id": cur.lastrowid, "owner": item.owner, "title": item.title}


api = APIRouter(prefix="/api/v1")
api.include_router(users)
api.include_router(items)

app = FastAPI()
app.include_router(api)


@app.get("/health")
def health():
    return {"ok": True}


@app.get("/debug/otel-env")
def otel_env():
    """The OpenTelemetry variables this process sees (they must be the user's own)."""
    return {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}


init_db()
