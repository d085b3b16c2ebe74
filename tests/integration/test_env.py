"""TIMEGLASS_* environment variables are checked as their options are.

`timeglass run` refuses a bad value of any variable it reads, or passes to
the collector, the preload library, the Python bootstrap and the middleware:
one line on stderr, in the option's words, exit status 2, and the app not
started. Good values reach the app in one spelling. An app that changes its
own environment before it starts a child gets, in that child, a library that
clamps or ignores a bad value and says so once, instead of misreading it.
"""

import json
import os
import sqlite3
import subprocess

import pytest

from tgtest import PYTHON, TIMEGLASS, timeglass_env

SHOW_ENV = ("import json, os, sys; open(sys.argv[1], 'w').write(json.dumps("
            "{k: v for k, v in os.environ.items() if k.startswith('TIMEGLASS_')}))")


def run(tmp_path, env, *options):
    """`timeglass run [options] -- python SHOW_ENV`: (process, the app's
    TIMEGLASS_* variables or None when it did not start, store made)."""
    seen = tmp_path / "seen.json"
    db = tmp_path / "t.db"
    for f in (seen, db):
        if f.exists():
            f.unlink()
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(db), *options, "--", PYTHON, "-c", SHOW_ENV,
                           str(seen)], env=timeglass_env(env), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    return proc, json.loads(seen.read_text()) if seen.exists() else None, db.exists()


