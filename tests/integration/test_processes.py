"""Multi-process servers: every request is recorded once, with the worker's pid."""

import os
import threading
import time

import pytest

from rawhttp import build_request, exchange
from tgtest import (EXAMPLES, PYTHON, children, module_available, proc_cmdline, run_threads, summarize, wait_for)


def spawn_workers(pid):
    """multiprocessing 'spawn' children of pid (uvicorn --workers / --reload servers)."""
    return [c for c in children(pid) if any("spawn_main" in a for a in proc_cmdline(c))]


def fire(port, targets, threads=8):
    """Send each target on its own connection from a few threads; returns {client_addr: (target, resp)}."""
    results = {}
    lock = threading.Lock()
    errors = []

    def run(part):
        for t in part:
            try:
                resp, _, addr, _ = exchange(port, build_request("GET", t))
            except Exception as exc:  # reported below
                errors.append((t, exc))
                continue
            with lock:
                results[addr] = (t, resp)

    run_threads(lambda i: run(targets[i::threads]), threads)
    assert not errors, errors[:3]
    return results


def wait_processes(find, n, timeout, what):
    """Waits until find() lists n pids; returns them."""
    return wait_for(lambda: (lambda w: w if len(w) == n else None)(find()), timeout, what=what)


def wait_answers(port):
    """Waits until the app on port answers GET / (a worker accepts)."""
    wait_for(lambda: exchange(port, build_request("GET", "/"))[0].status == 200, 20)


def check_once_each(rows, results, allowed_pids, forbidden_pids):
    assert len(rows) == len(results), "expected %d rows:\n%s" % (len(results), summarize(rows))
    seen = set()
    for row in rows:
        addr = row["client_addr"]
        assert addr in results and addr not in seen, "unexpected or duplicate row %r" % row
        seen.add(addr)
        target, resp = results[addr]
        path, _, query = target.partition("?")
        assert (row["path"], row["query_string"], row["status"], row["error"]) == (path, query or None, resp.status, None), row
        assert row["response_bytes"] == resp.raw_len, row
        assert row["pid"] in allowed_pids, "pid %r is not a worker pid %r" % (row["pid"], allowed_pids)
        assert row["pid"] not in forbidden_pids, row


def test_uvicorn_workers(traced):
    targets = ["/items/%d?q=w" % i for i in range(40)]
    with traced(workers=2) as server:
        main = server.app_pid()
        workers = wait_processes(lambda: spawn_workers(main), 2, 20, "two uvicorn workers")
        # The port accepts as soon as the parent binds it; wait until both workers answer.
        wait_answers(server.port)
        time.sleep(0.5)
        results = fire(server.port, targets)
    assert server.returncode == 0, server.diagnostics()
    rows = [r for r in server.requests() if r["path"] != "/"]
    # workers are children of the uvicorn parent by construction (spawn_workers)
    check_once_each(rows, results, set(workers), {server.pid, main})


def test_uvicorn_reload(traced, tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    trigger = watched / "trigger.py"
    trigger.write_text("VALUE = 1\n")
    with traced(reload=True, reload_dir=watched) as server:
        main = server.app_pid()
        first = wait_processes(lambda: spawn_workers(main), 1, 20, "the reloader's server process")[0]
        wait_answers(server.port)
        before = fire(server.port, ["/items/%d?q=before" % i for i in range(10)], threads=2)
        # Touch a watched file: the reloader replaces its server process. It compares
        # mtimes with its previous scan, so keep moving the mtime forward until it notices.
        bump = [0]

        def reloaded():
            w = spawn_workers(main)
            if len(w) == 1 and w[0] != first:
                return w[0]
            bump[0] += 1
            trigger.write_text("VALUE = %d\n" % bump[0])
            t = time.time() + bump[0]
            os.utime(trigger, (t, t))
            return None

        try:
            second = wait_for(reloaded, 20, interval=0.5, what="a new server process after the reload")
        except AssertionError as exc:
            raise AssertionError("%s\n%s" % (exc, server.diagnostics()))
        wait_answers(server.port)
        after = fire(server.port, ["/items/%d?q=after" % i for i in range(10)], threads=2)
        assert spawn_workers(main) == [second], "reloaded more than once; the test cannot attribute pids"
    rows = [r for r in server.requests() if r["path"] != "/"]
    before_rows = [r for r in rows if r["query_string"] == "q=before"]
    after_rows = [r for r in rows if r["query_string"] == "q=after"]
    assert len(before_rows) + len(after_rows) == len(rows), summarize(rows)
    check_once_each(before_rows, before, {first}, {server.pid, main})
    check_once_each(after_rows, after, {second}, {server.pid, main})


def test_gunicorn_uvicorn_workers(traced, port):
    if not module_available("gunicorn"):
        pytest.skip("python3-gunicorn is not installed")
    argv = [PYTHON, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
            "-b", "127.0.0.1:%d" % port, "--chdir", str(EXAMPLES), "--graceful-timeout", "5", "app:app"]
    targets = ["/items/%d?q=g" % i for i in range(40)]
    with traced(argv=argv, port=port) as server:
        master = server.app_pid()
        workers = wait_processes(lambda: children(master), 2, 30, "two gunicorn workers")
        wait_answers(server.port)
        # Both workers import the app before they accept; give the second one a moment.
        time.sleep(1.0)
        results = fire(server.port, targets)
    rows = [r for r in server.requests() if r["path"] != "/"]
    check_once_each(rows, results, set(workers), {server.pid, master})
