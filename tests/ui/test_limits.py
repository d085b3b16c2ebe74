"""The dashboard under many live-update streams, over real sockets: the API
keeps answering while hundreds of /api/events streams are open, every
stream past the cap gets the documented 503, and the server recovers as
soon as streams close."""
import json
import socket
import time

import pytest

import fixture

MAX_STREAMS = 32  # server/API.md: live-update streams served at once


def timed_get(port, path):
    """(status, seconds) of one GET on a fresh connection."""
    t = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path.encode(), port))
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
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
    finally:
        for sock in streams:
            sock.close()
    # closed: the API answers at once, and the streams' workers are free
    # again within a fraction of a second
    status, secs = timed_get(s.port, "/api/runs")
    assert status == 200 and secs < 1.0
    time.sleep(0.5)
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
