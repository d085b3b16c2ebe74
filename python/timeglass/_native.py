"""The marker ABI of libtimeglass.so (preload/marker.c), reached through ctypes.

Under `timeglass run` the preload library sits in the process's global symbol
scope, so `ctypes.CDLL(None)` finds its exported functions without knowing
where the file is. `native()` answers, once per process, whether this process
is being recorded by a collector; when it is not (no library, an ABI this
package does not speak, or a library that is loaded but not registered), the
middleware runs standalone and writes the store itself.

The same functions are reached without ctypes through the C extension
timeglass._speedups: built for the interpreter the build was configured
with, and for the stable ABI (_speedups.abi3.so), which any other CPython
from 3.11 on loads (not a free-threaded one). Both live in the package once
installed; `timeglass run` from a build tree names its build directory in
TIMEGLASS_PYEXT_DIR. TIMEGLASS_NO_SPEEDUPS=1 keeps to ctypes.
"""

import asyncio
import ctypes
import importlib.machinery
import importlib.util
import os
import sys

from . import _env

ABI_VERSION = 5  # newest marker ABI this package speaks; 1 has no request scopes
# The ABI only grows (functions are added, none change), so a newer library
# serves this package with the functions of ABI_VERSION.

MARK_ROUTE = 1  # text: route template, e.g. "/items/{item_id}"
MARK_EXCEPTION = 2  # text: "Type: message" and the traceback

TEXT_MAX = 8192  # bytes; the library caps marks at this size too

# enum tg_req_error (common/event.h), for in-process requests.
REQ_OK = 0
REQ_CLIENT_CLOSED_BEFORE_RESPONSE = 2
REQ_CLOSED_MID_RESPONSE = 3

_u64 = ctypes.c_uint64


class Native:
    """The bound marker functions of a loaded, ABI-compatible library."""

    __slots__ = ("_mark", "_mark_scope", "_asgi", "_active", "scope_enter", "scope_exit",
                 "thread_enter", "thread_exit", "fd_scope", "scope_begin", "scope_adopt",
                 "scope_release", "scope_current")

    fast = None  # the _speedups module when FastNative serves instead

    def __init__(self, lib, version=ABI_VERSION):
        self._active = lib.timeglass_active
        self._active.argtypes = []
        self._active.restype = ctypes.c_int
        self._mark = lib.timeglass_mark
        self._mark.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                               ctypes.c_char_p, ctypes.c_size_t]
        self._mark.restype = ctypes.c_int
        self._asgi = lib.timeglass_asgi_request
        self._asgi.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                               _u64, _u64, _u64, _u64, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        self._asgi.restype = ctypes.c_int
        # Request scopes (ABI 2): which request a query or outbound call belongs to.
        # scope_enter(host, port) -> token; scope_exit(token); thread_enter(token);
        # thread_exit(). Called directly (no Python wrapper) to keep them cheap.
        # fd_scope(fd, token, bind): a driver's operation on socket fd runs for
        # request `token` (bind=1) or is over (bind=0).
        self.scope_enter = self.scope_exit = self.thread_enter = self.thread_exit = None
        self.fd_scope = None
        if version >= 2:
            self.scope_enter = lib.timeglass_scope_enter
            self.scope_enter.argtypes = [ctypes.c_char_p, ctypes.c_int]
            self.scope_enter.restype = _u64
            self.scope_exit = lib.timeglass_scope_exit
            self.scope_exit.argtypes = [_u64]
            self.scope_exit.restype = None
            self.thread_enter = lib.timeglass_thread_enter
            self.thread_enter.argtypes = [_u64]
            self.thread_enter.restype = None
            self.thread_exit = lib.timeglass_thread_exit
            self.thread_exit.argtypes = []
            self.thread_exit.restype = None
            self.fd_scope = lib.timeglass_fd_scope
            self.fd_scope.argtypes = [ctypes.c_int, _u64, ctypes.c_int]
            self.fd_scope.restype = None
        # ABI 4: scope_begin(fd, host, port) -> token ties the scope to the
        # request's socket; scope_adopt(frame, token) -> handle and
        # scope_release(handle) make a child task's coroutine frame a root
        # of the request; mark_scope(kind, token, text) names the request of
        # a scope.
        self._mark_scope = self.scope_begin = self.scope_adopt = self.scope_release = None
        if version >= 4:
            self.scope_begin = lib.timeglass_scope_begin
            self.scope_begin.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            self.scope_begin.restype = _u64
            self._mark_scope = lib.timeglass_mark_scope
            self._mark_scope.argtypes = [ctypes.c_int, _u64, ctypes.c_char_p, ctypes.c_size_t]
            self._mark_scope.restype = ctypes.c_int
            self.scope_adopt = lib.timeglass_scope_adopt
            self.scope_adopt.argtypes = [ctypes.c_size_t, _u64]
            self.scope_adopt.restype = _u64
            self.scope_release = lib.timeglass_scope_release
            self.scope_release.argtypes = [_u64]
            self.scope_release.restype = None
        # ABI 5's scope_current() serves the C marker, which keeps no
        # context variable; on this path serve_native sets current_token,
        # and a ctypes call to the library would cost more than it (the task
        # factory asks for every task).
        self.scope_current = None

    def active(self):
        """True while this process is registered with a collector."""
        return self._active() == 1

    def mark(self, kind, host, port, text):
        """Names the wire request of client host:port in flight here. Returns 0 or -1."""
        data = text.encode("utf-8", "replace")[:TEXT_MAX]
        return self._mark(kind, _host(host), port or 0, data, len(data))

    def mark_scope(self, kind, token, text):
        """Names the request of scope token. Returns 0 or -1."""
        if self._mark_scope is None or not token:
            return -1
        data = text.encode("utf-8", "replace")[:TEXT_MAX]
        return self._mark_scope(kind, token, data, len(data))

    def asgi_request(self, method, target, route, status, start_ns, end_ns,
                     request_bytes, response_bytes, host, port, error):
        """Records a request served without a socket. Times: time.monotonic_ns()."""
        return self._asgi(method.encode("latin-1", "replace"), target.encode("latin-1", "replace"),
                          route.encode("utf-8", "replace") if route else None,
                          status or 0, start_ns, max(end_ns, start_ns),
                          request_bytes, response_bytes, _host(host), port or 0, error)


