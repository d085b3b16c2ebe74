"""The database: one SQLite file for the process, one connection (session)
per request, closed when the request is done."""

import os
import sqlite3
import tempfile

PATH = os.environ.get("INVENTORY_DB") or os.path.join(
    tempfile.mkdtemp(prefix="inventory-"), "inventory.db")


def _init():
    conn = sqlite3.connect(PATH)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO items (id, name) VALUES (1, 'bolt'), (2, 'nut'), (3, 'gear')")
    conn.close()


_init()


class Session:
    def __init__(self):
        self.conn = sqlite3.connect(PATH)

    def item(self, item_id):
        row = self.conn.execute("SELECT id, name FROM items WHERE id = ?", (item_id,)).fetchone()
        return {"id": row[0], "name": row[1]} if row else None

    def items(self, limit=10):
        return [{"id": r[0], "name": r[1]}
                for r in self.conn.execute("SELECT id, name FROM items ORDER BY id LIMIT ?", (limit,))]

    def close(self):
        self.conn.close()


def get_session():
    session = Session()
    try:
        yield session
    finally:
        session.close()
