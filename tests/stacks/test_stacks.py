"""The Python stack sampler end to end: a FastAPI app under `timeglass run`,
its samples in the store, `timeglass flame` output."""
import json
import re
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tgtest
from conftest import Served, folded

SPLIT_MS = 600
N_SPLIT = 4
N_CONCURRENT = 20


@pytest.fixture(scope="module", params=["timer", "eval"])
def run(request, tmp_path_factory):
    """One app run with all the traffic of this module; the store is complete
    when the tests look at it. Every test runs against both ways of sampling:
    the sampler thread (timer) and the threads themselves in the eval-frame
    hook (eval), at the same 1 kHz."""
    s = Served(tmp_path_factory.mktemp("stacks-" + request.param), 1000,
               {"TIMEGLASS_SAMPLE_MODE": request.param})
    s.mode = request.param
    try:
        for _ in range(N_SPLIT):
            s.get("/split?ms=%d" % SPLIT_MS)
        s.get("/pool?ms=300")
        s.get("/recursion?depth=500&ms=300")
        s.get("/generators?ms=300")
        s.get("/exceptions?ms=300")
        s.get("/sleep?ms=300")
        s.get("/odd-names?ms=300")
        barrier = threading.Barrier(N_CONCURRENT)

        def one(i):
            barrier.wait()
            return s.get("/ep/%d?ms=300" % i)

        with ThreadPoolExecutor(N_CONCURRENT) as ex:
            list(ex.map(one, range(N_CONCURRENT)))
    finally:
        rc = s.stop()
    assert rc == 0, s.output()
    s.rows = {}
    with sqlite3.connect(s.db) as db:
        for rid, path, cpu, dur in db.execute("SELECT id, path, cpu_ns, duration_ns FROM requests ORDER BY id"):
            s.rows.setdefault(path, []).append((rid, cpu, dur))
    return s


def stacks_of(run, path, state="running"):
    rid = run.rows[path][0][0]
    return folded(run.flame("--request", str(rid), "--state", state))


def names(frames):
    return [f.split(" (")[0] for f in frames]


def test_samples_recorded(run):
    with sqlite3.connect(run.db) as db:
        n, = db.execute("SELECT coalesce(sum(count), 0) FROM samples").fetchone()
        frames, = db.execute("SELECT count(*) FROM frames WHERE line > 0").fetchone()
    assert n > 500 and frames > 20


def test_split_shares_70_30(run):
    """CPU split 70/30 between two functions: the flame graph's shares match
    within 10 percentage points, per route and per request."""
    hot = cold = 0
    for frames, n in folded(run.flame("--route", "GET /split", "--state", "running")):
        nm = names(frames)
        hot += n if "hot_seventy" in nm else 0
        cold += n if "cold_thirty" in nm else 0
    assert hot + cold >= N_SPLIT * SPLIT_MS * 0.5, (hot, cold)  # ~1 kHz
    share = 100.0 * hot / (hot + cold)
    assert 60 <= share <= 80, (hot, cold, share)
    for rid, _, _ in run.rows["/split"]:
        h = c = 0
        for frames, n in folded(run.flame("--request", str(rid), "--state", "running")):
            h += n if "hot_seventy" in names(frames) else 0
            c += n if "cold_thirty" in names(frames) else 0
        assert h + c > 0 and 55 <= 100.0 * h / (h + c) <= 85, (rid, h, c)


def test_file_and_line(run):
    import inspect
    import sys
    sys.path.insert(0, str(tgtest.REPO / "tests" / "stacks"))
    src = (tgtest.REPO / "tests" / "stacks" / "app.py").read_text().splitlines()
    line = next(i + 1 for i, l in enumerate(src) if "return burn(total * 0.7)" in l)
    labels = {f for frames, _ in stacks_of(run, "/split") for f in frames}
    assert any(l.startswith("hot_seventy (") and l.endswith("app.py:%d)" % line) for l in labels), \
        sorted(l for l in labels if "hot_seventy" in l)
    del inspect


def test_cpu_time_per_request(run):
    for rid, cpu, dur in run.rows["/split"]:
        assert cpu is not None and 0.7 * SPLIT_MS * 1e6 <= cpu <= 1.3 * SPLIT_MS * 1e6, (rid, cpu)
    rid, cpu, dur = run.rows["/sleep"][0]
    assert (cpu or 0) < 0.3 * dur, (cpu, dur)


