"""The sampler at 10 kHz against a workload that races with it (deep
recursion, exceptions, generators, coroutines, threads that come and go):
the app must finish cleanly (and, with the ASan library, without a sanitizer
report), most samples must be consistent, and racing ones are dropped and
counted as a loss. Run twice: with the sampler thread (timer: safe reads
racing with the app, the hard case) and with eval-clocked sampling (each
thread reads its own frames in the eval hook; a shorter run).

TIMEGLASS_RACE_SAMPLES (default 20000) is how many samples the run must
store: the workload runs until the store holds them (the test watches it),
so that a machine busy with other work gives a longer run, not fewer
samples; TIMEGLASS_RACE_SECONDS (default 6) is the nominal length, and the
run may take up to ten times that. The release bar is a million samples
under the ASan build:
  TIMEGLASS_BUILD=build-asan TIMEGLASS_TEST_LIB=build-asan/preload/libtimeglass.so \\
  TIMEGLASS_TEST_PRELOAD_FIRST=$(gcc -print-file-name=libasan.so) \\
  TIMEGLASS_RACE_SECONDS=60 TIMEGLASS_RACE_SAMPLES=1000000 \\
  /usr/bin/python3 -m pytest tests/stacks/test_racing.py"""
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import tgtest
from conftest import PYTHON

HERE = Path(__file__).resolve().parent


def stored_samples(db):
    """Samples the live store holds so far (0 while it cannot be read)."""
    try:
        with sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5) as c:
            return c.execute("SELECT coalesce(sum(count), 0) FROM samples").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("mode", ["timer", "eval"])
def test_racing_workload(tmp_path, mode):
    seconds = os.environ.get("TIMEGLASS_RACE_SECONDS", "6")
    want = int(os.environ.get("TIMEGLASS_RACE_SAMPLES", "20000"))
    if mode == "eval":
        seconds = str(min(float(seconds), 10.0))
        want = min(want, 20000)
    db = tmp_path / "race.db"
    stop = tmp_path / "stop"
    log = open(tmp_path / "race.log", "w+")
    limit = float(seconds) * 10
    proc = subprocess.Popen([str(tgtest.TIMEGLASS), "run", "-q", "--db", str(db), "--sample-rate", "10000", "--",
                             PYTHON, str(HERE / "racing.py"), str(limit), str(stop)],
                            stdout=log, stderr=subprocess.STDOUT,
                            # No CPU budget: this test wants every sample it can get.
                            env=tgtest.timeglass_env({"TIMEGLASS_SAMPLE_BUDGET": "0", "TIMEGLASS_SAMPLE_MODE": mode}))
    try:
        # The store holds samples a few seconds after they are taken (they
        # wait for their requests): stop the workload once it has enough.
        time.sleep(float(seconds))
        while proc.poll() is None and stored_samples(db) < want:
            time.sleep(0.5)
        stop.touch()
        rc = proc.wait(timeout=limit + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    out = log.read()
    assert rc == 0, out[-4000:]
    assert "racing: done" in out
    assert not tgtest.SANITIZER_MARK.search(out), out[-6000:]
    with sqlite3.connect(db) as c:
        samples, = c.execute("SELECT coalesce(sum(count), 0) FROM samples").fetchone()
        dropped, = c.execute("SELECT coalesce(sum(events), 0) FROM losses WHERE kind = 'py_sample_race'").fetchone()
        deepest, = c.execute("SELECT max(length(frames) - length(replace(frames, ',', '')) + 1) FROM stacks").fetchone()
    print("%s: samples %d, dropped as inconsistent %d, deepest %d" % (mode, samples, dropped, deepest))
    assert samples >= want, (samples, dropped)
    assert dropped < samples / 4, (samples, dropped)
    assert deepest >= 500
