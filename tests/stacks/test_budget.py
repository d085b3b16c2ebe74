"""The sampler's CPU budget (TIMEGLASS_SAMPLE_BUDGET, percent of one core):
asked for more samples than the budget pays for, the sampler lowers its
rate, says so (a py_sample_budget loss in timer mode), and the app's
requests are all recorded. Both ways of sampling keep to it."""
import sqlite3

import pytest

from conftest import Served, folded


def one_run(tmp_path, rate, env, ms=600):
    s = Served(tmp_path, rate, env)
    s.drive("/split?ms=%d" % ms, "/split?ms=%d" % ms)
    with sqlite3.connect(s.db) as db:
        rows = db.execute("SELECT id, cpu_ns FROM requests WHERE path = '/split' ORDER BY id").fetchall()
        losses = dict(db.execute("SELECT kind, sum(events) FROM losses GROUP BY kind").fetchall())
    assert len(rows) == 2
    rid, cpu = rows[-1]
    n = sum(c for _, c in folded(s.flame("--request", str(rid), "--state", "running")))
    return n, cpu, losses


def test_timer_budget_lowers_the_rate(tmp_path):
    # 20 kHz of timer wakeups costs far more than 2% of a core anywhere.
    n, cpu, losses = one_run(tmp_path, 20000, {"TIMEGLASS_SAMPLE_BUDGET": "2", "TIMEGLASS_SAMPLE_MODE": "timer"})
    asked = cpu / 1e9 * 20000
    assert 0 < n < 0.5 * asked, (n, asked)
    assert losses.get("py_sample_budget", 0) > 0, losses


def test_timer_without_budget_keeps_the_rate(tmp_path):
    n, cpu, losses = one_run(tmp_path, 2000, {"TIMEGLASS_SAMPLE_BUDGET": "0", "TIMEGLASS_SAMPLE_MODE": "timer"})
    asked = cpu / 1e9 * 2000
    assert n >= 0.7 * asked, (n, asked)
    assert "py_sample_budget" not in losses, losses


@pytest.mark.parametrize("budget,low", [("0.5", True), ("0", False)])
def test_eval_budget(tmp_path, budget, low):
    """Eval-clocked sampling at 100 kHz: every sample costs the thread a
    stack walk, well over 0.5% of a core at that rate; with no budget the
    rate holds."""
    n, cpu, _ = one_run(tmp_path, 100000, {"TIMEGLASS_SAMPLE_BUDGET": budget, "TIMEGLASS_SAMPLE_MODE": "eval"})
    asked = cpu / 1e9 * 100000
    if low:
        assert 0 < n < 0.5 * asked, (n, asked)
    else:
        assert n >= 0.7 * asked, (n, asked)
