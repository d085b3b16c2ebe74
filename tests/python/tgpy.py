"""Helpers shared by the tests of the timeglass Python package (fixtures are
in conftest.py). Named apart from tests/integration/tgtest.py so both suites
can run in one pytest session.

Environment: TIMEGLASS_BUILD, the build directory (default <repo>/build);
TIMEGLASS_TEST_PYTHON, the interpreter that runs the applications (default
/usr/bin/python3).
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_SRC = REPO / "python"
BOOTSTRAP = PYTHON_SRC / "timeglass" / "bootstrap"
APPS = Path(__file__).resolve().parent / "apps"
PYTHON = os.environ.get("TIMEGLASS_TEST_PYTHON", "/usr/bin/python3")
BUILD = Path(os.environ.get("TIMEGLASS_BUILD") or (REPO / "build")).resolve()
TIMEGLASS = BUILD / "cli" / "timeglass"
LIBRARY = BUILD / "preload" / "libtimeglass.so"

if str(PYTHON_SRC) not in sys.path:
    sys.path.insert(0, str(PYTHON_SRC))
# In-process tests must never write to a developer's store.
os.environ.pop("TIMEGLASS_DB", None)


def child_env(extra=None, bootstrap=False):
    """Environment for a child Python: the package importable, no inherited store."""
    env = dict(os.environ)
    for key in ("TIMEGLASS_DB", "TIMEGLASS_SOCK", "TIMEGLASS_NO_BOOTSTRAP", "TIMEGLASS_DISABLE",
                "TIMEGLASS_TEST_EVENTS", "LD_PRELOAD"):
        env.pop(key, None)
    paths = ([str(BOOTSTRAP)] if bootstrap else []) + [str(PYTHON_SRC), str(APPS)]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("server exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not listen on port %d" % port)


class Server:
    """A server process started by the `server` fixture."""

    def __init__(self, proc, port, log):
        self.proc = proc
        self.port = port
        self.log = log
        self.url = "http://127.0.0.1:%d" % port

    def stop(self, sig=signal.SIGINT, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("server did not stop on %s" % sig)
        return self.proc.returncode

    def output(self):
        return self.log.read_text(errors="replace")


def uvicorn_args(app="app_with_middleware:app", *extra):
    return ["-m", "uvicorn", app, "--app-dir", str(APPS), "--host", "127.0.0.1",
            "--port", "{port}", "--no-access-log", *extra]


def read_rows(db, sql="SELECT * FROM requests ORDER BY id", args=()):
    conn = sqlite3.connect(str(db))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def require_c_build():
    if not (TIMEGLASS.is_file() and os.access(TIMEGLASS, os.X_OK)):
        pytest.skip("%s is not built" % TIMEGLASS)
    if not LIBRARY.is_file():
        pytest.skip("%s is not built" % LIBRARY)
