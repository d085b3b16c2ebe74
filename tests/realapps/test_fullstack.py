"""The shape of the official full-stack FastAPI template's backend
(tests/realapps/fullstack): SQLModel sessions per request in sync endpoints
(Starlette's threadpool), psycopg 3 where SQLAlchemy 2 has its dialect and
psycopg2 otherwise, a pure ASGI middleware and CORS, two uvicorn worker
processes on uvloop and httptools, half the traffic through nginx. The
checks are those of realapp.py.
"""
import pytest

import realapp
from conftest import record_app
from realapp import Kind

CLIENTS = 8
ROUNDS = 5

USER = "00000000-0000-0000-0000-%012d"
ITEM = "10000000-0000-0000-0000-%012d"


def item_of(user):
    """An item the user owns (item g belongs to user 1 + g % 12)."""
    return ITEM % (12 + user - 1 if user > 1 else 12)


KINDS = {
    "health": Kind("GET", "/api/v1/utils/health-check/", "/api/v1/utils/health-check/", 200, 0),
    "me": Kind("GET", "/api/v1/users/me", "/api/v1/users/me", 200, 1),
    "items": Kind("GET", "/api/v1/items/?limit=5", "/api/v1/items/", 200, 3),
    "item": Kind("GET", "/api/v1/items/{n}", "/api/v1/items/{id}", 200, 2),
    "missing": Kind("GET", "/api/v1/items/20000000-0000-0000-0000-0000000000{n}", "/api/v1/items/{id}", 404, 2),
    "create": Kind("POST", "/api/v1/items/", "/api/v1/items/", 200, 3, body={"title": "new", "description": "x"}),
    # The superuser's list: one lazy load of each user's items (an N+1).
    "users": Kind("GET", "/api/v1/users/", "/api/v1/users/", 200, 10,
                  headers={"Authorization": "Bearer tok1"}),
    "anonymous": Kind("GET", "/api/v1/users/me", "/api/v1/users/me", 401, 0, headers={"Authorization": ""}),
}


def n_of(c, kind, rnd):
    if kind == "item":
        return item_of(2 + c)
    return "%02d" % rnd.randrange(100)


@pytest.fixture(scope="module")
def run(pg, tmp_path_factory):
    return record_app(pg, tmp_path_factory, "fullstack", KINDS, CLIENTS, ROUNDS,
                      headers_of=lambda c: {"Authorization": "Bearer tok%d" % (2 + c)}, n_of=n_of,
                      extra_args=("--workers", "2", "--loop", "uvloop", "--http", "httptools"))


def test_every_request_stored_once(run):
    realapp.check_stored_once(run, CLIENTS * ROUNDS * len(KINDS))


def test_both_workers_recorded(run):
    """uvicorn's supervisor and its two worker processes, each registered."""
    procs = run.db.execute("SELECT count(*) FROM processes").fetchone()[0]
    assert procs >= 3, procs
    pids = {r["pid"] for r in run.rows.values()}
    assert pids <= {r[0] for r in run.db.execute("SELECT pid FROM processes")}, pids


def test_routes_and_statuses(run):
    realapp.check_routes_and_statuses(run)


def test_proxied_requests_keep_their_socket_peer_and_forwarded_client(run):
    realapp.check_peer_and_forwarded_client(run)


def test_no_exceptions(run):
    realapp.check_exceptions(run, {})


def test_queries_land_on_their_request(run):
    realapp.check_statements_on_their_request(run)


def test_statements_match_postgresql_log(run):
    realapp.check_postgresql_log(run)


def test_samples_of_requests_are_their_work(run):
    realapp.check_samples(run)
