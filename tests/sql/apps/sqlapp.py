"""FastAPI app for the SQL and outbound-HTTP capture tests (tests/sql).

Every driver gets three endpoints per transport (`tcp`: loopback TCP, where
sslmode=prefer gives TLS; `unix`: the Unix socket), each taking the request
number `i` that the test also puts into every statement as a comment, so
that the test can check which request each captured query belongs to:

  /{driver}/{transport}/one/{i}   one query
  /{driver}/{transport}/loop/{i}  the same query six times (an N+1 loop)
  /{driver}/{transport}/fail/{i}  a query on a missing table (caught)

asyncpg's other ways to run statements (driver `apgx`):

  /apgx/{transport}/cursor/{i}   a cursor iterated inside a transaction block
  /apgx/{transport}/prepare/{i}  conn.prepare() then fetch, fetchrow, fetchval
                                 and executemany (two argument sets)
  /apgx/{transport}/txn/{i}      one query in `async with conn.transaction()`

/params/{driver}/{i} runs one query with parameters of several types (for
the run with --capture-params).

Lines that run statements carry a `# site:NAME` comment; the test reads
their line numbers to check call sites. Configuration comes from the
environment: TG_DSN_TCP, TG_DSN_UNIX (libpq syntax), TG_LITE_DB (SQLite
file), TG_ECHO_HTTP / TG_ECHO_HTTPS / TG_ECHO_CA (outbound HTTP targets).
"""

import asyncio
import os
import sqlite3
import threading

from fastapi import FastAPI

app = FastAPI()

DSN = {"tcp": os.environ.get("TG_DSN_TCP", ""), "unix": os.environ.get("TG_DSN_UNIX", "")}
LITE_DB = os.environ.get("TG_LITE_DB", "")
LOOP = 6
_local = threading.local()


def _dsn_dict(dsn):
    return dict(kv.split("=", 1) for kv in dsn.split())


# -- psycopg2 (libpq taps) -----------------------------------------------------

def _pg2(transport):
    import psycopg2
    key = "pg2_" + transport
    conn = getattr(_local, key, None)
    if conn is None:
        conn = psycopg2.connect(DSN[transport])
        conn.autocommit = True
        setattr(_local, key, conn)
    return conn


@app.get("/pg2/{transport}/one/{i}")
def pg2_one(transport: str, i: int):
    cur = _pg2(transport).cursor()
    cur.execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (i % 100 + 1,))  # site:pg2-one
    return {"rows": [r[0] for r in cur.fetchall()]}


@app.get("/pg2/{transport}/loop/{i}")
def pg2_loop(transport: str, i: int):
    cur = _pg2(transport).cursor()
    names = []
    for k in range(1, LOOP + 1):
        cur.execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (k,))  # site:pg2-loop
        names.append(cur.fetchone()[0])
    return {"rows": names}


@app.get("/pg2/{transport}/fail/{i}")
def pg2_fail(transport: str, i: int):
    import psycopg2
    cur = _pg2(transport).cursor()
    try:
        cur.execute("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:pg2-fail
    except psycopg2.Error as e:
        return {"error": e.pgcode}
    return {"error": None}


# -- psycopg 3, sync (wire parser: its ctypes libpq bypasses the libpq taps) ---

def _pg3(transport):
    import psycopg
    key = "pg3_" + transport
    conn = getattr(_local, key, None)
    if conn is None:
        conn = psycopg.connect(DSN[transport], autocommit=True)
        setattr(_local, key, conn)
    return conn


@app.get("/pg3/{transport}/one/{i}")
def pg3_one(transport: str, i: int):
    rows = _pg3(transport).execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (i % 100 + 1,)).fetchall()  # site:pg3-one
    return {"rows": [r[0] for r in rows]}


@app.get("/pg3/{transport}/loop/{i}")
def pg3_loop(transport: str, i: int):
    conn = _pg3(transport)
    names = []
    for k in range(1, LOOP + 1):
        names.append(conn.execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (k,)).fetchone()[0])  # site:pg3-loop
    return {"rows": names}


@app.get("/pg3/{transport}/fail/{i}")
def pg3_fail(transport: str, i: int):
    import psycopg
    try:
        _pg3(transport).execute("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:pg3-fail
    except psycopg.Error as e:
        return {"error": e.sqlstate}
    return {"error": None}


# -- psycopg 3, async ----------------------------------------------------------

_pg3a_pools = {}
_POOL = 10


async def _pg3a_pool(transport):
    import psycopg
    pool = _pg3a_pools.get(transport)
    if pool is None:
        pool = asyncio.Queue()
        _pg3a_pools[transport] = pool
        for _ in range(_POOL):
            pool.put_nowait(await psycopg.AsyncConnection.connect(DSN[transport], autocommit=True))
    return pool


@app.get("/pg3a/{transport}/one/{i}")
async def pg3a_one(transport: str, i: int):
    pool = await _pg3a_pool(transport)
    conn = await pool.get()
    try:
        cur = await conn.execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (i % 100 + 1,))  # site:pg3a-one
        rows = await cur.fetchall()
    finally:
        pool.put_nowait(conn)
    return {"rows": [r[0] for r in rows]}


