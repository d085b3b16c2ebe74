"""The marker for applications that did not add TimeGlassMiddleware.

The bootstrap of `timeglass run` (bootstrap/sitecustomize.py) calls
`patch_errors_module()` when `starlette.middleware.errors` is imported. From
then on every ServerErrorMiddleware, the outermost layer of each Starlette or
FastAPI application, wraps the application inside it in `BootstrapMarker`:
the place where an application's own first middleware would sit, so route
marks are sent before the router runs and exception marks before the 500 is
written. The marker only acts while the preload library records this
process; it never writes the store itself. A request that an outer layer
already marks (a mounted sub-application, or an application's own
TimeGlassMiddleware further in) is marked once.
"""

import functools

from . import _native
from .middleware import SCOPE_KEY, serve_native


class BootstrapMarker:
    """ASGI wrapper: route and exception marks, in-process request records."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if SCOPE_KEY not in scope and scope["type"] in ("http", "websocket"):
            native = _native.native()
            if native is not None:
                await serve_native(self.app, scope, receive, send, native)
                return
        await self.app(scope, receive, send)


def patch_errors_module(module):
    """Makes module.ServerErrorMiddleware wrap its application in BootstrapMarker."""
    cls = module.ServerErrorMiddleware
    if cls.__dict__.get("_timeglass_patched"):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, app, *args, **kwargs):
        original(self, BootstrapMarker(app), *args, **kwargs)

    cls.__init__ = __init__
    cls._timeglass_patched = True
