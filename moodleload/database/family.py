"""What every database family has: the settings it connects with (and where each came from),
the ``DatabaseFamily`` protocol the password script, --query-stats and the bisect step ask of
it, the ``Family`` base, and the one-line database error.  The families themselves are
``postgres`` and ``mysql``; ``families`` is their registry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol, get_args, runtime_checkable

CONNECT_TIMEOUT_SECONDS = 10


class DatabaseError(Exception):
    """A database problem explained in one line: exit 1."""


class Unavailable(Exception):
    """A family's statement statistics cannot be read: the one line says how to switch them on."""


# The settings a connection is made of: a closed set, so a misspelt one is a type error.
SettingName = Literal["type", "host", "port", "socket", "name", "user", "password"]
SETTING_NAMES: tuple[SettingName, ...] = get_args(SettingName)

SettingValue = str | int


class Settings:
    """Connection settings with the place each came from (a flag, config.php, an
    environment variable, ~/.my.cnf, a default), for --dry-run.  Offered by name in order
    of precedence; read as attributes."""

    def __init__(self) -> None:
        self._values: dict[SettingName, SettingValue] = {}
        self._origins: dict[SettingName, str] = {}

    def offer(self, name: SettingName, value: SettingValue | None, origin: str) -> None:
        """Keep the first value offered: callers offer in order of precedence."""
        if name in self._values or value is None or value == "":
            return
        self._values[name] = value
        self._origins[name] = origin

    def replace(self, name: SettingName, value: SettingValue, origin: str | None = None) -> None:
        """A checked or derived value in place of what was offered (the same origin unless told)."""
        self._values[name] = value
        self._origins[name] = origin if origin is not None else self._origins.get(name, "derived")

    def drop(self, name: SettingName) -> None:
        self._values.pop(name, None)
        self._origins.pop(name, None)

    def given(self, name: SettingName) -> bool:
        return name in self._values

    def origin(self, name: SettingName) -> str | None:
        return self._origins.get(name)

    def value(self, name: SettingName) -> SettingValue | None:
        """For tables that map settings to a client's variables or options (PG_VARIABLES)."""
        return self._values.get(name)

    def _text(self, name: SettingName) -> str | None:
        value = self._values.get(name)
        return None if value is None else str(value)

    @property
    def type(self) -> str | None:
        return self._text("type")

    @property
    def host(self) -> str | None:
        return self._text("host")

    @property
    def port(self) -> SettingValue | None:
        return self._values.get("port")

    @property
    def socket(self) -> str | None:
        return self._text("socket")

    @property
    def name(self) -> str | None:
        return self._text("name")

    @property
    def user(self) -> str | None:
        return self._text("user")

    @property
    def password(self) -> str | None:
        return self._text("password")

    def describe(self, names: Iterable[SettingName] = SETTING_NAMES) -> str:
        shown = []
        for name in names:
            if name in self._values:
                value = "(hidden)" if name == "password" else self._values[name]
                shown.append(f"{name} {value} ({self._origins[name]})")
        return ", ".join(shown)


@runtime_checkable
class DatabaseFamily(Protocol):
    """What the password script and --query-stats ask of a database family."""

    family: str  # the family's key: "pgsql", "mysql" (MOODLE_DBTYPES maps $CFG->dbtype to it)
    driver: str  # the Python module that speaks to it (needs.py checks it is there)
    driver_package: str  # what pip installs it as (requirements.txt)
    name: str  # as messages name it
    socket_setting: SettingName  # the setting config.php's dbsocket (a path) becomes
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
    def client_variables(self) -> tuple[tuple[SettingName, str], ...]:
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
        """Its statement statistics now, as (normalised text, calls, rows, milliseconds, work)
        rows (load.statements turns two snapshots into a run's section); raises Unavailable."""
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
