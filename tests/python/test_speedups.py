"""timeglass._speedups, the C path to the marker ABI: used under `timeglass run`
when it is built for the interpreter, with the same records as the ctypes
fallback (TIMEGLASS_NO_SPEEDUPS=1, or an interpreter it was not built for).
Needs build/cli/timeglass, build/preload/libtimeglass.so and the extension
in build/python. The same checks run with the stable-ABI build of the same
source (_speedups.abi3.so, what other interpreters than the build's load),
alone in a directory named in TIMEGLASS_PYEXT_DIR."""

import glob
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tgpy import BUILD, PYTHON, child_env, require_c_build, uvicorn_args
from test_under_timeglass_run import record_testclient, requests_of, timeglass_prefix

PROBE = (
    "import timeglass._native as n\n"
    "lib = n.native()\n"
    "print(type(lib).__name__, lib.fast is not None)\n"
)


@pytest.fixture(autouse=True)
def built():
    require_c_build()
    if not glob.glob(str(BUILD / "python" / "_speedups*.so")):
        pytest.skip("timeglass._speedups is not built")


def probe(tmp_path, **extra):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = subprocess.run(timeglass_prefix(tmp_path / "probe.db") + [PYTHON, str(script)],
                          env=child_env(extra, bootstrap=True), capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_timeglass_run_uses_speedups(tmp_path):
    assert probe(tmp_path) == ["FastNative", "True"]


def test_no_speedups_env_falls_back_to_ctypes(tmp_path):
    assert probe(tmp_path, TIMEGLASS_NO_SPEEDUPS="1") == ["Native", "False"]


def test_without_a_library_speedups_load_nothing():
    code = ("import timeglass._native as n\n"
            "sp = n.speedups()\n"
            "assert sp is not None\n"
            "assert sp.load() == 0\n"
            "assert n.native() is None\n")
    env = child_env({"TIMEGLASS_PYEXT_DIR": str(BUILD / "python")})
    proc = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def rows_of(server, tmp_path, app, name, **extra):
    db = tmp_path / (name + ".db")
    with server(uvicorn_args(app), child_env(extra, bootstrap=True), prefix=timeglass_prefix(db)) as s:
        with httpx.Client(base_url=s.url, timeout=10,
                          limits=httpx.Limits(max_keepalive_connections=0)) as c:
            for path in ("/items/1", "/items/2?q=1", "/nowhere", "/boom"):
                c.get(path)
    assert s.proc.returncode == 0, s.output()
    return [(r["method"], r["path"], r["status"], r["transport"], r["route"],
             (r["exception"] or "").split("\n")[0]) for r in requests_of(db)]


@pytest.mark.parametrize("app", ["app_plain:app", "app_with_middleware:app"])
def test_speedups_and_ctypes_give_the_same_rows(server, tmp_path, app):
    fast = rows_of(server, tmp_path, app, "fast")
    slow = rows_of(server, tmp_path, app, "slow", TIMEGLASS_NO_SPEEDUPS="1")
    assert fast == slow
    boom = "/boom" if app.startswith("app_plain") else "/boom/x"
    assert [r[4] for r in fast if r[1] == "/items/1"] == ["/items/{item_id}"]
    assert [r[2] for r in fast if r[1] == "/nowhere"] == [404]
    if app.startswith("app_plain"):
        assert [r[4:] for r in fast if r[1] == boom] == [("/boom", "RuntimeError: plain boom")]


@pytest.mark.parametrize("speedups", ["", "1"])
def test_in_process_requests_either_way(tmp_path, speedups):
    rows = record_testclient(tmp_path, child_env({"TIMEGLASS_NO_SPEEDUPS": speedups}, bootstrap=True))
    assert [(r["method"], r["path"], r["query_string"], r["status"], r["transport"], r["route"])
            for r in rows] == [("GET", "/items/5", "x=1", 200, "asgi", "/items/{item_id}"),
                               ("GET", "/boom", None, 500, "asgi", "/boom")]
    assert rows[1]["exception"].startswith("RuntimeError: plain boom\n")


# ---- the stable-ABI build (_speedups.abi3.so) ------------------------------

# TIMEGLASS_TEST_ABI3 names another build of it, e.g. one made on another
# system for another interpreter (tests/matrix/run.sh: the host's, on 3.14).
ABI3 = Path(os.environ.get("TIMEGLASS_TEST_ABI3") or (BUILD / "python" / "_speedups.abi3.so"))

PROBE_FILE = (
    "import os, timeglass._native as n\n"
    "lib = n.native()\n"
    "print(type(lib).__name__, os.path.basename(lib.fast.__file__) if lib.fast else None)\n"
)


@pytest.fixture
def abi3_dir(tmp_path):
    """A directory holding only the abi3 module, for TIMEGLASS_PYEXT_DIR."""
    if not ABI3.is_file():
        pytest.skip("timeglass._speedups is not built for the stable ABI")
    where = tmp_path / "abi3"
    where.mkdir()
    shutil.copy(ABI3, where / "_speedups.abi3.so")
    return str(where)


def test_abi3_module_loads_by_path(abi3_dir):
    code = ("import importlib.machinery as m, importlib.util as u, sys\n"
            "path = sys.argv[1] + '/_speedups.abi3.so'\n"
            "loader = m.ExtensionFileLoader('timeglass._speedups', path)\n"
            "spec = u.spec_from_file_location('timeglass._speedups', path, loader=loader)\n"
            "sp = u.module_from_spec(spec)\n"
            "loader.exec_module(sp)\n"
            "assert sp.load() == 0\n"
            "assert sp.conn_fd(print) == -1\n"
            "assert sp.scope_current() == 0\n"
            "for t in (sp.Request, sp.Marker, sp.TaskFactory):\n"
            "    assert t.__module__ == 'timeglass._speedups', t.__module__\n"
            "    try:\n"
            "        t()\n"
            "    except TypeError:\n"
            "        pass\n"
            "    else:\n"
            "        raise AssertionError(t)\n"
            "try:\n"
            "    sp.active()\n"
            "except RuntimeError:\n"
            "    pass\n"
            "else:\n"
            "    raise AssertionError('active() without a library')\n"
            "print('ok')\n")
    proc = subprocess.run([PYTHON, "-c", code, abi3_dir], env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok"]


def test_timeglass_run_uses_the_abi3_module(tmp_path, abi3_dir):
    script = tmp_path / "probe_file.py"
    script.write_text(PROBE_FILE)
    proc = subprocess.run(timeglass_prefix(tmp_path / "probe.db") + [PYTHON, str(script)],
                          env=child_env({"TIMEGLASS_PYEXT_DIR": abi3_dir}, bootstrap=True),
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FastNative", "_speedups.abi3.so"]


@pytest.mark.parametrize("app", ["app_plain:app", "app_with_middleware:app"])
def test_abi3_and_ctypes_give_the_same_rows(server, tmp_path, abi3_dir, app):
    fast = rows_of(server, tmp_path, app, "abi3", TIMEGLASS_PYEXT_DIR=abi3_dir)
    slow = rows_of(server, tmp_path, app, "slow", TIMEGLASS_NO_SPEEDUPS="1")
    assert fast == slow
    assert [r[4] for r in fast if r[1] == "/items/1"] == ["/items/{item_id}"]
    assert [r[2] for r in fast if r[1] == "/nowhere"] == [404]
    if app.startswith("app_plain"):
        assert [r[4:] for r in fast if r[1] == "/boom"] == [("/boom", "RuntimeError: plain boom")]


def test_in_process_requests_with_the_abi3_module(tmp_path, abi3_dir):
    rows = record_testclient(tmp_path, child_env({"TIMEGLASS_PYEXT_DIR": abi3_dir}, bootstrap=True))
    assert [(r["method"], r["path"], r["query_string"], r["status"], r["transport"], r["route"])
            for r in rows] == [("GET", "/items/5", "x=1", 200, "asgi", "/items/{item_id}"),
                               ("GET", "/boom", None, 500, "asgi", "/boom")]
    assert rows[1]["exception"].startswith("RuntimeError: plain boom\n")
