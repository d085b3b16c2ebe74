"""Exception text for a failed request: "Type: message", then the traceback.

Capped at 8 KiB of UTF-8 (the marker ABI's limit). When the traceback is
longer, its head is cut: the first line and the innermost frames, where the
failure happened, are kept.
"""

import os
import traceback

TEXT_MAX = 8192  # bytes
_CUT = "\n[... traceback cut ...]\n"
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _app_frames(tb):
    """tb without the leading frames of this package (where it was caught)."""
    while tb is not None and tb.tb_next is not None and \
            os.path.dirname(tb.tb_frame.f_code.co_filename) == _PACKAGE:
        tb = tb.tb_next
    return tb


def exception_text(exc, cap=TEXT_MAX):
    """The text that describes exc for the store and for exception marks."""
    try:
        head = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")
        body = "".join(traceback.format_exception(type(exc), exc, _app_frames(exc.__traceback__)))
    except Exception:  # a __str__ that raises
        head = body = type(exc).__name__
    text = head + "\n" + body
    data = text.encode("utf-8", "replace")
    if len(data) <= cap:
        return text
    head_b = (head + _CUT).encode("utf-8", "replace")[: cap // 2]
    tail_b = data[len(data) - (cap - len(head_b)):]
    return (head_b + tail_b).decode("utf-8", "ignore")
