"""`timeglass ci` on the sample project: a clean suite passes with every
output well formed; budget breaches, an N+1, a new query, a 5xx and a 2x
slowdown are each reported with their route and test, and fail the gate."""

import re
import sqlite3
import xml.etree.ElementTree as ET

from citools import load_json, run_ci

WORKLOAD = {  # route -> requests the sample suite makes (tests/ci/sample/tests)
    "GET /items/{item_id}": 17, "GET /items": 5, "POST /items": 5, "GET /slow": 8, "GET /report": 1,
    "GET /health": 3,
}
PER_TEST = {"test_get_item": 10, "test_list_items": 5, "test_create_item": 5, "test_missing_item": 2,
            "test_slow": 8, "test_report": 1, "test_live_items": 5, "test_live_health": 3}


def failing(report):
    return [c for c in report["checks"] if c["status"] == "fail"]


def test_clean_suite_passes(clean_run):
    assert clean_run.code == 0, clean_run
    assert "TimeGlass CI passed" in clean_run.out
    report = load_json(clean_run.dir / "report.json")
    assert report["result"] == "passed" and report["command_status"] == 0
    assert {r["route"]: r["count"] for r in report["routes"]} == WORKLOAD
    assert {t["nodeid"].split("::")[1]: t["requests"] for t in report["tests"]} == PER_TEST
    assert all(t["outcome"] == "passed" for t in report["tests"])
    assert failing(report) == []
    budget = [c for c in report["checks"] if c["suite"] == "budget"]
    assert {c["name"] for c in budget} >= {"p95 GET /slow", "queries per request GET /items", "5xx responses"}


