"""`timeglass score`: the scorecard's figures against the sample suite's
known workload, the evidence behind them, and test coverage from
coverage.py's data file."""

import json
import re
import sqlite3
import subprocess

import pytest

from citools import PYTHON, SAMPLE, TIMEGLASS, env_for, run_ci


def score(db, *opts, cwd=None):
    proc = subprocess.run([str(TIMEGLASS), "score", "--db", db, *opts], cwd=str(cwd or SAMPLE), env=env_for(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def card(db, *opts, cwd=None):
    out = json.loads(score(db, "--json", *opts, cwd=cwd))
    return out, {item["key"]: item for item in out["scorecard"]}


@pytest.fixture(scope="module")
def faulty(built, tmp_path_factory):
    """The sample suite with the report route failing (one 5xx in 39 requests)."""
    d = tmp_path_factory.mktemp("faulty")
    res = run_ci(d, ["--budget", "/dev/null"], inject="5xx")
    assert res.code == 0, res
    return res.db


def test_figures_match_the_workload(faulty):
    out, items = card(faulty)
    assert out["requests"] == 39  # one of the 39 answers 500
    con = sqlite3.connect(faulty)
    durs = sorted(d for (d,) in con.execute("SELECT duration_ns FROM requests WHERE run_id = ?", (out["run_id"],)))
    bad = con.execute("SELECT id FROM requests WHERE status >= 500").fetchall()
    con.close()
    assert items["latency_avg"]["value"] == pytest.approx(sum(durs) / len(durs) / 1e6, rel=1e-4)
    assert items["latency_p99"]["value"] == pytest.approx(durs[38] / 1e6, rel=1e-4)  # nearest rank: ceil(.99*39)
    assert items["latency_p90"]["value"] == pytest.approx(durs[35] / 1e6, rel=1e-4)
    assert items["latency_p90"]["value"] >= 20  # 8 of 39 requests sleep 20 ms
    assert items["error_rate_5xx"]["value"] == pytest.approx(100 / 39)
    assert items["error_rate_5xx"]["grade"] == "D"
    assert items["error_rate_5xx"]["evidence"] == [
        "request %d: GET /report -> 500 (no test)" % bad[0][0]]  # score reads no test events
    four = items["bad_input_4xx"]
    assert four["value"] == pytest.approx(80.0) and four["figure"] == "80.0 % (4 4xx, 1 5xx)"
    assert "GET /report: 0 4xx, 1 5xx" in four["evidence"]
    assert items["throughput"]["value"] > 0 and items["throughput"]["evidence"][0].startswith("39 requests in ")
    assert items["memory"]["measured"] and 10 < items["memory"]["value"] < 2048
    assert items["cpu"]["measured"]
    assert items["coverage"]["figure"] == "not measured" and items["coverage"]["grade"] is None


def test_throughput_evidence_in_requests_per_second(faulty):
    """The throughput's evidence speaks of requests and req/s (the routes
    that made most of them, at their own rate over the same span), never
    of milliseconds."""
    out, items = card(faulty)
    con = sqlite3.connect(faulty)
    first, last = con.execute("SELECT min(start_unix_ns), max(start_unix_ns + duration_ns) FROM requests"
                              " WHERE run_id = ?", (out["run_id"],)).fetchone()
    counts = dict(con.execute("SELECT method || ' ' || coalesce(route, path), count(*) FROM requests"
                              " WHERE run_id = ? GROUP BY 1", (out["run_id"],)).fetchall())
    con.close()
    span_s = (last - first) / 1e9
    tp = items["throughput"]
    assert tp["unit"] == "req/s" and tp["value"] == pytest.approx(39 / span_s, rel=1e-6)
    assert tp["figure"] == "%.1f req/s" % tp["value"]
    head, *routes = tp["evidence"]
    assert head == "39 requests in %.3f s (first request's start to last one's end)" % span_s
    assert len(routes) == 3
    for line in routes:
        assert " ms" not in line and "mean" not in line, line
        m = re.fullmatch(r"(.+): (\d+) requests?, ([\d.]+) req/s \((\d+)% of the requests\)", line)
        assert m, line
        route, n, rate, share = m.group(1), int(m.group(2)), float(m.group(3)), int(m.group(4))
        assert n == counts[route], line
        assert rate == pytest.approx(n / span_s, abs=0.051), line
        assert share == round(100 * n / 39), line
    # the busiest routes first: 17 item reads, then 8 slow requests
    assert [r.split(":")[0] for r in routes[:2]] == ["GET /items/{item_id}", "GET /slow"]


def test_text_table(faulty):
    out = score(faulty)
    assert "5xx error rate" in out and "GET /report -> 500" in out
    assert "Test coverage              -     not measured" in out


def test_grade_thresholds_in_help(built):
    out = subprocess.run([str(TIMEGLASS), "score", "--help"], capture_output=True, text=True).stdout
    assert "5xx error rate             A <= 0, B <= 0.1, C <= 1, D <= 5 %, else F" in out


def test_coverage(faulty, tmp_path):
    (tmp_path / "mod.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n\nf(1)\n")
    env = env_for()
    subprocess.run([PYTHON, "-m", "coverage", "run", "mod.py"], cwd=str(tmp_path), env=env, check=True)
    _, items = card(faulty, cwd=tmp_path)
    cov = items["coverage"]
    assert cov["figure"] == "4 lines in 1 file" and "percent not computed" in cov["note"]
    subprocess.run([PYTHON, "-m", "coverage", "json", "-q"], cwd=str(tmp_path), env=env, check=True)
    total = json.loads((tmp_path / "coverage.json").read_text())["totals"]["percent_covered"]
    _, items = card(faulty, "--coverage", str(tmp_path / ".coverage"))
    assert items["coverage"]["value"] == pytest.approx(total) and items["coverage"]["grade"] == "B"


def test_dashboard_endpoint(faulty):
    """GET /api/score serves the same scorecard as `timeglass score --json`."""
    import urllib.request

    proc = subprocess.Popen([str(TIMEGLASS), "ui", "--db", faulty, "--port", "0", "--no-open"],
                            cwd=str(SAMPLE), env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        banner = proc.stdout.readline().decode()
        if not banner:
            err = proc.stderr.read().decode()
            if "no dashboard" in err:
                pytest.skip("this build has no dashboard")
            raise AssertionError(err)
        m = re.search(r"dashboard at http://\S+:(\d+)/", banner)
        assert m, banner
        with urllib.request.urlopen("http://127.0.0.1:%s/api/score" % m.group(1), timeout=10) as resp:
            api = json.loads(resp.read())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    cli, _ = card(faulty)
    assert api["run_id"] == cli["run_id"] and api["requests"] == 39
    strip = lambda items: [{k: v for k, v in it.items() if k not in ("value", "evidence")} for it in items]  # noqa: E731
    assert strip(api["scorecard"]) == strip(cli["scorecard"])
    five = {it["key"]: it for it in api["scorecard"]}["error_rate_5xx"]
    assert five["grade"] == "D" and five["evidence"][0].endswith("GET /report -> 500 (no test)")
