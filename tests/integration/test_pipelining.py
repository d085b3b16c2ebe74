"""Deep pipelining on one connection: every request the app answers is a row
or a counted loss, never nothing, and each row has the status of its own
response.

A raw socket client writes 10,000 requests in one go to real uvicorn (h11 and
httptools) serving the payments app, and reads the responses as they come.
The requests mix framings that a response parser must get right to stay in
step: bodies with Content-Length, HEAD (Content-Length, no body), 404 and
422 errors. Each target carries its index, so a row is matched to the request
it stands for.
"""

import threading

import pytest

from rawhttp import RawConnection, build_request
from tgtest import APPS, free_port, read_requests, run_losses, summarize, timeglass_env, uvicorn_argv

N = 10_000


def plan(i):
    """(method, target, status) of request i."""
    k = i % 10
    if k == 0:
        return "GET", "/api/v1/accounts/%d?i=%d" % (i, i), 200
    if k == 1:
        return "GET", "/api/v1/accounts/x?i=%d" % i, 422
    if k == 2:
        return "HEAD", "/health/ping?i=%d" % i, 200
    if k == 3:
        return "GET", "/nowhere?i=%d" % i, 404
    return "GET", "/health/ping?i=%d" % i, 200


def pipeline(port, pad):
    """Writes N requests at once (a pad header of `pad` bytes each), reads the
    N responses, then one more request. Returns the statuses seen."""
    reqs = []
    for i in range(N):
        method, target, _ = plan(i)
        headers = [("X-Pad", "p" * pad)] if pad else []
        reqs.append(build_request(method, target, headers))
    statuses = []
    with RawConnection(port, timeout=120) as conn:
        sender = threading.Thread(target=conn.send, args=(b"".join(reqs),))
        sender.start()
        for i in range(N):
            statuses.append(conn.read_response(head_request=plan(i)[0] == "HEAD").status)
        sender.join()
        conn.send(build_request("GET", "/api/v1/accounts/424242?after=burst"))
        after = conn.read_response()
    assert after.status == 200, after
    return statuses


@pytest.mark.parametrize("budget_kb", [None, 64], ids=["default", "64KiB"])
@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_ten_thousand_pipelined_requests(traced, store, http, budget_kb):
    """With the default detail budget every request is a row; with a small one
    (TIMEGLASS_PIPELINE_KB=64) and padded requests, those beyond it are
    counted as the pipeline_overflow loss, one per request. Either way the
    connection is still followed after the burst."""
    env = {"TIMEGLASS_PIPELINE_KB": str(budget_kb)} if budget_kb else {}
    pad = 300 if budget_kb else 0
    port = free_port()
    argv = uvicorn_argv(port, http=http, log_level="warning", access_log=False, app="payments:app",
                        app_dir=APPS)
    with traced(argv=argv, port=port, db=store, env=timeglass_env(env)) as server:
        statuses = pipeline(server.port, pad)
    assert server.returncode == 0, server.diagnostics()
    assert statuses == [plan(i)[2] for i in range(N)], "the app itself answered wrongly"

    rows, stderr = read_requests(store)
    after = [r for r in rows if r["query_string"] == "after=burst"]
    burst = [r for r in rows if r["query_string"] != "after=burst"]
    lost = run_losses(store, "pipeline_overflow")
    print("%s, budget %s: %d rows + %d counted lost" % (http, budget_kb or "default", len(burst), lost))
    assert len(burst) + lost == N, "%d rows + %d lost for %d requests answered" % (len(burst), lost, N)
    if budget_kb:
        assert lost > 0, "padded requests beyond a 64 KiB budget: some must be counted lost"
        assert "pipelined requests not kept" in stderr, stderr
    else:
        assert lost == 0, run_losses(store)
    assert len({r["conn_id"] for r in rows}) == 1, "one connection"
    seen = []
    for r in burst:
        i = int(r["query_string"].split("=")[1])
        method, target, status = plan(i)
        seen.append(i)
        assert (r["method"], r["path"], r["status"], r["error"]) == (method, target.split("?")[0], status, None), (
            "request %d: %r" % (i, r))
        assert ("head" in r["flags"]) == (method == "HEAD"), r
    assert seen == sorted(seen) and len(set(seen)) == len(seen), "rows out of order or repeated"
    # The request after the burst is followed as usual.
    assert len(after) == 1, summarize(after)
    assert (after[0]["path"], after[0]["status"], after[0]["error"]) == ("/api/v1/accounts/424242", 200, None)
