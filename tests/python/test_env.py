"""TIMEGLASS_* variables on the Python side are read as `timeglass run`
checks them and as the preload library reads them: a flag is 1/yes/true/on
or 0/no/false/off, a number is a plain decimal integer in its option's
range; anything else is clamped or ignored for the default, and said once
on stderr (an app started without `timeglass run` may hold anything)."""

import subprocess

import pytest

from timeglass import _env, _trace

from tgpy import BOOTSTRAP, PYTHON, child_env


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(_env, "_said", set())


@pytest.mark.parametrize("value,expected", [
    ("1", True), ("yes", True), ("TRUE", True), ("on", True),
    ("0", False), ("no", False), ("False", False), ("off", False), ("", False),
])
def test_flags(monkeypatch, capsys, value, expected):
    monkeypatch.setenv("TIMEGLASS_TRACE", value)
    assert _env.flag("TIMEGLASS_TRACE") is expected
    assert capsys.readouterr().err == ""


def test_a_bad_flag_is_the_default_said_once(monkeypatch, capsys):
    monkeypatch.setenv("TIMEGLASS_DISABLE", "maybe")
    assert _env.flag("TIMEGLASS_DISABLE") is False
    assert _env.flag("TIMEGLASS_DISABLE") is False
    assert capsys.readouterr().err == "timeglass: TIMEGLASS_DISABLE='maybe' is not 1 or 0; using 0\n"


@pytest.mark.parametrize("value,expected,said", [
    ("250", 250, None), ("0", "off", None),
    ("-5", 1000, "TIMEGLASS_SAMPLE_HZ='-5' is not an integer 0..100000; using 1000"),
    ("1e99", 1000, "TIMEGLASS_SAMPLE_HZ='1e99' is not an integer 0..100000; using 1000"),
    ("abc", 1000, "TIMEGLASS_SAMPLE_HZ='abc' is not an integer 0..100000; using 1000"),
    ("250000", 100000, "TIMEGLASS_SAMPLE_HZ='250000' is not an integer 0..100000; using 100000"),
    ("\u0661\u0662", 1000, "TIMEGLASS_SAMPLE_HZ='??' is not an integer 0..100000; using 1000"),
])
def test_sample_rate(monkeypatch, capsys, value, expected, said):
    """A negative rate turned sampling off here while the library sampled
    at its maximum; both now take the default."""
    monkeypatch.setenv("TIMEGLASS_SAMPLE_HZ", value)
    monkeypatch.setenv("TIMEGLASS_SAMPLE_MODE", "timer")
    mode, hz = _trace.sample_mode()
    assert (hz if mode != "off" else "off") == expected
    err = capsys.readouterr().err
    assert err == ("timeglass: %s\n" % said if said else "")


def test_a_bad_sample_mode_is_auto(monkeypatch, capsys):
    monkeypatch.setenv("TIMEGLASS_SAMPLE_MODE", "sometimes")
    monkeypatch.setenv("TIMEGLASS_SAMPLE_HZ", "5000")
    assert _trace.sample_mode() == ("eval", 5000)  # auto: eval above 2000 Hz
    assert capsys.readouterr().err == (
        "timeglass: TIMEGLASS_SAMPLE_MODE='sometimes' is not one of auto, timer, eval; using auto\n")


@pytest.mark.parametrize("value,expected", [("250", 250), ("-1", 100), ("x", 100), ("99999999999", 60000000)])
def test_trace_threshold(monkeypatch, value, expected):
    monkeypatch.setenv("TIMEGLASS_TRACE_US", value)
    assert _trace.threshold_us() == expected


def test_disable_false_records(tmp_path):
    """TIMEGLASS_DISABLE=false used to turn standalone recording off."""
    code = ("from timeglass.middleware import TimeGlassMiddleware as M; "
            "print(M(None)._enabled, M(None, enabled=False)._enabled)")
    for value, expected in (("false", "True False"), ("1", "False False"), ("bogus", "True False")):
        out = subprocess.run([PYTHON, "-c", code], env=child_env({"TIMEGLASS_DISABLE": value}),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == expected.split()


def test_bootstrap_reads_no_bootstrap_as_a_flag():
    """TIMEGLASS_NO_BOOTSTRAP=false (or a bad value) keeps the bootstrap on."""
    code = ("import importlib.util, os, sys; "
            "spec = importlib.util.spec_from_file_location('probe', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "os.environ['TIMEGLASS_SOCK'] = '/nonexistent/sock'; print(m._wanted())")
    for value, expected in (("false", "True"), ("0", "True"), ("1", "False"), ("yes", "False"), ("??", "True")):
        env = child_env({"TIMEGLASS_NO_BOOTSTRAP": value})
        out = subprocess.run([PYTHON, "-c", code, str(BOOTSTRAP / "sitecustomize.py")], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [expected], (value, out.stdout, out.stderr)
