"""A workload that makes the stack sampler race with the interpreter:
threads that recurse 500 deep and unwind, raise and catch in loops, drive
generators and coroutines, and threads that start and exit all the time (so
thread states are freed while the sampler walks the list).

usage: racing.py SECONDS"""
import asyncio
import sys
import threading
import time

END = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 5)


def deep(n):
    return 0 if n == 0 else 1 + deep(n - 1)


def recursing():
    while time.monotonic() < END:
        for d in (10, 100, 500, 3, 250):
            deep(d)


class Boom(Exception):
    pass


def thrower(n):
    if n:
        return thrower(n - 1)
    raise Boom()


def raising():
    while time.monotonic() < END:
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
    while time.monotonic() < END:
        sum(gen(200))


async def leaf(i):
    await asyncio.sleep(0)
    return deep(i % 50)


async def coro_main():
    while time.monotonic() < END:
        await asyncio.gather(*(leaf(i) for i in range(50)))


def churning():
    while time.monotonic() < END:
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
