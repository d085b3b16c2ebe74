"""A strict OTLP/HTTP (JSON) trace receiver for the tests, built on the
OpenTelemetry project's own protocol definitions (opentelemetry-proto).

OTLP/JSON is the protobuf JSON mapping with two exceptions: trace and span
ids are hex strings (not base64) and enums are integers. decode() checks the
ids are lowercase hex of the right length, turns them into the base64 the
mapping wants, and parses the document with json_format.Parse, refusing
unknown fields: what it returns is what a Collector would have received.

OtlpReceiver serves POST /v1/traces on 127.0.0.1 (port 0: an ephemeral
port) in a thread and keeps every request it decoded; a document that does
not decode gets 400, like a Collector's.
"""

import base64
import http.server
import json
import re
import threading

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)

_ID_LEN = {"traceId": 32, "spanId": 16, "parentSpanId": 16}
_HEX = re.compile(r"[0-9a-f]*\Z")


def _ids_to_base64(node, where="$"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _ID_LEN:
                if not isinstance(v, str) or len(v) != _ID_LEN[k] or not _HEX.match(v):
                    raise ValueError("%s.%s: %r is not %d lowercase hex digits" % (where, k, v, _ID_LEN[k]))
                node[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                _ids_to_base64(v, "%s.%s" % (where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _ids_to_base64(v, "%s[%d]" % (where, i))


def decode(text):
    """An OTLP/JSON ExportTraceServiceRequest (str or bytes) as the protobuf
    message; raises ValueError (or json_format.ParseError) if it is not one."""
    doc = json.loads(text)
    _ids_to_base64(doc)
    msg = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(doc), msg, ignore_unknown_fields=False)
    return msg


def hex_id(b):
    """A protobuf id (bytes) as the lowercase hex of OTLP/JSON."""
    return b.hex()


def attrs(kvs):
    """{key: python value} of a repeated KeyValue."""
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def reply(handler, status, body, content_type="application/json"):
    """Answers handler's request with body (bytes)."""
    handler.send_response(status)
    for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body)))):
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            return reply(self, 404, b'{"code":5,"message":"not found"}')
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return reply(self, 415, b'{"code":3,"message":"OTLP/JSON only"}')
        try:
            msg = decode(body)
        except Exception as e:  # noqa: BLE001 - any decoding failure is the sender's
            self.server.owner.errors.append(str(e))
            return reply(self, 400, json.dumps({"code": 3, "message": str(e)}).encode())
        with self.server.owner.lock:
            self.server.owner.received.append(msg)
        reply(self, 200, json_format.MessageToJson(ExportTraceServiceResponse()).encode())

    def log_message(self, *args):
        pass


class OtlpReceiver:
    def __init__(self):
        self.received = []  # ExportTraceServiceRequest messages, in arrival order
        self.errors = []    # why documents were refused
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self):
        """(resource attributes, span) of every span received."""
        with self.lock:
            msgs = list(self.received)
        return [(attrs(rs.resource.attributes), sp)
                for m in msgs for rs in m.resource_spans for ss in rs.scope_spans for sp in ss.spans]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
