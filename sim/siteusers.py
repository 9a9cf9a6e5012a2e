"""Who may log in to the simulated site: users held in memory, or the ``mdl_user`` table of
a real PostgreSQL or MariaDB database (what set_moodle_passwords.py writes is what makes a
login succeed), with passwords checked as Moodle checks them."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from dataclasses import dataclass
from typing import Protocol

import bcrypt


@dataclass
class UserRecord:
    id: int
    username: str
    password_hash: str
    auth: str = "manual"
    confirmed: int = 1
    suspended: int = 0
    locked: bool = False
    force_password_change: bool = False


class UserStore(Protocol):
    """Where the site looks a user up at login: memory or a Moodle database."""

    async def lookup(self, username: str) -> UserRecord | None: ...


class MemoryUsers:
    """Users held by the site itself (the demo without PostgreSQL)."""

    def __init__(self, users: dict[str, UserRecord]):
        self.users = users

    @classmethod
    def testsite(cls, count: int, password: str) -> MemoryUsers:
        # One cheap hash for everybody: the memory store is for demos, not for hashing realism.
        shared = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        shared = "$2y$" + shared[4:]
        users = {}
        for n in range(1, count + 1):
            name = f"tool_generator_{n:06d}"
            users[name] = UserRecord(id=2 + n, username=name, password_hash=shared)
        return cls(users)

    async def lookup(self, username: str) -> UserRecord | None:
        return self.users.get(username)


class DatabaseUsers:
    """Users read from a Moodle database's ``<prefix>user`` table at each login, through a
    small pool of connections made by ``connect`` (either family's driver)."""

    def __init__(self, connect, prefix: str = "mdl_", size: int = 8):
        self.prefix = prefix
        self.connect = connect
        self.idle: queue.LifoQueue = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)
        self.opened: list = []

    @contextlib.contextmanager
    def _cursor(self):
        """A cursor on a pooled connection (opened when none is idle), rolled back after use."""
        with self.slots:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
                self.opened.append(conn)
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.rollback()
            finally:
                self.idle.put(conn)

    def _lookup(self, username: str) -> UserRecord | None:
        p = self.prefix
        with self._cursor() as cur:
            cur.execute(f"SELECT id, username, password, auth, confirmed, suspended FROM {p}user"
                        f" WHERE username = %s AND deleted = 0 AND mnethostid = 1", (username,))
            row = cur.fetchone()
            prefs = {}
            if row is not None:
                cur.execute(f"SELECT name, value FROM {p}user_preferences WHERE userid = %s"
                            f" AND name IN ('login_lockout', 'auth_forcepasswordchange')", (row[0],))
                prefs = dict(cur.fetchall())
        if row is None:
            return None
        return UserRecord(id=row[0], username=row[1], password_hash=row[2], auth=row[3],
                          confirmed=row[4], suspended=row[5], locked="login_lockout" in prefs,
                          force_password_change=prefs.get("auth_forcepasswordchange") == "1")

    async def lookup(self, username: str) -> UserRecord | None:
        return await asyncio.to_thread(self._lookup, username)

    def _run_queries(self, queries: list) -> None:
        with self._cursor() as cur:
            for sql, times in queries:
                for _ in range(int(times)):
                    cur.execute(sql)
                    cur.fetchall()

    async def run_queries(self, queries: list) -> None:
        await asyncio.to_thread(self._run_queries, queries)

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


def PostgresUsers(dsn: dict, prefix: str = "mdl_") -> DatabaseUsers:  # noqa: N802 - reads like the class it was
    import psycopg2

    return DatabaseUsers(lambda: psycopg2.connect(**dsn), prefix)


def MySQLUsers(dsn: dict, prefix: str = "mdl_") -> DatabaseUsers:  # noqa: N802
    import pymysql

    return DatabaseUsers(lambda: pymysql.connect(**dsn), prefix)


def password_matches(password: str, stored_hash: str) -> bool:
    """Moodle 5.0's check for bcrypt hashes: $2y$, $2b$ and $2a$ all validate;
    passwords over 128 characters never do."""
    if len(password) > 128 or not stored_hash.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bcrypt.checkpw(password.encode(), stored_hash.encode())
    except ValueError:
        return False


# --------------------------------------------------------------------------- sessions
