"""Connection pools: asyncpg for the async routes, psycopg2 for the sync ones
(run in the threadpool), both opened in the lifespan."""
import asyncpg
import psycopg2.pool

from . import config

pool = None        # asyncpg.Pool
sync_pool = None   # psycopg2 ThreadedConnectionPool


def _asyncpg_dsn(dsn):
    """asyncpg takes a URL; the settings give a libpq keyword string."""
    kv = dict(part.split("=", 1) for part in dsn.split())
    return "postgresql://%s:%s@%s:%s/%s" % (kv["user"], kv.get("password", ""), kv["host"], kv["port"],
                                              kv["dbname"])


async def open_pools():
    global pool, sync_pool
    pool = await asyncpg.create_pool(_asyncpg_dsn(config.DATABASE_DSN), min_size=2,
                                     max_size=config.POOL_SIZE, server_settings={"application_name": "conduit"})
    sync_pool = psycopg2.pool.ThreadedConnectionPool(1, 20, config.DATABASE_DSN + " application_name=conduit")


async def close_pools():
    if pool is not None:
        await pool.close()
    if sync_pool is not None:
        sync_pool.closeall()
