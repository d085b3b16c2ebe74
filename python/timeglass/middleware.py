"""TimeGlassMiddleware: a pure ASGI middleware that names requests for TimeGlass.

What it does depends on where the application runs:

* under `timeglass run` (the preload library is loaded and recording), a
  request that came over a socket is already being recorded from the wire;
  the middleware only tells the library its route template (when the
  response starts, or when the application gives up) and, if the application
  raises, the exception text; the collector joins both to the wire request
  (one row, never two). A websocket handshake gets its route mark too. A
  request served in-process (FastAPI's TestClient, httpx's ASGITransport)
  never touches a socket, so the middleware reports the whole request to the
  library (transport "asgi").
* run plainly (`uvicorn main:app`), it records request rows into the SQLite
  store itself (see _recorder.py), so `timeglass ui` works the same. Byte
  counts are body bytes; the 500 that ServerErrorMiddleware writes after an
  exception passes outside this middleware, so its bytes are not counted.

The route template is the full path of the route the router chose, with
every mount path and router prefix and without the application's root_path
("/api/v1/items/{item_id}"): it is read from what the routers left in the
scope, and found by matching where the scope does not tell (see _routes.py).

HTTP messages pass through unchanged and unbuffered (streaming responses and
background tasks behave as without it); websocket and lifespan messages are
not touched (lifespan shutdown only flushes the queued rows). Nothing the middleware does on its own
account can fail a request: its errors cost one log warning.

When the bootstrap of `timeglass run` has already marked a request (it wraps
every Starlette application, see _autopatch.py), an application's own
TimeGlassMiddleware lets the request through, and only marks an exception
that leaves it (see serve_nested): the same goes for the marker of a mounted
sub-application, whose own ServerErrorMiddleware writes the 500 before the
exception reaches the outer marker.
"""

import asyncio
import contextvars
import ctypes
import logging
import os
import threading
import time
import types

from . import _env, _native, _routes

# _recorder and _store (sqlite3, a writer thread) serve standalone recording
# only: imported when it first runs, not by a process under `timeglass run`.
from ._text import exception_text, redact_query

SCOPE_KEY = "timeglass"  # set in the scope of a request that is already being marked
EXC_KEY = "timeglass.exception"  # the exception an inner marker marked (see serve_nested)

# Scope token of the request this task serves (0: none), as set by the
# Python marker (serve_native); worker threads started for it get the token
# through scope_token() (see _autopatch.py). The C marker (_speedups.Marker)
# leaves it unset: the library finds the request from the stack.
current_token = contextvars.ContextVar("timeglass_scope", default=0)


def scope_token():
    """The scope token of the request the calling code runs for (0: none):
    current_token, else what the library finds on the stack (the request's
    root frame, a child task's or the worker thread's request)."""
    token = current_token.get()
    if not token:
        native = _native.native()
        if native is not None and native.scope_current is not None:
            token = native.scope_current()
    return token

FLAG_HEAD = 0x01  # TG_REQF_HEAD (common/event.h)
FLAG_ASGI = 0x80  # TG_REQF_ASGI: served in-process, no socket

# Modules whose `receive` callables belong to in-process transports, and to
# servers that listen on real sockets.
_IN_PROCESS = ("starlette.testclient", "httpx.", "async_asgi_testclient", "asgi_lifespan")
_SERVERS = ("uvicorn.", "hypercorn.", "daphne.", "granian", "gunicorn.")

_ERR_CLIENT_CLOSED = "client closed before response"
_ERR_CLOSED_MID_RESPONSE = "connection closed mid-response"

log = logging.getLogger("timeglass")
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_native_id = threading.get_native_id


