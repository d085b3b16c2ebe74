"""Fixtures of the stack sampler tests: a real uvicorn + FastAPI app (app.py)
under `timeglass run`, on the Python named by TIMEGLASS_TEST_PYTHON
(default /usr/bin/python3), and `timeglass flame` on its store.

Environment (besides tests/integration/tgtest.py's TIMEGLASS_BUILD,
TIMEGLASS_TEST_LIB, TIMEGLASS_TEST_PRELOAD_FIRST):
  TIMEGLASS_TEST_PYTHON   interpreter that runs the app

The sampler's CPU budget is off in these runs (TIMEGLASS_SAMPLE_BUDGET=0):
the tests count samples against the rate asked for, and a busy or slow
machine would otherwise lower the rate under them. The budget has its own
tests (test_budget.py).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
import tgtest  # noqa: E402

PYTHON = os.environ.get("TIMEGLASS_TEST_PYTHON", "/usr/bin/python3")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The app under `timeglass run`; stop() ends it and completes the store."""

    def __init__(self, tmp, rate, extra_env=None):
        self.db = tmp / "tg.db"
        self.port = free_port()
        self.log = open(tmp / "run.log", "w+")
        env = tgtest.timeglass_env(dict({"TIMEGLASS_SAMPLE_BUDGET": "0"}, **(extra_env or {})))
        cmd = [str(tgtest.TIMEGLASS), "run", "-q", "--db", str(self.db), "--sample-rate", str(rate), "--",
               PYTHON, "-m", "uvicorn", "app:app", "--app-dir", str(HERE), "--port", str(self.port),
               "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + tgtest.START_TIMEOUT
        while time.time() < deadline and self.proc.poll() is None:
            if tgtest.port_listening(self.port):  # no probe connection: it would be traffic the app sees
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail("app did not start:\n" + self.output())

    def get(self, path, timeout=30):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=timeout) as r:
            return r.read()

    def drive(self, *paths):
        """GETs each path in turn, then stops the run, which must end with exit status 0."""
        try:
            for path in paths:
                self.get(path)
        finally:
            rc = self.stop()
        assert rc == 0, self.output()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=tgtest.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        out = self.output()
        assert not tgtest.SANITIZER_MARK.search(out), out[-6000:]
        return self.proc.returncode

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def flame(self, *args, check=True):
        r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(self.db), *args],
                           capture_output=True, text=True, env=tgtest.timeglass_env())
        if check:
            assert r.returncode == 0, r.stderr
        return r.stdout


def folded(text):
    """[(frames, count)] of folded output."""
    out = []
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        out.append((stack.split(";"), int(n)))
    return out


@pytest.fixture(scope="session", autouse=True)
def _built():
    tgtest.require_built()
    if not os.path.exists(PYTHON):
        pytest.skip("%s is not installed" % PYTHON)
