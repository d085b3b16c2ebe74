"""TimeGlass for Python: the ASGI middleware and the helpers around it.

`app.add_middleware(TimeGlassMiddleware)` is all an application needs. Under
`timeglass run` the middleware tells the preload library which route served
each request (and the exception behind a 500); run plainly (`uvicorn main:app`)
it records request rows into the SQLite store itself, so `timeglass ui` works
either way.
"""

import sys

from ._version import __version__

__all__ = ["TimeGlassMiddleware", "flush", "__version__"]


def __getattr__(name):
    # The middleware (ctypes, asyncio) is imported on first use, so that
    # the bootstrap of `timeglass run` can import this package in every
    # Python process without paying for it.
    if name in ("TimeGlassMiddleware", "flush", "middleware"):
        # not "from . import middleware": that asks this function again
        __import__(__name__ + ".middleware")
        middleware = sys.modules[__name__ + ".middleware"]
        return middleware if name == "middleware" else getattr(middleware, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def __dir__():
    return sorted(set(globals()) | {"TimeGlassMiddleware", "flush", "middleware"})
