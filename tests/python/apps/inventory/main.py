"""The application factory and the applications the tests serve:

    app                 the service
    app_with_middleware the service with TimeGlassMiddleware added (to the
                        main application and to the FastAPI one under /sub)
    app_behind_gateway  the service configured with FastAPI(root_path="/gateway")
"""

from fastapi import FastAPI, WebSocket
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Route, Router

from .api import api
from .subapps import make_legacy, make_sub, make_tenants, raw_app


async def status(request):
    return PlainTextResponse("internal ok")


async def plain(request):
    return PlainTextResponse("plain " + request.path_params["name"])


def create_app(root_path="", middleware=False):
    app = FastAPI(root_path=root_path)
    if middleware:
        from timeglass import TimeGlassMiddleware

        app.add_middleware(TimeGlassMiddleware)

    @app.get("/")
    async def index():
        return {"service": "inventory"}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("main boom")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app.include_router(api)
    app.add_route("/plain/{name}", plain)
    app.router.routes.append(Host("internal.example.test", app=Router(routes=[Route("/status", status)])))
    app.mount("/sub", make_sub(middleware))
    app.mount("/legacy", make_legacy())
    app.mount("/tenants/{tenant}", make_tenants())
    app.mount("/raw", raw_app)
    return app


app = create_app()
app_with_middleware = create_app(middleware=True)
app_behind_gateway = create_app(root_path="/gateway")
