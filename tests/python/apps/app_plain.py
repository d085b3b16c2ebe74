"""The same kind of application without TimeGlassMiddleware: under
`timeglass run` the bootstrap has to mark its requests by itself."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/items/{item_id}")
async def get_item(item_id: int):
    return {"item_id": item_id}


@app.get("/boom")
async def boom():
    raise RuntimeError("plain boom")
