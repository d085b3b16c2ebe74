"""Secrets in request headers never reach the store; the store is private (0600)."""

import os
import secrets
import stat

from rawhttp import build_request, exchange
from tgtest import read_requests, summarize


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
