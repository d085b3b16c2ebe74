"""`timeglass bench` against real apps recorded by `timeglass run`: every
seeded bug found with its route and the id of its recorded request, no
finding on a clean route, the JSON report's contract, exit statuses."""

import json
import os
import re
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tgtest import PYTHON, run_cli, uvicorn_argv

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


def test_saved_openapi_values_and_header(traced, tmp_path):
    """An app behind a bearer token that serves no /openapi.json: the
    operation comes from the saved document (--openapi), the one account
    that exists from --values, the token from --header. Every request gets
    past the token check to the account (no 401, no 404), and the token
    reaches neither the store nor the report's curl lines."""
    route = "/api/v1/accounts/{account_id}"
    account = "/api/v1/accounts/acct-7731"
    token = "tok-" + secrets.token_hex(16)
    spec = tmp_path / "openapi.json"
    spec.write_text(subprocess.run([PYTHON, "accounts.py"], cwd=APPS, capture_output=True, text=True,
                                   check=True).stdout)
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"account_id": "acct-7731"}))
    with traced(argv=None, app="accounts:app", app_dir=APPS, log_level="warning") as server:
        # the app's own document is switched off: the file is the only source
        missing = run_cli("bench", "--url", "http://127.0.0.1:%d" % server.port, "--db", server.db,
                          "--quiet", "--no-load", check=False, timeout=60)
        assert missing.returncode == 2 and "answered 404" in missing.stderr, missing.stderr
        proc, doc, md = bench(server, tmp_path, "--openapi", spec, "--values", values,
                              "--header", "Authorization: Bearer " + token)

    assert [(o["method"], o["route"]) for o in doc["operations"]] == [("GET", route)], doc["operations"]
    op = doc["operations"][0]
    assert op["loaded"] and op["requests"] > 0 and op["errors"] == 0, op
    assert op["status_counts"] == {"200": op["requests"]}, op["status_counts"]

    # the probe got past the token check too: the seeded bug (a non-ASCII id) is found
    findings = doc["findings"]
    assert [(f["check"], f["route"], f["status"]) for f in findings] == [("server_error", route, 500)], findings
    bug = findings[0]
    assert "non-ASCII" in bug["case"] and bug["request_id"], bug
    row = stored(server.db, bug["request_id"])
    assert row[0] == "GET" and row[1].startswith("/api/v1/accounts/Z%C3%BC") and row[3] == 500, row
    for f in findings:
        assert f["request"].startswith("curl ") and token not in f["request"], f["request"]
        assert "authorization" not in f["request"].lower(), f["request"]
    for text in (proc.stdout, proc.stderr, md, json.dumps(doc)):
        assert token not in text

    con = sqlite3.connect(server.db)
    try:
        rows = con.execute("SELECT id, path, status, headers FROM requests WHERE route = ?", (route,)).fetchall()
    finally:
        con.close()
    load = [r for r in rows if re.search(r"^X-TimeGlass-Bench: [0-9a-f]+-load$", r[3], re.M)]
    assert 0 < len(load) <= op["requests"], len(load)
    assert {(r[1], r[2]) for r in load} == {(account, 200)}
    # case 0: the valid request of discovery
    valid = [r for r in rows if re.search(r"^X-TimeGlass-Bench: [0-9a-f]+-0$", r[3], re.M)]
    assert [(r[1], r[2]) for r in valid] == [(account, 200)], valid
    # the header was sent with every request, and stored redacted
    assert rows and not [r for r in rows if r[2] == 401]
    assert all("Authorization: [redacted]\n" in r[3] for r in rows)
    store_files = [Path(d) / n for d, _, names in os.walk(os.path.dirname(server.db)) for n in names]
    assert any(f.name.startswith("run-") and f.suffix == ".json" for f in store_files), store_files
    for f in store_files:
        assert token.encode() not in f.read_bytes(), "the token is in %s" % f
    # the search above means something: the requests' text is in those files
    assert any(b"acct-7731" in f.read_bytes() for f in store_files)
