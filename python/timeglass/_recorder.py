"""Request rows written by the middleware itself, when no collector runs.

One `Recorder` per store path and process. It adds a run row (source
'middleware') and a processes row when it first writes, then request rows.
The event loop never waits for SQLite: `add()` appends a tuple to a deque, and
a daemon thread writes what has queued in one transaction 200 ms after the
first row arrives (at once when 500 rows wait). `flush()` writes the queue in
the calling thread; it runs at lifespan shutdown and at interpreter exit. A
store that cannot be used costs one warning, then the recorder drops rows.
"""

import atexit
import collections
import logging
import os
import socket
import sqlite3
import sys
import threading
import time

from . import _store
from ._version import __version__

INTERVAL_S = 0.2  # longest wait between a row's arrival and its write
BATCH_ROWS = 500  # queued rows that make the writer start at once

# The fields of a queued row, in order; the writer puts run_id, process_id and
# pid in front.
ROW_COLUMNS = ("tid", "start_unix_ns", "duration_ns", "req_end_ns", "resp_start_ns", "method",
               "path", "query_string", "route", "http_version", "status", "request_bytes",
               "response_bytes", "client_addr", "error", "flags", "transport", "exception")
_INSERT = "INSERT INTO requests (run_id, process_id, pid, %s) VALUES " % ", ".join(ROW_COLUMNS)
_VALUES = "(" + ",".join("?" * (len(ROW_COLUMNS) + 3)) + ")"
# Rows per INSERT statement: one statement per chunk keeps the writer from
# giving up the GIL once per row (SQLite allows 32766 parameters).
CHUNK_ROWS = 100

log = logging.getLogger("timeglass")


_insert_sqls = {}


def _insert_sql(rows):
    """INSERT of `rows` request rows in one statement."""
    sql = _insert_sqls.get(rows)
    if sql is None:
        sql = _insert_sqls[rows] = _INSERT + ",".join([_VALUES] * rows)
    return sql


def _command():
    """The command line as typed (a spawned worker has its parent's sys.argv)."""
    argv = sys.argv
    if not argv or argv[0] in ("", "-c"):
        argv = getattr(sys, "orig_argv", None) or [sys.executable]
    return " ".join(argv)


def _cwd():
    try:
        return os.getcwd()
    except OSError:  # removed under us
        return None


def _cmdline():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read()
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return _command()


