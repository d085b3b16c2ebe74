"""A small shop API for the SQL findings tests (tests/sql/test_sql_findings.py).

It is written the way FastAPI services usually are: routers with prefixes,
a dependency that holds one pooled asyncpg connection for the request,
repository helpers that acquire a pool connection of their own per call,
SQLAlchemy sessions (psycopg2) per request, `databases` for reports, a
psycopg2 connection per worker thread for a legacy import, psycopg 3 for a
feed, and sqlite3 for an audit log. Every pool tags the connections it
hands out with the request's id (`SET application_name`, from the
X-Request-Id header), as services do to find their sessions in
pg_stat_activity; the test uses it to tie PostgreSQL's log to requests.

Every statement the app writes itself carries `/* r=N */`, N being the
request number of the path, and lines that run statements carry a
`# site:NAME` comment (the test reads their line numbers).

Configuration from the environment: TG_SHOP_DSN (libpq key=value string of
the PostgreSQL database over its Unix socket), TG_SHOP_DSN_TCP (the same
database over loopback TCP, where TLS is negotiated: the psycopg 3 feed
uses it), TG_SHOP_LITE (SQLite file).
"""

import asyncio
import contextvars
import os
import sqlite3
import threading

from fastapi import APIRouter, Depends, FastAPI, Header

DSN = os.environ.get("TG_SHOP_DSN", "")
DSN_TCP = os.environ.get("TG_SHOP_DSN_TCP", "") or DSN
LITE_DB = os.environ.get("TG_SHOP_LITE", "")
_params = dict(kv.split("=", 1) for kv in DSN.split()) if DSN else {}

request_tag = contextvars.ContextVar("request_tag", default="shop")


async def tag_request(x_request_id: str = Header("")):
    request_tag.set("req-" + x_request_id if x_request_id else "shop")


def _tag_sql():
    return "SET application_name = '%s'" % request_tag.get()


async def tag_connection(conn):
    """Pool setup hook (asyncpg, databases): runs on every acquire."""
    await conn.execute(_tag_sql())


# -- asyncpg: the catalog --------------------------------------------------------

_pool = None
_pool_lock = asyncio.Lock()


async def pool():
    global _pool
    async with _pool_lock:
        if _pool is None:
            import asyncpg
            _pool = await asyncpg.create_pool(host=_params["host"], port=int(_params["port"]),
                                              user=_params["user"], database=_params["dbname"],
                                              min_size=8, max_size=8, setup=tag_connection)
    return _pool


async def db_conn():
    """The request's pooled connection."""
    async with (await pool()).acquire() as conn:
        yield conn


async def repo_value(sql, *args):
    """Repository helper: one pooled connection per call."""
    async with (await pool()).acquire() as conn:  # site:repo-acquire
        return await conn.fetchval(sql, *args)  # site:repo-value


catalog = APIRouter(prefix="/api/catalog", tags=["catalog"])


@catalog.get("/items/{n}/loop")
async def items_loop(n: int, conn=Depends(db_conn)):
    names = []
    for item_id in range(1, 21):
        names.append(await conn.fetchval("SELECT name FROM items WHERE id = $1 /* r=%d */" % n, item_id))  # site:apg-loop
    return {"names": names}


@catalog.get("/items/{n}/twice")
async def items_twice(n: int, conn=Depends(db_conn)):
    first = await conn.fetchrow("SELECT id, name FROM items WHERE id = $1 /* r=%d */" % n, n % 100 + 1)  # site:apg-twice
    again = await conn.fetchrow("SELECT id, name FROM items WHERE id = $1 /* r=%d */" % n, n % 100 + 1)  # site:apg-twice2
    return {"same": dict(first) == dict(again)}


@catalog.get("/dashboard/{n}")
async def dashboard(n: int):
    total = await repo_value("SELECT count(*) FROM items /* r=%d */" % n)
    top = await repo_value("SELECT max(id) FROM items /* r=%d */" % n)
    low = await repo_value("SELECT min(id) FROM items /* r=%d */" % n)
    named = await repo_value("SELECT count(*) FROM items WHERE name LIKE $1 /* r=%d */" % n, "item-1%")
    stock = await repo_value("SELECT coalesce(sum(qty), 0) FROM stock /* r=%d */" % n)
    moved = await repo_value("SELECT count(*) FROM stock WHERE qty > $1 /* r=%d */" % n, 0)
    return {"total": total, "top": top, "low": low, "named": named, "stock": stock, "moved": moved}


