"""Route templates of a project-like application (apps/inventory): every
router prefix, include prefix and mount path is in the stored template
("/api/v1/items/{item_id:int}", "/sub/hello/{name}",
"/tenants/{tenant}/orders/{order_id}"), 404s have none, 405s have the
route of their path, and the 500 of a mounted sub-application has its
exception text. The template never includes the application's root_path
(uvicorn --root-path, FastAPI(root_path=...)).

Checked the ways a request can be recorded: under `timeglass run` (the
bootstrap alone, with the application's own TimeGlassMiddleware, through
the _speedups extension and through ctypes), in-process (TestClient,
transport "asgi") and standalone (TimeGlassMiddleware under plain uvicorn,
and in-process).

The application runs on the interpreter named by TIMEGLASS_TEST_PYTHON
(default /usr/bin/python3), so the suite covers each FastAPI release that
interpreter has: run it inside the chroots for the newer ones.
"""

import subprocess

import httpx
import pytest

from tgpy import PYTHON, child_env, read_rows, require_c_build, uvicorn_args
from test_under_timeglass_run import is_phantom, requests_of, timeglass_prefix

APP = "inventory.main:app"
APP_MW = "inventory.main:app_with_middleware"
APP_GATEWAY = "inventory.main:app_behind_gateway"
INTERNAL = "internal.example.test"

# (method, path, Host header or None, status, route template, first line of the exception)
PLAN = [
    ("GET", "/", None, 200, "/", None),
    ("GET", "/api/v1/items", None, 200, "/api/v1/items", None),
    ("POST", "/api/v1/items", None, 201, "/api/v1/items", None),
    ("GET", "/api/v1/items/2", None, 200, "/api/v1/items/{item_id:int}", None),
    ("DELETE", "/api/v1/items/2", None, 405, "/api/v1/items/{item_id:int}", None),
    ("GET", "/api/v1/items/bolt", None, 404, None, None),
    ("GET", "/api/v1/users/me", None, 200, "/api/v1/users/me", None),
    ("GET", "/api/v1/users/u42", None, 200, "/api/v1/users/{user_id}", None),
    ("GET", "/api/v1/admin/reports/7", None, 200, "/api/v1/admin/reports/{report_id}", None),
    ("GET", "/api/v1/admin/audit/log/e1", None, 200, "/api/v1/admin/audit/log/{entry}", None),
    ("GET", "/api/v1/health", None, 200, "/api/v1/health", None),
    ("GET", "/plain/bob", None, 200, "/plain/{name}", None),
    ("GET", "/status", INTERNAL, 200, "/status", None),
    ("GET", "/status", None, 404, None, None),  # the Host route only serves its host
    ("GET", "/sub/hello/ann", None, 200, "/sub/hello/{name}", None),
    ("GET", "/sub/v2/things/5", None, 200, "/sub/v2/things/{thing_id}", None),
    ("GET", "/sub/boom", None, 500, "/sub/boom", "ValueError: sub-app boom"),
    ("GET", "/sub/nowhere", None, 404, None, None),
    ("GET", "/legacy/ping", None, 200, "/legacy/ping", None),
    ("GET", "/legacy/files/a.txt", None, 200, "/legacy/files/{name}", None),
    ("GET", "/legacy/broken", None, 500, "/legacy/broken", "LookupError: legacy boom"),
    ("GET", "/tenants/acme/orders/9", None, 200, "/tenants/{tenant}/orders/{order_id}", None),
    ("GET", "/tenants/globex/orders/10", None, 200, "/tenants/{tenant}/orders/{order_id}", None),
    ("GET", "/raw/any/thing", None, 200, "/raw/{path}", None),
    ("GET", "/boom", None, 500, "/boom", "RuntimeError: main boom"),
    ("GET", "/nowhere", None, 404, None, None),
]

# Behind a gateway: the same routes, the same templates.
GATEWAY_PLAN = [p for p in PLAN if p[1] in (
    "/api/v1/items", "/api/v1/items/2", "/api/v1/admin/audit/log/e1", "/plain/bob", "/sub/hello/ann",
    "/sub/boom", "/legacy/files/a.txt", "/tenants/acme/orders/9", "/nowhere")]

WEBSOCKETS = [("/ws", "/ws"), ("/api/v1/live/news", "/api/v1/live/{channel}")]


def send_plan(url, plan, prefix=""):
    # A fresh connection per request: uvicorn closes one after an unhandled exception.
    with httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for method, path, host, status, _, _ in plan:
            r = c.request(method, prefix + path, headers={"Host": host} if host else None)
            assert r.status_code == status, (method, path, r.status_code, r.text[:200])


def open_websockets(port):
    from wsclient import WebSocketClient

    for path, _ in WEBSOCKETS:
        ws = WebSocketClient(port, path)
        assert ws.receive() is not None
        ws.close()


