"""The store the middleware creates is the collector's store: same schema
(compared with one that `timeglass run` created), same version, readable
by the `timeglass` commands."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from timeglass import _store
from timeglass._recorder import Recorder

from tgpy import TIMEGLASS, child_env, require_c_build


def schema(db):
    conn = sqlite3.connect(str(db))
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return objects, version
    finally:
        conn.close()


def python_store(path):
    _store.open_store(str(path)).close()
    return path


def test_schema_matches_the_collector(tmp_path):
    require_c_build()
    c_db = tmp_path / "c.db"
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(c_db), "--quiet", "--", "true"],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    py_db = python_store(tmp_path / "py.db")
    c_objects, c_version = schema(c_db)
    py_objects, py_version = schema(py_db)
    assert py_version == c_version == _store.SCHEMA_VERSION
    assert py_objects == c_objects


def test_schema_has_the_documented_tables(tmp_path):
    objects, version = schema(python_store(tmp_path / "s.db"))
    tables = {name for kind, name, _, _ in objects if kind == "table"}
    assert tables == {"runs", "processes", "requests", "process_metrics", "losses",
                      "query_sets", "spans", "frames", "stacks", "samples"}
    # queries are stored by set; every reader reads them through this view
    assert {name for kind, name, _, _ in objects if kind == "view"} == {"queries"}
    assert version == _store.SCHEMA_VERSION


def test_reopening_keeps_the_schema(tmp_path):
    db = python_store(tmp_path / "s.db")
    before = schema(db)
    python_store(db)
    assert schema(db) == before


def test_timeglass_requests_reads_a_middleware_store(tmp_path):
    require_c_build()
    db = tmp_path / "m.db"
    rec = Recorder(str(db))
    rec.add((123, 1_700_000_000_000_000_000, 2_500_000, None, 2_000_000, "GET", "/items/4", "a=b",
             "/items/{item_id}", "HTTP/1.1", 200, 0, 17, "127.0.0.1:5000", None, 0, "http", None))
    rec.flush(final=True)
    proc = subprocess.run([str(TIMEGLASS), "requests", "--db", str(db), "--json"],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(rows) == 1
    row = rows[0]
    assert (row["method"], row["path"], row["query_string"], row["route"], row["status"]) == (
        "GET", "/items/4", "a=b", "/items/{item_id}", 200)
    assert row["duration_ns"] == 2_500_000 and row["transport"] == "http"


def test_collector_and_middleware_share_a_store(tmp_path):
    """A store made by `timeglass run` takes middleware runs, and the reverse."""
    require_c_build()
    db = tmp_path / "shared.db"
    python_store(db)
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(db), "--quiet", "--", "true"],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rec = Recorder(str(db))
    rec.add((1, 1, 1, None, None, "GET", "/", None, None, "HTTP/1.1", 200, 0, 0, None, None, 0,
             "http", None))
    rec.flush(final=True)
    import sqlite3

    conn = sqlite3.connect(str(db))
    sources = [r[0] for r in conn.execute("SELECT source FROM runs ORDER BY id")]
    conn.close()
    assert sources == ["run", "middleware"]


def test_a_store_open_to_others_is_made_private(tmp_path, caplog):
    """The middleware writes a store as `timeglass run` does: an existing one
    left 0644 (with its -wal and -shm) in a 0755 .timeglass directory becomes
    0600 and 0700, with one warning."""
    import os
    import sqlite3

    store = tmp_path / ".timeglass" / "timeglass.db"
    python_store(store)
    assert os.stat(store).st_mode & 0o777 == 0o600 and os.stat(store.parent).st_mode & 0o777 == 0o700
    reader = sqlite3.connect(str(store))
    reader.execute("SELECT count(*) FROM runs").fetchone()
    try:
        files = [store, store.with_name("timeglass.db-wal"), store.with_name("timeglass.db-shm")]
        for f in files:
            os.chmod(f, 0o644)
        os.chmod(store.parent, 0o755)
        with caplog.at_level("WARNING", logger="timeglass"):
            python_store(store)
        assert [os.stat(f).st_mode & 0o777 for f in files] == [0o600] * 3
        assert os.stat(store.parent).st_mode & 0o777 == 0o700
        assert [r.getMessage() for r in caplog.records] == [
            "timeglass: store %s was open to other users (mode 0644); made it private (0600), and its directory: "
            "it holds captured requests" % store]
    finally:
        reader.close()


def _temp_files_open():
    """SQLite temporary files this process holds open (a statement journal
    spilled to disk: "etilqs_..." under the temp dir, unlinked at once)."""
    import os

    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += "etilqs_" in os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    return n


def test_the_writer_spills_no_statement_journal(tmp_path):
    """The recorder inserts up to 100 request rows with one statement. One
    that could abort half-way (a NOT NULL column, a foreign key) makes
    SQLite keep a copy of every page it touches, to undo that statement
    alone; past 64 KiB, 16 KiB pages soon, SQLite writes that copy to a
    temporary file, several times the bytes of the rows. The writer keeps
    it in memory; the rows land all the same."""
    import sqlite3

    from timeglass._recorder import ROW_COLUMNS

    db = tmp_path / "s.db"
    rec = Recorder(str(db))
    conn = rec._connection()
    seen = []

    class Watched:
        def execute(self, *args):
            cur = conn.execute(*args)
            seen.append(_temp_files_open())
            return cur

        def __getattr__(self, name):
            return getattr(conn, name)

    rec._conn = Watched()
    values = dict(tid=1, start_unix_ns=1, duration_ns=2, req_end_ns=1, resp_start_ns=2, method="GET",
                  path="/items/5?" + "q" * 200, query_string="a=1", route="/items/{item_id}",
                  http_version="HTTP/1.1", status=200, request_bytes=10, response_bytes=100,
                  client_addr="127.0.0.1:5", error=None, flags=0, transport="asgi", exception=None)
    for _ in range(3):
        for i in range(400):
            rec.add(tuple(values[c] if c != "start_unix_ns" else i for c in ROW_COLUMNS))
        rec.flush()
    rec.flush(final=True)
    assert seen and max(seen) == 0, "temporary files open while writing: %r" % sorted(set(seen))
    check = sqlite3.connect(str(db))
    try:
        assert check.execute("SELECT count(*) FROM requests").fetchone()[0] == 1200
    finally:
        check.close()


QUERY_COLUMNS = ("id", "run_id", "request_id", "process_id", "pid", "tid", "start_unix_ns", "duration_ns",
                 "db_system", "tap", "database", "sql", "sql_truncated", "fingerprint", "fingerprint_hash",
                 "params", "rows", "error", "call_site", "attribution", "duplicate", "n_plus_one", "kind",
                 "executions")


def every_query(db):
    """Every query's columns, each with its SQLite type."""
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute("SELECT %s FROM queries ORDER BY id"
                            % ", ".join("%s, typeof(%s)" % (c, c) for c in QUERY_COLUMNS)).fetchall()
    finally:
        conn.close()


