"""`timeglass bench` against real apps recorded by `timeglass run`: every
seeded bug found with its route and the id of its recorded request, no
finding on a clean route, the JSON report's contract, exit statuses."""

import json
import sqlite3
from pathlib import Path

import pytest

from tgtest import run_cli, uvicorn_argv

APPS = Path(__file__).resolve().parent / "apps"

# (check, method, route, what the failing case must mention)
SEEDED = [
    ("server_error", "GET", "/ratio", "'den': 0"),
    ("server_error", "POST", "/greet", "non-ASCII"),
    ("server_error", "POST", "/orders", "'note' left out"),
    ("accepted_invalid", "POST", "/accept", ""),
    ("response_schema", "GET", "/profile/{uid}", ""),
    ("undocumented_status", "GET", "/teapot", ""),
]


def bench(server, tmp_path, *args, check=True):
    # later options win: a test may give its own --duration
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    proc = run_cli("bench", "--url", "http://127.0.0.1:%d" % server.port, "--db", server.db,
                   "--duration", "0.5", "--connections", "4", "--quiet", "--json", out, "--markdown", md,
                   *args, timeout=300, check=check)
    return proc, json.loads(out.read_text()), md.read_text()


def stored(db, request_id):
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT method, path, route, status FROM requests WHERE id = ?",
                          (request_id,)).fetchone()
    finally:
        con.close()
    return row


def test_seeded_bugs_found_with_request_ids(traced, tmp_path):
    with traced(argv=None, app="seeded:app", app_dir=APPS, log_level="warning") as server:
        proc, doc, md = bench(server, tmp_path)
    findings = doc["findings"]
    for check, method, route, what in SEEDED:
        hits = [f for f in findings if f["check"] == check and f["method"] == method and f["route"] == route
                and what in f["case"]]
        assert hits, "no %s on %s %s in:\n%s" % (check, method, route, proc.stdout)
        f = hits[0]
        assert f["request_id"], f
        assert f["request"].startswith("curl ") and "127.0.0.1" in f["request"]
        row = stored(server.db, f["request_id"])
        assert row is not None, f
        assert row[0] == method and row[3] == f["status"], (row, f)
        assert row[1].startswith(route.split("{")[0]), (row, f)
        assert f["request_id"] and ("request %d" % f["request_id"]) in proc.stdout
    clean = [f for f in findings if f["route"].startswith("/clean")]
    assert not clean, clean

    # the contract of the JSON report
    for key in ("url", "started_unix_ns", "run_id", "operations", "probe", "findings", "score"):
        assert key in doc
    assert doc["run_id"] and doc["score"]["run_id"] == doc["run_id"]
    ops = {(o["method"], o["route"]): o for o in doc["operations"]}
    loaded = ops[("GET", "/clean/search")]
    for key in ("requests", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "errors", "status_counts"):
        assert key in loaded
    assert loaded["requests"] > 0 and loaded["status_counts"].get("200") == loaded["requests"]
    assert loaded["p50_ms"] <= loaded["p90_ms"] <= loaded["p99_ms"] <= loaded["p999_ms"] <= loaded["max_ms"]
    assert not ops[("POST", "/clean/items")]["loaded"]          # unsafe: not loaded by default
    probe = doc["probe"]
    assert probe["cases"] > 20 and probe["answered_4xx"] < probe["cases"]
    assert probe["server_errors"] >= 0 and probe["accepted_invalid"] >= 1
    card = {c["key"]: c for c in doc["score"]["scorecard"]}
    bad = card["bad_input_4xx"]
    assert bad["measured"] and abs(bad["value"] - 100.0 * probe["answered_4xx"] / probe["cases"]) < 0.1
    assert card["throughput"]["measured"]
    assert "## Findings" in md and "/ratio" in md