class TimeGlassMiddleware:
    """ASGI middleware: `app.add_middleware(TimeGlassMiddleware)`.

    db: store path for standalone recording (default TIMEGLASS_DB, else
    .timeglass/timeglass.db in the working directory). enabled: False turns
    standalone recording off (default: on unless TIMEGLASS_DISABLE=1).
    """

    def __init__(self, app, db=None, enabled=None):
        self.app = app
        self._db = db
        if enabled is None:
            enabled = not _env.flag("TIMEGLASS_DISABLE")
        self._enabled = enabled
        self._recorder = None

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if SCOPE_KEY in scope and kind == "http":
            # An outer marker serves the request: only its exception is
            # marked here (see serve_nested).
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                _mark_nested(scope, exc)
                raise
            return
        if SCOPE_KEY in scope or (kind != "http" and kind != "websocket"):
            if kind == "lifespan" and self._enabled and _native.native() is None:
                send = self._lifespan_send(send)
            await self.app(scope, receive, send)
            return
        native = _native.native()
        if native is not None:
            await serve_native(self.app, scope, receive, send, native)
        elif kind == "http" and self._enabled:
            await serve_standalone(self.app, scope, receive, send, self._store())
        else:
            await self.app(scope, receive, send)

    def _store(self):
        from . import _recorder, _store

        rec = self._recorder
        if rec is None or rec is not _recorder.recorder(rec.path):  # new after fork
            path = os.path.abspath(self._db or _store.default_path())
            rec = self._recorder = _recorder.recorder(path)
        return rec

    def _lifespan_send(self, send):
        async def lifespan_send(message):
            if message.get("type") == "lifespan.shutdown.complete":
                from . import _recorder

                _quietly(_recorder.flush_all, True)
            await send(message)
        return lifespan_send


def flush(final=False):
    """Writes every row the middleware has queued (standalone mode) now."""
    from . import _recorder

    _recorder.flush_all(final)


def _quietly(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # never let bookkeeping fail a request
        _warn_once("timeglass: internal error (%s: %s); recording may be incomplete"
                   % (type(e).__name__, e))
        return None


_warned = False


def _warn_once(message):
    global _warned
    if not _warned:
        _warned = True
        log.warning(message)


_transport_of = {}  # receive.__module__ -> True (in-process), False (socket), None (unknown)


def in_process(scope, receive):
    """True when the request was not read from a socket (a test client)."""
    module = getattr(receive, "__module__", None) or ""
    known = _transport_of.get(module, 0)
    if known == 0:
        known = True if module.startswith(_IN_PROCESS) else False if module.startswith(_SERVERS) else None
        _transport_of[module] = known
    if known is not None:
        return known
    client = scope.get("client")
    if not client or not client[0]:
        return scope.get("server") is None
    host = client[0]
    return not (host[0].isdigit() or ":" in host)  # "testclient" is not an address


def _client(scope):
    client = scope.get("client")
    if client:
        return client[0], client[1] or 0
    return None, 0


# What _speedups calls, with (scope, path0, root0, owner), when its
# fast_route() (the start of _routes.template) found no template; it hands
# the errors to report_error().
slow_route = _routes.after_routing


def marked_exception(scope, exc, token):
    """The exception mark of a request that _speedups.Marker serves (once:
    not when an inner marker already marked exc)."""
    if scope.pop(EXC_KEY, None) is not exc:
        native = _native.native()
        if native is not None:
            _quietly(_mark, native, _native.MARK_EXCEPTION, scope, exception_text(exc), token)


def new_loop():
    """_speedups.Marker met a running loop it had not seen: the task factory
    for it (see _adopt_child_tasks)."""
    if _get_running_loop() is not _adopting_loop:
        native = _native.native()
        if native is not None:
            _quietly(_adopt_child_tasks, native)


def report_error(e):
    """An internal error of _speedups: one warning, like _quietly."""
    _warn_once("timeglass: internal error (%s: %s); recording may be incomplete"
               % (type(e).__name__, e))


class _Exchange:
    """One HTTP exchange: watches its messages (status, byte counts, phase
    times), finds its route template, and sends the route mark when the
    response starts if `native` is set."""

    __slots__ = ("scope", "_receive", "_send", "_owner", "_path0", "_root0", "native", "route",
                 "routed", "marked", "status", "req_end", "resp_start", "resp_end",
                 "req_bytes", "resp_bytes", "disconnected")

    def __init__(self, scope, receive, send, owner, native=None):
        self.scope = scope
        self._receive = receive
        self._send = send
        self._owner = owner if owner is not None else scope.get("app")
        self._path0 = scope.get("path")  # the router may rewrite both (mounts)
        self._root0 = scope.get("root_path", "")
        self.native = native
        self.route = None
        self.routed = self.marked = False
        self.status = 0
        self.req_end = self.resp_start = self.resp_end = 0
        self.req_bytes = self.resp_bytes = 0
        self.disconnected = False

    async def receive(self):
        message = await self._receive()
        kind = message.get("type")
        if kind == "http.request":
            self.req_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.req_end = _monotonic_ns()
        elif kind == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message):
        kind = message.get("type")
        if kind == "http.response.start":
            self.status = message.get("status", 0)
            self.resp_start = _monotonic_ns()
            if self.native is not None and not self.marked:
                _quietly(self.mark_route)
        elif kind == "http.response.body":
            self.resp_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.resp_end = _monotonic_ns()
        await self._send(message)

    def route_template(self):
        """The route's template ("/items/{item_id}"), or None (no route)."""
        if not self.routed:
            self.routed = True
            self.route = _quietly(_routes.template, self.scope, self._path0, self._root0, self._owner)
        return self.route

    def mark_route(self):
        self.marked = True
        route = self.route_template()
        if route:
            _mark(self.native, _native.MARK_ROUTE, self.scope, route)

    def mark_exception(self, exc):
        _mark(self.native, _native.MARK_EXCEPTION, self.scope, exception_text(exc))

    def outcome(self, failed):
        """(status, error) once the application has returned or raised."""
        if self.resp_end:
            return self.status, None
        if self.disconnected:
            return self.status or None, _ERR_CLOSED_MID_RESPONSE if self.resp_start else _ERR_CLIENT_CLOSED
        if self.resp_start:
            return self.status, _ERR_CLOSED_MID_RESPONSE if failed else None
        return 500, None  # the server (or ServerErrorMiddleware) answers 500


