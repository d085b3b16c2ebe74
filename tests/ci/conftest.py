"""Fixtures for the tests of `timeglass ci` and `timeglass score`.

They run the real build/cli/timeglass around the sample project in
sample/ (FastAPI, a TestClient suite and a live uvicorn suite), with faults
injected through SAMPLE_INJECT, and parse what it writes. Where this build's
SQL capture does not attribute a query to a request (in-process TestClient
requests), the N+1 tests add the query rows to the store themselves, in the
queries table's schema, and check the recorded run again with --run.

Environment: TIMEGLASS_BUILD, the build directory (default <repo>/build).
Run with: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/ci
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from citools import TIMEGLASS, run_ci  # noqa: E402

collect_ignore = ["sample", "timing"]  # their suites run under `timeglass ci`, not here


@pytest.fixture(scope="session")
def built():
    if not TIMEGLASS.exists():
        pytest.skip("build/cli/timeglass is not built")
    return TIMEGLASS


@pytest.fixture(scope="session")
def clean_run(built, tmp_path_factory):
    """One clean run of the sample suite with every output and a baseline."""
    d = tmp_path_factory.mktemp("clean")
    summary = d / "step_summary.md"
    summary.write_text("# earlier step\n")
    res = run_ci(d, ["--save-baseline", str(d / "baseline.json"), "--junit", str(d / "junit.xml"),
                     "--markdown", str(d / "report.md"), "--json", str(d / "report.json"),
                     "--events", str(d / "events.jsonl")],
                 env={"GITHUB_STEP_SUMMARY": str(summary)})
    res.dir = d
    return res
