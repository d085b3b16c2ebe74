"""A throwaway PostgreSQL server for the SQL capture tests (Debian's, any version).

Started once per test session in a temporary directory with initdb and
pg_ctl: loopback TCP with SSL on (a self-signed certificate made with the
openssl command), a Unix socket in the same directory, password (SCRAM)
authentication over TCP and trust over the socket. As root, the server runs
as the `postgres` user (PostgreSQL refuses to run as root). Stopped and
removed at the end of the session.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

USER = "tg"
PASSWORD = "tg-s3cret-pw"
DATABASE = "tgtest"

def _bin_dirs():
    """Debian's PostgreSQL binaries, newest major version first, then /usr/local/bin."""
    root = "/usr/lib/postgresql"
    try:
        majors = sorted((v for v in os.listdir(root) if v.isdigit()), key=int, reverse=True)
    except OSError:
        majors = []
    return [os.path.join(root, v, "bin") for v in majors] + ["/usr/local/bin"]


def find_bin(name):
    for d in _bin_dirs():
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


class Unavailable(Exception):
    """Why no server can be started here (the tests skip with it)."""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, extra_conf=""):
        """extra_conf: postgresql.conf lines added to the harness's own (logging, say)."""
        self.extra_conf = extra_conf
        self.initdb = find_bin("initdb")
        self.pg_ctl = find_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise Unavailable("PostgreSQL initdb/pg_ctl not found (apt-get install postgresql)")
        if not shutil.which("openssl"):
            raise Unavailable("the openssl command is missing (apt-get install openssl)")
        self.run_as = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run the server as")
        self.dir = tempfile.mkdtemp(prefix="tg-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.log = os.path.join(self.dir, "server.log")

    def _cmd(self, argv, **kw):
        if self.run_as is not None:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)

    def start(self):
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        key, crt = os.path.join(self.dir, "server.key"), os.path.join(self.dir, "server.crt")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                            "-out", crt, "-subj", "/CN=localhost", "-days", "2"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise Unavailable("openssl could not make a certificate: " + r.stderr[-500:])
        os.chmod(key, 0o600)
        if self.run_as is not None:
            for p in (self.dir, pwfile, key, crt):
                os.chown(p, self.run_as.pw_uid, self.run_as.pw_gid)
        r = self._cmd([self.initdb, "-D", self.data, "-U", USER, "--pwfile", pwfile, "--auth-local=trust",
                       "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"])
        if r.returncode:
            raise Unavailable("initdb failed: " + (r.stderr or r.stdout)[-1000:])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                    "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\nmax_connections = 300\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 32MB\n"
                    # Statement logging is turned on per database (see
                    # test_sql_findings.py); lines say when, which backend
                    # and which database.
                    "log_line_prefix = '%%m [%%p] %%d '\n" % (self.port, self.dir, crt, key))
            f.write(self.extra_conf + "\n")
        r = self._cmd([self.pg_ctl, "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"])
        if r.returncode:
            try:
                tail = open(self.log).read()[-2000:]
            except OSError:
                tail = ""
            raise Unavailable("pg_ctl start failed: %s %s" % (r.stderr[-1000:], tail))
        return self

    def stop(self):
        if os.path.isdir(self.data):
            self._cmd([self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)

    # Connection strings for the app (see apps/sqlapp.py).
    def dsn_tcp(self):
        """TCP on loopback; libpq's default sslmode=prefer gives TLS."""
        return "host=127.0.0.1 port=%d dbname=%s user=%s password=%s sslmode=prefer" % (
            self.port, DATABASE, USER, PASSWORD)

    def dsn_unix(self):
        return "host=%s port=%d dbname=%s user=%s" % (self.dir, self.port, DATABASE, USER)

    def setup_schema(self):
        import psycopg2
        conn = psycopg2.connect("host=%s port=%d dbname=postgres user=%s" % (self.dir, self.port, USER))
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE %s" % DATABASE)
        conn.close()
        conn = psycopg2.connect(self.dsn_unix())
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)")
        cur.execute("INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 100) g")
        conn.close()

    def setup_logged_database(self, name):
        """A database whose sessions log every statement with its duration
        (log_statement = all, log_min_duration_statement = 0), with the
        tables of apps/shopapp.py. Returns its libpq connection strings over
        the Unix socket and over TCP (where TLS is negotiated)."""
        import psycopg2
        conn = psycopg2.connect("host=%s port=%d dbname=postgres user=%s" % (self.dir, self.port, USER))
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE DATABASE %s" % name)
        cur.execute("ALTER DATABASE %s SET log_statement = 'all'" % name)
        cur.execute("ALTER DATABASE %s SET log_min_duration_statement = 0" % name)
        conn.close()
        dsn = "host=%s port=%d dbname=%s user=%s" % (self.dir, self.port, name, USER)
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)")
        cur.execute("INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 100) g")
        cur.execute("CREATE TABLE stock (item_id integer PRIMARY KEY, qty integer NOT NULL)")
        cur.execute("INSERT INTO stock SELECT g, 0 FROM generate_series(1, 100) g")
        cur.execute("CREATE TABLE imports (batch integer, k integer, v text)")
        conn.close()
        return dsn, "host=127.0.0.1 port=%d dbname=%s user=%s password=%s sslmode=prefer" % (
            self.port, name, USER, PASSWORD)


def wait_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
