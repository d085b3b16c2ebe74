"""Fixtures of the OpenTelemetry export tests.

One recorded run per session: apps/shop.py under `timeglass run` (uvicorn),
on a throwaway PostgreSQL server (tests/sql/pgharness.py) and a SQLite file,
with a local "rates" HTTP service for its outbound calls, driven by real
HTTP clients (httpx, requests, urllib), some requests concurrent and one
carrying a W3C traceparent. The apps run on TIMEGLASS_TEST_PYTHON (default
/usr/bin/python3).
"""

import concurrent.futures
import contextlib
import http.server
import json
import os
import sqlite3
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "sql"))
sys.path.insert(0, str(HERE.parent / "integration"))

import pgharness  # noqa: E402
from tgtest import PYTHON, TracedServer, free_port, require_built, timeglass_env  # noqa: E402

PYTHON = os.environ.get("TIMEGLASS_TEST_PYTHON", PYTHON)
APP = HERE / "apps" / "shop.py"

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# order id -> [(product id, qty)]; products 1..5. Order 1 makes an N+1 (5 product
# queries: the collector's default threshold).
ORDERS = {1: [(1, 2), (2, 1), (3, 1), (4, 5), (5, 1)], 2: [(2, 1)], 3: [(1, 1), (5, 2)]}
CONCURRENT = 24


class _Rates(http.server.BaseHTTPRequestHandler):
    """The shipping rates service the shop calls out to."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        import receiver  # needs opentelemetry.proto: imported once the tests are not skipped
        receiver.reply(self, 200, b"standard=4.90;express=12.00", "text/plain")

    def log_message(self, *args):
        pass


SCHEMA = """
CREATE TABLE products (id integer PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
INSERT INTO products SELECT g, 'product-' || g, g * 1.5 FROM generate_series(1, 5) g;
CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL);
CREATE TABLE order_items (order_id integer, product_id integer, qty integer);
SELECT setval('orders_id_seq', 100);
"""


def _setup_shop(pg):
    """Creates the shop's database; returns its libpq connection string."""
    import psycopg2
    dsn = "host=%s port=%d dbname=%%s user=%s" % (pg.dir, pg.port, pgharness.USER)
    with contextlib.closing(psycopg2.connect(dsn % "postgres")) as conn:
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE shop")
    with contextlib.closing(psycopg2.connect(dsn % "shop")) as conn, conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
        cur.executemany("INSERT INTO orders (id, customer, total) VALUES (%s, %s, %s)",
                        [(oid, "c%d" % oid, 10 * oid) for oid in ORDERS])
        cur.executemany("INSERT INTO order_items VALUES (%s, %s, %s)",
                        [(oid, pid, qty) for oid, items in ORDERS.items() for pid, qty in items])
    return dsn % "shop"


class Shop:
    """One recorded run of the shop: its store, what the clients did, and
    the store's rows."""

    def __init__(self, db, port, rates_port, tmp):
        self.db = db
        self.port = port
        self.rates_port = rates_port
        self.tmp = Path(tmp)
        self.sent = {}  # label -> (path, status)
        self.orders, self.traceparent, self.concurrent = ORDERS, TRACEPARENT, CONCURRENT

    def rows(self, sql, *args):
        with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % self.db, uri=True)) as c:
            c.row_factory = sqlite3.Row
            return [dict(r) for r in c.execute(sql, args)]

    def request_id(self, label):
        path, _ = self.sent[label]
        rows = self.rows("SELECT id FROM requests WHERE path = ? ORDER BY id", path.split("?")[0])
        assert rows, "no request row for %s" % path
        return rows[0]["id"]


def _traffic(shop):
    import httpx
    import requests
    base = "http://127.0.0.1:%d" % shop.port

    def note(label, path, status):
        shop.sent[label] = (path, status)

    with httpx.Client(base_url=base, timeout=30) as c:
        for oid in (1, 3):
            r = c.get("/api/v1/orders/%d" % oid)
            assert r.status_code == 200, r.text
            note("order%d" % oid, "/api/v1/orders/%d" % oid, 200)
        r = c.get("/api/v1/orders/2", headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200 and r.json()["items"][0]["product"] == "product-2"
        note("order2", "/api/v1/orders/2", 200)
        r = c.get("/api/v1/orders/1/shipping")
        assert r.status_code == 200 and "standard" in r.json()["rates"]
        note("shipping", "/api/v1/orders/1/shipping", 200)
        r = c.get("/api/v1/orders/999")
        assert r.status_code == 404
        note("missing", "/api/v1/orders/999", 404)
    with requests.Session() as s:
        r = s.post(base + "/api/v1/orders", json={"customer": "alice", "total": 12.5}, timeout=30)
        assert r.status_code == 201, r.text
        note("create", "/api/v1/orders", 201)
    # uvicorn closes the connection after an unhandled exception: one each.
    r = requests.get(base + "/api/v1/fail", timeout=30)
    assert r.status_code == 500
    note("fail", "/api/v1/fail", 500)
    r = requests.get(base + "/api/v1/orders/3/broken", timeout=30)
    assert r.status_code == 500
    note("broken", "/api/v1/orders/3/broken", 500)
    req = urllib.request.Request(base + "/api/v1/catalog/2?token=s3cret&page=2",
                                 headers={"X-Forwarded-For": "203.0.113.7"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and json.loads(r.read())["name"] == "item-2"
    note("catalog", "/api/v1/catalog/2?token=s3cret&page=2", 200)

    def one(k):
        oid = 1 + k % 3
        with urllib.request.urlopen("%s/api/v1/orders/%d" % (base, oid), timeout=60) as r:
            return r.status, json.loads(r.read())["id"] == oid

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(CONCURRENT))) == [(200, True)] * CONCURRENT


@pytest.fixture(scope="session")
def shop(request, tmp_path_factory):
    require_built()
    try:
        pg = pgharness.PgServer().start()
    except pgharness.Unavailable as e:
        pytest.skip("no PostgreSQL for the OpenTelemetry export tests: %s" % e)
    request.addfinalizer(pg.stop)
    yield from _recorded(pg, tmp_path_factory.mktemp("otel"))


def _recorded(pg, tmp):
    """Records the shop's run; yields the Shop."""
    dsn = _setup_shop(pg)
    catalog = str(tmp / "catalog.db")
    with contextlib.closing(sqlite3.connect(catalog)) as c:
        c.execute("CREATE TABLE catalog (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        c.executemany("INSERT INTO catalog VALUES (?, ?)", [(k, "item-%d" % k) for k in range(1, 11)])
        c.commit()
    rates = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Rates)
    rates.daemon_threads = True
    threading.Thread(target=rates.serve_forever, daemon=True).start()
    port = free_port()
    store = str(tmp / "store" / "timeglass.db")
    os.makedirs(os.path.dirname(store))
    env = timeglass_env({"SHOP_DSN": dsn, "SHOP_CATALOG": catalog,
                         "SHOP_RATES": "http://127.0.0.1:%d" % rates.server_address[1]})
    argv = [PYTHON, "-m", "uvicorn", "shop:app", "--app-dir", str(APP.parent), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    workdir = tmp / "server"
    workdir.mkdir()
    server = TracedServer(argv, store, port, workdir, env=env)
    shop = Shop(store, port, rates.server_address[1], tmp)
    try:
        server.wait_ready()
        _traffic(shop)
        assert server.stop() == 0, server.diagnostics()
    finally:
        server.close()
        rates.shutdown()
        rates.server_close()
    yield shop