async def serve_native(app, scope, receive, send, native, owner=None):
    """Serves one http/websocket request while the preload library records.

    owner: the Starlette application whose routes apply (default scope["app"]).
    """
    scope[SCOPE_KEY] = True
    if _get_running_loop() is not _adopting_loop:
        _quietly(_adopt_child_tasks, native)
    fast = native.fast
    if fast is not None and scope["type"] == "http" and not in_process(scope, receive):
        # The same as the ctypes path below (scope, route mark when the
        # response starts or the application returns), in C: `req` is the
        # application's send. The scope's root is this coroutine frame.
        req = fast.request(scope, receive, send, owner)
        try:
            await app(scope, receive, req)
        except Exception as exc:
            req.done()
            if scope.pop(EXC_KEY, None) is not exc:
                _quietly(_mark, native, _native.MARK_EXCEPTION, scope, exception_text(exc), req.token)
            raise
        else:
            req.done()
        finally:
            req.close()
        return
    local = in_process(scope, receive)
    enter = native.scope_enter
    if enter is None:  # a library without request scopes
        token = 0
    else:
        # The request's scope: queries and outbound calls made from this
        # task (this coroutine frame is its root), from the tasks it starts
        # and from worker threads it hands the token to (see _autopatch.py)
        # belong to this request. The request's socket ties the scope to
        # its wire request whatever client address the app was given.
        host, port = _client(scope)
        host = host.encode("ascii", "replace") if host else None
        if native.scope_begin is not None:
            token = native.scope_begin(-1 if local else _conn_fd(receive), host, port or 0)
        else:
            token = enter(host, port or 0)
        reset = current_token.set(token)
    try:
        if scope["type"] != "http":
            await _serve_websocket(app, scope, receive, send, native, owner)
        elif local:
            await _serve_in_process(app, scope, receive, send, native, owner)
        else:
            await _serve_wire(app, scope, receive, send, native, owner)
    finally:
        if token:
            native.scope_exit(token)
            current_token.reset(reset)


def _mark(native, kind, scope, text, token=None):
    """A route or exception mark for the request of `scope`: by its scope
    token (the current one by default) when the library takes it, else by
    the client address the app was given."""
    if token is None:
        token = current_token.get() or scope_token()
    if token and native.mark_scope is not None:
        native.mark_scope(kind, token, text)
    else:
        host, port = _client(scope)
        native.mark(kind, host, port, text)


