"""Exception text for a failed request: "Type: message", then the traceback.

Capped at 8 KiB of UTF-8 (the marker ABI's limit). When the traceback is
longer, its head is cut: the first line and the innermost frames, where the
failure happened, are kept.
"""

import os
import traceback
import urllib.parse

TEXT_MAX = 8192  # bytes
_CUT = "\n[... traceback cut ...]\n"
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _ours(filename):
    """True for a file of this package (the middleware and bootstrap wrap
    each request; the threadpool and driver wrappers sit inside it)."""
    d = os.path.dirname(filename)
    return d == _PACKAGE or d.startswith(_PACKAGE + os.sep)


def _without_ours(te, seen=None):
    """te (a TracebackException) and the exceptions chained to it without
    the frames of this package."""
    seen = set() if seen is None else seen
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        frames = [f for f in te.stack if not _ours(f.filename)]
        if len(frames) != len(te.stack):
            te.stack = traceback.StackSummary.from_list(frames)
        for group in getattr(te, "exceptions", None) or ():  # ExceptionGroup members
            _without_ours(group, seen)
        if te.__cause__ is not None:
            _without_ours(te.__cause__, seen)
        te = te.__context__


def exception_text(exc, cap=TEXT_MAX):
    """The text that describes exc for the store and for exception marks."""
    try:
        head = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")
        te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        _without_ours(te)
        body = "".join(te.format())
    except Exception:  # a __str__ that raises
        head = body = type(exc).__name__
    text = head + "\n" + body
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:
        return text
    head_b = (head + _CUT).encode("utf-8", "replace")[: cap // 2]
    tail_b = data[len(data) - (cap - len(head_b)):]
    return (head_b + tail_b).decode("utf-8", "ignore")


# Query parameters whose values are secrets: the preload library's list
# (preload/redact.c), matched on the whole name after percent-decoding, in
# any case; TIMEGLASS_REDACT_PARAMS (timeglass run --redact-param) adds names.
SECRET_PARAMS = frozenset((
    "password", "passwd", "pwd", "token", "access_token", "refresh_token", "api_key", "apikey", "key",
    "secret", "client_secret", "auth", "session", "signature", "sig", "code"))
REDACTED = "[redacted]"
_secret_names = None


def _secrets():
    global _secret_names
    if _secret_names is None:
        extra = os.environ.get("TIMEGLASS_REDACT_PARAMS", "")
        _secret_names = SECRET_PARAMS | {n.strip().lower() for n in extra.split(",") if n.strip()}
    return _secret_names


def redact_query(query):
    """query ("a=1&password=x") with the values of secret parameters replaced
    by [redacted], as the preload library does on the wire ('&' and ';'
    separate parameters)."""
    if not query or "=" not in query:
        return query
    secrets = _secrets()
    parts = _split_params(query)
    for i in range(0, len(parts), 2):
        name, sep, _ = parts[i].partition("=")
        if sep and urllib.parse.unquote_plus(name).lower() in secrets:
            parts[i] = name + "=" + REDACTED
    return "".join(parts)


def _split_params(query):
    """query split into [param, separator, param, ...]."""
    out, start = [], 0
    for i, ch in enumerate(query):
        if ch in "&;":
            out += [query[start:i], ch]
            start = i + 1
    out.append(query[start:])
    return out
