"""The requests list on a store big enough for each of its ways in: the
rows and their order must be what the filters select, whichever index the
list reads them on (a filter's index, the sort index walked, the walk given
up for a filter's index) and when the run's aggregates answer that nothing
matches."""
import os
import sqlite3
import sys
import urllib.parse

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import gen_store  # noqa: E402

N = 100_000
LIMIT = 50


def q(s):
    return urllib.parse.quote(s, safe="")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("big") / "timeglass.db")
    db = gen_store.create_store(path, indexes=False)
    gen_store.generate(db, N, 7, 1_700_000_000_000_000_000, 600.0)
    # Some connections end before a response: requests without a status.
    db.execute("UPDATE requests SET status = NULL WHERE id % 613 = 5")
    db.executescript(gen_store.SCHEMA_INDEXES)
    gen_store.upgrade(db)  # the store as the collector makes it now
    db.close()
    return path


@pytest.fixture(scope="module")
def rows(big):
    db = sqlite3.connect(big)
    out = db.execute("SELECT id, start_unix_ns, duration_ns, method, path, route, status FROM requests"
                     " WHERE run_id = 1").fetchall()
    db.close()
    return out


@pytest.fixture(scope="module")
def ui(big):
    from conftest import Server
    s = Server(big)
    try:
        s.json("/api/overview?run=1")  # loads the run's aggregates
        yield s
    finally:
        s.stop()


def window(rows):
    lo = min(r[1] for r in rows)
    hi = max(r[1] for r in rows)
    mid, half = (lo + hi) // 2, (hi - lo) // 20
    return mid - half, mid + half


def matches(r, f, win):
    _, start, dur, method, path, route, status = r
    if "route" in f and route != f["route"]:
        return False
    if "method" in f and method != f["method"]:
        return False
    if f.get("status") == "none":
        if status is not None:
            return False
    elif "status" in f:
        lo = int(f["status"][0]) * 100
        if status is None or not lo <= status <= lo + 99:
            return False
    if "min_ms" in f and dur < f["min_ms"] * 1_000_000:
        return False
    if "q" in f and f["q"].lower() not in path.lower():
        return False
    if "path" in f and path != f["path"]:
        return False
    if "window" in f and not win[0] <= start < win[1]:
        return False
    return True


FILTERS = {
    "route": {"route": "/users/{user_id}/orders"},
    "route_method": {"route": "/items/{item_id}", "method": "GET"},
    "rare_route": {"route": "/reports/daily", "method": "GET"},
    "method": {"method": "POST"},
    "status4": {"status": "4xx"},
    "status5": {"status": "5xx"},
    "status2": {"status": "2xx"},
    "nostatus": {"status": "none"},
    "min100": {"min_ms": 100},
    "min500": {"min_ms": 500},
    "q": {"q": "health"},
    "q_rare": {"q": "/ITEMS/12"},  # ASCII letters in any case
    "path": {"path": "/users/42/orders"},
    "window": {"window": True},
}
NAMES = sorted(FILTERS)
COMBOS = [(a,) for a in NAMES] + [(a, b) for i, a in enumerate(NAMES) for b in NAMES[i + 1:]] + [
    ("route", "status4", "min100"), ("route_method", "status4", "min100"), ("status4", "min100", "q")]


def expected(rows, combo, sort):
    f = {}
    for name in combo:
        f.update(FILTERS[name])
    win = window(rows)
    query = ""
    for k, v in f.items():
        if k == "window":
            query += "&from=%d&to=%d" % win
        else:
            query += "&%s=%s" % (k, q(str(v)))
    key = 1 if sort == "start" else 2
    expect = sorted((r for r in rows if matches(r, f, win)), key=lambda r: (r[key], r[0]), reverse=True)
    return query, [r[0] for r in expect]


def follow(ui, sort, query, want, max_calls=1000):
    """Pages from the first on, following "next", until want rows came or
    the list ends; returns (ids, the pages)."""
    got, after, pages = [], None, []
    while len(got) < want and len(pages) < max_calls:
        page = ui.json("/api/requests?run=1&limit=%d&sort=%s%s%s" % (LIMIT, sort, query, "&after=" + q(after) if after else ""))
        pages.append(page)
        assert len(page["rows"]) <= LIMIT
        # A page has all its rows unless the search stopped on its budget.
        assert page["partial"] or len(page["rows"]) == LIMIT or page["next"] is None, page
        got += [r["id"] for r in page["rows"]]
        after = page["next"]
        if not after:
            break
    return got, pages