def test_junit_output(clean_run):
    root = ET.parse(clean_run.dir / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    cases = root.findall(".//testcase")
    assert int(root.get("tests")) == len(cases) > 10
    names = {c.get("name") for c in cases}
    assert "p95 GET /items/{item_id}" in names and "command" in names
    assert not root.findall(".//failure")


def parse_md_table(text, heading):
    section = text.split("### " + heading, 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert set(rows[1].replace("|", "").strip()) <= set("-:")
    return [dict(zip(header, (c.strip() for c in re.split(r"(?<!\\)\|", r.strip()[1:-1])))) for r in rows[2:]]


def test_markdown_output(clean_run):
    md = (clean_run.dir / "report.md").read_text()
    assert md.startswith("## TimeGlass CI: ✅ passed")
    routes = {r["Route"].replace("\\_", "_"): int(r["Requests"]) for r in parse_md_table(md, "Routes")}
    assert routes == WORKLOAD
    tests = {r["Test"].replace("\\_", "_").split("::")[1]: int(r["Requests"]) for r in parse_md_table(md, "Tests")}
    assert tests == PER_TEST
    grades = {r["Benchmark"]: r["Grade"] for r in parse_md_table(md, "Scorecard")}
    assert grades["5xx error rate"] == "A" and grades["Test coverage"] == "-"
    summary = (clean_run.dir / "step_summary.md").read_text()
    assert summary.startswith("# earlier step\n") and summary.endswith(md)


def test_clean_suite_against_its_baseline(clean_run, tmp_path):
    # noise floor 5 ms: unrelated load on a shared machine must not fail the clean suite
    res = run_ci(tmp_path, ["--baseline", str(clean_run.dir / "baseline.json"), "--time-floor-ms", "5",
                            "--json", str(tmp_path / "r.json")])
    assert res.code == 0, res
    report = load_json(tmp_path / "r.json")
    assert report["baseline"] and failing(report) == []
    assert any(c["suite"] == "baseline" and c["class"] == "timing" for c in report["checks"])


def test_budget_breach(built, tmp_path):
    budget = tmp_path / "budget.toml"
    budget.write_text('max_5xx = 0\n[routes."GET /slow"]\np95_ms = 10  # the route sleeps 20 ms\n')
    res = run_ci(tmp_path, ["--budget", str(budget), "--junit", str(tmp_path / "j.xml")], inject="5xx")
    assert res.code == 1, res
    # The route sleeps 20 ms: its p95 is at least that, more on a busy machine.
    m = re.search(r"FAIL budget GET /slow: p95 (\d+\.\d\d) ms > budget 10 ms over 8 requests "
                  r"\(test tests/test_app.py::test_slow\)", res.out)
    assert m and 20 <= float(m.group(1)) < 200, res
    assert re.search(r"FAIL budget 1 5xx responses > budget 0: first GET /report "
                     r"\(test tests/test_app.py::test_report\); requests \d+", res.out), res
    assert "TimeGlass CI failed: 2 budget breaches" in res.out
    root = ET.parse(tmp_path / "j.xml").getroot()
    failures = root.findall(".//testcase[failure]")
    assert {f.get("name") for f in failures} == {"p95 GET /slow", "5xx responses"}
    assert root.get("failures") == "2"


def test_regressions_against_baseline(clean_run, tmp_path):
    res = run_ci(tmp_path, ["--baseline", str(clean_run.dir / "baseline.json"), "--json", str(tmp_path / "r.json"),
                            "--markdown", str(tmp_path / "r.md")], inject="slow,5xx,query")
    assert res.code == 1, res
    report = load_json(tmp_path / "r.json")
    found = {(c["class"], c["route"]): c for c in failing(report)}
    slow = found[("timing", "GET /slow")]
    assert slow["test"] == "tests/test_app.py::test_slow"
    assert "Mann-Whitney p = " in slow["message"]
    assert found[("errors", "GET /report")]["test"] == "tests/test_app.py::test_report"
    base = load_json(clean_run.dir / "baseline.json")
    if base["routes"]["GET /items/{item_id}"]["queries"]:  # SQL of the live server is captured
        q = found[("queries", "GET /items/{item_id}")]
        # Both tests that call the route run the injected query: in-process
        # (TestClient) and through the live server.
        assert q["test"] in ("tests/test_live.py::test_live_items", "tests/test_app.py::test_get_item"), q
    assert report["summary"]["regressions"] == len([c for c in failing(report) if c["suite"] == "baseline"])
    assert report["summary"]["breaches"] == 1  # the sample's own budget: max_5xx = 0
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("## TimeGlass CI: ❌ failed") and "regression timing" in md


def test_warn_only(clean_run, tmp_path):
    res = run_ci(tmp_path, ["--baseline", str(clean_run.dir / "baseline.json"), "--warn-only", "timing",
                            "--time-floor-ms", "5"], inject="slow")
    assert res.code == 0, res
    assert re.search(r"WARN regression GET /slow: p50 [\d.]+ ms, baseline [\d.]+ ms", res.out), res


def captured_n_plus_one(db):
    """The run's id, after checking that the capture itself flagged N+1
    queries (the injected loop runs one query per item)."""
    con = sqlite3.connect(db)
    run = con.execute("SELECT max(id) FROM runs").fetchone()[0]
    flagged = con.execute("SELECT count(*) FROM queries WHERE run_id = ? AND n_plus_one AND request_id IS NOT NULL",
                          (run,)).fetchone()[0]
    con.close()
    assert flagged > 0
    return run


def test_n_plus_one_introduced(clean_run, tmp_path):
    events = tmp_path / "events.jsonl"
    res = run_ci(tmp_path, ["--events", str(events), "--budget", "/dev/null"], inject="nplus1")
    assert res.code == 0, res  # no budget, no baseline: nothing to fail yet
    run = captured_n_plus_one(res.db)
    res = run_ci(tmp_path, ["--run", str(run), "--events", str(events), "--json", str(tmp_path / "r.json"),
                            "--baseline", str(clean_run.dir / "baseline.json"), "--time-floor-ms", "5"], cmd=False)
    assert res.code == 1, res
    report = load_json(tmp_path / "r.json")
    np1 = [c for c in failing(report) if c["class"] == "n+1"]
    assert [(c["suite"], c["route"], c["test"]) for c in np1] == [
        ("budget", "GET /items", "tests/test_app.py::test_list_items"),
        ("baseline", "GET /items", "tests/test_app.py::test_list_items")], failing(report)
    assert re.search(r"FAIL regression GET /items: new N\+1 queries in 5 of 5 requests "
                     r"\(test tests/test_app.py::test_list_items\)", res.out), res
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert tests["test_list_items"]["n_plus_one"] == 5
    assert tests["test_list_items"]["queries"] >= 30
    queries = [c for c in failing(report) if c["class"] == "queries"]
    assert ("baseline", "tests/test_app.py::test_list_items") in {(c["suite"], c["test"]) for c in queries}


def test_command_failure_passes_through(built, tmp_path):
    res = run_ci(tmp_path, cmd=["/bin/sh", "-c", "exit 3"])
    assert res.code == 3, res
    assert "the command exited with status 3" in res.out


def test_usage_errors(built, tmp_path):
    for opts, text in ((["--warn-only", "bogus"], "--warn-only takes"),
                       (["--time-tolerance", "x"], "bad number for --time-tolerance")):
        res = run_ci(tmp_path, opts, cmd=["/bin/true"])
        assert res.code == 2 and res.err.startswith("timeglass: ") and text in res.err, res
        assert len(res.err.strip().splitlines()) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("p99_ms = 3\n")
    res = run_ci(tmp_path, ["--budget", str(bad)], cmd=["/bin/true"])
    assert res.code == 2 and "bad.toml:1: unknown budget key 'p99_ms'" in res.err, res
