"""`timeglass flame --format pprof`: the samples of a run, a route or a request
as a gzipped profile.proto, read back with a decoder generated from Google's
own profile.proto (protoc --python_out), and checked against `timeglass
flame --format folded` of the same selection, the store and the app's code."""
import ast
import collections
import gzip
import importlib
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tgtest
from conftest import HERE, Served, folded

PROTO = Path("/usr/share/gocode/src/github.com/google/pprof/proto/profile.proto")
RATE = 250  # Hz: a period (4 ms) far from the default rate's 1 ms
N_EP = 4


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """profile_pb2, compiled from profile.proto for this test run."""
    if not shutil.which("protoc"):
        pytest.skip("protoc is not installed (Debian: protobuf-compiler)")
    if not PROTO.is_file():
        pytest.skip("%s is missing (Debian: golang-github-google-pprof-dev)" % PROTO)
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        pytest.skip("the protobuf Python module is missing (Debian: python3-protobuf)")
    out = tmp_path_factory.mktemp("proto")
    subprocess.run(["protoc", "--proto_path", str(PROTO.parent), "--python_out", str(out), str(PROTO)], check=True)
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("profile_pb2")
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One app run (native frames too, where the build has them): CPU in
    known functions, a threadpool endpoint, concurrent requests of routes
    with a path parameter, and idle time."""
    native = b"libunwind.so" in tgtest.LIBRARY.read_bytes()  # as test_native.py
    s = Served(tmp_path_factory.mktemp("pprof"), RATE, {"TIMEGLASS_NATIVE": "1"} if native else None)
    s.native = native
    try:
        for _ in range(2):
            s.get("/split?ms=300")
        s.get("/pool?ms=200")
        if native:
            s.get("/native?ms=400")
        with ThreadPoolExecutor(N_EP) as ex:  # at once, interleaved on the event loop
            list(ex.map(s.get, ["/ep/%d?ms=200" % i for i in range(N_EP)]))
        s.get("/sleep?ms=200")
    finally:
        rc = s.stop()
    assert rc == 0, s.output()
    with sqlite3.connect(s.db) as db:
        s.run_id, s.started, s.ended = db.execute("SELECT id, started_unix_ns, ended_unix_ns FROM runs").fetchone()
        s.requests = {rid: (path, method + " " + (route or path), start, dur)
                      for rid, path, method, route, start, dur in db.execute(
                          "SELECT id, path, method, route, start_unix_ns, duration_ns FROM requests")}
        s.tids = {tid for (tid,) in db.execute("SELECT DISTINCT tid FROM samples")}
    s.rid = {}
    for rid, (path, _, _, _) in sorted(s.requests.items()):
        s.rid.setdefault(path, rid)
    return s


def pprof_bytes(run, *args):
    """The raw output of `timeglass flame --format pprof` into a pipe."""
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db), "--format", "pprof", *args],
                       capture_output=True, env=tgtest.timeglass_env())
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def profile(pb, run, *args):
    data = pprof_bytes(run, *args)
    assert data[:2] == b"\x1f\x8b", "not gzip: %r" % data[:16]
    p = pb.Profile()
    p.ParseFromString(gzip.decompress(data))
    check_references(p)
    return p


def check_references(p):
    """Every id and string index in p points at something that exists."""
    n = len(p.string_table)
    assert n > 0 and p.string_table[0] == ""

    def s(i):
        assert 0 <= i < n, "string index %d of %d" % (i, n)
        return p.string_table[i]

    maps = {m.id for m in p.mapping}
    funcs = {f.id for f in p.function}
    locs = {loc.id for loc in p.location}
    assert len(maps) == len(p.mapping) and 0 not in maps
    assert len(funcs) == len(p.function) and 0 not in funcs
    assert len(locs) == len(p.location) and 0 not in locs
    for m in p.mapping:
        s(m.filename)
    for f in p.function:
        s(f.name), s(f.system_name), s(f.filename)
    for loc in p.location:
        assert loc.mapping_id in maps
        assert len(loc.line) == 1 and loc.line[0].function_id in funcs
    for t in list(p.sample_type) + [p.period_type]:
        s(t.type), s(t.unit)
    for c in p.comment:
        s(c)
    s(p.default_sample_type)
    for smp in p.sample:
        assert len(smp.value) == len(p.sample_type)
        assert smp.location_id and all(i in locs for i in smp.location_id)
        for lab in smp.label:
            s(lab.key), s(lab.str)


class View:
    """Names of a profile: function and mapping of each location, labels."""

    def __init__(self, p):
        self.p = p
        self.str = p.string_table
        self.func = {f.id: f for f in p.function}
        self.map = {m.id: m for m in p.mapping}
        self.loc = {loc.id: loc for loc in p.location}
        self.types = [(self.str[t.type], self.str[t.unit]) for t in p.sample_type]

    def frame(self, lid):
        """The location as `timeglass flame` folds it."""
        loc = self.loc[lid]
        f = self.func[loc.line[0].function_id]
        name, file = self.str[f.name], self.str[f.filename]
        if self.str[self.map[loc.mapping_id].filename] != "[python]":
            label = "%s (%s)" % (name, os.path.basename(file))
        elif file:
            label = "%s (%s:%d)" % (name, file, loc.line[0].line)
        else:
            label = name
        return label.replace(";", ",").replace("\n", ",")

    def stack(self, smp):
        return ";".join(self.frame(i) for i in reversed(smp.location_id))

    def labels(self, smp):
        return {self.str[lab.key]: self.str[lab.str] for lab in smp.label}

    def value(self, smp, type_):
        return smp.value[[t for t, _ in self.types].index(type_)]


def per_stack(pairs):
    out = collections.Counter()
    for stack, n in pairs:
        out[stack] += n
    return out


SELECTIONS = [
    ("--all",),
    ("--no-request",),
    ("--route", "GET /split"),
    ("--route", "GET /ep/3"),
    ("--all", "--state", "running"),
]


@pytest.mark.parametrize("sel", SELECTIONS, ids=lambda a: " ".join(a))
def test_counts_equal_folded(pb, run, sel):
    p = profile(pb, run, *sel)
    v = View(p)
    got = per_stack((v.stack(smp), v.value(smp, "samples")) for smp in p.sample)
    want = per_stack((";".join(frames), n) for frames, n in folded(run.flame(*sel)))
    assert sum(want.values()) > 0
    assert got == want


def test_one_request(pb, run):
    rid = run.rid["/split"]
    p = profile(pb, run, "--request", str(rid))
    v = View(p)
    got = per_stack((v.stack(smp), v.value(smp, "samples")) for smp in p.sample)
    assert got == per_stack((";".join(f), n) for f, n in folded(run.flame("--request", str(rid))))
    assert all(v.labels(smp)["request_id"] == str(rid) for smp in p.sample)
    assert all(v.labels(smp)["route"] == "GET /split" for smp in p.sample)
    _, _, start, dur = run.requests[rid]
    assert p.time_nanos == start and p.duration_nanos == dur


def test_labels_route_and_request(pb, run):
    """One file for the run, split by its labels, gives each request's and
    each route's own samples."""
    p = profile(pb, run, "--all")
    v = View(p)
    by_request = collections.Counter()
    outside = 0
    for smp in p.sample:
        lab = v.labels(smp)
        n = v.value(smp, "samples")
        assert lab["state"] in ("running", "waiting")
        assert int(lab["thread"]) in run.tids
        if "request_id" in lab:
            rid = int(lab["request_id"])
            assert lab["route"] == run.requests[rid][1]
            by_request[rid] += n
        else:
            assert "route" not in lab
            outside += n
    assert outside == sum(n for _, n in folded(run.flame("--no-request")))
    for rid in run.requests:
        want = sum(n for _, n in folded(run.flame("--request", str(rid))))
        assert by_request[rid] == want, rid
    # the routes with a path parameter are their own label values
    assert {v.labels(smp).get("route") for smp in p.sample} >= {"GET /split", "GET /pool", "GET /ep/0"}


