"""The application: lifespan opens the pools, an HTTP middleware (Starlette's
BaseHTTPMiddleware, which runs the rest of the app in a task of its own)
sets the request id, the API is included under /api/v1, the admin app is
mounted at /admin."""
import inspect
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from . import config, db
from .admin import admin
from .api.router import api_router
from .sqlcomment import request_id


@asynccontextmanager
async def lifespan(app):
    await db.open_pools()
    try:
        yield
    finally:
        await db.close_pools()


if "lifespan" in inspect.signature(FastAPI).parameters:
    app = FastAPI(title="Conduit", lifespan=lifespan)
else:  # FastAPI before 0.93
    app = FastAPI(title="Conduit")
    app.router.lifespan_context = lifespan


@app.middleware("http")
async def request_id_middleware(request: Request, call_next):
    token = request_id.set(request.headers.get("x-request-id", "-"))
    try:
        response = await call_next(request)
    finally:
        request_id.reset(token)
    response.headers["X-Request-Id"] = request.headers.get("x-request-id", "-")
    return response


app.include_router(api_router, prefix=config.API_PREFIX)
app.mount("/admin", admin)
