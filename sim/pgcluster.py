"""A throwaway PostgreSQL server for tests, the demo and benchmarks.

Started from the installed server binaries (``initdb`` and ``pg_ctl`` on PATH or
under /usr/lib/postgresql/*/bin) in a temporary directory, listening only on a unix
socket there, and removed again by :meth:`PgCluster.stop`.  PostgreSQL refuses to
run as root, so when we are root the server runs as the ``postgres`` (or ``nobody``)
account while clients connect as the database superuser over the socket.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from .ports import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them, e.g. "
    "'apt-get install postgresql-15' on Debian, or put their directory on PATH"
)


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> str:
    """Directory holding initdb and pg_ctl, or raise PgUnavailable."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return os.path.dirname(on_path)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    raise PgUnavailable(INSTALL_HINT)


def _service_account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists")


class PgCluster:
    """One PostgreSQL server; use as a context manager or call start()/stop()."""

    superuser = "moodletest"

    def __init__(self, bindir: str | None = None, preload: tuple = ()):
        self.bindir = bindir or find_bindir()
        self.preload = preload  # shared_preload_libraries, e.g. ("pg_stat_statements",)
        self.tmpdir = tempfile.mkdtemp(prefix="moodle-pg-")
        self.datadir = os.path.join(self.tmpdir, "data")
        self.socketdir = os.path.join(self.tmpdir, "sock")
        self.port = free_port()
        self.account = _service_account()
        self.started = False

    def _run(self, *args: str) -> None:
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.account is not None:
            command = ["runuser", "-u", self.account.pw_name, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> PgCluster:
        os.makedirs(self.socketdir)
        os.chmod(self.tmpdir, 0o755)
        os.chmod(self.socketdir, 0o777)
        if self.account is not None:
            os.chown(self.tmpdir, self.account.pw_uid, self.account.pw_gid)
            os.chown(self.socketdir, self.account.pw_uid, self.account.pw_gid)
        self._run("initdb", "-D", self.datadir, "-U", self.superuser, "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        # The superuser gets in without a password; every other role must give its password,
        # so tests can see authentication fail the way a real server makes it fail.
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as hba:
            hba.write(f"local all {self.superuser} trust\nlocal all all scram-sha-256\n")
        options = (f"-c listen_addresses='' -c unix_socket_directories='{self.socketdir}' "
                   f"-p {self.port} -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=200")
        if self.preload:
            options += f" -c shared_preload_libraries={','.join(self.preload)}"
        self._run("pg_ctl", "-D", self.datadir, "-o", options, "-w", "-t", "60",
                  "-l", os.path.join(self.tmpdir, "server.log"), "start")
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop")
            finally:
                self.started = False
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> dict:
        """Keyword arguments for psycopg2.connect()."""
        return {"host": self.socketdir, "port": self.port, "user": self.superuser, "dbname": dbname}

    def create_database(self, dbname: str) -> None:
        import psycopg2

        conn = psycopg2.connect(**self.dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
