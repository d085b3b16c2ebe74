#!/usr/bin/python3
"""Traffic driver for the example application (standard library only).

Sends a fixed number of requests to every endpoint of examples/app.py from
several threads, each thread keeping one HTTP/1.1 keep-alive connection, and
prints how many responses came back with each status.

    /usr/bin/python3 examples/traffic.py --url http://127.0.0.1:8000 --requests 300 --concurrency 8

Only loopback addresses are accepted: this is a local demo tool.
"""

import argparse
import base64
import collections
import http.client
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

# (method, path, body or None, headers) in the order they are cycled through.
PLAN = [
    ("GET", "/", None, {}),
    ("GET", "/items/42?q=hello", None, {}),
    ("GET", "/items/7", None, {}),
    ("GET", "/api/v1/users/3", None, {}),
    ("GET", "/sync", None, {}),
    ("GET", "/slow?ms=50", None, {}),
    ("GET", "/validate?n=12", None, {}),
    ("GET", "/validate?n=not-a-number", None, {}),  # 422
    ("GET", "/boom", None, {}),  # 500
    ("GET", "/stream?chunks=4", None, {}),
    ("GET", "/notes", None, {}),
    ("POST", "/notes", json.dumps({"text": "note from traffic.py"}).encode(),
     {"Content-Type": "application/json"}),
    ("POST", "/upload", b"u" * 4096, {"Content-Type": "application/octet-stream"}),
    ("GET", "/no-such-page", None, {}),  # 404
    ("HEAD", "/", None, {}),
]


def check_loopback(host):
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        sys.exit("traffic.py: cannot resolve %s: %s" % (host, exc))
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            sys.exit("traffic.py: %s is not a loopback address; refusing to send traffic" % host)


def websocket_echo(host, port, path, message, timeout):
    """One websocket handshake + one text frame echoed back. Returns the handshake status."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(
            ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
             % (path, host, port, key)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return 0
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if status != 101:
            return status
        payload = message.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        rest = data.split(b"\r\n\r\n", 1)[1]
        while len(rest) < 2 + len(payload):
            chunk = sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        # Close frame (masked, empty payload), then wait for the server's close.
        sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        return status


def worker(index, host, port, count, timeout, counts, lock, errors):
    conn = None
    local = collections.Counter()
    for n in range(count):
        method, path, body, headers = PLAN[(index + n) % len(PLAN)]
        for attempt in (1, 2):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                local[resp.status] += 1
                if resp.will_close:
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if attempt == 2:
                    local["error"] += 1
                    with lock:
                        errors.append("%s %s: %s" % (method, path, exc))
    if conn is not None:
        conn.close()
    with lock:
        counts.update(local)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the app (default %(default)s)")
    parser.add_argument("--requests", type=int, default=300, help="total HTTP requests (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="threads, one keep-alive connection each (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="socket timeout in seconds (default %(default)s)")
    parser.add_argument("--no-websocket", action="store_true", help="skip the /ws echo exchange")
    args = parser.parse_args(argv)

    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        parser.error("--url must look like http://127.0.0.1:8000")
    host, port = url.hostname, url.port or 80
    check_loopback(host)
    if args.requests < 0 or args.concurrency < 1:
        parser.error("--requests must be >= 0 and --concurrency >= 1")

    counts = collections.Counter()
    errors = []
    lock = threading.Lock()
    per_thread = [args.requests // args.concurrency] * args.concurrency
    for i in range(args.requests % args.concurrency):
        per_thread[i] += 1

    started = time.monotonic()
    threads = [
        threading.Thread(target=worker, args=(i, host, port, n, args.timeout, counts, lock, errors))
        for i, n in enumerate(per_thread) if n
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ws_note = ""
    if not args.no_websocket:
        try:
            status = websocket_echo(host, port, "/ws", "hello over websocket", args.timeout)
            counts[status] += 1
            if status != 101:
                ws_note = " (websocket handshake answered %d)" % status
        except OSError as exc:
            counts["error"] += 1
            errors.append("websocket /ws: %s" % exc)
    elapsed = time.monotonic() - started

    sent = sum(counts.values())
    print("sent %d requests to %s in %.2f s (%d threads)%s" % (sent, args.url, elapsed, len(threads), ws_note))
    for status in sorted(counts, key=str):
        print("  %-6s %d" % (status, counts[status]))
    for line in errors[:5]:
        print("  error: %s" % line, file=sys.stderr)
    return 1 if counts.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