def test_waiting_is_labelled(run):
    """A request that awaits asyncio.sleep: its samples are waiting, not running."""
    waiting = sum(n for _, n in stacks_of(run, "/sleep", "waiting"))
    running = sum(n for _, n in stacks_of(run, "/sleep", "running"))
    assert waiting > 100 and running < waiting / 4, (waiting, running)
    rid = run.rows["/sleep"][0][0]
    text = run.flame("--request", str(rid))
    assert "(waiting)" in text


def test_names_beyond_ascii(run):
    """Function names in Latin-1, Cyrillic and a CJK character beyond the
    BMP keep their characters; a file name with a lone surrogate (an
    undecodable byte of a path) has U+FFFD in its place. Every frame in the
    store is valid text: Python's sqlite3 reads it strictly."""
    labels = {f for frames, _ in stacks_of(run, "/odd-names") for f in frames}
    resume = [l for l in labels if l.startswith("r\u00e9sum\u00e9_\u0444\u043e\u0440\u043c\u0430 (")]
    han = [l for l in labels if l.startswith("han_\U00020bb7 (")]
    assert resume and han, sorted(labels)
    assert all("/srv/reports/odd_\ufffd_name.py:" in l for l in resume + han), resume + han
    with sqlite3.connect(run.db) as db:
        n = sum(1 for _ in db.execute("SELECT name, file FROM frames"))
    assert n > 20


def test_flame_of_an_older_store_is_utf8(run, tmp_path):
    """A store written before text was kept valid may hold a function name
    that is not UTF-8: the folded output has U+FFFD in its place, and stays
    readable by a strict decoder."""
    import shutil
    db = tmp_path / "old.db"
    shutil.copy(run.db, db)
    with sqlite3.connect(db) as con:
        n = con.execute("UPDATE frames SET name = CAST(X'686f74ff5f736576656e7479' AS TEXT)"
                        " WHERE name = 'hot_seventy'").rowcount
    assert n >= 1
    out = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(db), "--route", "GET /split"],
                         capture_output=True, env=tgtest.timeglass_env())
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode("utf-8")  # strict
    assert "hot\ufffd_seventy (" in text and "hot_seventy (" not in text


def test_threadpool_endpoint(run):
    st = stacks_of(run, "/pool")
    hits = sum(n for frames, n in st if "pool_work" in names(frames))
    assert hits >= 150, st[:3]


def test_recursion_500(run):
    st = stacks_of(run, "/recursion")
    deepest = max(names(frames).count("deep") for frames, _ in st)
    assert deepest == 501, deepest


def test_generators(run):
    st = stacks_of(run, "/generators")
    hits = sum(n for frames, n in st if "numbers" in names(frames) or "gen_consume" in names(frames))
    assert hits >= 150


def test_exceptions(run):
    st = stacks_of(run, "/exceptions")
    hits = sum(n for frames, n in st if "exc_loop" in names(frames))
    assert hits >= 150


def scope_support():
    out = subprocess.run(["nm", str(tgtest.LIBRARY)], capture_output=True, text=True).stdout
    return bool(re.search(r" [Tt] tg_scope_of_frames$", out, re.M))


def test_concurrent_requests_only_own_frames(run):
    """20 requests interleaved on one event loop: each request's samples
    hold only its own endpoint's function."""
    seen = {}
    for i in range(N_CONCURRENT):
        rid = run.rows["/ep/%d" % i][0][0]
        own = "work_%d" % i
        total = 0
        for frames, n in folded(run.flame("--request", str(rid), "--state", "running")):
            works = {f for f in names(frames) if f.startswith("work_")}
            assert works <= {own}, (i, works)
            total += n if own in works else 0
        seen[i] = total
    assert scope_support()
    assert all(v > 0 for v in seen.values()), seen


REPORT_KINDS = ("sales", "stock", "returns")
FANOUTS = ("gather", "tasks", "group")
REPORT_PARTS = 4
PARTITION_MS = 60


