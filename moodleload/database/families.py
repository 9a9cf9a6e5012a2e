"""The two database families Moodle 5.0 runs on, behind one interface (``DatabaseFamily``):
its defaults (and where each setting came from), how to connect, how a transaction starts,
the SQL that differs, how each family's errors become one line, and its statement
statistics.  A new family is one class here satisfying the protocol, in FAMILIES.

PostgreSQL (Moodle's ``pgsql``) goes through psycopg2/libpq, which honours PG* variables
and ~/.pgpass.  MariaDB and MySQL (``mariadb``, ``mysqli``, ``auroramysql``) go through
PyMySQL, with the mysql client's conventions: port 3306, ``localhost`` meaning the unix
socket, and the ``[client]`` section of ~/.my.cnf for what no flag gives."""

from __future__ import annotations

import configparser
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from moodleload.database.statistics import my_statement_rows, pg_statement_rows
from moodleload.exits import UsageError

MYSQL_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock",
                 "/tmp/mysql.sock")
CONNECT_TIMEOUT_SECONDS = 10

# The settings libpq's client tools (pg_restore, psql) read from the environment.
PG_VARIABLES = (("host", "PGHOST"), ("port", "PGPORT"), ("name", "PGDATABASE"), ("user", "PGUSER"),
                ("password", "PGPASSWORD"))


class DatabaseError(Exception):
    """A database problem explained in one line: exit 1."""


def family_of(dbtype: str) -> str:
    family = MOODLE_DBTYPES.get(dbtype.strip().lower())
    if family is None:
        raise UsageError(f"database type {dbtype!r} is not one Moodle 5.0 runs on: give {DBTYPE_NAMES}")
    return family


class Settings:
    """Connection settings with the place each came from (a flag, config.php, an
    environment variable, ~/.my.cnf, a default), for --dry-run."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def offer(self, name: str, value: Any, origin: str) -> None:
        """Keep the first value offered: callers offer in order of precedence."""
        if name not in self.values and value not in (None, ""):
            self.values[name] = value
            self.origins[name] = origin

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def describe(self, names: Iterable[str]) -> str:
        shown = []
        for name in names:
            if name in self.values:
                value = "(hidden)" if name == "password" else self.values[name]
                shown.append(f"{name} {value} ({self.origins[name]})")
        return ", ".join(shown)


@runtime_checkable
class DatabaseFamily(Protocol):
    """What the password script and --query-stats ask of a database family."""

    family: str  # the family's key: "pgsql", "mysql" (MOODLE_DBTYPES maps $CFG->dbtype to it)
    driver: str  # the Python module that speaks to it (needs.py checks it is there)
    driver_package: str  # what pip installs it as (requirements.txt)
    name: str  # as messages name it
    socket_setting: str  # the setting config.php's dbsocket (a path) becomes
    exporter: str  # its Prometheus exporter (--metrics)
    exporter_connections: str  # that exporter's series of open connections
    default_port: int
    quote_chars: str  # what quotes a name in its SQL (accounts.check_where reads them)
    line_comment_chars: str
    backslash_strings: bool
    statements_source: str  # where its statement statistics live
    lock_clause: str  # what holds the selected rows until the transaction ends
    settings: Settings
    notices: list[str]

    @property
    def dbtypes(self) -> tuple[str, ...]:
        """Moodle's $CFG->dbtype names of it."""
        ...

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other names it answers to (--db-type, DB_TYPE)."""
        ...

    @property
    def client_variables(self) -> tuple[tuple[str, str], ...]:
        """(setting, variable) of what its client tools read from the environment."""
        ...

    @staticmethod
    def fill_defaults(settings: Settings) -> None:
        """What no flag and no config.php gave, from the family's own conventions."""

    @staticmethod
    def quote(identifier: str) -> str: ...

    @staticmethod
    def config_number(config_table: str, name: str) -> str: ...

    @staticmethod
    def not_same(column: str, expression: str) -> str: ...

    @staticmethod
    def not_site_admin(column: str, config_table: str) -> str: ...

    def store_hash(self, cur: Any, password_hash: str) -> None: ...

    def where(self) -> str: ...

    def connect(self) -> Any: ...

    def begin(self, conn: Any, read_only: bool) -> None: ...

    @property
    def errors(self) -> Any: ...

    def commit_in_doubt(self, error: Exception) -> bool: ...

    def explain_connect_error(self, error: Exception) -> str: ...

    def explain_query_error(self, error: Exception, prefix: str, where: str | None) -> str: ...

    def statement_rows(self, conn: Any) -> list[tuple[Any, ...]]:
        """Its statement statistics now (statistics.py): raises statistics.Unavailable."""
        ...

    def restore(self, snapshot: str) -> str | None:
        """Put a snapshot back as the Moodle database user (the bisect step, before every
        run): None when it was, else what failed, in a few words.  The client tools' own
        errors go to standard error; no password reaches their command line."""
        ...


