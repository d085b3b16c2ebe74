"""A small FastAPI application whose test suite `timeglass ci` profiles.

SQLite in memory, seeded at import. SAMPLE_INJECT (comma-separated) adds the
faults the CI tests expect TimeGlass to catch:
  nplus1  GET /items loads each item's tags with one query per item
  query   GET /items/{item_id} runs one extra query
  5xx     GET /report fails with 500
  slow    GET /slow sleeps twice as long
"""

import os
import sqlite3
import threading
import time

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

INJECT = set(filter(None, os.environ.get("SAMPLE_INJECT", "").split(",")))
SLOW_S = 0.04 if "slow" in INJECT else 0.02

db = sqlite3.connect(":memory:", check_same_thread=False)
lock = threading.Lock()
db.executescript("""
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE tags (item_id INTEGER NOT NULL, name TEXT NOT NULL);
""")
for i in range(1, 6):
    db.execute("INSERT INTO items (id, name, price) VALUES (?, ?, ?)", (i, "item%d" % i, i * 1.5))
    db.execute("INSERT INTO tags (item_id, name) VALUES (?, ?)", (i, "tag%d" % i))
db.commit()

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


def query(sql, args=()):
    with lock:
        return db.execute(sql, args).fetchall()


def item_names(ids):
    """The repository function the tests call directly: each item's name,
    with one query per id."""
    return [query("SELECT name FROM items WHERE id = ?", (i,))[0][0] for i in ids]


@app.get("/health")
def health():
    return {"ok": True}


@app.get("/items")
def list_items():
    if "nplus1" in INJECT:
        rows = query("SELECT id, name FROM items ORDER BY id")
        return [{"id": i, "name": n, "tags": [t for (t,) in query("SELECT name FROM tags WHERE item_id = ?", (i,))]}
                for i, n in rows]
    rows = query("SELECT i.id, i.name, group_concat(t.name) FROM items i LEFT JOIN tags t ON t.item_id = i.id"
                 " GROUP BY i.id ORDER BY i.id")
    return [{"id": i, "name": n, "tags": (tags or "").split(",")} for i, n, tags in rows]


@app.get("/items/{item_id}")
def get_item(item_id: int):
    rows = query("SELECT id, name, price FROM items WHERE id = ?", (item_id,))
    if "query" in INJECT:
        query("SELECT count(*) FROM tags WHERE item_id = ?", (item_id,))
    if not rows:
        raise HTTPException(status_code=404, detail="no such item")
    i, n, p = rows[0]
    return {"id": i, "name": n, "price": p}


@app.post("/items", status_code=201)
def create_item(item: Item):
    with lock:
        cur = db.execute("INSERT INTO items (name, price) VALUES (?, ?)", (item.name, item.price))
        db.commit()
    return {"id": cur.lastrowid, "name": item.name, "price": item.price}


@app.get("/slow")
def slow():
    time.sleep(SLOW_S)
    return {"slept_s": SLOW_S}


@app.get("/report")
def report():
    if "5xx" in INJECT:
        return JSONResponse({"error": "report backend down"}, status_code=500)
    return {"items": query("SELECT count(*) FROM items")[0][0]}
