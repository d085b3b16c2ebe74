"""Fixtures of the SQL and outbound-HTTP capture tests.

One PostgreSQL server per session (pgharness.py), two local echo HTTP
servers (plain and TLS) in this process, and one recorded run of
apps/sqlapp.py under `timeglass run`, driven with 50-way concurrency over
every driver and transport; the tests then check what the store holds.
The apps run on TIMEGLASS_TEST_PYTHON (default /usr/bin/python3).
"""

import concurrent.futures
import json
import os
import random
import re
import shutil
import sqlite3
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import pgharness  # noqa: E402
from tgtest import PYTHON, LocalHTTP, TracedServer, free_port, require_built, run_cli, timeglass_env  # noqa: E402

# The interpreter that runs the apps (the version matrix names another).
PYTHON = os.environ.get("TIMEGLASS_TEST_PYTHON", PYTHON)

APP = HERE / "apps" / "sqlapp.py"
CONCURRENCY = 50

# driver -> (tap that must see it, transports)
DRIVERS = {
    "pg2": ("libpq", ("tcp", "unix")),
    "sqla": ("libpq", ("tcp", "unix")),
    "pg3": ("wire", ("tcp", "unix")),
    "pg3a": ("wire", ("tcp", "unix")),
    "apg": ("wire", ("tcp", "unix")),
    "lite": ("sqlite3", ("file",)),
    "litea": ("sqlite3", ("file",)),
}
KINDS = {"one": 1, "loop": 6, "fail": 1}
PER_GROUP = {"one": 30, "loop": 8, "fail": 4}  # requests per driver and transport
# asyncpg cursors, prepared statements and transaction blocks: kind ->
# (queries marked with the request number, queries of the request in all;
# an executemany is one query)
APGX_KINDS = {"cursor": (1, 3), "prepare": (4, 4), "txn": (1, 3)}
APGX_PER_GROUP = 8
HTTP_CLIENTS = ("requests", "httpx", "aiohttp", "urllib")
HTTP_PER_GROUP = 20
# --capture-params run: path prefix per driver
PARAM_DRIVERS = {"apg": "/params/apg", "pg3a": "/params/pg3a", "pg3": "/params-sync/pg3",
                 "pg2": "/params-sync/pg2", "lite": "/params/lite"}


def site_lines(app=APP):
    """{"pg2-one": (line, function), ...} from the `# site:NAME` comments of app."""
    out = {}
    func = None
    for n, line in enumerate(app.read_text().splitlines(), 1):
        m = re.match(r"\s*(?:async )?def (\w+)\(", line)
        if m:
            func = m.group(1)
        m = re.search(r"# site:([\w-]+)", line)
        if m:
            out[m.group(1)] = (n, func)
    return out


def _echo_servers(tmp):
    """Plain and TLS servers that answer "echo PATH"; returns them and the TLS certificate."""
    key, crt = os.path.join(tmp, "echo.key"), os.path.join(tmp, "echo.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2"],
                   check=True, capture_output=True, timeout=120)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    def echo(target):
        return "text/plain", ("echo " + target.split("?")[0]).encode()

    return LocalHTTP(echo), LocalHTTP(echo, tls=ctx), crt


@pytest.fixture(scope="session")
def pg():
    try:
        server = pgharness.PgServer().start()
    except pgharness.Unavailable as e:
        pytest.skip("no PostgreSQL for the SQL tests: %s" % e)
    try:
        server.setup_schema()
        yield server
    finally:
        server.stop()


def _get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=60) as r:
        return r.status, json.loads(r.read())


