"""A router- and mount-heavy FastAPI app for `timeglass bench`: routes of
nested routers with prefixes, a mounted sub-application, and one seeded bug
deep inside (GET /api/v2/shop/carts/{cart_id} fails with 500 on cart_id 0)."""

from fastapi import APIRouter, FastAPI, Query

app = FastAPI(title="routers")
api = APIRouter(prefix="/api")
v2 = APIRouter(prefix="/v2")
shop = APIRouter(prefix="/shop", tags=["shop"])


@shop.get("/carts/{cart_id}")
async def cart(cart_id: int):
    return {"cart": cart_id, "share": 100 // cart_id}   # bug: cart_id 0


@shop.get("/products")
async def products(page: int = Query(1, ge=1, le=50)):
    return {"page": page, "products": []}


v2.include_router(shop)
api.include_router(v2)
app.include_router(api)

admin = FastAPI(title="admin")


@admin.get("/health")
async def health():
    return {"ok": True}


app.mount("/admin", admin)


@app.get("/")
async def root():
    return {"app": "routers"}
