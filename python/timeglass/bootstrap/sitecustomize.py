"""Bootstrap of `timeglass run`: marks Starlette/FastAPI requests with no code change.

`timeglass run` puts this file's directory first on PYTHONPATH, so Python's
`site` imports it at startup. It does a few small things and imports nothing
heavy:

1. when the process runs under `timeglass run` (TIMEGLASS_SOCK is set) and
   TIMEGLASS_NO_BOOTSTRAP is not, it installs an import hook that waits for
   `starlette.middleware.errors`; once that module is loaded, the hook lets
   the timeglass package patch its ServerErrorMiddleware (see
   timeglass/_autopatch.py), so every application gets route and exception
   marks as if it had added TimeGlassMiddleware;
2. the timeglass package is imported from the environment if it is there,
   else from the directory above this one (the copy that came with the
   `timeglass` binary);
3. with `timeglass run --trace` (TIMEGLASS_TRACE=1) it turns on exact-trace
   mode, and with `--sample-mode eval` (or a rate above 2000 Hz) the
   eval-clocked sampler (timeglass/_trace.py);
4. it then runs the next `sitecustomize` on sys.path, if any, as Python would
   have done without this directory.
"""

import os
import sys

_TARGET = "starlette.middleware.errors"
_HERE = os.path.dirname(os.path.realpath(__file__))
_SEEN_KEY = "_timeglass_bootstrap_dirs"  # sys attribute: bootstrap dirs already run


def _flag(name):
    """A flag as timeglass._env reads it (checked by `timeglass run`);
    anything but 1/yes/true/on is off here, before the package is
    imported."""
    return os.environ.get(name, "").lower() in ("1", "yes", "true", "on")


def _wanted():
    if _flag("TIMEGLASS_NO_BOOTSTRAP"):
        return False
    return bool(os.environ.get("TIMEGLASS_SOCK"))


def _timeglass():
    """The timeglass package: the environment's, else the one around this file."""
    try:
        import timeglass
        return timeglass
    except ImportError:
        pass
    import importlib.util

    package = os.path.dirname(_HERE)
    spec = importlib.util.spec_from_file_location(
        "timeglass", os.path.join(package, "__init__.py"), submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules["timeglass"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["timeglass"]
        raise
    return module


def _patch(module):
    try:
        _timeglass()
        from timeglass._autopatch import patch_errors_module

        patch_errors_module(module)
    except Exception as e:  # the application must start regardless
        sys.stderr.write("timeglass: bootstrap inactive: %s: %s\n" % (type(e).__name__, e))


class _PatchingLoader:
    """Runs the real loader, then patches the module it loaded."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder:
    """Meta path finder that only ever answers for starlette.middleware.errors."""

    def find_spec(self, name, path=None, target=None):
        if name != _TARGET:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    def invalidate_caches(self):
        pass


def _install():
    if not _wanted():
        return
    module = sys.modules.get(_TARGET)
    if module is not None:
        _patch(module)
    else:
        sys.meta_path.insert(0, _Finder())


def _chain():
    """Imports the sitecustomize that this one hides, if there is one.

    Bootstrap directories are taken off sys.path for the import and put back
    afterwards (other copies of this file included, so two never loop).
    """
    seen = getattr(sys, _SEEN_KEY, None)
    if seen is None:
        seen = set()
        setattr(sys, _SEEN_KEY, seen)
    seen.add(_HERE)
    removed = [(i, p) for i, p in enumerate(sys.path) if os.path.realpath(p or ".") in seen]
    for i, _ in reversed(removed):
        del sys.path[i]
    this = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the next one on sys.path, if any)
    except ImportError as e:
        if e.name != "sitecustomize":
            raise
        if this is not None:
            sys.modules["sitecustomize"] = this
    finally:
        for i, p in removed:
            sys.path.insert(i, p)


def _start_trace(func, what):
    """Calls timeglass._trace.FUNC(); a failure is said on stderr as WHAT inactive."""
    try:
        _timeglass()
        from timeglass import _trace as trace

        getattr(trace, func)()
    except Exception as e:  # the application must start regardless
        sys.stderr.write("timeglass: %s inactive: %s: %s\n" % (what, type(e).__name__, e))


def _trace():
    """`timeglass run --trace`: the exact-trace hook (timeglass/_trace.py)."""
    if _flag("TIMEGLASS_TRACE") and os.environ.get("TIMEGLASS_SOCK"):
        _start_trace("start", "--trace")


def _sampling():
    """Eval-clocked sampling (timeglass/_trace.py), when asked for."""
    if not os.environ.get("TIMEGLASS_SOCK"):
        return
    mode = os.environ.get("TIMEGLASS_SAMPLE_MODE", "")
    hz = os.environ.get("TIMEGLASS_SAMPLE_HZ", "")
    # The rule of timeglass._trace.sample_mode (EVAL_ABOVE_HZ), checked here
    # first so that timer-mode processes import nothing (a mode that is none
    # of these is auto, as there).
    if mode == "eval" or (mode != "timer" and hz.isdigit() and int(hz) > 2000):
        _start_trace("start_sampling", "eval-clocked sampling")


try:
    _install()
except Exception as _e:
    sys.stderr.write("timeglass: bootstrap inactive: %s: %s\n" % (type(_e).__name__, _e))
_trace()
_sampling()
_chain()
