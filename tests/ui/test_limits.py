"""The dashboard under many live-update streams and odd requests, over real
sockets: the API keeps answering while hundreds of /api/events streams are
open, every stream past the cap gets the documented 503, the server recovers
as soon as streams close, and the Host check (DNS-rebinding defence) cannot
be shown one host while the request means another."""
import json
import re
import socket
import time

import pytest

import fixture

MAX_STREAMS = 32  # server/API.md: live-update streams served at once


def until_closed(port, request):
    """Sends request bytes on a fresh connection; returns all the server
    sent until it closed the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def timed_get(port, path):
    """(status, seconds) of one GET on a fresh connection."""
    t = time.monotonic()
    data = until_closed(port, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                        % (path.encode(), port))
    status = int(data.split(b" ", 2)[1]) if data else None
    return status, time.monotonic() - t


def open_stream(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n" % port)
    return sock


def stream_answer(sock, timeout=10):
    """(status, headers, body so far): for a 200 stream, up to its first
    event; for anything else, up to the close the server must do."""
    sock.settimeout(timeout)
    data = b""
    while True:
        if b"\r\n\r\n" in data:
            head, body = data.split(b"\r\n\r\n", 1)
            status = int(head.split(b" ", 2)[1])
            if status == 200 and b"event: state\ndata: " in body and body.endswith(b"\n\n"):
                break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


def test_500_streams_leave_the_api_responsive(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    assert s.json("/api/status")["live_streams"] == {"open": 0, "max": MAX_STREAMS}
    streams = [open_stream(s.port) for _ in range(500)]
    try:
        for path in ("/api/runs", "/api/overview", "/api/runs"):
            status, secs = timed_get(s.port, path)
            assert status == 200 and secs < 1.0, (path, status, secs)
        answers = [stream_answer(sock) for sock in streams]
        served = [a for a in answers if a[0] == 200]
        refused = [a for a in answers if a[0] != 200]
        assert len(served) == MAX_STREAMS
        for status, headers, body in served:
            assert headers["content-type"] == "text/event-stream"
            event = json.loads(body.split(b"data: ", 1)[1])
            assert event == {"state": "ok", "runs": 2, "latest_run": 2, "live": True, "max_request_id": 102}
        assert len(refused) == 500 - MAX_STREAMS
        for status, headers, body in refused:
            assert status == 503
            assert headers["retry-after"] == "10" and headers["connection"] == "close"
            err = json.loads(body)["error"]
            assert err["code"] == "too_many_streams" and str(MAX_STREAMS) in err["message"]
        # while the served streams stay open
        status, secs = timed_get(s.port, "/api/runs")
        assert status == 200 and secs < 1.0
        assert s.json("/api/status")["live_streams"] == {"open": MAX_STREAMS, "max": MAX_STREAMS}
    finally:
        for sock in streams:
            sock.close()
    # closed: the API answers at once, and the streams' workers are free
    # again within a fraction of a second
    status, secs = timed_get(s.port, "/api/runs")
    assert status == 200 and secs < 1.0
    time.sleep(0.5)
    assert s.json("/api/status")["live_streams"]["open"] == 0
    again = [open_stream(s.port) for _ in range(MAX_STREAMS)]
    try:
        assert [stream_answer(sock)[0] for sock in again] == [200] * MAX_STREAMS
    finally:
        for sock in again:
            sock.close()


def test_a_stream_past_the_cap_is_served_once_one_closes(tmp_path, make_server):
    db = str(tmp_path / "t.db")
    fixture.build(db)
    s = make_server(db)
    streams = [open_stream(s.port) for _ in range(MAX_STREAMS)]
    try:
        assert all(stream_answer(sock)[0] == 200 for sock in streams)
        extra = open_stream(s.port)
        assert stream_answer(extra)[0] == 503
        extra.close()
        streams.pop().close()
        time.sleep(0.5)
        extra = open_stream(s.port)
        streams.append(extra)
        assert stream_answer(extra)[0] == 200
    finally:
        for sock in streams:
            sock.close()


# ---- the Host check cannot be fooled ----

def raw(port, request, timeout=5):
    """Sends request bytes; returns (status or None, body, closed): closed is
    True when the server closed the connection after its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(request)
    data, closed = b"", False
    try:
        while True:
            if b"\r\n\r\n" in data:
                head, body = data.split(b"\r\n\r\n", 1)
                length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(body) >= int(length[0].split(b":")[1]):
                    sock.settimeout(0.5)  # answered: does the server close?
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    sock.close()
    if not data:
        return None, b"", closed
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split(b" ", 2)[1]), body, closed


