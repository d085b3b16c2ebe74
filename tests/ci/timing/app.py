"""A FastAPI application whose timing `timeglass ci` compares with a
baseline, on a quiet machine and on one loaded by other work.

TIMING_INJECT (comma-separated) slows it down on purpose:
  cpu2x  GET /cpu burns twice the CPU
  sleep  GET /io awaits 50 ms more (time off the CPU: a slower query, a
         slower service)
"""

import asyncio
import os
import time

from fastapi import FastAPI

INJECT = set(filter(None, os.environ.get("TIMING_INJECT", "").split(",")))
CPU_S = 0.008 if "cpu2x" in INJECT else 0.004
EXTRA_SLEEP_S = 0.05 if "sleep" in INJECT else 0

app = FastAPI()


def burn(seconds):
    """Spins for `seconds` of this thread's CPU time (not wall time)."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


@app.get("/cpu")
async def cpu():
    return {"spins": burn(CPU_S)}


@app.get("/io")
async def io():
    await asyncio.sleep(0.005)
    if EXTRA_SLEEP_S:
        await asyncio.sleep(EXTRA_SLEEP_S)
    return {"spins": burn(0.001)}