def refused(tmp_path, env, *options):
    """The one line of a refusal; checks status 2 and that nothing started."""
    proc, seen, made = run(tmp_path, env, *options)
    assert proc.returncode == 2, (env, options, proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("timeglass: "), proc.stderr
    assert seen is None and not made, "the app or the collector started"
    return lines[0]


# (variable, bad value, the option it stands for or None)
WITH_OPTION = [
    ("TIMEGLASS_SAMPLE_HZ", "-5", "--sample-rate"),
    ("TIMEGLASS_SAMPLE_HZ", "1e99", "--sample-rate"),
    ("TIMEGLASS_SAMPLE_HZ", "abc", "--sample-rate"),
    ("TIMEGLASS_SAMPLE_HZ", "100001", "--sample-rate"),
    ("TIMEGLASS_SQL_MAX", "-1", "--sql-max"),
    ("TIMEGLASS_SQL_MAX", "15", "--sql-max"),
    ("TIMEGLASS_SAMPLE_MODE", "bogus", "--sample-mode"),
    ("TIMEGLASS_TRACE_US", "-1", "--trace-threshold-us"),
    ("TIMEGLASS_TRACE_US", "1.5", "--trace-threshold-us"),
    ("TIMEGLASS_N_PLUS_ONE", "1", "--n-plus-one"),
    ("TIMEGLASS_KEEP_RUNS", "-1", "--keep-runs"),
    ("TIMEGLASS_RING_SIZE", "3", "--ring-size"),
]


@pytest.mark.parametrize("name,value,option", WITH_OPTION)
def test_bad_value_is_refused_as_its_option_is(timeglass_bin, tmp_path, name, value, option):
    by_env = refused(tmp_path, {name: value})
    by_option = refused(tmp_path, {}, option, value)
    assert by_env == by_option.replace(option, name), (by_env, by_option)
    assert "'%s'" % value in by_env


@pytest.mark.parametrize("name,value,text", [
    ("TIMEGLASS_TRACE", "maybe", "bad value for TIMEGLASS_TRACE: 'maybe' (want 1 or 0"),
    ("TIMEGLASS_CAPTURE_PARAMS", "sometimes", "bad value for TIMEGLASS_CAPTURE_PARAMS"),
    ("TIMEGLASS_NATIVE", "2", "bad value for TIMEGLASS_NATIVE: '2'"),
    ("TIMEGLASS_QUIET", "loud", "bad value for TIMEGLASS_QUIET"),
    ("TIMEGLASS_NO_BOOTSTRAP", "x", "bad value for TIMEGLASS_NO_BOOTSTRAP"),
    ("TIMEGLASS_NO_SQL", "-1", "bad value for TIMEGLASS_NO_SQL"),
    ("TIMEGLASS_DISABLE", "nope", "bad value for TIMEGLASS_DISABLE"),
    ("TIMEGLASS_NO_SPEEDUPS", "y", "bad value for TIMEGLASS_NO_SPEEDUPS"),
    ("TIMEGLASS_SAMPLE_BUDGET", "-1", "bad number for TIMEGLASS_SAMPLE_BUDGET: '-1' (want a percentage 0..100"),
    ("TIMEGLASS_SAMPLE_BUDGET", "abc", "bad number for TIMEGLASS_SAMPLE_BUDGET"),
    ("TIMEGLASS_SAMPLE_BUDGET", "101", "bad number for TIMEGLASS_SAMPLE_BUDGET"),
    ("TIMEGLASS_SAMPLE_BUDGET", "1e1", "bad number for TIMEGLASS_SAMPLE_BUDGET"),
    ("TIMEGLASS_SAMPLE_DOZE_MS", "-1", "bad number for TIMEGLASS_SAMPLE_DOZE_MS: '-1' (want an integer 0..10000)"),
    ("TIMEGLASS_SAMPLE_DOZE_MS", "10001", "bad number for TIMEGLASS_SAMPLE_DOZE_MS"),
    ("TIMEGLASS_BOOTSTRAP_DIR", "/nonexistent/boot", "TIMEGLASS_BOOTSTRAP_DIR=/nonexistent/boot: No such file"),
    ("TIMEGLASS_PYEXT_DIR", "/etc/hostname", "TIMEGLASS_PYEXT_DIR=/etc/hostname: Not a directory"),
    ("TIMEGLASS_LIB", "/nonexistent/libtimeglass.so", "TIMEGLASS_LIB=/nonexistent/libtimeglass.so: No such file"),
])
def test_bad_value_without_option_is_refused(timeglass_bin, tmp_path, name, value, text):
    assert text in refused(tmp_path, {name: value})


def test_bootstrap_dir_must_hold_the_bootstrap(timeglass_bin, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = refused(tmp_path, {"TIMEGLASS_BOOTSTRAP_DIR": str(empty)})
    assert "no sitecustomize.py there" in line


def test_good_values_reach_the_app_in_one_spelling(timeglass_bin, tmp_path):
    proc, seen, _ = run(tmp_path, {"TIMEGLASS_TRACE": "Yes", "TIMEGLASS_CAPTURE_PARAMS": "off",
                                   "TIMEGLASS_NATIVE": "false", "TIMEGLASS_SAMPLE_HZ": "0100",
                                   "TIMEGLASS_SAMPLE_BUDGET": "2.5", "TIMEGLASS_SAMPLE_MODE": "timer",
                                   "TIMEGLASS_SQL_MAX": "", "TIMEGLASS_QUIET": "on"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # TIMEGLASS_QUIET=on
    assert {k: seen.get(k) for k in ("TIMEGLASS_TRACE", "TIMEGLASS_CAPTURE_PARAMS", "TIMEGLASS_NATIVE",
                                     "TIMEGLASS_SAMPLE_HZ", "TIMEGLASS_SAMPLE_BUDGET", "TIMEGLASS_SAMPLE_MODE",
                                     "TIMEGLASS_SQL_MAX")} == {
        "TIMEGLASS_TRACE": "1", "TIMEGLASS_CAPTURE_PARAMS": "0", "TIMEGLASS_NATIVE": "0",
        "TIMEGLASS_SAMPLE_HZ": "100", "TIMEGLASS_SAMPLE_BUDGET": "2.5", "TIMEGLASS_SAMPLE_MODE": "timer",
        "TIMEGLASS_SQL_MAX": ""}


def test_a_bad_variable_is_refused_even_with_its_option(timeglass_bin, tmp_path):
    """As TIMEGLASS_KEEP_RUNS always was: the shell's bad setting is said,
    whatever the command line."""
    line = refused(tmp_path, {"TIMEGLASS_SAMPLE_HZ": "abc"}, "--sample-rate", "50")
    assert "TIMEGLASS_SAMPLE_HZ: 'abc'" in line
    line = refused(tmp_path, {"TIMEGLASS_KEEP_RUNS": "abc"}, "--keep-runs", "5")
    assert "TIMEGLASS_KEEP_RUNS: 'abc'" in line


def test_an_option_overrides_its_variable(timeglass_bin, tmp_path):
    proc, seen, _ = run(tmp_path, {"TIMEGLASS_SAMPLE_HZ": "200", "TIMEGLASS_SQL_MAX": "64"},
                        "--quiet", "--sample-rate", "50", "--sql-max", "100")
    assert proc.returncode == 0, proc.stderr
    assert seen["TIMEGLASS_SAMPLE_HZ"] == "50" and seen["TIMEGLASS_SQL_MAX"] == "100"


CHILD_APP = """
import os, sqlite3, sys, time
if sys.argv[1] == "parent":
    # the app changes its own environment, then starts a child
    os.environ.update(TIMEGLASS_SAMPLE_HZ="-5", TIMEGLASS_CAPTURE_PARAMS="no", TIMEGLASS_SQL_MAX="abc",
                      TIMEGLASS_NO_SQL="maybe")
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], "child", sys.argv[2]])
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE t (secret TEXT)")
db.execute("INSERT INTO t VALUES (?)", ("hunter2",))
t0 = time.monotonic()
while time.monotonic() - t0 < 0.5:  # busy: stack samples
    pass
"""


def test_library_in_a_child_clamps_or_ignores_and_says_so_once(timeglass_bin, tmp_path):
    """A negative rate was read as 100 kHz, "no" as yes (parameters, which
    may be personal data, captured), "abc" as the smallest SQL size."""
    db = tmp_path / "c.db"
    proc = subprocess.run([str(TIMEGLASS), "run", "--quiet", "--db", str(db), "--", PYTHON, "-c", CHILD_APP,
                           "parent", CHILD_APP], env=timeglass_env(), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == sorted([
        "timeglass: TIMEGLASS_SAMPLE_HZ='-5' is not an integer 0..100000; using 1000",
        "timeglass: TIMEGLASS_SQL_MAX='abc' is not an integer 16..32768; using 4096",
        "timeglass: TIMEGLASS_NO_SQL='maybe' is not 1 or 0; using 0",
    ])
    con = sqlite3.connect(str(db))
    try:
        (insert, params), = con.execute("SELECT sql, params FROM queries WHERE sql LIKE 'INSERT%'").fetchall()
        assert params is None  # TIMEGLASS_CAPTURE_PARAMS=no means no
        (samples,), = con.execute("SELECT coalesce(sum(count), 0) FROM samples").fetchall()
        (skipped,), = con.execute("SELECT coalesce(sum(events), 0) FROM losses WHERE kind = 'py_sample_budget'"
                                  ).fetchall()
    finally:
        con.close()
    assert 100 <= samples <= 1000, samples  # ~1000 Hz for 0.5 s, not 100 kHz
    assert skipped < 5000, skipped  # the sampler did not try 100 kHz against its budget