def outcome(rows, plan, prefix=""):
    """Where rows differ from plan: "METHOD PATH: got (...), want (...)" lines.
    prefix: what the paths sent start with."""
    got = [(r["method"], r["path"], r["status"], r["route"], first_line(r["exception"])) for r in rows]
    want = [(m, prefix + p, s, route, exc) for m, p, _, s, route, exc in plan]
    if len(got) != len(want):
        return ["%d rows for %d requests:" % (len(got), len(want))] + [repr(g) for g in got]
    return ["%s %s: got %r, want %r" % (w[0], w[1], g[1:], w[1:]) for g, w in zip(got, want) if g != w]


def first_line(text):
    return text.split("\n", 1)[0] if text else None


def check(rows, plan, prefix=""):
    wrong = outcome(rows, plan, prefix)
    assert not wrong, "\n".join(wrong)


def stored_rows(store):
    # Ordered as sent: a row is queued when its application returns, which
    # for an endpoint with a yield dependency is after the next request.
    return read_rows(store, "SELECT * FROM requests ORDER BY start_unix_ns, id")


def traced_rows(server, tmp_path, app, *uvicorn_extra, plan=PLAN, websockets=False, bootstrap=True,
                prefix="", **env):
    db = tmp_path / "run.db"
    with server(uvicorn_args(app, *uvicorn_extra), child_env(env, bootstrap=bootstrap),
                prefix=timeglass_prefix(db)) as s:
        send_plan(s.url, plan, prefix(s.url) if callable(prefix) else prefix)
        if websockets:
            open_websockets(s.port)
    assert s.proc.returncode == 0, s.output()
    return [r for r in requests_of(db) if not is_phantom(r)]


@pytest.fixture
def c_build():
    require_c_build()


@pytest.mark.parametrize("speedups", ["", "1"], ids=["speedups", "ctypes"])
def test_bootstrap_names_every_route(server, tmp_path, c_build, speedups):
    pytest.importorskip("wsproto")
    rows = traced_rows(server, tmp_path, APP, "--ws", "wsproto", websockets=True,
                       TIMEGLASS_NO_SPEEDUPS=speedups)
    http, ws = rows[:len(PLAN)], rows[len(PLAN):]
    check(http, PLAN)
    assert [(r["path"], r["status"], r["route"]) for r in ws] == [
        (path, 101, route) for path, route in WEBSOCKETS]
    for r in http:
        if r["exception"]:
            # Type and message, then the traceback down to the raising function.
            assert r["exception"].count("Traceback") == 1, r["exception"]
            assert ("in " + {"/sub/boom": "sub_boom", "/legacy/broken": "legacy_broken",
                             "/boom": "boom"}[r["path"]]) in r["exception"]


@pytest.mark.parametrize("speedups", ["", "1"], ids=["speedups", "ctypes"])
def test_bootstrap_and_own_middleware(server, tmp_path, c_build, speedups):
    rows = traced_rows(server, tmp_path, APP_MW, TIMEGLASS_NO_SPEEDUPS=speedups)
    check(rows, PLAN)
    assert all(r["exception"] is None or r["exception"].count("Traceback") == 1 for r in rows)


def test_own_middleware_without_bootstrap(server, tmp_path, c_build):
    # Without the bootstrap only the applications that added the middleware
    # have a marker. The routes are the same. The FastAPI application under
    # /sub has its own, which marks its exception before its 500 is written;
    # the Starlette one under /legacy has none, and its exception reaches the
    # main application's middleware after its 500 is on the wire.
    plan = [p for p in PLAN if p[1] != "/legacy/broken"]
    rows = traced_rows(server, tmp_path, APP_MW, plan=plan, bootstrap=False)
    check(rows, plan)


def gateway_prefix(url):
    """What paths sent to APP_GATEWAY start with: Starlette 0.33 and later
    route the paths under the root_path the application declares (a proxy
    that does not strip it); older ones route the paths without it."""
    return "/gateway" if httpx.get(url + "/gateway/", timeout=10).status_code == 200 else ""


@pytest.mark.parametrize("how", ["uvicorn", "fastapi"])
def test_root_path_is_not_in_the_template(server, tmp_path, c_build, how):
    if how == "uvicorn":  # a proxy that strips the prefix: paths come without it
        rows = traced_rows(server, tmp_path, APP, "--root-path", "/gateway", plan=GATEWAY_PLAN)
        check(rows, GATEWAY_PLAN)
    else:
        rows = traced_rows(server, tmp_path, APP_GATEWAY, plan=GATEWAY_PLAN, prefix=gateway_prefix)
        probe, rows = rows[0], rows[1:]
        assert (probe["path"], probe["route"]) in (("/gateway/", "/"), ("/gateway/", None))
        check(rows, GATEWAY_PLAN, prefix="/gateway" if probe["status"] == 200 else "")


IN_PROCESS = """
from fastapi.testclient import TestClient
import inventory.main as main
with TestClient(getattr(main, {attr!r}), raise_server_exceptions=False) as c:
    for method, path, host, status, _, _ in {plan!r}:
        r = c.request(method, path, headers={{"host": host}} if host else None)
        assert r.status_code == status, (method, path, r.status_code, r.text[:200])
"""


