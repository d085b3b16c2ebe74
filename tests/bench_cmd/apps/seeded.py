"""A FastAPI app with bugs seeded on purpose, for `timeglass bench` tests.

Each buggy route has one bug of a kind the probe must find; the clean
routes have none and must get no finding:

  GET  /ratio            500 on denominator 0, a value the schema allows
  POST /greet            500 on a non-ASCII name (encoded as ASCII)
  POST /orders           500 when the optional field `note` is left out
  POST /accept           2xx for a body the documented schema forbids
  GET  /profile/{uid}    a 2xx body that breaks its documented schema
  GET  /teapot           a status (418) the OpenAPI does not list

  GET /clean/items/{item_id}, GET /clean/search, POST /clean/items: clean.

Works with pydantic 1 and 2 (FastAPI 0.92 on Debian 12 and later).
"""

from typing import List, Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

app = FastAPI(title="seeded")


class Ratio(BaseModel):
    value: float


@app.get("/ratio", response_model=Ratio)
async def ratio(num: int = Query(..., ge=-1000, le=1000), den: int = Query(..., ge=-1000, le=1000)):
    return {"value": num / den}          # bug: den=0 is allowed


class Greeting(BaseModel):
    name: str = Field(..., max_length=100)


@app.post("/greet")
async def greet(g: Greeting):
    return {"hello": g.name.encode("ascii").decode()}   # bug: non-ASCII


class Order(BaseModel):
    item: str = Field(..., max_length=50)
    qty: int = Field(..., ge=1, le=100)
    note: Optional[str] = None


@app.post("/orders", status_code=201)
async def orders(o: Order):
    return {"item": o.item, "qty": o.qty, "note": o.note.strip()}   # bug: note may be None


ACCEPT_SCHEMA = {
    "type": "object",
    "required": ["email", "age"],
    "properties": {
        "email": {"type": "string", "format": "email", "example": "a@example.com"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150, "example": 30},
    },
}


@app.post("/accept", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": ACCEPT_SCHEMA}}}})
async def accept(request: Request):
    try:
        await request.json()
    except ValueError:
        raise HTTPException(status_code=400, detail="not JSON")
    return {"ok": True}                  # bug: no validation against the schema


class Profile(BaseModel):
    uid: int
    name: str
    email: str


@app.get("/profile/{uid}", response_model=None, responses={200: {"model": Profile}})
async def profile(uid: int):
    return JSONResponse({"uid": uid, "name": 42})   # bug: name is a number, email missing


@app.get("/teapot")
async def teapot():
    return JSONResponse({"tea": True}, status_code=418)   # bug: 418 is not documented


class Item(BaseModel):
    name: str = Field(..., min_length=1, max_length=40)
    price: float = Field(..., gt=0, le=10000)
    tags: List[str] = []


ITEMS = {1: {"id": 1, "name": "one", "price": 1.5, "tags": []}}


@app.get("/clean/items/{item_id}")
async def clean_get(item_id: int = Field(..., ge=1)):
    return ITEMS.get(item_id, {"id": item_id, "name": "any", "price": 1.0, "tags": []})


@app.get("/clean/search")
async def clean_search(q: str = Query("", max_length=50), limit: int = Query(10, ge=1, le=100)):
    return {"q": q, "limit": limit, "results": []}


@app.post("/clean/items", status_code=201)
async def clean_post(item: Item):
    return {"name": item.name, "price": item.price, "tags": item.tags}
