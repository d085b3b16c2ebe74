"""Exact-trace mode (`timeglass run --trace`): every Python call of a request
that lasts at least the threshold is a 'function' span of that request, with
its duration and "file:line qualname" call site; shorter calls are not."""
import sqlite3

import pytest

from conftest import Served

THRESHOLD_US = 1000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("trace"), 0,
               extra_env={"TIMEGLASS_TRACE": "1", "TIMEGLASS_TRACE_US": str(THRESHOLD_US)})
    s.drive("/split?ms=300", "/pool?ms=100")
    with sqlite3.connect(s.db) as db:
        s.all_sites = [r[0] for r in db.execute("SELECT call_site FROM spans WHERE kind = 'function'")]
        s.spans = db.execute(
            "SELECT r.path, s.call_site, s.duration_ns FROM spans s JOIN requests r ON r.id = s.request_id"
            " WHERE s.kind = 'function'").fetchall()
        s.orphans = db.execute(
            "SELECT count(*) FROM spans WHERE kind = 'function' AND request_id IS NULL").fetchone()[0]
    return s


def spans_of(run, path, func):
    return [d for p, site, d in run.spans if p == path and site and site.endswith(" " + func)]


def test_function_spans_of_split(run):
    hot = spans_of(run, "/split", "hot_seventy")
    cold = spans_of(run, "/split", "cold_thirty")
    assert len(hot) == 1 and len(cold) == 1, run.spans
    # CPU time 300 ms split 70/30; wall time is at least that.
    assert hot[0] >= 0.2e9 and cold[0] >= 0.08e9, (hot, cold)
    assert hot[0] > cold[0]
    split = spans_of(run, "/split", "split")
    assert split and split[0] >= hot[0] + cold[0]


def test_call_site_is_file_line_name(run):
    sites = [site for p, site, d in run.spans if site and site.endswith(" hot_seventy")]
    path, _, rest = sites[0].rpartition(":")
    assert path.endswith("tests/stacks/app.py"), sites[0]
    assert int(rest.split(" ")[0]) > 0


def test_threshold(run):
    assert run.spans
    assert all(d >= THRESHOLD_US * 1000 for _, _, d in run.spans)


def test_threadpool_endpoint(run):
    assert spans_of(run, "/pool", "pool_work"), run.spans


def test_only_request_spans_kept(run):
    assert run.orphans == 0


def test_timeglass_frames_are_not_spans(run):
    """The wrappers TimeGlass runs around every request (the bootstrap's
    marker, its task factory) last as long as the request, far above the
    threshold: they are not the app's functions, and no span names them."""
    assert run.all_sites and any(site and site.endswith(" split") for site in run.all_sites)
    ours = [site for site in run.all_sites if site and "/timeglass/" in site.partition(":")[0]]
    assert ours == [], ours


def test_trace_with_eval_sampling(tmp_path):
    """--trace and eval-clocked sampling share the eval-frame hook: a request
    gets its function spans and its 10 kHz samples both."""
    s = Served(tmp_path, 10000, extra_env={"TIMEGLASS_TRACE": "1", "TIMEGLASS_TRACE_US": str(THRESHOLD_US)})
    s.drive("/split?ms=300")
    assert "not available" not in s.output(), s.output()  # neither fell back
    with sqlite3.connect(s.db) as db:
        rid, cpu = db.execute("SELECT id, cpu_ns FROM requests WHERE path = '/split'").fetchone()
        sites = [r[0] for r in db.execute("SELECT call_site FROM spans WHERE kind = 'function' AND request_id = ?",
                                          (rid,))]
        running, = db.execute("SELECT sum(count) FROM samples WHERE request_id = ? AND state = 'running'",
                              (rid,)).fetchone()
    assert any(site.endswith(" hot_seventy") for site in sites), sites
    assert any(site.endswith(" cold_thirty") for site in sites), sites
    expected = cpu / 1e5  # samples of 100 us in its CPU time
    assert 0.7 * expected <= running <= 1.3 * expected, (running, expected)