@catalog.get("/restock/{n}")
async def restock(n: int, conn=Depends(db_conn)):
    rows = [(1, (n * 50 + k) % 100 + 1) for k in range(50)]
    await conn.executemany("UPDATE stock SET qty = qty + $1 WHERE item_id = $2 /* r=%d */" % n, rows)  # site:apg-many
    return {"rows": len(rows)}


# -- databases: reports ------------------------------------------------------------

_database = None


async def database():
    global _database
    async with _pool_lock:
        if _database is None:
            from databases import Database
            url = "postgresql://%s@localhost/%s" % (_params["user"], _params["dbname"])
            # host may be a socket directory, which a URL cannot hold.
            _database = Database(url, host=_params["host"], port=int(_params["port"]), min_size=4, max_size=4,
                                 setup=tag_connection)
            await _database.connect()
    return _database


reports = APIRouter(prefix="/api/reports", tags=["reports"])


@reports.get("/{n}/summary")
async def report_summary(n: int):
    db = await database()
    count = await db.fetch_val("SELECT count(*) FROM items /* r=%d */" % n)  # site:dbs-count
    rows = await db.fetch_all("SELECT id, name FROM items WHERE id <= :k ORDER BY id /* r=%d */" % n, {"k": 5})  # site:dbs-all
    one = await db.fetch_one("SELECT name FROM items WHERE id = :k /* r=%d */" % n, {"k": n % 100 + 1})  # site:dbs-one
    return {"count": count, "rows": len(rows), "one": one["name"]}


@reports.get("/{n}/loop")
async def report_loop(n: int):
    db = await database()
    names = []
    async with db.connection():
        for item_id in range(1, 21):
            row = await db.fetch_one("SELECT name FROM items WHERE id = :k /* r=%d */" % n, {"k": item_id})  # site:dbs-loop
            names.append(row["name"])
    return {"names": names}


# -- SQLAlchemy sessions over psycopg2: orders --------------------------------------

_engine = None
_engine_lock = threading.Lock()


def _tag_psycopg2(conn):
    """Tags a psycopg2 connection outside any transaction (a SET inside one
    is undone by its rollback)."""
    conn.autocommit = True
    try:
        conn.cursor().execute(_tag_sql())
    finally:
        conn.autocommit = False


def engine():
    global _engine
    with _engine_lock:
        if _engine is None:
            from sqlalchemy import create_engine, event
            url = "postgresql+psycopg2://%s@/%s?host=%s&port=%s" % (_params["user"], _params["dbname"],
                                                                   _params["host"], _params["port"])
            _engine = create_engine(url, pool_size=10, max_overflow=30)

            @event.listens_for(_engine, "checkout")
            def tag(dbapi_conn, record, proxy):
                _tag_psycopg2(dbapi_conn)
    return _engine


def session():
    from sqlalchemy.orm import Session
    with Session(engine()) as s:
        yield s


orders = APIRouter(prefix="/api/orders", tags=["orders"])


@orders.get("/{n}")
def order(n: int, s=Depends(session)):
    from sqlalchemy import text
    row = s.execute(text("SELECT id, name FROM items WHERE id = :id /* r=%d */" % n), {"id": n % 100 + 1}).one()  # site:sqla-one
    s.execute(text("UPDATE stock SET qty = qty WHERE item_id = :id /* r=%d */" % n), {"id": row.id})  # site:sqla-upd
    s.commit()
    return {"name": row.name}


@orders.get("/{n}/loop")
def order_loop(n: int, s=Depends(session)):
    from sqlalchemy import text
    names = []
    for item_id in range(1, 21):
        names.append(s.execute(text("SELECT name FROM items WHERE id = :id /* r=%d */" % n), {"id": item_id}).scalar())  # site:sqla-loop
    s.commit()
    return {"names": names}


@orders.get("/{n}/twice")
def order_twice(n: int, s=Depends(session)):
    from sqlalchemy import text
    q = text("SELECT name FROM items WHERE id = :id /* r=%d */" % n)
    a = s.execute(q, {"id": n % 100 + 1}).scalar()  # site:sqla-twice
    b = s.execute(q, {"id": n % 100 + 1}).scalar()  # site:sqla-twice2
    return {"same": a == b}


# -- psycopg2, one connection per worker thread: the legacy import -------------------

_local = threading.local()


def pg2():
    import psycopg2
    conn = getattr(_local, "pg2", None)
    if conn is None:
        conn = _local.pg2 = psycopg2.connect(DSN)
    _tag_psycopg2(conn)
    return conn


legacy = APIRouter(prefix="/api/legacy", tags=["legacy"])


