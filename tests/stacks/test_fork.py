"""Fork under `timeglass run`: the sampler thread is stopped around fork(),
so a single-threaded app still is one when CPython 3.12+ checks (it warns,
and forking.py turns that warning into an error), and it samples again
afterwards in the parent (and on its own in the child)."""
import sqlite3
import subprocess
from pathlib import Path

import tgtest
from conftest import PYTHON, folded

HERE = Path(__file__).resolve().parent


def test_fork_looks_single_threaded_and_sampling_resumes(tmp_path):
    db = tmp_path / "fork.db"
    r = subprocess.run([str(tgtest.TIMEGLASS), "run", "-q", "--db", str(db), "--sample-rate", "1000", "--",
                        PYTHON, str(HERE / "forking.py")],
                       capture_output=True, text=True, timeout=120,
                       env=tgtest.timeglass_env({"TIMEGLASS_SAMPLE_BUDGET": "0"}))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "threads right after fork: 1 later: 2" in out, out
    flame = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(db), "--no-request", "--state", "running"],
                           capture_output=True, text=True, check=True).stdout
    before = sum(n for frames, n in folded(flame) if any(f.startswith("before_fork ") for f in frames))
    after = sum(n for frames, n in folded(flame) if any(f.startswith("after_fork ") for f in frames))
    assert before >= 100 and after >= 150, (before, after)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM processes").fetchone()[0] == 2
