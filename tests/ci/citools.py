"""Helpers of the `timeglass ci` tests: run the binary on the sample project."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).resolve().parent / "sample"
PYTHON = "/usr/bin/python3"
BUILD = Path(os.environ.get("TIMEGLASS_BUILD") or (REPO / "build")).resolve()
TIMEGLASS = BUILD / "cli" / "timeglass"
SUITE = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]


def env_for(extra=None):
    env = dict(os.environ)
    for key in ("TIMEGLASS_DB", "TIMEGLASS_SOCK", "TIMEGLASS_TEST_EVENTS", "LD_PRELOAD", "PYTEST_PLUGINS",
                "PYTHONPATH", "GITHUB_STEP_SUMMARY", "SAMPLE_INJECT", "PYTEST_ADDOPTS"):
        env.pop(key, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return env


class Result:
    def __init__(self, proc, db):
        self.proc = proc
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.db = db

    def __repr__(self):
        return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (self.code, self.out, self.err)


def run_ci(d, opts=(), inject="", cmd=None, env=None, db=None):
    """`timeglass ci --db D/s.db OPTS -- SUITE` in the sample directory."""
    db = db or str(Path(d) / "s.db")
    extra = dict(env or {})
    if inject:
        extra["SAMPLE_INJECT"] = inject
    argv = [str(TIMEGLASS), "ci", "--db", db] + list(opts)
    if cmd is not False:
        argv += ["--"] + list(cmd or SUITE)
    proc = subprocess.run(argv, cwd=str(SAMPLE), env=env_for(extra), capture_output=True, text=True, timeout=120)
    return Result(proc, db)


def load_json(path):
    return json.loads(Path(path).read_text())