def test_fail_on_and_fail_under(traced, tmp_path):
    with traced(argv=None, app="seeded:app", app_dir=APPS, log_level="warning") as server:
        proc, doc, _ = bench(server, tmp_path, "--no-load", "--op", "/ratio", "--fail-on", "server_error",
                             check=False)
        assert proc.returncode == 1, proc.stderr
        proc, doc, _ = bench(server, tmp_path, "--no-load", "--op", "/clean", "--fail-on", "server_error",
                             check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not doc["findings"]
        proc, doc, _ = bench(server, tmp_path, "--no-load", "--op", "/accept", "--fail-under", "A", check=False)
        assert proc.returncode == 1


def test_example_app(traced, tmp_path):
    with traced(log_level="warning") as server:
        proc, doc, _ = bench(server, tmp_path, "--op", "GET /items/{item_id}", "--op", "/boom",
                             "--op", "GET /api/v1/users/{user_id}")
    boom = [f for f in doc["findings"] if f["route"] == "/boom"]
    assert boom and boom[0]["check"] == "server_error" and boom[0]["request_id"]
    assert not [f for f in doc["findings"] if f["route"] != "/boom"], doc["findings"]
    ops = {o["route"]: o for o in doc["operations"]}
    assert ops["/api/v1/users/{user_id}"]["requests"] > 0
    assert ops["/boom"]["status_counts"].get("500") == ops["/boom"]["requests"]
    assert ops["/boom"]["errors"] == 0


def test_routers_and_mounts(traced, tmp_path):
    with traced(argv=None, app="routers:app", app_dir=APPS, log_level="warning") as server:
        proc, doc, _ = bench(server, tmp_path)
    routes = {o["route"] for o in doc["operations"]}
    assert "/api/v2/shop/carts/{cart_id}" in routes and "/api/v2/shop/products" in routes
    bug = [f for f in doc["findings"] if f["check"] == "server_error"]
    assert bug and all(f["route"] == "/api/v2/shop/carts/{cart_id}" for f in bug), bug
    row = stored(server.db, bug[0]["request_id"])
    assert row[0] == "GET" and row[1] == "/api/v2/shop/carts/0" and row[3] == 500
    assert not [f for f in doc["findings"] if "products" in f["route"]]


def test_command_mode(timeglass_bin, tmp_path, port, app_env):
    db = tmp_path / "store.db"
    out = tmp_path / "b.json"
    argv = uvicorn_argv(port, app="seeded:app", app_dir=APPS, log_level="warning")
    proc = run_cli("bench", "--url", "http://127.0.0.1:%d" % port, "--db", db, "--op", "/ratio",
                   "--duration", "0.5", "--quiet", "--json", out, "--", *argv, env=app_env, timeout=300)
    doc = json.loads(out.read_text())
    assert doc["run_id"]
    f = [x for x in doc["findings"] if x["check"] == "server_error"]
    assert f and f[0]["route"] == "/ratio" and f[0]["request_id"]
    assert "Scorecard" in proc.stdout


def test_refuses_remote_and_bad_usage(timeglass_bin):
    proc = run_cli("bench", "--url", "http://192.0.2.1:8000", check=False)
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr
    proc = run_cli("bench", check=False)
    assert proc.returncode == 2
    proc = run_cli("bench", "--url", "http://127.0.0.1:1", "--quiet", check=False, timeout=60)
    assert proc.returncode == 2 and "openapi.json" in proc.stderr


def test_open_loop_rate(traced, tmp_path):
    with traced(argv=None, app="seeded:app", app_dir=APPS, log_level="warning") as server:
        proc, doc, _ = bench(server, tmp_path, "--no-probe", "--op", "GET /clean/search", "--rate", "200",
                             "--duration", "2")
    op = next(o for o in doc["operations"] if o["route"] == "/clean/search")
    assert doc["mode"] == "open"
    # 200 requests/s offered for 2 s: all sent on schedule, all answered
    assert 360 <= op["requests"] <= 410, op
    assert abs(op["rps"] - 200) < 30, op
    assert op["errors"] == 0