class Family:
    """What every family keeps: its settings, the name its connections carry, its notices."""

    def __init__(self, settings: Settings, application: str = "set_moodle_passwords"):
        self.settings = settings
        self.application = application  # what the server's activity views name the connection
        self.notices: list[str] = []  # what the user must know of how the change was made (printed as warnings)


class Postgres(Family):
    family = "pgsql"
    dbtypes = ("pgsql",)
    aliases = ("postgres", "postgresql")
    driver = "psycopg2"  # the Python module that speaks to it (needs.py checks it is there)
    driver_package = "psycopg2-binary"
    name = "PostgreSQL"
    socket_setting = "host"  # libpq takes the socket's directory as the host
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
        if settings.get("socket"):  # libpq takes a socket directory as the host
            settings.offer("host", settings.get("socket"), settings.origins["socket"])
        for name, variable in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("name", "PGDATABASE")):
            settings.offer(name, os.environ.get(variable), variable)
        # the password: libpq reads PGPASSWORD and ~/.pgpass itself

    def statement_rows(self, conn: Any) -> list[tuple[Any, ...]]:
        return pg_statement_rows(conn)

    def client_environment(self) -> dict[str, str]:
        """The PG* variables libpq's tools read, from the settings (the password too: never argv)."""
        environment = dict(os.environ)
        for name, variable in PG_VARIABLES:
            if self.settings.get(name) is not None:
                environment[variable] = str(self.settings.get(name))
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
        host = self.settings.get("host", "localhost")
        return f"{host}:{self.settings.get('port', self.default_port)}"

    def connect(self) -> Any:
        import psycopg2

        arguments = {"dbname": self.settings.get("name"), "user": self.settings.get("user"),
                     "password": self.settings.get("password"), "host": self.settings.get("host"),
                     "port": self.settings.get("port")}
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
            return (f"authentication failed for database user {self.settings.get('user', '?')}:"
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


class MySQL(Family):
    family = "mysql"
    dbtypes = ("mariadb", "mysqli", "auroramysql")
    aliases = ("mysql",)
    driver = "pymysql"
    driver_package = "PyMySQL"
    name = "MariaDB/MySQL"
    socket_setting = "socket"
    client_variables = ()  # its password goes by an option file (client_option_file)
    exporter = "mysqld_exporter"
    exporter_connections = "mysql_global_status_threads_connected"
    default_port = 3306
    quote_chars = '"`'  # with ANSI_QUOTES (set in begin) "..." names a column, as in PostgreSQL
    line_comment_chars = "#"
    backslash_strings = False  # NO_BACKSLASH_ESCAPES (set in begin): '\' is just a character
    statements_source = "performance_schema"

    @staticmethod
    def fill_defaults(settings: Settings) -> None:
        options = read_my_cnf()
        for name, key in (("host", "host"), ("port", "port"), ("socket", "socket"), ("user", "user"),
                          ("password", "password"), ("name", "database")):
            settings.offer(name, options.get(key), "~/.my.cnf")
        settings.offer("host", os.environ.get("MYSQL_HOST"), "MYSQL_HOST")
        settings.offer("port", os.environ.get("MYSQL_TCP_PORT"), "MYSQL_TCP_PORT")
        settings.offer("socket", os.environ.get("MYSQL_UNIX_PORT"), "MYSQL_UNIX_PORT")
        host = settings.get("host")
        if host and host.startswith("/"):  # a path given as the host: the socket, as libpq's directories
            settings.values.setdefault("socket", host)
            settings.origins.setdefault("socket", settings.origins["host"])
        # The mysql client (and PHP's mysqli, so Moodle) reads "localhost" as "the unix socket".
        if host in (None, "localhost") and "socket" not in settings.values and "port" not in settings.values:
            for candidate in MYSQL_SOCKETS:
                if os.path.exists(candidate):
                    settings.offer("socket", candidate, "the usual socket path")
                    break
        if host not in (None, "localhost") and not host.startswith("/") \
                and settings.origins.get("socket") != "--db-socket":
            settings.values.pop("socket", None)  # a host name or address means TCP, whatever the socket says
            settings.origins.pop("socket", None)

    def statement_rows(self, conn: Any) -> list[tuple[Any, ...]]:
        return my_statement_rows(conn)

    def restore(self, snapshot: str) -> str | None:
        """An SQL snapshot (mariadb-dump, mysqldump) fed to the client.  The settings reach it
        through a pipe, as an option file: the password is never in argv or on disk."""
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            return "no mariadb or mysql client on PATH"
        options = client_option_file(self.settings).encode()
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, options)  # a few hundred bytes: the pipe holds them until the client reads
        finally:
            os.close(write_end)
        try:
            with open(snapshot, "rb") as dump:
                status = subprocess.run([client, f"--defaults-extra-file=/dev/fd/{read_end}",
                                         str(self.settings.get("name") or os.environ.get("DB_NAME") or "moodle")],
                                        stdin=dump, pass_fds=(read_end,)).returncode
        finally:
            os.close(read_end)
        return None if status == 0 else f"{os.path.basename(client)} exited {status}"

    @staticmethod
    def quote(identifier: str) -> str:
        return f"`{identifier}`"

    @staticmethod
    def config_number(config_table: str, name: str) -> str:
        return (f"(SELECT CASE WHEN TRIM(value) REGEXP '^[0-9]+$' AND CHAR_LENGTH(TRIM(value)) <= 18"
                f" THEN CAST(TRIM(value) AS SIGNED) END FROM {config_table} WHERE name = '{name}')")

    @staticmethod
    def not_same(column: str, expression: str) -> str:
        return f"NOT ({column} <=> {expression})"

    @staticmethod
    def not_site_admin(column: str, config_table: str) -> str:
        # No table functions to split a list: match the id as one element of ",value,"
        # (blanks and leading zeros allowed, as PHP's loose comparison in is_siteadmin() does).
        return (f"NOT EXISTS (SELECT 1 FROM {config_table} c WHERE c.name = 'siteadmins'"
                f" AND CONCAT(',', c.value, ',') REGEXP CONCAT(',[[:space:]]*0*', {column}, '[[:space:]]*,'))")

    lock_clause = " FOR UPDATE"  # MariaDB has no FOR UPDATE OF; the subqueries read other tables unlocked

    def store_hash(self, cur: Any, password_hash: str) -> None:
        # MySQL's protocol has no COPY: the hash is in the text of this one INSERT, kept out of
        # the general query log where the account may say so (sql_log_off needs SUPER).
        try:
            cur.execute("SET SESSION sql_log_off = 1")
        except self.errors:
            cur.execute("SELECT @@GLOBAL.general_log")
            if str(cur.fetchone()[0]) in ("1", "ON"):
                self.notices.append(f"the server's general query log is on and database user "
                                    f"{self.settings.get('user', '?')} may not switch it off for this session "
                                    f"(sql_log_off needs SUPER or SYSTEM_VARIABLES_ADMIN): the new bcrypt hash "
                                    f"(not the password) is written to that log; run as an account that may, "
                                    f"or switch the log off, where that matters")
        cur.execute("CREATE TEMPORARY TABLE moodleload_password (hash varchar(255) NOT NULL)")
        cur.execute("INSERT INTO moodleload_password (hash) VALUES (%s)", (password_hash,))

    def where(self) -> str:
        if self.settings.get("socket"):
            return self.settings.get("socket")
        return f"{self.settings.get('host', 'localhost')}:{self.settings.get('port', self.default_port)}"

    def connect(self) -> Any:
        import pymysql

        arguments = {"database": self.settings.get("name"), "user": self.settings.get("user"),
                     "password": self.settings.get("password") or "", "charset": "utf8mb4",
                     "connect_timeout": CONNECT_TIMEOUT_SECONDS, "autocommit": False,
                     "program_name": self.application}
        if self.settings.get("socket"):
            arguments["unix_socket"] = self.settings.get("socket")
        else:
            arguments["host"] = self.settings.get("host", "localhost")
            arguments["port"] = int(self.settings.get("port", self.default_port))
        try:
            return pymysql.connect(**arguments)
        except pymysql.Error as error:
            raise DatabaseError(self.explain_connect_error(error)) from None

    def begin(self, conn: Any, read_only: bool) -> None:
        with conn.cursor() as cur:
            # Strings and names read as check_where and PostgreSQL read them.
            cur.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, IF(@@SESSION.sql_mode = '', '', ','),"
                        " 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES,PIPES_AS_CONCAT')")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")  # as Moodle's own driver
            cur.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")

    @property
    def errors(self) -> type[Exception]:
        import pymysql

        return pymysql.Error

    @classmethod
    def commit_in_doubt(cls, error: Exception) -> bool:
        import pymysql

        # 2006 gone away, 2013 lost during the query, 2014/2055 lost in the protocol
        return isinstance(error, pymysql.err.InterfaceError) or (
            isinstance(error, pymysql.err.OperationalError) and cls._code_and_message(error)[0] in (2006, 2013, 2014,
                                                                                                   2055))

    @staticmethod
    def _code_and_message(error: Exception) -> tuple[int, str]:
        """PyMySQL's (errno, message), the message's first line; errno 0 where it has none."""
        if len(error.args) >= 2 and isinstance(error.args[0], int):
            code, message = error.args[0], str(error.args[1])
        else:
            code, message = 0, str(error)
        return code, (message.strip().splitlines() or [type(error).__name__])[0]

    def explain_connect_error(self, error: Exception) -> str:
        code, message = self._code_and_message(error)
        if code == 1045:
            return (f"authentication failed for database user {self.settings.get('user', '?')}:"
                    f" check --db-user and --db-pass-file (or ~/.my.cnf)")
        if code == 1049:
            return f"{message}: check --db-name"
        if code == 1044:
            return f"{message}: the database user may not use this database; check --db-name and --db-user"
        if code in (2002, 2003, 2005, 2006, 2013) or code == 0:
            return (f"cannot reach {self.name} at {self.where()} ({message}): is it running? check --db-host, "
                    f"--db-port and --db-socket")
        return f"cannot connect to {self.name} at {self.where()}: {message}"

    def explain_query_error(self, error: Exception, prefix: str, where: str | None) -> str:
        code, message = self._code_and_message(error)
        if code == 1146:
            return f"{message}: is --prefix '{prefix}' right for this Moodle database?"
        if code in (1142, 1143, 1044):
            return privileges_needed(message, prefix)
        if where and code in (1054, 1064, 1267, 1292, 1305, 1582, 1583, 1584, 1139):
            return f"--where {where!r} is not valid SQL here: {message}"
        if code in (1205, 1213):
            return f"{message}: another transaction holds these users' rows; nothing changed, try again"
        return message


