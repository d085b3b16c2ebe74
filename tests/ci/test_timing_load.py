"""`timeglass ci`'s timing rule on a machine loaded by other work.

A baseline of the timing suite (timing/: a live uvicorn server, a CPU-bound
route and an I/O-bound one) is recorded without added load; then the suite
runs again while CPU burners share the app's CPU (the suite, the app and
the burners are all pinned to one CPU, so the contention is certain even on
a machine with idle cores). The clean rerun must pass on the load-adjusted
basis, while a route that really got slower, off the CPU (an added await,
under load) or on the CPU (twice the work, quiet or under load), is still
reported.
"""

import json
import os
import subprocess
import time

import pytest

from citools import PYTHON, TIMEGLASS, env_for

TIMING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timing")
SUITE = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
CPU = max(os.sched_getaffinity(0))  # one CPU for the suite, its app and the burners
BURNERS = 3


def pinned():
    os.sched_setaffinity(0, {CPU})


def run_timing(d, name, opts=(), inject=""):
    """`timeglass ci` of the timing suite pinned to CPU; returns (exit, stdout, JSON report)."""
    report = os.path.join(str(d), name + ".json")
    argv = [str(TIMEGLASS), "ci", "--db", os.path.join(str(d), name + ".db"), "--json", report] + list(opts)
    env = env_for({"TIMING_INJECT": inject} if inject else None)
    proc = subprocess.run(argv + ["--"] + SUITE, cwd=TIMING, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=pinned)
    assert "2 passed" in proc.stdout, proc.stdout + proc.stderr
    with open(report) as f:
        return proc.returncode, proc.stdout, json.load(f)


class Burners:
    """BURNERS busy loops pinned to CPU, for the time of a with block."""

    def __enter__(self):
        self.procs = [subprocess.Popen([PYTHON, "-c", "while 1: pass"], preexec_fn=pinned) for _ in range(BURNERS)]
        time.sleep(0.5)
        assert all(p.poll() is None for p in self.procs)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def timing_failures(report):
    return {c["route"]: c["message"] for c in report["checks"]
            if c["class"] == "timing" and c["suite"] == "baseline" and c["status"] == "fail"}


@pytest.fixture(scope="module")
def quiet_baseline(built, tmp_path_factory):
    d = tmp_path_factory.mktemp("timing")
    code, out, report = run_timing(d, "quiet", ["--save-baseline", str(d / "baseline.json")])
    assert code == 0, out
    base = json.loads((d / "baseline.json").read_text())
    # the store measured the run-queue delay: the baseline carries it
    assert base["cpu_wait_factor"] >= 1 and base["run_delay_ms"] >= 0
    assert report["cpu_wait"]["cpu_wait_factor"] == base["cpu_wait_factor"]
    for route in ("GET /cpu", "GET /io"):
        r = base["routes"][route]
        assert len(r["adjusted_samples_ms"]) == len(r["samples_ms"]) == 60
        assert 0 <= r["p50_adjusted_ms"] <= r["p50_ms"]
    return d / "baseline.json", base


def test_clean_rerun_under_load(quiet_baseline, tmp_path):
    baseline, base = quiet_baseline
    with Burners():
        code, out, report = run_timing(tmp_path, "loaded", ["--baseline", str(baseline)])
    # the load was real: the app's threads waited for the CPU far more
    k = report["cpu_wait"]["cpu_wait_factor"]
    assert k > base["cpu_wait_factor"] and k > 1.5, (k, base["cpu_wait_factor"])
    assert report["cpu_wait"]["baseline_cpu_wait_factor"] == base["cpu_wait_factor"]
    assert report["timing_basis"] == report["timing_rule"]["basis"] == "wall-adjusted-for-cpu-wait"
    assert "run-queue delay measured on both sides" in report["timing_basis_reason"]
    assert "Timing basis: wall durations less each route's expected wait for a CPU" in out
    assert timing_failures(report) == {}, out
    assert code == 0, out
    routes = {r["route"]: r for r in report["routes"]}
    assert routes["GET /cpu"]["cpu_wait_ms"] > 0
    assert routes["GET /cpu"]["p50_adjusted_ms"] < routes["GET /cpu"]["p50_ms"]

    # The same run against a baseline without the run-queue figures (as an
    # older TimeGlass wrote them) is judged on wall time, says so, and takes
    # the load for a slowdown of the CPU-bound route.
    old = {k: v for k, v in base.items() if k not in ("cpu_wait_factor", "sched_cpu_ms", "run_delay_ms")}
    old["routes"] = {key: {f: v for f, v in r.items() if f not in ("adjusted_samples_ms", "p50_adjusted_ms",
                                                                    "cpu_wait_ms")}
                     for key, r in base["routes"].items()}
    (tmp_path / "old.json").write_text(json.dumps(old))
    res = subprocess.run([str(TIMEGLASS), "ci", "--db", str(tmp_path / "loaded.db"), "--baseline",
                          str(tmp_path / "old.json"), "--json", "-"], env=env_for(), capture_output=True, text=True)
    wall = json.loads(res.stdout)
    assert wall["timing_basis"] == "wall" and "the baseline has no run-queue delay" in wall["timing_basis_reason"]
    assert "GET /cpu" in timing_failures(wall) and res.returncode == 1, res.stderr


def test_slower_await_under_load(quiet_baseline, tmp_path):
    baseline, _ = quiet_baseline
    with Burners():
        code, out, report = run_timing(tmp_path, "sleep", ["--baseline", str(baseline)], inject="sleep")
    assert report["timing_basis"] == "wall-adjusted-for-cpu-wait"
    failures = timing_failures(report)
    assert "GET /io" in failures, out
    assert "Mann-Whitney p = " in failures["GET /io"] and "adjusted for CPU wait" in failures["GET /io"]
    assert code == 1, out


@pytest.mark.parametrize("loaded", [False, True], ids=["quiet", "loaded"])
def test_twice_the_cpu(quiet_baseline, tmp_path, loaded):
    baseline, _ = quiet_baseline
    opts = ["--baseline", str(baseline)]
    if loaded:
        with Burners():
            code, out, report = run_timing(tmp_path, "cpu2x", opts, inject="cpu2x")
    else:
        code, out, report = run_timing(tmp_path, "cpu2x", opts, inject="cpu2x")
    failures = timing_failures(report)
    assert "GET /cpu" in failures, out
    assert "GET /io" not in failures, out
    assert code == 1, out
    # the adjusted durations never go below the route's CPU per request
    cpu = {r["route"]: r for r in report["routes"]}["GET /cpu"]
    assert cpu["cpu_ms"] > 6 and cpu["p50_adjusted_ms"] >= cpu["cpu_ms"] * 0.99, cpu
