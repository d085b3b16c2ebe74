"""Clients that misbehave: early disconnects, huge headers, garbage bytes.

In every case the app must keep serving and the next normal request must be
recorded; the broken exchange itself is recorded with the documented error.
"""

import random
import socket
import ssl
import time

import pytest

from rawhttp import ConnectionClosed, RawConnection, build_request, exchange
from tgtest import assert_fields, summarize

HEADERS_CAP = 4096


def tls_client_hello():
    """The bytes a TLS client sends first (a real ClientHello from the ssl module)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    data = outgoing.read()
    assert data[:1] == b"\x16"  # handshake record
    return data


def normal_request_ok(port):
    resp, req_len, addr, _ = exchange(port, build_request("GET", "/items/77?q=after"))
    assert resp.status == 200
    return resp, req_len, addr


def check_last_normal(row, resp, req_len, addr):
    assert_fields(row, method="GET", path="/items/77", query_string="q=after", status=200,
                  request_bytes=req_len, response_bytes=resp.raw_len, error=None, client_addr=addr)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_client_closes_mid_request(traced, http):
    partial_headers = b"GET /items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ye"
    partial_body = build_request("POST", "/upload", {"Content-Length": "1000"}) + b"0123456789"
    with traced(http=http) as server:
        addrs = []
        for data in (partial_headers, partial_body):
            with RawConnection(server.port) as conn:
                conn.send(data)
                addrs.append(conn.local_addr)
                time.sleep(0.2)  # let the server read it before the close
        time.sleep(0.3)
        last = normal_request_ok(server.port)
    rows = server.requests()
    assert len(rows) == 3, summarize(rows)
    by_addr = {r["client_addr"]: r for r in rows}
    head_row, body_row = by_addr[addrs[0]], by_addr[addrs[1]]
    assert_fields(head_row, error="client closed mid-request", status=None, request_bytes=len(partial_headers),
                  response_bytes=0)
    assert_fields(body_row, error="client closed mid-request", status=None, method="POST", path="/upload",
                  request_bytes=len(partial_body), response_bytes=0)
    check_last_normal(rows[-1], *last)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_client_closes_before_response(traced, http):
    req = build_request("GET", "/slow?ms=500")
    with traced(http=http) as server:
        with RawConnection(server.port) as conn:
            conn.send(req)
            addr = conn.local_addr
        time.sleep(0.8)  # the handler finishes its sleep with nobody to answer
        last = normal_request_ok(server.port)
    rows = server.requests()
    assert len(rows) == 2, summarize(rows)
    early = rows[0]
    assert_fields(early, client_addr=addr, method="GET", path="/slow", query_string="ms=500",
                  request_bytes=len(req), response_bytes=0, status=None,
                  error="client closed before response")
    check_last_normal(rows[-1], *last)


def test_client_resets_mid_response(traced):
    """The client reads a little of a 16 MB body and resets: the row says so."""
    req = build_request("GET", "/blob?size=%d" % (16 * 1024 * 1024))
    with traced() as server:
        conn = RawConnection(server.port)
        conn.send(req)
        head, status, _, _ = conn.read_head()
        assert status == 200
        conn.sock.recv(1000)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # RST
        time.sleep(0.5)
        last = normal_request_ok(server.port)
    rows = server.requests()
    assert len(rows) == 2, summarize(rows)
    cut = rows[0]
    assert_fields(cut, path="/blob", status=200, request_bytes=len(req), error="connection closed mid-response")
    assert len(head) < cut["response_bytes"] < 16 * 1024 * 1024, cut
    check_last_normal(rows[-1], *last)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_huge_header_is_capped(traced, http):
    big = "b" * 60_000
    req = build_request("GET", "/", [("X-Big", big), ("X-After", "tail")])
    with traced(http=http) as server:
        with RawConnection(server.port) as conn:
            conn.send(req)
            try:
                resp = conn.read_response()
                status = resp.status
            except (ConnectionResetError, ConnectionClosed):
                resp, status = None, None
        last = normal_request_ok(server.port)
    rows = server.requests()
    assert len(rows) == 2, summarize(rows)
    row = rows[0]
    assert row["path"] == "/" and row["method"] == "GET", row
    assert row["status"] == status, "recorded status %r, client saw %r" % (row["status"], status)
    if resp is not None:
        assert row["response_bytes"] == resp.raw_len, row
        if status == 200:
            assert row["request_bytes"] == len(req) and row["error"] is None, row
    headers = row["headers"]
    assert headers is not None and len(headers.encode()) <= HEADERS_CAP, len(headers or "")
    assert "headers_truncated" in row["flags"], row["flags"]
    assert headers.startswith("Host: 127.0.0.1\n"), headers[:100]
    check_last_normal(rows[-1], *last)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_garbage_bytes_do_not_break_the_app(traced, http):
    rnd = random.Random(20260101)
    payloads = [
        bytes(rnd.randrange(256) for _ in range(512)),
        bytes(rnd.randrange(256) for _ in range(64)) + b"\r\n\r\n",
        tls_client_hello(),
        b"\x00" * 100,
        b"BREW /pot HTCPCP/1.0\r\n\r\n",
    ]
    garbage_addrs = set()
    with traced(http=http) as server:
        for data in payloads:
            with RawConnection(server.port, timeout=5) as conn:
                conn.send(data)
                garbage_addrs.add(conn.local_addr)
                conn.wait_closed(1.0)
        last = normal_request_ok(server.port)
    assert server.returncode == 0, server.diagnostics()
    rows = server.requests()
    normal = [r for r in rows if r["client_addr"] not in garbage_addrs]
    junk = [r for r in rows if r["client_addr"] in garbage_addrs]
    assert len(normal) == 1, summarize(rows)
    check_last_normal(normal[0], *last)
    per_conn = {}
    for r in junk:
        per_conn[r["client_addr"]] = per_conn.get(r["client_addr"], 0) + 1
        assert r["error"] == "malformed HTTP request", "garbage recorded as %r" % r
    assert all(n == 1 for n in per_conn.values()), summarize(junk)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_connect_and_close_probes(traced, http):
    """Health-check style probes (connect, send nothing, close) are not requests, and the
    request that arrives right after each probe is recorded exactly."""
    sent = []
    with traced(http=http) as server:
        for i in range(10):
            socket.create_connection(("127.0.0.1", server.port)).close()
            target = "/items/%d?q=probe" % i
            resp, req_len, addr, _ = exchange(server.port, build_request("GET", target))
            assert resp.status == 200
            sent.append((target, req_len, resp.raw_len, addr))
    rows = server.requests()
    assert len(rows) == len(sent), summarize(rows)
    for row, (target, req_len, resp_len, addr) in zip(rows, sent):
        path, _, query = target.partition("?")
        assert_fields(row, path=path, query_string=query, status=200, request_bytes=req_len,
                      response_bytes=resp_len, client_addr=addr, error=None)
