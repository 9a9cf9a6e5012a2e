"""Real parts for the tests: throwaway PostgreSQL and MariaDB servers with a Moodle-shaped
database each, and the simulated Moodle site served over loopback."""

from __future__ import annotations

import json
import os
import sys

import psycopg2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from helpers import TEMPLATE, fast_settings, new_database  # noqa: E402
from sim.moodledb import SiteData, create_schema, seed_testsite  # noqa: E402
from sim.mycluster import MyCluster, MyUnavailable  # noqa: E402
from sim.pgcluster import PgCluster, PgUnavailable  # noqa: E402
from sim.server import SimServer  # noqa: E402
from sim.site import MoodleSite  # noqa: E402
from sim.sitesettings import SiteSettings  # noqa: E402
from sim.siteusers import MemoryUsers, MySQLUsers, PostgresUsers  # noqa: E402

RESULTS_SCHEMA = os.path.join(ROOT, "docs", "results.schema.json")


@pytest.fixture(autouse=True)
def written_results_follow_the_schema(monkeypatch):
    """Every results document any test makes the tool save is checked against the published
    JSON Schema (docs/results.schema.json) as it is written: the schema is what users build on."""
    import jsonschema

    from moodleload.results import model as results

    with open(RESULTS_SCHEMA) as handle:
        validator = jsonschema.Draft202012Validator(json.load(handle))
    write = results.write_json_atomically

    def checked(path, document, **options):
        errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
        assert not errors, f"{path} breaks docs/results.schema.json: " + "; ".join(
            f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in errors[:5])
        return write(path, document, **options)

    monkeypatch.setattr(results, "write_json_atomically", checked)


MOODLE_TABLES = ("user", "user_preferences", "config", "course", "enrol", "user_enrolments", "modules",
                 "course_modules", "forum", "forum_discussions", "forum_posts")


@pytest.fixture(scope="session")
def pg():
    """One PostgreSQL server for the whole run, with a seeded Moodle template database."""
    try:
        cluster = PgCluster(preload=("pg_stat_statements",))  # created per test database where a test wants it
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


def unavailable(missing: Exception):
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and a database server cannot run: {missing}")
    pytest.skip(str(missing))


def seeded_mariadb(users: int = 100, **options):
    """A throwaway MariaDB server with a seeded Moodle template database, for a fixture to yield."""
    import pymysql

    try:
        cluster = MyCluster(**options)
    except MyUnavailable as missing:
        unavailable(missing)
    cluster.start()
    try:
        cluster.create_database(TEMPLATE)
        conn = pymysql.connect(**cluster.dsn(TEMPLATE))
        create_schema(conn, "mdl_")
        seed_testsite(conn, "mdl_", users=users)
        conn.close()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mariadb():
    """One MariaDB server for the whole run, with a seeded Moodle template database."""
    yield from seeded_mariadb()


class MoodleDb:
    """A fresh copy of the seeded site for one test, on PostgreSQL."""

    family = "pgsql"

    def __init__(self, pg: PgCluster, name: str, prefix: str = "mdl_"):
        self.pg = pg
        self.name = name
        self.prefix = prefix
        self.dsn = pg.dsn(name)

    @property
    def database(self):
        """The password script's view of this family (for calling its SQL directly)."""
        from moodleload.database.family import Settings
        from moodleload.database.postgres import Postgres

        return Postgres(Settings())

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

    def users(self):
        return PostgresUsers(self.dsn)


class MariaMoodleDb(MoodleDb):
    """A fresh copy of the seeded site for one test, on MariaDB."""

    family = "mysql"
    numbers = iter(range(1, 1_000_000))

    def __init__(self, cluster: MyCluster):
        import pymysql

        self.cluster = cluster
        self.name = f"moodle_{next(self.numbers)}"
        self.prefix = "mdl_"
        self.dsn = cluster.dsn(self.name)
        cluster.create_database(self.name)
        conn = pymysql.connect(**cluster.dsn(None), autocommit=True)
        with conn.cursor() as cur:
            for table in MOODLE_TABLES:
                cur.execute(f"CREATE TABLE `{self.name}`.mdl_{table} LIKE `{TEMPLATE}`.mdl_{table}")
                cur.execute(f"INSERT INTO `{self.name}`.mdl_{table} SELECT * FROM `{TEMPLATE}`.mdl_{table}")
        conn.close()

    @property
    def database(self):
        from moodleload.database.family import Settings
        from moodleload.database.mysql import MySQL

        return MySQL(Settings())

    def connect(self):
        import pymysql

        return pymysql.connect(**self.dsn)

    def query(self, sql: str, params=None):
        return [tuple(row) for row in super().query(sql, params)]

    def cli_args(self) -> list:
        return ["--db-type", "mariadb", "--db-name", self.name, "--db-socket", self.cluster.socket,
                "--db-user", self.cluster.superuser]

    def users(self):
        return MySQLUsers(self.dsn)


@pytest.fixture
def pg_db(pg):
    """A Moodle database on PostgreSQL, for what only PostgreSQL has (or needs no second family)."""
    return MoodleDb(pg, new_database(pg))


@pytest.fixture
def maria_db(mariadb):
    return MariaMoodleDb(mariadb)


@pytest.fixture(params=["pgsql", "mariadb"])
def moodle_db(request):
    """The same behaviour on both database families Moodle runs on."""
    return request.getfixturevalue("pg_db" if request.param == "pgsql" else "maria_db")


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
    users = moodle_db.users()
    server = sim_factory(users=users, data=data)
    yield server
    users.close()
