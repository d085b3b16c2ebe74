"""`timeglass run --otlp-endpoint`: spans streamed over OTLP/HTTP (JSON) while the app runs.

A real FastAPI app (routers under prefixes, a sqlite3 connection per
request) runs under `timeglass run`; a receiver written here (streamrecv.py,
a process of its own so that it can be killed) takes the POSTs. What it got
is checked against the store; what it did not get must be counted in the
run's losses (kind otlp_export_failed), exactly.
"""

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import streamrecv  # noqa: E402
from tgtest import (  # noqa: E402
    TIMEGLASS, TracedServer, free_port, open_store, read_requests, require_built, run_cli, timeglass_env, uvicorn_argv,
    wait_for,
)

WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(m?s)", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
WRK_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
PACE_LUA = """
-- each connection waits %d ms before each request
function delay()
  return %d
end
"""


@pytest.fixture(scope="module", autouse=True)
def built():
    require_built()


@pytest.fixture
def app_run(tmp_path):
    """`with app_run(tg_args=(), env=None) as server:` the stream app under timeglass run (stopped with SIGINT)."""
    servers = []

    @contextlib.contextmanager
    def start(tg_args=(), env=None, quiet=True):
        port = free_port()
        argv = uvicorn_argv(port, http="httptools", log_level="warning", access_log=False,
                            app="stream_app:app", app_dir=HERE)
        workdir = tmp_path / ("run%d" % len(servers))
        workdir.mkdir()
        full_env = timeglass_env({"STREAM_APP_DB": str(tmp_path / "app.db")})
        for k in list(full_env):
            if k.startswith("OTEL_"):
                del full_env[k]
        full_env.update(env or {})
        server = TracedServer(argv, tmp_path / "tg.db", port, workdir, env=full_env, quiet=quiet,
                              tg_args=tg_args)
        servers.append(server)
        server.wait_ready()
        yield server
        if server.proc.poll() is None:
            server.stop()
        assert not server.sanitizer_errors(), server.diagnostics()

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def receiver(tmp_path):
    """A receiver on an ephemeral port: `.port`, `.start(log_name)`, `.kill()`, `.spans()`."""

    class Receiver:
        def __init__(self):
            self.port = free_port()
            self.proc = None
            self.logs = []

        def start(self, ids_only=False, max_body=0):
            log = tmp_path / ("received%d.jsonl" % len(self.logs))
            self.logs.append(log)
            self.proc = streamrecv.start(self.port, log, ids_only=ids_only, max_body=max_body)

        def kill(self):
            self.proc.kill()
            self.proc.wait()

        def posts(self):
            return [p for p in self.all_lines() if "spans" in p]

        def all_lines(self):
            return [p for log in self.logs for p in streamrecv.read_log(log)]

    r = Receiver()
    yield r
    if r.proc and r.proc.poll() is None:
        r.kill()