class _AppRun:
    """A scratch folder with a store, for one app served by uvicorn under
    `timeglass run` (tg_args added to its options)."""

    def __init__(self, tmp_path_factory, name):
        require_built()
        self.tmp = str(tmp_path_factory.mktemp(name))
        self.store = os.path.join(self.tmp, "store", "timeglass.db")
        os.makedirs(os.path.dirname(self.store))
        self.port = free_port()

    def items_db(self, name, *more_sql):
        """A SQLite database in the folder with a table of 100 items; more_sql is run after."""
        path = os.path.join(self.tmp, name)
        with sqlite3.connect(path) as c:
            c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            c.executemany("INSERT INTO items VALUES (?, ?)", [(k, "item-%d" % k) for k in range(1, 101)])
            for sql in more_sql:
                c.execute(sql)
        return path

    def server(self, app, env, tg_args=()):
        """Starts app (a module's path) with env added to the environment."""
        argv = [PYTHON, "-m", "uvicorn", app.stem + ":app", "--app-dir", str(app.parent), "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning"]
        workdir = Path(self.tmp) / "server"
        workdir.mkdir()
        return TracedServer(argv, self.store, self.port, workdir, env=timeglass_env(env), tg_args=tg_args)

    @staticmethod
    def stop(server):
        """Stops server with Ctrl-C, which must end the run cleanly; returns its stderr."""
        server.stop()
        assert server.returncode == 0, server.diagnostics()
        return server.stderr()

    def remove(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class Recorded:
    """What one run recorded: requests, queries and spans (as JSON rows)."""

    def __init__(self, db, responses, plan, lite_db, echo_ports, stderr):
        self.db = db
        self.responses = responses  # path -> (status, json)
        self.plan = plan            # [(driver, transport, kind, i)]
        self.lite_db = lite_db
        self.echo_ports = echo_ports
        self.stderr = stderr
        self.requests = self._lines("requests", "--limit", "100000000")
        self.queries = self._lines("queries")
        self.spans = self._lines("spans")
        self.by_path = {}
        for r in self.requests:
            self.by_path.setdefault(r["path"], []).append(r)

    def _lines(self, cmd, *extra):
        out = run_cli(cmd, "--db", self.db, "--json", *extra).stdout
        return [json.loads(ln) for ln in out.splitlines() if ln.strip()]

    def request(self, path):
        rows = self.by_path.get(path, [])
        assert len(rows) == 1, "expected one request row for %s, found %d" % (path, len(rows))
        return rows[0]


@pytest.fixture(scope="session")
def recorded(pg, tmp_path_factory):
    run = _AppRun(tmp_path_factory, "sqlrun")
    lite_db = run.items_db("app.db")
    plain, tls, ca = _echo_servers(run.tmp)
    server = run.server(APP, {
        "TG_DSN_TCP": pg.dsn_tcp(), "TG_DSN_UNIX": pg.dsn_unix(), "TG_LITE_DB": lite_db,
        "TG_ECHO_HTTP": plain.url,
        "TG_ECHO_HTTPS": tls.url,
        "TG_ECHO_CA": ca,
    })
    port = run.port
    responses = {}
    plan = []
    try:
        server.wait_ready()
        n = 0
        paths = []
        for drv, (_tap, transports) in DRIVERS.items():
            for tr in transports:
                for kind, count in PER_GROUP.items():
                    for _ in range(count):
                        n += 1
                        plan.append((drv, tr, kind, n))
        for tr in ("tcp", "unix"):
            for kind in APGX_KINDS:
                for _ in range(APGX_PER_GROUP):
                    n += 1
                    plan.append(("apgx", tr, kind, n))
        for cl in HTTP_CLIENTS:
            for scheme in ("http", "https"):
                for _ in range(HTTP_PER_GROUP):
                    n += 1
                    plan.append(("http", cl, scheme, n))
        # Warm-up, one at a time: pools and connections are made lazily.
        warm = {}
        for p in plan:
            warm.setdefault(p[:2], p)
        for p in warm.values():
            paths.append(p)
        rest = [p for p in plan if p not in paths]
        random.Random(7).shuffle(rest)

        def path_of(p):
            if p[0] == "http":
                return "/http/%s/%s/%d" % (p[1], p[2], p[3])
            return "/%s/%s/%s/%d" % p

        for p in paths:
            responses[path_of(p)] = _get(port, path_of(p))
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as ex:
            futs = {ex.submit(_get, port, path_of(p)): path_of(p) for p in rest}
            for f in concurrent.futures.as_completed(futs):
                responses[futs[f]] = f.result()
        for drv in ("pg2", "pg3"):
            responses["/sslinfo-sync/" + drv] = _get(port, "/sslinfo-sync/" + drv)
        for drv in ("pg3a", "apg"):
            responses["/sslinfo/" + drv] = _get(port, "/sslinfo/" + drv)
        stderr = run.stop(server)
    finally:
        server.close()
        plain.close()
        tls.close()
    yield Recorded(run.store, responses, plan, lite_db, (plain.port, tls.port), stderr)
    run.remove()


@pytest.fixture(scope="session")
def recorded_params(pg, tmp_path_factory):
    """A short run with --capture-params: a few requests per driver, one at a time."""
    run = _AppRun(tmp_path_factory, "sqlparams")
    lite_db = run.items_db("app.db")
    server = run.server(APP, {"TG_DSN_TCP": pg.dsn_tcp(), "TG_DSN_UNIX": pg.dsn_unix(), "TG_LITE_DB": lite_db},
                        tg_args=["--capture-params"])
    responses = {}
    plan = []
    try:
        server.wait_ready()
        n = 0
        for drv, prefix in PARAM_DRIVERS.items():
            for _ in range(3):
                n += 1
                plan.append((drv, n))
                path = "%s/%d" % (prefix, n)
                responses[path] = _get(run.port, path)
        stderr = run.stop(server)
    finally:
        server.close()
    yield Recorded(run.store, responses, plan, lite_db, (0, 0), stderr)
    run.remove()


# -- the shop app (apps/shopapp.py): SQL findings on a real-looking service ------

SHOP_APP = HERE / "apps" / "shopapp.py"
SHOP_DB = "tgshop"
# endpoint -> path (N: the request number)
SHOP_ENDPOINTS = {
    "apg-loop": "/api/catalog/items/{n}/loop",
    "apg-twice": "/api/catalog/items/{n}/twice",
    "dashboard": "/api/catalog/dashboard/{n}",
    "apg-many": "/api/catalog/restock/{n}",
    "dbs-summary": "/api/reports/{n}/summary",
    "dbs-loop": "/api/reports/{n}/loop",
    "sqla-one": "/api/orders/{n}",
    "sqla-loop": "/api/orders/{n}/loop",
    "sqla-twice": "/api/orders/{n}/twice",
    "pg2-many": "/api/legacy/import/{n}",
    "pg3-loop": "/api/feed/{n}/loop",
    "pg3-twice": "/api/feed/{n}/twice",
    "pg3-pipe": "/api/feed/{n}/pipeline",
    "lite-many": "/api/audit/import/{n}",
    "lite-loop": "/api/audit/{n}/loop",
    "lite-twice": "/api/audit/{n}/twice",
    "lite-mixed": "/api/audit/{n}/mixed",
}
SHOP_PER_ENDPOINT = 6


def _get_tagged(port, path, n):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers={"X-Request-Id": str(n)})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, json.loads(r.read())


