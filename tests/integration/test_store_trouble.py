"""The store in trouble: locked by another program, or on a full disk.

The app must keep answering at full speed whatever happens to the store, and
what can be kept is kept: a lock held for seconds loses nothing (the data
waits in the shared-memory rings), a full disk is reported in one line and
counted as lost data.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from tgtest import PYTHON, TIMEGLASS, free_port, read_requests, run_cli, run_threads, timeglass_env, uvicorn_argv


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

    run_threads(client, clients)
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
        # What was kept is whole: no sample names a stack, and no stack a
        # frame, that went with a batch the full disk rolled back.
        orphans = con.execute("SELECT count(*) FROM samples s LEFT JOIN stacks st ON st.id = s.stack_id"
                              " WHERE st.id IS NULL").fetchone()[0]
        frame_ids = {i for (i,) in con.execute("SELECT id FROM frames")}
        used = {int(f) for (fs,) in con.execute("SELECT frames FROM stacks") for f in fs.split(",") if f}
        samples = con.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert samples > 0 and orphans == 0 and used <= frame_ids, (samples, orphans, sorted(used - frame_ids)[:10])
        assert idle_cpu < 0.3, idle_cpu   # backed off: not a busy loop
        assert rss < max(2 * rss0, 64 * 1024), (rss0, rss)
        proc = run_cli("runs", "--db", db, "--json")
        run = [json.loads(l) for l in proc.stdout.splitlines() if l.strip()][0]
        assert run["lost_events"] >= lost["store_error"], run
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


REPORTS_APP = """
import asyncio
import os
import sqlite3
import time

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException

KINDS = 120
AUDIT_DB = os.environ["REPORTS_AUDIT_DB"]
AUDIT_DELAY = float(os.environ.get("REPORTS_AUDIT_DELAY", "0"))


async def audit(kind):
    # After the response: an audit row, a few seconds later.
    await asyncio.sleep(AUDIT_DELAY)
    with sqlite3.connect(AUDIT_DB, timeout=10) as db:
        db.execute("INSERT INTO audit (kind) VALUES (%d)" % kind)


def burn(seconds):
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        x += 1
    return x


# One builder per kind of report, each its own function (and frame).
builders = {}
for _k in range(KINDS):
    _ns = {"burn": burn}
    exec("def build_report_%d(ms):\\n    return burn(ms / 1000.0)\\n" % _k, _ns)
    builders[_k] = _ns["build_report_%d" % _k]


def builder(kind: int):
    if kind not in builders:
        raise HTTPException(404, "no such report")
    return builders[kind]


router = APIRouter(prefix="/reports")


@router.get("/{kind}")
def report(kind: int, background: BackgroundTasks, ms: int = 6, build=Depends(builder)):
    build(ms)
    background.add_task(audit, kind)
    return {"kind": kind}


app = FastAPI()
app.include_router(router)

with sqlite3.connect(AUDIT_DB) as _db:
    _db.execute("CREATE TABLE IF NOT EXISTS audit (kind INTEGER)")


@app.get("/")
async def health():
    return {"ok": True}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_full_disk_forgets_ids_it_rolled_back(traced, tmp_path):
    """Requests, frames and stacks first seen in the batch that found the
    disk full go with it, and SQLite gives their ids to later rows. Frames
    seen again once there is room must be stored again, not named by the
    ids they had in the lost batch: every sample's stack and every stack's
    frames are in the store at the end, and a report's samples name its own
    builder. The audit query each report runs in a background task seconds
    after its response lands on its own report or on none, never on a
    request that took the lost one's id."""
    import http.client
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    app_dir = tmp_path / "reports"
    app_dir.mkdir()
    (app_dir / "reports_app.py").write_text(REPORTS_APP)
    kinds = 120
    try:
        db = str(mnt / "timeglass.db")
        port = free_port()
        argv = uvicorn_argv(port, app="reports_app:app", app_dir=app_dir, log_level="warning")
        env = dict(timeglass_env({"REPORTS_AUDIT_DB": str(app_dir / "audit.db"), "REPORTS_AUDIT_DELAY": "4"}))
        with traced(argv=argv, port=port, db=db, env=env) as server:
            # Reports of every kind in turn, each kind's builder first seen
            # while GET / fills the disk around it.
            stop = []

            def reports():
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                k = 0
                while not stop:
                    conn.request("GET", "/reports/%d?ms=4" % (k % kinds))
                    conn.getresponse().read()
                    k += 1
                conn.close()

            t = threading.Thread(target=reports)
            t.start()
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and "is full" not in server.stderr():
                    hammer(server.port, 0.5, clients=3)
                assert "is full" in server.stderr(), server.stderr()
                time.sleep(0.5)
            finally:
                stop.append(1)
                t.join()
            subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "room again" not in server.stderr():
                get(server.port)
                time.sleep(0.2)
            assert "room again" in server.stderr(), server.stderr()
            # Every builder again, now that there is room; then the audits
            # of the last reports have time to run.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(3):
                for k in range(kinds):
                    conn.request("GET", "/reports/%d?ms=8" % k)
                    conn.getresponse().read()
            conn.close()
            time.sleep(5)
        assert server.returncode == 0
        con = sqlite3.connect(db)
        samples, orphans = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE st.id IS NULL) FROM samples s"
            " LEFT JOIN stacks st ON st.id = s.stack_id").fetchone()
        frame_ids = {i for (i,) in con.execute("SELECT id FROM frames")}
        used = {int(f) for (fs,) in con.execute("SELECT frames FROM stacks") for f in fs.split(",") if f}
        assert samples > 0 and orphans == 0 and used <= frame_ids, (samples, orphans, sorted(used - frame_ids)[:10])
        # The reports made once there was room again: their samples name
        # their own builder, none other (an id of the lost batch, given
        # again by the store to another frame, would name another one).
        names = dict(con.execute("SELECT id, name FROM frames"))
        wrong, seen = [], 0
        for rid, path in con.execute("SELECT id, path FROM requests WHERE query_string = 'ms=8'"):
            want = "build_report_" + path.rsplit("/", 1)[1]
            for (fs,) in con.execute("SELECT st.frames FROM samples s JOIN stacks st ON st.id = s.stack_id"
                                     " WHERE s.request_id = ?", (rid,)):
                got = {names.get(int(f)) for f in fs.split(",")} & {"build_report_%d" % k for k in range(kinds)}
                seen += bool(got)
                if got - {want}:
                    wrong.append((path, sorted(got)))
        assert seen > kinds and not wrong, (seen, wrong[:5])
        audits = con.execute("SELECT q.sql, r.path FROM queries q LEFT JOIN requests r ON r.id = q.request_id"
                             " WHERE q.sql LIKE 'INSERT INTO audit%'").fetchall()
        own = [a for a in audits if a[1] and a[1].rsplit("/", 1)[1] == a[0].rsplit("(", 1)[1].rstrip(")")]
        astray = [a for a in audits if a[1] and a not in own]
        assert len(own) >= 3 * kinds and not astray, (len(audits), len(own), astray[:5])
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# ---- permissions: the store holds captured requests ----