@legacy.get("/import/{n}")
def legacy_import(n: int):
    conn = pg2()
    cur = conn.cursor()
    rows = [(n, k, "v%d" % k) for k in range(30)]
    cur.executemany("INSERT INTO imports (batch, k, v) VALUES (%s, %s, %s) /* r=" + str(n) + " */", rows)  # site:pg2-many
    conn.commit()
    return {"rows": len(rows)}


# -- psycopg 3 (async): the feed ----------------------------------------------------

_pg3_conns = None


async def pg3_conn():
    global _pg3_conns
    import psycopg
    async with _pool_lock:
        if _pg3_conns is None:
            _pg3_conns = asyncio.Queue()
            for _ in range(4):
                _pg3_conns.put_nowait(await psycopg.AsyncConnection.connect(DSN_TCP, autocommit=True))
    conn = await _pg3_conns.get()
    try:
        await conn.execute(_tag_sql())
        yield conn
    finally:
        _pg3_conns.put_nowait(conn)


feed = APIRouter(prefix="/api/feed", tags=["feed"])


@feed.get("/{n}/loop")
async def feed_loop(n: int, conn=Depends(pg3_conn)):
    names = []
    for item_id in range(1, 21):
        cur = await conn.execute("SELECT name FROM items WHERE id = %s /* r=" + str(n) + " */", (item_id,))  # site:pg3-loop
        names.append((await cur.fetchone())[0])
    return {"names": names}


@feed.get("/{n}/twice")
async def feed_twice(n: int, conn=Depends(pg3_conn)):
    q = "SELECT name FROM items WHERE id = %s /* r=" + str(n) + " */"
    a = await (await conn.execute(q, (n % 100 + 1,))).fetchone()  # site:pg3-twice
    b = await (await conn.execute(q, (n % 100 + 1,))).fetchone()  # site:pg3-twice2
    return {"same": a == b}


@feed.get("/{n}/pipeline")
async def feed_pipeline(n: int, conn=Depends(pg3_conn)):
    async with conn.pipeline():
        c1 = await conn.execute("SELECT count(*) FROM items WHERE id < %s /* r=" + str(n) + " */", (50,))  # site:pg3-pipe1
        c2 = await conn.execute("SELECT name FROM items WHERE id = %s /* r=" + str(n) + " */", (n % 100 + 1,))  # site:pg3-pipe2
        c3 = await conn.execute("SELECT max(qty) FROM stock WHERE item_id > %s /* r=" + str(n) + " */", (10,))  # site:pg3-pipe3
    return {"count": (await c1.fetchone())[0], "name": (await c2.fetchone())[0], "max": (await c3.fetchone())[0]}


# -- sqlite3: the audit log ---------------------------------------------------------------

def lite():
    conn = getattr(_local, "lite", None)
    if conn is None:
        conn = _local.lite = sqlite3.connect(LITE_DB, timeout=60)
    return conn


audit = APIRouter(prefix="/api/audit", tags=["audit"])


@audit.get("/import/{n}")
def audit_import(n: int):
    conn = lite()
    rows = [(n, k, "event-%d" % k) for k in range(500)]
    conn.executemany("INSERT INTO events (batch, k, what) VALUES (?, ?, ?) /* r=%d */" % n, rows)  # site:lite-many
    conn.commit()
    return {"rows": len(rows)}


@audit.get("/{n}/mixed")
def audit_mixed(n: int):
    """A batch, then the same statement in a loop of the app's own."""
    conn = lite()
    sql = "INSERT INTO events (batch, k, what) VALUES (?, ?, ?) /* r=%d */" % n
    conn.executemany(sql, [(n, k, "batch") for k in range(10)])  # site:lite-mixed-many
    for k in range(6):
        conn.execute(sql, (n, 100 + k, "loop"))  # site:lite-mixed-loop
    conn.commit()
    return {"rows": 16}


@audit.get("/{n}/loop")
def audit_loop(n: int):
    conn = lite()
    names = []
    for item_id in range(1, 21):
        names.append(conn.execute("SELECT name FROM items WHERE id = ? /* r=%d */" % n, (item_id,)).fetchone()[0])  # site:lite-loop
    return {"names": names}


@audit.get("/{n}/twice")
def audit_twice(n: int):
    conn = lite()
    q = "SELECT name FROM items WHERE id = ? /* r=%d */" % n
    a = conn.execute(q, (n % 100 + 1,)).fetchone()  # site:lite-twice
    b = conn.execute(q, (n % 100 + 1,)).fetchone()  # site:lite-twice2
    return {"same": a == b}


app = FastAPI(title="shop", dependencies=[Depends(tag_request)])
for router in (catalog, reports, orders, legacy, feed, audit):
    app.include_router(router)