class FastNative:
    """The same interface as Native, served by the _speedups extension.

    fast.request(scope, receive, send, owner) is the whole per-request wire
    path of the middleware (see middleware.serve_native)."""

    __slots__ = ("fast", "active", "mark", "mark_scope", "asgi_request", "scope_enter", "scope_exit",
                 "thread_enter", "thread_exit", "fd_scope", "scope_begin", "scope_adopt", "scope_release",
                 "scope_current")

    def __init__(self, speedups, version=ABI_VERSION):
        from .middleware import current_token, slow_route, report_error, marked_exception, new_loop

        speedups.configure(slow_route, report_error, current_token)
        if hasattr(speedups, "configure_marker"):
            speedups.configure_marker(marked_exception, new_loop, asyncio._get_running_loop)
        self.fast = speedups
        self.active = speedups.active
        self.mark = speedups.mark
        self.asgi_request = speedups.asgi_request
        self.scope_enter = self.scope_exit = self.thread_enter = self.thread_exit = None
        self.fd_scope = self.mark_scope = self.scope_begin = None
        self.scope_adopt = self.scope_release = None  # the C task factory adopts by itself
        if version >= 2:
            self.scope_enter = speedups.scope_enter
            self.scope_exit = speedups.scope_exit
            self.thread_enter = speedups.thread_enter
            self.thread_exit = speedups.thread_exit
            self.fd_scope = speedups.fd_scope
        else:
            self.fast = None  # its request path needs request scopes
        if version >= 4:
            self.mark_scope = speedups.mark_scope
            self.scope_begin = speedups.scope_begin
        self.scope_current = speedups.scope_current if version >= 5 else None


def speedups():
    """The _speedups extension module, or None (not built for this Python,
    or turned off with TIMEGLASS_NO_SPEEDUPS=1). The file of this
    interpreter's own ABI comes first, then the stable ABI's."""
    if _env.flag("TIMEGLASS_NO_SPEEDUPS"):
        return None
    name = __package__ + "._speedups"
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        from . import _speedups
        return _speedups
    except ImportError:
        pass
    where = os.environ.get("TIMEGLASS_PYEXT_DIR")
    if not where:
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:  # its own ABI, then abi3
        path = os.path.join(where, "_speedups" + suffix)
        if os.path.isfile(path):
            try:
                loader = importlib.machinery.ExtensionFileLoader(name, path)
                spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
            except (ImportError, OSError):
                return None
            sys.modules[name] = module
            return module
    return None


def _host(host):
    return host.encode("ascii", "replace") if host else None


def load():
    """The library's marker functions if it is loaded with our ABI, else None."""
    fast = speedups()
    if fast is not None:
        abi = fast.load()
        return FastNative(fast, min(abi, ABI_VERSION)) if abi >= 1 else None
    try:
        lib = ctypes.CDLL(None)
        version = lib.timeglass_abi_version
    except (OSError, AttributeError):
        return None
    version.argtypes = []
    version.restype = ctypes.c_int
    abi = version()
    if abi < 1:
        return None
    try:
        return Native(lib, min(abi, ABI_VERSION))
    except AttributeError:
        return None


_UNKNOWN = object()
_native = _UNKNOWN


def native():
    """The Native binding when this process is recorded by a collector, else None.

    Decided once per process: a fork child registers anew, so it asks again.
    """
    global _native
    if _native is _UNKNOWN:
        lib = load()
        _native = lib if lib is not None and lib.active() else None
    return _native


def _forget():
    global _native
    _native = _UNKNOWN


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)