def test_state_label_and_waiting_leaf(pb, run):
    p = profile(pb, run, "--all")
    v = View(p)
    for smp in p.sample:
        leaf = v.frame(smp.location_id[0])
        assert (leaf == "(waiting)") == (v.labels(smp)["state"] == "waiting")
    p = profile(pb, run, "--all", "--state", "waiting")
    v = View(p)
    assert p.sample and all(v.labels(smp)["state"] == "waiting" for smp in p.sample)
    assert all(v.frame(smp.location_id[0]) != "(waiting)" for smp in p.sample)


def test_values_period_and_time(pb, run):
    p = profile(pb, run, "--all")
    v = View(p)
    assert v.types == [("samples", "count"), ("wall", "nanoseconds"), ("cpu", "nanoseconds")]
    assert (v.str[p.period_type.type], v.str[p.period_type.unit]) == ("wall", "nanoseconds")
    assert v.str[p.default_sample_type] == "samples"
    # measured from the samples: about 1/RATE (4 ms), later when the
    # sampler fell behind on a busy machine, never the default's 1 ms
    assert 3_000_000 <= p.period <= 12_000_000, p.period
    assert p.time_nanos == run.started and p.duration_nanos == run.ended - run.started
    cpu = collections.Counter()
    for smp in p.sample:
        n = v.value(smp, "samples")
        assert n > 0 and v.value(smp, "wall") == n * p.period
        assert v.value(smp, "cpu") >= 0
        cpu[v.labels(smp)["state"]] += v.value(smp, "cpu")
    with sqlite3.connect(run.db) as db:
        assert cpu == dict(db.execute("SELECT state, sum(cpu_ns) FROM samples GROUP BY state").fetchall())
    # /split, /pool and /ep/* burn about 1.6 s of CPU
    assert cpu["running"] > 1.0e9, cpu
    assert any("timeglass run %d" % run.run_id == v.str[c] for c in p.comment)