def run_in_process(tmp_path, attr, prefix=(), env=None):
    script = tmp_path / "client.py"
    script.write_text(IN_PROCESS.format(attr=attr, plan=PLAN))
    proc = subprocess.run(list(prefix) + [PYTHON, str(script)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("speedups", ["", "1"], ids=["speedups", "ctypes"])
def test_testclient_under_timeglass_run(tmp_path, c_build, speedups):
    db = tmp_path / "run.db"
    run_in_process(tmp_path, "app", timeglass_prefix(db),
                   child_env({"TIMEGLASS_NO_SPEEDUPS": speedups}, bootstrap=True))
    rows = requests_of(db)
    assert {r["transport"] for r in rows} == {"asgi"}
    check(rows, PLAN)


def test_standalone_middleware(server, tmp_path):
    store = tmp_path / "store" / "timeglass.db"
    with server(uvicorn_args(APP_MW), child_env({"TIMEGLASS_DB": str(store)})) as s:
        send_plan(s.url, PLAN)
    assert s.proc.returncode == 0, s.output()
    rows = stored_rows(store)
    assert {r["transport"] for r in rows} == {"http"}
    check(rows, PLAN)


def test_standalone_root_path(server, tmp_path):
    store = tmp_path / "store" / "timeglass.db"
    env = child_env({"TIMEGLASS_DB": str(store)})
    with server(uvicorn_args(APP_MW, "--root-path", "/gateway"), env) as s:
        send_plan(s.url, GATEWAY_PLAN)
    assert s.proc.returncode == 0, s.output()
    rows = stored_rows(store)
    # The stored path is the scope's raw_path, which uvicorn 0.26 and later
    # start with the root_path; the template never does.
    prefix = rows[0]["path"][:-len(GATEWAY_PLAN[0][1])]
    assert prefix in ("", "/gateway")
    check(rows, GATEWAY_PLAN, prefix=prefix)


def test_standalone_in_process(tmp_path):
    store = tmp_path / "store" / "timeglass.db"
    run_in_process(tmp_path, "app_with_middleware", env=child_env({"TIMEGLASS_DB": str(store)}))
    rows = stored_rows(store)
    assert {r["transport"] for r in rows} == {"asgi"}
    check(rows, PLAN)


SCOPE_PROBE = """
import json
from fastapi.testclient import TestClient
import inventory.main as main
from timeglass import _routes

matched = []  # paths the routes were matched again for
_match = _routes.route_template


def counting(scope, app=None):
    matched.append(scope["path"])
    return _match(scope, app)


_routes.route_template = counting
seen = {{}}


class Probe:
    # Where TimeGlassMiddleware sits: names the request when its response starts.
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path0, root0, app = scope["path"], scope.get("root_path", ""), scope["app"]

        async def probe_send(message):
            if message["type"] == "http.response.start":
                before = len(matched)
                fast = _routes.fast_template(scope, root0)
                full = _routes.after_routing(scope, path0, root0, app)
                seen[scope["method"] + " " + path0] = (fast, full, len(matched) - before)
            await send(message)

        await self.app(scope, receive, probe_send)


app = main.create_app()
app.add_middleware(Probe)
with TestClient(app, raise_server_exceptions=False) as c:
    for _ in range(2):  # the second round is served from what the first one learnt
        seen.clear()
        for method, path, host, status, _, _ in {plan!r}:
            r = c.request(method, path, headers={{"host": host}} if host else None)
            assert r.status_code == status, (method, path, r.status_code)
print(json.dumps(seen))
"""


def test_templates_are_read_from_the_scope(tmp_path):
    """The routes are not matched again for what the routers already told:
    FastAPI routes (included or not) are named by the fast path (the one
    _speedups runs in C), those of mounted FastAPI applications and 404s
    without matching the routes again."""
    import json

    script = tmp_path / "probe.py"
    script.write_text(SCOPE_PROBE.format(plan=PLAN))
    proc = subprocess.run([PYTHON, str(script)], env=child_env(), capture_output=True, text=True, timeout=180,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    # The main application's 500 is written outside the probe; a mounted one's inside.
    want = {m + " " + p: route for m, p, _, status, route, _ in PLAN if p != "/boom"}
    assert {k: v[1] for k, v in seen.items()} == want
    fast = {k for k, v in seen.items() if v[0] is not None}
    assert all(seen[k][0] == want[k] for k in fast)
    assert fast >= {k for k in want if k.split()[1] == "/" or k.split()[1].startswith("/api/v1/")} - {
        "GET /api/v1/items/bolt"}
    unmatched = {k for k, v in seen.items() if v[2] == 0}
    assert unmatched >= fast | {"GET /sub/hello/ann", "GET /sub/v2/things/5", "GET /tenants/acme/orders/9",
                                "GET /tenants/globex/orders/10", "GET /api/v1/items/bolt", "GET /nowhere"}
