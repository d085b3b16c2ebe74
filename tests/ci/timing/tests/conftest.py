"""A live uvicorn server (a child process: its requests reach TimeGlass on
the wire) and a keep-alive client for it."""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def get():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], cwd=str(APP_DIR), env=dict(os.environ))
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(path):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status

    yield get
    conn.close()
    proc.terminate()
    proc.wait(timeout=10)
