"""Helpers shared by the TimeGlass integration tests (fixtures are in conftest.py).

Environment:
  TIMEGLASS_BUILD               build directory (default <repo>/build)
  TIMEGLASS_TEST_LIB            alternative libtimeglass.so (e.g. an ASan build),
                                passed to `timeglass run` as TIMEGLASS_LIB
  TIMEGLASS_TEST_PRELOAD_FIRST  a library put first in LD_PRELOAD (the ASan
                                runtime); ASAN_OPTIONS=detect_leaks=0 is set then
"""

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
APPS = Path(__file__).resolve().parent / "apps"  # apps written for these tests
PYTHON = "/usr/bin/python3"
BUILD = Path(os.environ.get("TIMEGLASS_BUILD") or (REPO / "build")).resolve()
TIMEGLASS = BUILD / "cli" / "timeglass"
LIBRARY = Path(os.environ.get("TIMEGLASS_TEST_LIB") or (BUILD / "preload" / "libtimeglass.so")).resolve()

SANITIZER_MARK = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |SUMMARY: UndefinedBehaviorSanitizer")
START_TIMEOUT = float(os.environ.get("TIMEGLASS_TEST_START_TIMEOUT", "30"))
STOP_TIMEOUT = 20.0


def timeglass_env(extra=None):
    """Environment for `timeglass ...` commands (sanitizer runtime and library override)."""
    env = dict(os.environ)
    # Never inherit a store location from the developer's shell.
    env.pop("TIMEGLASS_DB", None)
    if os.environ.get("TIMEGLASS_TEST_LIB"):
        env["TIMEGLASS_LIB"] = str(LIBRARY)
    first = os.environ.get("TIMEGLASS_TEST_PRELOAD_FIRST")
    if first:
        env["LD_PRELOAD"] = ":".join(p for p in (first, env.get("LD_PRELOAD", "")) if p)
        asan = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = ":".join(p for p in ("detect_leaks=0", asan) if p)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def require_built():
    if not TIMEGLASS.is_file() or not os.access(TIMEGLASS, os.X_OK):
        pytest.fail("%s is missing: build with scripts/build (or set TIMEGLASS_BUILD)" % TIMEGLASS)
    if not LIBRARY.is_file():
        pytest.fail("%s is missing: build with scripts/build" % LIBRARY)


