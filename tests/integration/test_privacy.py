"""Secrets in request headers and query strings never reach the store (nor,
for query strings, the shared-memory ring); the store is private (0600)."""

import contextlib
import os
import secrets
import signal
import stat

from rawhttp import build_request, exchange
from tgtest import APPS, LocalHTTP, free_port, open_store, read_requests, summarize, timeglass_env, uvicorn_argv


def test_secret_headers_are_redacted(traced, store):
    token = "tok-" + secrets.token_hex(16)
    cookie = "sess-" + secrets.token_hex(16)
    api_key = "key-" + secrets.token_hex(16)
    proxy = "prx-" + secrets.token_hex(16)
    visible = "vis-" + secrets.token_hex(8)
    headers = [
        ("Authorization", "Bearer " + token),
        ("Cookie", "session=%s; theme=dark" % cookie),
        ("X-Api-Key", api_key),
        ("proxy-authorization", "Basic " + proxy),
        ("X-Request-Tag", visible),
    ]
    lower_case = [("authorization", "Bearer " + token), ("COOKIE", "session=" + cookie),
                  ("x-api-key", api_key)]
    with traced(db=store) as server:
        r1, _, _, _ = exchange(server.port, build_request("GET", "/items/1", headers))
        r2, _, _, _ = exchange(server.port, build_request("GET", "/items/2", lower_case))
    assert r1.status == 200 and r2.status == 200

    rows, stderr = read_requests(store)
    assert len(rows) == 2, summarize(rows)
    first, second = rows
    text = first["headers"]
    assert "Authorization: [redacted]\n" in text, text
    assert "Cookie: [redacted]\n" in text, text
    assert "X-Api-Key: [redacted]\n" in text, text
    assert "X-Request-Tag: %s\n" % visible in text, "ordinary headers are kept: %s" % text
    assert "authorization: [redacted]\n" in second["headers"], second["headers"]

    secret_values = [token, cookie, api_key, proxy]
    dump = "\n".join(map(str, rows)) + stderr
    for value in secret_values:
        assert value not in dump, "secret %s visible in `timeglass requests --json`" % value
    store_dir = os.path.dirname(store)
    files = sorted(os.listdir(store_dir))
    assert files, "no store files in %s" % store_dir
    for name in files:
        with open(os.path.join(store_dir, name), "rb") as f:
            data = f.read()
        for value in secret_values:
            assert value.encode() not in data, "secret %s found in %s" % (value, name)
    # The search above is meaningful only if header text is in these files at all.
    assert any(visible.encode() in open(os.path.join(store_dir, n), "rb").read() for n in files)


def test_store_file_is_private(traced, store):
    with traced(db=store) as server:
        exchange(server.port, build_request("GET", "/"))
    assert os.path.isfile(store), "no store at %s" % store
    for name in os.listdir(os.path.dirname(store)):
        path = os.path.join(os.path.dirname(store), name)
        if name.startswith(os.path.basename(store)):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode & 0o077 == 0, "%s has mode %o; the store must be readable by its owner only" % (name, mode)


def partner_api():
    """The partner's HTTP API the payments app calls (a real server on
    loopback): answers JSON and remembers the targets it was sent."""
    return LocalHTTP(lambda target: ("application/json", b'{"price": 5}'))


def ring_bytes(pid):
    """The contents of the shared-memory rings mapped into process pid."""
    out = b""
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            if "timeglass-ring" not in line:
                continue
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            mem.seek(lo)
            out += mem.read(hi - lo)
    return out


def test_secret_query_values_are_redacted(traced, store):
    """Secrets in query strings (the request target, the Referer header, the
    URL of an outbound call made with httpx or requests, and a name added
    with --redact-param) are redacted in the library: they are neither in
    the shared-memory ring (read while the collector is stopped) nor in any
    store file, while the app and its partner see them as sent."""
    s = {k: "%s-%s" % (k, secrets.token_hex(12)) for k in ("code", "referer", "inbound", "refund", "promo",
                                                             "pw", "partner")}
    visible = "vis-" + secrets.token_hex(8)
    partner = partner_api()
    port = free_port()
    argv = uvicorn_argv(port, app="payments:app", app_dir=APPS)
    env = timeglass_env({"PARTNER_URL": partner.url, "PARTNER_API_KEY": s["partner"]})
    try:
        with traced(argv=argv, port=port, db=store, env=env, tg_args=["--redact-param", "Promo_Code"]) as server:
            exchange(server.port, build_request("GET", "/health/ping"))  # warm up
            collector = server.collector_pids()
            assert len(collector) == 1, collector
            os.kill(collector[0], signal.SIGSTOP)
            try:
                plan = [
                    ("/auth/callback?code=%s&state=%s" % (s["code"], visible),
                     [("Referer", "https://shop.example/checkout?step=2&password=%s" % s["referer"])]),
                    ("/api/v1/partners/acme/quote?amount=5&Access_Token=%s" % s["inbound"], []),
                    ("/api/v1/partners/acme/refund?token=%s" % s["refund"], []),
                    ("/api/v1/accounts/7?promo_code=%s&%%70assword=%s&visible=%s" % (s["promo"], s["pw"], visible),
                     []),
                ]
                statuses = [exchange(server.port, build_request("GET", t, h))[0].status for t, h in plan]
                ring = ring_bytes(server.app_pid())
            finally:
                os.kill(collector[0], signal.SIGCONT)
    finally:
        partner.close()
    assert statuses == [200, 200, 200, 200], statuses
    # The secrets went where the app sent them: the check below means something.
    assert any(s["partner"] in p and s["refund"] in p for p in partner.seen), partner.seen
    assert any("api_key=" + s["partner"] in p for p in partner.seen), partner.seen

    assert visible.encode() in ring and b"[redacted]" in ring, "the requests were not in the ring"
    for name, value in s.items():
        assert value.encode() not in ring, "secret %s reached the shared-memory ring" % name

    rows, stderr = read_requests(store)
    by_path = {r["path"]: r for r in rows}
    cb = by_path["/auth/callback"]
    assert cb["query_string"] == "code=[redacted]&state=%s" % visible, cb
    assert "Referer: https://shop.example/checkout?step=2&password=[redacted]\n" in cb["headers"], cb["headers"]
    assert by_path["/api/v1/partners/acme/quote"]["query_string"] == "amount=5&Access_Token=[redacted]"
    assert by_path["/api/v1/partners/acme/refund"]["query_string"] == "token=[redacted]"
    assert by_path["/api/v1/accounts/7"]["query_string"] == (
        "promo_code=[redacted]&%%70assword=[redacted]&visible=%s" % visible)
    with contextlib.closing(open_store(store)) as con:
        calls = con.execute("SELECT method, host, path, status FROM spans WHERE kind = 'http_client'"
                            " ORDER BY start_unix_ns").fetchall()
    assert ("GET", partner.url[7:], "/v2/quotes", 200) in calls, calls
    assert ("GET", partner.url[7:], "/v2/refunds/acme", 200) in calls, calls

    dump = "\n".join(map(str, rows)) + stderr
    store_dir = os.path.dirname(store)
    files = sorted(os.listdir(store_dir))
    assert any(n.endswith("-wal") for n in files) or files, files
    for name, value in s.items():
        assert value not in dump, "secret %s visible in `timeglass requests --json`" % name
        for f in files:
            with open(os.path.join(store_dir, f), "rb") as fh:
                assert value.encode() not in fh.read(), "secret %s found in %s" % (name, f)
    assert any(visible.encode() in open(os.path.join(store_dir, f), "rb").read() for f in files)
