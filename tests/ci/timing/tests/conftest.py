"""A live uvicorn server (a child process: its requests reach TimeGlass on
the wire) on a socket bound here and handed over with --fd, so requests
queue from the start; and a keep-alive client for it."""

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def get():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--fd", str(sock.fileno()),
                             "--log-level", "warning"], cwd=str(APP_DIR), env=dict(os.environ),
                            pass_fds=(sock.fileno(),))
    sock.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(path):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status

    yield get
    conn.close()
    proc.terminate()
    proc.wait(timeout=10)