def get(port, path, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def store_spans(db, run=None):
    """How many spans the run's store holds for export: requests, and their queries and calls."""
    with contextlib.closing(open_store(db)) as con:
        run = run or con.execute("SELECT max(id) FROM runs").fetchone()[0]
        n = con.execute("SELECT count(*) FROM requests WHERE run_id = ?", (run,)).fetchone()[0]
        for table in ("queries", "spans"):
            n += con.execute("SELECT count(*) FROM %s WHERE run_id = ? AND request_id IS NOT NULL" % table,
                             (run,)).fetchone()[0]
    return n


def export_losses(db):
    with contextlib.closing(open_store(db)) as con:
        return con.execute("SELECT coalesce(sum(events), 0) FROM losses WHERE kind = 'otlp_export_failed'"
                           " AND run_id = (SELECT max(id) FROM runs)").fetchone()[0]


def paced_wrk(rate, connections=50):
    """(wrk, delay per request in ms, connections) for about `rate` requests/s; skips without wrk."""
    wrk = shutil.which("wrk")
    if not wrk:
        pytest.skip("wrk is not installed")
    return wrk, max(1, connections * 1000 // rate), connections


def run_wrk(wrk, tmp_path, port, path, seconds, delay_ms, connections):
    """Runs wrk paced by a Lua delay; asserts the app never failed; returns (completed, stdout)."""
    script = tmp_path / "pace.lua"
    script.write_text(PACE_LUA % (delay_ms, delay_ms))
    out = subprocess.run([wrk, "-t2", "-c%d" % connections, "-d%ds" % seconds, "-s", str(script),
                          "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True,
                         timeout=seconds + 60)
    assert out.returncode == 0, out.stderr
    m = WRK_REQUESTS.search(out.stdout)
    assert m, out.stdout
    non2xx = WRK_NON2XX.search(out.stdout)
    sock = WRK_SOCKET_ERRORS.search(out.stdout)
    assert not non2xx and not sock, "the app failed under load:\n" + out.stdout
    return int(m.group(1)), out.stdout


# ---- (a) every span arrives, as the store has it ---------------------------------------------

def test_spans_arrive_while_the_app_runs_as_stored(app_run, receiver):
    with app_run() as earlier:  # a run before, not streamed: none of its requests may go
        assert get(earlier.port, "/api/v1/users/1")[0] == 200
    receiver.start()
    with app_run(tg_args=("--otlp-endpoint", "http://127.0.0.1:%d" % receiver.port), quiet=False) as server:
        expect = []
        for i in range(1, 31):
            expect.append(get(server.port, "/api/v1/users/%d" % (i % 25 + 1)))  # 404 past user 20
            if i % 3 == 0:
                expect.append(get(server.port, "/api/v1/users/%d/items" % i))
            if i % 5 == 0:
                expect.append(get(server.port, "/api/v1/items/", "POST", {"owner": i, "title": "t%d" % i}))
        expect.append(get(server.port, "/health"))
        assert {s for s, _ in expect} == {200, 201, 404}
        # streamed while the app runs, not at its end
        wait_for(lambda: receiver.posts(), 15, what="a first POST while the app runs")
        assert server.proc.poll() is None
    assert server.returncode == 0, server.diagnostics()
    err = server.stderr()
    assert "streaming its spans over OTLP/HTTP to http://127.0.0.1:%d/v1/traces" % receiver.port in err
    assert "warning" not in err, err

    posts = receiver.posts()
    assert all(p["headers"]["content-type"] == "application/json" for p in posts)
    spans = [s for p in posts for s in p["spans"]]
    by_id = {s["spanId"]: s for s in spans}
    assert len(by_id) == len(spans), "a span was sent twice"
    rows, _ = read_requests(server.db)
    assert len(rows) == len(expect)
    assert len(spans) == store_spans(server.db) and export_losses(server.db) == 0

    servers = {s["attributes"]["timeglass.request.id"]: s for s in spans if s["kind"] == 2}
    assert set(servers) == {r["id"] for r in rows}
    con = open_store(server.db)
    for r in rows:
        s = servers[r["id"]]
        a = s["attributes"]
        assert s["parentSpanId"] == "" and len(s["traceId"]) == 32 and len(s["spanId"]) == 16
        assert (s["start"], s["end"]) == (r["start_unix_ns"], r["start_unix_ns"] + r["duration_ns"]), (s, r)
        assert a["http.request.method"] == r["method"] and a["url.path"] == r["path"], (a, r)
        assert a["http.response.status_code"] == r["status"] and a["http.route"] == r["route"], (a, r)
        assert r["route"] in ("/api/v1/users/{user_id}", "/api/v1/users/{user_id}/items", "/api/v1/items/",
                              "/health"), r
        assert s["name"] == "%s %s" % (r["method"], r["route"])
        assert s["resource"]["service.name"] == "stream_app"
        # its SQL queries, as CLIENT children in its trace
        queries = con.execute("SELECT id, sql, start_unix_ns, duration_ns FROM queries WHERE request_id = ?",
                              (r["id"],)).fetchall()
        kids = [k for k in spans if k["parentSpanId"] == s["spanId"]]
        assert sorted(k["attributes"]["timeglass.query.id"] for k in kids) == sorted(q[0] for q in queries)
        for k in kids:
            q = next(q for q in queries if q[0] == k["attributes"]["timeglass.query.id"])
            assert k["kind"] == 3 and k["traceId"] == s["traceId"]
            assert k["attributes"]["db.query.text"] == q[1] and k["attributes"]["db.system"] == "sqlite"
            assert (k["start"], k["end"]) == (q[2], q[2] + q[3])
        if r["route"] == "/api/v1/users/{user_id}":
            assert any(k["attributes"]["db.query.text"].startswith("SELECT id, name FROM users") for k in kids)
        if r["route"] == "/api/v1/users/{user_id}/items" and r["status"] == 200:
            assert len([k for k in kids if "FROM items" in k["attributes"]["db.query.text"]]) == 1
    con.close()


def test_bodies_too_large_for_the_endpoint_go_in_smaller_batches(app_run, receiver):
    """An endpoint that takes at most 16 KiB a POST (413 above): the exporter
    sends the same requests again, fewer at a time; nothing is lost."""
    receiver.start(max_body=16384)
    with app_run(tg_args=("--otlp-endpoint", "http://127.0.0.1:%d" % receiver.port)) as server:
        threads = [threading.Thread(target=lambda k=k: [get(server.port, "/api/v1/users/%d/items" % (1 + (i + k) % 20))
                                                         for i in range(40)]) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert server.returncode == 0, server.diagnostics()
    posts = receiver.posts()
    spans = [s["spanId"] for p in posts for s in p["spans"]]
    assert len(set(spans)) == len(spans) == store_spans(server.db) == 160 * 3
    assert export_losses(server.db) == 0 and "warning" not in server.stderr(), server.stderr()
    refused = [p["too_large"] for p in receiver.all_lines() if "too_large" in p]
    print("%d POSTs taken (%s requests each), %d refused as too large" % (
        len(posts), sorted({len(p["spans"]) // 3 for p in posts}), len(refused)))
    assert refused and len(posts) >= 10


# ---- (b) load, and the receiver away for a while ---------------------------------------------

def test_load_with_receiver_outage_spans_received_or_counted(app_run, receiver, tmp_path):
    """About 2,000 requests/s for 30 s; the receiver is killed at 10 s and back at 22 s."""
    wrk, delay_ms, conns = paced_wrk(2000)
    receiver.start(ids_only=True)
    with app_run(tg_args=("--otlp-endpoint", "http://127.0.0.1:%d" % receiver.port)) as server:
        result = {}
        t = threading.Thread(target=lambda: result.update(
            out=run_wrk(wrk, tmp_path, server.port, "/api/v1/users/7", 30, delay_ms, conns)))
        t0 = time.monotonic()
        t.start()
        time.sleep(10)
        receiver.kill()
        time.sleep(22 - (time.monotonic() - t0))
        receiver.start(ids_only=True)
        t.join()
        assert server.proc.poll() is None, server.diagnostics()
        t_stop = time.monotonic()
    stop_s = time.monotonic() - t_stop
    assert server.returncode == 0, server.diagnostics()
    completed, out = result["out"]
    rows, _ = read_requests(server.db)
    ok = [r for r in rows if r["error"] is None]
    assert completed <= len(ok) <= completed + conns, (completed, len(ok))
    assert completed >= 5000, out

    ids = [i for p in receiver.posts() for i in p["spans"]]
    received, lost, sent = len(set(ids)), export_losses(server.db), store_spans(server.db)
    print("wrk: %d responses (%.0f/s); spans: %d in the store, %d received (%d twice), %d counted lost;"
          " stopped in %.1f s" % (completed, completed / 30, sent, received, len(ids) - received, lost, stop_s))
    assert lost > 0, "the outage lost nothing: was the receiver really away?"
    assert received + lost == sent, (received, lost, sent)
    assert len(ids) - received <= 512 * 3, "too many spans sent twice"
    assert "OTLP export to http://127.0.0.1:%d/v1/traces failed" % receiver.port in server.stderr()
    assert "works again" in server.stderr()


# ---- (c) no receiver at all ------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_endpoint_down_for_the_whole_run(app_run, receiver, tmp_path, endpoint):
    """Nothing listens (connections refused), or a socket listens that never
    accepts nor answers (every POST waits for its deadline)."""
    wrk, delay_ms, conns = paced_wrk(500, connections=20)
    silent = socket.socket()
    if endpoint == "silent":
        silent.bind(("127.0.0.1", receiver.port))
        silent.listen(1)
    with silent, app_run(tg_args=("--otlp-endpoint", "http://127.0.0.1:%d" % receiver.port)) as server:
        completed, _ = run_wrk(wrk, tmp_path, server.port, "/api/v1/users/3/items", 12, delay_ms, conns)
        t0 = time.monotonic()
        server.stop(signal.SIGINT)
        stop_s = time.monotonic() - t0
    print("%s: %d responses; stopped %.2f s after SIGINT" % (endpoint, completed, stop_s))
    assert server.returncode == 0, server.diagnostics()
    # the POST under way is cut short, no other is tried: no 5 s final budget, no retries
    # (a run without an endpoint stops in about 1 s here; 3 s under AddressSanitizer)
    assert stop_s < 5, "the run took %.1f s to end after Ctrl-C" % stop_s
    rows, _ = read_requests(server.db)
    assert completed <= len([r for r in rows if r["error"] is None]) <= completed + conns
    sent = store_spans(server.db)
    assert sent >= 3 * completed  # a request and its two queries each
    assert export_losses(server.db) == sent
    assert "OTLP export: %d of %d spans were not delivered" % (sent, sent) in server.stderr()
    runs = [json.loads(line) for line in run_cli("runs", "--json", "--db", server.db).stdout.splitlines()]
    # the store itself is complete; what did not reach the endpoint is apart
    assert runs[-1]["lost_events"] == 0 and runs[-1]["spans_not_exported"] == sent, runs
    score = json.loads(run_cli("score", "--json", "--db", server.db).stdout)
    assert score["losses"]["spans_not_exported"] == sent and score["losses"]["lost_events"] == 0
    kind = next(k for k in score["losses"]["kinds"] if k["kind"] == "otlp_export_failed")
    assert kind["class"] == "export" and kind["events"] == sent


# ---- (d) the variables OpenTelemetry SDKs read -------------------------------------------------

@pytest.mark.parametrize("how", ["base", "traces", "option-wins"])
def test_environment_configuration(app_run, receiver, how):
    receiver.start()
    base = "http://127.0.0.1:%d" % receiver.port
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20s3cr%3Dt, x-tenant = team%2Cblue ,bad header=1",
           "OTEL_SERVICE_NAME": "shop"}
    tg_args = ()
    if how == "base":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = base + "/"
    elif how == "traces":
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = base + "/v1/traces"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9/nowhere"
    else:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "https://collector.invalid:4318"
        # a name, not an address: looked up
        tg_args = ("--otlp-endpoint", "http://localhost:%d/v1/traces" % receiver.port, "--service-name", "shop")
    with app_run(tg_args=tg_args, env=env) as server:
        status, body = get(server.port, "/debug/otel-env")
        assert status == 200
        # the app's environment is its own: nothing added, nothing taken away
        assert json.loads(body) == env
        get(server.port, "/api/v1/users/2")
        wait_for(lambda: len([s for p in receiver.posts() for s in p["spans"]]) >= 3, 15, what="the spans")
    assert server.returncode == 0, server.diagnostics()
    posts = receiver.posts()
    for p in posts:
        assert p["headers"]["authorization"] == "Bearer s3cr=t" and p["headers"]["x-tenant"] == "team,blue"
        assert "bad header" not in p["headers"]
    assert "OTEL_EXPORTER_OTLP_HEADERS: 'bad header=1' is not a header" in server.stderr()
    spans = [s for p in posts for s in p["spans"]]
    assert {s["resource"]["service.name"] for s in spans} == {"shop"}
    assert len(spans) == store_spans(server.db)


def test_unusable_endpoints(tmp_path):
    env = timeglass_env()
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(tmp_path / "tg.db"),
                           "--otlp-endpoint", "https://collector.example:4318", "--", "true"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "https is not supported" in proc.stderr, proc.stderr
    # from the environment: a warning, and the run goes on without streaming
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4317"
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(tmp_path / "tg.db"),
                           "--", "true"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0 and "OTLP/HTTP only, so it does not stream spans" in proc.stderr, proc.stderr
    assert "streaming its spans" not in proc.stderr
