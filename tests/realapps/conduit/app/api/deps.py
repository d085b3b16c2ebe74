"""Dependencies: a pooled connection per request, and the current user
(which takes another connection from the pool, as such apps often do)."""
from typing import Optional

from fastapi import Depends, Header, HTTPException

from .. import db
from ..sqlcomment import tag


async def get_conn():
    async with db.pool.acquire() as conn:
        yield conn


async def current_user(authorization: Optional[str] = Header(None)):
    if not authorization or not authorization.startswith("Token "):
        return None
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(tag("SELECT id, username FROM users WHERE token = $1"),
                                  authorization[6:])
    if row is None:
        raise HTTPException(status_code=401, detail="bad token")
    return dict(row)


def require_user(user=Depends(current_user)):
    if user is None:
        raise HTTPException(status_code=401, detail="login required")
    return user
