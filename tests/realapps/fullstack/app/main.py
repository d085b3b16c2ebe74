"""The application: CORS, a pure ASGI middleware that sets the request id,
the API under /api/v1."""
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from .api.main import api_router
from .context import request_id
from .core import API_V1_STR


class RequestIdMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = dict(scope["headers"]).get(b"x-request-id", b"-").decode()
        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send)
        finally:
            request_id.reset(token)


app = FastAPI(title="Full Stack FastAPI Project", openapi_url=f"{API_V1_STR}/openapi.json")
app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:5173"], allow_credentials=True,
                   allow_methods=["*"], allow_headers=["*"])
app.add_middleware(RequestIdMiddleware)
app.include_router(api_router, prefix=API_V1_STR)