class Recorder:
    """Queues request rows for one store and writes them from a daemon thread."""

    def __init__(self, path, after_fork=False):
        self.path = path
        self.after_fork = after_fork
        self.created_unix_ns = time.time_ns()
        self._queue = collections.deque()
        self._wake = threading.Event()  # rows are waiting
        self._hurry = threading.Event()  # a full batch, a flush or exit: write now
        self._lock = threading.Lock()  # the connection and the ids below
        self._start_lock = threading.Lock()
        self._thread = None
        self._stopping = False
        self._dead = False
        self._conn = None
        self._run_id = None
        self._process_id = None
        self._pid = os.getpid()
        self._warned = False

    def add(self, row):
        """Queues one row (a tuple in ROW_COLUMNS order). Never blocks on SQLite."""
        if self._dead:
            return
        queue = self._queue
        queue.append(row)
        n = len(queue)
        if n == 1:
            if self._thread is None:
                self._start()
            self._wake.set()
        elif n % BATCH_ROWS == 0:
            self._hurry.set()

    def flush(self, final=False):
        """Writes the queued rows now; final also stamps the run's end time."""
        with self._lock:
            self._write_queue()
            if final:
                self._stamp_end()

    def stop(self):
        """Stops the writer thread and writes everything (interpreter exit)."""
        self._stopping = True
        self._hurry.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        self.flush(final=True)

    def _start(self):
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._loop, name="timeglass-writer", daemon=True)
            self._thread = thread
        thread.start()

    def _loop(self):
        while not self._stopping:
            self._wake.wait()
            self._hurry.wait(INTERVAL_S)
            self._wake.clear()
            self._hurry.clear()
            try:
                with self._lock:
                    self._write_queue()
            except Exception as e:  # keep the thread alive whatever happens
                self._warn("%s: %s: %s" % (self.path, type(e).__name__, e))

    def _take(self):
        queue = self._queue
        rows = []
        while queue:
            rows.append(queue.popleft())
        return rows

    def _write_queue(self):
        """Writes every queued row in one transaction. Caller holds _lock."""
        rows = self._take()
        if not rows or self._dead:
            return
        conn = self._connection()
        if conn is None:
            return
        prefix = (self._run_id, self._process_id, self._pid)
        try:
            conn.execute("BEGIN")
            for i in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[i:i + CHUNK_ROWS]
                params = []
                for row in chunk:
                    params += prefix
                    params += row
                conn.execute(_insert_sql(len(chunk)), params)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(conn)
            self._warn("cannot write %d requests to %s: %s" % (len(rows), self.path, e))

    def _connection(self):
        """The open store with this process's run and process rows, or None."""
        if self._conn is not None:
            return self._conn
        try:
            conn = _store.open_store(self.path)
        except _store.StoreError as e:
            self._give_up(str(e))
            return None
        try:
            self._add_run(conn)
        except (sqlite3.Error, OSError) as e:
            self._rollback(conn)
            conn.close()
            self._give_up("%s: cannot add a run: %s" % (self.path, e))
            return None
        self._conn = conn
        return conn

    def _add_run(self, conn):
        now = self.created_unix_ns
        conn.execute("BEGIN")
        cur = conn.execute(
            "INSERT INTO runs (started_unix_ns, command, cwd, hostname, tg_version, source)"
            " VALUES (?,?,?,?,?,'middleware')",
            (now, _command(), _cwd(), socket.gethostname(), __version__))
        run_id = cur.lastrowid
        cur = conn.execute(
            "INSERT INTO processes (run_id, pid, ppid, exe, cmdline, started_unix_ns, after_fork)"
            " VALUES (?,?,?,?,?,?,?)",
            (run_id, self._pid, os.getppid(), sys.executable, _cmdline(), now, int(self.after_fork)))
        conn.execute("COMMIT")
        self._run_id, self._process_id = run_id, cur.lastrowid

    def _stamp_end(self):
        conn = self._conn
        if conn is None:
            return
        now = time.time_ns()
        try:
            conn.execute("BEGIN")
            conn.execute("UPDATE runs SET ended_unix_ns = ? WHERE id = ?", (now, self._run_id))
            conn.execute("UPDATE processes SET ended_unix_ns = ? WHERE id = ?", (now, self._process_id))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(conn)
            self._warn("%s: cannot finish the run: %s" % (self.path, e))

    @staticmethod
    def _rollback(conn):
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _give_up(self, reason):
        self._dead = True
        self._queue.clear()
        log.warning("timeglass: %s; requests are not recorded", reason)

    def _warn(self, message):
        if not self._warned:
            self._warned = True
            log.warning("timeglass: %s", message)


_recorders = {}
_recorders_lock = threading.Lock()
_forked = False
_orphans = []  # a parent's recorders in a fork child: kept, never used or closed


def recorder(path):
    """The recorder of this process for the store at path (made on first use)."""
    rec = _recorders.get(path)
    if rec is None:
        with _recorders_lock:
            rec = _recorders.get(path)
            if rec is None:
                rec = _recorders[path] = Recorder(path, after_fork=_forked)
    return rec


def flush_all(final=False):
    """Writes every recorder's queue now."""
    for rec in list(_recorders.values()):
        rec.flush(final)


def _at_exit():
    for rec in list(_recorders.values()):
        rec.stop()


def _after_fork_in_child():
    # The parent's connections and writer threads are not ours to use: SQLite
    # connections must not cross fork, and the threads do not exist here.
    global _forked, _recorders_lock
    _forked = True
    _orphans.extend(_recorders.values())
    _recorders.clear()
    _recorders_lock = threading.Lock()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