@pytest.mark.parametrize("server", ["ui", "ui_store"])
@pytest.mark.parametrize("sort", ["start", "duration"])
@pytest.mark.parametrize("combo", COMBOS, ids=["+".join(c) for c in COMBOS])
def test_pages_match_the_filters(request, rows, combo, sort, server):
    query, expect = expected(rows, combo, sort)
    got, _ = follow(request.getfixturevalue(server), sort, query, 2 * LIMIT)
    assert got[:2 * LIMIT] == expect[:2 * LIMIT]


DEEP_COMBOS = [(), ("min100",), ("min100", "status4"), ("route",), ("status2", "window"), ("min500", "q")]


@pytest.mark.parametrize("sort", ["start", "duration"])
@pytest.mark.parametrize("direction", ["desc", "asc"])
@pytest.mark.parametrize("combo", DEEP_COMBOS, ids=["+".join(c) or "none" for c in DEEP_COMBOS])
def test_deep_pages_either_way_match_the_filters(ui, rows, combo, sort, direction):
    # Twenty pages, newest or oldest (slowest or fastest) first: by
    # duration or with min_ms, from the aggregates, which skip the rows
    # the page so far rules out.
    query, expect = expected(rows, combo, sort)
    if direction == "asc":
        query += "&dir=asc"
        expect = expect[::-1]
    got, _ = follow(ui, sort, query, 20 * LIMIT)
    assert got[:20 * LIMIT] == expect[:20 * LIMIT]


@pytest.fixture(scope="module")
def ui_store(big):
    # The aggregates never answer: every list is read from the store, which
    # has no index by duration.
    from conftest import Server
    s = Server(big, env={"TIMEGLASS_UI_LIST_MEMORY": "0"})
    yield s
    s.stop()


def test_by_duration_first_thing_after_start(big, rows):
    # Sorted or filtered by duration, the list waits for the run's
    # aggregates when they are not loaded yet.
    from conftest import Server
    s = Server(big)
    try:
        for combo, sort in ((("min500",), "start"), (("route", "status4"), "duration")):
            query, expect = expected(rows, combo, sort)
            got, _ = follow(s, sort, query, 2 * LIMIT)
            assert got[:2 * LIMIT] == expect[:2 * LIMIT]
    finally:
        s.stop()


@pytest.fixture(scope="module")
def ui_small_scan(big):
    # A search by path text reads at most 3,000 rows per call here, so that
    # on this store its pages stop early as on a store of millions.
    from conftest import Server
    s = Server(big, env={"TIMEGLASS_UI_SCAN_ROWS": "3000", "TIMEGLASS_UI_LIST_MEMORY": "0"})
    yield s
    s.stop()


# With status=none, the list reads that filter's rows in one call: those
# pages are whole.
Q_COMBOS = [("q",), ("method", "q"), ("q", "window"), ("q", "status4"), ("min100", "q"), ("q", "route"),
            ("q", "status4", "min100"), ("nostatus", "q")]


def scans(combo, sort):
    """Whether the list walks the start index in calls of a bounded budget:
    sorted by start, with no indexed filter but its window (only status=none
    has an index of its own: the path text, route, method, status class and
    min_ms have none). By duration there is no index to walk (aggregates off
    here): one call sorts what matches."""
    return sort == "start" and "nostatus" not in combo


@pytest.mark.parametrize("sort", ["start", "duration"])
@pytest.mark.parametrize("combo", Q_COMBOS, ids=["+".join(c) for c in Q_COMBOS])
def test_a_search_that_stops_early_goes_on_where_it_stopped(ui_small_scan, rows, combo, sort):
    query, expect = expected(rows, combo, sort)
    got, pages = follow(ui_small_scan, sort, query, len(expect) + 1)  # to the end
    # Every matching row once, in order, to the end of the list.
    assert got == expect and pages[-1]["next"] is None
    for page in pages:
        if page["partial"]:
            assert 0 < page["scanned_rows"] <= 3000 and page["next"]
            # It read up to the place "next" names.
            assert abs(page["scanned_to_ms"] - int(page["next"].split(":")[0]) / 1e6) < 0.01
    if not scans(combo, sort):
        assert not any(p["partial"] for p in pages)
    elif len(expect) < N / 3000:
        # Rarer than one match per budget: some page must have stopped early.
        assert any(p["partial"] for p in pages)


