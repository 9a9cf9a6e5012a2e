"""A throwaway MariaDB (or MySQL) server for tests and the demo, the twin of pgcluster.

Started from the installed server binaries (Debian's ``mariadb-server``: mariadb-install-db
and mariadbd, or the older mysql_install_db and mysqld names) in a temporary directory,
listening on a unix socket there and on a free loopback port, and removed again by
:meth:`MyCluster.stop`.  As root the server runs as the ``mysql`` account; the client
superuser is ``root`` with no password, reachable only from this machine."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from .ports import free_port

INSTALL_HINT = ("MariaDB server binaries (mariadb-install-db, mariadbd) not found: install them, e.g. "
                "'apt-get install mariadb-server' on Debian")


class MyUnavailable(RuntimeError):
    """No MariaDB/MySQL server binaries on this machine."""


def _find(*names: str) -> str | None:
    for name in names:
        for folder in (*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/bin"):
            candidate = os.path.join(folder, name)
            if folder and os.access(candidate, os.X_OK):
                return candidate
    return None


class MyCluster:
    """One MariaDB server; use as a context manager or call start()/stop()."""

    superuser = "root"

    def __init__(self, performance_schema: bool = False):
        self.performance_schema = performance_schema  # per-statement statistics, off by default as in MariaDB
        install_db = _find("mariadb-install-db", "mysql_install_db")
        server = _find("mariadbd", "mysqld")
        if not install_db or not server:
            raise MyUnavailable(INSTALL_HINT)
        self.install_db, self.server = install_db, server
        self.account = None
        if os.geteuid() == 0:
            try:
                self.account = pwd.getpwnam("mysql")
            except KeyError:
                raise MyUnavailable("running as root and there is no 'mysql' account to run the server as") from None
        self.tmpdir = tempfile.mkdtemp(prefix="moodle-my-")
        self.datadir = os.path.join(self.tmpdir, "data")
        self.socket = os.path.join(self.tmpdir, "mysqld.sock")
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def _options(self) -> list:
        options = ["--no-defaults", f"--datadir={self.datadir}"]
        if self.account is not None:
            options.append(f"--user={self.account.pw_name}")
        return options

    def start(self) -> MyCluster:
        os.chmod(self.tmpdir, 0o755)
        if self.account is not None:
            os.chown(self.tmpdir, self.account.pw_uid, self.account.pw_gid)
        result = subprocess.run([self.install_db, *self._options(), "--auth-root-authentication-method=normal",
                                 "--skip-test-db", "--skip-name-resolve"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(result.stderr or result.stdout).strip()[-500:]}")
        log = os.path.join(self.tmpdir, "server.log")
        self.process = subprocess.Popen(
            [self.server, *self._options(), f"--socket={self.socket}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve", f"--log-error={log}",
             f"--pid-file={os.path.join(self.tmpdir, 'mysqld.pid')}", "--innodb-buffer-pool-size=64M",
             "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--max-connections=200",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
             f"--performance-schema={'ON' if self.performance_schema else 'OFF'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = open(log).read()[-800:] if os.path.exists(log) else ""
                self.stop()
                raise RuntimeError(f"mariadbd did not start: {tail}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        import pymysql

        try:
            pymysql.connect(**self.dsn(None), connect_timeout=2).close()
            return True
        except pymysql.Error:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)  # throwaway: no clean shutdown needed
            self.process.wait(30)
        self.process = None
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def dsn(self, dbname: str | None = "mysql") -> dict:
        """Keyword arguments for pymysql.connect() over the unix socket."""
        arguments = {"unix_socket": self.socket, "user": self.superuser, "password": "", "charset": "utf8mb4"}
        if dbname:
            arguments["database"] = dbname
        return arguments

    def create_database(self, dbname: str) -> None:
        import pymysql

        conn = pymysql.connect(**self.dsn(None), autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()

    def __enter__(self) -> MyCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
