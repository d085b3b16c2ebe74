"""The marker for applications that did not add TimeGlassMiddleware.

The bootstrap of `timeglass run` (bootstrap/sitecustomize.py) calls
`patch_errors_module()` when `starlette.middleware.errors` is imported. From
then on every ServerErrorMiddleware, the outermost layer of each Starlette or
FastAPI application, wraps the application inside it in a marker
(`_speedups.Marker` when the C extension loads, which serves an HTTP request
on a socket in C and hands everything else to `BootstrapMarker`):
the place where an application's own first middleware would sit, so route
marks are sent before the router runs and exception marks before the 500 is
written. The marker only acts while the preload library records this
process; it never writes the store itself. A request that an outer layer
already marks (a mounted sub-application, or an application's own
TimeGlassMiddleware further in) is marked once; inside a mounted
sub-application the marker only marks the exception that leaves it, before
the sub-application's ServerErrorMiddleware writes the 500 (see
middleware.serve_nested).
"""

import contextvars
import functools
import sys


# The middleware and the library's bindings (ctypes, asyncio) are imported
# when the first application is built (marker()) or a patched function
# first runs, not when Starlette is imported: a process that imports
# FastAPI without serving does not pay for them. Until then _native and
# scope_token stand in, and load the real ones on their first use.


def _load():
    global _native, SCOPE_KEY, scope_token, serve_native, serve_nested
    from . import _native
    from .middleware import SCOPE_KEY, scope_token, serve_native, serve_nested


class _NativeOnFirstUse:
    def __getattr__(self, name):
        _load()
        return getattr(_native, name)


_native = _NativeOnFirstUse()


def scope_token():
    _load()
    return scope_token()


class BootstrapMarker:
    """ASGI wrapper: route and exception marks, in-process request records."""

    def __init__(self, app):
        _load()
        self.app = app

    def __call__(self, scope, receive, send):
        # Returns the awaitable to run rather than awaiting it in a coroutine
        # of its own: one frame less per request. Only ServerErrorMiddleware
        # calls it, and it awaits what it gets.
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            native = _native.native()
            if native is not None:
                if SCOPE_KEY not in scope:
                    return serve_native(self.app, scope, receive, send, native)
                if kind == "http":
                    return serve_nested(self.app, scope, receive, send, native)
        return self.app(scope, receive, send)


def marker(app):
    """The marker around app: _speedups.Marker, which serves the common
    case (an HTTP request on a socket while the library records) in C and
    hands the rest to a BootstrapMarker, else a BootstrapMarker."""
    fast = _native.speedups()
    if fast is not None and hasattr(fast, "marker"):
        return fast.marker(app, BootstrapMarker(app))
    return BootstrapMarker(app)


def patch_errors_module(module):
    """Makes module.ServerErrorMiddleware wrap its application in BootstrapMarker."""
    cls = module.ServerErrorMiddleware
    if cls.__dict__.get("_timeglass_patched"):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, app, *args, **kwargs):
        original(self, marker(app), *args, **kwargs)

    cls.__init__ = __init__
    cls._timeglass_patched = True
    patch_threadpool()
    when_imported("concurrent.futures.thread", patch_executor)
    when_imported("asyncpg.connection", patch_asyncpg)
    when_imported("aiohttp.client_reqrep", patch_aiohttp)
    when_imported("psycopg2", patch_psycopg2)
    when_imported("psycopg2.extras", patch_psycopg2_extras)


def patch_threadpool():
    """Makes anyio.to_thread.run_sync (Starlette's run_in_threadpool, so every
    sync FastAPI endpoint and dependency) run its function under the scope
    token of the request that called it, so that the queries and outbound
    calls of the worker thread belong to that request."""
    try:
        import anyio.to_thread as to_thread
    except ImportError:
        return
    original = to_thread.run_sync
    if getattr(original, "_timeglass_patched", False):
        return

    @functools.wraps(original)
    async def run_sync(func, *args, **kwargs):
        token = scope_token()
        if token:
            native = _native.native()
            if native is not None and native.thread_enter is not None:
                func = _in_scope(func, token, native.thread_enter, native.thread_exit)
        return await original(func, *args, **kwargs)

    run_sync._timeglass_patched = True
    to_thread.run_sync = run_sync