def test_a_search_that_matches_nothing_ends(ui_small_scan, rows):
    assert not any("nosuchpath" in r[4] for r in rows)
    got, pages = follow(ui_small_scan, "start", "&q=nosuchpath&method=GET", 1)
    assert got == [] and pages[-1]["next"] is None
    assert len(pages) == -(-sum(1 for r in rows if r[3] == "GET") // 3000) or len(pages) == -(-N // 3000)
    assert all(p["rows"] == [] for p in pages)


def test_no_match_then_a_new_row_matches(ui, big, rows):
    # /health never fails in the generated data: the aggregates say so, and
    # must learn of a row added later.
    assert not any(r[5] == "/health" and r[6] and r[6] >= 500 for r in rows)
    path = "/api/requests?run=1&route=%s&method=GET&status=5xx" % q("/health")
    assert ui.json(path)["rows"] == []
    assert ui.json("/api/requests?run=1&route=%s&min_ms=60000" % q("/health"))["rows"] == []
    w = sqlite3.connect(big)
    w.execute("INSERT INTO requests (%s) VALUES (%s)" % (gen_store.REQUEST_COLUMNS, ",".join("?" * 24)),
              gen_store.request_row(id=N + 1, start_unix_ns=1_700_000_700_000_000_000, duration_ns=70_000_000_000,
                                    path="/health", route="/health", status=503))
    w.commit()
    w.close()
    assert [r["id"] for r in ui.json(path)["rows"]] == [N + 1]
    assert [r["id"] for r in ui.json("/api/requests?run=1&route=%s&min_ms=60000" % q("/health"))["rows"]] == [N + 1]


def test_runs_count_the_requests_from_the_aggregates(ui, big):
    # Once the run's aggregates are loaded, the runs list takes its count
    # from them (counting ten million rows on the index takes 0.3 s): the
    # same number, a row added since included.
    def stored():
        db = sqlite3.connect(big)
        n = db.execute("SELECT count(*) FROM requests WHERE run_id = 1").fetchone()[0]
        db.close()
        return n
    assert ui.json("/api/runs")["runs"][0]["requests"] == stored()
    w = sqlite3.connect(big)
    nid = w.execute("SELECT max(id) + 1 FROM requests").fetchone()[0]
    w.execute("INSERT INTO requests (%s) VALUES (%s)" % (gen_store.REQUEST_COLUMNS, ",".join("?" * 24)),
              gen_store.request_row(id=nid, start_unix_ns=1_700_000_800_000_000_000, duration_ns=1_000_000,
                                    path="/items/1", route="/items/{item_id}", status=200))
    w.commit()
    w.close()
    assert ui.json("/api/runs")["runs"][0]["requests"] == stored()


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A run whose durations rise with the row's place, then fall twice
    (each duration three times, far apart: a row can tie with the last of a
    page so far), and whose starts are shuffled: the aggregates' zones of
    rows are narrow in duration and span the whole run in start."""
    path = str(tmp_path_factory.mktemp("tight") / "timeglass.db")
    db = gen_store.create_store(path)
    t0 = 1_700_000_000_000_000_000
    db.execute("INSERT INTO runs (id, started_unix_ns, ended_unix_ns, command, cwd, hostname, tg_version, source,"
               " exit_status) VALUES (1, ?, ?, 'uvicorn main:app', '/srv/app', 'devbox', '0.1.0', 'run', 0)",
               (t0 - 10**9, t0 + 10**12))
    n = 3 * 4096 + 100
    third = n // 3

    def dur(i):
        return (i % third if i < third else third - 1 - i % third) * 1000

    rows = [(i, t0 + (i * 7919 % n) * 1_000_000, dur(i), 404 if i % 5 == 0 else 200) for i in range(1, n + 1)]
    db.executemany("INSERT INTO requests (%s) VALUES (%s)" % (gen_store.REQUEST_COLUMNS, ",".join("?" * 24)),
                   [gen_store.request_row(id=i, start_unix_ns=s, duration_ns=d, status=st, path="/items/%d" % (i % 50),
                                          route="/items/{item_id}") for i, s, d, st in rows])
    db.commit()
    db.close()
    return path, rows


@pytest.mark.parametrize("sort,direction,query,keep", [
    ("duration", "desc", "", lambda r: True),
    ("duration", "asc", "", lambda r: True),
    ("duration", "desc", "&min_ms=2&status=4xx", lambda r: r[2] >= 2_000_000 and r[3] == 404),
    ("duration", "asc", "&min_ms=2", lambda r: r[2] >= 2_000_000),
    ("start", "desc", "&min_ms=2", lambda r: r[2] >= 2_000_000),
    ("start", "asc", "&min_ms=1&status=2xx", lambda r: r[2] >= 1_000_000 and r[3] == 200),
])
def test_every_page_from_narrow_zones(tight, sort, direction, query, keep):
    # Each page's bounds rule out whole zones of rows, and pages end inside
    # a run of equal durations: every matching row once, in order.
    from conftest import Server
    path, rows = tight
    key = 2 if sort == "duration" else 1
    expect = [r[0] for r in sorted((r for r in rows if keep(r)), key=lambda r: (r[key], r[0]),
                                   reverse=direction == "desc")]
    s = Server(path)
    try:
        got, after = [], None
        for _ in range(100):
            page = s.json("/api/requests?run=1&limit=400&sort=%s&dir=%s%s%s"
                          % (sort, direction, query, "&after=" + q(after) if after else ""))
            got += [r["id"] for r in page["rows"]]
            after = page["next"]
            if not after:
                break
        assert got == expect
    finally:
        s.stop()


def scanned_store(path, routed_first):
    """A run of 3,000 requests of one route (/items/N) and 5,100 of a
    scanner probing distinct paths that no route matches (more endpoints
    than the aggregates keep: the last ones are pooled as "(other)"), the
    route's first or the scanner's first."""
    db = gen_store.create_store(path)
    gen_store.upgrade(db)
    t0 = 1_700_000_000_000_000_000
    db.execute("INSERT INTO runs (id, started_unix_ns, ended_unix_ns, command, cwd, hostname, tg_version, source,"
               " exit_status) VALUES (1, ?, ?, 'uvicorn main:app', '/srv/app', 'devbox', '0.1.0', 'run', 0)",
               (t0 - 10**9, t0 + 10**12))
    routed = [dict(path="/items/%d" % i, route="/items/{item_id}", status=200) for i in range(3000)]
    scans = [dict(path="/wp-admin/%d.php" % i, status=404) for i in range(5100)]
    kinds = routed + scans if routed_first else scans + routed
    db.executemany("INSERT INTO requests (%s) VALUES (%s)" % (gen_store.REQUEST_COLUMNS, ",".join("?" * 24)),
                   [gen_store.request_row(id=i + 1, start_unix_ns=t0 + i * 1_000_000, duration_ns=1_000_000, **k)
                    for i, k in enumerate(kinds)])
    db.commit()
    db.close()
    return [i + 1 for i, k in enumerate(kinds) if k.get("route") and k["path"].startswith("/items/77")]


@pytest.mark.parametrize("routed_first", [True, False], ids=["pooled_without_route", "pooled_with_route"])
def test_a_route_beside_pooled_endpoints(tmp_path, routed_first):
    # The store has no index by route: the aggregates answer a route's list
    # (whole pages) while the requests pooled as "(other)" have no route,
    # as a scanner's 404s have not; once some with a route are pooled, the
    # store is walked (pages that stop early here). Either way the rows are
    # the route's.
    from conftest import Server
    path = str(tmp_path / "timeglass.db")
    want = scanned_store(path, routed_first)
    s = Server(path, env={"TIMEGLASS_UI_SCAN_ROWS": "500"})
    try:
        query = "&route=%s&q=%s" % (q("/items/{item_id}"), q("/items/77"))
        got, pages = follow(s, "start", query, len(want) + 1)
        assert sorted(got) == want and pages[-1]["next"] is None
        assert any(p["partial"] for p in pages) == (not routed_first)
        assert s.json("/api/endpoints?run=1")["capped"]
    finally:
        s.stop()
