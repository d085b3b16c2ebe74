"""`timeglass ci --coverage-run`: the suite under coverage.py, its
percentage on the scorecard; a clear message when coverage.py is missing."""

import json
import os
from pathlib import Path

import pytest

from citools import load_json, run_ci


@pytest.fixture
def has_coverage():
    if not Path("/usr/lib/python3/dist-packages/coverage").is_dir():
        pytest.skip("python3-coverage is not installed")


def test_coverage_run_on_the_scorecard(tmp_path, has_coverage):
    out = tmp_path / "ci.json"
    r = run_ci(tmp_path, opts=["--coverage-run", "--json", str(out)])
    assert r.code == 0, r
    doc = load_json(out)
    card = doc.get("scorecard") or doc["score"]["scorecard"]
    cov = next(c for c in card if c["key"] == "coverage")
    assert cov["measured"], cov
    report = json.loads((tmp_path / "coverage" / "coverage.json").read_text())
    assert abs(cov["value"] - report["totals"]["percent_covered"]) < 0.05
    # the app's own code is measured, the tests are not
    files = list(report["files"])
    assert any(f.endswith("app.py") for f in files), files
    assert not any("/tests/" in "/" + f or f.startswith("tests/") for f in files), files
    assert "Test coverage" in r.out


def test_coverage_run_without_coverage_py(tmp_path):
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n")   # no site packages: no coverage.py
    os.chmod(python, 0o755)
    r = run_ci(tmp_path, opts=["--coverage-run"], cmd=[str(python), "-m", "pytest", "tests"])
    assert r.code == 2, r
    assert "coverage.py is not installed" in r.err and "python3-coverage" in r.err


def test_coverage_run_wants_a_pytest_command(tmp_path):
    r = run_ci(tmp_path, opts=["--coverage-run"], cmd=["/bin/true"])
    assert r.code == 2 and "--coverage-run wraps" in r.err, r
