"""A RealWorld-style API (tests/realapps/conduit) under `timeglass run`,
half of its traffic through nginx, with concurrent clients: what TimeGlass
says about each request is checked against what the client sent and got
and against PostgreSQL's log (see realapp.py for the checks).

The app has what such backends have: routers included with prefixes and a
route at path "", an admin sub-app mounted at /admin, a pooled asyncpg
connection per request from a dependency plus more acquisitions inside
(the current user, concurrent lookups), asyncio.gather and TaskGroup
fan-out, Starlette's BaseHTTPMiddleware (the rest of the app runs in a task
of its own), sync routes in the threadpool on a psycopg2 pool, a background
task, and two bugs that answer 500.
"""
import pytest

import realapp
from conftest import record_app
from realapp import Kind

CLIENTS = 8
ROUNDS = 6  # each client sends every kind of request this many times, shuffled

KINDS = {
    "list": Kind("GET", "/api/v1/articles?limit=5", "/api/v1/articles", 200, 1),
    "feed": Kind("GET", "/api/v1/articles/feed", "/api/v1/articles/feed", 200, 6),
    "authors": Kind("GET", "/api/v1/articles/with-authors", "/api/v1/articles/with-authors", 200, 9),
    "article": Kind("GET", "/api/v1/articles/article-{n}", "/api/v1/articles/{slug}", 200, 1),
    "missing": Kind("GET", "/api/v1/articles/nope-{n}", "/api/v1/articles/{slug}", 404, 1),
    "comments": Kind("GET", "/api/v1/articles/article-{n}/comments", "/api/v1/articles/{slug}/comments", 200, 3),
    "favorite": Kind("POST", "/api/v1/articles/article-{n}/favorite", "/api/v1/articles/{slug}/favorite", 200, 3),
    "profile": Kind("GET", "/api/v1/profiles/{n}", "/api/v1/profiles/{user_id}", 200, 1),
    "report": Kind("GET", "/api/v1/profiles/{n}/report", "/api/v1/profiles/{user_id}/report", 500, 1),
    "health": Kind("GET", "/api/v1/system/health", "/api/v1/system/health", 200, 1),
    "stats": Kind("GET", "/api/v1/system/stats", "/api/v1/system/stats", 200, 2),
    "audit": Kind("POST", "/api/v1/system/audit", "/api/v1/system/audit", 200, 1),
    "job": Kind("GET", "/admin/jobs/{n}", "/admin/jobs/{job_id}", 200, 0),
    "retry": Kind("POST", "/admin/jobs/{n}/retry", "/admin/jobs/{job_id}/retry", 500, 0),
}


@pytest.fixture(scope="module")
def run(pg, tmp_path_factory):
    return record_app(pg, tmp_path_factory, "conduit", KINDS, CLIENTS, ROUNDS,
                      headers_of=lambda c: {"Authorization": "Token tok%d" % (1 + c)},
                      n_of=lambda c, kind, rnd: 1 + rnd.randrange(20))


def test_every_request_stored_once(run):
    realapp.check_stored_once(run, CLIENTS * ROUNDS * len(KINDS))


def test_routes_and_statuses(run):
    realapp.check_routes_and_statuses(run)


def test_proxied_requests_keep_their_socket_peer_and_forwarded_client(run):
    realapp.check_peer_and_forwarded_client(run)


def test_exceptions_recorded_without_timeglass_frames(run):
    realapp.check_exceptions(run, {"report": "ZeroDivisionError", "retry": "RuntimeError: retry queue"})


def test_queries_land_on_their_request(run):
    realapp.check_statements_on_their_request(run)


def test_statements_match_postgresql_log(run):
    realapp.check_postgresql_log(run)


def test_samples_of_requests_are_their_work(run):
    assert realapp.check_samples(run) > 0, "no samples attributed to requests"
    # The sync route's 20 ms of work in its worker thread is in its own
    # request's flame graph (at 1 kHz, a score of samples each).
    with_work = 0
    stats = [run.rows[s.rid]["id"] for s in run.answered() if s.kind == "stats"]
    for rid in stats:
        stacks = run.db.execute("SELECT stack_id FROM samples WHERE request_id = ?", (rid,)).fetchall()
        with_work += any(any(n.endswith(".run") and f.endswith("/system.py") for n, f in run.stack_frames(st[0]))
                         for st in stacks)
    assert with_work >= 0.8 * len(stats), (with_work, len(stats))