def error_code(body):
    return json.loads(body)["error"]["code"]


@pytest.mark.parametrize("headers,status,code", [
    ("Host: {ok}\r\nHost: {ok}", 400, "bad_host"),
    ("Host: {ok}\r\nhost: evil.example", 400, "bad_host"),
    ("Host: evil.example\r\nHost: {ok}", 400, "bad_host"),
    ("Host: evil@{ok}", 400, "bad_host"),
    ("Host: {ok}@evil.example", 400, "bad_host"),
    ("Host: user:pw@{ok}", 400, "bad_host"),
    ("Host: {ok}, evil.example", 400, "bad_host"),
    ("Host: {ok}/x", 400, "bad_host"),
    ("Host: {ok} evil.example", 400, "bad_host"),
    ("Host: 127.0.0.1:", 400, "bad_host"),
    ("Host: [::1", 400, "bad_host"),
    ("Host: ", 403, "forbidden_host"),
    ("X-Forwarded-Host: {ok}", 403, "forbidden_host"),
    ("Host: evil.example:{port}\r\nX-Forwarded-Host: {ok}", 403, "forbidden_host"),
])
def test_host_smuggling_is_refused(server, headers, status, code):
    ok = "127.0.0.1:%d" % server.port
    req = "GET /api/status HTTP/1.1\r\n%s\r\n\r\n" % headers.format(ok=ok, port=server.port)
    got, body, closed = raw(server.port, req.encode())
    assert got == status, body
    assert error_code(body) == code
    if status == 400:
        assert closed  # nothing more is read from a connection that sent this


def test_host_with_trailing_whitespace_is_fine(server):
    got, body, _ = raw(server.port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d  \r\n\r\n" % server.port)
    assert got == 200


def test_absolute_target_must_name_the_host(server):
    p = server.port
    got, body, _ = raw(p, b"GET http://127.0.0.1:%d/api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (p, p))
    assert got == 200 and json.loads(body)["version"]
    got, body, closed = raw(p, b"GET http://evil.example:%d/api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                            % (p, p))
    assert got == 400 and error_code(body) == "bad_host" and closed
    got, body, closed = raw(p, b"GET http://evil@127.0.0.1:%d/api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                            % (p, p))
    assert got == 400 and error_code(body) == "bad_host"
    # another port: civetweb does not pass it on; no answer at all
    got, body, closed = raw(p, b"GET http://127.0.0.1:1/api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p)
    assert got in (None, 400) and b'"version"' not in body and closed


def test_header_fields_beyond_what_is_kept_are_refused(server):
    """civetweb keeps 64 header fields and drops the rest unseen: a second
    Host there would not be noticed, so such a request is refused."""
    p = server.port
    filler = "".join("X-F%d: y\r\n" % i for i in range(70))
    got, body, closed = raw(p, ("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sHost: evil.example\r\n\r\n"
                                % (p, filler)).encode())
    assert got == 400 and error_code(body) == "bad_request" and closed
    filler = "".join("X-F%d: y\r\n" % i for i in range(40))
    got, _, _ = raw(p, ("GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" % (p, filler)).encode())
    assert got == 200


def test_request_body_framing_is_refused(server):
    """GET and HEAD carry no body here; a body's framing could hide a second
    request from a proxy in front."""
    p = server.port
    smuggled = b"GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    for framing in (b"Transfer-Encoding: chunked\r\n", b"Content-Length: %d\r\n" % len(smuggled),
                    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"):
        got, body, closed = raw(p, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n%s"
                                % (p, framing, smuggled))
        assert got == 400 and error_code(body) == "bad_request" and closed, framing
    got, _, _ = raw(p, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 0\r\n\r\n" % p)
    assert got == 200


def test_every_pipelined_request_is_checked(server):
    p = server.port
    data = until_closed(p, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                        b"GET /api/runs HTTP/1.1\r\nHost: evil.example:%d\r\nConnection: close\r\n\r\n" % (p, p))
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
    assert statuses == [200, 403]
