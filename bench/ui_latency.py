#!/usr/bin/python3
"""Measures the dashboard API's latency on a big store.

    /usr/bin/python3 bench/ui_latency.py [--db PATH] [--requests N] [--ui CMD] [--rounds R]

Generates the store with gen_store.py when it does not exist (1,000,000
requests by default), starts `timeglass-ui` on a free port, waits for the
newest run's aggregates to load, then times each API call R times over one
keep-alive connection and prints p50/p99/max per call. The bar: p99 under
50 ms for the requests list, its filters and the endpoints table, 100 ms
for the overview. Exits 1 when a bar is missed.

--combos adds every filter of the Requests view alone and in pairs, and a
few more combinations (rows: how many the first page holds); --only TEXT
times the calls whose name contains TEXT; --save DIR writes each list
call's first two pages as JSON, to check that two builds return the same.
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
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BAR_MS = 50.0
VIEW_BAR_MS = 100.0  # the overview

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
# One value of each filter of the Requests view; with --combos every one
# alone and every pair of them is timed too ({window} is a twentieth of the
# run's span, in its middle).
FILTERS = [
    ("route", "&route=%2Fusers%2F%7Buser_id%7D%2Forders"),
    ("method", "&method=POST"),
    ("status", "&status=4xx"),
    ("min_ms", "&min_ms=100"),
    ("q", "&q=health"),
    ("window", "{window}"),
]
# Further combinations: rare and common values, three filters, the other sort.
EXTRA_CALLS = [
    ("route+method+status+min_ms", "&route=%2Fusers%2F%7Buser_id%7D%2Forders&method=GET&status=4xx&min_ms=50"),
    ("route+status+min_ms", "&route=%2Fusers%2F%7Buser_id%7D%2Forders&status=4xx&min_ms=50"),
    ("status=2xx+min_ms=50", "&status=2xx&min_ms=50"),
    ("status=5xx+min_ms=500", "&status=5xx&min_ms=500"),
    ("route=/health+min_ms=100", "&route=%2Fhealth&method=GET&min_ms=100"),
    ("route=/reports/daily+status=5xx", "&route=%2Freports%2Fdaily&status=5xx"),
    ("method=DELETE+q=items", "&method=DELETE&q=items"),
    ("min_ms=2000", "&min_ms=2000"),
    ("status=4xx+min_ms=100, slowest", "&status=4xx&min_ms=100&sort=duration"),
    ("status=4xx+q=health, slowest", "&status=4xx&q=health&sort=duration"),
    ("route+window, slowest", "&route=%2Fusers%2F%7Buser_id%7D%2Forders{window}&sort=duration"),
    ("status=4xx+min_ms=100, oldest", "&status=4xx&min_ms=100&dir=asc"),
    ("status=none", "&status=none"),
    ("status=none+route", "&status=none&route=%2Fitems%2F%7Bitem_id%7D"),
]


def combo_calls():
    calls = [("alone: " + name, query) for name, query in FILTERS]
    for i, (a, qa) in enumerate(FILTERS):
        for b, qb in FILTERS[i + 1:]:
            calls.append(("pair: %s+%s" % (a, b), qa + qb))
    return calls + [("combo: " + name, query) for name, query in EXTRA_CALLS]


# (name, path, bar in ms or None)
OTHER_CALLS = [
    ("endpoints table", "/api/endpoints?run=1", BAR_MS),
    ("endpoints by p99", "/api/endpoints?run=1&sort=p99", BAR_MS),
    ("overview", "/api/overview?run=1", VIEW_BAR_MS),
    ("runs", "/api/runs", None),
    ("request detail", "/api/requests/123456", None),
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
    ap.add_argument("--combos", action="store_true",
                    help="also time every filter of the Requests view alone, every pair and a few more combinations")
    ap.add_argument("--only", default=None, help="time only the calls whose name contains this text")
    ap.add_argument("--save", metavar="DIR", default=None,
                    help="write each requests call's JSON (first and second page) to DIR, to compare two builds")
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
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
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
        newest = int(json.loads(get(LIST + "&limit=1")[1])["rows"][0]["start_unix_ns"])
        oldest = int(json.loads(get(LIST + "&limit=1&dir=asc")[1])["rows"][0]["start_unix_ns"])
        mid = (oldest + newest) // 2
        half = (newest - oldest) // 40
        window = "&from=%d&to=%d" % (mid - half, mid + half)
        list_calls = LIST_CALLS + (combo_calls() if args.combos else [])
        calls = [(name, LIST + query, BAR_MS) for name, query in list_calls] + OTHER_CALLS
        if args.only:
            calls = [c for c in calls if args.only in c[0]]
        if args.save:
            os.makedirs(args.save, exist_ok=True)
        print("store: %s, %d requests in run 1\n" % (args.db, count))
        print("%-38s %6s %9s %9s %9s  %s" % ("call", "rows", "p50 ms", "p99 ms", "max ms", "bar"))
        failed = False
        for name, path, bar in calls:
            path = path.format(cursor=cursor, window=window)
            ms, body = get(path)
            rows = ""
            search = ""
            if path.startswith("/api/requests?"):
                page = json.loads(body)
                rows = len(page["rows"])
                if page.get("partial"):
                    # A search that stops on its budget: the dashboard
                    # follows "next" until the page is full or the list
                    # ends; time that too, once.
                    rows = "%d*" % rows
                    n, total, got, nxt = 1, ms, len(page["rows"]), page["next"]
                    while nxt and got < 100:
                        t_ms, b = get(path + "&after=" + urllib.parse.quote(nxt, safe=""))
                        p2 = json.loads(b)
                        n, total, got, nxt = n + 1, total + t_ms, got + len(p2["rows"]), p2["next"]
                    search = "  (whole page: %d rows, %d calls, %.0f ms)" % (got, n, total)
                if args.save:
                    pages = [page]
                    if page["next"]:
                        pages.append(json.loads(get(path + "&after=" + page["next"])[1]))
                    fname = "".join(c if c.isalnum() else "_" for c in name) + ".json"
                    with open(os.path.join(args.save, fname), "w") as f:
                        json.dump({"path": path, "pages": pages}, f, indent=0, sort_keys=True)
            times = [get(path)[0] for _ in range(args.rounds)]
            p99 = percentile(times, 99)
            verdict = ""
            if bar:
                ok = p99 < bar
                failed |= not ok
                verdict = "ok (< %.0f)" % bar if ok else "MISSED (>= %.0f)" % bar
            print("%-38s %6s %9.2f %9.2f %9.2f  %s%s" % (name, rows, percentile(times, 50), p99, max(times), verdict,
                                                        search), flush=True)
        sys.exit(1 if failed else 0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