def mode(path):
    return os.stat(path).st_mode & 0o7777


def run_in(cwd, *args, env=None):
    return subprocess.run([str(TIMEGLASS), "run", *args, "--", PYTHON, "-c", "pass"], cwd=cwd, env=env or timeglass_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_store_open_to_others_is_made_private(timeglass_bin, tmp_path):
    """A store (and its -wal and -shm, here held open by a reader) left 0644
    in a 0755 .timeglass directory: the next run makes them 0600 and the
    directory 0700, says so in one line, and says nothing the time after."""
    proc = run_in(tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / ".timeglass" / "timeglass.db"
    assert mode(store) == 0o600 and mode(store.parent) == 0o700  # made private
    reader = sqlite3.connect(str(store))
    reader.execute("SELECT count(*) FROM runs").fetchone()  # -wal and -shm exist while it is open
    try:
        files = [store, tmp_path / ".timeglass" / "timeglass.db-wal", tmp_path / ".timeglass" / "timeglass.db-shm"]
        assert all(f.exists() for f in files)
        for f in files:
            os.chmod(f, 0o644)
        os.chmod(store.parent, 0o755)
        proc = run_in(tmp_path, "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert [mode(f) for f in files] == [0o600] * 3
        assert mode(store.parent) == 0o700
        assert proc.stderr.splitlines() == [
            "timeglass: warning: store .timeglass/timeglass.db was open to other users (mode 0644); made it "
            "private (0600), and its directory: it holds captured requests"]
        proc = run_in(tmp_path, "--quiet")
        assert proc.returncode == 0 and proc.stderr == ""
    finally:
        reader.close()
    assert len(read_requests(str(store))[0]) == 0  # the store still reads


def test_a_directory_of_the_users_own_is_left_alone(timeglass_bin, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    store = shared / "t.db"
    assert run_in(tmp_path, "--quiet", "--db", str(store)).returncode == 0
    os.chmod(store, 0o640)
    proc = run_in(tmp_path, "--quiet", "--db", str(store))
    assert proc.returncode == 0
    assert "was open to other users (mode 0640); made it private (0600): it holds" in proc.stderr
    assert mode(store) == 0o600 and mode(shared) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_a_store_that_cannot_be_made_private_is_refused(timeglass_bin, tmp_path):
    """Owned by someone else and writable by all: the run refuses it (exit
    status 2, the app not started) rather than write requests others read."""
    top = tempfile.mkdtemp(prefix="tg-perm-")
    try:
        os.chmod(top, 0o777)
        store = os.path.join(top, "t.db")
        assert run_in(top, "--quiet", "--db", store).returncode == 0
        os.chmod(store, 0o666)
        marker = os.path.join(top, "started")
        env = timeglass_env()
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(TIMEGLASS), "run",
                               "--quiet", "--db", store, "--", PYTHON, "-c", "open(%r, 'w')" % marker],
                              cwd=top, env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        if "setpriv" in proc.stderr and proc.returncode != 2:
            pytest.skip("setpriv cannot switch users here: %s" % proc.stderr.strip())
        assert proc.returncode == 2, proc.stderr
        assert ("store %s is open to other users (mode 0666) and cannot be made private" % store) in proc.stderr
        assert not os.path.exists(marker)
        assert mode(store) == 0o666
    finally:
        shutil.rmtree(top, ignore_errors=True)
