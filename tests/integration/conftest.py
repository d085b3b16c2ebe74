"""Fixtures for the TimeGlass integration tests.

These tests run the real `timeglass` binary around a real uvicorn/FastAPI
application (examples/app.py) and check what lands in the store. Nothing is
mocked. Helpers live in tgtest.py; byte-exact HTTP in rawhttp.py. The
environment variables the suite reads are listed in tgtest.py.
"""

import contextlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tgtest import (  # noqa: E402
    LIBRARY, TIMEGLASS, TracedServer, free_port, require_built, timeglass_env, uvicorn_argv,
)


def pytest_report_header(config):
    return "timeglass: %s (library %s)" % (TIMEGLASS, LIBRARY)


@pytest.fixture(scope="session")
def timeglass_bin():
    require_built()
    return TIMEGLASS


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def store(tmp_path):
    """Path of the store the `traced` fixture uses by default."""
    (tmp_path / "store").mkdir(exist_ok=True)
    return str(tmp_path / "store" / "timeglass.db")


@pytest.fixture
def app_env(tmp_path):
    """Environment with the example app's notes database inside the test's tmp dir."""
    return timeglass_env({"TIMEGLASS_EXAMPLE_DB": str(tmp_path / "notes.db")})


@pytest.fixture
def traced(timeglass_bin, tmp_path, app_env):
    """Context manager factory: `with traced(argv=None, port=..., **uvicorn_opts) as server:`.

    Starts `timeglass run --db <tmp> --quiet -- <argv>` (default: uvicorn on the
    example app), waits until the port accepts connections, and on exit stops it
    with SIGINT and waits. `server.returncode` holds the exit status after the block.
    """
    started = []

    @contextlib.contextmanager
    def start(argv=None, port=None, db=None, env=None, wait=True, stop=True, tg_args=(), quiet=True, **opts):
        port = port or free_port()
        if argv is None:
            argv = uvicorn_argv(port, **opts)
        if db is None:
            (tmp_path / "store").mkdir(exist_ok=True)
            db = str(tmp_path / "store" / "timeglass.db")
        workdir = tmp_path / ("server%d" % len(started))
        workdir.mkdir(exist_ok=True)
        server = TracedServer(argv, db, port, workdir, env=env or app_env, quiet=quiet, tg_args=tg_args)
        started.append(server)
        try:
            if wait:
                server.wait_ready()
            yield server
            if stop and server.proc.poll() is None:
                server.stop()
            elif server.proc.poll() is not None:
                server.returncode = server.proc.returncode
            reports = server.sanitizer_errors()
            assert not reports, "sanitizer report in the traced app's stderr:\n%s\n%s" % (
                "\n".join(reports[:10]), server.diagnostics())
        finally:
            server.close()

    yield start
    for server in started:
        server.close()


