"""Byte-exact HTTP/1.1 client helpers for the integration tests.

The tests compare the byte counts TimeGlass records with the bytes that
really crossed the socket, so the client side has to know them exactly:
`RawConnection` sends what it is given verbatim and reads responses itself,
counting every byte of each response (status line, headers, framing, body,
and any interim 1xx responses before it).
"""

import socket
import time


class Response:
    def __init__(self, status, reason, headers, body, raw_len, interim_len=0, interim=()):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw_len = raw_len  # bytes of this response, interim responses included
        self.interim_len = interim_len
        self.interim = list(interim)  # statuses of the 1xx responses before it

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def __repr__(self):
        return "<Response %d %s, %d bytes>" % (self.status, self.reason, self.raw_len)


class ConnectionClosed(Exception):
    pass


class RawConnection:
    def __init__(self, port, host="127.0.0.1", timeout=15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.bytes_sent = 0

    @property
    def local_addr(self):
        host, port = self.sock.getsockname()[:2]
        return "%s:%d" % (host, port)

    def send(self, data):
        self.sock.sendall(data)
        self.bytes_sent += len(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading -----------------------------------------------------------
    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("server closed the connection")
        self.buf += chunk

    def _read_until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[: i + len(marker)], self.buf[i + len(marker):]
                return out
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        head = self._read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
        return head, int(status), (reason[0].decode("latin-1") if reason else ""), headers

    def read_response(self, head_request=False):
        """Read one final response (and the 1xx responses before it)."""
        interim_len = 0
        interim = []
        while True:
            head, status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                interim_len += len(head)
                interim.append(status)
                continue
            break
        raw_len = interim_len + len(head)
        hmap = {}
        for k, v in headers:
            hmap.setdefault(k, v)
        body = b""
        if head_request or status in (101, 204, 304):
            pass
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            while True:
                size_line = self._read_until(b"\r\n")
                raw_len += len(size_line)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers (none expected) end with an empty line
                    while True:
                        line = self._read_until(b"\r\n")
                        raw_len += len(line)
                        if line == b"\r\n":
                            break
                    break
                data = self._read_exact(size + 2)
                raw_len += len(data)
                body += data[:-2]
        elif "content-length" in hmap:
            body = self._read_exact(int(hmap["content-length"]))
            raw_len += len(body)
        else:
            # read to EOF
            try:
                while True:
                    self._fill()
            except (ConnectionClosed, ConnectionResetError):
                pass
            body, self.buf = self.buf, b""
            raw_len += len(body)
        return Response(status, reason, headers, body, raw_len, interim_len, interim)

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection within timeout (data is discarded)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


def build_request(method, target, headers=None, body=None, host="127.0.0.1"):
    """Serialize one request exactly as it will be sent (Content-Length added for bodies)."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % host]
    headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in headers}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body
    return data


def chunked(body, chunk_size):
    """Chunked transfer-coding of body."""
    out = b""
    for i in range(0, len(body), chunk_size):
        part = body[i: i + chunk_size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def exchange(port, request, head_request=False, timeout=15.0):
    """One request on a fresh connection: returns (Response, request bytes, client addr, elapsed ns)."""
    with RawConnection(port, timeout=timeout) as conn:
        t0 = time.perf_counter_ns()
        conn.send(request)
        resp = conn.read_response(head_request=head_request)
        elapsed = time.perf_counter_ns() - t0
        return resp, len(request), conn.local_addr, elapsed
