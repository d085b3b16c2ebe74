"""The store in trouble: locked by another program, or on a full disk.

The app must keep answering at full speed whatever happens to the store, and
what can be kept is kept: a lock held for seconds loses nothing (the data
waits in the shared-memory rings), a full disk is reported in one line and
counted as lost data.
"""

import json
import os
import sqlite3
import subprocess
import time
import urllib.request

import pytest

from tgtest import read_requests, run_cli


def get(port, path="/"):
    t0 = time.monotonic()
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        r.read()
        return r.status, time.monotonic() - t0


def test_locked_store_loses_nothing(traced):
    with traced() as server:
        assert get(server.port)[0] == 200
        time.sleep(0.3)  # the run and the first request are in the store
        con = sqlite3.connect(server.db, timeout=5, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 3 s
        slowest = 0.0
        sent = 1
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            status, took = get(server.port)
            assert status == 200
            slowest = max(slowest, took)
            sent += 1
        con.execute("COMMIT")
        con.close()
        for _ in range(5):
            assert get(server.port)[0] == 200
            sent += 1
    rows = server.requests()
    assert len(rows) == sent, (len(rows), sent)
    assert slowest < 1.0, slowest  # the app never waited for the store
    assert "is locked by another program" in server.stderr()


def collector_pid(server):
    """The tg-collector child of the run."""
    out = subprocess.run(["pgrep", "-x", "-P", str(server.pid), "tg-collector"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def hammer(port, seconds, clients=4):
    """clients keep-alive connections sending GET / for `seconds`; returns the
    responses received (every one a 200 within a second)."""
    import http.client
    import threading
    counts, errors = [0] * clients, []

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                t0 = time.monotonic()
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                if r.status != 200 or time.monotonic() - t0 > 1.0:
                    errors.append((r.status, time.monotonic() - t0))
                counts[i] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    return sum(counts)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_full_disk_keeps_what_fits_counts_the_rest_and_resumes(traced, tmp_path):
    """A store on a 2 MiB tmpfs: what fits is kept, every request that did not
    fit is counted, the collector backs off (no spinning, bounded memory)
    while the disk is full, recording resumes once space frees up, and the
    run gets its end and exit status."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        db = str(mnt / "timeglass.db")
        with traced(db=db) as server:
            coll = collector_pid(server)
            sent = hammer(server.port, 4)  # fills the disk within a second or two
            # Traffic has stopped; the disk is full: the collector must not spin.
            time.sleep(0.5)
            cpu0, rss0 = cpu_seconds(coll), rss_kib(coll)
            time.sleep(3)
            idle_cpu, rss = cpu_seconds(coll) - cpu0, rss_kib(coll)
            sent += hammer(server.port, 2)
            # Space frees up (here the file system grows, as when the user
            # makes room): recording resumes.
            subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "room again" not in server.stderr():
                time.sleep(0.5)
            assert "room again" in server.stderr(), server.stderr()
            sent += hammer(server.port, 1, clients=1)
        assert server.returncode == 0
        warnings = [l for l in server.stderr().splitlines() if l.startswith("timeglass: warning")]
        assert 2 <= len(warnings) <= 4, warnings  # full; room again; the total at the end
        assert any("is full" in w for w in warnings), warnings
        con = sqlite3.connect(db)
        stored = con.execute("SELECT count(*) FROM requests").fetchone()[0]
        lost = dict(con.execute("SELECT kind, sum(events) FROM losses GROUP BY kind").fetchall())
        ended, status = con.execute("SELECT ended_unix_ns, exit_status FROM runs").fetchone()
        # Every request answered is a row or a counted loss (and the first
        # ones fitted; those after the space came back are stored).
        assert stored + lost.get("store_error", 0) == sent, (stored, lost, sent)
        assert 0 < stored and lost.get("store_error", 0) > 0, (stored, lost)
        assert ended is not None and status == 0
        assert idle_cpu < 0.3, idle_cpu   # backed off: not a busy loop
        assert rss < max(2 * rss0, 64 * 1024), (rss0, rss)
        proc = run_cli("runs", "--db", db, "--json")
        run = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()][0]
        assert run["lost_events"] >= lost["store_error"], run
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
