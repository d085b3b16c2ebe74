"""Exact-trace mode of `timeglass run --trace`.

Turns on the preload library's eval-frame hook (preload/pytrace.c) for this
interpreter: from then on every Python function call that lasts at least
TIMEGLASS_TRACE_US microseconds (default 100) is recorded as a 'function'
span of its request. The hook is C, so calls under the threshold cost two
clock reads and no Python code. Called once, early, by the bootstrap
(timeglass/bootstrap/sitecustomize.py); it must hold the GIL, hence
ctypes.PyDLL.
"""

import os
import sys

DEFAULT_THRESHOLD_US = 100


def wanted():
    return (os.environ.get("TIMEGLASS_TRACE", "") not in ("", "0")
            and bool(os.environ.get("TIMEGLASS_SOCK")))


def threshold_us():
    try:
        v = int(os.environ.get("TIMEGLASS_TRACE_US", ""))
        return v if v >= 0 else DEFAULT_THRESHOLD_US
    except ValueError:
        return DEFAULT_THRESHOLD_US


def start():
    """Turns tracing on. Returns True when it is on."""
    if not wanted():
        return False
    import ctypes

    try:
        fn = ctypes.PyDLL(None).timeglass_trace_start
    except AttributeError:  # not under the preload library
        return False
    fn.argtypes = [ctypes.c_uint64]
    fn.restype = ctypes.c_int
    if fn(threshold_us() * 1000) != 0:
        sys.stderr.write("timeglass: --trace is not available in this interpreter "
                         "(unsupported version, or another eval-frame hook is set)\n")
        return False
    return True