def _conn_fd(receive):
    """The socket fd of the request's connection, from the server's receive
    callable (uvicorn's is a method of an object whose `transport` is the
    connection's); -1 when it cannot be told."""
    try:
        return receive.__self__.transport.get_extra_info("socket").fileno()
    except Exception:
        return -1


# ---- child tasks --------------------------------------------------------
#
# A task started inside a request (asyncio.gather, create_task, a TaskGroup)
# runs on a copy of the request's context, but in a coroutine of its own,
# outside the request's frames: the library would not know whose it is. The
# running loop gets a task factory (wrapping any it had) that registers each
# such task's coroutine frame as a root of the request's scope until the
# task is done (timeglass._speedups.TaskFactory; _TaskFactory below through
# ctypes).

_get_running_loop = asyncio._get_running_loop
_adopting_loop = None  # the loop last given the task factory
_CoroutineType = types.CoroutineType
_frame_offset = None  # bytes from a coroutine object to its interpreter frame, 0: unknown


def _adopt_child_tasks(native):
    global _adopting_loop
    loop = _get_running_loop()
    _adopting_loop = loop
    if loop is None:
        return
    current = loop.get_task_factory()
    fast = native.fast
    if isinstance(current, _TaskFactory) or (fast is not None and isinstance(current, fast.TaskFactory)):
        return
    if fast is not None:
        loop.set_task_factory(fast.task_factory(current, asyncio.Task))
    elif native.scope_adopt is not None:
        loop.set_task_factory(_TaskFactory(current, native))


def _coro_frame(coro):
    """The address of coro's interpreter frame (inside the coroutine object,
    3.11+), measured once through its frame object; 0 if unknown."""
    global _frame_offset
    if _frame_offset is None:
        _frame_offset = 0
        frame = coro.cr_frame
        if frame is not None:
            # struct _frame: PyObject_HEAD, f_back, f_frame.
            at = id(frame) + object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
            iframe = ctypes.c_void_p.from_address(at).value or 0
            if 0 < iframe - id(coro) < type(coro).__basicsize__:
                _frame_offset = iframe - id(coro)
    return id(coro) + _frame_offset if _frame_offset else 0


