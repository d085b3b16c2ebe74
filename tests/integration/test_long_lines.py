"""Request lines and header values far longer than what is kept: whatever the
app answers is recorded, with the method, the target cut at the cap, the
status the client saw, and the truncation flags.

The servers draw their own lines: uvicorn with h11 answers 400 once its
buffer passes 16 KiB without a complete head, which may be after reading a
whole 256 KiB chunk (a 64 KiB or 100 KiB line can still get a 200); httptools
0.1 answers 400 past 80 KiB of head; httptools on llhttp answers 400 to a
target of 64 KiB but takes header values of megabytes. TimeGlass keeps no
limit of its own on a line: a row must carry whichever answer came.
"""

import threading

import pytest

from rawhttp import ConnectionClosed, RawConnection, build_request
from tgtest import APPS, free_port, run_losses, summarize, uvicorn_argv

TARGET_CAP = 2048  # TG_HTTP_TARGET_MAX
HEADERS_CAP = 4096  # TG_HTTP_HEADERS_MAX

CASES = [
    # (name, target, extra headers)
    ("64 KiB unknown path", "/x" + "a" * (64 * 1024), []),
    ("64 KiB query", "/api/v1/accounts/7?q=" + "b" * (64 * 1024), []),
    ("300 KiB query", "/api/v1/accounts/8?q=" + "c" * (300 * 1024), []),
    ("1 MiB path", "/y" + "d" * (1024 * 1024), []),
    ("100 KiB header value", "/api/v1/accounts/9", [("X-Trace", "e" * (100 * 1024))]),
    ("2 MiB header value", "/api/v1/accounts/10", [("X-Trace", "f" * (2 * 1024 * 1024))]),
]


def send_and_read(port, data):
    """Sends data while reading the answer (the app may answer, and close,
    before it has read everything). Returns the status seen, or None."""
    with RawConnection(port, timeout=60) as conn:
        def send():
            try:
                conn.send(data)
            except OSError:
                pass  # answered and closed before the end: that is an answer too
        sender = threading.Thread(target=send)
        sender.start()
        try:
            status = conn.read_response().status
        except (ConnectionClosed, ConnectionResetError):
            status = None
        conn.close()
        sender.join()
    return status


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_long_lines_keep_method_target_and_status(traced, http):
    port = free_port()
    argv = uvicorn_argv(port, http=http, log_level="warning", app="payments:app", app_dir=APPS)
    seen = []
    with traced(argv=argv, port=port) as server:
        for name, target, headers in CASES:
            req = build_request("GET", target, headers + [("User-Agent", "tg-test/%d" % len(seen))])
            seen.append(send_and_read(server.port, req))
        with RawConnection(server.port) as conn:
            conn.send(build_request("GET", "/health/ping"))
            assert conn.read_response().status == 200
        store = server.db
    print(http, list(zip([c[0] for c in CASES], seen)))
    rows = server.requests()
    assert len(rows) == len(CASES) + 1, summarize(rows)
    assert run_losses(store).get("untracked_conn", 0) == 0, run_losses(store)
    for (name, target, headers), status, row in zip(CASES, seen, rows):
        what = "%s: %s" % (name, {k: row[k] for k in ("method", "status", "error", "flags")})
        assert row["method"] == "GET", what
        if status is not None:
            assert row["status"] == status and row["error"] is None, what
        else:
            # No answer reached the client: the row says how the exchange ended.
            assert row["error"] is not None or row["status"], what
        kept = row["path"] + ("?" + row["query_string"] if row["query_string"] else "")
        if len(target) > TARGET_CAP:
            assert "target_truncated" in row["flags"], what
            assert kept == target[:TARGET_CAP], what
        else:
            assert kept == target and "target_truncated" not in row["flags"], what
        if headers:
            assert "headers_truncated" in row["flags"], what
            assert "X-Trace" not in row["headers"], what
            assert row["headers"].startswith("Host: 127.0.0.1\n"), what
            assert len(row["headers"].encode()) <= HEADERS_CAP, what
        else:
            assert "headers_truncated" not in row["flags"], what
        if row["error"] is None and row["status"] == 200:
            assert "User-Agent: tg-test/" in row["headers"], what
    assert (rows[-1]["path"], rows[-1]["status"], rows[-1]["error"]) == ("/health/ping", 200, None)
