"""System routes: sync endpoints (run by Starlette in its threadpool) on the
psycopg2 pool, and a background task."""
import time

from fastapi import APIRouter, BackgroundTasks

from ... import db
from ...sqlcomment import request_id, tag

router = APIRouter()


def _with_sync_conn(fn):
    conn = db.sync_pool.getconn()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            return fn(cur)
    finally:
        db.sync_pool.putconn(conn)


@router.get("/health")
def health():
    return _with_sync_conn(lambda cur: (cur.execute(tag("SELECT 1")), {"ok": cur.fetchone()[0] == 1})[1])


@router.get("/stats")
def stats():
    def run(cur):
        cur.execute(tag("SELECT count(*) FROM articles"))
        articles = cur.fetchone()[0]
        cur.execute(tag("SELECT count(*) FROM users"))
        users = cur.fetchone()[0]
        t = time.monotonic() + 0.02  # some CPU work in the worker thread
        while time.monotonic() < t:
            pass
        return {"articles": articles, "users": users}
    return _with_sync_conn(run)


def _audit(rid, what):
    token = request_id.set(rid)
    try:
        _with_sync_conn(lambda cur: cur.execute(tag("INSERT INTO audit (what) VALUES (%s)"), (what,)))
    finally:
        request_id.reset(token)


@router.post("/audit")
def audit(background: BackgroundTasks):
    background.add_task(_audit, request_id.get(), "audit")
    return {"queued": True}
