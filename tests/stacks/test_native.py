"""Native frames (`timeglass run --native`): time spent in C code called from
Python shows the library's functions beneath the Python frame that called
them, and the eval loop's own native frames are replaced by Python frames."""
import sqlite3

import pytest

import tgtest
from conftest import Served, folded


def build_has_native():
    """The library loads libunwind (with dlopen) only in builds that have it."""
    return b"libunwind.so" in tgtest.LIBRARY.read_bytes()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not build_has_native():
        pytest.skip("this build has no native unwinding (libunwind, libelf)")
    s = Served(tmp_path_factory.mktemp("native"), 1000, extra_env={"TIMEGLASS_NATIVE": "1"})
    s.drive("/native?ms=800", "/split?ms=200")
    with sqlite3.connect(s.db) as db:
        s.rid = {p: i for i, p in db.execute("SELECT id, path FROM requests ORDER BY id")}
        s.kinds = dict(db.execute("SELECT kind, count(*) FROM frames GROUP BY kind").fetchall())
    return s


def running(run, path):
    return folded(run.flame("--request", str(run.rid[path]), "--state", "running"))


def below(stacks, caller, lib):
    """Samples whose stack has a frame of `caller` with a frame of library
    `lib` deeper in it."""
    n = 0
    for frames, count in stacks:
        names = [f.split(" (")[0] for f in frames]
        if caller not in names:
            continue
        deeper = frames[names.index(caller) + 1:]
        if any("(" + lib in f for f in deeper):
            n += count
    return n


def test_native_frames_stored(run):
    assert run.kinds.get("native", 0) > 0, run.kinds
    assert run.kinds.get("python", 0) > 0, run.kinds


def test_libz_beneath_compress_loop(run):
    stacks = running(run, "/native")
    total = sum(c for _, c in stacks)
    n = below(stacks, "compress_loop", "libz")
    assert n > 0.1 * total, stacks[:10]


def test_libcrypto_beneath_pbkdf2_loop(run):
    # Present, not a share: on a busy machine the thread may not run its
    # handler within the sampler's wait, and the sampler backs off 100 ms.
    stacks = running(run, "/native")
    n = below(stacks, "pbkdf2_loop", "libcrypto")
    assert n > 0, stacks[:10]


def test_eval_loop_replaced_by_python_frames(run):
    """No _PyEval_EvalFrameDefault between Python frames: each was replaced
    by the Python frames it ran; the app's frames keep their order."""
    stacks = running(run, "/split")
    assert stacks
    hot = 0
    for frames, count in stacks:
        names = [f.split(" (")[0] for f in frames]
        assert "_PyEval_EvalFrameDefault" not in names, names
        if "hot_seventy" in names and "burn" in names:
            assert names.index("split") < names.index("hot_seventy") < names.index("burn"), names
            hot += count
    assert hot > 0
