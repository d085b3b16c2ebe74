"""The command line: version, runs listing, and bad usage (exit 2, one line on stderr)."""

import json
import shutil
import sqlite3

import pytest

from rawhttp import build_request, exchange
from tgtest import PYTHON, read_requests, run_cli


def test_version(timeglass_bin):
    proc = run_cli("--version")
    assert proc.stdout.strip() == "timeglass 0.1.0"


def assert_usage_error(*args):
    proc = run_cli(*args, check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, "timeglass %s exited %d, expected 2\n%s" % (args, proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("timeglass: "), "stderr: %r" % proc.stderr
    return lines[0]


def test_bad_usage(timeglass_bin, tmp_path):
    missing = tmp_path / "missing.db"
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not an SQLite database\n" * 100)
    assert_usage_error("--no-such-option")
    assert_usage_error("no-such-command")
    assert_usage_error("run")
    assert_usage_error("run", "--db", str(tmp_path / "x.db"))
    assert_usage_error("run", "--db", str(tmp_path / "x.db"), "--")
    assert_usage_error("run", "--bogus", "--", PYTHON, "-c", "pass")
    assert_usage_error("run", "--keep-runs", "not-a-number", "--", PYTHON, "-c", "pass")
    assert_usage_error("run", "--sample-mode", "sometimes", "--", PYTHON, "-c", "pass")
    assert_usage_error("flame", "--db", str(missing), "--all", "--format", "table")
    assert_usage_error("requests", "--db", str(missing))
    assert not missing.exists(), "reading must not create a store"
    assert_usage_error("requests", "--db", str(corrupt))
    assert_usage_error("runs", "--db", str(corrupt), "--json")
    assert_usage_error("requests", "--db", str(missing), "--limit", "x")
    assert_usage_error("requests", "--unknown-flag")


def test_newer_schema_is_refused(traced, tmp_path):
    with traced() as server:
        exchange(server.port, build_request("GET", "/"))
    newer = tmp_path / "newer.db"
    shutil.copy(server.db, newer)
    db = sqlite3.connect(str(newer))
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        db.close()
        pytest.fail("the store's schema version is not in PRAGMA user_version; update this test")
    db.execute("PRAGMA user_version = %d" % (version + 100))
    db.commit()
    db.close()
    line = assert_usage_error("requests", "--db", str(newer))
    assert "newer" in line or "version" in line, line


def test_runs_and_run_selection(traced, store):
    counts = [3, 5]
    for n in counts:
        with traced(db=store) as server:
            for i in range(n):
                assert exchange(server.port, build_request("GET", "/items/%d" % i))[0].status == 200
    proc = run_cli("runs", "--db", store, "--json")
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(runs) == 2, proc.stdout
    ids = sorted(r["id"] for r in runs)
    latest, _ = read_requests(store)
    assert len(latest) == counts[-1]
    assert {r["run_id"] for r in latest} == {ids[-1]}
    first, _ = read_requests(store, run=ids[0])
    assert len(first) == counts[0] and {r["run_id"] for r in first} == {ids[0]}
    limited = run_cli("requests", "--db", store, "--json", "--limit", "2").stdout.splitlines()
    assert len(limited) == 2
    human = run_cli("requests", "--db", store).stdout
    assert "/items/4" in human, human
    human_runs = run_cli("runs", "--db", store).stdout
    assert human_runs.strip(), "`timeglass runs` prints the runs"
