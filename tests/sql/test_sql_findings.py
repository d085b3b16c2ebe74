"""SQL findings on a real-looking service (apps/shopapp.py under `timeglass run`,
50 concurrent clients, a real PostgreSQL that logs every statement with its
duration, sqlite3).

What a user checks by hand:
- a driver's own statements (pool resets, BEGIN/COMMIT, SET, SQLAlchemy's
  first-connect probes) are recorded as housekeeping and never flagged;
- a loop of 20 single-row SELECTs on distinct ids is an N+1, not 19
  duplicates; the same SELECT with the same id twice is a duplicate;
- executemany is one query with its executions and rows, not an N+1;
- the statements recorded for a request are the ones PostgreSQL logged for
  it, and no recorded duration is shorter than PostgreSQL's own time for
  the statement (parse + bind + execute).
"""

import collections
import json
import re

from conftest import SHOP_APP, SHOP_DB, SHOP_ENDPOINTS, SHOP_PER_ENDPOINT, site_lines

PG = "postgresql"


def _marker(n):
    return "/* r=%d */" % n


def _site_lines():
    return {name: "%s:%d %s" % (SHOP_APP, n, func) for name, (n, func) in site_lines(SHOP_APP).items()}


def _requests_of(run, endpoint):
    return [(n, run.by_n[n]) for ep, n, _path in run.plan if ep == endpoint]


def _on_request(run, req):
    return [q for q in run.queries if q["request_id"] == req["id"]]


def _marked(run, req, n):
    return [q for q in _on_request(run, req) if _marker(n) in (q["sql"] or "")]


def _executions(q):
    return q.get("executions", 1)


# Statements the drivers and libraries run by themselves in this app.
HOUSEKEEPING = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|SET application_name|SELECT pg_advisory_unlock_all\(\)|"
    r"select pg_catalog\.version\(\)|select current_schema\(\)|show transaction isolation level|"
    r"show standard_conforming_strings)", re.I)


def test_every_request_answered(shop):
    assert len(shop.responses) == len(SHOP_ENDPOINTS) * SHOP_PER_ENDPOINT
    bad = {p: r for p, r in shop.responses.items() if r[0] != 200}
    assert not bad, bad


def test_housekeeping_recorded_never_flagged(shop):
    """Pool resets, transaction control, SET and SQLAlchemy's probes are
    recorded, marked housekeeping, never N+1 or duplicate; the app's own
    statements are never housekeeping."""
    problems = []
    seen = collections.Counter()
    flagged = 0
    for q in shop.queries:
        sql = q["sql"] or ""
        house = bool(HOUSEKEEPING.match(sql))
        if house:
            seen[HOUSEKEEPING.match(sql).group(1).lower()] += 1
            if q["n_plus_one"] or q["duplicate"]:
                flagged += 1
            if q.get("kind") != "housekeeping":
                problems.append("kind %r: %s" % (q.get("kind"), sql[:80]))
        elif "/* r=" in sql and q.get("kind") != "app":
            problems.append("app query of kind %r: %s" % (q.get("kind"), sql[:80]))
    for what in ("begin", "commit", "set application_name", "select pg_advisory_unlock_all()",
                 "select pg_catalog.version()", "show standard_conforming_strings"):
        if not seen[what]:
            problems.append("no %r recorded" % what)
    assert not flagged and not problems, "%d housekeeping queries flagged; %d problems, first ones:\n%s" % (
        flagged, len(problems), "\n".join(problems[:20]))