class ShopRun(Recorded):
    """A recorded run of the shop app, with PostgreSQL's log of it."""

    def __init__(self, db, responses, plan, pg_log, stderr):
        super().__init__(db, responses, plan, None, (0, 0), stderr)
        self.pg_log = pg_log  # the server log's text (every database)
        self.by_n = {n: self.request(path) for _ep, n, path in plan}


@pytest.fixture(scope="session")
def shop(pg, tmp_path_factory):
    """One run of the shop app under `timeglass run`: every endpoint once in
    turn (pools and connections are made lazily), then the rest with
    50-way concurrency. Each request carries X-Request-Id: N."""
    run = _AppRun(tmp_path_factory, "shop")
    dsn, dsn_tcp = pg.setup_logged_database(SHOP_DB)
    lite_db = run.items_db("audit.db", "CREATE TABLE events (batch INTEGER, k INTEGER, what TEXT)")
    log_start = os.path.getsize(pg.log) if os.path.exists(pg.log) else 0
    server = run.server(SHOP_APP, {"TG_SHOP_DSN": dsn, "TG_SHOP_DSN_TCP": dsn_tcp, "TG_SHOP_LITE": lite_db})
    port = run.port
    plan = []
    n = 0
    for ep, path in SHOP_ENDPOINTS.items():
        for _ in range(SHOP_PER_ENDPOINT):
            n += 1
            plan.append((ep, n, path.format(n=n)))
    first = {}
    for p in plan:
        first.setdefault(p[0], p)
    rest = [p for p in plan if first[p[0]] is not p]
    random.Random(11).shuffle(rest)
    responses = {}
    try:
        server.wait_ready()
        for _ep, n, path in first.values():
            responses[path] = _get_tagged(port, path, n)
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as ex:
            futs = {ex.submit(_get_tagged, port, path, n): path for _ep, n, path in rest}
            for f in concurrent.futures.as_completed(futs):
                responses[futs[f]] = f.result()
        stderr = run.stop(server)
    finally:
        server.close()
    with open(pg.log, errors="replace") as f:
        f.seek(log_start)
        pg_log = f.read()
    yield ShopRun(run.store, responses, plan, pg_log, stderr)
    run.remove()