@app.get("/pg3a/{transport}/loop/{i}")
async def pg3a_loop(transport: str, i: int):
    pool = await _pg3a_pool(transport)
    conn = await pool.get()
    names = []
    try:
        for k in range(1, LOOP + 1):
            cur = await conn.execute("SELECT name FROM items WHERE id = %s /* r=" + str(i) + " */", (k,))  # site:pg3a-loop
            names.append((await cur.fetchone())[0])
    finally:
        pool.put_nowait(conn)
    return {"rows": names}


@app.get("/pg3a/{transport}/fail/{i}")
async def pg3a_fail(transport: str, i: int):
    import psycopg
    pool = await _pg3a_pool(transport)
    conn = await pool.get()
    try:
        await conn.execute("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:pg3a-fail
    except psycopg.Error as e:
        return {"error": e.sqlstate}
    finally:
        pool.put_nowait(conn)
    return {"error": None}


# -- asyncpg (wire parser) -----------------------------------------------------

_apg_pools = {}


async def _apg_pool(transport):
    import asyncpg
    pool = _apg_pools.get(transport)
    if pool is None:
        d = _dsn_dict(DSN[transport])
        kw = dict(host=d["host"], port=int(d["port"]), user=d["user"], database=d["dbname"],
                  password=d.get("password"), min_size=_POOL, max_size=_POOL)
        if transport == "tcp":
            kw["ssl"] = "prefer"
        pool = _apg_pools[transport] = await asyncpg.create_pool(**kw)
    return pool


@app.get("/apg/{transport}/one/{i}")
async def apg_one(transport: str, i: int):
    pool = await _apg_pool(transport)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT name FROM items WHERE id = $1 /* r=" + str(i) + " */", i % 100 + 1)  # site:apg-one
    return {"rows": [r[0] for r in rows]}


@app.get("/apg/{transport}/loop/{i}")
async def apg_loop(transport: str, i: int):
    pool = await _apg_pool(transport)
    names = []
    async with pool.acquire() as conn:
        for k in range(1, LOOP + 1):
            names.append(await conn.fetchval("SELECT name FROM items WHERE id = $1 /* r=" + str(i) + " */", k))  # site:apg-loop
    return {"rows": names}


@app.get("/apg/{transport}/fail/{i}")
async def apg_fail(transport: str, i: int):
    import asyncpg
    pool = await _apg_pool(transport)
    async with pool.acquire() as conn:
        try:
            await conn.fetch("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:apg-fail
        except asyncpg.PostgresError as e:
            return {"error": e.sqlstate}
    return {"error": None}


@app.get("/apgx/{transport}/cursor/{i}")
async def apgx_cursor(transport: str, i: int):
    pool = await _apg_pool(transport)
    names = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            async for r in conn.cursor("SELECT name FROM items WHERE id <= $1 ORDER BY id /* r=" + str(i) + " */", 3):  # site:apgx-cursor
                names.append(r[0])
    return {"rows": names}


@app.get("/apgx/{transport}/prepare/{i}")
async def apgx_prepare(transport: str, i: int):
    pool = await _apg_pool(transport)
    async with pool.acquire() as conn:
        stmt = await conn.prepare("SELECT name FROM items WHERE id = $1 /* r=" + str(i) + " */")
        a = await stmt.fetch(1)  # site:apgx-prepare
        b = await stmt.fetchrow(2)  # site:apgx-prepare2
        c = await stmt.fetchval(3)  # site:apgx-prepare3
        await stmt.executemany([(4,), (5,)])  # site:apgx-prepare4
    return {"rows": [a[0][0], b[0], c]}


@app.get("/apgx/{transport}/txn/{i}")
async def apgx_txn(transport: str, i: int):
    pool = await _apg_pool(transport)
    async with pool.acquire() as conn:
        async with conn.transaction():  # site:apgx-txn
            name = await conn.fetchval("SELECT name FROM items WHERE id = $1 /* r=" + str(i) + " */", 7)  # site:apgx-txn2
    return {"rows": [name]}


# -- parameters (the --capture-params run) ------------------------------------

_PARAMS_SQL = "SELECT count(*) FROM items WHERE id = {} AND name <> {} AND {} AND id > {} /* r={} */"


@app.get("/params/{driver}/{i}")
async def params(driver: str, i: int):
    if driver == "apg":
        pool = await _apg_pool("unix")
        async with pool.acquire() as conn:
            sql = _PARAMS_SQL.format("$1::int4", "$2::text", "$3::bool", "$4::float8", i)
            n = await conn.fetchval(sql, 42, "it's", True, 2.5)
    elif driver == "pg3a":
        pool = await _pg3a_pool("unix")
        conn = await pool.get()
        try:
            sql = _PARAMS_SQL.format("%s", "%s", "%s", "%s", i)
            cur = await conn.execute(sql, (42, "it's", True, 2.5))
            n = (await cur.fetchone())[0]
        finally:
            pool.put_nowait(conn)
    else:
        sql = _PARAMS_SQL.format("?", "?", "?", "?", i)
        n = _lite_async().execute(sql, (42, "it's", True, 2.5)).fetchone()[0]
    return {"n": n}


@app.get("/params-sync/{driver}/{i}")
def params_sync(driver: str, i: int):
    sql = _PARAMS_SQL.format("%s", "%s", "%s", "%s", i)
    if driver == "pg3":
        return {"n": _pg3("unix").execute(sql, (42, "it's", True, 2.5)).fetchone()[0]}
    cur = _pg2("unix").cursor()
    cur.execute(sql, (42, "it's", True, 2.5))
    return {"n": cur.fetchone()[0]}


# -- SQLAlchemy (sync, psycopg2 dialect, its connection pool) -----------------

_engines = {}
_engines_lock = threading.Lock()


def _engine(transport):
    import sqlalchemy
    with _engines_lock:
        e = _engines.get(transport)
        if e is None:
            d = _dsn_dict(DSN[transport])
            if transport == "tcp":
                url = "postgresql+psycopg2://%s:%s@%s:%s/%s?sslmode=prefer" % (
                    d["user"], d["password"], d["host"], d["port"], d["dbname"])
            else:
                url = "postgresql+psycopg2://%s@/%s?host=%s&port=%s" % (d["user"], d["dbname"], d["host"], d["port"])
            e = _engines[transport] = sqlalchemy.create_engine(url, pool_size=20, max_overflow=60,
                                                               isolation_level="AUTOCOMMIT")
        return e


@app.get("/sqla/{transport}/one/{i}")
def sqla_one(transport: str, i: int):
    from sqlalchemy import text
    with _engine(transport).connect() as conn:
        rows = conn.execute(text("SELECT name FROM items WHERE id = :id /* r=" + str(i) + " */"), {"id": i % 100 + 1}).fetchall()  # site:sqla-one
    return {"rows": [r[0] for r in rows]}


@app.get("/sqla/{transport}/loop/{i}")
def sqla_loop(transport: str, i: int):
    from sqlalchemy import text
    names = []
    with _engine(transport).connect() as conn:
        for k in range(1, LOOP + 1):
            names.append(conn.execute(text("SELECT name FROM items WHERE id = :id /* r=" + str(i) + " */"), {"id": k}).scalar())  # site:sqla-loop
    return {"rows": names}


@app.get("/sqla/{transport}/fail/{i}")
def sqla_fail(transport: str, i: int):
    from sqlalchemy import exc, text
    with _engine(transport).connect() as conn:
        try:
            conn.execute(text("SELECT nope FROM missing_table /* r=" + str(i) + " */"))  # site:sqla-fail
        except exc.DBAPIError as e:
            return {"error": e.orig.pgcode}
    return {"error": None}


# -- sqlite3 (sqlite3 taps): sync endpoints in the threadpool, async on the loop

def _lite():
    conn = getattr(_local, "lite", None)
    if conn is None:
        conn = _local.lite = sqlite3.connect(LITE_DB, timeout=30)
    return conn


@app.get("/lite/{transport}/one/{i}")
def lite_one(transport: str, i: int):
    rows = _lite().execute("SELECT name FROM items WHERE id = ? /* r=" + str(i) + " */", (i % 100 + 1,)).fetchall()  # site:lite-one
    return {"rows": [r[0] for r in rows]}


@app.get("/lite/{transport}/loop/{i}")
def lite_loop(transport: str, i: int):
    conn = _lite()
    names = []
    for k in range(1, LOOP + 1):
        names.append(conn.execute("SELECT name FROM items WHERE id = ? /* r=" + str(i) + " */", (k,)).fetchone()[0])  # site:lite-loop
    return {"rows": names}


@app.get("/lite/{transport}/fail/{i}")
def lite_fail(transport: str, i: int):
    try:
        _lite().execute("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:lite-fail
    except sqlite3.Error as e:
        return {"error": type(e).__name__}
    return {"error": None}


_lite_loop_conn = None


def _lite_async():
    global _lite_loop_conn
    if _lite_loop_conn is None:
        _lite_loop_conn = sqlite3.connect(LITE_DB, timeout=30, check_same_thread=False)
    return _lite_loop_conn


@app.get("/litea/{transport}/one/{i}")
async def litea_one(transport: str, i: int):
    await asyncio.sleep(0.001 * (i % 7))  # interleave the requests on the loop
    rows = _lite_async().execute("SELECT name FROM items WHERE id = ? /* r=" + str(i) + " */", (i % 100 + 1,)).fetchall()  # site:litea-one
    return {"rows": [r[0] for r in rows]}


@app.get("/litea/{transport}/loop/{i}")
async def litea_loop(transport: str, i: int):
    names = []
    for k in range(1, LOOP + 1):
        await asyncio.sleep(0)
        names.append(_lite_async().execute("SELECT name FROM items WHERE id = ? /* r=" + str(i) + " */", (k,)).fetchone()[0])  # site:litea-loop
    return {"rows": names}


@app.get("/litea/{transport}/fail/{i}")
async def litea_fail(transport: str, i: int):
    try:
        _lite_async().execute("SELECT nope FROM missing_table /* r=" + str(i) + " */")  # site:litea-fail
    except sqlite3.Error as e:
        return {"error": type(e).__name__}
    return {"error": None}


# -- TLS check and outbound HTTP -----------------------------------------------

@app.get("/sslinfo/{driver}")
async def sslinfo(driver: str):
    """Whether the driver's TCP connection to PostgreSQL uses TLS (server's view)."""
    sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    if driver == "apg":
        pool = await _apg_pool("tcp")
        async with pool.acquire() as conn:
            return {"ssl": await conn.fetchval(sql)}
    if driver == "pg3a":
        pool = await _pg3a_pool("tcp")
        conn = await pool.get()
        try:
            return {"ssl": (await (await conn.execute(sql)).fetchone())[0]}
        finally:
            pool.put_nowait(conn)
    return {"ssl": None}


@app.get("/sslinfo-sync/{driver}")
def sslinfo_sync(driver: str):
    sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    if driver == "pg2":
        cur = _pg2("tcp").cursor()
        cur.execute(sql)
        return {"ssl": cur.fetchone()[0]}
    if driver == "pg3":
        return {"ssl": _pg3("tcp").execute(sql).fetchone()[0]}
    return {"ssl": None}


def _echo_url(scheme, i):
    base = os.environ["TG_ECHO_HTTPS" if scheme == "https" else "TG_ECHO_HTTP"]
    return "%s/echo/%d?secret=x" % (base, i)


_httpx_client = None
_requests_local = threading.local()


@app.get("/http/requests/{scheme}/{i}")
def http_requests(scheme: str, i: int):
    import requests
    s = getattr(_requests_local, "s", None)
    if s is None:
        s = _requests_local.s = requests.Session()
    r = s.get(_echo_url(scheme, i), verify=os.environ.get("TG_ECHO_CA"), timeout=30)  # site:http-requests
    return {"status": r.status_code, "body": r.text}


_aiohttp_session = None


@app.get("/http/aiohttp/{scheme}/{i}")
async def http_aiohttp(scheme: str, i: int):
    import ssl

    import aiohttp
    global _aiohttp_session
    if _aiohttp_session is None:
        ctx = ssl.create_default_context(cafile=os.environ.get("TG_ECHO_CA"))
        _aiohttp_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    async with _aiohttp_session.get(_echo_url(scheme, i)) as r:  # site:http-aiohttp
        body = await r.text()
    return {"status": r.status, "body": body}


@app.get("/http/urllib/{scheme}/{i}")
def http_urllib(scheme: str, i: int):
    import ssl
    import urllib.request
    ctx = ssl.create_default_context(cafile=os.environ.get("TG_ECHO_CA")) if scheme == "https" else None
    with urllib.request.urlopen(_echo_url(scheme, i), timeout=30, context=ctx) as r:  # site:http-urllib
        return {"status": r.status, "body": r.read().decode()}


@app.get("/http/httpx/{scheme}/{i}")
async def http_httpx(scheme: str, i: int):
    import httpx
    global _httpx_client
    if _httpx_client is None:
        _httpx_client = httpx.AsyncClient(verify=os.environ.get("TG_ECHO_CA") or True, timeout=30)
    r = await _httpx_client.get(_echo_url(scheme, i))  # site:http-httpx
    return {"status": r.status_code, "body": r.text}
