"""What every database family has: the settings it connects with (and where each came from),
the ``DatabaseFamily`` protocol the password script, --query-stats and the bisect step ask of
it, the ``Family`` base, and the one-line database error.  The families themselves are
``postgres`` and ``mysql``; ``families`` is their registry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseError(Exception):
    """A database problem explained in one line: exit 1."""


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


def privileges_needed(first: str, prefix: str) -> str:
    return (f"{first}: the database user needs SELECT, UPDATE and DELETE on the {prefix}user, "
            f"{prefix}user_preferences and {prefix}config tables")
