"""A workload that makes the stack sampler race with the interpreter:
threads that recurse 500 deep and unwind, raise and catch in loops, drive
generators and coroutines, and threads that start and exit all the time (so
thread states are freed while the sampler walks the list).

usage: racing.py SECONDS [STOPFILE]

Runs SECONDS at most; with STOPFILE, stops as soon as that file exists (the
test creates it once the store holds the samples it wants, so that a busy
machine gets a longer run instead of fewer samples)."""
import asyncio
import os
import sys
import threading
import time

END = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 5)
STOPFILE = sys.argv[2] if len(sys.argv) > 2 else None
_stopped = False


def running():
    """True until the time is up or the stop file appears."""
    global _stopped
    if _stopped or time.monotonic() >= END or (STOPFILE and os.path.exists(STOPFILE)):
        _stopped = True
        return False
    return True


def deep(n, hold=0):
    """Recursion n deep; at the bottom, `hold` loop turns of work, so that
    the deepest stacks last long enough to be sampled too."""
    if n == 0:
        return sum(range(hold))
    return 1 + deep(n - 1, hold)


def recursing():
    while running():
        for d in (10, 100, 500, 3, 250):
            deep(d, 2000 if d == 500 else 0)


class Boom(Exception):
    pass


def thrower(n):
    if n:
        return thrower(n - 1)
    raise Boom()


def raising():
    while running():
        try:
            thrower(20)
        except Boom:
            pass


def gen(n):
    for i in range(n):
        yield i
        yield from sub(i % 5)


def sub(k):
    for j in range(k):
        yield j


def generating():
    while running():
        sum(gen(200))


async def leaf(i):
    await asyncio.sleep(0)
    return deep(i % 50)


async def coro_main():
    while running():
        await asyncio.gather(*(leaf(i) for i in range(50)))


def churning():
    while running():
        ts = [threading.Thread(target=deep, args=(i * 20,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


workers = [threading.Thread(target=f) for f in (recursing, raising, generating, churning, recursing, raising)]
for w in workers:
    w.start()
asyncio.run(coro_main())
for w in workers:
    w.join()
print("racing: done")
