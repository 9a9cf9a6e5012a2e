"""MariaDB and MySQL (Moodle's ``mariadb``, ``mysqli``, ``auroramysql``), through PyMySQL with
the mysql client's conventions: port 3306, ``localhost`` meaning the unix socket, and the
``[client]`` section of ~/.my.cnf for what no flag gives; snapshots restored with the mysql
client, its password passed in an option file through a pipe."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
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
from moodleload.exits import UsageError

# Its statement statistics: (normalised text, calls, rows, milliseconds, work) per digest.
MY_SNAPSHOT = ("SELECT DIGEST_TEXT, SUM(COUNT_STAR), SUM(SUM_ROWS_SENT + SUM_ROWS_AFFECTED), "
               "SUM(SUM_TIMER_WAIT) / 1000000000, SUM(SUM_ROWS_EXAMINED) "
               "FROM performance_schema.events_statements_summary_by_digest "
               "WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT IS NOT NULL GROUP BY DIGEST_TEXT")

MY_HOW_TO = ("start the server with performance_schema=ON (a line in the [mysqld] section of its my.cnf, then "
             "a restart) and let the Moodle database user SELECT on performance_schema.*")


# The settings a [client] option file (~/.my.cnf) holds, and each one's key there.
MY_CNF_OPTIONS: tuple[tuple[SettingName, str], ...] = (("user", "user"), ("password", "password"), ("host", "host"),
                                                       ("port", "port"), ("socket", "socket"), ("name", "database"))

MYSQL_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock",
                 "/tmp/mysql.sock")


class MySQL(Family):
    family = "mysql"
    dbtypes = ("mariadb", "mysqli", "auroramysql")
    aliases = ("mysql",)
    driver = "pymysql"
    driver_package = "PyMySQL"
    name = "MariaDB/MySQL"
    socket_setting: SettingName = "socket"
    # its password goes by an option file instead (client_option_file)
    client_variables: tuple[tuple[SettingName, str], ...] = ()
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
        for name, key in MY_CNF_OPTIONS:
            settings.offer(name, options.get(key), "~/.my.cnf")
        settings.offer("host", os.environ.get("MYSQL_HOST"), "MYSQL_HOST")
        settings.offer("port", os.environ.get("MYSQL_TCP_PORT"), "MYSQL_TCP_PORT")
        settings.offer("socket", os.environ.get("MYSQL_UNIX_PORT"), "MYSQL_UNIX_PORT")
        host = settings.host
        if host and host.startswith("/"):  # a path given as the host: the socket, as libpq's directories
            settings.offer("socket", host, settings.origin("host") or "host")
        # The mysql client (and PHP's mysqli, so Moodle) reads "localhost" as "the unix socket".
        if host in (None, "localhost") and not settings.given("socket") and not settings.given("port"):
            for candidate in MYSQL_SOCKETS:
                if os.path.exists(candidate):
                    settings.offer("socket", candidate, "the usual socket path")
                    break
        if host is not None and host != "localhost" and not host.startswith("/") \
                and settings.origin("socket") != "--db-socket":
            settings.drop("socket")  # a host name or address means TCP, whatever the socket says

    def statement_rows(self, conn: Any) -> list[tuple[Any, ...]]:
        """The statistics now, one row per normalised statement (only read: nothing here resets
        them, other people's tools read them too); Unavailable says how to switch them on."""
        import pymysql

        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@performance_schema")
                if str(cur.fetchone()[0]) not in ("1", "ON"):
                    raise Unavailable(f"query statistics off: the server runs with performance_schema off; to switch "
                                      f"them on, {MY_HOW_TO}")
                cur.execute(MY_SNAPSHOT)
                rows = cur.fetchall()
        except pymysql.Error as error:
            message = error.args[1] if len(error.args) > 1 else str(error)
            raise Unavailable(f"query statistics not readable: the server says {message!r}; {MY_HOW_TO}") from None
        conn.rollback()
        return list(rows)

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
                                         self.settings.name or os.environ.get("DB_NAME") or "moodle"],
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
                                    f"{self.settings.user or '?'} may not switch it off for this session "
                                    f"(sql_log_off needs SUPER or SYSTEM_VARIABLES_ADMIN): the new bcrypt hash "
                                    f"(not the password) is written to that log; run as an account that may, "
                                    f"or switch the log off, where that matters")
        cur.execute("CREATE TEMPORARY TABLE moodleload_password (hash varchar(255) NOT NULL)")
        cur.execute("INSERT INTO moodleload_password (hash) VALUES (%s)", (password_hash,))

    def where(self) -> str:
        if self.settings.socket:
            return self.settings.socket
        return f"{self.settings.host or 'localhost'}:{self.settings.port or self.default_port}"

    def connect(self) -> Any:
        import pymysql

        arguments: dict[str, Any] = {"database": self.settings.name, "user": self.settings.user,
                     "password": self.settings.password or "", "charset": "utf8mb4",
                     "connect_timeout": CONNECT_TIMEOUT_SECONDS, "autocommit": False,
                     "program_name": self.application}
        if self.settings.socket:
            arguments["unix_socket"] = self.settings.socket
        else:
            arguments["host"] = self.settings.host or "localhost"
            arguments["port"] = int(self.settings.port or self.default_port)
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
            return (f"authentication failed for database user {self.settings.user or '?'}:"
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
    for name, key in MY_CNF_OPTIONS:
        value = settings.value(name)
        if name == "name":
            continue  # the tools are given the database as an argument
        if value is not None:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"
