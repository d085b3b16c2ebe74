"""GET /api/bench: the report `timeglass bench` left beside the store."""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "data", "bench-run-1.json")


def test_no_report_yet(make_server, tmp_path):
    import fixture
    db = str(tmp_path / "timeglass.db")
    fixture.build(db)
    s = make_server(db)
    body = s.json("/api/bench", expect=404)
    assert body["error"]["code"] == "no_bench"


def test_report_of_a_run(make_server, tmp_path):
    import fixture
    db = str(tmp_path / "timeglass.db")
    fixture.build(db)
    os.makedirs(tmp_path / "bench")
    shutil.copy(REPORT, tmp_path / "bench" / "run-1.json")
    s = make_server(db)
    doc = s.json("/api/bench")
    assert doc["run_id"] == 1 and doc["findings"][0]["request_id"] == 3
    assert s.json("/api/bench?run=1")["operations"][0]["p99_ms"] == 7.5
    assert s.json("/api/bench?run=2", expect=404)["error"]["code"] == "no_bench"
    assert s.json("/api/bench?run=x", expect=400)["error"]["code"] == "bad_param"
