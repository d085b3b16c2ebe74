"""Profiles, with the path parameter typed by a convertor."""
from fastapi import APIRouter, Depends, HTTPException

from .. import deps
from ...sqlcomment import tag

router = APIRouter()


@router.get("/{user_id:int}")
async def profile(user_id: int, conn=Depends(deps.get_conn)):
    row = await conn.fetchrow(tag("SELECT id, username, bio FROM users WHERE id = $1"), user_id)
    if row is None:
        raise HTTPException(status_code=404, detail="no such user")
    return dict(row)


@router.get("/{user_id:int}/report")
async def report(user_id: int, conn=Depends(deps.get_conn)):
    """A bug on purpose: the 500 TimeGlass must record with its exception."""
    row = await conn.fetchrow(tag("SELECT count(*) AS n FROM articles WHERE author_id = $1"), user_id)
    return {"per_article": 100 // (row["n"] - row["n"])}
