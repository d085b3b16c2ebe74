"""TimeGlass for Python: the ASGI middleware and the helpers around it.

`app.add_middleware(TimeGlassMiddleware)` is all an application needs. Under
`timeglass run` the middleware tells the preload library which route served
each request (and the exception behind a 500); run plainly (`uvicorn main:app`)
it records request rows into the SQLite store itself, so `timeglass ui` works
either way.
"""

from ._version import __version__
from .middleware import TimeGlassMiddleware, flush

__all__ = ["TimeGlassMiddleware", "flush", "__version__"]
