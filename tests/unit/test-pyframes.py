"""Checks the preload library's frame reader (through test-pyframes.so)
against the running interpreter: python3 test-pyframes.py MODULE.so"""
import ctypes
import sys
import threading
import time

lib = ctypes.CDLL(sys.argv[1])  # CDLL: calls release the GIL
lib.tgt_call_site.restype = ctypes.c_size_t
lib.tgt_call_site.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
lib.tgt_stack_of.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
lib.tgt_hammer.argtypes = [ctypes.c_uint32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
lib.tgt_own_stack.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

assert lib.tgt_init() == 0, "interpreter not recognised"
v = lib.tgt_version()
assert v >> 16 == (sys.version_info[0] << 8 | sys.version_info[1]), hex(v)


def depth_here():
    return lib.tgt_depth()


def recurse(n):
    if n == 0:
        return depth_here()
    return recurse(n - 1)


base = depth_here()
assert base >= 1, base
d = recurse(500)
assert d == base + 501, (base, d)

buf = ctypes.create_string_buffer(1024)


def call_site():
    n = lib.tgt_call_site(buf, 1024)
    return buf.value.decode()


cs = call_site()  # line of the call in call_site()
assert cs.startswith(__file__ + ":") and cs.endswith(" call_site"), cs
line = int(cs.split(":")[1].split()[0])
assert line == call_site.__code__.co_firstlineno + 1, (cs, call_site.__code__.co_firstlineno)

# The calling thread's own stack as the SQL taps walk it, frame by frame,
# against what the interpreter says: recursion, a generator, a coroutine
# driven by hand, a nested function and a method.
obuf = ctypes.create_string_buffer(1 << 20)


def own_stack():
    n = lib.tgt_own_stack(obuf, len(obuf))
    got = obuf.value.decode().split(";")[:-1]
    f, want = sys._getframe(), []
    while f is not None:
        want.append(f"{f.f_code.co_qualname}:{f.f_lineno}")
        f = f.f_back
    assert n == len(got), (n, got)
    return got, want


def own_recurse(n):
    if n == 0:
        return own_stack()
    return own_recurse(n - 1)


def own_gen():
    yield own_stack()


async def own_coro():
    def nested():
        return own_stack()
    return nested()


class Own:
    def method(self):
        return own_recurse(40)


checks = [own_recurse(0), own_recurse(300), next(own_gen()), Own().method()]
try:
    own_coro().send(None)
except StopIteration as e:
    checks.append(e.value)
for got, want in checks:
    # own_stack's own line differs (the walk ran on the line of the call,
    # the interpreter's frame is now past it): compare from its caller.
    assert got[0].startswith("own_stack:"), got[:3]
    assert got[1:] == want[1:], (got[:6], want[:6])

# Another thread, read from here while it spins in known functions.
stop = False
ready = threading.Event()


class Worker:
    def spin_inner(self):
        ready.set()
        x = 0
        while not stop:
            x += 1
        return x

    def spin(self):
        return self.spin_inner()


def gen_frames():
    for i in range(10**9):
        yield i
        if stop:
            return


def gen_consumer():
    for _ in gen_frames():
        pass


def exc_heavy():
    while not stop:
        try:
            raise ValueError("x")
        except ValueError:
            pass


t = threading.Thread(target=Worker().spin)
t.start()
ready.wait()
time.sleep(0.05)
sbuf = ctypes.create_string_buffer(65536)
n = lib.tgt_stack_of(t.native_id, sbuf, 65536)
s = sbuf.value.decode()
assert n >= 3 and s.startswith("Worker.spin_inner:") and "Worker.spin:" in s, (n, s)
stop = True
t.join()

# Racing: stacks that change as fast as they can, read a lot.
stop = False
for target in (gen_consumer, exc_heavy, lambda: recurse(300)):
    stop = False
    t = threading.Thread(target=lambda: [target() for _ in iter(lambda: stop, True)])
    t.start()
    dropped = ctypes.c_int(0)
    ok = lib.tgt_hammer(t.native_id, 20000, ctypes.byref(dropped))
    stop = True
    t.join()
    assert ok > 0, (target, ok, dropped.value)
    print(f"{getattr(target, '__name__', 'recurse')}: {ok} consistent, {dropped.value} dropped")
print("ok", hex(v), "base depth", base)
