"""FastAPI app whose endpoints spend their time in known functions, for the
stack sampler tests (tests/stacks)."""
import asyncio
import threading
import time

from fastapi import APIRouter, Depends, FastAPI, HTTPException

app = FastAPI()


def burn(seconds):
    """Spins on the CPU for about `seconds`."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for _ in range(200):
            x += 1
    return x


def hot_seventy(total):
    return burn(total * 0.7)


def cold_thirty(total):
    return burn(total * 0.3)


@app.get("/split")
async def split(ms: int = 300):
    """70% of the CPU in hot_seventy, 30% in cold_thirty."""
    total = ms / 1000.0
    hot_seventy(total)
    cold_thirty(total)
    return {"ok": True}


def make_endpoint(i):
    # Each endpoint's own function, with a distinct name, spinning in
    # slices and yielding to the event loop in between so that requests
    # interleave on the loop.
    import asyncio

    ns = {}
    exec(
        f"def work_{i}(s):\n"
        f"    return burn(s)\n",
        {"burn": burn},
        ns,
    )
    work = ns[f"work_{i}"]

    async def endpoint(ms: int = 200):
        total = ms / 1000.0
        slices = 10
        for _ in range(slices):
            work(total / slices)
            await asyncio.sleep(0)
        return {"endpoint": i}

    endpoint.__name__ = f"endpoint_{i}"
    app.add_api_route(f"/ep/{i}", endpoint, methods=["GET"])


for _i in range(20):
    make_endpoint(_i)


# A module whose file name is not valid text (a lone surrogate, as Python
# decodes an undecodable byte of a path) and whose functions have names
# beyond ASCII: Latin-1, two-byte and four-byte characters.
_odd_ns = {"burn": burn}
exec(compile("def r\u00e9sum\u00e9_\u0444\u043e\u0440\u043c\u0430(s):\n"
             "    return burn(s)\n"
             "def han_\U00020bb7(s):\n"
             "    return burn(s)\n",
             "/srv/reports/odd_\udcff_name.py", "exec"), _odd_ns)


@app.get("/odd-names")
async def odd_names(ms: int = 300):
    total = ms / 1000.0
    _odd_ns["r\u00e9sum\u00e9_\u0444\u043e\u0440\u043c\u0430"](total / 2)
    _odd_ns["han_\U00020bb7"](total / 2)
    return {"ok": True}


def pool_work(total):
    return burn(total)


@app.get("/pool")
def pool(ms: int = 200):
    """A sync endpoint: runs in the threadpool."""
    pool_work(ms / 1000.0)
    return {"ok": True}


def deep(n, total):
    if n == 0:
        return burn(total)
    return deep(n - 1, total)


@app.get("/recursion")
async def recursion(depth: int = 500, ms: int = 200):
    deep(depth, ms / 1000.0)
    return {"depth": depth}


def numbers(end_time):
    while time.thread_time() < end_time:
        for i in range(100):
            yield i


def gen_consume(total):
    s = 0
    for v in numbers(time.thread_time() + total):
        s += v
    return s


@app.get("/generators")
async def generators(ms: int = 200):
    gen_consume(ms / 1000.0)
    return {"ok": True}


class AppError(Exception):
    pass


def raiser(i):
    raise AppError(i)


def exc_loop(total):
    end = time.thread_time() + total
    n = 0
    while time.thread_time() < end:
        try:
            raiser(n)
        except AppError:
            n += 1
    return n


@app.get("/exceptions")
async def exceptions(ms: int = 200):
    exc_loop(ms / 1000.0)
    return {"ok": True}


def refresh_price_cache(delay, seconds):
    """A job that waits, then computes without any I/O: a timer's work."""
    time.sleep(delay)
    return burn(seconds)


@app.get("/cache/refresh")
def schedule_cache_refresh(delay_ms: int = 500, ms: int = 300):
    threading.Thread(target=refresh_price_cache, args=(delay_ms / 1000.0, ms / 1000.0), daemon=True).start()
    return {"scheduled": True}


@app.get("/sleep")
async def sleep(ms: int = 200):
    import asyncio

    await asyncio.sleep(ms / 1000.0)
    return {"ok": True}


def compress_loop(total):
    """zlib.compress of a large buffer, repeatedly: time spent in libz."""
    import os
    import zlib

    data = os.urandom(1 << 16) * 16
    end = time.thread_time() + total
    n = 0
    while time.thread_time() < end:
        n += len(zlib.compress(data, 6))
    return n


def pbkdf2_loop(total):
    """hashlib.pbkdf2_hmac: time spent in libcrypto."""
    import hashlib

    end = time.thread_time() + total
    while time.thread_time() < end:
        hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 20000)


@app.get("/native")
async def native(ms: int = 300):
    compress_loop(ms / 2000.0)
    pbkdf2_loop(ms / 2000.0)
    return {"ok": True}


# ---- a router whose endpoint fans its work out to child tasks ----------

reports = APIRouter(prefix="/reports")


class ReportQuery:
    """Query parameters of every report: how many partitions, and the CPU
    time of each (ms)."""

    def __init__(self, parts: int = 4, ms: int = 60):
        self.parts = parts
        self.seconds = ms / 1000.0


def tally_sales(seconds):
    return burn(seconds)


def tally_stock(seconds):
    return burn(seconds)


def tally_returns(seconds):
    return burn(seconds)


TALLIES = {"sales": tally_sales, "stock": tally_stock, "returns": tally_returns}


async def crunch_partition(tally, seconds, chunks=10):
    """One partition of a report: `seconds` of CPU in `tally`, in chunks,
    yielding to the loop in between so that the partitions interleave."""
    for _ in range(chunks):
        tally(seconds / chunks)
        await asyncio.sleep(0)


@reports.get("/{kind}")
async def report(kind: str, fanout: str = "gather", q: ReportQuery = Depends()):
    """The report's partitions, each in a child task: started by
    asyncio.gather, asyncio.create_task or an asyncio.TaskGroup."""
    tally = TALLIES.get(kind)
    if tally is None:
        raise HTTPException(404, "no such report")
    if fanout == "gather":
        await asyncio.gather(*(crunch_partition(tally, q.seconds) for _ in range(q.parts)))
    elif fanout == "tasks":
        tasks = [asyncio.create_task(crunch_partition(tally, q.seconds)) for _ in range(q.parts)]
        for task in tasks:
            await task
    else:
        async with asyncio.TaskGroup() as group:
            for _ in range(q.parts):
                group.create_task(crunch_partition(tally, q.seconds))
    return {"kind": kind, "parts": q.parts}


app.include_router(reports)
