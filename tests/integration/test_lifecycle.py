"""`timeglass run` as a supervisor: exit status, signals, crashes on either side, metrics."""

import http.client
import json
import os
import signal
import subprocess
import textwrap
import time

from rawhttp import RawConnection, build_request
from tgtest import (BUILD, PYTHON, TIMEGLASS, children, open_store, proc_comm, read_requests, run_cli,
                    start_dashboard, summarize, timeglass_env, wait_for, wakeups)


def run_traced(tmp_path, argv, timeout=60, **kw):
    db = tmp_path / "exit.db"
    return subprocess.run([str(TIMEGLASS), "run", "--db", str(db), "--quiet", "--", *argv],
                          env=timeglass_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def test_exit_status_is_passed_through(timeglass_bin, tmp_path):
    assert run_traced(tmp_path, [PYTHON, "-c", "import sys; sys.exit(3)"]).returncode == 3
    assert run_traced(tmp_path, [PYTHON, "-c", "pass"]).returncode == 0
    killed = run_traced(tmp_path, [PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert killed.returncode == 128 + signal.SIGKILL, killed
    out = run_traced(tmp_path, [PYTHON, "-c", "print('hello from the app')"])
    assert out.returncode == 0 and out.stdout == "hello from the app\n", out
    assert out.stderr == "", "--quiet prints nothing: %r" % out.stderr


def test_a_command_that_cannot_run_has_a_shells_status(timeglass_bin, tmp_path):
    """Not found: 127; found but not executable: 126; each said in one line,
    and the run's end recorded with that status. A script without #! runs
    with the shell, as execvp() runs it."""
    missing = run_traced(tmp_path, [str(tmp_path / "no-such-program")])
    assert missing.returncode == 127, missing
    assert missing.stderr == "timeglass: cannot run '%s': No such file or directory\n" % (tmp_path / "no-such-program")
    plain_file = tmp_path / "data.txt"
    plain_file.write_text("not a program\n")
    denied = run_traced(tmp_path, [str(plain_file)])
    assert denied.returncode == 126 and "Permission denied" in denied.stderr, denied
    script = tmp_path / "no-shebang"
    script.write_text("echo from the shell; exit 4\n")
    script.chmod(0o755)
    shell = run_traced(tmp_path, [str(script)])
    assert (shell.returncode, shell.stdout) == (4, "from the shell\n"), shell
    db = open_store(str(tmp_path / "exit.db"))
    try:
        assert [r[0] for r in db.execute("SELECT exit_status FROM runs ORDER BY id")] == [127, 126, 4]
    finally:
        db.close()


def test_not_quiet_prints_one_line(timeglass_bin, tmp_path):
    db = tmp_path / "loud.db"
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(db), "--", PYTHON, "-c", "pass"],
                          env=timeglass_env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("timeglass: recording run "), proc.stderr
    assert str(db) in lines[0], lines[0]


def test_sigterm_and_sigint_reach_the_app(traced, tmp_path, port):
    marker = tmp_path / "got-signal"
    script = tmp_path / "sigapp.py"
    script.write_text(textwrap.dedent("""
        import signal, socket, sys, time
        def handler(signum, frame):
            open(sys.argv[1], "w").write(signal.Signals(signum).name)
            sys.exit(7)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen()
        while True:
            time.sleep(0.1)
    """))
    for sig in (signal.SIGTERM, signal.SIGINT):
        if marker.exists():
            marker.unlink()
        with traced(argv=[PYTHON, str(script), str(marker), str(port)], port=port, stop=False) as server:
            status = server.stop(sig)
        assert status == 7, "exit status %r, app stderr:\n%s" % (status, server.diagnostics())
        assert marker.read_text() == sig.name


def test_group_signal_reaches_the_app_once(traced, tmp_path, port):
    """A signal to the whole process group (kill -INT -PGID, systemd's stop,
    a test harness's killpg) reaches the app directly: `timeglass run` must
    not pass it on a second time (a second SIGINT makes uvicorn skip its
    graceful shutdown, and can deadlock its --workers supervisor). One sent
    to `timeglass run` alone is passed on, once."""
    log = tmp_path / "signals"
    script = tmp_path / "countapp.py"
    script.write_text(textwrap.dedent("""
        import signal, socket, sys, time
        got = []
        def handler(signum, frame):
            got.append(signal.Signals(signum).name)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(s, handler)
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen()
        while not got or got[-1] != "SIGINT":
            time.sleep(0.02)
        time.sleep(1.0)  # a late second copy would land here
        open(sys.argv[1], "w").write(" ".join(got))
        sys.exit(3)
    """))
    with traced(argv=[PYTHON, str(script), str(log), str(port)], port=port, stop=False) as server:
        for sig in (signal.SIGUSR1, signal.SIGTERM):
            os.killpg(server.proc.pid, sig)
            time.sleep(0.5)
        server.send_signal(signal.SIGUSR1)  # to `timeglass run` alone
        time.sleep(0.5)
        os.killpg(server.proc.pid, signal.SIGINT)
        status = server.wait()
    assert status == 3, "exit status %r, app stderr:\n%s" % (status, server.diagnostics())
    assert log.read_text().split() == ["SIGUSR1", "SIGTERM", "SIGUSR1", "SIGINT"]


def test_app_killed_by_signal_status(traced):
    with traced(stop=False) as server:
        app = server.app_pid()
        os.kill(app, signal.SIGKILL)
        status = server.wait()
    assert status == 128 + signal.SIGKILL, status


def get(conn, target):
    t0 = time.monotonic()
    conn.request("GET", target)
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.monotonic() - t0


def dashboard_runs(db):
    """GET /api/runs of `timeglass ui` on db."""
    ui, port = start_dashboard(db)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/runs")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:300]
        return json.loads(body)["runs"]
    finally:
        ui.terminate()
        ui.wait(timeout=15)
        ui.stdout.close()
        ui.stderr.close()


def test_killed_collector_run_still_ends(traced):
    """SIGKILL of the collector mid-run: the supervisor records the run's end
    (when the app stopped, with its status), for `timeglass runs` and the
    dashboard alike, instead of a run that never ends."""
    with traced() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(5):
            assert get(conn, "/items/%d" % i)[0] == 200
        conn.close()
        wait_for(lambda: len(server.requests()) == 5, 10, what="the requests in the store")
        os.kill(server.collector_pids()[0], signal.SIGKILL)
        wait_for(lambda: not server.collector_pids(), 5, what="the collector to die")
        killed_ns = time.time_ns()
        time.sleep(0.3)
        stopped_ns = time.time_ns()
    assert server.returncode == 0, server.diagnostics()
    assert "the collector was killed by signal 9" in server.stderr()
    runs = [json.loads(line) for line in run_cli("runs", "--db", server.db, "--json").stdout.splitlines()]
    assert len(runs) == 1
    run = runs[0]
    assert run["exit_status"] == 0
    assert run["ended_unix_ns"] is not None and stopped_ns <= run["ended_unix_ns"] <= time.time_ns()
    assert run["duration_ns"] == run["ended_unix_ns"] - run["started_unix_ns"]
    assert run["requests"] == 5
    if not (BUILD / "server" / "timeglass-ui").exists():
        return  # a build without the dashboard (no civetweb): `timeglass runs` said it
    (ui_run,) = dashboard_runs(server.db)
    assert ui_run["live"] is False and ui_run["exit_status"] == 0
    assert ui_run["ended_unix_ns"] == str(run["ended_unix_ns"])
    assert killed_ns < int(ui_run["ended_unix_ns"])


def test_killed_collector_keeps_the_apps_exit_status(timeglass_bin, tmp_path):
    db = tmp_path / "k.db"
    go = tmp_path / "go"
    app = "import os, sys, time\nwhile not os.path.exists(%r): time.sleep(0.02)\nsys.exit(3)\n" % str(go)
    proc = subprocess.Popen([str(TIMEGLASS), "run", "--db", str(db), "--quiet", "--", PYTHON, "-c", app],
                            env=timeglass_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: [c for c in children(proc.pid) if proc_comm(c) == "tg-collector"]
                 and db.exists(), 10, what="the collector")
        time.sleep(0.3)  # the run is in the store
        (coll,) = [c for c in children(proc.pid) if proc_comm(c) == "tg-collector"]
        os.kill(coll, signal.SIGKILL)
        wait_for(lambda: coll not in children(proc.pid), 5, what="the collector to die")
        go.touch()
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    (run,) = [json.loads(line) for line in run_cli("runs", "--db", db, "--json").stdout.splitlines()]
    assert run["exit_status"] == 3 and run["ended_unix_ns"] is not None


def test_app_survives_collector_sigkill(traced):
    with traced() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(20):
            assert get(conn, "/items/%d" % i)[0] == 200
        collectors = server.collector_pids()
        assert len(collectors) == 1, "expected one tg-collector child, found %r" % collectors
        os.kill(collectors[0], signal.SIGKILL)
        wait_for(lambda: not server.collector_pids(), 5, what="the collector to die")
        err_before = server.stderr()
        t0 = time.monotonic()
        timings = []
        for i in range(300):  # more events than a small ring would hold
            status, took = get(conn, "/items/%d?q=after-kill" % i)
            assert status == 200
            timings.append(took)
        fresh = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(20):
            assert get(fresh, "/")[0] == 200
        total = time.monotonic() - t0
        conn.close()
        fresh.close()
        assert max(timings) < 1.0, "a request took %.2f s after the collector died" % max(timings)
        assert total < 15, total
    assert server.returncode == 0, "timeglass run must still return the app's status\n" + server.diagnostics()
    new_err = server.stderr()[len(err_before):]
    tg_lines = [ln for ln in server.stderr().splitlines() if "timeglass" in ln.lower()]
    assert len(tg_lines) <= 1, "timeglass spammed the app's stderr:\n" + "\n".join(tg_lines[:20])
    assert "Traceback" not in new_err, new_err[-3000:]


def test_requests_survive_app_sigkill(traced):
    done = []
    with traced(stop=False) as server:
        app = server.app_pid()
        with RawConnection(server.port) as conn:
            for i in range(50):
                req = build_request("GET", "/items/%d?q=before-kill" % i)
                conn.send(req)
                resp = conn.read_response()
                assert resp.status == 200
                done.append((i, len(req), resp.raw_len))
        os.kill(app, signal.SIGKILL)
        status = server.wait()
    assert status == 128 + signal.SIGKILL
    rows = [r for r in server.requests() if r["query_string"] == "q=before-kill"]
    assert len(rows) == len(done), "completed requests lost after the app was killed:\n" + summarize(rows)
    for row, (i, req_len, resp_len) in zip(rows, done):
        assert (row["path"], row["status"], row["request_bytes"], row["response_bytes"], row["error"]) == \
            ("/items/%d" % i, 200, req_len, resp_len, None), row
        assert row["pid"] == app


def test_process_metrics_are_sampled(traced, store):
    with traced(db=store) as server:
        app = server.app_pid()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        t_end = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < t_end:
            assert get(conn, "/sync")[0] == 200
            n += 1
        conn.close()
    db = open_store(store)
    try:
        cols = [r[1] for r in db.execute("PRAGMA table_info(processes)")]
        key = "id" if "id" in cols else "rowid"
        proc_rows = db.execute("SELECT %s, exe, cmdline FROM processes WHERE pid = ?" % key, (app,)).fetchall()
        assert len(proc_rows) == 1, "processes rows for the uvicorn pid: %r" % proc_rows
        pid_key, exe, cmdline = proc_rows[0]
        assert "uvicorn" in (cmdline or ""), cmdline
        samples = db.execute(
            "SELECT ts_unix_ns, cpu_user_ns, cpu_sys_ns, rss_bytes FROM process_metrics"
            " WHERE process_id = ? ORDER BY ts_unix_ns", (pid_key,)).fetchall()
    finally:
        db.close()
    # sampled every 100 ms over a run of > 1.5 s
    assert len(samples) >= 8, "only %d metric samples" % len(samples)
    low = [(i, s) for i, s in enumerate(samples) if s[3] <= 1_000_000]
    assert not low, "samples (index, row) with rss_bytes <= 1 MB of %d: %r" % (len(samples), low)
    cpu = [s[1] + s[2] for s in samples]
    assert cpu == sorted(cpu), "CPU time never goes backwards"
    assert cpu[-1] - cpu[0] > 50_000_000, "%d busy requests used CPU: %r" % (n, cpu)
    ts = [s[0] for s in samples]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert max(gaps) < 500_000_000, gaps


def test_an_idle_app_costs_few_commits(traced, store):
    """An app that serves nothing still has its metrics (every 100 ms) and
    samples recorded, but the collector commits them in batches at most
    ~3 times a second: each commit rewrites the last page of every table
    and index it touches, so ten a second kept the disk busy (1 MB/s) for
    an app doing nothing. A reader sees each commit as a new data_version."""
    with traced(db=store) as server:
        server.app_pid()
        time.sleep(1.0)
        db = open_store(store)
        try:
            versions = set()
            first = db.execute("SELECT count(*) FROM process_metrics").fetchone()[0]
            t_end = time.monotonic() + 3.0
            while time.monotonic() < t_end:
                versions.add(db.execute("PRAGMA data_version").fetchone()[0])
                time.sleep(0.01)
            time.sleep(0.5)
            later = db.execute("SELECT count(*) FROM process_metrics").fetchone()[0]
        finally:
            db.close()
    # 300 ms apart: about ten commits in 3 s (thirty with a commit per 100 ms)
    assert len(versions) - 1 <= 16, "%d commits in 3 s of idle" % (len(versions) - 1)
    # the metrics keep their 100 ms period: some 35 rows in 3.5 s
    assert later - first >= 20, "only %d metrics rows in 3.5 s" % (later - first)


def test_an_idle_app_wakes_the_collector_seldom(traced, store):
    """While the app waits for work (its sampler sends a few samples a
    second), the collector looks at the rings every 50 ms instead of every
    10 ms: a hundred wakeups a second were most of an idle run's collector
    CPU. The next request is stored as before."""
    with traced(db=store) as server:
        server.app_pid()
        time.sleep(1.0)
        collector, = server.collector_pids()
        w0, t0 = wakeups(collector), time.monotonic()
        time.sleep(2.0)
        w1, t1 = wakeups(collector), time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        wait_for(lambda: len(read_requests(store)[0]) == 1, 2.0, what="the request in the store")
    # about 20 looks and 10 process samples a second; 100 looks before
    assert w1 - w0 < 50 * (t1 - t0), "%d wakeups in %.1f s" % (w1 - w0, t1 - t0)
