"""Fixtures for the tests of the timeglass Python package (python/timeglass).

Real FastAPI applications (apps/), run by real uvicorn processes or driven
in-process by Starlette's TestClient; the store is read back with sqlite3.
Tests that need the C parts (build/cli/timeglass, build/preload/
libtimeglass.so) skip when they are not built. Helpers are in tgpy.py.

Run with: /usr/bin/python3 -m pytest tests/python
"""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tgpy import PYTHON, Server, free_port, wait_port  # noqa: E402


@pytest.fixture
def server(tmp_path):
    """`with server(argv_after_python, env) as s:` runs tgpy.PYTHON ARGV
    (which must listen on s.port, passed as {port}) and stops it with SIGINT."""
    started = []

    @contextlib.contextmanager
    def start(args, env, port=None, cwd=None, prefix=()):
        port = port or free_port()
        log = tmp_path / ("server%d.log" % len(started))
        argv = list(prefix) + [PYTHON] + [a.format(port=port) for a in args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=str(cwd or tmp_path), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        s = Server(proc, port, log)
        started.append(s)
        try:
            wait_port(port, proc)
        except AssertionError as e:
            s.stop()
            raise AssertionError("%s\n%s" % (e, s.output())) from None
        yield s
        s.stop()

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


