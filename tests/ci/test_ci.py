"""`timeglass ci` on the sample project: a clean suite passes with every
output well formed; budget breaches, an N+1, a new query, a 5xx and a 2x
slowdown are each reported with their route and test, and fail the gate."""

import json
import re
import sqlite3
import xml.etree.ElementTree as ET

import pytest

from citools import load_json, run_ci

WORKLOAD = {  # route -> requests the sample suite makes (tests/ci/sample/tests)
    "GET /items/{item_id}": 17, "GET /items": 5, "POST /items": 5, "GET /slow": 8, "GET /report": 1,
    "GET /health": 3,
}
PER_TEST = {"test_get_item": 10, "test_list_items": 5, "test_create_item": 5, "test_missing_item": 2,
            "test_slow": 8, "test_report": 1, "test_live_items": 5, "test_live_health": 3,
            "test_seeded_rows": 0, "test_repository_function": 0, "test_unit_of_work": 0}


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


def test_queries_outside_requests_count_for_their_test(clean_run):
    """A test that uses the database directly (a fixture seeding rows, a
    repository function) is charged with the queries it ran, though they
    belong to no request; the run's queries add up over the tests."""
    report = load_json(clean_run.dir / "report.json")
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    con = sqlite3.connect(clean_run.db)
    run = report["run_id"]
    pytest_pid = con.execute("SELECT pid FROM queries WHERE run_id = ? AND sql LIKE 'CREATE TABLE notes%'",
                             (run,)).fetchone()[0]

    def outside(where, *args):
        return con.execute("SELECT count(*), coalesce(sum(duration_ns), 0) FROM queries WHERE run_id = ?"
                           " AND request_id IS NULL AND pid = ? AND " + where, (run, pytest_pid) + args).fetchone()

    seeded = outside("(sql LIKE 'CREATE TABLE notes%' OR sql LIKE 'INSERT INTO notes%'"
                     " OR sql = 'SELECT count(*) FROM notes')")
    repo = outside("sql = 'SELECT name FROM items WHERE id = ?'")
    in_requests = con.execute("SELECT count(*) FROM queries WHERE run_id = ? AND request_id IS NOT NULL",
                              (run,)).fetchone()[0]
    everything = con.execute("SELECT count(*) FROM queries WHERE run_id = ?", (run,)).fetchone()[0]
    con.close()
    # What the tests ran (tests/ci/sample/tests/test_repository.py), as captured and as charged.
    assert seeded[0] == 6 and repo[0] == 5
    assert tests["test_seeded_rows"]["queries"] == 6, tests["test_seeded_rows"]
    assert tests["test_seeded_rows"]["queries_outside_requests"] == 6
    assert tests["test_seeded_rows"]["n_plus_one"] == 0  # 4 INSERTs from one line: under the threshold of 5
    assert tests["test_repository_function"]["queries"] == 5
    assert tests["test_repository_function"]["n_plus_one"] == 1  # 5 SELECTs from one call site
    # 6 BEGINs and 6 COMMITs from one line of a helper: counted, never an N+1.
    assert tests["test_unit_of_work"]["queries"] == 20 and tests["test_unit_of_work"]["n_plus_one"] == 0
    assert tests["test_seeded_rows"]["db_ms"] == pytest.approx(seeded[1] / 1e6, abs=1e-6)
    assert tests["test_repository_function"]["db_ms"] == pytest.approx(repo[1] / 1e6, abs=1e-6)
    # The tests through requests keep their counts: one query per request, 3 per creation.
    assert tests["test_get_item"]["queries"] == 10 and tests["test_get_item"]["queries_outside_requests"] == 0
    assert tests["test_create_item"]["queries"] == 9
    # Every query is counted once: in a test, or outside any test (the seeding at import, in
    # pytest at collection and in the live server).
    assert report["queries"] == everything
    assert report["queries_in_requests"] == in_requests
    assert report["queries_in_requests"] + report["queries_outside_requests"] == everything
    assert sum(t["queries"] for t in report["tests"]) + report["queries_outside_tests"] == everything
    assert report["queries_outside_tests"] > 0
    assert re.search(r"TimeGlass CI: run \d+, 39 requests, 11 tests, %d SQL queries \(%d outside requests, %d "
                     r"outside any test\)" % (everything, everything - in_requests, report["queries_outside_tests"]),
                     clean_run.out), clean_run
    row = re.search(r"^tests/test_repository.py::test_repository_function +0 +5 +[\d.]+ +1 ", clean_run.out, re.M)
    assert row, clean_run


def test_test_queries_against_baselines(clean_run, tmp_path):
    """A test's queries outside requests are compared with a baseline that
    counted them; a baseline saved before they were counted (no
    queries_outside_requests) is compared with the queries of the test's
    requests only, so upgrading raises no false regression."""
    report = load_json(clean_run.dir / "report.json")
    base = load_json(clean_run.dir / "baseline.json")
    seeded = "tests/test_repository.py::test_seeded_rows"
    assert base["tests"][seeded]["queries"] == 6 and base["tests"][seeded]["queries_outside_requests"] == 6
    older = json.loads(json.dumps(base))
    for t in older["tests"].values():
        t["queries"] -= t.pop("queries_outside_requests")
    fewer = json.loads(json.dumps(base))
    fewer["tests"][seeded]["queries"] = 5
    for name, b in (("older", older), ("fewer", fewer)):
        (tmp_path / (name + ".json")).write_text(json.dumps(b))
    check = ["--run", str(report["run_id"]), "--events", str(clean_run.dir / "events.jsonl"), "--time-floor-ms", "1000"]
    res = run_ci(tmp_path, check + ["--baseline", str(tmp_path / "older.json")], cmd=False, db=clean_run.db)
    assert res.code == 0 and "0 regressions" in res.out, res
    res = run_ci(tmp_path, check + ["--baseline", str(tmp_path / "fewer.json")], cmd=False, db=clean_run.db)
    assert res.code == 1, res
    assert "FAIL regression test %s: 6 queries, baseline 5" % seeded in res.out, res


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