def test_dashboard_acquires_are_not_an_n_plus_one(shop):
    """Six repository calls, each on its own pooled connection: six app
    queries and six pool resets from one call site, nothing flagged."""
    sites = _site_lines()
    problems = []
    for n, req in _requests_of(shop, "dashboard"):
        qs = _on_request(shop, req)
        marked = [q for q in qs if _marker(n) in (q["sql"] or "")]
        resets = [q for q in qs if "pg_advisory_unlock_all" in (q["sql"] or "")]
        if len(marked) != 6 or len(resets) != 6:
            problems.append("r=%d: %d app queries, %d resets (want 6, 6)" % (n, len(marked), len(resets)))
        if any(q["call_site"] != sites["repo-value"] for q in marked):
            problems.append("r=%d: call sites %r" % (n, sorted({q["call_site"] for q in marked})))
        flagged = [q["sql"][:60] for q in qs if q["n_plus_one"] or q["duplicate"]]
        if flagged:
            problems.append("r=%d: flagged %r" % (n, flagged))
    assert not problems, "\n".join(problems[:20])


LOOPS = ("apg-loop", "dbs-loop", "sqla-loop", "pg3-loop", "lite-loop")
TWICE = ("apg-twice", "sqla-twice", "pg3-twice", "lite-twice")


def test_loop_on_distinct_ids_is_n_plus_one_not_duplicates(shop):
    problems = []
    dups = 0
    for ep in LOOPS:
        for n, req in _requests_of(shop, ep):
            qs = _marked(shop, req, n)
            if len(qs) != 20:
                problems.append("%s r=%d: %d queries, want 20" % (ep, n, len(qs)))
                continue
            dups += sum(1 for q in qs if q["duplicate"])
            if not all(q["n_plus_one"] for q in qs):
                problems.append("%s r=%d: %d of 20 flagged N+1" % (ep, n, sum(1 for q in qs if q["n_plus_one"])))
    assert not dups and not problems, "%d duplicate flags on distinct ids; %s" % (dups, "\n".join(problems[:20]))


def test_same_query_same_values_is_duplicate(shop):
    problems = []
    for ep in TWICE:
        for n, req in _requests_of(shop, ep):
            qs = sorted(_marked(shop, req, n), key=lambda q: (q["start_unix_ns"], q["id"]))
            flags = [(q["duplicate"], q["n_plus_one"]) for q in qs]
            if flags != [(0, 0), (1, 0)]:
                problems.append("%s r=%d: (duplicate, n_plus_one) %r, want [(0, 0), (1, 0)]" % (ep, n, flags))
    assert not problems, "\n".join(problems[:20])


# endpoint -> executions (= rows) of its one batch query
BATCHES = {"lite-many": 500, "apg-many": 50, "pg2-many": 30}


def test_executemany_is_one_query(shop):
    sites = _site_lines()
    problems = []
    for ep, count in BATCHES.items():
        for n, req in _requests_of(shop, ep):
            qs = _marked(shop, req, n)
            got = [(len(qs), _executions(q), q["rows"], q["n_plus_one"], q["duplicate"]) for q in qs[:1]]
            if got != [(1, count, count, 0, 0)]:
                problems.append("%s r=%d: (queries, executions, rows, n_plus_one, duplicate) %r, want %r" % (
                    ep, n, got[0] if got else (0,), (1, count, count, 0, 0)))
            elif qs[0]["call_site"] != sites[ep]:
                problems.append("%s r=%d: call site %r" % (ep, n, qs[0]["call_site"]))
    assert not problems, "%d problems, first ones:\n%s" % (len(problems), "\n".join(problems[:20]))


def test_executemany_then_a_loop_of_the_same_statement(shop):
    """sqlite3: the batch and each execute() of the loop after it stay apart
    (the loop is the app's N+1, the batch is not)."""
    sites = _site_lines()
    problems = []
    for n, req in _requests_of(shop, "lite-mixed"):
        qs = sorted(_marked(shop, req, n), key=lambda q: (q["start_unix_ns"], q["id"]))
        got = [(q["call_site"], _executions(q), q["rows"], q["n_plus_one"]) for q in qs]
        want = [(sites["lite-mixed-many"], 10, 10, 0)] + [(sites["lite-mixed-loop"], 1, 1, 1)] * 6
        if got != want:
            problems.append("r=%d: %r" % (n, got))
    assert not problems, "\n".join(problems[:10])


