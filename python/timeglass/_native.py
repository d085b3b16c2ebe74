"""The marker ABI of libtimeglass.so (preload/marker.c), reached through ctypes.

Under `timeglass run` the preload library sits in the process's global symbol
scope, so `ctypes.CDLL(None)` finds its exported functions without knowing
where the file is. `native()` answers, once per process, whether this process
is being recorded by a collector; when it is not (no library, an ABI this
package does not speak, or a library that is loaded but not registered), the
middleware runs standalone and writes the store itself.
"""

import ctypes
import os

ABI_VERSION = 2  # newest marker ABI this package speaks; 1 has no request scopes

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

    __slots__ = ("_mark", "_asgi", "_active", "scope_enter", "scope_exit", "thread_enter",
                 "thread_exit", "fd_scope")

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

    def active(self):
        """True while this process is registered with a collector."""
        return self._active() == 1

    def mark(self, kind, host, port, text):
        """Names the wire request of client host:port in flight here. Returns 0 or -1."""
        data = text.encode("utf-8", "replace")[:TEXT_MAX]
        return self._mark(kind, _host(host), port or 0, data, len(data))

    def asgi_request(self, method, target, route, status, start_ns, end_ns,
                     request_bytes, response_bytes, host, port, error):
        """Records a request served without a socket. Times: time.monotonic_ns()."""
        return self._asgi(method.encode("latin-1", "replace"), target.encode("latin-1", "replace"),
                          route.encode("utf-8", "replace") if route else None,
                          status or 0, start_ns, max(end_ns, start_ns),
                          request_bytes, response_bytes, _host(host), port or 0, error)


def _host(host):
    return host.encode("ascii", "replace") if host else None


def load():
    """The library's marker functions if it is loaded with our ABI, else None."""
    try:
        lib = ctypes.CDLL(None)
        version = lib.timeglass_abi_version
    except (OSError, AttributeError):
        return None
    version.argtypes = []
    version.restype = ctypes.c_int
    abi = version()
    if not 1 <= abi <= ABI_VERSION:
        return None
    try:
        return Native(lib, abi)
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
