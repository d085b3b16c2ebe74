"""Micro-benchmark: CPU the middleware adds per request, measured in-process.

    python -m timeglass._bench [--requests N]

Builds the same small FastAPI application twice, with and without
TimeGlassMiddleware, drives both through the ASGI interface directly (no
server, no sockets) and prints the process CPU time per request of each and
the difference (best of a few rounds). Standalone mode writes to a store in
a temporary directory; the writer thread's CPU is included. Under `timeglass run` it measures the
marker path instead. The target is at most 20 µs per request.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time

ROUTES = 20  # routes in the application, the looked-up one among the last


def build_app(with_middleware, db=None):
    from fastapi import FastAPI

    app = FastAPI()
    for i in range(ROUTES):
        app.add_api_route("/r%d/{item_id}" % i, _endpoint, methods=["GET"])
    if with_middleware:
        from timeglass import TimeGlassMiddleware

        app.add_middleware(TimeGlassMiddleware, db=db)
    return app


async def _endpoint(item_id: int):
    return {"item_id": item_id}


def _scope(i):
    path = "/r%d/%d" % (ROUTES - 2, i)
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 40000 + i % 20000),
            "server": ("127.0.0.1", 8000)}


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message):
    pass


async def _drive(app, n):
    for i in range(n):
        await app(_scope(i), _receive, _send)


def cpu_per_request(app, n):
    """Process CPU nanoseconds per request for n requests through app."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(app, min(n, 500)))  # warm caches
        start = time.process_time_ns()
        loop.run_until_complete(_drive(app, n))
        from timeglass import flush

        flush()
        return (time.process_time_ns() - start) / n
    finally:
        loop.close()


def measure(n=20000, rounds=3):
    """(ns per request without, ns with the middleware): the best of rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        bare_app = build_app(False)
        marked_app = build_app(True, os.path.join(tmp, "bench.db"))
        bare = marked = float("inf")
        for _ in range(rounds):
            bare = min(bare, cpu_per_request(bare_app, n))
            marked = min(marked, cpu_per_request(marked_app, n))
    return bare, marked


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m timeglass._bench")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bare, marked = measure(args.requests, args.rounds)
    print("without middleware: %8.1f us/request" % (bare / 1000))
    print("with middleware:    %8.1f us/request" % (marked / 1000))
    print("added:              %8.1f us/request (target <= 20)" % ((marked - bare) / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
