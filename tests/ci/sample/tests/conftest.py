"""Fixtures of the sample suite: an in-process TestClient and a live uvicorn
server (a child process, so its requests reach TimeGlass on the wire)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SAMPLE))


@pytest.fixture(scope="session")
def client():
    from fastapi.testclient import TestClient

    from app import app
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def live_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], cwd=str(SAMPLE), env=dict(os.environ))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
    yield "http://127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(timeout=10)