@pytest.mark.parametrize("mode", ["timer", "eval"])
def test_child_task_samples_on_their_request(tmp_path, mode):
    """A report runs its partitions in child tasks (asyncio.gather,
    asyncio.create_task, an asyncio.TaskGroup), three reports at a time
    beside requests to another endpoint on the same loop: the partitions'
    samples are their report's, not no request's nor another request's."""
    s = Served(tmp_path, 1000, {"TIMEGLASS_SAMPLE_MODE": mode})
    try:
        for r in range(len(FANOUTS)):
            paths = ["/reports/%s?fanout=%s&parts=%d&ms=%d" % (kind, FANOUTS[(k + r) % len(FANOUTS)],
                                                                REPORT_PARTS, PARTITION_MS)
                     for k, kind in enumerate(REPORT_KINDS)]
            paths += ["/ep/%d?ms=200" % i for i in range(3)]
            barrier = threading.Barrier(len(paths))

            def one(path):
                barrier.wait()
                return s.get(path)

            with ThreadPoolExecutor(len(paths)) as ex:
                list(ex.map(one, paths))
    finally:
        rc = s.stop()
    assert rc == 0, s.output()
    with sqlite3.connect(s.db) as db:
        reports = db.execute("SELECT id, path FROM requests WHERE route = '/reports/{kind}'").fetchall()
    assert len(reports) == len(REPORT_KINDS) * len(FANOUTS), reports

    def crunch(text):
        """[(kinds, count)] of the stacks in crunch_partition, kinds: the
        reports of the tally_* functions in them."""
        return [({f[len("tally_"):] for f in names(frames) if f.startswith("tally_")}, n)
                for frames, n in folded(text) if "crunch_partition" in names(frames)]

    on_own = 0
    for rid, path in reports:
        kind = path.rsplit("/", 1)[1]
        st = crunch(s.flame("--request", str(rid)))
        assert all(kinds <= {kind} for kinds, _ in st), (path, st)
        own = sum(n for kinds, n in st if kinds == {kind})
        # 4 partitions of 60 ms of CPU: ~240 samples at 1 kHz
        assert own >= 0.3 * REPORT_PARTS * PARTITION_MS, (rid, path, own)
        on_own += sum(n for _, n in st)
    total = sum(n for _, n in crunch(s.flame("--all")))
    orphans = sum(n for _, n in crunch(s.flame("--no-request")))
    print("%s: %d of %d crunch_partition samples on their report, %d on no request"
          % (mode, on_own, total, orphans))
    assert total > 0 and on_own >= 0.8 * total, (on_own, orphans, total)


def test_speedscope(run):
    rid = run.rows["/recursion"][0][0]
    doc = json.loads(run.flame("--request", str(rid), "--format", "speedscope"))
    assert doc["$schema"].startswith("https://www.speedscope.app/")
    frames = doc["shared"]["frames"]
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"])
    for s in prof["samples"]:
        assert all(0 <= i < len(frames) for i in s)
    assert prof["endValue"] == sum(prof["weights"])
    total = sum(n for _, n in folded(run.flame("--request", str(rid))))
    assert total == sum(prof["weights"])
    assert any(f["name"] == "deep" and f["file"].endswith("app.py") for f in frames)


def test_flame_usage_errors(run):
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db)], capture_output=True, text=True)
    assert r.returncode == 2 and "exactly one" in r.stderr
    # a route that was not recorded is an error that lists the recorded ones, not an empty graph
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db), "--route", "GET /nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith("timeglass: no route 'GET /nope' was recorded in run ") and "GET /split" in r.stderr


def test_sampling_off(tmp_path):
    s = Served(tmp_path, 0)
    s.drive("/split?ms=100")
    with sqlite3.connect(s.db) as db:
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_eval_mode_at_10khz(tmp_path):
    """10 kHz picks eval-clocked sampling (auto): a request's running samples
    match its CPU time at 10 per ms, and the 70/30 split holds."""
    s = Served(tmp_path, 10000)
    try:
        s.get("/split?ms=400")
        s.get("/pool?ms=100")
        time.sleep(1.5)  # the pool's worker and the loop sit idle
        s.get("/pool?ms=100")
    finally:
        assert s.stop() == 0
    with sqlite3.connect(s.db) as db:
        rid, cpu = db.execute("SELECT id, cpu_ns FROM requests WHERE path = '/split'").fetchone()
        pool_id, pool_ns = db.execute("SELECT id, duration_ns FROM requests WHERE path = '/pool' "
                                      "ORDER BY id DESC").fetchone()
        pool_n, = db.execute("SELECT sum(count) FROM samples WHERE request_id = ?", (pool_id,)).fetchone()
    # The second /pool request: the worker's samples and the loop's, each
    # at most its duration; the 1.5 s the threads were idle before it (one
    # weighted sample at the wake-up) are not its own.
    assert pool_n <= 2.5 * pool_ns / 1e5, (pool_n, pool_ns)
    hot = cold = total = 0
    for frames, n in folded(s.flame("--request", str(rid), "--state", "running")):
        total += n
        hot += n if "hot_seventy" in names(frames) else 0
        cold += n if "cold_thirty" in names(frames) else 0
    expected = cpu / 1e5  # samples of 100 us in its CPU time
    assert 0.7 * expected <= total <= 1.3 * expected, (total, expected)
    assert hot + cold >= 0.9 * total and 60 <= 100.0 * hot / (hot + cold) <= 80, (hot, cold)