def run_cli(*args, env=None, timeout=60, check=True):
    """Run `timeglass ARGS...`; returns CompletedProcess (text)."""
    proc = subprocess.run([str(TIMEGLASS), *map(str, args)], env=env or timeglass_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if SANITIZER_MARK.search(proc.stderr):
        raise AssertionError("sanitizer report from timeglass %s:\n%s" % (" ".join(map(str, args)), proc.stderr))
    if check and proc.returncode != 0:
        raise AssertionError("timeglass %s exited %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(map(str, args)), proc.returncode, proc.stdout, proc.stderr))
    return proc


def read_requests(db, run=None):
    """All requests of a run (default: latest) as dicts, ordered by start time.

    Returns (rows, stderr of `timeglass requests`)."""
    args = ["requests", "--db", db, "--json", "--limit", "10000000"]
    if run is not None:
        args += ["--run", run]
    proc = run_cli(*args)
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    rows.sort(key=lambda r: (r["start_unix_ns"], r["id"]))
    return rows, proc.stderr


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    """True if some socket listens on TCP port (read from /proc/net, without connecting:
    a probe connection would itself be traffic the app sees)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, StopIteration):
            continue
    return False


def start_dashboard(db, timeout=20, env=None, cwd=None):
    """`timeglass ui --port 0` on db: returns (proc, port) once it listens.
    The port is the one its banner names, so the test talks to this dashboard
    and not to whatever else took a port picked in advance."""
    import selectors
    proc = subprocess.Popen([str(TIMEGLASS), "ui", "--db", str(db), "--port", "0", "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env or timeglass_env(), cwd=cwd)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    banner = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in banner and time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            banner += chunk
    sel.close()
    m = re.search(rb"dashboard at http://[^\s]+:(\d+)/", banner)
    if not m:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError("timeglass ui named no address: %r %r" % (banner, err))
    return proc, int(m.group(1))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- /proc helpers -------------------------------------------------------------

def proc_ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(")") + 2:].split()[1])


def proc_comm(pid, tid=None):
    """Name of process pid, or of its thread tid."""
    try:
        with open("/proc/%d/comm" % pid if tid is None else "/proc/%d/task/%s/comm" % (pid, tid)) as f:
            return f.read().strip()
    except OSError:
        return None


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and proc_ppid(int(entry)) == pid:
            out.append(int(entry))
    return sorted(out)


def descendants(pid):
    out = []
    todo = [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wakeups(pid, thread=None):
    """Voluntary context switches (one per sleep, thus per wakeup) of
    process pid's main thread, or of its thread named `thread`; None if it
    has none such."""
    tids = [str(pid)]
    if thread is not None:
        tids = [t for t in os.listdir("/proc/%d/task" % pid) if proc_comm(pid, t) == thread]
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        return int(line.split()[1])
        except OSError:
            continue
    return None


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def run_threads(target, n):
    """Runs target(0), ..., target(n - 1) each in a thread of its own, all at
    once; returns when every one has ended."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class LocalHTTP:
    """An HTTP/1.1 server on loopback in this process (threads of its own)
    for the apps under test to call: answer(target) gives (content type,
    body bytes) for each GET; with tls (an ssl.SSLContext) it serves HTTPS.
    seen lists the targets it was sent."""

    def __init__(self, answer, tls=None):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                seen.append(self.path)
                ctype, body = answer(self.path)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = "%s://127.0.0.1:%d" % ("https" if tls is not None else "http", self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# -- the traced server ---------------------------------------------------------

class TracedServer:
    """`timeglass run -- CMD` running in its own session, with stdout/stderr in files."""

    def __init__(self, argv, db, port, workdir, env=None, quiet=True, tg_args=()):
        self.db = str(db)
        self.port = port
        self.workdir = Path(workdir)
        self.stdout_path = self.workdir / "app.stdout"
        self.stderr_path = self.workdir / "app.stderr"
        self.argv = argv
        cmd = [str(TIMEGLASS), "run", "--db", self.db]
        if quiet:
            cmd.append("--quiet")
        cmd += list(tg_args)
        cmd += ["--", *argv]
        self.cmd = cmd
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=env or timeglass_env(), cwd=str(REPO), start_new_session=True)
        self.returncode = None

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def stdout(self):
        if not self._out.closed:
            self._out.flush()
        return self.stdout_path.read_text(errors="replace")

    def sanitizer_errors(self):
        """Lines where AddressSanitizer or UBSan reported a problem in any traced process."""
        return [ln for ln in self.stderr().splitlines() if SANITIZER_MARK.search(ln)]

    def diagnostics(self):
        return "command: %s\n--- stderr (last 4000 chars) ---\n%s" % (" ".join(self.cmd), self.stderr()[-4000:])

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("timeglass run exited with %d before the app listened\n%s"
                                     % (self.proc.returncode, self.diagnostics()))
            if port_listening(self.port):
                return
            time.sleep(0.05)
        raise AssertionError("the app did not listen on port %d within %.0f s\n%s"
                             % (self.port, timeout, self.diagnostics()))

    def collector_pids(self):
        return [c for c in children(self.pid) if proc_comm(c) == "tg-collector"]

    def app_pid(self):
        """The direct child of `timeglass run` that runs CMD (not the collector)."""
        kids = [c for c in children(self.pid) if proc_comm(c) != "tg-collector"]
        assert len(kids) == 1, "expected one app child of timeglass run, found %r (%s)" % (
            kids, [proc_cmdline(k) for k in kids])
        return kids[0]

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGINT, timeout=STOP_TIMEOUT):
        """Send sig to `timeglass run` and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError("timeglass run did not exit within %.0f s after %s\n%s"
                                 % (timeout, signal.Signals(sig).name, self.diagnostics()))
        return self.returncode

    def wait(self, timeout=STOP_TIMEOUT):
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def kill_all(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)

    def close(self):
        if self.proc.poll() is None:
            self.kill_all()
        self._out.close()
        self._err.close()

    def requests(self, run=None):
        rows, _ = read_requests(self.db, run)
        return rows


def uvicorn_argv(port, http=None, loop=None, workers=None, reload=False, reload_dir=None,
                 log_level="info", access_log=True, extra=(), app="app:app", app_dir=EXAMPLES):
    argv = [PYTHON, "-m", "uvicorn", app, "--app-dir", str(app_dir),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    if http:
        argv += ["--http", http]
    if loop:
        argv += ["--loop", loop]
    if workers:
        argv += ["--workers", str(workers)]
    if reload:
        argv += ["--reload"]
        if reload_dir:
            argv += ["--reload-dir", str(reload_dir)]
    if not access_log:
        argv.append("--no-access-log")
    return argv + list(extra)


def open_store(db):
    """Read-only SQLite connection to a store."""
    return sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)


def run_losses(db, kind=None):
    """{kind: events} of the losses of the latest run (only `kind` if given)."""
    with contextlib.closing(open_store(db)) as con:
        rows = con.execute("SELECT kind, coalesce(sum(events), 0) FROM losses"
                           " WHERE run_id = (SELECT max(id) FROM runs) GROUP BY kind").fetchall()
    got = dict(rows)
    return got.get(kind, 0) if kind else got


def module_available(name):
    r = subprocess.run([PYTHON, "-c", "import %s" % name], capture_output=True)
    return r.returncode == 0



# -- row checks ----------------------------------------------------------------

def assert_fields(row, **expected):
    """Assert that row[k] == v for every k=v given, reporting every mismatch at once."""
    diffs = {k: "got %r, expected %r" % (row.get(k), v) for k, v in expected.items() if row.get(k) != v}
    assert not diffs, "request row %s (%s %s): %s" % (row.get("id"), row.get("method"), row.get("path"), diffs)


def assert_timing(row, t0_unix_ns=None, t1_unix_ns=None, slack_ns=1_000_000_000):
    """Offsets are within the request's duration; start lies in the test's wall-clock window."""
    d = row["duration_ns"]
    assert isinstance(d, int) and d >= 0, row
    for k in ("req_end_ns", "resp_start_ns"):
        if row.get(k) is not None:
            assert 0 <= row[k] <= d, "%s=%r outside [0, duration_ns=%d] in %r" % (k, row[k], d, row)
    if t0_unix_ns is not None:
        assert row["start_unix_ns"] >= t0_unix_ns - slack_ns, row
    if t1_unix_ns is not None:
        assert row["start_unix_ns"] + d <= t1_unix_ns + slack_ns, row


def summarize(rows):
    return "\n".join("  %s %s %s?%s -> %s err=%s conn=%s pid=%s" % (
        r.get("id"), r.get("method"), r.get("path"), r.get("query_string"), r.get("status"),
        r.get("error"), r.get("conn_id"), r.get("pid")) for r in rows[:60])
