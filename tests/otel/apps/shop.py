"""A small shop API for the OpenTelemetry export tests (tests/otel).

Laid out like a real service: routers with prefixes (/api/v1 + /orders,
/catalog), a dependency that opens a PostgreSQL session (psycopg2, so the
libpq taps see it) per request and commits it, sync endpoints that run in
the threadpool, an async one on SQLite, an outbound HTTP call and failures.

  GET  /api/v1/orders/{order_id}           the order, its items and one
                                           product query per item (an N+1)
  POST /api/v1/orders                      {"customer", "total"} -> {"id"}
  GET  /api/v1/orders/{order_id}/broken    a query on a missing table: 500
  GET  /api/v1/orders/{order_id}/shipping  asks the rates service (SHOP_RATES)
  GET  /api/v1/catalog/{item_id}           SQLite (SHOP_CATALOG)
  GET  /api/v1/fail                        raises ValueError: 500

Configuration: SHOP_DSN (libpq), SHOP_CATALOG (SQLite file), SHOP_RATES
(base URL of an HTTP service).
"""

import os
import sqlite3
import urllib.request

import psycopg2
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel

DSN = os.environ.get("SHOP_DSN", "")
CATALOG = os.environ.get("SHOP_CATALOG", "")
RATES = os.environ.get("SHOP_RATES", "")


def get_session():
    conn = psycopg2.connect(DSN)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


class NewOrder(BaseModel):
    customer: str
    total: float


orders = APIRouter(prefix="/orders", tags=["orders"])


@orders.get("/{order_id}")
def read_order(order_id: int, db=Depends(get_session)):
    cur = db.cursor()
    cur.execute("SELECT id, customer, total FROM orders WHERE id = %s", (order_id,))
    row = cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such order")
    cur.execute("SELECT product_id, qty FROM order_items WHERE order_id = %s ORDER BY product_id", (order_id,))
    items = []
    for product_id, qty in cur.fetchall():
        cur.execute("SELECT name, price FROM products WHERE id = %s", (product_id,))
        name, price = cur.fetchone()
        items.append({"product": name, "qty": qty, "price": float(price)})
    return {"id": row[0], "customer": row[1], "total": float(row[2]), "items": items}


@orders.post("", status_code=201)
def create_order(order: NewOrder, db=Depends(get_session)):
    cur = db.cursor()
    cur.execute("INSERT INTO orders (customer, total) VALUES (%s, %s) RETURNING id", (order.customer, order.total))
    return {"id": cur.fetchone()[0]}


@orders.get("/{order_id}/broken")
def broken(order_id: int, db=Depends(get_session)):
    cur = db.cursor()
    cur.execute("SELECT * FROM no_such_table WHERE id = %s", (order_id,))
    return cur.fetchall()


@orders.get("/{order_id}/shipping")
def shipping(order_id: int):
    with urllib.request.urlopen("%s/rates?order=%d" % (RATES, order_id), timeout=10) as r:
        return {"order": order_id, "rates": r.read().decode()}


catalog = APIRouter(prefix="/catalog", tags=["catalog"])


@catalog.get("/{item_id}")
async def catalog_item(item_id: int):
    with sqlite3.connect(CATALOG) as conn:
        row = conn.execute("SELECT id, name FROM catalog WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": row[0], "name": row[1]}


api = APIRouter(prefix="/api/v1")
api.include_router(orders)
api.include_router(catalog)


@api.get("/fail")
def fail():
    raise ValueError("payment gateway said no")


app = FastAPI()
app.include_router(api)