def test_top_functions(run):
    """--format top: burn() has the samples of its own, hot_seventy and
    cold_thirty have 70% and 30% of them with their callees."""
    text = run.flame("--route", "GET /split", "--state", "running", "--format", "top", "--limit", "0")
    lines = text.splitlines()
    assert lines[0].split() == ["SELF%", "SELF", "TOTAL%", "TOTAL", "FUNCTION"]
    rows, order = {}, []
    for line in lines[1:-1]:
        self_pct, self_n, total_pct, total_n, func = line.split(None, 4)
        row = (float(self_pct[:-1]), int(self_n), float(total_pct[:-1]), int(total_n))
        order.append(row)
        rows.setdefault(func.split(" (")[0], row)  # one qualname can be in several files
    total = int(lines[-1].split()[0])
    assert rows["burn"][0] >= 90 and rows["burn"][1] <= total, rows["burn"]
    assert 60 <= rows["hot_seventy"][2] <= 80 and 20 <= rows["cold_thirty"][2] <= 40, rows
    assert rows["split"][2] >= 95 and rows["split"][1] <= 0.1 * total
    # sorted by self, then total
    keys = [(-r[1], -r[3]) for r in order]
    assert keys == sorted(keys)
    assert len(run.flame("--route", "GET /split", "--format", "top", "--limit", "2").splitlines()) == 4


def test_an_idle_app_lets_the_sampler_doze(tmp_path):
    """While no thread of the app runs, the sampler wakes a few dozen times a
    second instead of a thousand (a laptop's battery, a CI machine's other
    jobs); the next request wakes it at once. The samples say the same as
    without the doze: the idle time is still all there, as the loop's
    waiting, and a request after a pause gets its own work and not the
    pause."""
    s = Served(tmp_path, 1000)
    try:
        s.get("/split?ms=50")
        app = next(p for p in tgtest.descendants(s.proc.pid) if tgtest.wakeups(p, "timeglass-smp") is not None)
        time.sleep(0.5)
        w0, t0 = tgtest.wakeups(app, "timeglass-smp"), time.monotonic()
        time.sleep(2)
        w1, t1 = tgtest.wakeups(app, "timeglass-smp"), time.monotonic()
        s.get("/split?ms=300")
        s.get("/sleep?ms=300")
    finally:
        assert s.stop() == 0, s.output()
    # At 1 kHz without the doze: some 2,000 wakeups in these two seconds.
    assert w1 - w0 < 0.3 * 1000 * (t1 - t0), (w0, w1)
    with sqlite3.connect(s.db) as db:
        (split_id, cpu, _), (sleep_id, _, sleep_ns) = db.execute(
            "SELECT id, cpu_ns, duration_ns FROM requests WHERE path IN ('/split', '/sleep')"
            " ORDER BY id").fetchall()[1:]
        by_state = dict(db.execute("SELECT state, sum(count) FROM samples WHERE request_id = ? GROUP BY state",
                                   (split_id,)).fetchall())
        sleep_n, = db.execute("SELECT sum(count) FROM samples WHERE request_id = ?", (sleep_id,)).fetchone()
        idle_n, = db.execute("SELECT sum(count) FROM samples WHERE request_id IS NULL AND state = 'waiting'"
                             ).fetchone()
    # The request woke the sampler: its CPU is sampled at 1 kHz, and the
    # idle seconds before it are not its own.
    assert by_state.get("running", 0) >= 0.6 * cpu / 1e6, (by_state, cpu)
    assert by_state.get("waiting", 0) < 60, by_state
    # /sleep awaits 300 ms with nothing to wake the sampler: its waiting
    # samples still stand for the whole wait, within a doze's rounding.
    assert 0.6 * sleep_ns / 1e6 <= sleep_n <= 1.3 * sleep_ns / 1e6 + 10, (sleep_n, sleep_ns)
    # The event loop's idle seconds, in weighted samples of no request.
    assert idle_n >= 0.7 * 1000 * (t1 - t0), idle_n


def test_work_without_a_read_during_a_doze(tmp_path):
    """A thread that starts computing while the sampler dozes, with no read
    to wake it (a job on a timer): the sampler sees it at the doze's end at
    the latest, and while it still runs, its samples stand for all its CPU
    time, the part before the sampler woke included."""
    s = Served(tmp_path, 1000)
    try:
        s.get("/cache/refresh?delay_ms=1000&ms=400")
        time.sleep(2)
    finally:
        assert s.stop() == 0, s.output()
    job = sum(n for frames, n in folded(s.flame("--all", "--state", "running"))
              if "refresh_price_cache" in names(frames))
    assert 0.92 * 400 <= job <= 1.1 * 400, job