def _in_scope(func, token, enter, leave):
    def call(*args, **kwargs):
        enter(token)
        try:
            return func(*args, **kwargs)
        finally:
            leave()
    return call


def patch_executor(module):
    """Makes ThreadPoolExecutor.submit (loop.run_in_executor, asyncio.to_thread)
    run its function under the scope token of the request that submitted it."""
    cls = getattr(module, "ThreadPoolExecutor", None)
    if cls is None or cls.__dict__.get("_timeglass_patched"):
        return
    original = cls.submit

    @functools.wraps(original)
    def submit(self, fn, /, *args, **kwargs):
        token = scope_token()
        if token:
            native = _native.native()
            if native is not None and native.thread_enter is not None:
                fn = _in_scope(fn, token, native.thread_enter, native.thread_exit)
        return original(self, fn, *args, **kwargs)

    cls.submit = submit
    cls._timeglass_patched = True


# asyncpg hands its bytes to the event loop's transport; uvloop writes them
# later, from the loop rather than from the request's task, where the
# library cannot tell which request they belong to. Around each operation
# on a connection the driver runs for a request, tell the library which
# request and call site own the connection's socket.
# Prepared statements (conn.prepare: fetch, fetchrow, fetchval, executemany)
# and cursors (iteration, fetch, forward) talk to the protocol directly,
# not through the Connection's methods; transaction blocks run
# Connection.execute.
_ASYNCPG_METHODS = ("execute", "_get_statement", "_executemany", "_Connection__execute", "_copy_out",
                    "_copy_in", "copy_records_to_table")
_ASYNCPG_OTHER = (("asyncpg.prepared_stmt", "PreparedStatement", ("_PreparedStatement__do_execute",)),
                  ("asyncpg.cursor", "BaseCursor", ("_bind_exec", "_bind", "_exec")),
                  ("asyncpg.cursor", "Cursor", ("forward",)))


def patch_asyncpg(module):
    cls = getattr(module, "Connection", None)
    if cls is None or cls.__dict__.get("_timeglass_patched"):
        return
    for name in _ASYNCPG_METHODS:
        method = cls.__dict__.get(name)
        if method is not None:
            setattr(cls, name, _bound_to_request(method))
    cls._timeglass_patched = True
    # asyncpg.connection imports these first.
    for modname, clsname, names in _ASYNCPG_OTHER:
        other = getattr(sys.modules.get(modname), clsname, None)
        if other is None or other.__dict__.get("_timeglass_patched"):
            continue
        for name in names:
            method = other.__dict__.get(name)
            if method is not None:
                setattr(other, name, _bound_to_request(method, _connection_of))
        other._timeglass_patched = True


def _connection_of(obj):
    return obj._connection


_in_operation = contextvars.ContextVar("timeglass_asyncpg_op", default=False)