class _TaskFactory:
    """The task factory through ctypes: what the inner factory (or
    asyncio.Task) makes, adopted by the current request's scope."""

    __slots__ = ("inner", "_native")

    def __init__(self, inner, native):
        self.inner = inner
        self._native = native

    def __call__(self, loop, coro, **kwargs):
        if self.inner is not None:
            task = self.inner(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        token = current_token.get()  # this factory serves the ctypes path, which sets it
        if token and type(coro) is _CoroutineType:
            _quietly(self._adopt, task, coro, token)
        return task

    def _adopt(self, task, coro, token):
        if task.done():  # an eager task that already ran
            return
        frame = _coro_frame(coro)
        handle = self._native.scope_adopt(frame, token) if frame else 0
        if handle:
            release = self._native.scope_release

            def done(_task, coro=coro):  # holds coro: its address stays its own
                release(handle)
            task.add_done_callback(done)


async def serve_nested(app, scope, receive, send, native):
    """Serves an HTTP request that an outer marker already serves (the
    application is mounted in another, or a marker is already outside it),
    and marks the exception that leaves app.

    The mark must come before the 500: the ServerErrorMiddleware around app
    (a mounted application has its own) writes it and only then re-raises
    the exception to the outer marker, which would be too late to join it to
    the request. The outer marker does not mark it again (and takes it out
    of the scope, which would otherwise hold the exception, its traceback
    and so itself).
    """
    try:
        await app(scope, receive, send)
    except Exception as exc:
        _mark_nested(scope, exc, native)
        raise


def _mark_nested(scope, exc, native=None):
    if native is None:
        native = _native.native()
        if native is None:  # standalone: the outer middleware records it
            return
    if scope.get(EXC_KEY) is not exc:
        scope[EXC_KEY] = exc
        _quietly(_mark, native, _native.MARK_EXCEPTION, scope, exception_text(exc))


async def _serve_wire(app, scope, receive, send, native, owner):
    ex = _Exchange(scope, receive, send, owner, native)
    try:
        await app(scope, receive, ex.send)
    except Exception as exc:
        if not ex.marked:
            _quietly(ex.mark_route)
        if scope.pop(EXC_KEY, None) is not exc:
            _quietly(ex.mark_exception, exc)
        raise
    if not ex.marked:  # no response yet: the server answers for the app
        _quietly(ex.mark_route)


async def _serve_websocket(app, scope, receive, send, native, owner):
    # The handshake is an HTTP request in flight until the app accepts it:
    # name it now, then leave the connection alone.
    if not in_process(scope, receive):
        route = _quietly(_routes.route_template, scope, owner)
        if route:
            _quietly(_mark, native, _native.MARK_ROUTE, scope, route)
    await app(scope, receive, send)


async def _serve_exchange(app, ex, report, *args):
    """Serves one request through ex (an _Exchange), then calls
    report(*args, ex, start, failed) quietly: start is the monotonic time it
    began, failed the exception the app raised (else None)."""
    start = _monotonic_ns()
    failed = None
    try:
        await app(ex.scope, ex.receive, ex.send)
    except Exception as exc:
        failed = exc
        raise
    finally:
        _quietly(report, *args, ex, start, failed)


def _serve_in_process(app, scope, receive, send, native, owner):
    # Returns the coroutine: no frame of its own between the request's root and the app.
    return _serve_exchange(app, _Exchange(scope, receive, send, owner), _report_in_process, native)


def _report_in_process(native, ex, start, failed):
    end = ex.resp_end or _monotonic_ns()
    scope = ex.scope
    host, port = _client(scope)
    if failed is not None and scope.pop(EXC_KEY, None) is not failed:
        _mark(native, _native.MARK_EXCEPTION, scope, exception_text(failed))
    status, error = ex.outcome(failed is not None)
    code = _native.REQ_OK
    if error == _ERR_CLIENT_CLOSED:
        code = _native.REQ_CLIENT_CLOSED_BEFORE_RESPONSE
    elif error == _ERR_CLOSED_MID_RESPONSE:
        code = _native.REQ_CLOSED_MID_RESPONSE
    native.asgi_request(scope.get("method", ""), _target(scope), ex.route_template(), status,
                        start, end, ex.req_bytes, ex.resp_bytes, host, port, code)


def _path(scope):
    """The request path as sent (percent-encoded), without the query."""
    raw = scope.get("raw_path")
    if not raw:
        return scope.get("path", "")
    if b"?" in raw:  # some test clients include the query
        raw = raw.split(b"?", 1)[0]
    return raw.decode("latin-1")


def _target(scope):
    path = _path(scope)
    query = scope.get("query_string")
    return path + "?" + query.decode("latin-1") if query else path


def serve_standalone(app, scope, receive, send, recorder):
    """Serves one HTTP request and queues its row for the store (returns the
    coroutine to await)."""
    scope[SCOPE_KEY] = True
    return _serve_exchange(app, _Exchange(scope, receive, send, None), _record, recorder, receive, _native_id(),
                           _time_ns())


def _record(recorder, receive, tid, start_unix, ex, start, failed):
    end = ex.resp_end or _monotonic_ns()
    scope = ex.scope
    status, error = ex.outcome(failed is not None)
    method = scope.get("method")
    query = scope.get("query_string")
    local = in_process(scope, receive)
    flags = (FLAG_HEAD if method == "HEAD" else 0) | (FLAG_ASGI if local else 0)
    recorder.add((
        tid, start_unix, end - start,
        ex.req_end - start if ex.req_end else None,
        ex.resp_start - start if ex.resp_start else None,
        method, _path(scope), redact_query(query.decode("latin-1")) if query else None,
        ex.route_template(),
        "HTTP/" + scope.get("http_version", "1.1"),
        status, ex.req_bytes, ex.resp_bytes, _client_addr(scope), error, flags,
        "asgi" if local else "http",
        exception_text(failed) if failed is not None else None,
    ))


def _client_addr(scope):
    client = scope.get("client")
    if not client:
        return None
    host, port = client[0], client[1]
    return ("[%s]:%s" if ":" in host else "%s:%s") % (host, port)
