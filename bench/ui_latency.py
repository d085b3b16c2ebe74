#!/usr/bin/python3
"""Measures the dashboard API's latency on a big store.

    /usr/bin/python3 bench/ui_latency.py [--db PATH] [--requests N] [--ui CMD] [--rounds R]

Generates the store with gen_store.py when it does not exist (1,000,000
requests by default), starts `timeglass-ui` on a free port, waits for the
newest run's aggregates to load, then times each API call R times over one
keep-alive connection and prints p50/p99/max per call. The bar: p99 under
50 ms for the requests list, its filters and the endpoints table. Exits 1
when a bar is missed.
"""
import argparse
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BAR_MS = 50.0

# Pages of the requests list: (name, what is added to LIST's query).
LIST = "/api/requests?run=1&limit=100"
LIST_CALLS = [
    ("requests: newest first", ""),
    ("requests: next page", "&after={cursor}"),
    ("requests: slowest first", "&sort=duration"),
    ("filter: status=5xx", "&status=5xx"),
    ("filter: route", "&route=%2Fusers%2F%7Buser_id%7D%2Forders&method=GET"),
    ("filter: min_ms=500", "&min_ms=500"),
    ("filter: path text", "&q=items%2F1"),
]
# (name, path, has a bar)
CALLS = [(name, LIST + query, True) for name, query in LIST_CALLS] + [
    ("endpoints table", "/api/endpoints?run=1", True),
    ("endpoints by p99", "/api/endpoints?run=1&sort=p99", True),
    ("overview", "/api/overview?run=1", False),
    ("runs", "/api/runs", False),
    ("request detail", "/api/requests/123456", False),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs, p):
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))
    return xs[int(k) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=os.path.join(ROOT, "bench", "results", "ui-store.db"))
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--ui", default=os.environ.get("TIMEGLASS_UI_CMD", os.path.join(ROOT, "build", "server", "timeglass-ui")))
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    if not os.path.exists(args.db):
        subprocess.check_call([sys.executable, os.path.join(HERE, "gen_store.py"), "--requests", str(args.requests), "--db", args.db])
    port = free_port()
    cmd = shlex.split(args.ui) + ["--db", args.db, "--port", str(port), "--no-open"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conn = None
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/api/status", headers={"Host": "127.0.0.1:%d" % port})
                conn.getresponse().read()
                break
            except OSError:
                conn = None
                time.sleep(0.05)
        if conn is None:
            sys.exit("the dashboard did not start: %s" % " ".join(cmd))
        host = {"Host": "127.0.0.1:%d" % port}

        def get(path):
            t = time.perf_counter()
            conn.request("GET", path, headers=host)
            r = conn.getresponse()
            body = r.read()
            ms = (time.perf_counter() - t) * 1000
            if r.status != 200:
                sys.exit("%s: HTTP %d %s" % (path, r.status, body[:200]))
            return ms, body

        t = time.perf_counter()
        first, _ = get("/api/overview?run=1")  # waits for the aggregates
        print("first overview (loads the run's aggregates): %.0f ms" % first)
        cursor = json.loads(get("/api/requests?run=1&limit=100")[1])["next"]
        count = json.loads(get("/api/overview?run=1")[1])["summary"]["count"]
        print("store: %s, %d requests in run 1\n" % (args.db, count))
        print("%-28s %9s %9s %9s  %s" % ("call", "p50 ms", "p99 ms", "max ms", "bar"))
        failed = False
        for name, path, bar in CALLS:
            path = path.format(cursor=cursor)
            times = [get(path)[0] for _ in range(args.rounds)]
            p99 = percentile(times, 99)
            verdict = ""
            if bar:
                ok = p99 < BAR_MS
                failed |= not ok
                verdict = "ok (< %.0f)" % BAR_MS if ok else "MISSED (>= %.0f)" % BAR_MS
            print("%-28s %9.2f %9.2f %9.2f  %s" % (name, percentile(times, 50), p99, max(times), verdict))
        sys.exit(1 if failed else 0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