# -- PostgreSQL's log ---------------------------------------------------------------

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+ \[(\d+)\] (\S*) (\w+):  (.*)$")
DURATION = re.compile(r"^duration: ([\d.]+) ms(?:  (parse|bind) ([^:]*): (.*))?$", re.S)
TAG = re.compile(r"^SET application_name = 'req-(\d+)'$")


def _norm(sql):
    return " ".join((sql or "").split())


def _shape(sql):
    """The text with its literals taken out (psycopg2 puts the values of
    each execution of a batch into its text)."""
    return re.sub(r"'(?:[^']|'')*'|\b\d+\b", "?", sql)


def _log_records(text, database):
    """(pid, severity, message) of the lines of one database; a message
    continued on further lines (multi-line SQL) is joined back."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append([int(m.group(1)), m.group(2), m.group(3), m.group(4)])
        elif out and not line.startswith("\t") and not re.match(r"^\d{4}-", line):
            out[-1][3] += "\n" + line
        elif out and line.startswith("\t"):
            out[-1][3] += "\n" + line[1:]
    return [(pid, sev, msg) for pid, db, sev, msg in out if db == database]


def _pg_executions(text, database):
    """{request number: [(normalized sql, milliseconds)]}: every statement
    execution PostgreSQL logged, with its parse (when this execution began
    with it), bind and execute times, tied to the request whose
    `SET application_name = 'req-N'` last ran on that backend (statements
    before a backend's first one belong to that first request)."""
    per_pid = collections.defaultdict(list)
    for pid, sev, msg in _log_records(text, database):
        if sev == "LOG":
            per_pid[pid].append(msg)
    out = collections.defaultdict(list)
    for pid, msgs in per_pid.items():
        execs = []  # [sql, ms, request]
        current = None
        parse = {}
        bind = None
        waiting = None  # execution awaiting its bare duration line
        for msg in msgs:
            d = DURATION.match(msg)
            if d and d.group(2) is None:
                if waiting is not None:
                    waiting[1] += float(d.group(1))
                    waiting = None
                continue
            if d and d.group(2) == "parse":
                parse[d.group(3)] = float(d.group(1))
                continue
            if d and d.group(2) == "bind":
                bind = (d.group(3), float(d.group(1)))
                continue
            if msg.startswith("statement: "):
                sql = msg[len("statement: "):]
                t = TAG.match(sql.strip())
                if t:
                    current = int(t.group(1))
                waiting = [_norm(sql), 0.0, current]
                execs.append(waiting)
                continue
            m = re.match(r"^execute ([^:]*): (.*)$", msg, re.S)
            if m:
                name, sql = m.group(1), m.group(2)
                ms = parse.pop(name, 0.0)
                if bind and bind[0] == name:
                    ms += bind[1]
                bind = None
                t = TAG.match(sql.strip())
                if t:
                    current = int(t.group(1))
                waiting = [_norm(sql), ms, current]
                execs.append(waiting)
        first = next((e[2] for e in execs if e[2] is not None), None)
        for sql, ms, req in execs:
            out[req if req is not None else first].append((sql, ms))
    return out


def test_statements_and_durations_match_postgresql_log(shop):
    """Per request, the PostgreSQL statements recorded are those the server
    logged, and each recorded duration covers the server's own time."""
    pg = _pg_executions(shop.pg_log, SHOP_DB)
    problems = []
    compared = below = 0
    worst = []
    for _ep, n, path in shop.plan:
        req = shop.by_n[n]
        tg = [q for q in _on_request(shop, req) if q["db_system"] == PG]
        # A batch is recorded once with the first execution's text: its
        # executions are the logged statements of its shape.
        batches = {_shape(_norm(q["sql"])) for q in tg if _executions(q) > 1}

        def key(sql):
            return ("batch", _shape(sql)) if _shape(sql) in batches else sql

        want = collections.Counter(key(sql) for sql, _ms in pg.get(n, []))
        got = collections.Counter()
        for q in tg:
            got[key(_norm(q["sql"]))] += _executions(q)
        if got != want:
            problems.append("%s: recorded - logged %r; logged - recorded %r" % (
                path, dict(got - want), dict(want - got)))
            continue
        by_sql = collections.defaultdict(list)
        for sql, ms in pg[n]:
            by_sql[key(sql)].append(ms * 1e6)
        for k, server_ns in by_sql.items():
            mine = [q for q in tg if key(_norm(q["sql"])) == k]
            sql = k[1] if isinstance(k, tuple) else k
            if len(mine) == 1 and _executions(mine[0]) > 1:
                pairs = [(mine[0]["duration_ns"], sum(server_ns))]
            else:
                # A matching of recorded to logged executions where each
                # recorded one is the longer exists iff it holds in order.
                pairs = list(zip(sorted(q["duration_ns"] for q in mine), sorted(server_ns)))
            for ours, theirs in pairs:
                compared += 1
                # The log prints milliseconds rounded to three decimals.
                if ours + 500 < theirs:
                    below += 1
                    worst.append((theirs - ours, path, sql[:70], ours, theirs))
    worst.sort(reverse=True)
    detail = "\n".join("%s: %s recorded %.3f ms, PostgreSQL %.3f ms" % (p, s, o / 1e6, t / 1e6)
                       for _d, p, s, o, t in worst[:10])
    assert not problems and not below, (
        "%d requests whose statements differ from the log; %d of %d durations below PostgreSQL's\n%s\n%s" % (
            len(problems), below, compared, "\n".join(problems[:10]), detail))


# -- stores recorded before queries had a kind ----------------------------------------

def test_upgraded_store_unflags_housekeeping(tmp_path):
    """A schema-3 store, upgraded by `timeglass run`: the housekeeping it
    holds is reclassified and loses its flags; the app's queries keep theirs."""
    import sqlite3
    import sys
    from pathlib import Path

    from tgtest import REPO, require_built, run_cli
    require_built()
    sys.path.insert(0, str(Path(REPO) / "python"))
    from timeglass import _store

    db = str(tmp_path / "old.db")
    conn = sqlite3.connect(db)
    for step in _store.MIGRATIONS[:3]:
        conn.executescript(step)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO runs (id, started_unix_ns, command) VALUES (1, 1, 'uvicorn app:app')")
    rows = [  # sql, fingerprint, duplicate, n_plus_one
        ("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
         "select pg_advisory_unlock_all(); close all; unlisten *; reset all", 0, 1),
        ("BEGIN", "begin", 1, 0),
        ("SET application_name = 'x'", "set application_name = ?", 1, 1),
        ("SELECT name FROM items WHERE id = 1", "select name from items where id = ?", 0, 1),
        ("UPDATE items SET name = 'begin' WHERE id = 2", "update items set name = ? where id = ?", 1, 0),
    ]
    for k, (sql, fp, dup, npo) in enumerate(rows):
        conn.execute("INSERT INTO queries (id, run_id, pid, start_unix_ns, duration_ns, db_system, tap, sql, fingerprint,"
                     " duplicate, n_plus_one) VALUES (?, 1, 1, ?, 1000, 'postgresql', 'wire', ?, ?, ?, ?)",
                     (k + 1, k + 1, sql, fp, dup, npo))
    conn.commit()
    conn.close()
    run_cli("run", "--db", db, "--quiet", "--", "/bin/true")
    out = run_cli("queries", "--db", db, "--run", "1", "--json").stdout
    got = [json.loads(line) for line in out.splitlines()]
    assert [(q["kind"], q["duplicate"], q["n_plus_one"], q["executions"]) for q in got] == [
        ("housekeeping", 0, 0, 1), ("housekeeping", 0, 0, 1), ("housekeeping", 0, 0, 1),
        ("app", 0, 1, 1), ("app", 1, 0, 1)]
