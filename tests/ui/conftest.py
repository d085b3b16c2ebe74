"""Fixtures of the dashboard API tests: a fixture store and a running
`timeglass-ui` (TIMEGLASS_UI_CMD, else build/server/timeglass-ui) on a free
port."""
import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import fixture  # noqa: E402


def ui_command():
    cmd = os.environ.get("TIMEGLASS_UI_CMD")
    if cmd:
        return shlex.split(cmd)
    for build in ("build", "build-ui"):
        exe = os.path.join(ROOT, build, "server", "timeglass-ui")
        if os.access(exe, os.X_OK):
            return [exe]
    pytest.skip("no timeglass-ui: build it (meson setup build && ninja -C build) or set TIMEGLASS_UI_CMD")


SANITIZER_REPORT = re.compile(r"runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running dashboard; get() returns (status, headers, body)."""

    def __init__(self, db, extra=(), env=None):
        self.db = db
        self.proc = subprocess.Popen(ui_command() + ["--db", db, "--port", "0", "--no-open", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **(env or {})))
        # The banner names the port it bound: no port picked in advance that
        # something else could take first.
        self.banner = self.proc.stdout.readline()
        m = re.search(r"dashboard at http://\S+:(\d+)/", self.banner)
        if not m:
            self.proc.kill()
            raise RuntimeError("timeglass-ui named no address: %r %s" % (self.banner, self.proc.stderr.read()))
        self.port = int(m.group(1))

    def get(self, path, host=None, method="GET", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": host if host is not None else "127.0.0.1:%d" % self.port}
        h.update(headers or {})
        if host is False:
            conn.putrequest(method, path, skip_host=True)
            conn.endheaders()
        else:
            conn.request(method, path, headers=h)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def json(self, path, expect=200):
        status, headers, body = self.get(path)
        assert status == expect, (path, status, body[:300])
        assert headers["content-type"].startswith("application/json")
        return json.loads(body)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        # A sanitized build (scripts/test runs these tests on build-asan's
        # dashboard too) reports on stderr and carries on.
        reports = [ln for ln in err.splitlines() if SANITIZER_REPORT.search(ln)]
        assert not reports, "sanitizer report from timeglass-ui:\n%s" % "\n".join(reports[:10])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("store") / "timeglass.db")
    fixture.build(path)
    return path


@pytest.fixture(scope="module")
def server(store):
    s = Server(store)
    yield s
    s.stop()


@pytest.fixture
def make_server():
    started = []

    def make(db, extra=()):
        s = Server(db, extra)
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()