def privileges_needed(first: str, prefix: str) -> str:
    return (f"{first}: the database user needs SELECT, UPDATE and DELETE on the {prefix}user, "
            f"{prefix}user_preferences and {prefix}config tables")


def read_my_cnf(path: str = "~/.my.cnf") -> dict[str, str]:
    """The ``[client]`` section of the mysql client's option file, as the client reads it."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return {}
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False, interpolation=None)
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            parser.read_string("".join(line for line in handle if not line.lstrip().startswith("!")))
    except (OSError, configparser.Error) as error:
        raise UsageError(f"{path} cannot be read as a MySQL option file: {str(error).splitlines()[0]}") from None
    if not parser.has_section("client"):
        return {}
    values = {}
    for key, value in parser.items("client"):
        if value is None:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.replace("_", "-")] = value
    return values


def client_option_file(settings: Settings) -> str:
    """A ``[client]`` option file for the mysql/mariadb tools (read through a pipe: the
    password is never in argv or on disk)."""
    lines = ["[client]"]
    for name, key in (("user", "user"), ("password", "password"), ("host", "host"), ("port", "port"),
                      ("socket", "socket")):
        value = settings.get(name)
        if value is not None:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"




# A pg_restore list's entries for an extension and its comment: a superuser's objects.
EXTENSION_ENTRY = re.compile(r"^[0-9]+; [0-9]+ [0-9]+ (EXTENSION|COMMENT - EXTENSION) ")

FAMILIES: dict[str, type[Postgres] | type[MySQL]] = {Postgres.family: Postgres, MySQL.family: MySQL}

# $CFG->dbtype (and the other names a family answers to) -> its family.
MOODLE_DBTYPES = {name: family.family for family in FAMILIES.values() for name in (*family.dbtypes, *family.aliases)}
# Moodle's own names, as messages list them: "pgsql, mariadb, mysqli or auroramysql".
_MOODLE_NAMES = [dbtype for family in FAMILIES.values() for dbtype in family.dbtypes]
DBTYPE_NAMES = ", ".join(_MOODLE_NAMES[:-1]) + " or " + _MOODLE_NAMES[-1]


def database_for(family: str, settings: Settings, application: str = "set_moodle_passwords") -> DatabaseFamily:
    """The family's implementation; a family nobody wrote is an error, never another family's SQL."""
    if family not in FAMILIES:
        raise UsageError(f"database family {family!r} is not supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](settings, application)


def fill_defaults(family: str, settings: Settings) -> None:
    """What no flag and no config.php gave, from each family's own conventions."""
    FAMILIES[family].fill_defaults(settings)
