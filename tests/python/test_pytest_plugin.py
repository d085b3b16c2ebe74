"""The pytest plugin writes test boundaries to TIMEGLASS_TEST_EVENTS, and
does nothing at all without it."""

import json
import subprocess

from tgpy import PYTHON, child_env

SUITE = '''
import pytest

def test_passes():
    pass

def test_fails():
    assert False

@pytest.mark.skip(reason="no")
def test_skipped():
    pass
'''


def run_pytest(tmp_path, env):
    (tmp_path / "test_suite.py").write_text(SUITE)
    return subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "timeglass.pytest_plugin",
                           "-p", "no:cacheprovider", "test_suite.py"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)


def test_writes_begin_and_end_lines(tmp_path):
    events = tmp_path / "events.jsonl"
    proc = run_pytest(tmp_path, child_env({"TIMEGLASS_TEST_EVENTS": str(events)}))
    assert "1 failed, 1 passed, 1 skipped" in proc.stdout, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    ends = {e["nodeid"].split("::")[1]: e for e in lines if e["event"] == "end"}
    begins = [e for e in lines if e["event"] == "begin"]
    assert len(begins) == 3
    assert {k: v["outcome"] for k, v in ends.items()} == {
        "test_passes": "passed", "test_fails": "failed", "test_skipped": "skipped"}
    for e in ends.values():
        assert e["end_mono_ns"] >= e["start_mono_ns"] > 0
        assert e["end_unix_ns"] >= e["start_unix_ns"] > 0
        assert e["pid"] == begins[0]["pid"]


def test_harmless_without_the_variable(tmp_path):
    proc = run_pytest(tmp_path, child_env())
    assert "1 failed, 1 passed, 1 skipped" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_suite.py"]
