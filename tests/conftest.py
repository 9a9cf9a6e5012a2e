"""Real parts for the tests: a throwaway PostgreSQL server with a Moodle-shaped
database, and the simulated Moodle site served over loopback."""

from __future__ import annotations

import os
import sys

import psycopg2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers import TEMPLATE, fast_settings, new_database  # noqa: E402
from sim.moodledb import SiteData, create_schema, seed_testsite  # noqa: E402
from sim.pgcluster import PgCluster, PgUnavailable  # noqa: E402
from sim.server import SimServer  # noqa: E402
from sim.site import MemoryUsers, MoodleSite, PostgresUsers, SiteSettings  # noqa: E402


@pytest.fixture(scope="session")
def pg():
    """One PostgreSQL server for the whole run, with a seeded Moodle template database."""
    try:
        cluster = PgCluster()
    except PgUnavailable as missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and PostgreSQL cannot run: {missing}")
        pytest.skip(str(missing))
    cluster.start()
    try:
        cluster.create_database(TEMPLATE)
        conn = psycopg2.connect(**cluster.dsn(TEMPLATE))
        create_schema(conn, "mdl_")
        seed_testsite(conn, "mdl_", users=100)
        conn.close()
        yield cluster
    finally:
        cluster.stop()


class MoodleDb:
    """A fresh copy of the seeded site for one test."""

    def __init__(self, pg: PgCluster, name: str, prefix: str = "mdl_"):
        self.pg = pg
        self.name = name
        self.prefix = prefix
        self.dsn = pg.dsn(name)

    def connect(self):
        return psycopg2.connect(**self.dsn)

    def query(self, sql: str, params=None):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def cli_args(self) -> list:
        return ["--db-name", self.name, "--db-host", self.pg.socketdir, "--db-port", str(self.pg.port),
                "--db-user", self.pg.superuser]


@pytest.fixture
def moodle_db(pg):
    return MoodleDb(pg, new_database(pg))


@pytest.fixture
def sim_factory():
    """Start simulated sites: sim_factory(settings=..., users=...) -> SimServer."""
    servers = []

    def start(settings: SiteSettings | None = None, users=None, data: SiteData | None = None,
              password: str = "Passw0rd!", user_count: int = 20) -> SimServer:
        site = MoodleSite(users or MemoryUsers.testsite(user_count, password),
                          data or SiteData.testsite(100), settings or fast_settings())
        server = SimServer(site).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def db_site(moodle_db, sim_factory):
    """A simulated site whose users and courses live in the test's PostgreSQL database."""
    conn = moodle_db.connect()
    data = SiteData.from_database(conn)
    conn.close()
    users = PostgresUsers(moodle_db.dsn)
    server = sim_factory(users=users, data=data)
    yield server
    users.close()
