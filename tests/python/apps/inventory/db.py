"""The database: one in-memory SQLite database for the process, one
connection (session) per request, closed when the request is done."""

import sqlite3

URI = "file:inventory?mode=memory&cache=shared"


def connect():
    # Sync dependencies and endpoints may run in different worker threads.
    return sqlite3.connect(URI, uri=True, check_same_thread=False)


_keeper = connect()  # the database lives as long as one connection is open
with _keeper:
    _keeper.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    _keeper.execute("INSERT OR IGNORE INTO items (id, name) VALUES (1, 'bolt'), (2, 'nut'), (3, 'gear')")


class Session:
    def __init__(self):
        self.conn = connect()

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