def app_functions():
    """{name: (first line, last line)} of the functions of app.py."""
    tree = ast.parse((HERE / "app.py").read_text())
    return {n.name: (n.lineno, n.end_lineno) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_functions_are_the_apps(pb, run):
    p = profile(pb, run, "--route", "GET /split")
    v = View(p)
    funcs = app_functions()
    seen = collections.Counter()
    for loc in p.location:
        f = v.func[loc.line[0].function_id]
        name, file = v.str[f.name], v.str[f.filename]
        if file != str(HERE / "app.py"):
            continue
        assert v.str[v.map[loc.mapping_id].filename] == "[python]"
        assert name in funcs, name
        first, last = funcs[name]
        assert first <= loc.line[0].line <= last, (name, loc.line[0].line)
        seen[name] += 1
    assert {"split", "hot_seventy", "cold_thirty", "burn"} <= set(seen), seen
    # one function per name and file, whatever lines it was sampled at
    keys = [(v.str[f.name], v.str[f.filename]) for f in p.function]
    assert len(keys) == len(set(keys))


def test_native_frames_in_their_library(pb, run):
    if not run.native:
        pytest.skip("this build has no native unwinding (libunwind, libelf)")
    p = profile(pb, run, "--request", str(run.rid["/native"]))
    v = View(p)
    libs = collections.Counter()
    for smp in p.sample:
        for lid in smp.location_id:
            m = v.str[v.map[v.loc[lid].mapping_id].filename]
            if m != "[python]":
                f = v.func[v.loc[lid].line[0].function_id]
                assert v.str[f.filename] == m and v.str[f.name]
                libs[os.path.basename(m)] += v.value(smp, "samples")
    assert any(lib.startswith("libz") for lib in libs), libs
    for m in p.mapping:
        if v.str[m.filename] != "[python]":
            assert m.has_functions and not m.has_line_numbers


def test_output_file(pb, run, tmp_path):
    out = tmp_path / "run.pb.gz"
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db), "--all", "--format", "pprof",
                        "-o", str(out)], capture_output=True, env=tgtest.timeglass_env())
    assert r.returncode == 0 and r.stdout == b"", r.stderr
    assert out.read_bytes() == pprof_bytes(run, "--all")
    # -o serves every format
    txt = tmp_path / "run.folded"
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db), "--all", "--output", str(txt)],
                       capture_output=True, text=True, env=tgtest.timeglass_env())
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert txt.read_text() == run.flame("--all")


def test_refuses_a_terminal(run):
    try:
        main, sub = pty.openpty()
    except OSError as e:  # a chroot without /dev/pts (the version matrix)
        pytest.skip("no pseudo-terminal here: %s" % e)
    try:
        r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(run.db), "--all", "--format", "pprof"],
                           stdout=sub, stderr=subprocess.PIPE, text=True, env=tgtest.timeglass_env())
    finally:
        os.close(sub)
        os.close(main)
    assert r.returncode == 2
    assert "binary" in r.stderr and "-o FILE" in r.stderr, r.stderr


def test_empty_selection_is_a_valid_profile(pb, tmp_path):
    """A run without samples: a warning, and a profile with no samples."""
    s = Served(tmp_path, 0)
    try:
        s.get("/split?ms=50")
    finally:
        assert s.stop() == 0
    r = subprocess.run([str(tgtest.TIMEGLASS), "flame", "--db", str(s.db), "--all", "--format", "pprof"],
                       capture_output=True, env=tgtest.timeglass_env())
    assert r.returncode == 0, r.stderr
    assert b"no stack samples" in r.stderr
    p = pb.Profile()
    p.ParseFromString(gzip.decompress(r.stdout))
    check_references(p)
    assert len(p.sample) == 0 and p.period == 1_000_000
