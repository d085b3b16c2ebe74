"""pytest plugin: test boundaries for `timeglass ci`.

Loaded in every pytest run of an environment where timeglass is installed
(entry point `pytest11`), it does nothing unless TIMEGLASS_TEST_EVENTS names
a file. Then it appends one JSON object per line for each test:

    {"event": "begin", "nodeid": ..., "pid": ..., "mono_ns": ..., "unix_ns": ...}
    {"event": "end", "nodeid": ..., "pid": ..., "start_mono_ns": ..., "end_mono_ns": ...,
     "start_unix_ns": ..., "end_unix_ns": ..., "outcome": "passed" | "failed" | "skipped"}

Times are CLOCK_MONOTONIC nanoseconds (time.monotonic_ns(), the clock of the
preload library's records) and Unix nanoseconds. Each line is written with a
single append, so pytest-xdist workers can share the file. `timeglass ci`
attributes requests and queries to tests by (pid, time); a later marker ABI
may carry the boundaries through the library instead.
"""

import json
import os
import time

ENV = "TIMEGLASS_TEST_EVENTS"


class EventWriter:
    """Appends begin/end lines for each test to one file."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.started = {}  # nodeid -> (mono_ns, unix_ns)
        self.outcomes = {}  # nodeid -> outcome

    def _write(self, record):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8"))

    def pytest_runtest_logstart(self, nodeid, location):
        mono, unix = time.monotonic_ns(), time.time_ns()
        self.started[nodeid] = (mono, unix)
        self.outcomes[nodeid] = "passed"
        self._write({"event": "begin", "nodeid": nodeid, "pid": os.getpid(),
                     "mono_ns": mono, "unix_ns": unix})

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and self.outcomes.get(report.nodeid) != "failed":
            self.outcomes[report.nodeid] = "skipped"

    def pytest_runtest_logfinish(self, nodeid, location):
        mono, unix = time.monotonic_ns(), time.time_ns()
        start_mono, start_unix = self.started.pop(nodeid, (mono, unix))
        self._write({"event": "end", "nodeid": nodeid, "pid": os.getpid(),
                     "start_mono_ns": start_mono, "end_mono_ns": mono,
                     "start_unix_ns": start_unix, "end_unix_ns": unix,
                     "outcome": self.outcomes.pop(nodeid, "passed")})

    def pytest_unconfigure(self, config):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pytest_configure(config):
    path = os.environ.get(ENV)
    if path and not config.pluginmanager.has_plugin("timeglass-test-events"):
        config.pluginmanager.register(EventWriter(path), "timeglass-test-events")
