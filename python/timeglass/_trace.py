"""Exact-trace mode of `timeglass run --trace`, and eval-clocked sampling.

Turns on the preload library's eval-frame hook (preload/pytrace.c) for this
interpreter: from then on every Python function call that lasts at least
TIMEGLASS_TRACE_US microseconds (default 100) is recorded as a 'function'
span of its request. The hook is C, so calls under the threshold cost two
clock reads and no Python code. Called once, early, by the bootstrap
(timeglass/bootstrap/sitecustomize.py); it must hold the GIL, hence
ctypes.PyDLL.

The same hook can take the stack samples (`--sample-mode eval`, the default
above 2000 Hz): each thread samples itself when a Python call starts or ends
past its next period boundary, instead of a sampler thread woken by a timer
for every period (see preload/pytrace.c).
"""

import os
import sys

from . import _env

DEFAULT_THRESHOLD_US = 100
MAX_THRESHOLD_US = 60000000  # --trace-threshold-us


def wanted():
    return _env.flag("TIMEGLASS_TRACE") and bool(os.environ.get("TIMEGLASS_SOCK"))


def threshold_us():
    return _env.uint("TIMEGLASS_TRACE_US", DEFAULT_THRESHOLD_US, 0, MAX_THRESHOLD_US)


def _call_hook(name, ctype, value, what):
    """Calls the preload library's name(value) with the GIL held (ctypes.PyDLL).
    True when it said 0; False when there is no such library (not under
    `timeglass run`) or it refused, which is said on stderr as what."""
    import ctypes

    try:
        fn = getattr(ctypes.PyDLL(None), name)
    except AttributeError:  # not under the preload library
        return False
    fn.argtypes = [ctype]
    fn.restype = ctypes.c_int
    if fn(value) != 0:
        sys.stderr.write("timeglass: %s is not available in this interpreter "
                         "(unsupported version, or another eval-frame hook is set)\n" % what)
        return False
    return True


def start():
    """Turns tracing on. Returns True when it is on."""
    if not wanted():
        return False
    import ctypes

    return _call_hook("timeglass_trace_start", ctypes.c_uint64, threshold_us() * 1000, "--trace")


EVAL_ABOVE_HZ = 2000  # `--sample-mode auto` picks eval above this rate


def sample_mode():
    """("off" | "timer" | "eval", rate in Hz) for this process's environment."""
    hz = _env.uint("TIMEGLASS_SAMPLE_HZ", 1000, 0, 100000)
    if hz == 0:
        return "off", 0
    mode = _env.choice("TIMEGLASS_SAMPLE_MODE", "auto", ("auto", "timer", "eval"))
    if _env.flag("TIMEGLASS_NATIVE"):
        if mode == "eval":
            sys.stderr.write("timeglass: --native needs the sampler thread: --sample-mode eval ignored\n")
        return "timer", hz
    if mode == "eval" or (mode == "auto" and hz > EVAL_ABOVE_HZ):
        return "eval", hz
    return "timer", hz


def start_sampling():
    """Turns eval-clocked sampling on when the mode asks for it. Returns True
    when it is on; else the sampler thread goes on sampling."""
    if not os.environ.get("TIMEGLASS_SOCK"):
        return False
    mode, hz = sample_mode()
    if mode != "eval":
        return False
    import ctypes

    return _call_hook("timeglass_sample_eval_start", ctypes.c_uint32, hz,
                      "eval-clocked sampling (the sampler thread samples instead)")
