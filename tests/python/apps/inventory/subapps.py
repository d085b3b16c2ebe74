"""Applications mounted under the main one: a FastAPI sub-application with
its own routers, a legacy Starlette application, a per-tenant application
mounted with a path parameter, and a bare ASGI application."""

from fastapi import APIRouter, FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route


def make_sub(middleware=False):
    sub = FastAPI()
    if middleware:
        from timeglass import TimeGlassMiddleware

        sub.add_middleware(TimeGlassMiddleware)

    @sub.get("/hello/{name}")
    async def hello(name: str):
        return {"hello": name}

    @sub.get("/boom")
    async def sub_boom():
        raise ValueError("sub-app boom")

    v2 = APIRouter(prefix="/v2")

    @v2.get("/things/{thing_id}")
    async def get_thing(thing_id: int):
        return {"thing": thing_id}

    sub.include_router(v2)
    return sub


async def ping(request):
    return PlainTextResponse("pong")


async def legacy_file(request):
    return PlainTextResponse("file " + request.path_params["name"])


async def legacy_broken(request):
    raise LookupError("legacy boom")


def make_legacy():
    return Starlette(routes=[
        Route("/ping", ping),
        Mount("/files", routes=[Route("/{name}", legacy_file)]),
        Route("/broken", legacy_broken),
    ])


def make_tenants():
    tenants = FastAPI()

    @tenants.get("/orders/{order_id}")
    async def get_order(order_id: int, request: Request):
        return {"tenant": request.path_params["tenant"], "order": order_id}

    return tenants


async def raw_app(scope, receive, send):
    """A bare ASGI application (what StaticFiles and the like are)."""
    await JSONResponse({"raw": scope["path"]})(scope, receive, send)