def _bound_to_request(method, connection=None):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        if _in_operation.get():  # an outer operation (fetch -> prepare) has bound it
            return await method(self, *args, **kwargs)
        native = _native.native()
        fd = -1
        if native is not None and native.fd_scope is not None:
            try:
                conn = self if connection is None else connection(self)
                fd = conn._transport.get_extra_info("socket").fileno()
            except Exception:
                fd = -1
        if fd < 0:
            return await method(self, *args, **kwargs)
        native.fd_scope(fd, scope_token(), 1)
        outer = _in_operation.set(True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            _in_operation.reset(outer)
            native.fd_scope(fd, 0, 0)
    return wrapper


# aiohttp's client writes through the event loop's transport as well: bind
# the connection's socket from the request being sent until its response
# has started (the bytes are on the wire by then).
_aiohttp_fd = contextvars.ContextVar("timeglass_aiohttp_fd", default=-1)


def patch_aiohttp(module):
    req_cls = getattr(module, "ClientRequest", None)
    resp_cls = getattr(module, "ClientResponse", None)
    if req_cls is None or resp_cls is None or req_cls.__dict__.get("_timeglass_patched"):
        return
    send, start = req_cls.__dict__.get("send"), resp_cls.__dict__.get("start")
    if send is None or start is None:
        return

    @functools.wraps(send)
    async def send_bound(self, conn, *args, **kwargs):
        native = _native.native()
        fd = -1
        if native is not None and native.fd_scope is not None:
            try:
                fd = conn.transport.get_extra_info("socket").fileno()
            except Exception:
                fd = -1
        if fd < 0:
            return await send(self, conn, *args, **kwargs)
        native.fd_scope(fd, scope_token(), 1)
        try:
            resp = await send(self, conn, *args, **kwargs)
        except BaseException:
            native.fd_scope(fd, 0, 0)
            raise
        _aiohttp_fd.set(fd)
        return resp

    @functools.wraps(start)
    async def start_bound(self, *args, **kwargs):
        fd = _aiohttp_fd.get()
        try:
            return await start(self, *args, **kwargs)
        finally:
            if fd >= 0:
                _aiohttp_fd.set(-1)
                native = _native.native()
                if native is not None and native.fd_scope is not None:
                    native.fd_scope(fd, 0, 0)

    req_cls.send = send_bound
    resp_cls.start = start_bound
    req_cls._timeglass_patched = True


# psycopg2's executemany() runs its statement once per parameter set, each a
# round trip of its own that the library's libpq taps see as one query:
# nothing there tells them from a loop of the application's. Around each
# executemany(), tell the library that they are one call (one query with
# its executions, not an N+1). psycopg2's cursor type cannot be changed, so
# connections made by psycopg2.connect() without a cursor factory get a
# subclass of it whose executemany() does so; the cursor classes of
# psycopg2.extras are patched in place.
_batch_fn = None


def _batch():
    """timeglass_batch(on) of the library, or None."""
    global _batch_fn
    if _batch_fn is None:
        fn = False
        try:
            import ctypes
            fn = ctypes.CDLL(None).timeglass_batch
            fn.argtypes = [ctypes.c_int]
            fn.restype = None
        except (OSError, AttributeError):
            fn = False
        _batch_fn = fn
    return _batch_fn or None


def _batched(method):
    @functools.wraps(method)
    def executemany(self, *args, **kwargs):
        batch = _batch() if _native.native() is not None else None
        if batch is None:
            return method(self, *args, **kwargs)
        batch(1)
        try:
            return method(self, *args, **kwargs)
        finally:
            batch(0)
    executemany._timeglass_patched = True
    return executemany


def patch_psycopg2(module):
    connect = getattr(module, "connect", None)
    base = getattr(getattr(module, "extensions", None), "cursor", None)
    if connect is None or base is None or getattr(connect, "_timeglass_patched", False):
        return

    class cursor(base):
        __slots__ = ()
        executemany = _batched(base.executemany)

    cursor.__module__ = base.__module__
    cursor.__qualname__ = base.__qualname__

    @functools.wraps(connect)
    def connect_batched(*args, **kwargs):
        conn = connect(*args, **kwargs)
        try:
            if conn.cursor_factory is None:
                conn.cursor_factory = cursor
        except Exception:
            pass
        return conn

    connect_batched._timeglass_patched = True
    module.connect = connect_batched


def patch_psycopg2_extras(module):
    base = getattr(sys.modules.get("psycopg2.extensions"), "cursor", None)
    if base is None:
        return
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base) and c is not base]
    for cls in sorted(classes, key=lambda c: len(c.__mro__)):  # bases first
        if cls.executemany is base.executemany:
            try:
                cls.executemany = _batched(base.executemany)
            except TypeError:
                pass


class _AfterImport:
    """Meta path finder: runs fn(module) once `name` has been imported."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, fn = spec.loader, self.fn

        class Loader:
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                module.__loader__ = loader
                loader.exec_module(module)
                try:
                    fn(module)
                except Exception:  # the application must run regardless
                    pass
        spec.loader = Loader()
        return spec


def when_imported(name, fn):
    """Calls fn(module) now if `name` is imported, else right after its import."""
    module = sys.modules.get(name)
    if module is not None:
        fn(module)
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, fn))
