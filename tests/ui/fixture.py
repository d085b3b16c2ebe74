#!/usr/bin/python3
"""The known store the dashboard tests run against (schema 1).

    /usr/bin/python3 tests/ui/fixture.py PATH    # writes it (the e2e test does)

Run 1 (ended) holds twelve requests whose figures the tests check exactly;
run 2 (newest, still recording) holds a few more, among them the XSS
payloads. Times are fixed (T0) so that every figure is reproducible.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from gen_store import create_store, request_row, REQUEST_COLUMNS  # noqa: E402

T0 = 1_700_000_000_123_456_789  # a unix time in ns, beyond 2^53 on purpose
MS = 1_000_000
XSS_PATH = "/<script>alert(1)</script>"
XSS_HEADER = "</script><img src=x onerror=alert(1)>"

# Run 1: (offset from T0 in ms, method, path, route, status, duration ms, query)
RUN1 = [
    (0, "GET", "/items/1", "/items/{item_id}", 200, 1, None),
    (100, "GET", "/items/2", "/items/{item_id}", 200, 2, "q=a"),
    (200, "GET", "/items/3", "/items/{item_id}", 404, 3, None),
    (300, "POST", "/items", "/items", 201, 4, None),
    (400, "POST", "/items", "/items", 500, 5, None),
    (500, "GET", "/health", "/health", 200, 6, None),
    (600, "GET", "/health", "/health", 200, 7, None),
    (700, "GET", "/favicon.ico", None, 404, 8, None),
    (800, "GET", "/items/4", "/items/{item_id}", 200, 9, None),
    (900, "GET", "/items/5", "/items/{item_id}", 500, 10, None),
    (1000, "GET", "/items/6", "/items/{item_id}", 200, 11, None),
    (1100, "DELETE", "/items/7", "/items/{item_id}", 204, 12, None),
]
EXCEPTION = "Traceback (most recent call last):\n  File \"main.py\", line 9, in create\nValueError: <b>boom</b>\n"


def insert_request(db, **kw):
    db.execute("INSERT INTO requests (%s) VALUES (%s)" % (REQUEST_COLUMNS, ",".join("?" * 24)), request_row(**kw))


def build(path, run2_live=True):
    db = create_store(path)
    db.execute("BEGIN")
    db.execute("INSERT INTO runs VALUES (1, ?, ?, 'uvicorn main:app', '/srv/app', 'devbox', '0.1.0', 'run', 0)",
               (T0 - 1000 * MS, T0 + 3000 * MS))
    db.execute("INSERT INTO processes VALUES (1, 1, 4242, 4000, '/usr/bin/python3.11', 'uvicorn main:app', ?, ?, 0)",
               (T0 - 900 * MS, T0 + 2900 * MS))
    for i, (off, method, path_, route, status, dur, query) in enumerate(RUN1):
        start = T0 + off * MS
        insert_request(db, id=i + 1, run_id=1, process_id=1, pid=4242, tid=4243, conn_id=i // 2 + 1,
                       start_unix_ns=start, duration_ns=dur * MS, req_end_ns=dur * MS // 10,
                       resp_start_ns=dur * MS - dur * MS // 5, method=method, path=path_, query_string=query,
                       route=route, status=status, request_bytes=100 + i, response_bytes=1000 + i,
                       headers="host: 127.0.0.1:8000\nuser-agent: curl/7.88.1\nauthorization: [redacted]\n",
                       exception=EXCEPTION if status == 500 and method == "POST" else None)
    # 11 samples 100 ms apart: 50 ms of CPU per 100 ms (50%), RSS 100..110 MB.
    for k in range(11):
        db.execute("INSERT INTO process_metrics VALUES (1, ?, ?, ?, ?)",
                   (T0 + k * 100 * MS, k * 40 * MS, k * 10 * MS, (100 + k) * 1_000_000))
    db.execute("INSERT INTO losses (run_id, process_id, ts_unix_ns, kind, events, bytes) VALUES (1, 1, ?, 'ring_full', 7, 512)",
               (T0 + 500 * MS,))

    # Run 2: the newest; recording when run2_live.
    t2 = T0 + 10_000 * MS
    db.execute("INSERT INTO runs VALUES (2, ?, ?, 'uvicorn main:app --reload', '/srv/app', 'devbox', '0.1.0', 'run', NULL)",
               (t2, None if run2_live else t2 + 5000 * MS))
    db.execute("INSERT INTO processes VALUES (2, 2, 5000, 4999, '/usr/bin/python3.11', 'uvicorn main:app --reload', ?, NULL, 0)", (t2,))
    insert_request(db, id=101, run_id=2, process_id=2, pid=5000, start_unix_ns=t2 + 10 * MS, duration_ns=3 * MS,
                   req_end_ns=100_000, resp_start_ns=2_500_000, method="GET", path=XSS_PATH, route=None, status=200,
                   headers="host: 127.0.0.1:8000\nx-evil: %s\nuser-agent: Mozilla/5.0\n" % XSS_HEADER,
                   query_string="a=<img src=x onerror=alert(2)>")
    insert_request(db, id=102, run_id=2, process_id=2, pid=5000, start_unix_ns=t2 + 20 * MS, duration_ns=7 * MS,
                   method="POST", path="/orders", route="/orders", status=500, exception=EXCEPTION,
                   headers="host: 127.0.0.1:8000\n")
    db.execute("COMMIT")
    db.close()


if __name__ == "__main__":
    build(sys.argv[1])
