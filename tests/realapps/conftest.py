"""Fixtures of the real-app tests: apps shaped like the open-source FastAPI
backends users run (tests/realapps/*/), served by uvicorn under `timeglass
run`, behind a real nginx reverse proxy and directly, on a real PostgreSQL
that logs every statement, driven by concurrent keep-alive clients.

What the tests compare: the store against what the clients sent and got,
and against PostgreSQL's own log (log_statement=all). Every statement the
apps send carries its request's id in a sqlcommenter-style comment, so that
the log can be read per request.

Environment (besides tests/integration/tgtest.py's TIMEGLASS_BUILD,
TIMEGLASS_TEST_LIB, TIMEGLASS_TEST_PRELOAD_FIRST):
  TIMEGLASS_TEST_PYTHON   interpreter that runs the apps (default /usr/bin/python3)
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "sql"))

import pgharness  # noqa: E402
import tgtest  # noqa: E402

PYTHON = os.environ.get("TIMEGLASS_TEST_PYTHON", "/usr/bin/python3")
# Longer than timeglass run's own 30 s wait for its collector, which drains
# slowly under the sanitizers on a busy machine.
STOP_TIMEOUT = 45.0

# Every statement, with the backend pid and application name in front.
PG_LOGGING = ("log_statement = 'all'\nlog_min_duration_statement = 0\n"
              "log_line_prefix = '%m [%p] %a: '\nlog_error_verbosity = terse\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg():
    try:
        server = pgharness.PgServer(extra_conf=PG_LOGGING).start()
    except pgharness.Unavailable as e:
        pytest.fail("no PostgreSQL for the real-app tests: %s" % e)
    try:
        yield server
    finally:
        server.stop()


def create_database(pg, name, schema_sql):
    """A database of its own for one app, with its schema and seed rows."""
    import_psql = pgharness.find_bin("psql")
    base = ["-h", pg.dir, "-p", str(pg.port), "-U", pgharness.USER, "-v", "ON_ERROR_STOP=1", "-q"]
    subprocess.run([import_psql, *base, "-d", "postgres", "-c", "CREATE DATABASE %s" % name],
                   check=True, capture_output=True, timeout=60)
    subprocess.run([import_psql, *base, "-d", name, "-f", str(schema_sql)], check=True, capture_output=True,
                   timeout=60)
    return "host=127.0.0.1 port=%d dbname=%s user=%s password=%s sslmode=disable" % (
        pg.port, name, pgharness.USER, pgharness.PASSWORD)


class Nginx:
    """nginx as a reverse proxy on loopback in front of 127.0.0.1:upstream_port,
    as on a production host: X-Forwarded-For appended, keep-alive upstream
    connections reused across clients."""

    def __init__(self, tmp, upstream_port):
        self.bin = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(self.bin, os.X_OK):
            pytest.fail("nginx is missing (apt-get install nginx-light)")
        self.dir = Path(tempfile.mkdtemp(prefix="tg-nginx-", dir=tmp))
        self.port = free_port()
        for d in ("logs", "tmp"):
            (self.dir / d).mkdir()
        user = "user root;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text("""
%s
worker_processes 1;
pid %s/nginx.pid;
error_log %s/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
    uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
    upstream app { server 127.0.0.1:%d; keepalive 8; }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
""" % ((user, self.dir, self.dir) + (self.dir,) * 5 + (upstream_port, self.port)))
        self.proc = subprocess.Popen([self.bin, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                                      "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not pgharness.wait_port(self.port, 20):
            self.stop()
            pytest.fail("nginx did not start: %s" % (self.dir / "logs" / "error.log").read_text()[-2000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class App:
    """One app under `timeglass run` (uvicorn, one worker), stopped with SIGINT."""

    def __init__(self, tmp, app_dir, module, env, extra_args=()):
        self.db = tmp / "tg.db"
        self.port = free_port()
        self.log = open(tmp / "app.log", "w+")
        cmd = [str(tgtest.TIMEGLASS), "run", "-q", "--db", str(self.db), "--",
               PYTHON, "-m", "uvicorn", module, "--app-dir", str(app_dir), "--port", str(self.port),
               "--log-level", "warning", *extra_args]
        self.proc = subprocess.Popen(cmd, env=tgtest.timeglass_env(env), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + tgtest.START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("the app did not start:\n" + self.output())

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 2)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # What was still running, for the failure message.
                ps = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:24,time,args", "-g", str(self.proc.pid)],
                                    capture_output=True, text=True)
                self.log.write("\n[still running %.0f s after SIGINT]\n%s" % (STOP_TIMEOUT, ps.stdout))
                self.log.flush()
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        out = self.output()
        assert not tgtest.SANITIZER_MARK.search(out), out[-6000:]
        return self.proc.returncode


_LOG_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (\S*): (?:LOG|ERROR):  (statement|execute [^:]*): (.*)$")


def pg_statements(log_path, application):
    """[(backend pid, statement text)] that PostgreSQL logged for `application`,
    in log order (log_statement=all: one per simple query or execution). A
    statement's further lines follow its first, each indented with a tab."""
    out = []
    with open(log_path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("\t"):
                if out and out[-1] is not None:
                    out[-1] = (out[-1][0], out[-1][1] + "\n" + line[1:])
                continue
            m = _LOG_LINE.match(line)
            out.append((int(m.group(1)), m.group(4)) if m and m.group(2) == application else None)
    return [s for s in out if s is not None]


def record_app(pg, tmp_path_factory, name, kinds, clients, rounds, headers_of, n_of, extra_args=()):
    """Serves the app tests/realapps/NAME (app.main:app) under `timeglass run`
    behind nginx, on a database of its own made from its schema.sql (its DSN
    in NAME_DSN), sends it realapp.drive()'s traffic, and returns the
    recorded realapp.Run. The sampler has no CPU budget: the flame-graph
    checks count samples against the rate."""
    import realapp

    tmp = tmp_path_factory.mktemp(name)
    app_dir = HERE / name
    dsn = create_database(pg, name, app_dir / "schema.sql")
    app = App(tmp, app_dir, "app.main:app", {name.upper() + "_DSN": dsn, "TIMEGLASS_SAMPLE_BUDGET": "0"},
              extra_args=extra_args)
    proxy = Nginx(tmp, app.port)
    try:
        sent = realapp.drive(app.port, proxy.port, kinds, clients, rounds, headers_of=headers_of, n_of=n_of)
    finally:
        proxy.stop()
        rc = app.stop()
    assert rc == 0, app.output()[-4000:]
    return realapp.Run(app.db, sent, pg_statements(pg.log, name), kinds)