def test_upgrading_to_query_sets_keeps_every_query(tmp_path):
    """Schema 12 stores queries by set, behind a queries view. A store of
    schema 11, upgraded by `timeglass run`, reads the same queries through
    the view, value for value, type for type and id for id, each a set of
    one; a query inserted through the view afterwards takes the next id."""
    require_c_build()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ui"))
    import fixture

    db = tmp_path / "v11.db"
    fixture.build(str(db), schema=11)
    before = every_query(db)
    assert len(before) == 12 and any(row[QUERY_COLUMNS.index("error") * 2] for row in before)
    proc = subprocess.run([str(TIMEGLASS), "run", "--db", str(db), "--quiet", "--", "true"],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert every_query(db) == before
    conn = sqlite3.connect(str(db))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _store.SCHEMA_VERSION
        assert conn.execute("SELECT count(*), sum(n = 1), sum(id IN (SELECT id FROM queries))"
                            " FROM query_sets").fetchone() == (12, 12, 12)
        conn.execute("INSERT INTO queries (run_id, request_id, pid, start_unix_ns, duration_ns, db_system, tap, sql)"
                     " VALUES (1, 9, 4242, 5, 7, 'sqlite', 'sqlite3', 'SELECT 1')")
        last = conn.execute("SELECT id, sql, kind, executions, duplicate FROM queries ORDER BY id DESC LIMIT 1").fetchone()
        assert last == (before[-1][0] + 1, "SELECT 1", "app", 1, 0)
    finally:
        conn.close()
