"""Retention (`--keep-runs`): the runs it drops leave no row behind in any
table, and the run it keeps is whole.

Three recorded runs of the example app (requests, SQLite queries, stack
samples, process metrics, losses), then a fourth with `--keep-runs 1`.
"""

import contextlib
import urllib.error
import urllib.request

from tgtest import open_store, wait_for

# Every table with rows of a run: (table, how its rows name their run).
RUN_ROWS = {
    "processes": "run_id",
    "requests": "run_id",
    "queries": "run_id",
    "spans": "run_id",
    "samples": "run_id",
    "losses": "run_id",
    "process_metrics": "(SELECT run_id FROM processes p WHERE p.id = process_metrics.process_id)",
}
PATHS = ["/", "/notes", "/queries10", "/items/7", "/slow?ms=120", "/nope"]


def traffic(server, rounds):
    for _ in range(rounds):
        for path in PATHS:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d%s" % (server.port, path), timeout=10).read()
            except urllib.error.HTTPError:
                pass
    return rounds * len(PATHS)


def rows_per_run(db):
    with contextlib.closing(open_store(db)) as conn:
        out = {}
        for table, run in RUN_ROWS.items():
            for run_id, n in conn.execute("SELECT %s, count(*) FROM %s GROUP BY 1" % (run, table)):
                out.setdefault(run_id, {})[table] = n
        return out


def test_keep_runs_deletes_every_row_of_the_runs_it_drops(traced, store):
    sent = []
    for _ in range(3):
        with traced() as server:
            sent.append(traffic(server, 4))
    before = rows_per_run(store)
    assert sorted(before) == [1, 2, 3], before
    for run in (1, 2, 3):
        # Rows of every kind existed, so the deletes below have work to do.
        for table in ("processes", "requests", "queries", "samples", "process_metrics"):
            assert before[run].get(table, 0) > 0, (run, table, before[run])
        assert before[run]["requests"] == sent[run - 1]
    with contextlib.closing(open_store(store)) as conn:
        # Both kinds of queries, deleted through different indexes: those
        # of requests and those outside any (the app's start-up).
        outside = dict(conn.execute("SELECT run_id, count(*) FROM queries WHERE request_id IS NULL GROUP BY 1"))
    assert all(outside.get(run, 0) > 0 for run in (1, 2, 3)), outside

    with traced(tg_args=("--keep-runs", "1")) as server:
        # Old runs are deleted while the app starts: wait for it, then record.
        def pruned():
            with contextlib.closing(open_store(store)) as conn:
                return conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        wait_for(pruned, 20, what="runs 1-3 pruned")
        kept = traffic(server, 2)
    after = rows_per_run(store)
    assert list(after) == [4], "rows of dropped runs remain: %r" % {
        r: t for r, t in after.items() if r != 4}
    assert after[4]["requests"] == kept
    with contextlib.closing(open_store(store)) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM runs")] == [4]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Queries and samples of the kept run still point to its requests.
        assert conn.execute("SELECT count(*) FROM queries q WHERE q.request_id IS NOT NULL AND NOT EXISTS"
                            " (SELECT 1 FROM requests r WHERE r.id = q.request_id)").fetchone()[0] == 0
        # Frames and stacks are shared by runs and stay.
        assert conn.execute("SELECT count(*) FROM stacks").fetchone()[0] > 0
