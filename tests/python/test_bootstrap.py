"""The bootstrap that `timeglass run` puts on PYTHONPATH
(python/timeglass/bootstrap/sitecustomize.py): it chain-loads the
sitecustomize it hides, costs next to nothing at start-up, and patches
Starlette only when asked to (TIMEGLASS_SOCK set, TIMEGLASS_NO_BOOTSTRAP not)."""

import os
import subprocess
import time

from tgpy import APPS, BOOTSTRAP, PYTHON, PYTHON_SRC, child_env

PATCHED = ("import starlette.middleware.errors as m; "
           "print(bool(m.ServerErrorMiddleware.__dict__.get('_timeglass_patched')))")


def run_python(code, env, cwd=None):
    proc = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), proc.stderr


def other_sitecustomize(tmp_path):
    site = tmp_path / "othersite"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nos.environ['TG_CHAINED'] = 'yes:' + __name__\n")
    return site


def bootstrap_env(extra_paths=(), package=True, **extra):
    env = child_env(extra)
    paths = [str(BOOTSTRAP)] + [str(p) for p in extra_paths]
    if package:
        paths += [str(PYTHON_SRC), str(APPS)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def test_chain_loads_the_next_sitecustomize(tmp_path):
    site = other_sitecustomize(tmp_path)
    code = "import os, sitecustomize; print(os.environ.get('TG_CHAINED'), sitecustomize.__file__)"
    for extra in ({}, {"TIMEGLASS_SOCK": str(tmp_path / "no-collector.sock")}):
        out, _ = run_python(code, bootstrap_env([site], **extra))
        chained, module_file = out.split()
        assert chained == "yes:sitecustomize"
        assert module_file == str(site / "sitecustomize.py")


def test_without_another_sitecustomize(tmp_path):
    out, err = run_python("import sys; print(sys.flags.no_site)", bootstrap_env())
    assert out == "0" and "timeglass" not in err


def test_imports_nothing_heavy_at_start_up(tmp_path):
    env = bootstrap_env(TIMEGLASS_SOCK=str(tmp_path / "x.sock"))
    out, _ = run_python("import sys; print(sorted(m for m in sys.modules "
                        "if m.split('.')[0] in ('starlette', 'fastapi', 'timeglass', 'ctypes', "
                        "'sqlite3', 'asyncio')))", env)
    assert out == "[]"


def test_patches_starlette_only_under_timeglass_run(tmp_path):
    sock = str(tmp_path / "x.sock")
    assert run_python(PATCHED, bootstrap_env(TIMEGLASS_SOCK=sock))[0] == "True"
    assert run_python(PATCHED, bootstrap_env())[0] == "False"
    assert run_python(PATCHED, bootstrap_env(TIMEGLASS_SOCK=sock, TIMEGLASS_NO_BOOTSTRAP="1"))[0] == "False"


def test_finds_its_own_package_when_the_environment_has_none(tmp_path):
    env = bootstrap_env(package=False, TIMEGLASS_SOCK=str(tmp_path / "x.sock"))
    out, _ = run_python(PATCHED + "; import timeglass; print(timeglass.__file__)", env, cwd=str(tmp_path))
    patched, package = out.split()
    assert patched == "True"
    assert package == str(PYTHON_SRC / "timeglass" / "__init__.py")


def test_patched_app_without_collector_is_untouched(tmp_path):
    """Patched, but the library is not recording: requests pass straight
    through and nothing is written anywhere."""
    code = (
        "from fastapi.testclient import TestClient\n"
        "import app_plain\n"
        "c = TestClient(app_plain.app, raise_server_exceptions=False)\n"
        "print(c.get('/items/3').json()['item_id'], c.get('/boom').status_code)\n")
    env = bootstrap_env(TIMEGLASS_SOCK=str(tmp_path / "x.sock"))
    out, err = run_python(code, env, cwd=str(tmp_path))
    assert out == "3 500"
    assert not (tmp_path / ".timeglass").exists()
    assert "timeglass" not in err


def test_start_up_cost(tmp_path):
    """Interpreter start-up with and without the bootstrap: the bootstrap
    imports nothing heavy. Compared on the children's CPU time, which a
    machine busy with other work does not inflate the way it does wall
    time (bench/startup measures the wall time)."""
    import resource

    def best(env, n=5):
        times = []
        for _ in range(n):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([PYTHON, "-c", "pass"], env=env, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return min(times)

    plain = best(child_env())
    with_bootstrap = best(bootstrap_env(TIMEGLASS_SOCK=str(tmp_path / "x.sock")))
    print("\nstart-up CPU: %.1f ms plain, %.1f ms with the bootstrap"
          % (plain * 1000, with_bootstrap * 1000))
    assert with_bootstrap < plain + 0.02  # the bootstrap's own cost is a few ms
