"""Articles: a list (route path ""), one by slug, a feed whose authors are
loaded concurrently (asyncio.gather), comments loaded in a TaskGroup, and
the N+1 a real project ships by mistake."""
import asyncio

from fastapi import APIRouter, Depends, HTTPException

from .. import deps
from ... import db
from ...sqlcomment import tag

router = APIRouter()


async def _profile(author_id):
    # Each concurrent lookup takes its own connection from the pool.
    async with db.pool.acquire() as conn:
        return dict(await conn.fetchrow(tag("SELECT id, username, bio FROM users WHERE id = $1"), author_id))


@router.get("")
async def list_articles(limit: int = 10, conn=Depends(deps.get_conn)):
    rows = await conn.fetch(tag("SELECT slug, title, author_id FROM articles ORDER BY id LIMIT $1"), limit)
    return {"articles": [dict(r) for r in rows], "articlesCount": len(rows)}


@router.get("/feed")
async def feed(conn=Depends(deps.get_conn)):
    rows = await conn.fetch(tag("SELECT slug, title, author_id FROM articles ORDER BY id DESC LIMIT 5"))
    authors = await asyncio.gather(*(_profile(r["author_id"]) for r in rows))
    return {"articles": [dict(r, author=a) for r, a in zip(rows, authors)]}


@router.get("/with-authors")
async def with_authors(conn=Depends(deps.get_conn)):
    """The N+1: one query per article for its author, on one connection."""
    rows = await conn.fetch(tag("SELECT slug, author_id FROM articles ORDER BY id LIMIT 8"))
    out = []
    for r in rows:
        a = await conn.fetchrow(tag("SELECT username FROM users WHERE id = $1"), r["author_id"])
        out.append({"slug": r["slug"], "author": a["username"]})
    return out


@router.get("/{slug}")
async def get_article(slug: str, conn=Depends(deps.get_conn)):
    row = await conn.fetchrow(tag("SELECT id, slug, title, body, author_id FROM articles WHERE slug = $1"), slug)
    if row is None:
        raise HTTPException(status_code=404, detail="no such article")
    return dict(row)


@router.get("/{slug}/comments")
async def comments(slug: str, conn=Depends(deps.get_conn)):
    art = await conn.fetchrow(tag("SELECT id FROM articles WHERE slug = $1"), slug)
    if art is None:
        raise HTTPException(status_code=404, detail="no such article")
    results = {}

    async def load(kind, sql):
        async with db.pool.acquire() as c:
            results[kind] = [dict(r) for r in await c.fetch(tag(sql), art["id"])]

    async with asyncio.TaskGroup() as tg:
        tg.create_task(load("comments", "SELECT id, body FROM comments WHERE article_id = $1 ORDER BY id"))
        tg.create_task(load("count", "SELECT count(*) AS n FROM comments WHERE article_id = $1"))
    return results


@router.post("/{slug}/favorite")
async def favorite(slug: str, user=Depends(deps.require_user), conn=Depends(deps.get_conn)):
    async with conn.transaction():
        art = await conn.fetchrow(tag("SELECT id FROM articles WHERE slug = $1 FOR UPDATE"), slug)
        if art is None:
            raise HTTPException(status_code=404, detail="no such article")
        await conn.execute(tag("UPDATE articles SET favorites = favorites + 1 WHERE id = $1"), art["id"])
    return {"favorited": slug}
