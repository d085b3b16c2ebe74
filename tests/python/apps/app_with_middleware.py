"""A FastAPI application that adds TimeGlassMiddleware: one endpoint per
behaviour the middleware must leave alone (streaming, background tasks,
websockets, lifespan) or record right (path templates, mounts, 500s).

TG_TEST_EVENTS names a file where lifespan and background-task events are
appended, so the tests can see they ran.
"""

import asyncio
import os

from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from timeglass import TimeGlassMiddleware

EVENTS = os.environ.get("TG_TEST_EVENTS")


def note(text):
    if EVENTS:
        with open(EVENTS, "a") as f:
            f.write(text + "\n")


app = FastAPI()
app.add_middleware(TimeGlassMiddleware)


@app.on_event("startup")
async def startup():
    note("startup")


@app.on_event("shutdown")
async def shutdown():
    note("shutdown")


@app.get("/items/{item_id}")
async def get_item(item_id: int, q: str = ""):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def post_item(request: Request):
    body = await request.body()
    return {"received": len(body)}


@app.get("/sync/{name}")
def sync_endpoint(name: str):
    return {"name": name}


@app.get("/boom/{kind}")
async def boom(kind: str):
    raise ValueError("boom: %s" % kind)


@app.get("/stream")
async def stream(chunks: int = 5):
    async def body():
        for i in range(chunks):
            await asyncio.sleep(0.01)
            yield b"chunk %d\n" % i
    return StreamingResponse(body(), media_type="text/plain")


@app.get("/background")
async def background(tasks: BackgroundTasks):
    tasks.add_task(note, "background done")
    return {"scheduled": True}


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close()
            return
        await websocket.send_text("echo " + text)


async def plain(request):
    return PlainTextResponse("plain " + request.path_params["name"])


app.router.routes.append(Mount("/sub", routes=[Route("/plain/{name}", plain)]))
