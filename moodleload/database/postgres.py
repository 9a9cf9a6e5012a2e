"""PostgreSQL (Moodle's ``pgsql``), through psycopg2/libpq, which honours PG* variables and
~/.pgpass; snapshots restored with pg_restore."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from typing import Any

from moodleload.database.family import (
    CONNECT_TIMEOUT_SECONDS,
    DatabaseError,
    Family,
    SettingName,
    Settings,
    Unavailable,
    privileges_needed,
)

# The settings libpq's client tools (pg_restore, psql) read from the environment.
PG_VARIABLES: tuple[tuple[SettingName, str], ...] = (("host", "PGHOST"), ("port", "PGPORT"), ("name", "PGDATABASE"),
                                                     ("user", "PGUSER"), ("password", "PGPASSWORD"))

# Its statement statistics: (normalised text, calls, rows, milliseconds, work) per statement.
PG_SNAPSHOT = ("SELECT query, sum(calls), sum(rows), sum(total_exec_time), sum(shared_blks_hit + shared_blks_read) "
               "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
               "GROUP BY query")
PG_HOW_TO = ("add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then "
             "run CREATE EXTENSION pg_stat_statements; in the Moodle database")

# A pg_restore list's entries for an extension and its comment: a superuser's objects.
EXTENSION_ENTRY = re.compile(r"^[0-9]+; [0-9]+ [0-9]+ (EXTENSION|COMMENT - EXTENSION) ")


class Postgres(Family):
    family = "pgsql"
    dbtypes = ("pgsql",)
    aliases = ("postgres", "postgresql")
    driver = "psycopg2"  # the Python module that speaks to it (needs.py checks it is there)
    driver_package = "psycopg2-binary"
    name = "PostgreSQL"
    socket_setting: SettingName = "host"  # libpq takes the socket's directory as the host
    client_variables = PG_VARIABLES
    exporter = "postgres_exporter"
    exporter_connections = "pg_stat_activity_count"
    default_port = 5432
    quote_chars = '"'
    line_comment_chars = ""
    backslash_strings = True  # E'...' strings take backslash escapes
    statements_source = "pg_stat_statements"

    @staticmethod
    def fill_defaults(settings: Settings) -> None:
        if settings.socket:  # libpq takes a socket directory as the host
            settings.offer("host", settings.socket, settings.origin("socket") or "socket")
        for name, variable in PG_VARIABLES:
            if name != "password":  # libpq reads PGPASSWORD and ~/.pgpass itself
                settings.offer(name, os.environ.get(variable), variable)

    def statement_rows(self, conn: Any) -> list[tuple[Any, ...]]:
        """The statistics now, one row per normalised statement (only read: nothing here resets
        them, other people's tools read them too); Unavailable says how to switch them on."""
        import psycopg2

        try:
            with conn.cursor() as cur:
                cur.execute(PG_SNAPSHOT)
                rows = cur.fetchall()
        except psycopg2.Error as error:
            conn.rollback()
            first = (str(error).strip().splitlines() or ["?"])[0]
            raise Unavailable(f"query statistics off: PostgreSQL says {first!r}; to switch them on, {PG_HOW_TO}") \
                from None
        conn.rollback()  # a snapshot must not hold a transaction open across the run
        return list(rows)

    def client_environment(self) -> dict[str, str]:
        """The PG* variables libpq's tools read, from the settings (the password too: never argv)."""
        environment = dict(os.environ)
        for name, variable in PG_VARIABLES:
            value = self.settings.value(name)
            if value is not None:
                environment[variable] = str(value)
        return environment

    def restore(self, snapshot: str) -> str | None:
        """A pg_dump -Fc snapshot back, cleaning what it holds first.  Extensions
        (pg_stat_statements for --query-stats) are a superuser's: the Moodle user may neither
        drop nor create them, so the restore list leaves them out, and what they hold stays
        as the superuser made it."""
        environment = self.client_environment()
        listing = subprocess.run(["pg_restore", "-l", snapshot], env=environment, stdout=subprocess.PIPE, text=True)
        kept = [line for line in listing.stdout.splitlines(keepends=True) if not EXTENSION_ENTRY.match(line)]
        if listing.returncode != 0 or not kept:
            return "pg_restore could not list the snapshot"
        with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as restore_list:
            restore_list.writelines(kept)
            restore_list.flush()
            status = subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", "-L", restore_list.name,
                                     "-d", environment.get("PGDATABASE", "moodle"), snapshot],
                                    env=environment).returncode
        return None if status == 0 else f"pg_restore exited {status}"

    @staticmethod
    def quote(identifier: str) -> str:
        return f'"{identifier}"'

    # ---- SQL that differs

    @staticmethod
    def config_number(config_table: str, name: str) -> str:
        """A numeric setting of config, or NULL where it is missing or not a number."""
        return (f"(SELECT CASE WHEN btrim(value) ~ '^[0-9]+$' AND length(btrim(value)) <= 18"
                f" THEN btrim(value)::bigint END FROM {config_table} WHERE name = '{name}')")

    @staticmethod
    def not_same(column: str, expression: str) -> str:
        return f"{column} IS DISTINCT FROM {expression}"

    @staticmethod
    def not_site_admin(column: str, config_table: str) -> str:
        return (f"{column} NOT IN (SELECT btrim(admin)::bigint FROM {config_table} c,"
                f" regexp_split_to_table(c.value, ',') AS admin"
                f" WHERE c.name = 'siteadmins' AND btrim(admin) ~ '^[0-9]+$' AND length(btrim(admin)) <= 18)")

    lock_clause = " FOR UPDATE OF u"

    def store_hash(self, cur: Any, password_hash: str) -> None:
        """The hash into a temporary table by COPY: never in the text of a statement, so it is
        neither in pg_stat_activity nor in the server's log of a failing statement."""
        cur.execute("CREATE TEMPORARY TABLE moodleload_password (hash text NOT NULL) ON COMMIT DROP")
        cur.copy_expert("COPY moodleload_password (hash) FROM STDIN", io.StringIO(password_hash + "\n"))

    # ---- connection

    def where(self) -> str:
        return f"{self.settings.host or 'localhost'}:{self.settings.port or self.default_port}"

    def connect(self) -> Any:
        import psycopg2

        arguments: dict[str, Any] = {"dbname": self.settings.name, "user": self.settings.user,
                     "password": self.settings.password, "host": self.settings.host,
                     "port": self.settings.port}
        arguments = {key: value for key, value in arguments.items() if value is not None}
        try:
            return psycopg2.connect(**arguments, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                    application_name=self.application)
        except psycopg2.Error as error:
            raise DatabaseError(self.explain_connect_error(error)) from None

    def begin(self, conn: Any, read_only: bool) -> None:
        if read_only:
            conn.set_session(readonly=True)
        with conn.cursor() as cur:
            # check_where reads string literals as the standard says: make the server read them so too.
            cur.execute("SET LOCAL standard_conforming_strings = on")

    @property
    def errors(self) -> type[Exception]:
        import psycopg2

        return psycopg2.Error

    @staticmethod
    def commit_in_doubt(error: Exception) -> bool:
        """Whether a failed COMMIT may have been done anyway: the connection broke (no
        SQLSTATE came back), so the server may have committed before the answer was lost."""
        import psycopg2

        return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) \
            and getattr(error, "pgcode", None) is None

    def explain_connect_error(self, error: Exception) -> str:
        message = str(error).strip()
        first = message.splitlines()[0] if message else type(error).__name__
        lowered = message.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered \
                or "authentication failed" in lowered:
            return (f"authentication failed for database user {self.settings.user or '?'}:"
                    f" check --db-user and --db-pass-file (or PGUSER, PGPASSWORD, ~/.pgpass)")
        if "does not exist" in lowered and "database" in lowered:
            return f"{first}: check --db-name"
        if "connection refused" in lowered or "could not connect" in lowered \
                or "no such file or directory" in lowered or "timeout expired" in lowered \
                or "could not translate host name" in lowered:
            return f"cannot reach PostgreSQL at {self.where()} ({first}): is it running? check --db-host and --db-port"
        return f"cannot connect to PostgreSQL at {self.where()}: {first}"

    def explain_query_error(self, error: Exception, prefix: str, where: str | None) -> str:
        import psycopg2.errors as pgerrors

        first = (getattr(error, "pgerror", None) or str(error)).strip().splitlines()[0]
        if isinstance(error, pgerrors.UndefinedTable):
            return f"{first}: is --prefix '{prefix}' right for this Moodle database?"
        if isinstance(error, pgerrors.InsufficientPrivilege):
            return privileges_needed(first, prefix)
        code = getattr(error, "pgcode", None)  # psycopg2's SQLSTATE
        if where and code and code.startswith(("42", "22")):
            return f"--where {where!r} is not valid SQL here: {first}"
        return first
