"""`python -m timeglass ARGS...`: runs the `timeglass` binary with ARGS.

The binary is looked up next to this package first (the scripts directory of
the environment it is installed in, then the build tree of a checkout), then
on PATH. The process is replaced by the binary, so its exit status and
signals are the command's own.

In a wheel install the preload library and the bootstrap live beside the
package rather than under the binary's prefix; their paths are passed on in
TIMEGLASS_LIB and TIMEGLASS_BOOTSTRAP_DIR unless those are set already.
"""

import os
import shutil
import sys
import sysconfig

NAME = "timeglass"
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
# Where meson-python puts files meson installs to {libdir}: beside the package.
_WHEEL_LIB = os.path.join(os.path.dirname(_PACKAGE), ".timeglass.mesonpy.libs", "timeglass",
                          "libtimeglass.so")
_BOOTSTRAP = os.path.join(_PACKAGE, "bootstrap")


def _candidates():
    scripts = sysconfig.get_path("scripts")
    if scripts:
        yield os.path.join(scripts, NAME)
    yield os.path.join(os.path.dirname(sys.executable), NAME)
    build = os.environ.get("TIMEGLASS_BUILD") or os.path.join(_PACKAGE, os.pardir, os.pardir, "build")
    yield os.path.join(build, "cli", NAME)


def find_binary():
    """Path of the timeglass executable, or None."""
    for path in _candidates():
        if os.path.isfile(path) and os.access(path, os.X_OK) and not _is_python_script(path):
            return os.path.abspath(path)
    return shutil.which(NAME)


def _is_python_script(path):
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError:
        return True
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def _environment():
    env = dict(os.environ)
    if not env.get("TIMEGLASS_LIB") and os.path.isfile(_WHEEL_LIB):
        env["TIMEGLASS_LIB"] = _WHEEL_LIB
    if not env.get("TIMEGLASS_BOOTSTRAP_DIR"):
        env["TIMEGLASS_BOOTSTRAP_DIR"] = _BOOTSTRAP
    return env


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    binary = find_binary()
    if binary is None:
        sys.stderr.write("timeglass: the timeglass binary was not found next to %s or on PATH\n" % _PACKAGE)
        return 127
    try:
        os.execve(binary, [binary] + args, _environment())
    except OSError as e:
        sys.stderr.write("timeglass: cannot run %s: %s\n" % (binary, e.strerror or e))
        return 126


if __name__ == "__main__":
    sys.exit(main())
