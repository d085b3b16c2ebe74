"""timeglass export --format otlp-json, received the way an OpenTelemetry
Collector receives OTLP/HTTP: every document is parsed strictly with the
OpenTelemetry project's own protocol definitions (receiver.py), then checked
against the store the run wrote."""

import json
import subprocess
import urllib.request

import pytest

try:
    import opentelemetry.proto  # noqa: F401
    import google.protobuf  # noqa: F401
except ImportError as e:
    pytest.skip("OpenTelemetry's protocol definitions are not installed (Debian: python3-opentelemetry-proto "
                "and python3-protobuf; tests/matrix runs these tests in the sid chroot): %s" % e,
                allow_module_level=True)

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

import receiver  # noqa: E402
from tgtest import TIMEGLASS, run_cli  # noqa: E402

SERVER, CLIENT = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT
ERROR = Status.STATUS_CODE_ERROR


def export(shop, name, *args):
    out = shop.tmp / name
    run_cli("export", "--db", shop.db, "--format", "otlp-json", "-o", out, *args)
    return out.read_bytes()


def post(endpoint, body):
    req = urllib.request.Request(endpoint + "/v1/traces", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


class Export:
    """One export as received: resources and spans, indexed."""

    def __init__(self, msg):
        self.msg = msg
        self.resources = [receiver.attrs(rs.resource.attributes) for rs in msg.resource_spans]
        self.spans = [sp for rs in msg.resource_spans for ss in rs.scope_spans for sp in ss.spans]
        self.attrs = {id(sp): receiver.attrs(sp.attributes) for sp in self.spans}
        self.server = {}  # request id -> span
        self.query = {}   # query id -> span
        for sp in self.spans:
            a = self.attrs[id(sp)]
            if sp.kind == SERVER:
                assert a["timeglass.request.id"] not in self.server
                self.server[a["timeglass.request.id"]] = sp
            elif "db.system" in a:
                self.query[a["timeglass.query.id"]] = sp
        self.by_span_id = {sp.span_id: sp for sp in self.spans}

    def a(self, sp):
        return self.attrs[id(sp)]

    def children(self, parent):
        return [sp for sp in self.spans if sp.parent_span_id == parent.span_id and sp.trace_id == parent.trace_id]


@pytest.fixture(scope="session")
def otlp(shop):
    """The run exported, POSTed to a strict OTLP/HTTP receiver."""
    body = export(shop, "run.json")
    rec = receiver.OtlpReceiver()
    try:
        status, reply = post(rec.endpoint, body)
        assert status == 200 and json.loads(reply) == {}, rec.errors
        assert len(rec.received) == 1 and not rec.errors
        yield Export(rec.received[0])
    finally:
        rec.close()


def test_receiver_is_strict():
    """The receiver refuses what a Collector refuses: base64 ids, unknown
    fields, 64-bit integers of the wrong type."""
    good = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7", "name": "x", "kind": 2,
         "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}
    assert len(receiver.decode(json.dumps(good)).resource_spans) == 1
    span = good["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for field, bad in (("traceId", "S/kvNXezTaajzpKdDg5HNg=="), ("spanId", "00F067AA0BA902B7"),
                       ("color", "red"), ("startTimeUnixNano", "soon")):
        doc = json.loads(json.dumps(good))
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = bad
        with pytest.raises(Exception):
            receiver.decode(json.dumps(doc))
    assert span["name"] == "x"


def test_one_server_span_per_request(shop, otlp):
    reqs = shop.rows("SELECT * FROM requests WHERE run_id = (SELECT max(id) FROM runs)")
    assert len(reqs) == len(shop.sent) + shop.concurrent
    assert sorted(otlp.server) == sorted(r["id"] for r in reqs)
    for r in reqs:
        sp = otlp.server[r["id"]]
        a = otlp.a(sp)
        assert r["route"], r
        assert sp.name == "%s %s" % (r["method"], r["route"])
        assert a["http.request.method"] == r["method"] and a["url.path"] == r["path"]
        assert a["http.route"] == r["route"] and a["http.response.status_code"] == r["status"]
        assert a["network.protocol.version"] == "1.1"
        assert sp.start_time_unix_nano == r["start_unix_ns"]
        assert sp.end_time_unix_nano == r["start_unix_ns"] + r["duration_ns"]
        assert (sp.status.code == ERROR) == (r["status"] >= 500)
    names = {sp.name for sp in otlp.server.values()}
    assert names == {"GET /api/v1/orders/{order_id}", "POST /api/v1/orders", "GET /api/v1/orders/{order_id}/broken",
                     "GET /api/v1/orders/{order_id}/shipping", "GET /api/v1/catalog/{item_id}", "GET /api/v1/fail"}


def _app_sql(otlp, request_id):
    spans = [sp for sp in otlp.children(otlp.server[request_id]) if "db.system" in otlp.a(sp)]
    spans.sort(key=lambda sp: (sp.start_time_unix_nano, otlp.a(sp)["timeglass.query.id"]))
    return [otlp.a(sp)["db.query.text"] for sp in spans if not otlp.a(sp)["timeglass.housekeeping"]]


def _order_sql(shop, oid):
    return (["SELECT id, customer, total FROM orders WHERE id = %d" % oid,
             "SELECT product_id, qty FROM order_items WHERE order_id = %d ORDER BY product_id" % oid]
            + ["SELECT name, price FROM products WHERE id = %d" % pid for pid, _ in shop.orders[oid]])


def test_sql_children_carry_the_exact_sql_under_their_request(shop, otlp):
    for oid in shop.orders:
        assert _app_sql(otlp, shop.request_id("order%d" % oid)) == _order_sql(shop, oid)
    assert _app_sql(otlp, shop.request_id("create")) == [
        "INSERT INTO orders (customer, total) VALUES ('alice', 12.5) RETURNING id"]
    assert _app_sql(otlp, shop.request_id("catalog")) == ["SELECT id, name FROM catalog WHERE id = ?"]
    # The concurrent requests: each one's queries are its own order's.
    concurrent = shop.rows("SELECT id, path FROM requests WHERE path LIKE '/api/v1/orders/_' ORDER BY id")
    assert len(concurrent) == shop.concurrent + 3
    for r in concurrent:
        assert _app_sql(otlp, r["id"]) == _order_sql(shop, int(r["path"].rsplit("/", 1)[1])), r

    queries = shop.rows("SELECT * FROM queries WHERE request_id IS NOT NULL")
    assert sorted(otlp.query) == sorted(q["id"] for q in queries)
    for q in queries:
        sp = otlp.query[q["id"]]
        a = otlp.a(sp)
        parent = otlp.server[q["request_id"]]
        assert sp.kind == CLIENT and sp.parent_span_id == parent.span_id and sp.trace_id == parent.trace_id
        assert a["db.query.text"] == q["sql"] and a["db.system"] == q["db_system"]
        assert a["db.namespace"] == q["database"] if q["database"] else "db.namespace" not in a
        assert a["timeglass.n_plus_one"] == bool(q["n_plus_one"])
        assert a["timeglass.duplicate"] == bool(q["duplicate"])
        assert a["timeglass.housekeeping"] == (q["kind"] == "housekeeping")
        assert sp.start_time_unix_nano == q["start_unix_ns"]
        if q["error"] is None:
            assert a.get("db.response.returned_rows") == q["rows"] and sp.status.code != ERROR
        site_file, _, rest = q["call_site"].rpartition(":")
        line, _, func = rest.partition(" ")
        assert (a["code.filepath"], a["code.lineno"], a["code.function"]) == (site_file, int(line), func)
    pg = [otlp.a(s) for s in otlp.query.values() if otlp.a(s)["db.system"] == "postgresql"]
    assert pg and all(a["db.namespace"] == "shop" for a in pg)
    assert any(a["timeglass.housekeeping"] and a["db.query.text"].upper().startswith("BEGIN") for a in pg)
    assert any(a["timeglass.n_plus_one"] for a in pg)  # the product query per item
    assert all(a["code.filepath"].endswith("shop.py") for a in pg if not a["timeglass.housekeeping"])


def test_counts_equal_the_store(shop, otlp):
    run = "(SELECT max(id) FROM runs)"
    (n,) = shop.rows("SELECT (SELECT count(*) FROM requests WHERE run_id = %s)"
                     " + (SELECT count(*) FROM queries WHERE run_id = %s AND request_id IS NOT NULL)"
                     " + (SELECT count(*) FROM spans WHERE run_id = %s AND request_id IS NOT NULL"
                     "    AND kind = 'http_client') AS n" % (run, run, run))
    assert len(otlp.spans) == n["n"]
    assert len({sp.span_id for sp in otlp.spans}) == len(otlp.spans)
    for sp in otlp.spans:  # every child hangs under a server span of its trace
        if sp.kind == CLIENT:
            assert otlp.by_span_id[sp.parent_span_id].kind == SERVER


def test_traceparent_joins_the_callers_trace(shop, otlp):
    trace, parent = shop.traceparent.split("-")[1:3]
    sp = otlp.server[shop.request_id("order2")]
    assert receiver.hex_id(sp.trace_id) == trace and receiver.hex_id(sp.parent_span_id) == parent
    kids = otlp.children(sp)
    assert len(kids) == len(shop.rows("SELECT id FROM queries WHERE request_id = ?", shop.request_id("order2")))
    others = [s for rid, s in otlp.server.items() if rid != shop.request_id("order2")]
    assert all(not s.parent_span_id and receiver.hex_id(s.trace_id) != trace for s in others)
    assert len({s.trace_id for s in others}) == len(others)  # a trace of its own each
    (row,) = shop.rows("SELECT trace_id, parent_span_id FROM requests WHERE id = ?", shop.request_id("order2"))
    assert (row["trace_id"], row["parent_span_id"]) == (trace, parent)


def test_ids_are_stable(shop, otlp):
    again = Export(receiver.decode(export(shop, "again.json")))
    assert again.msg == otlp.msg
    rid = shop.request_id("order1")
    one = Export(receiver.decode(export(shop, "one.json", "--request", rid)))
    assert list(one.server) == [rid]
    assert one.server[rid] == otlp.server[rid]
    assert sorted(sp.span_id for sp in one.spans) == sorted(
        [otlp.server[rid].span_id] + [sp.span_id for sp in otlp.children(otlp.server[rid])])


def test_exceptions_are_span_events(shop, otlp):
    sp = otlp.server[shop.request_id("fail")]
    assert sp.status.code == ERROR and otlp.a(sp)["http.response.status_code"] == 500
    assert otlp.a(sp)["error.type"] == "500"
    (ev,) = sp.events
    a = receiver.attrs(ev.attributes)
    assert ev.name == "exception" and a["exception.type"] == "ValueError"
    assert a["exception.message"] == "payment gateway said no"
    assert "raise ValueError" in a["exception.stacktrace"] and "in fail" in a["exception.stacktrace"]
    assert sp.start_time_unix_nano <= ev.time_unix_nano <= sp.end_time_unix_nano

    sp = otlp.server[shop.request_id("broken")]
    (ev,) = sp.events
    assert "UndefinedTable" in receiver.attrs(ev.attributes)["exception.type"]
    (q,) = [k for k in otlp.children(sp) if "no_such_table" in otlp.a(k).get("db.query.text", "")]
    assert q.status.code == ERROR and "no_such_table" in q.status.message
    assert otlp.a(q)["db.response.status_code"] == "42P01" and "db.response.returned_rows" not in otlp.a(q)
    missing = otlp.server[shop.request_id("missing")]
    assert otlp.a(missing)["http.response.status_code"] == 404 and missing.status.code != ERROR
    assert not missing.events


def test_outbound_call_is_a_client_span(shop, otlp):
    sp = otlp.server[shop.request_id("shipping")]
    (call,) = [k for k in otlp.children(sp) if "url.full" in otlp.a(k)]
    a = otlp.a(call)
    assert call.kind == CLIENT and call.name == "GET"
    # The store keeps an outbound call's path, not its query.
    assert a["url.full"] == "http://127.0.0.1:%d/rates" % shop.rates_port
    assert a["http.request.method"] == "GET" and a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == shop.rates_port
    assert sp.start_time_unix_nano <= call.start_time_unix_nano <= call.end_time_unix_nano <= sp.end_time_unix_nano


def test_request_attributes(shop, otlp):
    a = otlp.a(otlp.server[shop.request_id("catalog")])
    assert a["url.query"] == "token=[redacted]&page=2"
    assert a["client.address"] == "203.0.113.7" and a["network.peer.address"] == "127.0.0.1"
    assert a["http.route"] == "/api/v1/catalog/{item_id}"
    assert "url.query" not in otlp.a(otlp.server[shop.request_id("order1")])


def test_resource_and_scope(shop, otlp):
    (run,) = shop.rows("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
    pids = {r["pid"] for r in shop.rows("SELECT pid FROM requests WHERE run_id = ?", run["id"])}
    assert sorted(r["process.pid"] for r in otlp.resources) == sorted(pids)
    version = subprocess.run([str(TIMEGLASS), "--version"], capture_output=True, text=True).stdout.split()[-1]
    for rs, res in zip(otlp.msg.resource_spans, otlp.resources):
        assert res["service.name"] == "shop" and res["host.name"] == run["hostname"]
        assert res["telemetry.sdk.name"] == "timeglass" and res["telemetry.sdk.version"] == version
        (ss,) = rs.scope_spans
        assert ss.scope.name == "timeglass" and ss.scope.version == version
    named = receiver.decode(export(shop, "named.json", "--service-name", "checkout"))
    assert {receiver.attrs(rs.resource.attributes)["service.name"] for rs in named.resource_spans} == {"checkout"}


def test_unknown_request_is_an_error(shop):
    bad = run_cli("export", "--db", shop.db, "--format", "otlp-json", "--request", "99999999", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("timeglass: ") and "99999999" in bad.stderr and bad.stderr.count("\n") == 1
