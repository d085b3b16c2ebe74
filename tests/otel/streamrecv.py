"""A minimal OTLP/HTTP trace receiver (JSON encoding) for the streaming tests.

Run as a process of its own, so that a test can kill it and start it again:

    /usr/bin/python3 streamrecv.py PORT LOG [--ids-only] [--max-body BYTES]

It answers POST /v1/traces (Content-Type application/json) with 200 and
appends one JSON line per request to LOG *before* answering: the headers
it got and the spans (resource attributes, trace and span ids, parent,
name, kind, times, attributes flattened to {key: value}); with --ids-only
only the span ids. With --max-body, a larger body gets 413 (logged as
{"too_large": BYTES}). A line cut short by a kill is not a delivery (no answer
went out); readers skip it. Anything else gets 404 or 415.

The helpers below (start, read_log, flat_attrs) are what the tests import.
"""

import http.server
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def flat_value(v):
    """An OTLP/JSON AnyValue as a Python value."""
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [flat_value(x) for x in v["arrayValue"].get("values", [])]
    return v


def flat_attrs(attrs):
    return {a["key"]: flat_value(a.get("value", {})) for a in attrs or []}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/v1/traces":
            return self.reply(404)
        if self.server.max_body and length > self.server.max_body:
            with open(self.server.log, "a") as f:
                f.write(json.dumps({"too_large": length}) + "\n")
            return self.reply(413)
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.reply(415)
        try:
            req = json.loads(body)
        except ValueError:
            return self.reply(400)
        spans = []
        for rs in req.get("resourceSpans", []):
            resource = flat_attrs(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    if self.server.ids_only:
                        spans.append(s.get("spanId"))
                        continue
                    spans.append({
                        "resource": resource,
                        "traceId": s.get("traceId"), "spanId": s.get("spanId"),
                        "parentSpanId": s.get("parentSpanId", ""), "name": s.get("name"),
                        "kind": s.get("kind"),
                        "start": int(s.get("startTimeUnixNano", 0)), "end": int(s.get("endTimeUnixNano", 0)),
                        "attributes": flat_attrs(s.get("attributes")),
                    })
        line = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "spans": spans})
        with open(self.server.log, "a") as f:
            f.write(line + "\n")
            f.flush()
        self.reply(200)


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    port, log = int(sys.argv[1]), sys.argv[2]
    srv = Server(("127.0.0.1", port), Handler)
    srv.log = log
    srv.ids_only = "--ids-only" in sys.argv[3:]
    srv.max_body = int(sys.argv[sys.argv.index("--max-body") + 1]) if "--max-body" in sys.argv else 0
    print("listening", flush=True)
    srv.serve_forever()


# ---- for the tests -------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port, log, ids_only=False, max_body=0):
    """Starts a receiver process on port and waits until it listens."""
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "streamrecv.py"), str(port), str(log)]
                            + (["--ids-only"] if ids_only else [])
                            + (["--max-body", str(max_body)] if max_body else []),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the receiver exited with %d" % proc.returncode)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the receiver did not listen on %d" % port)


def read_log(log):
    """The complete lines of a receiver's log, as objects."""
    out = []
    if not os.path.exists(log):
        return out
    with open(log) as f:
        for line in f:
            if line.endswith("\n"):
                out.append(json.loads(line))
    return out


if __name__ == "__main__":
    main()
